"""The memory and Redis state backends answer admission the same way (real clock, real Redis)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from jupyter_server_ext.engine.admission.shared_state import BudgetCheck, LeaseCheck, WindowCheck
from jupyter_server_ext.state import MemoryState
from tests.helpers import require


@pytest.fixture(params=["memory", "redis"])
async def state(request):
    if request.param == "memory":
        s = MemoryState()
        yield s
        return
    require("redis")
    from jupyter_server_ext.state.admission.redis import RedisState

    url = request.getfixturevalue("redis_server") + "/9"
    s = RedisState(url, prefix=f"rsqltest-{secrets.token_hex(4)}:")
    assert await s.ping(), f"Redis at {url} does not answer"
    yield s
    await s.reset("")
    await s.close()


W = [
    WindowCheck("u:a:w", 3, 1.0, "user 3 per 1 second"),
    WindowCheck("u:a:d", 10, 86400.0, "user 10/day", True),
]
L = [LeaseCheck("u:a:c", 2, 30.0, "user concurrency 2")]
B = [BudgetCheck("u:a:usd", 1.0, 0.3, "user daily budget $1")]


async def test_all_checks_pass_before_any_counts(state) -> None:
    oks = [(await state.admit(W, L, B, f"r{i}")).ok for i in range(4)]
    assert oks == [True, True, False, False]  # concurrency 2 refuses the third
    wuse, luse, spent = await state.read(W, L, B)
    assert [u for u, _ in wuse] == [2, 2] and luse == [2] and spent == [pytest.approx(0.6)]
    await state.release(L, "r0")
    assert (await state.admit(W, L, B, "r4")).ok
    refused = await state.admit(W, L, B, "r5")  # 3 per second now binds
    assert refused.refused == W[0] and 0 < refused.retry_after <= 1.0
    await asyncio.sleep(1.05)
    await state.release(L, "r1")
    budget = await state.admit(W, L, B, "r6")  # 0.9 spent + 0.3 > 1.0
    assert budget.refused == B[0] and budget.used == pytest.approx(0.9)
    await state.settle(B, -0.5)  # a request cost less than reserved
    assert (await state.admit(W, L, B, "r7")).ok


async def test_refund_takes_a_request_out_of_its_windows(state) -> None:
    for i in range(3):
        assert (await state.admit(W, [], [], f"q{i}")).ok
    await state.refund(W, "q1")
    wuse, _, _ = await state.read(W, [], [])
    assert [u for u, _ in wuse] == [2, 2]
    assert (await state.admit(W, [], [], "q3")).ok


async def test_reset_clears_one_prefix(state) -> None:
    other = [WindowCheck("u:b:w", 1, 60.0, "user 1/minute")]
    assert (await state.admit(W, L, B, "x")).ok and (await state.admit(other, [], [], "y")).ok
    assert await state.reset("u:a:") >= 1
    assert (await state.read(W, L, B))[0][0][0] == 0
    assert (await state.admit(other, [], [], "z")).refused == other[0]
