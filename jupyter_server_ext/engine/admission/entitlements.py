"""Entitlements: which models a caller may use right now, and their default models.

An admin names the models per user and per group (``"models"`` and ``"default_model"`` in
``c.RSQLProxy.limit_overrides``, ``c.RSQLProxy.allowed_models`` for everyone); a policy window
in force narrows or replaces them (``policy_windows``). This module turns the user's policy
and the window into one answer the engine enforces and ``GET me`` / ``v1/models`` show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Forbidden
from .limiter import UserRules
from .policy_windows import PolicyWindows
from .window_specs import PolicyWindow, matches


@dataclass(frozen=True)
class Access:
    """What one caller may use now."""

    models: tuple[str, ...]  # the served models they may call
    patterns: tuple[str, ...] | None  # the names / patterns that decide it; None: every model
    default_model: str | None  # what a request naming no model gets
    sql_default_model: str | None  # %%sql_ai's model when none is named
    window: PolicyWindow | None = None
    span: tuple[float, float] | None = None
    agent: bool = True  # the caller's policy lets agent mode (and MCP tools) run at all
    completions: bool = True  # the caller's policy lets the editor's inline completions run
    # the tutor window in force for the caller, beside the window above (``courses.tutor``)
    tutor: PolicyWindow | None = None
    tutor_span: tuple[float, float] | None = None

    def allows(self, model: str) -> bool:
        if self.window is not None and self.window.mode == "off":
            return False
        return self.patterns is None or matches(self.patterns, model)


def resolve(
    policy: UserRules,
    found: tuple[PolicyWindow, tuple[float, float]] | None,
    *,
    served: Sequence[str],
    local_models: Sequence[str],
    proxy_default: str,
    tutoring: tuple[PolicyWindow, tuple[float, float]] | None = None,
) -> Access:
    """The caller's access from their policy (overrides and a custom window already applied,
    ``Limiter.policy``), the window in force and the tutor window in force."""
    window, span = found if found is not None else (None, None)
    tutor, tutor_span = tutoring if tutoring is not None else (None, None)
    if window is not None and window.mode == "off":
        off = Access((), (), None, None, window, span, policy.agent, policy.completions)
        return off  # nothing is sent: no tutoring to do
    patterns = policy.models
    preferred = [policy.default_model, proxy_default]
    if window is not None and window.mode == "local-only":
        patterns, preferred = tuple(local_models), [None]
    allowed = tuple(m for m in served if patterns is None or matches(patterns, m))

    def ok(model: str | None) -> bool:
        return bool(model) and (patterns is None or matches(patterns, model or ""))

    default = next((m for m in preferred if ok(m)), None)
    if default is None and patterns is not None and allowed:
        default = allowed[0]
    sql_default = (
        policy.sql_default_model
        if ok(policy.sql_default_model) and (window is None or window.mode != "local-only")
        else default
    )
    return Access(
        allowed,
        patterns,
        default,
        sql_default,
        window,
        span,
        policy.agent,
        policy.completions,
        tutor,
        tutor_span,
    )


def not_allowed(model: str, access: Access) -> Forbidden:
    """The 403 for a model the caller may not use, naming the ones they may."""
    names = ", ".join(access.models) or "none"
    window = access.window
    if window is not None and (window.mode == "local-only" or window.models is not None):
        where = (
            f"the policy window {window.name!r}, in force now, sets them "
            "(c.RSQLProxy.policy_windows, or rsql-proxy admin window)"
        )
    else:
        where = "your hub admin sets them (allowed_models, or 'models' in limit_overrides)"
    return Forbidden(
        f"your token is valid, but the model {model[:200]!r} is not one you may use on this hub "
        f"(you may use: {names}); {where}",
        code="model_not_allowed",
        extra={"param": "model", "allowed_models": list(access.models)},
    )


def agent_off(
    user: str, offered: str | None = None, instead: str = "ask without tools (without --agent)"
) -> Forbidden:
    """The 403 for agent mode (or an MCP tool) when the admin turned it off for `user`;
    `offered`: the request field that offers the model tools, when that is what made it one;
    `instead`: what the caller can do, in its own terms (an MCP client has no --agent)."""
    what = (
        f"this request offers the model tools ({offered!r}), which is agent mode, and "
        if offered
        else ""
    )
    return Forbidden(
        f"{what}agent mode is off for {user[:80]!r} on this hub (an admin's setting: agent_mode, "
        f"or 'agent' in limit_overrides); {instead}",
        code="agent_off",
        extra={"param": offered} if offered else None,
    )


# The request fields by which a client offers the model tools to call, in every API the proxy
# takes: chat completions ("tools", and the legacy "functions"), the Responses API ("tools":
# functions, namespaces, built-in and MCP tools) and Anthropic's Messages API ("tools": client
# and server tools; "mcp_servers": the MCP connector, whose tools the provider calls).
TOOL_FIELDS = ("tools", "functions", "mcp_servers")


def offered_tools(body: Any) -> str | None:
    """The field by which `body` offers the model tools (a non-empty one of ``TOOL_FIELDS``), or
    None. Agent mode is decided by this, what the request does, never by what the client says it
    is (``X-RSQL-Client``): Claude Code, Codex and any SDK agent send no such header."""
    if not isinstance(body, dict):
        return None
    for name in TOOL_FIELDS:
        value = body.get(name)
        # an empty list offers nothing; any other value is a tool offer the parse refuses or
        # sends on, so it is treated as one here (a malformed offer is still an offer)
        if value is not None and value != [] and value != {}:
            return name
    return None


def inline_completions_off(user: str) -> Forbidden:
    """The 403 for an inline completion when the admin turned completions off for `user`."""
    return Forbidden(
        f"inline completions are off for {user[:80]!r} on this hub (an admin's setting: "
        "inline_completions, or 'completions' in limit_overrides); %%ask still answers",
        code="completions_off",
    )


def check_feature(
    client: str, access: Access, windows: PolicyWindows, user: str, body: Any = None
) -> None:
    """Refuse a request of a feature that is off for the caller now: agent mode (any request
    that offers the model tools, ``offered_tools``, on any API, and the kernel's agent, client
    "agent") or the editor's inline completions (client "inline", which only ``{proxy}inline``
    sets), each off by the admin's switch or by a policy window in force (a tutor window turns
    agent mode off unless it allows it); plain questions go on."""
    # the kernel's agent is told of --agent; any other client of the field that made it agent mode
    offered = None if client == "agent" else offered_tools(body)
    in_force = _windows(access)
    if client == "agent" or offered is not None:
        for window, span in in_force:
            if not window.agent:
                raise windows.agent_refusal(window, span, offered)  # plain questions stay on
        if not access.agent:
            raise agent_off(user, offered)
    if client == "inline":
        for window, span in in_force:
            if not window.completions:
                raise windows.inline_completions_refusal(window, span)
        if not access.completions:
            raise inline_completions_off(user)


def check_tool_call(access: Access, windows: PolicyWindows, user: str) -> None:
    """Refuse a warehouse tool call (``{proxy}mcp``, agent mode by what it is) when the
    assistant is off for the caller now, or agent mode is: by a policy window in force (a
    tutor window turns it off unless it allows it) or by the admin's switch. The messages say
    what holds for a client that has no --agent to drop."""
    for window, span in _windows(access):
        if window.mode == "off":
            raise windows.refusal(window, span)
        if not window.agent:
            later = "tool calls are refused until the window ends"
            raise windows.agent_refusal(window, span, instead=later)
    if not access.agent:
        raise agent_off(user, instead="tool calls are refused while it is off; ask your admin")


def _windows(access: Access) -> list[tuple[PolicyWindow, tuple[float, float]]]:
    """The windows in force for the caller: the mode window, then the tutor window."""
    found = [(access.window, access.span), (access.tutor, access.tutor_span)]
    return [(w, s) for w, s in found if w is not None and s is not None]


def me_fields(access: Access, tz: Any) -> dict[str, Any]:
    """The entitlement part of ``GET me``."""
    off = access.window is not None and access.window.mode == "off"
    windows = [w for w, _ in _windows(access)]
    return {
        "models": list(access.models),
        "default_model": access.default_model,
        "sql_default_model": access.sql_default_model,
        "window": access.window.describe(access.span, tz) if access.window is not None else None,
        "agent": access.agent and not off and all(w.agent for w in windows),
        "completions": access.completions and not off and all(w.completions for w in windows),
        "tutor": tutor_fields(access, tz),
    }


def tutor_fields(access: Access, tz: Any) -> dict[str, Any] | None:
    """The tutor window in force as its students are shown it (``GET me``, the editor's
    status item): its name and message, whether agent tools run, what completions offer, and
    when it ends; None outside one."""
    tutor = access.tutor
    if tutor is None:
        return None
    info = tutor.describe(access.tutor_span, tz)
    return {
        "window": tutor.name,
        "message": tutor.message,
        "agent": tutor.agent,
        "completions": "names" if tutor.completions else False,
        "ends_at": info["ends_at"],
        "ends_at_local": info["ends_at_local"],
    }
