"""Policy windows as the admin writes them: parsed and checked into frozen values.

A window puts a group (or everyone) into a mode for a span of time: ``off``, ``local-only``,
``custom`` (models, a default model and a daily budget of its own) or ``tutor`` (the course's
tutoring instruction first in every request, agent tools off unless allowed, completions of
names only: ``courses.tutor``; it goes with whichever other window is in force). One-off windows
have a start and an end (UTC instants); weekly ones (:class:`Weekly`) recur on given days
between two times of day in a named time zone; standing ones (``"always": true``) hold until
the admin removes them from the configuration. :func:`parse_windows` reads ``c.RSQLProxy.policy_windows``
and :func:`parse_window` one window, from configuration or from the admin's run-time request;
every bad field is named at once (ConfigProblems, one line each). ``policy_windows.PolicyWindows`` keeps the run-time
windows and says which window is in force for a user now.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError, Problems
from ..upstreams.specs import parse_budget_usd

MODES = ("off", "local-only", "custom", "tutor")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERYONE = "*"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,63}$")
# every field a window's dict may have; the run-time store keeps these of a started window
FIELDS = (
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
    "instruction",
    "always",
)
MAX_MESSAGE = 500
MAX_INSTRUCTION = 4000  # a tutoring instruction: some 1,000 tokens, sent with every request


def zone(name: str, *, where: str = "RSQLProxy.admin_timezone") -> ZoneInfo:
    """An IANA time zone ("Europe/Berlin", "UTC"), or ConfigError naming the setting."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: unknown time zone {name!r}; use an IANA name like 'UTC' or 'Europe/Berlin'"
        ) from None


def iso_utc(ts: float) -> str:
    """`ts` as an ISO 8601 UTC time to the second: "2026-11-23T18:00:00Z"."""
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
    """One window, checked: whom it applies to, when, and the mode it puts them into."""

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
    instruction: str = ""  # tutor: the admin's tutoring instruction ("": the default one)
    always: bool = False  # in force at every moment (a standing window)

    def applies_to(self, user: str, groups: Sequence[str]) -> bool:
        return (
            EVERYONE in self.groups or user in self.users or any(g in self.groups for g in groups)
        )

    def span(self, now: float) -> tuple[float, float] | None:
        if self.always:
            return -math.inf, math.inf
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
        # a standing window starts and ends nowhere: None, as a weekly one between occurrences
        begin = begin if begin is not None and math.isfinite(begin) else None
        end = end if end is not None and math.isfinite(end) else None
        out["starts_at"] = iso_utc(begin) if begin is not None else None
        out["ends_at"] = iso_utc(end) if end is not None else None
        out["ends_at_local"] = local_text(end, tz) if end is not None else None
        out["always"] = self.always
        out["timezone"] = str(tz)
        return out


def parse_window(
    raw: Any, *, where: str, tz: ZoneInfo, source: str = "config", local_models: Sequence[str] = ()
) -> PolicyWindow:
    """One window from its configuration (or run-time) dict; ConfigProblems names every field
    that is wrong."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: expected a dict like {{'name': 'exam', 'groups': ['students'], "
            "'start': ..., 'end': ..., 'mode': 'off', 'message': ...}"
        )
    problems = Problems()
    for unknown in sorted(set(raw) - set(FIELDS), key=str):
        close = difflib.get_close_matches(str(unknown), FIELDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"fields: {', '.join(FIELDS)}"
        problems.append(f"{where}: unknown field {unknown!r}; {hint}")
    name = raw.get("name")
    if isinstance(name, str) and _NAME.match(name):
        where = f"{where} ({name!r})"
    else:
        problems.append(
            f"{where}['name']: a name of 1-64 letters, digits, spaces or ._:- is required, got {name!r}"
        )
    mode = raw.get("mode")
    if mode not in MODES:  # what depends on the mode waits until it names one
        problems.append(f"{where}['mode']: one of {', '.join(MODES)}, got {mode!r}")
    message = raw.get("message", "")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        problems.append(f"{where}['message']: a text of at most {MAX_MESSAGE} characters")
    groups, users = (
        problems.run(partial(_names, raw.get(k, []), where=f"{where}[{k!r}]"), None)
        for k in ("groups", "users")
    )
    if groups == () and users == ():
        problems.append(
            f"{where}: name the 'groups' (or ['*'] for everyone) or 'users' it applies to"
        )
    always = raw.get("always", False)
    if not isinstance(always, bool):
        problems.append(f"{where}['always']: true (in force at all times) or false")
    start, end, weekly = problems.run(partial(_when, raw, where, tz, always is True), (0, 0, None))
    models = default = budget = None
    if mode == "custom":
        models, default, budget = problems.run(partial(_custom, raw, where), (None, None, None))
    elif mode in MODES:
        extra = [k for k in ("models", "default_model", "user_daily_budget_usd") if k in raw]
        if extra:
            problems.append(
                f"{where}[{extra[0]!r}]: only a 'custom' window sets it (this one is {mode!r})"
            )
    # a tutor teaches: agent tools (which do the work) are off unless the admin allows them
    agent = raw.get("agent", mode != "tutor")
    if not isinstance(agent, bool):
        problems.append(
            f"{where}['agent']: true (agent mode on) or false (off); "
            f"{'off' if mode == 'tutor' else 'on'} by default here"
        )
    instruction = raw.get("instruction", "")
    if "instruction" in raw and mode in MODES and mode != "tutor":
        problems.append(
            f"{where}['instruction']: only a 'tutor' window sets it (this one is {mode!r})"
        )
    if not isinstance(instruction, str) or len(instruction) > MAX_INSTRUCTION:
        problems.append(
            f"{where}['instruction']: a text of at most {MAX_INSTRUCTION} characters (the "
            "tutoring instruction every request of the window's users begins with)"
        )
    elif "instruction" in raw and not instruction.strip():
        problems.append(
            f"{where}['instruction']: empty; leave it out for the default tutoring instruction"
        )
    completions = raw.get("completions", True)
    if not isinstance(completions, bool):
        problems.append(
            f"{where}['completions']: true (inline completions on, the default) or false"
        )
    if mode == "local-only" and not local_models:
        problems.append(
            f"{where}: mode 'local-only' needs a local model (an upstream with provider 'llama_cpp')"
        )
    problems.refuse()
    assert isinstance(name, str) and isinstance(mode, str)  # else a problem above
    return PolicyWindow(
        name,
        mode,
        message,
        groups or (),
        users or (),
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
        instruction=instruction.strip(),
        always=always,
    )


def _when(
    raw: Mapping[str, Any], where: str, tz: ZoneInfo, always: bool
) -> tuple[float | None, float | None, Weekly | None]:
    """A window's (start, end, weekly): standing, weekly or one-off; raises ConfigProblems."""
    if always:
        timed = [k for k in ("start", "end", "weekly") if k in raw]
        if timed:
            raise ConfigError(
                f"{where}: a window 'always' in force has no {timed[0]!r}; drop one or the other"
            )
        return None, None, None
    if "weekly" in raw:
        if "start" in raw or "end" in raw:
            raise ConfigError(
                f"{where}: a window is either 'weekly' or has a 'start' and an 'end', not both"
            )
        return None, None, _weekly(raw["weekly"], where=f"{where}['weekly']", tz=tz)
    if "start" not in raw or "end" not in raw:
        raise ConfigError(
            f"{where}: a one-off window needs 'start' and 'end' (ISO 8601), or use 'weekly' "
            "(or 'always': true)"
        )
    problems = Problems()
    start, end = (
        problems.run(partial(parse_time, raw[k], tz, where=f"{where}[{k!r}]"), None)
        for k in ("start", "end")
    )
    if start is not None and end is not None and end <= start:
        problems.append(f"{where}: 'end' ({raw['end']}) must be after 'start' ({raw['start']})")
    problems.refuse()
    return start, end, None


