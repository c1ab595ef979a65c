"""Every malformed body and every wrong field of a chat request is a 400 that says what is wrong
and names the field, never a 500, and never reaches a provider: the table of
tests/helpers/bad_requests.py through the engine's entry points as the handlers call them
(``decode_body``, then ``chat``) and the error body the hosts write (``error_reply``); fields for
a caller with a budget and one without. The bodies the proxy's worker process reads are sent
over HTTP to a real Jupyter server by tests/e2e/test_proxy_hardening.py (a unit test starts no
process)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine import Caller, Engine
from jupyter_server_ext.engine.errors import BadRequest
from jupyter_server_ext.engine.info_endpoints import error_reply
from jupyter_server_ext.wiring import build_engine
from tests.helpers import upstreams_for
from tests.helpers.bad_requests import BAD_BODIES, BAD_FIELDS
from tests.helpers.fake_provider import FakeProvider

PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}  # $0.001 a token
# alice (a student) has $1 a day through her group; carol (an admin) has no budget
ALICE = Caller("alice", groups=("students",))
CAROL = Caller("carol", admin=True)


@pytest.fixture
async def engine(fresh_provider: FakeProvider, tmp_path: Path) -> AsyncIterator[Engine]:
    """The proxy of the end-to-end test's Jupyter server, without the server."""
    proxy = RSQLProxy(
        upstreams=upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
        default_model="fake-small",
        default_max_tokens=20,
        limit_overrides={"group:students": {"user_daily_budget_usd": 1.0}},
        admin_users=["carol"],
        health_check_seconds=0.0,
    )
    engine = build_engine(proxy, default_database=f"sqlite:///{tmp_path / 'usage.sqlite'}")
    yield engine
    await engine.close()


async def refusal(engine: Engine, raw: bytes, caller: Caller) -> dict[str, Any]:
    """The error body a host writes for `raw` sent by `caller`, asserted a 400."""
    with pytest.raises(BadRequest) as caught:
        body = await engine.decode_body(raw, caller)
        await engine.chat(body, caller)
    reply = error_reply(caught.value)
    assert reply.status == 400
    error = json.loads(reply.body)["error"]
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(
    ("raw", "needle", "param"),
    BAD_BODIES,
    ids=lambda v: repr(v)[:40] if isinstance(v, bytes) else None,
)
async def test_malformed_json_is_a_400(
    engine: Engine, fresh_provider: FakeProvider, raw: bytes, needle: str, param: str | None
) -> None:
    error = await refusal(engine, raw, CAROL)
    assert needle in error["message"], error
    assert error.get("param") == param
    assert fresh_provider.received == []


@pytest.mark.parametrize(
    ("body", "needle", "param"),
    BAD_FIELDS,
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else None,
)
async def test_wrong_fields_are_400s_naming_the_field(
    engine: Engine, fresh_provider: FakeProvider, body: dict, needle: str, param: str
) -> None:
    for caller in (CAROL, ALICE):  # without a budget and with one
        error = await refusal(engine, json.dumps(body).encode(), caller)
        assert needle in error["message"] and error["param"] == param, (caller.user, error)
    assert fresh_provider.received == []


async def test_the_same_engine_serves_a_well_formed_request_after_them(
    engine: Engine, fresh_provider: FakeProvider
) -> None:
    """The table's refusals are the fields' doing: the same request well formed is answered."""
    for caller in (CAROL, ALICE):
        raw = json.dumps({"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]})
        reply = await engine.chat(await engine.decode_body(raw.encode(), caller), caller)
        assert reply.status == 200
    assert len(fresh_provider.received) == 2
