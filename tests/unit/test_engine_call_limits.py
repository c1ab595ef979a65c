"""The engine's admission of a call that is no model request (``Engine.admit`` with its
``CallLimits``, the MCP tool calls): its own windows and concurrency under the user's keys,
given back by ``Admitted.settle``, and refused while a policy window or the admin's switch
turns agent mode off. Through the engine's public methods on memory state (the admin's switch here; the policy
windows through the MCP endpoint over HTTP, tests/e2e/test_proxy_mcp.py
``test_policy_windows_refuse_tool_calls``, as its limits in tests/e2e/test_abuse_mcp.py). And
the hold of work that asks no provider (``Engine.admitted``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_rates
from jupyter_server_ext.engine.admission.limiter import CallLimits, LimitSettings, UserRules
from jupyter_server_ext.engine.errors import Forbidden, RateLimited
from jupyter_server_ext.state import MemoryState

TOOLS = CallLimits("mcp", "MCP tool calls", tuple(parse_rates(["3/minute"], where="t")), 2, 600)


async def engine_with(**settings: Any) -> Engine:
    return Engine(EngineSettings(upstreams=(), **settings), state=MemoryState())


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    e = await engine_with()
    yield e
    await e.close()


async def test_calls_are_counted_in_their_own_window_and_refused_past_it() -> None:
    chat = LimitSettings(user=UserRules(limits=tuple(parse_rates(["5/minute"], where="t"))))
    engine = await engine_with(limits=chat)
    try:
        ann, bob = Caller("ann"), Caller("bob")
        for _ in range(3):
            await (await engine.admit(ann, TOOLS)).settle(0.0)
        with pytest.raises(RateLimited) as refused:
            await engine.admit(ann, TOOLS)
        assert refused.value.limit == "MCP tool calls 3/minute" and refused.value.retry_after >= 1
        await (await engine.admit(bob, TOOLS)).settle(0.0)  # another user's own window
        # a model request's window is another: ann's chat quota (5 a minute) is untouched
        me = await engine.limiter.snapshot("ann", ())
        assert [(w["limit"], w["used"]) for w in me["limits"]] == [("5/minute", 0)], me
    finally:
        await engine.close()


async def test_concurrency_is_held_until_released(engine: Engine) -> None:
    ann = Caller("ann")
    calls = CallLimits("mcp", "MCP tool calls", (), 2, 600)
    first, second = await engine.admit(ann, calls), await engine.admit(ann, calls)
    with pytest.raises(RateLimited) as refused:
        await engine.admit(ann, calls)
    assert refused.value.limit == "MCP tool calls at once 2"
    await first.settle(0.0)
    await first.settle(0.0)  # given back once, whatever the caller does
    third = await engine.admit(ann, calls)
    with pytest.raises(RateLimited):
        await engine.admit(ann, calls)
    for held in (second, third):
        await held.settle(0.0)


async def test_agent_mode_off_refuses_the_call_before_counting_it() -> None:
    off = LimitSettings(overrides={"user:ann": {"agent": False}})
    state = MemoryState()
    engine = Engine(EngineSettings(upstreams=(), limits=off), state=state)
    try:
        with pytest.raises(Forbidden) as refused:
            await engine.admit(Caller("ann"), TOOLS)
        assert refused.value.code == "agent_off"
        assert "tool calls are refused while it is off" in refused.value.message
    finally:
        await engine.close()
    # the refused call took nothing of ann's window: on the same state, with her switch back
    # on, she has all three calls of it (a fourth is refused)
    engine = Engine(EngineSettings(upstreams=()), state=state)
    try:
        for _ in range(3):
            await (await engine.admit(Caller("ann"), TOOLS)).settle(0.0)
        with pytest.raises(RateLimited, match="MCP tool calls 3/minute"):
            await engine.admit(Caller("ann"), TOOLS)
    finally:
        await engine.close()


async def test_work_that_asks_no_provider_is_counted_and_gives_its_place_back_however_it_ends() -> (
    None
):
    """``Engine.admitted``: a stored response read, a token count, a redaction preview. Counted
    in the user's request window; their one place at once given back when the work fails."""
    user = UserRules(limits=tuple(parse_rates(["3/minute"], where="t")), concurrency=1)
    engine = await engine_with(limits=LimitSettings(user=user))
    try:
        with pytest.raises(KeyError):
            async with engine.admitted(Caller("ann")):
                raise KeyError("no such response")
        async with engine.admitted(Caller("ann")):  # the one place is free again
            with pytest.raises(RateLimited) as busy:  # refused before it is counted
                async with engine.admitted(Caller("ann")):
                    pass
            assert busy.value.limit == "user concurrency 1", busy.value.limit
        async with engine.admitted(Caller("ann")):
            pass
        with pytest.raises(RateLimited) as spent:  # three counted in the window, as requests
            async with engine.admitted(Caller("ann")):
                pass
        assert spent.value.limit == "user 3/minute", spent.value.limit
    finally:
        await engine.close()
