"""In-process state: exact per-key logs in dicts. Atomic because nothing here awaits."""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from ...engine import UpstreamSpec
from ...engine.admission.shared_state import Admission, BudgetCheck, LeaseCheck, WindowCheck
from ...engine.upstreams.pool import Pool, PoolRules

SWEEP_EVERY = 60.0


def utc_day(now: float) -> int:
    return int(now // 86400)


def seconds_to_midnight(now: float) -> float:
    return 86400 - (now % 86400)


class MemoryState:
    name = "memory"

    def key_pool(
        self, upstreams: Sequence[UpstreamSpec], rules: PoolRules, clock: Callable[[], float]
    ) -> Pool:
        """A pool of this process's own: nothing to share."""
        return Pool(upstreams, rules, clock)

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._logs: dict[str, collections.deque[tuple[float, str]]] = {}  # (time, lease id)
        self._days: dict[str, tuple[int, int]] = {}  # key -> (utc day, count)
        self._leases: dict[str, dict[str, float]] = {}  # key -> {lease id: expires at}
        self._spend: dict[str, tuple[int, float]] = {}  # key -> (utc day, usd)
        self._swept = 0.0
        self._tables: dict[str, dict[str, str]] = {}  # small shared tables (policy windows)
        self._secrets: dict[str, bytes] = {}
        self._blobs: dict[str, tuple[float, str]] = {}  # key -> (expires at, text)
        # index -> its blobs' keys, oldest first (``keep_blob``)
        self._indexes: dict[str, dict[str, None]] = {}

    # Per-user state must not grow with every user ever seen: drop what has expired.
    def _sweep(self, now: float) -> None:
        if now - self._swept < SWEEP_EVERY:
            return
        self._swept = now
        day = utc_day(now)
        for key in [k for k, log in self._logs.items() if not log or log[-1][0] < now - 86400 * 7]:
            del self._logs[key]
        for key in [k for k, (d, _) in self._days.items() if d != day]:
            del self._days[key]
        for key in [k for k, (d, _) in self._spend.items() if d != day]:
            del self._spend[key]
        for key in [k for k, (exp, _) in self._blobs.items() if exp <= now]:
            del self._blobs[key]
        for index, keys in list(self._indexes.items()):
            for key in [k for k in keys if k not in self._blobs]:
                del keys[key]
            if not keys:
                del self._indexes[index]
        for key, held in list(self._leases.items()):
            for lid in [lid for lid, exp in held.items() if exp <= now]:
                del held[lid]
            if not held:
                del self._leases[key]

    def _window_use(self, w: WindowCheck, now: float) -> tuple[int, float]:
        if w.calendar_day:
            d, n = self._days.get(w.key, (utc_day(now), 0))
            if d != utc_day(now):
                n = 0
            return n, seconds_to_midnight(now)
        log = self._logs.get(w.key)
        if not log:
            return 0, 0.0
        cutoff = now - w.seconds
        # logs are shared by windows of different lengths on one key only by construction of
        # the keys (key includes the window), so popping old entries is safe here
        while log and log[0][0] <= cutoff:
            log.popleft()
        return len(log), (log[0][0] + w.seconds - now) if log else 0.0

    def _lease_use(self, lease: LeaseCheck, now: float) -> int:
        held = self._leases.get(lease.key)
        if not held:
            return 0
        for lid in [lid for lid, exp in held.items() if exp <= now]:
            del held[lid]
        return len(held)

    def _spent(self, b: BudgetCheck, now: float) -> float:
        d, usd = self._spend.get(b.key, (utc_day(now), 0.0))
        return usd if d == utc_day(now) else 0.0

    async def admit(
        self,
        windows: list[WindowCheck],
        leases: list[LeaseCheck],
        budgets: list[BudgetCheck],
        lease_id: str,
        pick: list[Any] | None = None,
    ) -> Admission:
        now = self.clock()
        self._sweep(now)
        for w in windows:
            used, oldest_leaves = self._window_use(w, now)
            if used >= w.amount:
                if w.calendar_day:
                    return Admission(w, seconds_to_midnight(now), used)
                log = self._logs[w.key]
                # the request that must leave for one more to fit
                return Admission(w, log[used - w.amount][0] + w.seconds - now, used)
        for lease in leases:
            used = self._lease_use(lease, now)
            if used >= lease.capacity:
                return Admission(lease, 1.0, used)
        for b in budgets:
            spent = self._spent(b, now)
            if spent + b.reserve > b.limit:
                return Admission(b, seconds_to_midnight(now), spent)
        # every check passed: now count them all
        day = utc_day(now)
        for w in windows:
            if w.calendar_day:
                d, n = self._days.get(w.key, (day, 0))
                self._days[w.key] = (day, (n if d == day else 0) + 1)
            else:
                self._logs.setdefault(w.key, collections.deque()).append((now, lease_id))
        for lease in leases:
            self._leases.setdefault(lease.key, {})[lease_id] = now + lease.ttl
        for b in budgets:
            self._spend[b.key] = (day, self._spent(b, now) + b.reserve)
        return Admission(windows_used=[self._window_use(w, now) for w in windows])

    async def finish(
        self,
        refund: list[WindowCheck],
        leases: list[LeaseCheck],
        budgets: list[BudgetCheck],
        delta: float,
        lease_id: str,
    ) -> None:
        if refund:
            await self.refund(refund, lease_id)
        if leases:
            await self.release(leases, lease_id)
        if budgets and delta:
            await self.settle(budgets, delta)

    async def refund(self, windows: list[WindowCheck], lease_id: str) -> None:
        now = self.clock()
        for w in windows:
            if w.calendar_day:
                d, n = self._days.get(w.key, (utc_day(now), 0))
                if d == utc_day(now) and n > 0:
                    self._days[w.key] = (d, n - 1)
                continue
            log = self._logs.get(w.key)
            if log:
                # the refunded request is among the newest: search from the right
                for i in range(len(log) - 1, -1, -1):
                    if log[i][1] == lease_id:
                        del log[i]
                        break

    async def release(self, leases: list[LeaseCheck], lease_id: str) -> None:
        for lease in leases:
            held = self._leases.get(lease.key)
            if held:
                held.pop(lease_id, None)

    async def settle(self, budgets: list[BudgetCheck], delta: float) -> None:
        now = self.clock()
        for b in budgets:
            self._spend[b.key] = (utc_day(now), max(0.0, self._spent(b, now) + delta))

    async def read(
        self, windows: list[WindowCheck], leases: list[LeaseCheck], budgets: list[BudgetCheck]
    ) -> tuple[list[tuple[int, float]], list[int], list[float]]:
        now = self.clock()
        return (
            [self._window_use(w, now) for w in windows],
            [self._lease_use(lease, now) for lease in leases],
            [self._spent(b, now) for b in budgets],
        )

    async def reset(self, prefix: str) -> int:
        n = 0
        for store in (self._logs, self._days, self._leases, self._spend, self._blobs):
            for key in [k for k in store if k.startswith(prefix)]:
                del store[key]
                n += 1
        return n

    async def entries(self, table: str) -> dict[str, str]:
        return dict(self._tables.get(table, {}))

    async def put_entry(self, table: str, name: str, value: str) -> None:
        self._tables.setdefault(table, {})[name] = value

    async def delete_entry(self, table: str, name: str) -> bool:
        return self._tables.get(table, {}).pop(name, None) is not None

    async def secret(self, name: str) -> bytes:
        return self._secrets.setdefault(name, secrets.token_bytes(32))

    async def get_blob(self, key: str) -> str | None:
        found = self._blobs.get(key)
        if found is None or found[0] <= self.clock():
            return None
        return found[1]

    async def keep_blob(
        self, index: str, key: str, value: str, ttl: float, most: int, most_bytes: int
    ) -> None:
        # no await inside: one step on the event loop, as the Redis backend's one script
        now = self.clock()
        self._sweep(now)
        keys = self._indexes.setdefault(index, {})
        keys.pop(key, None)
        for gone in [k for k in keys if self._blobs.get(k, (0.0, ""))[0] <= now]:
            del keys[gone]
        total = sum(len(self._blobs[k][1]) for k in keys) + len(value)
        while keys and (len(keys) + 1 > most or total > most_bytes):
            oldest = next(iter(keys))
            total -= len(self._blobs.pop(oldest)[1])
            del keys[oldest]
        keys[key] = None
        self._blobs[key] = (now + ttl, value)

    async def drop_blob(self, index: str, key: str) -> bool:
        self._indexes.get(index, {}).pop(key, None)
        return self._blobs.pop(key, None) is not None

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass
