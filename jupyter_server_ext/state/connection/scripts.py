"""The Lua scripts of the Redis state, as functions that the scripts below combine.

Why one module of functions: a request's admission (its user's windows, leases and budgets)
and its key pick run in one script call, with other requests' admissions (``ADMIT_MANY``); the
writes at requests' first bytes and ends run as another (``APPLY``); ``redis_batch`` sends them.
Times come from Redis's own clock (TIME), so replicas with skewed clocks agree on windows and on
midnight UTC.

Upstream keys, per (account, model) under ``<prefix>up:<account>:<model>``:
``:fly`` requests in flight (member ``<slot>:<tokens>``, or ``<slot>:<tokens>:s`` once the
request is stamped; score: when it expires), ``:done`` request stamps (member ``<slot>``),
``:tok`` token use stamped at completion (member ``<slot>:<tokens>``), ``:prov`` the
provider's last x-ratelimit headers, ``:cool`` a 429's cooldown, ``:coolz`` the cooldowns of
429s that may be about one request's size (member: the least size cooled; score: until when),
``:last`` when the account last sent (Redis time; pacing, ``Bucket.wait_time``).

The line of waiting requests every replica shares, per model: ``<prefix>up:line:<model>``
(member: a request's ticket; score: when it came, Redis time) and ``...:seen`` (score: when it
last asked). A request that finds no room, or finds room that those who came before it wait
for, holds its place there; room goes to it only while fewer who came before it wait at other
replicas than the keys have room for (requests of its size, each account's windows counted
once). Those at its own replica wait behind it in that replica's line, which keeps their
order. One who has not asked for ``LINE_QUIET`` seconds (its replica is gone, or it waits
behind others at its own replica) is passed over until it asks again, in its place.
"""

from __future__ import annotations

from ...engine.upstreams.buckets import PACED_SHARE, PACED_WINDOW_SECONDS

# a waiting request's head asks again this often (``SharedPool.poll_seconds``: releases at
# other replicas send no event here), and so does one the shared line holds back
HEAD_POLL = 0.05
# the first in the shared line, waiting for a release (an in-flight cap), asks this often
FIRST_POLL = 0.02
# a place in the shared line silent this long is passed over (a stalled event loop's head
# gets its place back when it asks)
LINE_QUIET = 0.5
# a line's keys expire this long after anyone last joined it or asked (its quiet members
# are passed over long before)
LINE_KEEP_MS = 120_000

