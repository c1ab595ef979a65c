"""Exact moving-window accounting of one provider (account, model) bucket.

Why a log and not a counter: a fixed window lets 2x the limit through at window edges and a
token bucket whose burst equals the limit does the same, and either trips the provider's own
window. The log is exact, and its size is bounded by the largest limit.

Why requests in flight count in full and are stamped on completion: the provider counts a
request from when it saw it, which is somewhere between our send and its answer. Stamping the
completion time keeps our window never shorter than the provider's (docs/architecture.md,
"Moving windows and stamping").
"""

from __future__ import annotations

import bisect
import re

from .settings import Rate

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


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


class Bucket:
    """Request and token windows, provider-reported headroom and cooldown of one (account, model)."""

    __slots__ = (
        "rates", "token_rates", "_t", "_cum", "_base", "_span", "inflight", "inflight_tokens",
        "cool_until", "prov_req_left", "prov_req_reset", "prov_tok_left", "prov_tok_reset",
    )

    def __init__(self, rates: tuple[Rate, ...], token_rates: tuple[Rate, ...]) -> None:
        self.rates = rates
        self.token_rates = token_rates
        self._t: list[float] = []  # completion stamps, ascending
        self._cum: list[int] = []  # running token totals, aligned with _t
        self._base = 0  # running total just before _t[0]
        self._span = max((r.seconds for r in rates + token_rates), default=0.0)
        self.inflight: dict[int, int] = {}  # slot id -> tokens reserved
        self.inflight_tokens = 0
        self.cool_until = 0.0
        self.prov_req_left: int | None = None
        self.prov_req_reset = 0.0
        self.prov_tok_left: int | None = None
        self.prov_tok_reset = 0.0

    # -- reading -------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        if not self._t or self._t[0] > now - self._span:
            return
        i = bisect.bisect_right(self._t, now - self._span)
        self._base = self._cum[i - 1]
        del self._t[:i]
        del self._cum[:i]

    def _since(self, now: float, seconds: float) -> int:
        return bisect.bisect_right(self._t, now - seconds)

    def fits_ever(self, tokens: int) -> bool:
        return all(tokens <= r.amount for r in self.token_rates)

    def wait_time(self, now: float, tokens: int) -> float | None:
        """0.0 if a request of `tokens` fits now; else seconds until it may, or None when only a
        request in flight finishing can make room (the caller waits for a release)."""
        self._prune(now)
        waits = [self.cool_until - now]
        if self.prov_req_left is not None and self.prov_req_left <= 0:
            waits.append(self.prov_req_reset - now)
        if self.prov_tok_left is not None and self.prov_tok_left < tokens:
            waits.append(self.prov_tok_reset - now)
        n_inflight = len(self.inflight)
        for rate in self.rates:
            i = self._since(now, rate.seconds)
            done = len(self._t) - i
            if done + n_inflight < rate.amount:
                continue
            keep = rate.amount - 1 - n_inflight  # done entries that may stay in the window
            if keep < 0:
                return None
            waits.append(self._t[len(self._t) - 1 - keep] + rate.seconds - now)
        for rate in self.token_rates:
            i = self._since(now, rate.seconds)
            total = self._cum[-1] if self._t else self._base
            before = self._cum[i - 1] if i else self._base
            room = rate.amount - self.inflight_tokens - tokens
            if total - before <= room:
                continue
            if room < 0:
                return None
            j = bisect.bisect_left(self._cum, total - room, lo=i)
            waits.append(self._t[j] + rate.seconds - now)
        wait = max(waits)
        return wait if wait > 0 else 0.0

    def headroom(self, now: float) -> float:
        """Smallest share of any limit still free (1.0 with no limits); spreads load."""
        share = 1.0
        n_inflight = len(self.inflight)
        for rate in self.rates:
            used = len(self._t) - self._since(now, rate.seconds) + n_inflight
            share = min(share, 1 - used / rate.amount)
        for rate in self.token_rates:
            i = self._since(now, rate.seconds)
            total = self._cum[-1] if self._t else self._base
            used = total - (self._cum[i - 1] if i else self._base) + self.inflight_tokens
            share = min(share, 1 - used / rate.amount)
        return share

    def used(self, now: float) -> dict[str, int]:
        """Use per limit text, for the admin view."""
        self._prune(now)
        out = {}
        total = self._cum[-1] if self._t else self._base
        for rate in self.rates:
            out[f"requests {rate}"] = len(self._t) - self._since(now, rate.seconds) + len(self.inflight)
        for rate in self.token_rates:
            i = self._since(now, rate.seconds)
            out[f"tokens {rate}"] = total - (self._cum[i - 1] if i else self._base) + self.inflight_tokens
        return out

    # -- writing -------------------------------------------------------------------------

    def begin(self, slot: int, tokens: int, now: float) -> None:
        self.inflight[slot] = tokens
        self.inflight_tokens += tokens
        if self.prov_req_left is not None:
            if now < self.prov_req_reset:
                self.prov_req_left -= 1
            else:
                self.prov_req_left = None
        if self.prov_tok_left is not None:
            if now < self.prov_tok_reset:
                self.prov_tok_left -= tokens
            else:
                self.prov_tok_left = None

    def end(self, slot: int, now: float, tokens: int | None, *, counted: bool) -> None:
        """Finish a slot; `counted` stamps it into the window with its real token use."""
        reserved = self.inflight.pop(slot, None)
        if reserved is None:
            return
        self.inflight_tokens -= reserved
        if counted:
            used = reserved if tokens is None else tokens
            last = self._cum[-1] if self._t else self._base
            # stamps must stay sorted even if the clock is read out of order by callers
            stamp = max(now, self._t[-1]) if self._t else now
            self._t.append(stamp)
            self._cum.append(last + used)

    def cool(self, until: float) -> None:
        """Cooldowns only ever extend: a second, shorter 429 never shortens the first."""
        if until > self.cool_until:
            self.cool_until = until

    def observe_headers(self, headers: dict[str, str] | object, now: float) -> None:
        """Clamp to what the provider says is left (x-ratelimit-remaining-* / reset-*)."""
        get = headers.get  # type: ignore[attr-defined]
        left = get("x-ratelimit-remaining-requests")
        reset = parse_duration(get("x-ratelimit-reset-requests"))
        if left is not None and reset is not None:
            try:
                self.prov_req_left = int(float(left))
                self.prov_req_reset = now + reset
            except ValueError:
                pass
        left = get("x-ratelimit-remaining-tokens")
        reset = parse_duration(get("x-ratelimit-reset-tokens"))
        if left is not None and reset is not None:
            try:
                self.prov_tok_left = int(float(left))
                self.prov_tok_reset = now + reset
            except ValueError:
                pass
