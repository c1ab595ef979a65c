"""Engines whose self-hosted servers have a concurrency cap (``max_in_flight``), in front of the
loopback provider, and what the provider saw of them: for tests/unit/test_inflight_cap.py (one
proxy), tests/e2e/test_inflight_redis.py and tests/e2e/test_waiting_line_redis.py (replicas
sharing Redis)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine import Caller, Engine
from jupyter_server_ext.wiring import build_engine
from tests.helpers.fake_provider import FakeProvider

LATENCY = 0.3
HELLO = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def engine_for(fp: FakeProvider, tmp: Path, caps: dict[str, int], **config: Any) -> Engine:
    """An engine whose upstreams are `fp`'s keys named in `caps`, each with that cap (or the
    ``upstreams`` given in `config`)."""
    keys = {pol.alias: key for key, pol in fp.keys.items()}
    upstreams = config.pop("upstreams", None) or [
        {
            "name": alias,
            "base_url": fp.base_url,
            "api_key": keys[alias],
            "max_in_flight": cap,
            "models": ["fake-small"],
        }
        for alias, cap in caps.items()
    ]
    proxy = RSQLProxy(
        upstreams=upstreams,
        default_model="fake-small",
        health_check_seconds=0.0,
        max_wait_seconds=10.0,
        user_concurrency=50,
        **config,
    )
    return build_engine(proxy, default_database=f"sqlite:///{tmp / 'usage.sqlite'}")


def replicas_for(fp: FakeProvider, tmp: Path, caps: dict[str, int], **config: Any) -> list[Engine]:
    """Two engines as ``engine_for`` makes them, each with a folder of its own under `tmp`:
    replicas when `config` gives them one state (``state_url``, ``state_prefix``)."""
    engines = []
    for i in range(2):
        (tmp / str(i)).mkdir()
        engines.append(engine_for(fp, tmp / str(i), caps, **config))
    return engines


def most_at_once(fp: FakeProvider, alias: str) -> int:
    """The most requests `alias` had in flight at one time, from when each arrived (each took LATENCY)."""
    starts = sorted(r.at for r in fp.received if r.alias == alias)
    return max((sum(1 for s in starts if t <= s < t + LATENCY * 0.9) for t in starts), default=0)


async def served_by(engine: Engine, user: str, text: str = "hello") -> str:
    """`user` asks `text`, answered: the upstream that answered."""
    body = {**HELLO, "messages": [{"role": "user", "content": text}]}
    reply = await engine.chat(body, Caller(user))
    assert json.loads(reply.body)["choices"]
    return reply.headers["X-RSQL-Upstream"]
