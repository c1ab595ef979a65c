"""Policy windows at run time: which window is in force for a user now, and the admin's controls.

A window puts a group (or everyone) into a mode for a span of time (``window_specs`` parses
and checks them). Windows come from configuration (``c.RSQLProxy.policy_windows``) and at run
time from the admin API; run-time ones live in the state backend, so every replica sees a
window another one started within ``REFRESH_SECONDS``. Times are kept as UTC instants; the
admin's time zone is only for showing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import BadRequest, ConfigError, EngineError, Forbidden, NotFound, problems_of
from .shared_state import StateBackend
from .window_specs import FIELDS, PolicyWindow, iso_utc, parse_time, parse_window

log = logging.getLogger("rsql.engine")

# the most restrictive window wins when several are in force for one user; a tutor window is
# not among them: it goes with whichever wins (``tutoring``), and an off window sends nothing
_RANK = {"off": 0, "local-only": 1, "custom": 2}
# state backend tables: run-time windows, and configured windows an admin ended early
RUNTIME_TABLE = "policy-windows"
ENDED_TABLE = "policy-windows-ended"
# how stale a replica's copy of the run-time windows may be: a read of the state backend at
# most this often per process, instead of one on every request
REFRESH_SECONDS = 2.0


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
        """The window in force for `user` now (the most restrictive when several are), tutor
        windows aside (``tutoring``)."""
        best = None
        for w, span in self._current(user, groups):
            if w.mode in _RANK and (best is None or _RANK[w.mode] < _RANK[best[0].mode]):
                best = (w, span)
        return best

    def tutoring(
        self, user: str, groups: Sequence[str]
    ) -> tuple[PolicyWindow, tuple[float, float]] | None:
        """The tutor window in force for `user` now, if any (of several, the first configured,
        then the first started)."""
        return next(((w, s) for w, s in self._current(user, groups) if w.mode == "tutor"), None)

    def _current(
        self, user: str, groups: Sequence[str]
    ) -> list[tuple[PolicyWindow, tuple[float, float]]]:
        now = self.clock()
        out = []
        for w in (*self.configured, *self.runtime):
            if not w.applies_to(user, groups):
                continue
            span = w.span(now)
            if span is None or self.ended.get(w.name, 0.0) > now:
                continue
            out.append((w, span))
        return out

    def refusal(
        self, window: PolicyWindow, span: tuple[float, float], allowed: Sequence[str] = ()
    ) -> EngineError:
        """The 403 a user gets inside `window`: its message and when it ends."""
        info = window.describe(span, self.tz)
        until = _until(info)
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

    def agent_refusal(
        self,
        window: PolicyWindow,
        span: tuple[float, float],
        offered: str | None = None,
        instead: str = "ask without --agent",
    ) -> EngineError:
        """The 403 a request of agent mode gets inside a window that turns agent mode off: the
        kernel's agent, an MCP tool call, or any request that offers the model tools (`offered`:
        the field that does, named in the message); `instead`: what the caller can do."""
        if offered:
            feature = f"agent mode (this request offers the model tools: {offered!r})"
            return self.feature_refusal(window, span, feature, "ask without tools", offered)
        return self.feature_refusal(window, span, "agent mode", instead)

    def inline_completions_refusal(
        self, window: PolicyWindow, span: tuple[float, float]
    ) -> EngineError:
        """The 403 an inline completion gets inside a window that turns completions off."""
        return self.feature_refusal(window, span, "inline completions", "%%ask still answers")

    def feature_refusal(
        self,
        window: PolicyWindow,
        span: tuple[float, float],
        feature: str,
        hint: str,
        param: str | None = None,
    ) -> EngineError:
        """The 403 for one feature a window turns off while the rest of the assistant stays on;
        `param`: the request field that asked for it, when one did."""
        info = window.describe(span, self.tz)
        said = window.message or f"{feature} is not available now"
        text = f"{said} (policy window {window.name!r}, {_until(info)}: {feature} is off; {hint})"
        extra: dict[str, Any] = {"window": info}
        if param:
            extra["param"] = param
        return Forbidden(text, code="policy_window", extra=extra)

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
        if "always" in raw:
            raise BadRequest(
                "run-time windows are one-off (a start and 'minutes' or an 'end'); put standing "
                "ones ('always': true) in c.RSQLProxy.policy_windows"
            )
        if "weekly" in raw:
            raise BadRequest(
                "run-time windows are one-off (a start and 'minutes' or an 'end'); put weekly ones in "
                "c.RSQLProxy.policy_windows"
            )
        try:
            window = parse_window(
                raw, where="window", tz=self.tz, source="runtime", local_models=self.local_models
            )
        except ConfigError as exc:  # every mistake of the request, in one answer
            raise BadRequest("; ".join(problems_of(exc)), code="invalid_window") from None
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
        stored = {k: window.raw[k] for k in FIELDS if k in window.raw}
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
        if configured.always:
            raise EngineError(
                f"window {name!r} is in force at all times ('always'): remove it from "
                "c.RSQLProxy.policy_windows to end it",
                status=409,
                code="window_always",
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
        if w.mode == "tutor":  # the admin's own text, or None: the default one
            out["instruction"] = w.instruction or None
        if w.mode == "custom":
            out.update(
                {
                    "models": list(w.models) if w.models is not None else None,
                    "default_model": w.default_model,
                    "user_daily_budget_usd": w.daily_budget_usd,
                }
            )
        return out


def _until(info: Mapping[str, Any]) -> str:
    """When a window's refusal ends, as its users are told."""
    if info.get("ends_at") is None:
        return "until further notice"
    return f"until {info['ends_at_local']} ({info['ends_at']})"