_CLOCK = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function tok_of(member) return tonumber(string.match(member, '^[^:]*:(%d+)') or '0') end
"""

# admit(K, A, a, now): A[a..]: nw, nl, nb, lease_id, then per window: amount, seconds,
# calendar (0/1); per lease: capacity, ttl; per budget: limit, reserve. K: the keys of the
# windows, leases, budgets. Refused: {index, wait, used}. Admitted: {0, '0', '0', then per
# window: used, seconds until its oldest request leaves} (what the quota headers say).
_ADMIT_FN = """
local function admit(K, A, a, now)
  local day = math.floor(now / 86400)
  local to_midnight = (day + 1) * 86400 - now
  local nw, nl, nb = tonumber(A[a]), tonumber(A[a+1]), tonumber(A[a+2])
  local lease_id = A[a+3]
  local p = a + 4
  for i = 1, nw do
    local key, amount, secs, cal = K[i], tonumber(A[p]), tonumber(A[p+1]), A[p+2]
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
    p = p + 3
  end
  for i = 1, nl do
    local key, cap = K[nw+i], tonumber(A[p])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local used = redis.call('ZCARD', key)
    if used >= cap then return {nw+i, '1', tostring(used)} end
    p = p + 2
  end
  for i = 1, nb do
    local key, limit, reserve = K[nw+nl+i] .. ':d' .. day, tonumber(A[p]), tonumber(A[p+1])
    local spent = tonumber(redis.call('GET', key) or '0')
    if spent + reserve > limit + 1e-12 then return {nw+nl+i, tostring(to_midnight), tostring(spent)} end
    p = p + 2
  end
  -- every check passed: count them all
  local out = {0, '0', '0'}
  p = a + 4
  for i = 1, nw do
    local key, secs, cal = K[i], tonumber(A[p+1]), A[p+2]
    if cal == '1' then
      local k = key .. ':d' .. day
      local used = redis.call('INCR', k)
      redis.call('EXPIRE', k, math.ceil(to_midnight) + 3600)
      out[#out+1] = tostring(used)
      out[#out+1] = tostring(to_midnight)
    else
      redis.call('ZADD', key, now, lease_id .. ':' .. i)
      redis.call('PEXPIRE', key, math.ceil(secs * 1000) + 1000)
      local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      out[#out+1] = tostring(redis.call('ZCARD', key))
      out[#out+1] = tostring(tonumber(first[2]) + secs - now)
    end
    p = p + 3
  end
  for i = 1, nl do
    local key, ttl = K[nw+i], tonumber(A[p+1])
    redis.call('ZADD', key, now + ttl, lease_id)
    redis.call('PEXPIRE', key, math.ceil(ttl * 1000) + 1000)
    p = p + 2
  end
  for i = 1, nb do
    local k, reserve = K[nw+nl+i] .. ':d' .. day, A[p+1]
    redis.call('INCRBYFLOAT', k, reserve)
    redis.call('EXPIRE', k, math.ceil(to_midnight) + 3600)
    p = p + 2
  end
  return out
end
"""

# pick(A, a, now): A[a..]: prefix, model, tokens, slot, ttl, home, shared, line,
#   ticket, ago, n, then per
#   candidate key: alias, account, nrates, (amount, secs)*, ntokrates, (amount, secs)*,
#   in-flight cap, and what of the request its provider's own token window counts (the prompt,
#   or all `tokens`). `home`: the key naming the request's conversation's home account ('':
#   none; set when an account answers it, the `home` write, upstreams/affinity.py); `shared`:
#   its user's stable prefix's, read when the conversation has no home ('': none). `line`: the
#   model's line every replica shares ('': the request waits in none, a failover's attempt),
#   where `ticket` came `ago` seconds ago.
# Takes a slot on a candidate of the home account that has room, else on the one with the most
# headroom (of equals, the account that sent least recently): {index, '0'}; else {0, wait}
# with the seconds until one may have room ('-1': only a request in flight ending can make
# room).
_PICK_FN = """
local function pick(A, a, now)
  local prefix, model, tokens, slot, ttl = A[a], A[a+1], tonumber(A[a+2]), A[a+3], tonumber(A[a+4])
  local home, shared = A[a+5], A[a+6]
  local line, ticket, ago = A[a+7], A[a+8], tonumber(A[a+9])
  local n = tonumber(A[a+10])
  local p = a + 11
  local at = home ~= '' and redis.call('GET', home) or false
  if not at and shared ~= '' then at = redis.call('GET', shared) end
  local best, best_share, best_keys, best_home, best_last = 0, -1e9, nil, false, 0
  local soonest = nil
  -- room for requests of this size, per account (its windows) and per key (in-flight caps)
  local acct_fits, acct_caps = {}, {}
  for i = 1, n do
    local alias, acct = A[p], A[p+1]
    local nr = tonumber(A[p+2]); p = p + 3
    local rates = {}
    for j = 1, nr do rates[j] = {tonumber(A[p]), tonumber(A[p+1])}; p = p + 2 end
    local nt = tonumber(A[p]); p = p + 1
    local trates = {}
    for j = 1, nt do trates[j] = {tonumber(A[p]), tonumber(A[p+1])}; p = p + 2 end
    -- paced: windows up to this many seconds past half are paced (0: none), unless the key's
    -- answers take the gap or longer to their first byte (fb, -1: none yet; pacing_gap)
    local cap, counted, paced = tonumber(A[p]), tonumber(A[p+1]), tonumber(A[p+2])
    local fb = tonumber(A[p+3]); p = p + 4
    local base = prefix .. acct .. ':' .. model
    local inf = prefix .. 'inf:' .. alias
    local fly, done, tok, prov = base .. ':fly', base .. ':done', base .. ':tok', base .. ':prov'
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
    if ok then
      -- cooldowns for requests at least as large as one a 429 refused (Bucket.wait_time)
      local cz = redis.call('ZRANGEBYSCORE', base .. ':coolz', '(' .. now, '+inf', 'WITHSCORES')
      for k = 1, #cz, 2 do
        if counted >= tonumber(cz[k]) then
          local w = tonumber(cz[k+1]) - now
          if ok or w > wait then wait = w end
          ok = false
        end
      end
    end
    local share = 1.0
    local fits, cap_fits = 1e9, 1e9  -- requests of this size the account's windows, the key's cap take
    if ok and cap > 0 then
      -- a self-hosted server's in-flight cap, over every replica; leases expire with crashed ones
      redis.call('ZREMRANGEBYSCORE', inf, '-inf', now)
      local n = redis.call('ZCARD', inf)
      if n >= cap then ok = false; wait = nil else share = 1 - n / cap; cap_fits = cap - n end
    end
    if ok then
      redis.call('ZREMRANGEBYSCORE', fly, '-inf', now)
      local flying = redis.call('ZRANGE', fly, 0, -1)
      local nfly, ftok = 0, 0
      for _, m in ipairs(flying) do
        ftok = ftok + tok_of(m)
        if string.sub(m, -2) ~= ':s' then nfly = nfly + 1 end
      end
      for _, r in ipairs(rates) do
        local cnt = redis.call('ZCOUNT', done, now - r[2], '+inf')
        if cnt + nfly >= r[1] then
          ok = false
          local keep = r[1] - 1 - nfly
          if keep < 0 then wait = nil
          else
            local e = redis.call('ZRANGEBYSCORE', done, now - r[2], '+inf', 'WITHSCORES', 'LIMIT', cnt - 1 - keep, 1)
            local w = tonumber(e[2]) + r[2] - now
            if wait ~= nil and w > wait then wait = w end
          end
        else
          local gap = PACED_SHARE * r[2] / r[1]
          if r[2] <= paced and r[1] >= 2 and 2 * (cnt + nfly) >= r[1] and fb >= 0 and fb < gap then
            local w = tonumber(redis.call('GET', base .. ':last') or '0') + gap - now
            if w > 0 then
              ok = false
              if wait ~= nil and w > wait then wait = w end
            end
          end
          share = math.min(share, 1 - (cnt + nfly) / r[1])
          fits = math.min(fits, r[1] - cnt - nfly)
        end
      end
      for _, r in ipairs(trates) do
        local ent = redis.call('ZRANGEBYSCORE', tok, now - r[2], '+inf', 'WITHSCORES')
        local used = 0
        for k = 1, #ent, 2 do used = used + tok_of(ent[k]) end
        local room = r[1] - ftok - tokens
        if used > room then
          ok = false
          if room < 0 then wait = nil
          else
            local k = 1
            while used > room and k <= #ent do used = used - tok_of(ent[k]); k = k + 2 end
            local w = tonumber(ent[k-1]) + r[2] - now
            if wait ~= nil and w > wait then wait = w end
          end
        else
          share = math.min(share, 1 - (used + ftok + tokens) / r[1])
          fits = math.min(fits, 1 + math.floor((room - used) / math.max(tokens, 1)))
        end
      end
      local pv = redis.call('HMGET', prov, 'req_left', 'req_reset', 'tok_left', 'tok_reset')
      if pv[1] and tonumber(pv[1]) <= 0 and tonumber(pv[2]) > now then
        ok = false; if wait ~= nil then wait = math.max(wait, tonumber(pv[2]) - now) end
      end
      if pv[3] and tonumber(pv[3]) < counted and tonumber(pv[4]) > now then
        ok = false; if wait ~= nil then wait = math.max(wait, tonumber(pv[4]) - now) end
      end
      if pv[1] and tonumber(pv[2]) > now then fits = math.min(fits, tonumber(pv[1])) end
      if pv[3] and tonumber(pv[4]) > now then
        fits = math.min(fits, math.floor(tonumber(pv[3]) / math.max(counted, 1)))
      end
    end
    if ok then
      acct_fits[acct] = math.max(fits, 1)
      acct_caps[acct] = (acct_caps[acct] or 0) + cap_fits
      -- the conversation's home first (its prompt cache is there), then the most headroom,
      -- then the account that sent least recently (every replica sees the same: ties spread)
      local mine = at and acct == at
      local last = tonumber(redis.call('GET', base .. ':last') or '0')
      if (mine and not best_home)
        or (mine == best_home and (share > best_share or (share == best_share and last < best_last)))
      then
        best, best_share, best_home, best_last = i, share, mine, last
        best_keys = {fly, prov, cap > 0 and inf or '', counted, base, acct}
      end
    elseif wait ~= nil and wait > 0 then
      if soonest == nil or wait < soonest then soonest = wait end
    end
  end
  if line ~= '' and (best == 0 or redis.call('EXISTS', line) == 1) then
    -- the line replicas share: room is this request's only while fewer who came before it
    -- wait elsewhere than the keys have room for (requests of its size); else it holds its
    -- place (its next ask refreshes it)
    local seen, came = line .. ':seen', now - ago
    for _, q in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', now - LINE_QUIET)) do
      redis.call('ZREM', line, q)
      redis.call('ZREM', seen, q)
    end
    local ready = 0
    for ac, f in pairs(acct_fits) do ready = ready + math.min(f, acct_caps[ac]) end
    -- who came before it at other replicas (its own replica's wait behind it there): those
    -- ahead of its place, or who came before it when it has none yet (its `came` moves by
    -- the time its ask took to reach Redis: not a place)
    local placed = redis.call('ZSCORE', line, ticket)
    local before = placed and ('(' .. placed) or string.format('(%.6f', came)
    local here = string.match(ticket, '^[^:]*:') or ticket
    local ahead = 0
    for _, t in ipairs(redis.call('ZRANGEBYSCORE', line, '-inf', before)) do
      if string.sub(t, 1, #here) ~= here then ahead = ahead + 1 end
    end
    if best > 0 and ahead < ready then
      redis.call('ZREM', line, ticket)
      redis.call('ZREM', seen, ticket)
    else
      if best > 0 then
        best, soonest = 0, HEAD_POLL  -- the room is theirs: it asks at a head's poll
      elseif ahead == 0 and soonest == nil then
        -- first in line, for room only a release frees: one at another replica sends no
        -- event here, and the room would stand idle until this one's poll
        soonest = FIRST_POLL
      end
      redis.call('ZADD', line, 'NX', came, ticket)
      redis.call('ZADD', seen, now, ticket)
      redis.call('PEXPIRE', line, LINE_KEEP_MS)
      redis.call('PEXPIRE', seen, LINE_KEEP_MS)
    end
  end
  if best > 0 then
    local fly, prov = best_keys[1], best_keys[2]
    redis.call('ZADD', fly, now + ttl, slot .. ':' .. tokens)
    redis.call('PEXPIRE', fly, math.ceil(ttl * 1000) + 1000)
    if best_keys[3] ~= '' then
      redis.call('ZADD', best_keys[3], now + ttl, slot)
      redis.call('PEXPIRE', best_keys[3], math.ceil(ttl * 1000) + 1000)
    end
    -- when its account last sent, for pacing (kept as long as the longest window paced)
    redis.call('SET', best_keys[5] .. ':last', tostring(now), 'PX', LAST_SENT_MS)
    local pv = redis.call('HMGET', prov, 'req_left', 'req_reset', 'tok_left', 'tok_reset')
    if pv[1] and tonumber(pv[2]) > now then redis.call('HINCRBY', prov, 'req_left', -1) end
    if pv[3] and tonumber(pv[4]) > now then redis.call('HINCRBY', prov, 'tok_left', -best_keys[4]) end
    return {best, '0'}
  end
  if soonest ~= nil then return {0, tostring(soonest)} end
  return {0, '-1'}
end
"""
for _name, _value in {
    "LAST_SENT_MS": int(PACED_WINDOW_SECONDS * 1000) + 1000,
    "PACED_SHARE": PACED_SHARE,
    "LINE_QUIET": LINE_QUIET,
    "HEAD_POLL": HEAD_POLL,
    "FIRST_POLL": FIRST_POLL,
    "LINE_KEEP_MS": LINE_KEEP_MS,
}.items():
    _PICK_FN = _PICK_FN.replace(_name, repr(_value))

# The writes batched by ``redis_batch``, each an op name and its arguments:
#   stamp  base, slot, tokens, ago, span, req_left, req_reset, tok_left, tok_reset, req_window,
#          req_counted ('' = absent): the provider counted the slot's request `ago` seconds
#          before now; where it counts req_counted in req_window and our window holds as many,
#          its requests-left clamp is dropped (``Bucket.observe_headers``)
#   end    base, slot, tokens, counted (0/1), used tokens, span, token span, in-flight key ('' = none)
#   observe base, req_left, req_reset, tok_left, tok_reset: a 429's x-ratelimit headers
#   unline line, ticket: a request leaves the line replicas share without a slot from it
#   home   key, shared key ('' = none), account, ms: the account that answered a conversation
#   fin    lease_id, nw, (key, calendar, index)*, nl, key*, nb, key*, delta
#          a request's end on the user's side: refund its windows, release its leases,
#          settle its budgets by delta
_APPLY_FN = """
local function observe(prov, now, req_left, req_reset, tok_left, tok_reset)
  local ttl = 0
  if req_left ~= '' then
    redis.call('HSET', prov, 'req_left', req_left, 'req_reset', tostring(now + tonumber(req_reset)))
    ttl = math.max(ttl, tonumber(req_reset))
  end
  if tok_left ~= '' then
    redis.call('HSET', prov, 'tok_left', tok_left, 'tok_reset', tostring(now + tonumber(tok_reset)))
    ttl = math.max(ttl, tonumber(tok_reset))
  end
  if ttl > 0 then redis.call('PEXPIRE', prov, math.ceil(ttl * 1000) + 1000) end
end
local function stamp_done(done, slot, at, span, now)
  redis.call('ZADD', done, at, slot)
  redis.call('ZREMRANGEBYSCORE', done, '-inf', now - span)
  redis.call('PEXPIRE', done, math.ceil(span * 1000) + 1000)
end
local function apply(A, now)
  local day = math.floor(now / 86400)
  local p = 1
  while p <= #A do
    local op = A[p]
    if op == 'stamp' then
      local base, slot, tokens = A[p+1], A[p+2], A[p+3]
      local fly = base .. ':fly'
      local exp = redis.call('ZSCORE', fly, slot .. ':' .. tokens)
      if exp then
        redis.call('ZREM', fly, slot .. ':' .. tokens)
        redis.call('ZADD', fly, exp, slot .. ':' .. tokens .. ':s')
      end
      stamp_done(base .. ':done', slot, now - tonumber(A[p+4]), tonumber(A[p+5]), now)
      local req_left = A[p+6]
      if A[p+10] ~= '' then
        local ours = redis.call('ZCOUNT', base .. ':done', now - tonumber(A[p+10]), '+inf')
        for _, m in ipairs(redis.call('ZRANGEBYSCORE', fly, now, '+inf')) do
          if string.sub(m, -2) ~= ':s' then ours = ours + 1 end
        end
        if ours >= tonumber(A[p+11]) then
          req_left = ''
          redis.call('HDEL', base .. ':prov', 'req_left', 'req_reset')
        end
      end
      observe(base .. ':prov', now, req_left, A[p+7], A[p+8], A[p+9])
      p = p + 12
    elseif op == 'end' then
      local base, slot, tokens = A[p+1], A[p+2], A[p+3]
      local fly = base .. ':fly'
      redis.call('ZREM', fly, slot .. ':' .. tokens)
      if A[p+8] ~= '' then redis.call('ZREM', A[p+8], slot) end
      local stamped = redis.call('ZREM', fly, slot .. ':' .. tokens .. ':s')
      if A[p+4] == '1' then
        if stamped == 0 then stamp_done(base .. ':done', slot, now, tonumber(A[p+6]), now) end
        local tspan = tonumber(A[p+7])
        if tspan > 0 then
          local tok = base .. ':tok'
          redis.call('ZADD', tok, now, slot .. ':' .. A[p+5])
          redis.call('ZREMRANGEBYSCORE', tok, '-inf', now - tspan)
          redis.call('PEXPIRE', tok, math.ceil(tspan * 1000) + 1000)
        end
      end
      p = p + 9
    elseif op == 'fin' then
      local lease_id = A[p+1]
      local nw = tonumber(A[p+2]); p = p + 3
      for i = 1, nw do
        local key, cal = A[p], A[p+1]
        if cal == '1' then
          local k = key .. ':d' .. day
          if tonumber(redis.call('GET', k) or '0') > 0 then redis.call('DECR', k) end
        else
          redis.call('ZREM', key, lease_id .. ':' .. A[p+2])
        end
        p = p + 3
      end
      local nl = tonumber(A[p]); p = p + 1
      for i = 1, nl do redis.call('ZREM', A[p], lease_id); p = p + 1 end
      local nb = tonumber(A[p]); p = p + 1
      local delta = A[p + nb]
      for i = 1, nb do
        local k = A[p] .. ':d' .. day
        if tonumber(delta) ~= 0 then
          local v = tonumber(redis.call('INCRBYFLOAT', k, delta))
          if v < 0 then redis.call('SET', k, '0', 'KEEPTTL') end
        end
        p = p + 1
      end
      p = p + 1
    elseif op == 'observe' then
      observe(A[p+1] .. ':prov', now, A[p+2], A[p+3], A[p+4], A[p+5])
      p = p + 6
    elseif op == 'unline' then
      redis.call('ZREM', A[p+1], A[p+2])
      redis.call('ZREM', A[p+1] .. ':seen', A[p+2])
      p = p + 3
    elseif op == 'home' then
      redis.call('SET', A[p+1], A[p+3], 'PX', A[p+4])
      if A[p+2] ~= '' then redis.call('SET', A[p+2], A[p+3], 'PX', A[p+4]) end
      p = p + 5
    else
      return redis.error_reply('unknown op ' .. tostring(op))
    end
  end
  return 1
end
"""

# Admissions of many requests (``redis_batch``): per request nk, its nk keys, m, its m admit
# arguments, np, its np pick arguments (np 0: no pick). Answers per request: its length, then
# admit's answer, with pick's two items after it when admitted and np > 0.
ADMIT_MANY = (
    _CLOCK
    + _ADMIT_FN
    + _PICK_FN
    + """
local now = clock()
local out = {}
local p = 1
while p <= #ARGV do
  local nk = tonumber(ARGV[p])
  local K = {}
  for i = 1, nk do K[i] = ARGV[p + i] end
  p = p + nk + 1
  local a = p + 1
  p = a + tonumber(ARGV[p])
  local pa = p + 1
  local np = tonumber(ARGV[p])
  p = pa + np
  local r = admit(K, ARGV, a, now)
  if r[1] == 0 and np > 0 then
    local got = pick(ARGV, pa, now)
    r[#r+1] = got[1]
    r[#r+1] = got[2]
  end
  out[#out+1] = #r
  for _, v in ipairs(r) do out[#out+1] = v end
end
return out
"""
)

PICK = _CLOCK + _PICK_FN + "return pick(ARGV, 1, clock())\n"

APPLY = _CLOCK + _APPLY_FN + "return apply(ARGV, clock())\n"

# KEYS[1]: a deadline key; ARGV: seconds. Only ever extends (a shorter 429 never shortens).
EXTEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], tostring(untl), 'PX', math.ceil(tonumber(ARGV[1]) * 1000))
end
return 1
"""

# KEYS[1]: a size-bounded cooldown set (``:coolz``); ARGV: seconds, the least size cooled,
# the most entries kept (those ending first give way). Only ever extends (Bucket.cool).
COOL_FROM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local untl = now + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cur = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]) or '0')
if untl > cur then redis.call('ZADD', KEYS[1], untl, ARGV[2]) end
local n, most = redis.call('ZCARD', KEYS[1]), tonumber(ARGV[3])
if n > most then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - most - 1) end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) * 1000) + 1000)
end
return 1
"""

# KEYS: windows, leases, budgets; ARGV: nw, nl, nb, then per window: seconds, calendar
READ = """
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

# A record kept in a bounded index, in one step (stored responses: engine/apis/responses/stored.py).
# KEYS[1]: the index (a sorted set: member the record's key, score when it expires), KEYS[2]:
# the records' sizes (a hash), KEYS[3]: the record's key. ARGV: the record, its TTL in ms, the
# most records and the most bytes the index keeps. Expired entries leave the index first; then
# the oldest records (and their values) go while it holds more than either cap, so concurrent
# writers can never leave more than the caps readable (a read-modify-write of the index could).
KEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ttl_ms = tonumber(ARGV[2])
local most, most_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], m)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl_ms / 1000, KEYS[3])
redis.call('HSET', KEYS[2], KEYS[3], string.len(ARGV[1]))
local n, total = redis.call('ZCARD', KEYS[1]), 0
for _, size in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(size) end
while n > 1 and (n > most or total > most_bytes) do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if oldest == KEYS[3] then oldest = redis.call('ZRANGE', KEYS[1], 1, 1)[1] end
  total = total - tonumber(redis.call('HGET', KEYS[2], oldest) or '0')
  redis.call('ZREM', KEYS[1], oldest)
  redis.call('HDEL', KEYS[2], oldest)
  redis.call('DEL', oldest)
  n = n - 1
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ttl_ms)
redis.call('PEXPIRE', KEYS[1], ttl_ms)
redis.call('PEXPIRE', KEYS[2], ttl_ms)
return n
"""

# KEYS: the index, the sizes, the record's key (as KEEP's): the record and its entry, gone.
FORGET = """
redis.call('ZREM', KEYS[1], KEYS[3])
redis.call('HDEL', KEYS[2], KEYS[3])
return redis.call('DEL', KEYS[3])
"""
