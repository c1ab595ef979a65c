"""The upstream pool with its capacity shared through Redis, for replicas.

Each replica keeps its own view of key health for reporting, but what must hold across all of
them lives in Redis: every (account, model) window (requests in flight and completed, with
their tokens), cooldowns after 429s, provider-reported headroom, open breakers and disabled
keys. Picking a key is one Lua script: it weighs every candidate, takes a slot on the best one
and says how long to wait when none has room.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from redis.exceptions import RedisError

from ..engine.pool import Key, Pool, Slot
from ..engine.window import parse_duration
from .redis import connect

log = logging.getLogger("rsql.state")
_DOWN = (RedisError, OSError)

# ARGV: prefix, model, tokens, slot, ttl, n, then per candidate:
#   alias, account, nrates, (amount, secs)*, ntokrates, (amount, secs)*
# Returns {index, wait}: index > 0 is the chosen candidate; else wait seconds ('-1': only a
# request in flight finishing can make room).
_PICK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local prefix, model, tokens, slot, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local a = 7
local best, best_share = 0, -1e9
local best_keys = nil
local soonest = nil
local release_only = false
local function tok_of(member) return tonumber(string.match(member, ':(%d+)$') or '0') end
for i = 1, n do
  local alias, acct = ARGV[a], ARGV[a+1]
  local nr = tonumber(ARGV[a+2]); a = a + 3
  local rates = {}
  for j = 1, nr do rates[j] = {tonumber(ARGV[a]), tonumber(ARGV[a+1])}; a = a + 2 end
  local nt = tonumber(ARGV[a]); a = a + 1
  local trates = {}
  for j = 1, nt do trates[j] = {tonumber(ARGV[a]), tonumber(ARGV[a+1])}; a = a + 2 end
  local base = prefix .. acct .. ':' .. model
  local done, fly, prov = base .. ':done', base .. ':fly', base .. ':prov'
  local wait = 0
  local ok = true
  if redis.call('EXISTS', prefix .. 'dis:' .. alias) == 1 then ok = false; wait = nil end
  if ok then
    local brk = redis.call('PTTL', prefix .. 'brk:' .. alias)
    if brk > 0 then ok = false; wait = brk / 1000 end
  end
  if ok then
    local cool = tonumber(redis.call('GET', base .. ':cool') or '0')
    if cool > now then ok = false; wait = cool - now end
  end
  local share = 1.0
  if ok then
    redis.call('ZREMRANGEBYSCORE', fly, '-inf', now)
    local flying = redis.call('ZRANGE', fly, 0, -1)
    local nfly, ftok = #flying, 0
    for _, m in ipairs(flying) do ftok = ftok + tok_of(m) end
    for _, r in ipairs(rates) do
      local cnt = redis.call('ZCOUNT', done, now - r[2], '+inf')
      if cnt + nfly >= r[1] then
        ok = false
        local keep = r[1] - 1 - nfly
        if keep < 0 then release_only = true; wait = nil
        else
          local e = redis.call('ZRANGEBYSCORE', done, now - r[2], '+inf', 'WITHSCORES', 'LIMIT', cnt - 1 - keep, 1)
          local w = tonumber(e[2]) + r[2] - now
          if wait ~= nil and w > wait then wait = w end
        end
      else
        share = math.min(share, 1 - (cnt + nfly) / r[1])
      end
    end
    for _, r in ipairs(trates) do
      local ent = redis.call('ZRANGEBYSCORE', done, now - r[2], '+inf', 'WITHSCORES')
      local used = 0
      for k = 1, #ent, 2 do used = used + tok_of(ent[k]) end
      local room = r[1] - ftok - tokens
      if used > room then
        ok = false
        if room < 0 then release_only = true; wait = nil
        else
          local k = 1
          while used > room and k <= #ent do used = used - tok_of(ent[k]); k = k + 2 end
          local w = tonumber(ent[k-1]) + r[2] - now
          if wait ~= nil and w > wait then wait = w end
        end
      else
        share = math.min(share, 1 - (used + ftok + tokens) / r[1])
      end
    end
    local p = redis.call('HMGET', prov, 'req_left', 'req_reset', 'tok_left', 'tok_reset')
    if p[1] and tonumber(p[1]) <= 0 and tonumber(p[2]) > now then
      ok = false; if wait ~= nil then wait = math.max(wait, tonumber(p[2]) - now) end
    end
    if p[3] and tonumber(p[3]) < tokens and tonumber(p[4]) > now then
      ok = false; if wait ~= nil then wait = math.max(wait, tonumber(p[4]) - now) end
    end
  end
  if ok then
    if share > best_share then best, best_share, best_keys = i, share, {fly, prov, done} end
  elseif wait ~= nil and wait > 0 then
    if soonest == nil or wait < soonest then soonest = wait end
  end
end
if best > 0 then
  local fly, prov = best_keys[1], best_keys[2]
  redis.call('ZADD', fly, now + ttl, slot .. ':' .. tokens)
  redis.call('PEXPIRE', fly, math.ceil(ttl * 1000) + 1000)
  local p = redis.call('HMGET', prov, 'req_left', 'req_reset', 'tok_left', 'tok_reset')
  if p[1] and tonumber(p[2]) > now then redis.call('HINCRBY', prov, 'req_left', -1) end
  if p[3] and tonumber(p[4]) > now then redis.call('HINCRBY', prov, 'tok_left', -tokens) end
  return {best, '0'}
end
if soonest ~= nil then return {0, tostring(soonest)} end
return {0, '-1'}
"""

