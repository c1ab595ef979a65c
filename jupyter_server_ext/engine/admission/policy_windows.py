"""Policy windows: for a span of time an admin puts a group (or everyone) into a named mode.

Modes: ``off`` (no assistant: every call refused with the window's message and end time),
``local-only`` (only the local model) and ``custom`` (a model list, a default model and a daily
budget of the window's own). One-off windows have a start and an end; weekly ones recur on
given days between two times of day in a named time zone (course hours). Windows come from
configuration (``c.RSQLProxy.policy_windows``) and at run time from the admin API; run-time
ones live in the state backend, so every replica sees a window another one started within
``REFRESH_SECONDS``. Times are kept as UTC instants; the admin's time zone is only for showing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import BadRequest, ConfigError, EngineError, Forbidden, NotFound
from ..upstreams.specs import parse_budget_usd
from .shared_state import StateBackend

log = logging.getLogger("rsql.engine")

MODES = ("off", "local-only", "custom")
# the most restrictive window wins when several are in force for one user
_RANK = {"off": 0, "local-only": 1, "custom": 2}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERYONE = "*"
# state backend tables: run-time windows, and configured windows an admin ended early
RUNTIME_TABLE = "policy-windows"
ENDED_TABLE = "policy-windows-ended"
# how stale a replica's copy of the run-time windows may be: a read of the state backend at
# most this often per process, instead of one on every request
REFRESH_SECONDS = 2.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,63}$")
_FIELDS = (
    "name",
    "mode",
    "message",
    "groups",
    "users",
    "start",
    "end",
    "weekly",
    "models",
    "default_model",
    "user_daily_budget_usd",
    "agent",
    "completions",
)
MAX_MESSAGE = 500


def zone(name: str, *, where: str = "RSQLProxy.admin_timezone") -> ZoneInfo:
    """An IANA time zone ("Europe/Berlin", "UTC"), or ConfigError naming the setting."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: unknown time zone {name!r}; use an IANA name like 'UTC' or 'Europe/Berlin'"
        ) from None


def iso_utc(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.timezone.utc)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


def local_text(ts: float, tz: ZoneInfo) -> str:
    """`ts` as the admin reads it: "2026-11-23 19:00 CET"."""
    return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z")


def parse_time(value: Any, tz: ZoneInfo, *, where: str) -> float:
    """An ISO 8601 time as a UTC instant; one without an offset is read in the admin's zone."""
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: expected an ISO 8601 time like '2026-12-01T09:00:00Z', got {value!r}"
        )
    try:
        at = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"{where}: cannot read {value!r} as an ISO 8601 time like '2026-12-01T09:00:00Z'"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=tz)
    return at.timestamp()


@dataclass(frozen=True)
class Weekly:
    """Every week on `days` (0 = Monday) from `start` to `end` (times of day in `tz`); an end at
    or before the start runs past midnight into the next day."""

    days: tuple[int, ...]
    start: dt.time
    end: dt.time
    tz: str

    def span(self, now: float) -> tuple[float, float] | None:
        """The occurrence in force at `now` as UTC instants, or None."""
        zone_ = ZoneInfo(self.tz)
        today = dt.datetime.fromtimestamp(now, zone_).date()
        for back in (0, 1):  # today's, or yesterday's running past midnight
            day = today - dt.timedelta(days=back)
            if day.weekday() not in self.days:
                continue
            begin = dt.datetime.combine(day, self.start, zone_).timestamp()
            end_day = day if self.end > self.start else day + dt.timedelta(days=1)
            end = dt.datetime.combine(end_day, self.end, zone_).timestamp()
            if begin <= now < end:
                return begin, end
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in self.days],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "timezone": self.tz,
        }


