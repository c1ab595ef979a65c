"""The engine inside the kernel, for runs with no proxy to talk to (nbconvert on a laptop).

The kernel's own event loop belongs to ipykernel, so the engine gets a loop of its own on a
daemon thread, and magics call it synchronously. Upstreams come from the environment:

- ``RSQL_UPSTREAMS``: a JSON list in the format of ``c.RSQLProxy.upstreams``;
- else ``GROQ_API_KEY`` (Groq's free-tier limits) and/or ``OPENAI_API_KEY`` (``OPENAI_BASE_URL``
  honoured), named by alias like any upstream;
- ``RSQL_MODEL``: the default model.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from .config import RSQLProxy, build_engine
from .engine import Caller, Engine

GROQ = {
    "name": "groq", "base_url": "https://api.groq.com/openai/v1", "api_key_env": "GROQ_API_KEY",
    "models": ["llama-3.1-8b-instant", "llama-3.3-70b-versatile"],
    "limits": ["30/minute", "1000/day"], "token_limits": ["6000/minute"],
}
OPENAI = {
    "name": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY",
    "models": ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o", "gpt-4.1"],
}

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_engine: Engine | None = None


def upstreams_from_env(env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    env = os.environ if env is None else env
    if env.get("RSQL_UPSTREAMS"):
        ups = json.loads(env["RSQL_UPSTREAMS"])
        if not isinstance(ups, list):
            raise ValueError("RSQL_UPSTREAMS must be a JSON list of upstream dicts")
        return ups
    out = []
    if env.get("GROQ_API_KEY"):
        out.append(dict(GROQ))
    if env.get("OPENAI_API_KEY"):
        out.append({**OPENAI, "base_url": env.get("OPENAI_BASE_URL") or OPENAI["base_url"]})
    return out


def available() -> bool:
    """Whether this kernel has keys of its own to run the engine with."""
    try:
        return bool(upstreams_from_env())
    except ValueError:
        return False


def _ensure() -> tuple[asyncio.AbstractEventLoop, Engine]:
    global _loop, _engine
    with _lock:
        if _engine is None or _loop is None:
            # the engine's warnings (a model without a price, a key cooling down) would land in
            # the notebook's output through logging's last-resort handler; what the user must
            # know reaches them as the magic's error instead
            rsql_log = logging.getLogger("rsql")
            if not rsql_log.handlers:
                rsql_log.addHandler(logging.NullHandler())
            ups = upstreams_from_env()
            models = [m for u in ups for m in u.get("models", [])]
            proxy = RSQLProxy(
                upstreams=ups,
                default_model=os.environ.get("RSQL_MODEL") or (models[0] if models else ""),
                health_check_seconds=0.0,
            )
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="rsql-engine", daemon=True).start()
            database = "sqlite:///" + os.path.join(os.path.expanduser("~"), ".rsql", "usage.sqlite")
            engine = build_engine(proxy, default_database=database)
            asyncio.run_coroutine_threadsafe(engine.start(), loop).result(30)
            _loop, _engine = loop, engine
        return _loop, _engine


def _run(coro: Any, timeout: float = 600) -> Any:
    loop, _ = _ensure()
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def chat_completion(body: dict[str, Any], client_kind: str = "magic", no_cache: bool = False) -> dict[str, Any]:
    """One non-streaming completion; raises ``ProxyError`` (with .status) on failure."""
    _, engine = _ensure()
    caller = Caller(getpass.getuser(), admin=True, client=client_kind)

    async def go() -> tuple[dict[str, str], bytes]:
        reply = await engine.chat({**body, "stream": False}, caller, cache="bypass" if no_cache else "auto")
        return reply.headers, reply.body

    headers, raw = _run(go())
    data = json.loads(raw)
    data["rsql"] = {
        "cost_usd": float(headers.get("X-RSQL-Cost-USD", "0") or 0),
        "cache": headers.get("X-RSQL-Cache", "miss"),
        "upstream": headers.get("X-RSQL-Upstream"),
        "fallback": headers.get("X-RSQL-Fallback"),
    }
    return data


def me() -> dict[str, Any]:
    _, engine = _ensure()
    user = getpass.getuser()
    snap = _run(engine.limiter.snapshot(user, ()))
    return {"user": user, "mode": "in-process engine", "upstreams": [s.name for s in engine.settings.upstreams], **snap,
            "context_policy": engine.settings.context_policy}


def redact_preview(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The messages as an upstream would get them, and the counts per type (``POST redact``)."""
    _, engine = _ensure()
    return engine.redact_preview(messages)


def status() -> dict[str, Any]:
    _, engine = _ensure()
    states = [engine.pool.key_state(k) for k in engine.pool.keys]
    return {"status": "ok" if "healthy" in states else "degraded", "mode": "in-process engine",
            "upstreams": {s: states.count(s) for s in set(states)}}
