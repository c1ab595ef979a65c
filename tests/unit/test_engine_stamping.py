"""When a key's window slot is stamped: the engine against a real loopback provider, with
memory state. The same with a real Redis, and what shared state costs per request:
tests/e2e/test_engine_stamping_redis.py."""

from __future__ import annotations

import pytest

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.window_stamping import (
    ALICE,
    LONG,
    a_full_key_sends_evenly_while_requests_wait,
    a_paced_key_is_not_held_to_the_providers_reset,
    an_unpaced_key_sends_whole_windows_at_the_providers_reset,
    make_engine,
    one_key,
    provider_headers_say_when_a_slow_answer_was_counted,
    stream_holds_its_slot_from_its_first_byte,
)


# the redis case: tests/e2e/test_engine_stamping_redis.py
@pytest.fixture(params=["memory"])
def state_kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_a_stream_holds_its_window_slot_from_its_first_byte_not_its_end(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
    state_kind: str,
) -> None:
    await stream_holds_its_slot_from_its_first_byte(request, fresh_provider, state_kind)


async def test_a_full_key_sends_evenly_while_requests_wait(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
    state_kind: str,
) -> None:
    await a_full_key_sends_evenly_while_requests_wait(request, fresh_provider, state_kind)


async def test_a_paced_key_is_not_held_to_the_providers_reset(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
    state_kind: str,
) -> None:
    await a_paced_key_is_not_held_to_the_providers_reset(request, fresh_provider, state_kind)


@pytest.mark.parametrize("headers", ["as of the answer", "as of the arrival", "none"])
async def test_provider_headers_say_when_a_slow_answer_was_counted(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
    state_kind: str,
    headers: str,
) -> None:
    await provider_headers_say_when_a_slow_answer_was_counted(
        request, fresh_provider, state_kind, headers
    )


async def test_an_unpaced_key_sends_whole_windows_at_the_providers_reset(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
    state_kind: str,
) -> None:
    await an_unpaced_key_sends_whole_windows_at_the_providers_reset(
        request, fresh_provider, state_kind
    )


async def test_a_stream_left_after_its_first_event_is_still_counted_as_answered(
    request: pytest.FixtureRequest, fresh_provider: FakeProvider
) -> None:
    """The attempt's success (its metric, the key's window stamp) is settled once the first event
    is on its way to the client, off the time to the first token: a client that leaves right
    after that event, before asking for another, must not make the proxy skip it."""
    one_key(fresh_provider, 10, 60.0)
    fresh_provider.script(LONG)
    engine = await make_engine(request, "memory", fresh_provider, ["10 per 1 minute"])
    await engine.start()
    try:
        body = {
            "model": "fake-small",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
        reply = await engine.chat(body, ALICE)
        assert reply.events is not None
        assert b"data:" in await reply.events.__anext__()
        await reply.events.aclose()  # the client left with the first event
        seen = [
            line
            for line in engine.metrics.render().decode().splitlines()
            if line.startswith("rsql_upstream_attempts_total{")
        ]
        assert seen == ['rsql_upstream_attempts_total{result="ok",upstream="a1"} 1.0'], seen
    finally:
        await engine.close()
