"""What ``GET me`` and ``GET status`` answer, and how an error is written, as plain functions of
the engine: the HTTP handlers and the in-process engine both call these, so a client reads one
shape whichever it talks to (docs/architecture.md, "Rules a contributor keeps")."""

from __future__ import annotations

import json
from typing import Any

from .admission.entitlements import Access
from .core import Engine
from .errors import EngineError, NotFound
from .interface import Caller, Reply

# every state a key can be in, so that `status` always lists each one (zero included)
KEY_STATES = ("healthy", "cooling", "disabled", "breaker-open", "breaker-half-open")


async def me_view(engine: Engine, caller: Caller) -> dict[str, Any]:
    """The caller's models and defaults, the policy window in force, limits, current use, what
    is left, budget and reset times (``GET me``)."""
    # reads the run-time windows first: the snapshot sees them
    access = await engine.me_access(caller)
    snap = await engine.limiter.snapshot(caller.user, caller.groups)
    # the admin's context policy: the kernel side applies it before anything is sent
    return {
        "user": caller.user,
        "groups": list(caller.groups),
        "admin": caller.admin,
        **access,
        **snap,
        "context_policy": engine.settings.context_policy,
        # what the providers' prompt caches read and saved today (None: no usage log)
        "prompt_cache": await engine.savings.today(caller.user),
        # the course log that records the caller's conversations, and what they are told
        "course_log": engine.replies.course_log.me(caller),
    }


async def status_view(engine: Engine) -> dict[str, Any]:
    """Health: upstream key states, state backend and database reachable, the usage log's
    spool; no secrets (``GET status``, and the admin dashboard's status)."""
    counts = dict.fromkeys(KEY_STATES, 0)
    for key in engine.pool.keys:
        counts[engine.pool.key_state(key)] += 1
    state_ok = await engine.state.ping()
    db: dict[str, Any] = {"backend": None, "reachable": None}
    usage_log = None
    if engine.usage is not None:
        db = {"backend": engine.usage.store.name, "reachable": await engine.usage.store.ping()}
        # rows waiting in the spool while the database is away, rows dropped: counts only
        usage_log = engine.usage.status()
    course_log = engine.replies.course_log
    healthy = counts["healthy"] > 0 and state_ok and db["reachable"] is not False
    return {
        "status": "ok" if healthy else "degraded",
        "upstreams": counts,
        "models": engine.pool.models(),
        "state": {"backend": engine.state.name, "reachable": state_ok},
        "database": db,
        "usage_log": usage_log,
        # the course log's journal and writer, as the usage log's (None: no course is logged)
        "course_log": course_log.writer.status()
        if course_log.specs and course_log.writer
        else None,
    }


def models_view(engine: Engine, access: Access | None = None) -> dict[str, Any]:
    """GET v1/models: the served models, only those `access` allows when given."""
    served = engine.pool.models() if access is None else access.models
    return {"object": "list", "data": [_model(engine, m) for m in served]}


def _model(engine: Engine, model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": engine.started_at, "owned_by": "rsql-proxy"}


def model_view(engine: Engine, model: str, access: Access | None = None) -> dict[str, Any]:
    """GET v1/models/{id}: one served model, or OpenAI's 404 for an unknown one (and for one
    the caller may not use, as OpenAI answers a model a project may not see)."""
    if model in engine.pool.models() and (access is None or model in access.models):
        return _model(engine, model)
    raise NotFound(
        f"The model '{model[:200]}' does not exist or you do not have access to it.",
        code="model_not_found",
        extra={"param": "model"},
    )


def error_reply(exc: EngineError) -> Reply:
    """The answer to an error as OpenAI sends one: its status, its headers (Retry-After,
    WWW-Authenticate, ...) and the JSON error object."""
    headers = {**exc.headers, "Content-Type": "application/json"}
    return Reply(exc.status, headers, json.dumps(exc.to_json()).encode())
