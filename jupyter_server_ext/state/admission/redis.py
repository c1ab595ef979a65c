"""Shared state in Redis, so N replicas enforce one set of limits.

Every admission is one Lua script (one round trip, atomic): it checks all windows, leases and
budgets, and only if all pass counts them all; the same script also picks the request's
upstream key when the pool asks (``redis_pool``). A request's end (refund, lease release,
budget settlement) is one write, batched with other requests' (``redis_batch``). The scripts
are in ``scripts``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis  # the 'redis' extra; this module is imported only when used
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...engine import UpstreamSpec
from ...engine.admission.shared_state import Admission, BudgetCheck, LeaseCheck, WindowCheck
from ...engine.errors import StateUnavailable
from ...engine.upstreams.pool import Pool, PoolRules
from ..connection.batch import Batcher
from ..connection.pipelined import pipelined_connection, script_caller
from ..connection.scripts import ADMIT_MANY, FORGET, KEEP, READ
from ..upstreams.shared_pool import SharedPool

log = logging.getLogger("rsql.state")

# a batch's admissions all wait for its one script to finish, and then go upstream in one loop
# turn: past a few, that convoy costs more latency than the calls it saves (p50 overhead at 50
# connections, measured: 10.4 ms with up to 256 a batch held while one is at Redis; 5.1 ms with 4
# and 4.2 ms with 8 sent on the next turn, pipelined; bench/results/notes.md)
ADMISSIONS_PER_BATCH = 8
_CONNECTION_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)

_GLOB_SPECIAL = frozenset("*?[]^\\")


def glob_escape(text: str) -> str:
    """`text` as a Redis MATCH pattern that matches only itself: a backslash before each of the
    pattern's special characters (``* ? [ ] ^ \\``; ``^`` only matters inside brackets)."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def connect(url: str) -> aioredis.Redis:
    """A client whose pool waits for a free connection under load.

    Why not the default pool: redis-py's asyncio pool raises MaxConnectionsError as soon as its
    connections are all in use, which would read as an outage (a 503 for every user) at a few
    hundred concurrent requests; a blocking pool queues them for up to `timeout` instead.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=64,
        timeout=5.0,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=15,
    )
    return aioredis.Redis(connection_pool=pool)


async def ping_problem(url: str, timeout: float) -> str:
    """Why the Redis at `url` does not answer a PING within `timeout` seconds ("" when it does):
    ``--check-config``'s look, on one connection of its own, no retry, writing no key."""
    client = aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        # no CLIENT SETINFO: the check leaves nothing behind, not even a client's name
        lib_name=None,
        lib_version=None,
    )
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        return f"no answer within {timeout:g} s" if _timed_out(exc) else _said(exc)
    finally:
        await client.aclose()
    return ""


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, RedisTimeoutError | TimeoutError) or "Timeout" in str(exc)