# ARGV: prefix, account, model, slot, reserved tokens, counted, used tokens, span
_END = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local base = ARGV[1] .. ARGV[2] .. ':' .. ARGV[3]
redis.call('ZREM', base .. ':fly', ARGV[4] .. ':' .. ARGV[5])
if ARGV[6] == '1' then
  local done = base .. ':done'
  redis.call('ZADD', done, now, ARGV[4] .. ':' .. ARGV[7])
  redis.call('ZREMRANGEBYSCORE', done, '-inf', now - tonumber(ARGV[8]))
  redis.call('PEXPIRE', done, math.ceil(tonumber(ARGV[8]) * 1000) + 1000)
end
return 1
"""

# KEYS[1]: a deadline key; ARGV: seconds. Only ever extends (a shorter 429 never shortens).
_EXTEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], tostring(untl), 'PX', math.ceil(tonumber(ARGV[1]) * 1000))
end
return 1
"""

# KEYS[1]: prov hash; ARGV: req_left, req_reset_secs, tok_left, tok_reset_secs ('' = absent)
_OBSERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ttl = 0
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 'req_left', ARGV[1], 'req_reset', tostring(now + tonumber(ARGV[2])))
  ttl = math.max(ttl, tonumber(ARGV[2]))
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'tok_left', ARGV[3], 'tok_reset', tostring(now + tonumber(ARGV[4])))
  ttl = math.max(ttl, tonumber(ARGV[4]))
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000) end
return 1
"""


class SharedPool(Pool):
    """A Pool whose capacity, cooldowns, breakers and disabled keys live in Redis."""

    poll_seconds = 0.05  # releases on other replicas send no local event

    def __init__(self, *args: Any, url: str, prefix: str = "rsql:", lease_seconds: float = 600.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.redis = connect(url)
        self.prefix = prefix + "up:"
        self.lease_seconds = lease_seconds
        self._pick = self.redis.register_script(_PICK)
        self._end = self.redis.register_script(_END)
        self._extend = self.redis.register_script(_EXTEND)
        self._observe = self.redis.register_script(_OBSERVE)
        self._rotation = 0

    async def pick(self, model: str, tokens: int, exclude: set[str]) -> Slot | float | None:
        # local checks first: model served, key usable here, request not too large
        ready, soonest = self.screen(model, tokens, exclude, self.clock())
        if not ready:
            return soonest if soonest != math.inf else None
        # rotate the order so ties spread over keys, replicas and accounts
        self._rotation += 1
        r = self._rotation % len(ready)
        cands = ready[r:] + ready[:r]
        args: list[Any] = [self.prefix, model, tokens, f"{time.time_ns()}-{id(self)}-{self._rotation}", self.lease_seconds, len(cands)]
        for key in cands:
            rates, trates = self.account_rates(key.spec.account)
            args += [key.alias, key.spec.account, len(rates)]
            for rate in rates:
                args += [rate.amount, rate.seconds]
            args.append(len(trates))
            for rate in trates:
                args += [rate.amount, rate.seconds]
        try:
            idx, wait = await self._pick(keys=[], args=args)
        except _DOWN as exc:
            # Redis is down (and fail_open let the request through): count on this replica's
            # own windows until it is back, which cannot hold a limit across replicas
            self._down(exc)
            return self.try_pick(model, tokens, exclude)
        self._up()
        idx = int(idx)
        if idx == 0:
            w = float(wait)
            return None if w < 0 else w
        key = cands[idx - 1]
        return self.claim_slot(key, self.bucket(key, model), model, tokens, self.clock(), ref=args[3])

    _down_since: float | None = None

    def _down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.time()
            log.error("shared upstream state unreachable (%s): upstream limits are counted per replica", type(exc).__name__)

    def _up(self) -> None:
        if self._down_since is not None:
            log.warning("shared upstream state reachable again")
            self._down_since = None

    async def _quietly(self, script: Any, **kw: Any) -> None:
        try:
            await script(**kw)
        except _DOWN as exc:  # the keys expire on their own; nothing to undo later
            self._down(exc)

    async def release(self, slot: Slot, *, tokens: int | None = None, counted: bool = True) -> None:
        if not slot.ref:  # taken from the local windows while Redis was down
            await super().release(slot, tokens=tokens, counted=counted)
            return
        self.free_slot(slot)
        used = slot.tokens if tokens is None else tokens
        span = max((r.seconds for r in sum(self.account_rates(slot.key.spec.account), ())), default=60.0)
        await self._quietly(
            self._end,
            keys=[],
            args=[self.prefix, slot.key.spec.account, slot.model, slot.ref, slot.tokens,
                  "1" if counted else "0", used, span],
        )
        self._notify()

    async def succeeded(self, slot: Slot, headers) -> None:
        slot.key.breaker.success()
        await self._publish_headers(slot, headers)

    async def _publish_headers(self, slot: Slot, headers) -> None:
        get = headers.get
        req_left, req_reset = get("x-ratelimit-remaining-requests"), parse_duration(get("x-ratelimit-reset-requests"))
        tok_left, tok_reset = get("x-ratelimit-remaining-tokens"), parse_duration(get("x-ratelimit-reset-tokens"))
        have_req = req_left is not None and req_reset is not None
        have_tok = tok_left is not None and tok_reset is not None
        if not (have_req or have_tok):
            return
        prov = f"{self.prefix}{slot.key.spec.account}:{slot.model}:prov"
        await self._quietly(
            self._observe,
            keys=[prov],
            args=[req_left if have_req else "", req_reset if have_req else 0,
                  tok_left if have_tok else "", tok_reset if have_tok else 0],
        )

    async def rate_limited(self, slot: Slot, retry_after: float | None, headers) -> float:
        secs = await super().rate_limited(slot, retry_after, headers)
        await self._publish_headers(slot, headers)
        await self._quietly(self._extend, keys=[f"{self.prefix}{slot.key.spec.account}:{slot.model}:cool"], args=[secs])
        return secs

    async def failed(self, slot: Slot, what: str) -> bool:
        opened = await super().failed(slot, what)
        if opened:
            secs = slot.key.breaker.open_until - self.clock()
            await self._quietly(self._extend, keys=[f"{self.prefix}brk:{slot.key.alias}"], args=[max(0.001, secs)])
        return opened

    async def disable(self, key: Key, why: str) -> None:
        await super().disable(key, why)
        try:
            await self.redis.set(f"{self.prefix}dis:{key.alias}", json.dumps({"why": why}))
        except _DOWN as exc:
            self._down(exc)

    async def enable(self, key: Key) -> None:
        try:
            await self.redis.delete(f"{self.prefix}dis:{key.alias}", f"{self.prefix}brk:{key.alias}")
        except _DOWN as exc:
            self._down(exc)
        await super().enable(key)

    async def close(self) -> None:
        await self.redis.aclose()


class RedisAlertLedger:
    """Alert claims and the recent-alerts list in Redis, so replicas send each alert once and
    every replica shows the same list."""

    def __init__(self, redis: Any, prefix: str = "rsql:", keep: int = 100) -> None:
        self.redis = redis
        self.prefix = prefix + "alert:"
        self.keep = keep

    async def claim(self, name: str, ttl: float) -> bool:
        try:
            return bool(await self.redis.set(self.prefix + "claim:" + name, "1", nx=True, ex=max(1, math.ceil(ttl))))
        except _DOWN as exc:
            # better one alert per replica than none while Redis is down
            log.warning("alert claim without Redis (%s): this replica sends it", type(exc).__name__)
            return True

    async def record(self, alert: dict[str, Any]) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                # delivery states are this replica's own; the shared list says what was raised
                pipe.lpush(self.prefix + "recent", json.dumps({k: v for k, v in alert.items() if k != "delivery"}))
                pipe.ltrim(self.prefix + "recent", 0, self.keep - 1)
                await pipe.execute()
        except _DOWN as exc:
            log.warning("alert not kept in the shared list (%s)", type(exc).__name__)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        try:
            raw = await self.redis.lrange(self.prefix + "recent", 0, limit - 1)
        except _DOWN as exc:
            log.warning("recent alerts unavailable without Redis (%s)", type(exc).__name__)
            return []
        return [json.loads(r) for r in raw]
