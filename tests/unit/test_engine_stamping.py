"""When a key's window slot is stamped: the engine against a real loopback provider, with
memory state. The same with a real Redis, and what shared state costs per request:
tests/e2e/test_engine_stamping_redis.py."""

from __future__ import annotations

import pytest

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.window_stamping import (
    a_full_key_sends_evenly_while_requests_wait,
    a_paced_key_is_not_held_to_the_providers_reset,
    a_stream_is_stamped_by_its_head,
    a_stream_left_after_its_first_event_is_still_counted,
    an_unpaced_key_sends_whole_windows_at_the_providers_reset,
    headers_at_a_streams_head_describe_the_window_then,
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


async def test_a_stream_is_stamped_by_its_head_not_its_first_event(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
    state_kind: str,
) -> None:
    await a_stream_is_stamped_by_its_head(request, fresh_provider, state_kind)


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


async def test_headers_at_a_streams_head_describe_the_window_as_it_stood_then(
    request: pytest.FixtureRequest, fresh_provider: FakeProvider, state_kind: str
) -> None:
    await headers_at_a_streams_head_describe_the_window_then(request, fresh_provider, state_kind)


async def test_an_unpaced_key_sends_whole_windows_at_the_providers_reset(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
    state_kind: str,
) -> None:
    await an_unpaced_key_sends_whole_windows_at_the_providers_reset(
        request, fresh_provider, state_kind
    )


async def test_a_stream_left_after_its_first_event_is_still_counted_as_answered(
    request: pytest.FixtureRequest, fresh_provider: FakeProvider, state_kind: str
) -> None:
    await a_stream_left_after_its_first_event_is_still_counted(request, fresh_provider, state_kind)