def _said(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(".")


class RedisState:
    """Limits, leases and budgets in Redis; `fail_open` decides what an outage means."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "rsql:", fail_open: bool = False) -> None:
        self.url = url
        self.prefix = prefix
        self.fail_open = fail_open
        self.redis = connect(url)
        # the hot path's scripts share one ordered, pipelined connection (state/connection/pipelined.py)
        self.wire = pipelined_connection(self.redis)
        self._read = script_caller(self.redis, READ, self.wire)
        self._keep = self.redis.register_script(KEEP)
        self._forget = self.redis.register_script(FORGET)
        # this process's admissions, and its writes (request ends; the shared pool's too), batched
        self.batch = Batcher(self.redis, conn=self.wire)
        self.admissions = Batcher(
            self.redis,
            ADMIT_MANY,
            results=True,
            conn=self.wire,
            writes_first=self.batch,
            max_ops=ADMISSIONS_PER_BATCH,
            eager=True,
        )
        self.down_since: float | None = None

    def key_pool(
        self, upstreams: Sequence[UpstreamSpec], rules: PoolRules, clock: Callable[[], float]
    ) -> Pool:
        """A pool whose windows, cooldowns, breakers and disabled keys every replica shares,
        through this backend's client and write batch (a request's end on the user's side and
        the key's goes in one round trip)."""
        return SharedPool(
            upstreams,
            rules,
            clock,
            redis=self.redis,
            wire=self.wire,
            batch=self.batch,
            prefix=self.prefix,
        )

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _outage(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.time()
            log.error(
                "state backend %s unreachable (%s): %s",
                self.name,
                type(exc).__name__,
                "admitting requests without limits (fail_open)"
                if self.fail_open
                else "refusing requests with 503",
            )

    def _recovered(self) -> None:
        if self.down_since is not None:
            log.warning(
                "state backend %s reachable again after %.0f s",
                self.name,
                time.time() - self.down_since,
            )
            self.down_since = None

    async def admit(
        self,
        windows: list[WindowCheck],
        leases: list[LeaseCheck],
        budgets: list[BudgetCheck],
        lease_id: str,
        pick: list[Any] | None = None,
    ) -> Admission:
        keys = (
            [self._k(w.key) for w in windows]
            + [self._k(c.key) for c in leases]
            + [self._k(b.key) for b in budgets]
        )
        args: list[Any] = [len(windows), len(leases), len(budgets), lease_id]
        for w in windows:
            args += [w.amount, w.seconds, "1" if w.calendar_day else "0"]
        for c in leases:
            args += [c.capacity, c.ttl]
        for b in budgets:
            args += [repr(b.limit), repr(b.reserve)]
        try:
            out = await self.admissions.run(
                len(keys), *keys, len(args), *args, len(pick or ()), *(pick or ())
            )
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            if self.fail_open:
                return Admission()
            raise StateUnavailable(
                "the proxy's shared state (Redis) is unreachable; try again shortly",
                headers={"Retry-After": "5"},
            ) from None
        self._recovered()
        idx = int(out[0])
        if idx == 0:
            n = 3 + 2 * len(windows)
            used = [(int(float(out[i])), float(out[i + 1])) for i in range(3, n, 2)]
            picked = (int(out[n]), float(out[n + 1])) if pick is not None else None
            return Admission(windows_used=used, picked=picked)
        checks: list[Any] = [*windows, *leases, *budgets]
        hit = checks[idx - 1]
        used_v: float = float(out[2])
        return Admission(
            hit, float(out[1]), used_v if isinstance(hit, BudgetCheck) else int(used_v)
        )

    async def refund(self, windows: list[WindowCheck], lease_id: str) -> None:
        await self.finish(windows, [], [], 0.0, lease_id)

    async def release(self, leases: list[LeaseCheck], lease_id: str) -> None:
        await self.finish([], leases, [], 0.0, lease_id)

    async def settle(self, budgets: list[BudgetCheck], delta: float) -> None:
        await self.finish([], [], budgets, delta, "")

    async def finish(
        self,
        refund: list[WindowCheck],
        leases: list[LeaseCheck],
        budgets: list[BudgetCheck],
        delta: float,
        lease_id: str,
    ) -> None:
        args: list[Any] = ["fin", lease_id, len(refund)]
        for i, w in enumerate(refund, start=1):  # window members are "<lease id>:<window index>"
            args += [self._k(w.key), "1" if w.calendar_day else "0", i]
        args.append(len(leases))
        args += [self._k(c.key) for c in leases]
        args.append(len(budgets))
        args += [self._k(b.key) for b in budgets]
        args.append(repr(delta))
        # applied before any later admission or read of this process: the answer need not wait
        await self.batch.write(*args, failed=self._end_failed)

    def _end_failed(self, exc: BaseException) -> None:
        if isinstance(
            exc, _CONNECTION_ERRORS
        ):  # leases expire on their own; windows and budgets stay
            self._outage(exc)
        else:
            log.error(
                "state backend %s: a request's end was not applied (%s)",
                self.name,
                type(exc).__name__,
            )

    async def read(
        self, windows: list[WindowCheck], leases: list[LeaseCheck], budgets: list[BudgetCheck]
    ) -> tuple[list[tuple[int, float]], list[int], list[float]]:
        keys = (
            [self._k(w.key) for w in windows]
            + [self._k(c.key) for c in leases]
            + [self._k(b.key) for b in budgets]
        )
        args: list[Any] = [len(windows), len(leases), len(budgets)]
        for w in windows:
            args += [w.seconds, "1" if w.calendar_day else "0"]
        self.batch.flush()  # the ends queued so far are applied before this read
        try:
            out = [
                x.decode() if isinstance(x, bytes) else str(x)
                for x in await self._read(keys=keys, args=args)
            ]
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable("the proxy's shared state (Redis) is unreachable") from None
        nw = len(windows)
        wuse = [(int(float(out[2 * i])), float(out[2 * i + 1])) for i in range(nw)]
        luse = [int(float(v)) for v in out[2 * nw : 2 * nw + len(leases)]]
        spent = [float(v) for v in out[2 * nw + len(leases) :]]
        return wuse, luse, spent

    async def reset(self, prefix: str) -> int:
        """Delete every key that starts with `prefix`, taken literally: a glob character in it
        (the configured key prefix, a name) matches only itself."""
        literal = self._k(prefix).encode()
        n = 0
        async for key in self.redis.scan_iter(match=glob_escape(self._k(prefix)) + "*", count=500):
            if key.startswith(literal):  # what MATCH found is checked again, as plain text
                n += await self.redis.delete(key)
        return n

    # small shared tables (the admin's run-time policy windows): one hash each, "t:<table>"
    async def entries(self, table: str) -> dict[str, str]:
        try:
            raw = await self.redis.hgetall(self._k(f"t:{table}"))
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable("the proxy's shared state (Redis) is unreachable") from None
        return {_text(k): _text(v) for k, v in raw.items()}

    async def put_entry(self, table: str, name: str, value: str) -> None:
        try:
            await self.redis.hset(self._k(f"t:{table}"), name, value)
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable(
                "the proxy's shared state (Redis) is unreachable; try again shortly"
            ) from None

    async def delete_entry(self, table: str, name: str) -> bool:
        try:
            return bool(await self.redis.hdel(self._k(f"t:{table}"), name))
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable(
                "the proxy's shared state (Redis) is unreachable; try again shortly"
            ) from None

    async def secret(self, name: str) -> bytes:
        # the first replica to ask makes it (HSETNX): the others read the same
        where = self._k("t:secrets")
        try:
            await self.redis.hsetnx(where, name, secrets.token_hex(32))
            value = await self.redis.hget(where, name)
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable("the proxy's shared state (Redis) is unreachable") from None
        if not value:  # gone between the two calls (an admin's reset): none to share
            raise StateUnavailable("the proxy's shared secret was removed while it was read")
        return _text(value).encode()

    async def get_blob(self, key: str) -> str | None:
        try:
            value = await self.redis.get(self._k(key))
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable("the proxy's shared state (Redis) is unreachable") from None
        return None if value is None else _text(value)

    def _kept(self, index: str, key: str) -> list[str]:
        return [self._k(index), self._k(index + ":sizes"), self._k(key)]

    async def keep_blob(
        self, index: str, key: str, value: str, ttl: float, most: int, most_bytes: int
    ) -> None:
        try:
            await self._keep(
                keys=self._kept(index, key),
                args=[value, max(1, int(ttl * 1000)), most, most_bytes],
            )
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable("the proxy's shared state (Redis) is unreachable") from None

    async def drop_blob(self, index: str, key: str) -> bool:
        try:
            return bool(await self._forget(keys=self._kept(index, key)))
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable("the proxy's shared state (Redis) is unreachable") from None

    async def ping(self) -> bool:
        try:
            await self.redis.ping()
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            return False
        self._recovered()
        return True

    async def close(self) -> None:
        await self.admissions.drain()
        await self.batch.drain()
        if self.wire is not None:
            self.wire.close()
        await self.redis.aclose()


def _text(value: bytes | str) -> str:
    """A Redis reply as text: bytes from a client without decode_responses, str with it."""
    return value.decode() if isinstance(value, bytes) else value
