"""Exact moving-window accounting of one provider (account, model) bucket.

Why a log and not a counter: a fixed window lets 2x the limit through at window edges and a
token bucket whose burst equals the limit does the same, and either trips the provider's own
window. The log is exact, and its size is bounded by the largest limit.

When a request is stamped (docs/architecture.md, "Moving windows and stamping"): it counts in
full while in flight, and is stamped once the provider has certainly counted it, at the first
byte of its answer (its head), or earlier where the provider's own x-ratelimit headers say when it
arrived (``provider_stamp``), so our window is never shorter than the provider's. Tokens are
known only at the end, so they stay reserved in flight and are stamped at completion.

Why pacing: while requests wait for a model's capacity, a window more than half used lets its
next request go only nine tenths of `seconds / amount` after the last one it let go. A moving window left to
itself repeats its first burst forever (a 10-per-2 s key under load sends ten in its first
second, then none for a second, and so on), so what a client sees in any span depends on where
the span falls; paced, the same capacity is delivered evenly. The first half of a window still
goes at once, and with nobody waiting all of it does (docs/architecture.md, "Moving windows
and stamping").
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping
from typing import Any

from .specs import Rate

# A limit read from a provider's error text, not its headers: one below this is not believed
# (no hosted provider takes fewer tokens a minute; a real one that small still comes from
# x-ratelimit-limit-tokens), and none is kept longer than this, so a wrong lesson heals
MIN_LEARNED_LIMIT = 4_000
LEARNED_SECONDS = 600.0
# size-bounded cooldowns kept per bucket at most (the ones ending first give way)
MAX_SIZE_COOLS = 16
# pacing (above) holds for request windows up to this long: a longer one (a day's requests)
# would hold its second half back for hours, where evening out a burst gains nothing
PACED_WINDOW_SECONDS = 60.0
# paced a little closer than the window's even spacing: the exact window stays the limit that
# binds, so a timer that fires late delays one request, not every one after it
PACED_SHARE = 0.9
# a key whose answers take this many even spacings of a window (seconds / amount) or longer to
# their first byte keeps to the provider's reset (provider_count). Past one spacing a later
# request has arrived before each answer; the half spacing more keeps a key from flipping as a
# loaded machine's answers drift past one (the suite's paced key, 10 ms answers on a 6-per-s
# window, took longer than its pacing gap under the full run's load). Measured: at 2 spacings,
# 93.0% of capacity without the clamp and 99.9% with it; the paced quota runs are at 0.05-0.25.
HELD_SPACINGS = 1.5
# request stamps are kept this long past the longest window: an answer's headers say how the
# provider's window stood at its head, read when its first event comes (a stream's head at once
# and its first token 0.2 s later: a stamp that left meanwhile must still be counted, or every
# full window is held to the provider's reset, 83% of capacity). Headers read later than this
# after their head keep the provider's clamp (``Pool.succeeded``)
HEAD_LAG = 60.0


def pacing_gap(rate: Rate, used: int, first_byte: float | None = 0.0) -> float:
    """How long after the last request sent a paced request may follow, with `used` of
    `rate` taken (0.0: not paced): a window past half its amount spaces the rest evenly.

    `first_byte`: how long the key's answers take to their first byte. Not paced when that is
    the gap or longer, or not known yet (None: no answer so far): a provider's reset header
    names the newest request it counted, which is this one only while no later one of ours has
    arrived before its answer; paced, a later one would have, and every stamp would move to it
    (2 s JSON answers on 10-per-10 s keys: 84.5% of capacity paced, 99.9% not)."""
    if rate.seconds > PACED_WINDOW_SECONDS or rate.amount < 2 or 2 * used < rate.amount:
        return 0.0
    gap = PACED_SHARE * rate.seconds / rate.amount
    return gap if first_byte is not None and first_byte < gap else 0.0


_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$"
)


def parse_duration(text: str | None) -> float | None:
    """Parse reset headers as providers send them: "2m59.56s", "7.66s", "20ms", "1h0m0s", "3"."""
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    m = _DURATION.match(text)
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def provider_stamp(headers: Any, now: float, sent: float, rates: tuple[Rate, ...]) -> float:
    """When the provider counted a request, from its answer's x-ratelimit headers; `now` (the
    first byte) when they say nothing usable.

    OpenAI documents x-ratelimit-reset-requests as the time until its window is back to its
    initial state: for a moving window, when the newest request it counted leaves it. That is
    this request or a later one, so `now + reset - window` is never before this request arrived.
    A provider that means its oldest request instead can only name one that arrived after we
    sent this one (an earlier time is ignored), so then the error is at most the network's
    one-way delay.
    """
    get = headers.get
    limit, reset = (
        get("x-ratelimit-limit-requests"),
        parse_duration(get("x-ratelimit-reset-requests")),
    )
    if limit is None or reset is None:
        return now
    try:
        amount = int(float(limit))
    except (ValueError, OverflowError):
        return now
    seconds = [r.seconds for r in rates if r.amount == amount]
    if not seconds:  # not a limit we were told of: we cannot say which window it is
        return now
    # a millisecond later: the header's resolution (OpenAI's "1.234s", "20ms"). A reset rounded
    # down dates the request up to half of it before its arrival, and a request sent as our
    # window frees would then reach the provider just before its window lets the old one go
    at = now + reset - max(seconds) + 0.001
    return min(now, at) if at >= sent else now


def provider_count(
    headers: Any, rates: tuple[Rate, ...], first_byte: float | None
) -> tuple[float, int] | None:
    """(the window, how many requests the provider counts in it) from an answer's
    x-ratelimit-*-requests headers, when its limit is one of `rates` and the key's answers
    (`first_byte` s to their first byte) come within ``HELD_SPACINGS`` of that window's even
    spacing; else None, and the provider's "none left until the reset" holds.

    Why: a moving window's x-ratelimit-reset-requests is when its newest request leaves, not
    when a place frees. Where answers come quickly, the newest is this request or the one just
    after it, so our stamps are exact; where the provider counts no more than our own window
    holds, nobody else spends the account and our window says when the next place frees: held
    to the reset, a paced key would wait a whole window each time it fills. Where answers take
    longer, later requests of ours have arrived by each answer and every stamp moves to the
    newest of them: our window frees places late, and the spread of the first requests (asked
    as they come) goes on. There the reset is what lines the key up: its places free at once,
    and the requests that waited go as one burst, which the headers then describe exactly (2 s
    JSON answers on 10-per-10 s keys: 93% of capacity in the first minute without the clamp,
    99.9% held to the reset)."""
    get = headers.get
    try:
        amount = int(float(get("x-ratelimit-limit-requests") or ""))
        left = int(float(get("x-ratelimit-remaining-requests") or ""))
    except (ValueError, OverflowError):
        return None
    seconds = max((r.seconds for r in rates if r.amount == amount), default=None)
    if seconds is None or first_byte is None or first_byte >= HELD_SPACINGS * seconds / amount:
        return None
    return seconds, amount - left


class Bucket:
    """Request and token windows, provider-reported headroom and cooldown of one (account, model)."""

    __slots__ = (
        "rates",
        "token_rates",
        "_t",
        "_tt",
        "_cum",
        "_base",
        "_span",
        "_tspan",
        "inflight",
        "unstamped",
        "last_sent",
        "first_byte",
        "inflight_tokens",
        "cool_until",
        "size_cools",
        "learned_limit",
        "learned_until",
        "served_max",
        "prov_req_left",
        "prov_req_reset",
        "prov_tok_left",
        "prov_tok_reset",
        "prov_tok_limit",
    )

    def __init__(self, rates: tuple[Rate, ...], token_rates: tuple[Rate, ...]) -> None:
        self.rates = rates
        self.token_rates = token_rates
        self._t: list[float] = []  # request stamps, ascending
        self._tt: list[float] = []  # token stamps (completions), ascending
        self._cum: list[int] = []  # running token totals, aligned with _tt
        self._base = 0  # running total just before _tt[0]
        self._span = max((r.seconds for r in rates), default=0.0)
        self._tspan = max((r.seconds for r in token_rates), default=0.0)
        self.inflight: dict[int, int] = {}  # slot id -> tokens reserved, until the answer ends
        self.unstamped: set[int] = set()  # slots in flight whose request is not stamped yet
        self.last_sent = -math.inf  # when the last slot was taken (pacing)
        # seconds from a slot's taking to its answer's first byte (a mean); None: no answer yet,
        # which pacing_gap counts as slow
        self.first_byte: float | None = None
        self.inflight_tokens = 0
        self.cool_until = 0.0
        # 429s that may have been about one request's size: least size cooled -> until when
        self.size_cools: dict[int, float] = {}
        self.learned_limit: int | None = None  # from a "Request too large" text, until:
        self.learned_until = 0.0
        self.served_max = 0  # the most tokens of one request its window counted and it served
        self.prov_req_left: int | None = None
        self.prov_req_reset = 0.0
        self.prov_tok_left: int | None = None
        self.prov_tok_reset = 0.0
        # the most tokens the provider takes in one window (x-ratelimit-limit-tokens): a prompt
        # past it, or past a learned limit, is refused before it is sent
        self.prov_tok_limit: int | None = None

    # -- reading -------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        if self._t and self._t[0] <= now - self._span - HEAD_LAG:
            del self._t[: bisect.bisect_right(self._t, now - self._span - HEAD_LAG)]
        if self._tt and self._tt[0] <= now - self._tspan:
            i = bisect.bisect_right(self._tt, now - self._tspan)
            self._base = self._cum[i - 1]
            del self._tt[:i]
            del self._cum[:i]

    def token_limit(self, now: float) -> int | None:
        """The most tokens the provider takes in one window, as far as it has said: its headers'
        limit, or a limit its error text named, while that lesson holds."""
        learned = self.learned_limit if now < self.learned_until else None
        given = [n for n in (self.prov_tok_limit, learned) if n is not None]
        return min(given) if given else None

    def fits_ever(self, tokens: int, counted: int | None = None, now: float = 0.0) -> bool:
        """Whether a request of `tokens` (its prompt and its answer) can ever be sent here: no
        configured token window is smaller, and the provider's own limit takes what its window
        counts of the request, `counted` (``UpstreamSpec.window_counts_answer``: the prompt
        alone, or the prompt and its answer budget; None: `tokens`)."""
        counted = tokens if counted is None else counted
        limit = self.token_limit(now)
        if limit is not None and counted > limit:
            return False
        return all(tokens <= r.amount for r in self.token_rates)

    def learn_limit(self, tokens: int, now: float) -> None:
        """The provider's error text said it takes at most `tokens` a window (smaller limits win:
        a second key of the account cannot widen what the account takes). Text can be made to
        say anything (a provider echoes what a request sent), so a lesson below any real limit,
        or below what this bucket has served, is not taken, and none outlives LEARNED_SECONDS."""
        if tokens < max(MIN_LEARNED_LIMIT, self.served_max + 1):
            return
        held = self.learned_limit if now < self.learned_until else None
        if held is None or tokens < held:
            self.learned_limit = tokens
        self.learned_until = now + LEARNED_SECONDS

    def served(self, counted: int) -> None:
        """The provider served a request its window counted `counted` tokens of: it takes that
        many, whatever a lesson said."""
        self.served_max = max(self.served_max, counted)
        if self.learned_limit is not None and counted > self.learned_limit:
            self.learned_limit = None

    def _tokens_since(self, now: float, seconds: float) -> tuple[int, int]:
        """(index of the first token stamp in the window, tokens stamped in it)."""
        i = bisect.bisect_right(self._tt, now - seconds)
        total = self._cum[-1] if self._tt else self._base
        return i, total - (self._cum[i - 1] if i else self._base)

    def wait_time(
        self, now: float, tokens: int, counted: int | None = None, paced: bool = False
    ) -> float | None:
        """0.0 if a request of `tokens` fits now; else seconds until it may, or None when only a
        request in flight finishing can make room (the caller waits for a release). `counted`:
        what of it the provider's window counts (``fits_ever``), held to what it says is left.
        `paced`: others are waiting for capacity, so a window past half is paced (above)."""
        self._prune(now)
        counted = tokens if counted is None else counted
        waits = [self.cool_until - now]
        waits += [until - now for least, until in self.size_cools.items() if counted >= least]
        if self.prov_req_left is not None and self.prov_req_left <= 0:
            waits.append(self.prov_req_reset - now)
        if self.prov_tok_left is not None and self.prov_tok_left < counted:
            waits.append(self.prov_tok_reset - now)
        flying = len(self.unstamped)
        for rate in self.rates:
            done = len(self._t) - bisect.bisect_right(self._t, now - rate.seconds)
            if done + flying < rate.amount:
                gap = pacing_gap(rate, done + flying, self.first_byte) if paced else 0.0
                if gap:
                    waits.append(self.last_sent + gap - now)
                continue
            keep = rate.amount - 1 - flying  # stamped entries that may stay in the window
            if keep < 0:
                return None
            waits.append(self._t[len(self._t) - 1 - keep] + rate.seconds - now)
        for rate in self.token_rates:
            i, used = self._tokens_since(now, rate.seconds)
            room = rate.amount - self.inflight_tokens - tokens
            if used <= room:
                continue
            if room < 0:
                return None
            total = self._cum[-1] if self._tt else self._base
            j = bisect.bisect_left(self._cum, total - room, lo=i)
            waits.append(self._tt[j] + rate.seconds - now)
        wait = max(waits)
        return wait if wait > 0 else 0.0

    def headroom(self, now: float) -> float:
        """Smallest share of any limit still free (1.0 with no limits); spreads load."""
        share = 1.0
        flying = len(self.unstamped)
        for rate in self.rates:
            used = len(self._t) - bisect.bisect_right(self._t, now - rate.seconds) + flying
            share = min(share, 1 - used / rate.amount)
        for rate in self.token_rates:
            used = self._tokens_since(now, rate.seconds)[1] + self.inflight_tokens
            share = min(share, 1 - used / rate.amount)
        return share

    def used(self, now: float) -> dict[str, int]:
        """Use per limit text, for the admin view."""
        self._prune(now)
        out = {}
        for rate in self.rates:
            stamped = len(self._t) - bisect.bisect_right(self._t, now - rate.seconds)
            out[f"requests {rate}"] = stamped + len(self.unstamped)
        for rate in self.token_rates:
            out[f"tokens {rate}"] = self._tokens_since(now, rate.seconds)[1] + self.inflight_tokens
        return out

    # -- writing -------------------------------------------------------------------------

    def begin(self, slot: int, tokens: int, now: float, counted: int | None = None) -> None:
        counted = tokens if counted is None else counted
        self.last_sent = max(self.last_sent, now)
        self.inflight[slot] = tokens
        self.unstamped.add(slot)
        self.inflight_tokens += tokens
        if self.prov_req_left is not None:
            if now < self.prov_req_reset:
                self.prov_req_left -= 1
            else:
                self.prov_req_left = None
        if self.prov_tok_left is not None:
            if now < self.prov_tok_reset:
                self.prov_tok_left -= counted
            else:
                self.prov_tok_left = None

    def answered(self, seconds: float) -> None:
        """An answer's first byte came `seconds` after its slot was taken (a moving mean)."""
        self.first_byte = (
            seconds if self.first_byte is None else 0.7 * self.first_byte + 0.3 * seconds
        )

    def stamp(self, slot: int, at: float) -> None:
        """The provider has counted the slot's request (at `at`): from now on it holds its
        place in the request windows until `at` + window, not until its answer ends."""
        if slot in self.unstamped:
            self.unstamped.discard(slot)
            bisect.insort(self._t, at)

    def end(self, slot: int, now: float, tokens: int | None, *, counted: bool) -> None:
        """Finish a slot; `counted`: the provider saw it (stamp it now if not stamped yet, and
        stamp its real token use)."""
        reserved = self.inflight.pop(slot, None)
        if reserved is None:
            return
        self.inflight_tokens -= reserved
        unstamped = slot in self.unstamped
        self.unstamped.discard(slot)
        if not counted:
            return
        if unstamped:
            bisect.insort(self._t, now)
        if self.token_rates:
            used = reserved if tokens is None else tokens
            last = self._cum[-1] if self._tt else self._base
            # stamps must stay sorted even if the clock is read out of order by callers
            self._tt.append(max(now, self._tt[-1]) if self._tt else now)
            self._cum.append(last + used)

    def cool(self, until: float, least: int = 0, now: float = 0.0) -> None:
        """Cooldowns only ever extend: a second, shorter 429 never shortens the first. `least`:
        cool only requests whose window counts at least that many tokens (0: every request),
        for a 429 that may be about one request's size."""
        if least <= 0:
            if until > self.cool_until:
                self.cool_until = until
            return
        cools = self.size_cools
        for size in [size for size, end in cools.items() if end <= now]:
            del cools[size]
        if until > cools.get(least, 0.0):
            cools[least] = until
        while len(cools) > MAX_SIZE_COOLS:  # a bound on memory; too few only costs a 429
            del cools[min(cools, key=cools.__getitem__)]

    def counts_all(self, window: float, counted: int, now: float) -> bool:
        """Whether this bucket holds at least the `counted` requests a provider counts in its
        `window` (its stamps there and the requests in flight): then it saw nothing we did not."""
        stamped = len(self._t) - bisect.bisect_right(self._t, now - window)
        return stamped + len(self.unstamped) >= counted

    def observe_headers(
        self,
        headers: Mapping[str, str],
        now: float,
        answered: bool = False,
        sent: float | None = None,
    ) -> None:
        """Clamp to what the provider says is left (x-ratelimit-remaining-* / reset-*).
        `answered`: the headers came with an answer; where the key's answers are quick and
        the provider counts no more requests than we do (``provider_count``), our window
        governs and no clamp is kept. `sent`: when the answered request was sent."""
        get = headers.get
        left = get("x-ratelimit-remaining-requests")
        reset = parse_duration(get("x-ratelimit-reset-requests"))
        seen = provider_count(headers, self.rates, self.first_byte) if answered else None
        # `now`: the answer's head as we saw it, which the headers describe; the provider wrote
        # them a little earlier, at any time since the request was sent, so ours are counted
        # from a window before that (else a request leaving between the two heads is counted
        # by the provider and not by us, and the key is held to the reset). Stamps are kept
        # HEAD_LAG longer than the window, so the ones in it then are still here
        since = now if sent is None else min(now, sent)
        if seen is not None and self.counts_all(seen[0] + now - since, seen[1], now):
            self.prov_req_left = None
        elif left is not None and reset is not None:
            try:
                self.prov_req_left = int(float(left))
                self.prov_req_reset = now + reset
            except ValueError:
                pass
        limit = get("x-ratelimit-limit-tokens")
        if limit is not None:
            try:
                self.prov_tok_limit = int(float(limit)) if float(limit) > 0 else None
            except (ValueError, OverflowError):
                pass
        left = get("x-ratelimit-remaining-tokens")
        reset = parse_duration(get("x-ratelimit-reset-tokens"))
        if left is not None and reset is not None:
            try:
                self.prov_tok_left = int(float(left))
                self.prov_tok_reset = now + reset
            except ValueError:
                pass
