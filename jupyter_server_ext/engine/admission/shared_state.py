"""The state backend interface: checks to admit, leases to release, budgets to settle.

The engine owns the interface; the backends (``jupyter_server_ext.state``: memory, Redis)
implement it, and the host that builds the engine hands it one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..upstreams.pool import Pool, PoolRules
from ..upstreams.specs import UpstreamSpec


@dataclass(frozen=True)
class WindowCheck:
    """At most `amount` requests per `seconds` under `key`.

    `calendar_day` windows count per UTC date and reset at midnight UTC; the others are exact
    moving windows.
    """

    key: str
    amount: int
    seconds: float
    label: str
    calendar_day: bool = False


@dataclass(frozen=True)
class LeaseCheck:
    """At most `capacity` requests at once under `key`; each lease expires after `ttl` seconds
    on its own, so a crashed process cannot hold a slot for ever."""

    key: str
    capacity: int
    ttl: float
    label: str


@dataclass(frozen=True)
class BudgetCheck:
    """Spend under `key` (USD, spent + reserved) must stay within `limit`; `reserve` is added at
    admission and settled to the real cost afterwards. Budgets reset at midnight UTC."""

    key: str
    limit: float
    reserve: float
    label: str


@dataclass
class Admission:
    """The outcome of ``admit``: ``refused`` names the first check that did not pass.

    Admitted: `windows_used` is (used, seconds until the oldest counted request leaves) per
    window, this request counted (the caller's quota headers); `picked` is the key pick's answer
    when ``admit`` was asked to pick one too (``Pool.plan``): (candidate index or 0, wait).
    """

    refused: WindowCheck | LeaseCheck | BudgetCheck | None = None
    retry_after: float = 0.0
    used: int | float = 0
    windows_used: list[tuple[int, float]] | None = None
    picked: tuple[int, float] | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None


class StateBackend(Protocol):
    name: str

    async def admit(
        self,
        windows: list[WindowCheck],
        leases: list[LeaseCheck],
        budgets: list[BudgetCheck],
        lease_id: str,
        pick: list[Any] | None = None,
    ) -> Admission:
        """Check every limit, then count them all; `pick`: a shared pool's key pick to make in
        the same step (``Pool.plan``); backends without a shared pool ignore it."""
        ...

    async def finish(
        self,
        refund: list[WindowCheck],
        leases: list[LeaseCheck],
        budgets: list[BudgetCheck],
        delta: float,
        lease_id: str,
    ) -> None:
        """A request's end in one step: ``refund`` `refund`, ``release`` `leases`, ``settle``
        `budgets` by `delta`."""
        ...

    async def refund(self, windows: list[WindowCheck], lease_id: str) -> None:
        """Un-count an admitted request the proxy could not serve (no upstream capacity, every
        upstream failed): a request that got no answer uses no quota."""
        ...

    async def release(self, leases: list[LeaseCheck], lease_id: str) -> None: ...

    async def settle(self, budgets: list[BudgetCheck], delta: float) -> None: ...

    async def read(
        self, windows: list[WindowCheck], leases: list[LeaseCheck], budgets: list[BudgetCheck]
    ) -> tuple[list[tuple[int, float]], list[int], list[float]]:
        """(used, seconds until the oldest counted request leaves) per window; leases in use;
        spent + reserved per budget."""
        ...

    async def reset(self, prefix: str) -> int: ...

    async def entries(self, table: str) -> dict[str, str]:
        """Every entry of a small shared table (name -> text): the admin's run-time policy
        windows, which every replica must see."""
        ...

    async def put_entry(self, table: str, name: str, value: str) -> None: ...

    async def delete_entry(self, table: str, name: str) -> bool:
        """Remove an entry; whether it was there."""
        ...

    async def get_blob(self, key: str) -> str | None:
        """A stored text (a stored response), or None when absent or expired."""
        ...

    async def secret(self, name: str) -> bytes:
        """A random secret every process sharing this state holds: made by the first to ask
        (the key of the prompt caches' conversations, the same on every replica)."""
        ...

    async def keep_blob(
        self, index: str, key: str, value: str, ttl: float, most: int, most_bytes: int
    ) -> None:
        """Store `value` under `key` for `ttl` seconds, shared by every replica, and list it in
        `index`; in the same atomic step the index's oldest values go while it lists more than
        `most` of them or `most_bytes` bytes (the new one stays)."""
        ...

    async def drop_blob(self, index: str, key: str) -> bool:
        """Remove a stored text and its entry in `index`; whether it was there."""
        ...

    def key_pool(
        self, upstreams: Sequence[UpstreamSpec], rules: PoolRules, clock: Callable[[], float]
    ) -> Pool:
        """The upstream keys' pool on this backend: local to the process, or with its windows,
        cooldowns and breakers shared by every replica through the same store."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