def _custom(
    raw: Mapping[str, Any], where: str
) -> tuple[tuple[str, ...] | None, str | None, float | None]:
    """A 'custom' window's (models, default_model, user_daily_budget_usd)."""
    problems = Problems()
    models = None
    if "models" in raw:
        models = problems.run(partial(_names, raw["models"], where=f"{where}['models']"), None)
        if models == ():
            problems.append(
                f"{where}['models']: at least one model name or pattern (or use mode 'off')"
            )
    default = raw.get("default_model")
    if default is not None and (not isinstance(default, str) or not default):
        problems.append(f"{where}['default_model']: a model name")
    elif default is not None and models and not matches(models, default):
        problems.append(
            f"{where}['default_model']: {default!r} is not among its 'models' {list(models)}"
        )
    budget = problems.run(
        partial(
            parse_budget_usd,
            raw.get("user_daily_budget_usd"),
            where=f"{where}['user_daily_budget_usd']",
        ),
        None,
    )
    if not problems and models is None and default is None and budget is None:
        problems.append(
            f"{where}: a 'custom' window sets 'models', 'default_model' and/or 'user_daily_budget_usd'"
        )
    problems.refuse()
    return models, default, budget


def parse_windows(
    raw: Any, *, tz: ZoneInfo, local_models: Sequence[str] = ()
) -> tuple[PolicyWindow, ...]:
    """``c.RSQLProxy.policy_windows``: a list of windows with unique names; every window's
    problems are named."""
    where = "RSQLProxy.policy_windows"
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of windows")
    problems = Problems()
    parsed = [
        problems.run(
            partial(parse_window, w, where=f"{where}[{i}]", tz=tz, local_models=local_models), None
        )
        for i, w in enumerate(raw)
    ]
    names = [w.get("name") for w in raw if isinstance(w, Mapping)]
    for dup in sorted({n for n in names if isinstance(n, str) and names.count(n) > 1}):
        problems.append(f"{where}: two windows are named {dup!r}; names must be unique")
    problems.refuse()
    return tuple(w for w in parsed if w is not None)


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
    problems = Problems()
    for unknown in sorted(set(raw) - {"days", "start", "end", "timezone"}, key=str):
        problems.append(f"{where}: unknown field {unknown!r}; fields: days, start, end, timezone")
    days = problems.run(partial(_names, raw.get("days", []), where=f"{where}['days']"), None)
    if days is not None and (not days or any(d.lower()[:3] not in DAYS for d in days)):
        problems.append(
            f"{where}['days']: days of the week from {', '.join(DAYS)}, got {list(days)}"
        )
    times: list[dt.time] = []
    for key in ("start", "end"):
        try:
            times.append(dt.time.fromisoformat(str(raw.get(key, ""))))
        except ValueError:
            problems.append(f"{where}[{key!r}]: a time of day like '09:00', got {raw.get(key)!r}")
    if len(times) == 2 and times[0] == times[1]:
        problems.append(f"{where}: 'start' and 'end' are the same time")
    tz_name = raw.get("timezone", str(tz))
    problems.run(partial(zone, str(tz_name), where=f"{where}['timezone']"), None)
    problems.refuse()
    assert days is not None  # else a problem above
    return Weekly(
        tuple(sorted({DAYS.index(d.lower()[:3]) for d in days})), times[0], times[1], str(tz_name)
    )