@dataclass(frozen=True)
class PolicyWindow:
    name: str
    mode: str
    message: str
    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    start: float | None = None  # one-off windows: UTC instants
    end: float | None = None
    weekly: Weekly | None = None
    models: tuple[str, ...] | None = None  # custom: fnmatch patterns of the models allowed
    default_model: str | None = None
    daily_budget_usd: float | None = None  # custom: each user's daily budget while it is in force
    source: str = "config"  # "config" or "runtime"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    agent: bool = True  # False: %%ask --agent's requests refused while the window is in force
    completions: bool = True  # False: the editor's inline completions refused while it is

    def applies_to(self, user: str, groups: Sequence[str]) -> bool:
        return (
            EVERYONE in self.groups or user in self.users or any(g in self.groups for g in groups)
        )

    def span(self, now: float) -> tuple[float, float] | None:
        if self.weekly is not None:
            return self.weekly.span(now)
        assert self.start is not None and self.end is not None
        return (self.start, self.end) if self.start <= now < self.end else None

    def describe(self, span: tuple[float, float] | None, tz: ZoneInfo) -> dict[str, Any]:
        """What users and admins are shown: the times in UTC and in the admin's zone."""
        out: dict[str, Any] = {"name": self.name, "mode": self.mode, "message": self.message}
        out["agent"] = self.agent
        out["completions"] = self.completions
        begin, end = span if span is not None else (self.start, self.end)
        out["starts_at"] = iso_utc(begin) if begin is not None else None
        out["ends_at"] = iso_utc(end) if end is not None else None
        out["ends_at_local"] = local_text(end, tz) if end is not None else None
        out["timezone"] = str(tz)
        return out


