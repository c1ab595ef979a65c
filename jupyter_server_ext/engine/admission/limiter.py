"""Per-user and global admission: request windows, concurrency leases, daily budgets.

One call to the state backend admits a request against every limit at once (all checked
before any is counted), so a refused request consumes nothing and concurrent requests cannot
overspend a budget: cost is reserved at admission (prompt estimate + n x max_tokens at the dearest
price serving the model) and settled to the real cost afterwards.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import BadRequest, RateLimited
from ..upstreams.specs import Rate
from .override_specs import parse_overrides as parse_overrides  # where it was read before
from .shared_state import Admission, BudgetCheck, LeaseCheck, StateBackend, WindowCheck
from .window_specs import PolicyWindow

DAY = 86400.0


@dataclass(frozen=True)
class UserRules:
    """What one user may do, resolved from the defaults, their groups and their own overrides
    (``Limiter.rules_for``): request and token windows, concurrency, budget, entitlements."""

    limits: tuple[Rate, ...] = ()
    concurrency: int = 0  # 0: unlimited
    daily_budget_usd: float | None = None
    # entitlements: names or fnmatch patterns of the models the user may call (None: all), the
    # model %%ask uses when none is named, and the one %%sql_ai uses
    models: tuple[str, ...] | None = None
    default_model: str | None = None
    sql_default_model: str | None = None
    # agent mode: %%ask --agent, the chat panel's Agent switch and {proxy}mcp's tools
    agent: bool = True
    # the editor's inline completions ({proxy}inline); their windows and concurrency for a
    # group or user ("completion_user_limits", "completion_user_concurrency" of an override),
    # None: LimitSettings' completion_limits and completion_concurrency
    completions: bool = True
    completion_limits: tuple[Rate, ...] | None = None
    completion_concurrency: int | None = None


@dataclass(frozen=True)
class LimitSettings:
    user: UserRules = field(default_factory=UserRules)
    global_concurrency: int = 0
    global_daily_budget_usd: float | None = None
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    lease_seconds: float = 600.0
    # inline completions are their own rate class: typing never eats the chat quota (the budget
    # and the global concurrency are shared)
    completion_limits: tuple[Rate, ...] = ()
    completion_concurrency: int = 2


def rate_class(client: str) -> str:
    """The rate class of a request from `client` (``Caller.client``): "inline" for the editor's
    completions, "chat" for everything else."""
    return "inline" if client == "inline" else "chat"


@dataclass(frozen=True)
class CallLimits:
    """The limits of a kind of call that is no model request (``{proxy}mcp``'s tool calls):
    windows and a concurrency of its own, counted under the user's `key`, no budget."""

    key: str  # "mcp": the user's keys "u:<user>:mcp:..."
    what: str  # how refusals name it: "MCP tool calls"
    rates: tuple[Rate, ...]
    concurrency: int  # at least 1
    lease_seconds: float  # longer than any call: a lease not given back expires then


@dataclass
class Ticket:
    """What a hold on the limits counted (``Admitted.ticket``); given back once, by the
    ``Admitted`` that carries it."""

    lease_id: str
    windows: list[WindowCheck]
    leases: list[LeaseCheck]
    budgets: list[BudgetCheck]
    reserved: float
    done: bool = False
    windows_used: list[tuple[int, float]] | None = None  # after this request, per window
    picked: tuple[int, float] | None = None  # the key pick made with the admission


class Admitted:
    """What every admission hands its caller (``Limiter.admit``, ``count``, ``counted``,
    ``hold``): its hold on the caller's limits, settled (charged its cost) or given back
    (refunded) exactly once, by whichever step ends the work: a request's answer, the
    background read of an abandoned one, the engine when none came, a tool call's end. Later
    calls do nothing, so no path can charge or refund twice."""

    __slots__ = ("_limiter", "ticket")

    def __init__(self, limiter: Limiter, ticket: Ticket) -> None:
        self._limiter = limiter
        self.ticket = ticket

    @property
    def reserved(self) -> float:
        """What the request reserved of the caller's budget (the price of its worst case)."""
        return self.ticket.reserved

    @property
    def settled(self) -> bool:
        return self.ticket.done

    async def settle(self, cost_usd: float, *, refund: bool = False) -> None:
        """Charge `cost_usd` and release the leases; `refund`: no answer came for reasons that
        are not the caller's, so the request leaves the request windows too."""
        await self._limiter._finish(self.ticket, cost_usd, refund=refund)

    async def unreserve(self) -> None:
        """Give the budget reservation back now: the request goes to a free model instead."""
        await self._limiter._unreserve(self.ticket)


def key_name(name: str) -> str:
    """`name` as it goes into a state key: percent-encoded, so that no user name can hold the
    keys' separator (":") or a glob character (``* ? [ ] \\``), and distinct names stay distinct
    keys. Without it a user named ``bob`` owns a prefix of ``bob:x``'s keys, and ``*`` is every
    user's keys to a Redis SCAN MATCH (issue 24)."""
    return urllib.parse.quote(name, safe="")


def user_prefix(user: str) -> str:
    """The prefix of every state key of `user`: its windows, lease and budget."""
    return f"u:{key_name(user)}:"


def _fmt_rate(rate: Rate) -> str:
    return rate.text


def duration(seconds: float) -> str:
    """A reset time as OpenAI writes it in x-ratelimit-reset-*: "20ms", "7s", "6m0s", "1h2m3s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _reset_at(seconds: float) -> str:
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Limiter:
    def __init__(
        self,
        settings: LimitSettings,
        state: StateBackend,
        *,
        window_for: Callable[[str, tuple[str, ...]], tuple[PolicyWindow, Any] | None] | None = None,
    ) -> None:
        """`window_for`: the policy window in force for a user (``PolicyWindows.in_force``);
        None: no windows."""
        self.settings = settings
        self.state = state
        self.window_for = window_for

    def rules_for(self, user: str, groups: tuple[str, ...] = ()) -> UserRules:
        """Defaults, then each matching group override (config order: a later group's value
        wins), then the user's own; then the policy window in force, if any.

        Models combine differently: a user in several groups may use what any of them allows
        (the union), and the user's own ``models`` replace the groups'. A ``custom`` window's
        models and budget replace all of these while it is in force."""
        pol = self.settings.user
        over = self.settings.overrides
        group_models: list[str] = []
        named = False
        for who, values in over.items():
            if who.startswith("group:") and who[6:] in groups:
                pol = replace(pol, **values)
                if "models" in values:
                    named = True
                    group_models += [m for m in values["models"] if m not in group_models]
        if named:
            pol = replace(pol, models=tuple(group_models))
        mine = over.get(f"user:{user}")
        if mine:
            pol = replace(pol, **mine)
        found = self.window_for(user, groups) if self.window_for is not None else None
        if found is not None and found[0].mode == "custom":
            w = found[0]
            if w.models is not None:
                pol = replace(pol, models=w.models, default_model=None, sql_default_model=None)
            if w.default_model is not None:
                pol = replace(pol, default_model=w.default_model, sql_default_model=w.default_model)
            if w.daily_budget_usd is not None:
                pol = replace(pol, daily_budget_usd=w.daily_budget_usd)
        return pol

    def budgeted(self, user: str, groups: tuple[str, ...] = ()) -> bool:
        """Whether any daily budget (the user's, after overrides, or the global one) applies."""
        return (
            self.rules_for(user, groups).daily_budget_usd is not None
            or self.settings.global_daily_budget_usd is not None
        )

    def checks(
        self, user: str, groups: tuple[str, ...], reserve: float, rate_class: str = "chat"
    ) -> tuple[list[WindowCheck], list[LeaseCheck], list[BudgetCheck]]:
        """The windows, leases and budgets one request of `rate_class` is held to: "chat" (every
        API) or "inline" (the editor's completions: their own windows and concurrency, under
        keys of their own, and the same budgets)."""
        pol = self.rules_for(user, groups)
        s = self.settings
        keys = user_prefix(user)
        # the class's own windows and lease live under keys of their own; the budget is the
        # user's one budget whatever the class
        if rate_class == "inline":
            own, what = keys + "i:", "user completions"
            rates = s.completion_limits if pol.completion_limits is None else pol.completion_limits
            concurrency = (
                s.completion_concurrency
                if pol.completion_concurrency is None
                else pol.completion_concurrency
            )
        else:
            own, what, rates, concurrency = keys, "user", pol.limits, pol.concurrency
        windows = [
            WindowCheck(
                f"{own}w:{r.amount}/{r.seconds:g}",
                r.amount,
                r.seconds,
                f"{what} {_fmt_rate(r)}",
                calendar_day=r.seconds == DAY,
            )
            for r in rates
        ]
        leases = []
        if concurrency:
            leases.append(
                LeaseCheck(
                    f"{own}conc",
                    concurrency,
                    s.lease_seconds,
                    f"{what} concurrency {concurrency}",
                )
            )
        if s.global_concurrency:
            leases.append(
                LeaseCheck(
                    "g:conc",
                    s.global_concurrency,
                    s.lease_seconds,
                    f"global concurrency {s.global_concurrency}",
                )
            )
        budgets = []
        if pol.daily_budget_usd is not None:
            budgets.append(
                BudgetCheck(
                    f"{keys}usd",
                    pol.daily_budget_usd,
                    reserve,
                    f"user daily budget ${pol.daily_budget_usd:g}",
                )
            )
        if s.global_daily_budget_usd is not None:
            budgets.append(
                BudgetCheck(
                    "g:usd",
                    s.global_daily_budget_usd,
                    reserve,
                    f"global daily budget ${s.global_daily_budget_usd:g}",
                )
            )
        return windows, leases, budgets

    async def admit(
        self,
        user: str,
        groups: tuple[str, ...],
        reserve: float,
        *,
        budgets_apply: bool = True,
        pick: list[Any] | None = None,
        rate_class: str = "chat",
        counted: Admitted | None = None,
    ) -> Admitted:
        """`user`'s request admitted at `reserve` dollars against every limit at once, or
        ``RateLimited``. `budgets_apply` False: windows and concurrency only (an answer from
        the free fallback model once the budget is spent). `pick`: a key pick to make in the
        same step (``Pool.plan``); its answer is ``Ticket.picked``. `rate_class`: see
        ``checks``. `counted`: the request was counted in its windows and concurrency already
        (``count``: a stored conversation read only once it was): the budgets and the pick
        now, into that hold, which is returned."""
        windows, leases, budgets = self.checks(user, groups, reserve, rate_class)
        if not budgets_apply:
            budgets = []
        if counted is not None:
            windows, leases = [], []
        for b in budgets:
            # no day could ever admit it: a 429 with Retry-After would only invite a retry
            if 0 < b.limit < reserve:
                raise BadRequest(
                    f"this request may cost up to ${reserve:.4f} (its prompt and the answer it "
                    f"asks room for, max_tokens, at the model's price), more than the whole "
                    f"{b.label} (your hub admin's setting: {_setting_of(b.label)}); ask for a "
                    "shorter answer: lower 'max_tokens' (or 'max_completion_tokens') or 'n' "
                    "(Claude Code: CLAUDE_CODE_MAX_OUTPUT_TOKENS)",
                    code="over_budget",
                )
        lease_id = os.urandom(16).hex()  # as unique as uuid4().hex, a quarter of the CPU
        if counted is not None:
            ticket = counted.ticket
            lease_id = ticket.lease_id
            if not budgets and pick is None:
                ticket.reserved = reserve
                return counted
        result = await self.state.admit(windows, leases, budgets, lease_id, pick)
        if not result.ok:
            raise self._refusal(user, windows, result)
        if counted is not None:
            ticket.budgets, ticket.reserved, ticket.picked = budgets, reserve, result.picked
            return counted
        ticket = Ticket(
            lease_id,
            windows,
            leases,
            budgets,
            reserve,
            windows_used=result.windows_used,
            picked=result.picked,
        )
        return Admitted(self, ticket)

    async def count(self, user: str, groups: tuple[str, ...], rate_class: str = "chat") -> Admitted:
        """A request counted in its caller's windows and concurrency alone, before its price is
        known (a stored conversation to read, PDFs' pages to count in the shared worker); its
        budget is reserved later, into the same hold (``admit`` with `counted`)."""
        return await self.admit(user, groups, 0.0, budgets_apply=False, rate_class=rate_class)

    async def hold(self, user: str, calls: CallLimits) -> Admitted:
        """One call of `calls`' kind admitted for `user` in its windows and concurrency (all
        checked before any is counted, as a request's); given back by ``Admitted.settle``."""
        own = f"{user_prefix(user)}{calls.key}:"
        windows = [
            WindowCheck(
                f"{own}w:{r.amount}/{r.seconds:g}",
                r.amount,
                r.seconds,
                f"{calls.what} {r.text}",
                calendar_day=r.seconds == DAY,
            )
            for r in calls.rates
        ]
        n = calls.concurrency
        leases = [LeaseCheck(f"{own}conc", n, calls.lease_seconds, f"{calls.what} at once {n}")]
        lease_id = os.urandom(16).hex()
        result = await self.state.admit(windows, leases, [], lease_id)
        if not result.ok:
            raise self._refusal(user, windows, result)
        return Admitted(
            self, Ticket(lease_id, windows, leases, [], 0.0, windows_used=result.windows_used)
        )

    def _refusal(self, user: str, windows: list[WindowCheck], result: Admission) -> RateLimited:
        hit = result.refused
        assert hit is not None  # a refusal names the check that refused
        wait = max(1, math.ceil(result.retry_after))
        if isinstance(hit, WindowCheck):
            why = f"{result.used} requests in the window"
        elif isinstance(hit, LeaseCheck):
            why = f"{result.used} requests already in flight"
        else:  # a budget
            why = f"${result.used:.4f} spent or reserved today; this request may cost up to ${hit.reserve:.4f}"
        reset = _reset_at(wait)
        policies = [f'"{w.label}";q={w.amount};w={int(w.seconds)}' for w in windows]
        if not isinstance(hit, WindowCheck):
            policies.append(f'"{hit.label}"')
        headers = {
            "RateLimit-Policy": ", ".join(policies),
            "RateLimit": f'"{hit.label}";r=0;t={wait}',
        }
        if isinstance(hit, WindowCheck):
            headers.update(
                {
                    "x-ratelimit-limit-requests": str(hit.amount),
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": duration(result.retry_after),
                }
            )
        return RateLimited(
            f"{hit.label} reached for {user!r} ({why}); resets in {wait} s at {reset} "
            f"(your hub admin's setting: {_setting_of(hit.label)})",
            retry_after=wait,
            limit=hit.label,
            usage_limit=True,  # the caller's own limit: a long wait is reported, not slept
            headers=headers,
            extra={"reset": reset},
        )

    # given back through the hold that carries the ticket (``Admitted``): no caller can end a
    # ticket it was not handed, or end one twice
    async def _unreserve(self, ticket: Ticket) -> None:
        """Give the budget reservation back now: the request goes to a free model instead."""
        if ticket.budgets and ticket.reserved and not ticket.done:
            await self.state.settle(ticket.budgets, -ticket.reserved)
            ticket.reserved = 0.0

    async def _finish(self, ticket: Ticket, cost: float, *, refund: bool = False) -> None:
        """Release the leases and settle the reservation to the real cost; idempotent.

        `refund`: the request got no answer for reasons that are not the caller's (no upstream
        capacity, every upstream failed), so it is taken out of the request windows too.
        """
        if ticket.done:
            return
        ticket.done = True
        refunded = ticket.windows if refund else []
        delta = cost - ticket.reserved if ticket.budgets else 0.0
        if refunded or ticket.leases or delta:
            await self.state.finish(refunded, ticket.leases, ticket.budgets, delta, ticket.lease_id)

    async def snapshot(self, user: str, groups: tuple[str, ...]) -> dict[str, Any]:
        """What ``GET me`` shows: limits, use, what is left, and when each resets."""
        windows, leases, budgets = self.checks(user, groups, 0.0)
        wuse, luse, spent = await self.state.read(windows, leases, budgets)
        out: dict[str, Any] = {"limits": [], "concurrency": None, "budget": None}
        for w, (used, oldest) in zip(windows, wuse, strict=False):
            out["limits"].append(
                {
                    "limit": w.label.removeprefix("user "),
                    "used": used,
                    "remaining": max(0, w.amount - used),
                    "resets_in_seconds": round(oldest, 1) if used else 0,
                    "resets_at": _reset_at(oldest) if used else None,
                    "window": "calendar day (UTC)" if w.calendar_day else f"moving {w.seconds:g} s",
                }
            )
        for lease, used in zip(leases, luse, strict=False):
            if lease.key.startswith("u:"):
                out["concurrency"] = {"limit": lease.capacity, "in_flight": used}
        for b, usd in zip(budgets, spent, strict=False):
            if b.key.startswith("u:"):
                out["budget"] = {
                    "daily_usd": b.limit,
                    "spent_usd": round(usd, 6),
                    "remaining_usd": round(max(0.0, b.limit - usd), 6),
                    "resets_at": self.day_resets_at(),
                }
        return out

    async def global_spend(self) -> tuple[float, float] | None:
        """(spent + reserved today, the limit) of the global daily budget; None without one."""
        limit = self.settings.global_daily_budget_usd
        if limit is None:
            return None
        _, _, spent = await self.state.read(
            [], [], [BudgetCheck("g:usd", limit, 0.0, "global daily budget")]
        )
        return float(spent[0]), limit

    @staticmethod
    def day_resets_at() -> str:
        """When the daily budgets start again: the next midnight UTC."""
        return _reset_at(DAY - (dt.datetime.now(dt.timezone.utc).timestamp() % DAY))

    async def rate_headers(
        self, user: str, groups: tuple[str, ...], rate_class: str = "chat"
    ) -> dict[str, str]:
        """x-ratelimit-{limit,remaining,reset}-requests for the user's tightest request window
        (the one with the fewest requests left); empty when no window applies."""
        windows, _, _ = self.checks(user, groups, 0.0, rate_class)
        if not windows:
            return {}
        wuse, _, _ = await self.state.read(windows, [], [])
        return quota_headers(windows, wuse)

    async def reset(self, user: str | None) -> int:
        """Forget `user`'s windows, leases and budget (None: every user's); how many entries
        went. Only that user's: the prefix ends at the encoded name's separator."""
        return await self.state.reset(user_prefix(user) if user is not None else "u:")


def quota_headers(windows: list[WindowCheck], wuse: list[tuple[int, float]]) -> dict[str, str]:
    """x-ratelimit-*-requests of the tightest window, from each window's (used, oldest leaves);
    an admission returns these, so an admitted request needs no second read."""
    if not windows:
        return {}
    best = None
    for w, (used, oldest) in zip(windows, wuse, strict=False):
        left = max(0, w.amount - used)
        if best is None or left < best[1]:
            best = (w, left, oldest if used else 0.0)
    assert best is not None
    w, left, reset = best
    return {
        "x-ratelimit-limit-requests": str(w.amount),
        "x-ratelimit-remaining-requests": str(left),
        "x-ratelimit-reset-requests": duration(reset),
    }


# the setting behind each kind of check, by the start of its label (``checks``)
_SETTINGS = (
    ("user completions concurrency", "completion_user_concurrency, or limit_overrides"),
    ("user completions", "completion_user_limits, or limit_overrides"),
    ("user concurrency", "user_concurrency, or limit_overrides"),
    ("user daily budget", "user_daily_budget_usd, limit_overrides, or a policy window's budget"),
    ("user ", "user_limits, or limit_overrides"),
    ("global concurrency", "global_concurrency"),
    ("global daily budget", "global_daily_budget_usd"),
)


def _setting_of(label: str) -> str:
    """The admin's setting behind the check labelled `label`, as the message names it."""
    return next((setting for start, setting in _SETTINGS if label.startswith(start)), "limits")
