"""Shared state in Redis, so N replicas enforce one set of limits.

Every admission is one Lua script (one round trip, atomic): it checks all windows, leases and
budgets, and only if all pass counts them all. Times come from Redis's own clock (TIME), so
replicas on machines with skewed clocks still agree on windows and on midnight UTC.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis  # the 'redis' extra; this module is imported only when used
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..engine.errors import ProxyError
from ..engine.state import Admission, BudgetCheck, LeaseCheck, WindowCheck

log = logging.getLogger("rsql.state")

# KEYS: windows..., leases..., budgets...   (calendar-day windows and budgets get ':d<day>')
# ARGV: nw, nl, nb, lease_id, then per window: amount, seconds, calendar(0/1);
#       per lease: capacity, ttl; per budget: limit, reserve
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local day = math.floor(now / 86400)
local to_midnight = (day + 1) * 86400 - now
local nw, nl, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lease_id = ARGV[4]
local a = 5
for i = 1, nw do
  local key, amount, secs, cal = KEYS[i], tonumber(ARGV[a]), tonumber(ARGV[a+1]), ARGV[a+2]
  if cal == '1' then
    local used = tonumber(redis.call('GET', key .. ':d' .. day) or '0')
    if used >= amount then return {i, tostring(to_midnight), tostring(used)} end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - secs)
    local used = redis.call('ZCARD', key)
    if used >= amount then
      local oldest = redis.call('ZRANGE', key, used - amount, used - amount, 'WITHSCORES')
      return {i, tostring(tonumber(oldest[2]) + secs - now), tostring(used)}
    end
  end
  a = a + 3
end
for i = 1, nl do
  local key, cap = KEYS[nw+i], tonumber(ARGV[a])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local used = redis.call('ZCARD', key)
  if used >= cap then return {nw+i, '1', tostring(used)} end
  a = a + 2
end
for i = 1, nb do
  local key, limit, reserve = KEYS[nw+nl+i] .. ':d' .. day, tonumber(ARGV[a]), tonumber(ARGV[a+1])
  local spent = tonumber(redis.call('GET', key) or '0')
  if spent + reserve > limit + 1e-12 then return {nw+nl+i, tostring(to_midnight), tostring(spent)} end
  a = a + 2
end
-- every check passed: count them all
a = 5
for i = 1, nw do
  local key, secs, cal = KEYS[i], tonumber(ARGV[a+1]), ARGV[a+2]
  if cal == '1' then
    local k = key .. ':d' .. day
    redis.call('INCR', k)
    redis.call('EXPIRE', k, math.ceil(to_midnight) + 3600)
  else
    redis.call('ZADD', key, now, lease_id .. ':' .. i)
    redis.call('PEXPIRE', key, math.ceil(secs * 1000) + 1000)
  end
  a = a + 3
end
for i = 1, nl do
  local key, ttl = KEYS[nw+i], tonumber(ARGV[a+1])
  redis.call('ZADD', key, now + ttl, lease_id)
  redis.call('PEXPIRE', key, math.ceil(ttl * 1000) + 1000)
  a = a + 2
end
for i = 1, nb do
  local k, reserve = KEYS[nw+nl+i] .. ':d' .. day, ARGV[a+1]
  redis.call('INCRBYFLOAT', k, reserve)
  redis.call('EXPIRE', k, math.ceil(to_midnight) + 3600)
  a = a + 2
end
return {0, '0', '0'}
"""

# KEYS: budgets; ARGV: delta
_SETTLE = """
local t = redis.call('TIME')
local day = math.floor((tonumber(t[1]) + tonumber(t[2]) / 1e6) / 86400)
for i = 1, #KEYS do
  local k = KEYS[i] .. ':d' .. day
  local v = tonumber(redis.call('INCRBYFLOAT', k, ARGV[1]))
  if v < 0 then redis.call('SET', k, '0', 'KEEPTTL') end
end
return 1
"""

# KEYS: windows; ARGV: lease_id, then per window: its index, calendar (0/1)
_REFUND = """
local t = redis.call('TIME')
local day = math.floor((tonumber(t[1]) + tonumber(t[2]) / 1e6) / 86400)
for i = 1, #KEYS do
  if ARGV[2*i+1] == '1' then
    local k = KEYS[i] .. ':d' .. day
    if tonumber(redis.call('GET', k) or '0') > 0 then redis.call('DECR', k) end
  else
    redis.call('ZREM', KEYS[i], ARGV[1] .. ':' .. ARGV[2*i])
  end
end
return 1
"""

# KEYS: windows, leases, budgets; ARGV: nw, nl, nb, then per window: seconds, calendar
_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local day = math.floor(now / 86400)
local nw, nl, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, nw do
  local key, secs, cal = KEYS[i], tonumber(ARGV[2+2*i]), ARGV[3+2*i]
  if cal == '1' then
    local used = tonumber(redis.call('GET', key .. ':d' .. day) or '0')
    table.insert(out, tostring(used))
    table.insert(out, tostring((day + 1) * 86400 - now))
  else
    local used = redis.call('ZCOUNT', key, now - secs, '+inf')
    local first = redis.call('ZRANGEBYSCORE', key, now - secs, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    table.insert(out, tostring(used))
    table.insert(out, first[2] and tostring(tonumber(first[2]) + secs - now) or '0')
  end
end
for i = 1, nl do
  table.insert(out, tostring(redis.call('ZCOUNT', KEYS[nw+i], now, '+inf')))
end
for i = 1, nb do
  table.insert(out, redis.call('GET', KEYS[nw+nl+i] .. ':d' .. day) or '0')
end
return out
"""

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


def connect(url: str) -> aioredis.Redis:
    """A client whose pool waits for a free connection under load.

    Why not the default pool: redis-py's asyncio pool raises MaxConnectionsError as soon as its
    connections are all in use, which would read as an outage (a 503 for every user) at a few
    hundred concurrent requests; a blocking pool queues them for up to `timeout` instead.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=64, timeout=5.0, socket_timeout=2.0, socket_connect_timeout=2.0,
        health_check_interval=15,
    )
    return aioredis.Redis(connection_pool=pool)