def parse_window(
    raw: Any, *, where: str, tz: ZoneInfo, source: str = "config", local_models: Sequence[str] = ()
) -> PolicyWindow:
    """One window from its configuration (or run-time) dict; ConfigError names the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: expected a dict like {{'name': 'exam', 'groups': ['students'], "
            "'start': ..., 'end': ..., 'mode': 'off', 'message': ...}"
        )
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(_FIELDS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where}['name']: a name of 1-64 letters, digits, spaces or ._:- is required, got {name!r}"
        )
    where = f"{where} ({name!r})"
    mode = raw.get("mode")
    if mode not in MODES:
        raise ConfigError(f"{where}['mode']: one of {', '.join(MODES)}, got {mode!r}")
    message = raw.get("message", "")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        raise ConfigError(f"{where}['message']: a text of at most {MAX_MESSAGE} characters")
    groups, users = (_names(raw.get(k, []), where=f"{where}[{k!r}]") for k in ("groups", "users"))
    if not groups and not users:
        raise ConfigError(
            f"{where}: name the 'groups' (or ['*'] for everyone) or 'users' it applies to"
        )
    weekly = None
    start = end = None
    if "weekly" in raw:
        if "start" in raw or "end" in raw:
            raise ConfigError(
                f"{where}: a window is either 'weekly' or has a 'start' and an 'end', not both"
            )
        weekly = _weekly(raw["weekly"], where=f"{where}['weekly']", tz=tz)
    else:
        if "start" not in raw or "end" not in raw:
            raise ConfigError(
                f"{where}: a one-off window needs 'start' and 'end' (ISO 8601), or use 'weekly'"
            )
        start = parse_time(raw["start"], tz, where=f"{where}['start']")
        end = parse_time(raw["end"], tz, where=f"{where}['end']")
        if end <= start:
            raise ConfigError(
                f"{where}: 'end' ({raw['end']}) must be after 'start' ({raw['start']})"
            )
    models = default = budget = None
    if mode == "custom":
        if "models" in raw:
            models = _names(raw["models"], where=f"{where}['models']")
            if not models:
                raise ConfigError(
                    f"{where}['models']: at least one model name or pattern (or use mode 'off')"
                )
        default = raw.get("default_model")
        if default is not None and (not isinstance(default, str) or not default):
            raise ConfigError(f"{where}['default_model']: a model name")
        if default is not None and models is not None and not matches(models, default):
            raise ConfigError(
                f"{where}['default_model']: {default!r} is not among its 'models' {list(models)}"
            )
        budget = parse_budget_usd(
            raw.get("user_daily_budget_usd"), where=f"{where}['user_daily_budget_usd']"
        )
        if models is None and default is None and budget is None:
            raise ConfigError(
                f"{where}: a 'custom' window sets 'models', 'default_model' and/or 'user_daily_budget_usd'"
            )
    else:
        extra = [k for k in ("models", "default_model", "user_daily_budget_usd") if k in raw]
        if extra:
            raise ConfigError(
                f"{where}[{extra[0]!r}]: only a 'custom' window sets it (this one is {mode!r})"
            )
    agent = raw.get("agent", True)
    if not isinstance(agent, bool):
        raise ConfigError(f"{where}['agent']: true (agent mode on, the default) or false")
    completions = raw.get("completions", True)
    if not isinstance(completions, bool):
        raise ConfigError(
            f"{where}['completions']: true (inline completions on, the default) or false"
        )
    if mode == "local-only" and not local_models:
        raise ConfigError(
            f"{where}: mode 'local-only' needs a local model (an upstream with provider 'llama_cpp')"
        )
    return PolicyWindow(
        name,
        mode,
        message,
        groups,
        users,
        start,
        end,
        weekly,
        models,
        default,
        budget,
        source,
        dict(raw),
        agent=agent,
        completions=completions,
    )


def parse_windows(
    raw: Any, *, tz: ZoneInfo, local_models: Sequence[str] = ()
) -> tuple[PolicyWindow, ...]:
    """``c.RSQLProxy.policy_windows``: a list of windows with unique names."""
    where = "RSQLProxy.policy_windows"
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of windows")
    out = [
        parse_window(w, where=f"{where}[{i}]", tz=tz, local_models=local_models)
        for i, w in enumerate(raw)
    ]
    names = [w.name for w in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"{where}: two windows are named {dup!r}; names must be unique")
    return tuple(out)


def matches(patterns: Sequence[str], model: str) -> bool:
    """Whether `model` is named by one of `patterns` (exact names or fnmatch patterns, case
    sensitive: model ids are)."""
    from fnmatch import fnmatchcase

    return any(p == model or fnmatchcase(model, p) for p in patterns)


def _names(value: Any, *, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    return tuple(value)


def _weekly(raw: Any, *, where: str, tz: ZoneInfo) -> Weekly:
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: expected {{'days': ['mon', 'wed'], 'start': '09:00', 'end': '11:00'}}"
        )
    unknown = sorted(set(raw) - {"days", "start", "end", "timezone"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r}; fields: days, start, end, timezone"
        )
    days = _names(raw.get("days", []), where=f"{where}['days']")
    bad = [d for d in days if d.lower()[:3] not in DAYS]
    if not days or bad:
        raise ConfigError(
            f"{where}['days']: days of the week from {', '.join(DAYS)}, got {list(days)}"
        )
    times = []
    for key in ("start", "end"):
        try:
            times.append(dt.time.fromisoformat(str(raw.get(key, ""))))
        except ValueError:
            raise ConfigError(
                f"{where}[{key!r}]: a time of day like '09:00', got {raw.get(key)!r}"
            ) from None
    if times[0] == times[1]:
        raise ConfigError(f"{where}: 'start' and 'end' are the same time")
    tz_name = raw.get("timezone", str(tz))
    zone(str(tz_name), where=f"{where}['timezone']")
    return Weekly(
        tuple(sorted({DAYS.index(d.lower()[:3]) for d in days})), times[0], times[1], str(tz_name)
    )


class PolicyWindows:
    """The configured windows and the run-time ones, and which is in force for a user now."""

    def __init__(
        self,
        configured: Sequence[PolicyWindow],
        state: StateBackend,
        *,
        tz: ZoneInfo,
        local_models: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.configured = tuple(configured)
        self.state = state
        self.tz = tz
        self.local_models = tuple(local_models)
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.runtime: tuple[PolicyWindow, ...] = ()
        self.ended: dict[str, float] = {}  # configured window -> not in force before this instant
        self._read_at = float("-inf")  # monotonic
        self._reading: asyncio.Future[Any] | None = None
        self._failing = False

    # -- reading the shared copy ---------------------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        """Bring the run-time windows up to date when the copy is older than `refresh_seconds`;
        concurrent callers share one read. A failed read keeps the last copy (logged): the
        state backend's outage is answered by admission itself."""
        if not force and time.monotonic() - self._read_at < self.refresh_seconds:
            return
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        try:
            await asyncio.shield(reading)
        finally:
            if self._reading is reading and reading.done():
                self._reading = None

    async def _read(self) -> None:
        try:
            runtime = await self.state.entries(RUNTIME_TABLE)
            ended = await self.state.entries(ENDED_TABLE)
        except Exception as exc:
            if not self._failing:  # once per outage: the state backend reports the outage itself
                log.warning(
                    "policy windows: reading the run-time windows failed (%s); using the last copy",
                    type(exc).__name__,
                )
            self._failing = True
            self._read_at = time.monotonic()
            return
        self._failing = False
        now = self.clock()
        windows = []
        for name, text in sorted(runtime.items()):
            try:
                w = parse_window(
                    json.loads(text),
                    where=f"run-time window {name!r}",
                    tz=self.tz,
                    source="runtime",
                    local_models=self.local_models,
                )
            except (ValueError, ConfigError) as exc:
                log.warning("policy windows: skipping the run-time window %r: %s", name, exc)
                continue
            if w.end is not None and w.end <= now:
                await self._forget(RUNTIME_TABLE, name)
                continue
            windows.append(w)
        self.runtime = tuple(sorted(windows, key=lambda w: (w.start or 0.0, w.name)))
        self.ended = {}
        for name, text in ended.items():
            try:
                until = float(text)
            except ValueError:
                continue
            if until > now:
                self.ended[name] = until
        self._read_at = time.monotonic()

    async def _forget(self, table: str, name: str) -> None:
        try:
            await self.state.delete_entry(table, name)
        except Exception:  # another replica will; the entry is ignored meanwhile
            pass

    # -- the request path ---------------------------------------------------------------------

    def in_force(
        self, user: str, groups: Sequence[str]
    ) -> tuple[PolicyWindow, tuple[float, float]] | None:
        """The window in force for `user` now (the most restrictive when several are)."""
        now = self.clock()
        best = None
        for w in (*self.configured, *self.runtime):
            if not w.applies_to(user, groups):
                continue
            span = w.span(now)
            if span is None or self.ended.get(w.name, 0.0) > now:
                continue
            if best is None or _RANK[w.mode] < _RANK[best[0].mode]:
                best = (w, span)
        return best

    def refusal(
        self, window: PolicyWindow, span: tuple[float, float], allowed: Sequence[str] = ()
    ) -> EngineError:
        """The 403 a user gets inside `window`: its message and when it ends."""
        info = window.describe(span, self.tz)
        until = f"until {info['ends_at_local']} ({info['ends_at']})"
        said = window.message or "the assistant is not available now"
        if window.mode == "off":
            text = f"{said} (policy window {window.name!r}, {until})"
        else:
            only = ", ".join(allowed) or "none"
            text = f"{said} (policy window {window.name!r}, {until}: only these models may be used: {only})"
        extra: dict[str, Any] = {"window": info}
        if window.mode != "off":
            extra["param"] = "model"
            extra["allowed_models"] = list(allowed)
        return Forbidden(text, code="policy_window", extra=extra)

    def agent_refusal(self, window: PolicyWindow, span: tuple[float, float]) -> EngineError:
        """The 403 a request from agent mode gets inside a window that turns agent mode off."""
        return self.feature_refusal(window, span, "agent mode", "ask without --agent")

    def completions_refusal(self, window: PolicyWindow, span: tuple[float, float]) -> EngineError:
        """The 403 an inline completion gets inside a window that turns completions off."""
        return self.feature_refusal(window, span, "inline completions", "%%ask still answers")

    def feature_refusal(
        self, window: PolicyWindow, span: tuple[float, float], feature: str, hint: str
    ) -> EngineError:
        """The 403 for one feature a window turns off while the rest of the assistant stays on."""
        info = window.describe(span, self.tz)
        said = window.message or f"{feature} is not available now"
        text = (
            f"{said} (policy window {window.name!r}, until {info['ends_at_local']} "
            f"({info['ends_at']}): {feature} is off; {hint})"
        )
        return Forbidden(text, code="policy_window", extra={"window": info})

    # -- the admin's run-time controls ------------------------------------------------------------

    async def start(self, body: Any) -> dict[str, Any]:
        """Start a window now (``minutes``) or between ``start`` and ``end``; 409 if one of that
        name is in force or configured."""
        if not isinstance(body, Mapping):
            raise BadRequest(
                'send {"name": ..., "groups": [...], "minutes": 90, "mode": "off", "message": ...}'
            )
        raw = {k: v for k, v in body.items() if k != "minutes"}
        now = self.clock()
        if "minutes" in body:
            minutes = body["minutes"]
            if (
                isinstance(minutes, bool)
                or not isinstance(minutes, (int, float))
                or not 0 < minutes <= 60 * 24 * 31
            ):
                raise BadRequest(
                    f"'minutes' must be a number from 1 to {60 * 24 * 31} (31 days), got {minutes!r}"
                )
            if "end" in body:
                raise BadRequest("give 'minutes' or 'end', not both")
            start = parse_time(body["start"], self.tz, where="'start'") if "start" in body else now
            raw["start"] = iso_utc(start)
            raw["end"] = iso_utc(start + minutes * 60)
        elif "start" not in body and "end" in body:
            raw["start"] = iso_utc(now)
        if "weekly" in raw:
            raise BadRequest(
                "run-time windows are one-off (a start and 'minutes' or an 'end'); put weekly ones in "
                "c.RSQLProxy.policy_windows"
            )
        try:
            window = parse_window(
                raw, where="window", tz=self.tz, source="runtime", local_models=self.local_models
            )
        except ConfigError as exc:
            raise BadRequest(str(exc), code="invalid_window") from None
        assert window.end is not None
        if window.end <= now:
            raise BadRequest(
                f"window {window.name!r} would end at {iso_utc(window.end)}, which has passed",
                code="invalid_window",
            )
        await self.refresh(force=True)
        if any(w.name == window.name for w in self.configured) or any(
            w.name == window.name for w in self.runtime
        ):
            raise EngineError(
                f"a window named {window.name!r} exists already; end it first or pick another name",
                status=409,
                code="window_exists",
            )
        stored = {k: window.raw[k] for k in _FIELDS if k in window.raw}
        stored["start"], stored["end"] = iso_utc(window.start or now), iso_utc(window.end)
        await self.state.put_entry(RUNTIME_TABLE, window.name, json.dumps(stored))
        await self.refresh(force=True)
        return self._listed(window, now)

    async def end(self, name: str) -> dict[str, Any]:
        """End a window now: a run-time one is removed; a configured one stays ended until the
        end of its current occurrence (a weekly one comes back next week)."""
        await self.refresh(force=True)
        now = self.clock()
        runtime = next((w for w in self.runtime if w.name == name), None)
        if runtime is not None:
            await self.state.delete_entry(RUNTIME_TABLE, name)
            await self.refresh(force=True)
            return {"ended": name, "source": "runtime"}
        configured = next((w for w in self.configured if w.name == name), None)
        if configured is None:
            names = [w.name for w in (*self.configured, *self.runtime)]
            raise NotFound(
                f"no window named {name[:100]!r}; windows: {', '.join(names) or 'none'}",
                code="no_such_window",
            )
        span = configured.span(now)
        if span is None or self.ended.get(name, 0.0) > now:
            raise EngineError(
                f"window {name!r} is not in force now", status=409, code="window_not_in_force"
            )
        await self.state.put_entry(ENDED_TABLE, name, repr(span[1]))
        await self.refresh(force=True)
        return {"ended": name, "source": "config", "until": iso_utc(span[1])}

    async def listing(self) -> list[dict[str, Any]]:
        """Every window, configured and run-time, with whether it is in force now."""
        await self.refresh(force=True)
        now = self.clock()
        return [self._listed(w, now) for w in (*self.configured, *self.runtime)]

    def _listed(self, w: PolicyWindow, now: float) -> dict[str, Any]:
        span = w.span(now)
        active = span is not None and self.ended.get(w.name, 0.0) <= now
        out = w.describe(span, self.tz)
        out.update(
            {"groups": list(w.groups), "users": list(w.users), "source": w.source, "active": active}
        )
        if w.weekly is not None:
            out["weekly"] = w.weekly.as_json()
            if span is None:
                out["starts_at"] = out["ends_at"] = out["ends_at_local"] = None
        if w.mode == "custom":
            out.update(
                {
                    "models": list(w.models) if w.models is not None else None,
                    "default_model": w.default_model,
                    "user_daily_budget_usd": w.daily_budget_usd,
                }
            )
        return out