class StateUnavailable(ProxyError):
    status = 503
    type = "server_error"
    code = "state_unavailable"


class RedisState:
    """Limits, leases and budgets in Redis; `fail_open` decides what an outage means."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "rsql:", fail_open: bool = False) -> None:
        self.url = url
        self.prefix = prefix
        self.fail_open = fail_open
        self.redis = connect(url)
        self._admit = self.redis.register_script(_ADMIT)
        self._settle = self.redis.register_script(_SETTLE)
        self._read = self.redis.register_script(_READ)
        self._refund = self.redis.register_script(_REFUND)
        self.down_since: float | None = None

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _outage(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.time()
            log.error(
                "state backend %s unreachable (%s): %s", self.name, type(exc).__name__,
                "admitting requests without limits (fail_open)" if self.fail_open else "refusing requests with 503",
            )

    def _recovered(self) -> None:
        if self.down_since is not None:
            log.warning("state backend %s reachable again after %.0f s", self.name, time.time() - self.down_since)
            self.down_since = None

    async def admit(
        self, windows: list[WindowCheck], leases: list[LeaseCheck], budgets: list[BudgetCheck], lease_id: str
    ) -> Admission:
        keys = [self._k(w.key) for w in windows] + [self._k(c.key) for c in leases] + [self._k(b.key) for b in budgets]
        args: list[Any] = [len(windows), len(leases), len(budgets), lease_id]
        for w in windows:
            args += [w.amount, w.seconds, "1" if w.calendar_day else "0"]
        for c in leases:
            args += [c.capacity, c.ttl]
        for b in budgets:
            args += [repr(b.limit), repr(b.reserve)]
        try:
            idx, wait, used = await self._admit(keys=keys, args=args)
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            if self.fail_open:
                return Admission()
            raise StateUnavailable(
                "the proxy's shared state (Redis) is unreachable; try again shortly",
                headers={"Retry-After": "5"},
            ) from None
        self._recovered()
        idx = int(idx)
        if idx == 0:
            return Admission()
        checks: list[Any] = [*windows, *leases, *budgets]
        hit = checks[idx - 1]
        used_v: float = float(used)
        return Admission(hit, float(wait), used_v if isinstance(hit, BudgetCheck) else int(used_v))

    async def refund(self, windows: list[WindowCheck], lease_id: str) -> None:
        args: list[Any] = [lease_id]
        for i, w in enumerate(windows, start=1):  # members are "<lease id>:<window index>"
            args += [i, "1" if w.calendar_day else "0"]
        try:
            await self._refund(keys=[self._k(w.key) for w in windows], args=args)
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)

    async def release(self, leases: list[LeaseCheck], lease_id: str) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for c in leases:
                    pipe.zrem(self._k(c.key), lease_id)
                await pipe.execute()
        except _CONNECTION_ERRORS as exc:  # the lease expires on its own
            self._outage(exc)

    async def settle(self, budgets: list[BudgetCheck], delta: float) -> None:
        try:
            await self._settle(keys=[self._k(b.key) for b in budgets], args=[repr(delta)])
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)

    async def read(
        self, windows: list[WindowCheck], leases: list[LeaseCheck], budgets: list[BudgetCheck]
    ) -> tuple[list[tuple[int, float]], list[int], list[float]]:
        keys = [self._k(w.key) for w in windows] + [self._k(c.key) for c in leases] + [self._k(b.key) for b in budgets]
        args: list[Any] = [len(windows), len(leases), len(budgets)]
        for w in windows:
            args += [w.seconds, "1" if w.calendar_day else "0"]
        try:
            out = [x.decode() if isinstance(x, bytes) else str(x) for x in await self._read(keys=keys, args=args)]
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            raise StateUnavailable("the proxy's shared state (Redis) is unreachable") from None
        nw = len(windows)
        wuse = [(int(float(out[2 * i])), float(out[2 * i + 1])) for i in range(nw)]
        luse = [int(float(v)) for v in out[2 * nw : 2 * nw + len(leases)]]
        spent = [float(v) for v in out[2 * nw + len(leases) :]]
        return wuse, luse, spent

    async def reset(self, prefix: str) -> int:
        n = 0
        async for key in self.redis.scan_iter(match=self._k(prefix) + "*", count=500):
            n += await self.redis.delete(key)
        return n

    async def ping(self) -> bool:
        try:
            await self.redis.ping()
        except _CONNECTION_ERRORS as exc:
            self._outage(exc)
            return False
        self._recovered()
        return True

    async def close(self) -> None:
        await self.redis.aclose()
