"""When a key's window slot is stamped, with the state shared through a real Redis, and what
that shared state costs per request: one script call to admit a request and pick its key, one
for the stamp and the end together. The same with memory state:
tests/unit/test_engine_stamping.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import require
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.own_servers import OwnRedis
from tests.helpers.window_stamping import (
    ALICE,
    a_full_key_sends_evenly_while_requests_wait,
    a_paced_key_is_not_held_to_the_providers_reset,
    a_stream_is_stamped_by_its_head,
    a_stream_left_after_its_first_event_is_still_counted,
    an_unpaced_key_sends_whole_windows_at_the_providers_reset,
    headers_at_a_streams_head_describe_the_window_then,
    make_engine,
    provider_headers_say_when_a_slow_answer_was_counted,
    stream_holds_its_slot_from_its_first_byte,
)


# the memory case: tests/unit/test_engine_stamping.py
@pytest.fixture(params=["redis"])
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


async def test_a_stream_left_after_its_first_event_is_still_counted_as_answered(
    request: pytest.FixtureRequest, fresh_provider: FakeProvider, state_kind: str
) -> None:
    await a_stream_left_after_its_first_event_is_still_counted(request, fresh_provider, state_kind)


async def test_redis_admission_picks_the_key_in_the_same_round_trip(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
    tmp_path: Path,
) -> None:
    """Shared state costs one script call to admit a request and pick its key, one for the
    stamp and the end together (a JSON answer), and no read for the quota headers. On a Redis
    of its own: the server counts every client's scripts, and the machine's serves the other
    worker's tests too (a full run once counted 22 here)."""
    require("redis")
    require("redis-server", binary=True)
    import redis.asyncio as aioredis

    own = OwnRedis(tmp_path)
    own.start()
    request.addfinalizer(lambda: own.stop(9))
    engine = await make_engine(
        request,
        "redis",
        fresh_provider,
        ["100 per 1 minute"],
        redis_url=own.url,
        max_wait_seconds=5,
    )
    engine.limiter.settings = engine.limiter.settings.__class__(
        user=engine.limiter.settings.user.__class__(
            limits=engine.pool.keys[0].spec.limits, concurrency=2
        ),
    )
    await engine.start()
    r = aioredis.from_url(own.url)

    async def script_calls() -> int:
        stats = await r.info("commandstats")
        return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))

    try:
        await engine.chat(
            {"model": "fake-small", "messages": [{"role": "user", "content": "warm"}]}, ALICE
        )
        before = await script_calls()
        for i in range(10):
            reply = await engine.chat(
                {"model": "fake-small", "messages": [{"role": "user", "content": f"q{i}"}]}, ALICE
            )
            assert json.loads(reply.body)["choices"]
            assert reply.headers["x-ratelimit-limit-requests"] == "100"
            assert reply.headers["x-ratelimit-remaining-requests"] == str(100 - 2 - i)
        calls = await script_calls() - before
    finally:
        await engine.close()
        await r.aclose()
    assert calls <= 20, f"{calls} script calls for 10 requests"


async def test_a_cache_hit_after_redaction_gives_back_the_key_the_admission_picked(
    request: pytest.FixtureRequest,
    fresh_provider: FakeProvider,
) -> None:
    """With redaction the cache is read after admission, whose key pick (one Redis round trip
    with it) holds a place in the key's window. A hit that counts in the caller's windows
    (cache_hits_count) must still give that place back: a key allowing two requests a minute
    answers one miss, its hit, and one more question."""
    from jupyter_server_ext.engine.privacy.redact import parse_redact_patterns

    fresh_provider.keys = {k: v for k, v in fresh_provider.keys.items() if v.alias == "a1"}
    engine = await make_engine(
        request,
        "redis",
        fresh_provider,
        ["2 per 1 minute"],
        max_wait_seconds=1,
        redact_patterns=parse_redact_patterns(["email"]),
        cache_hits_count=True,
    )
    await engine.start()
    try:

        def asking(text: str) -> dict[str, object]:
            return {
                "model": "fake-small",
                "temperature": 0,
                "messages": [{"role": "user", "content": text}],
            }

        first = await engine.chat(asking("mail bob@example.com the totals"), ALICE)
        hit = await engine.chat(asking("mail bob@example.com the totals"), ALICE)
        assert (first.headers["X-RSQL-Cache"], hit.headers["X-RSQL-Cache"]) == ("miss", "hit")
        other = await engine.chat(asking("and the averages?"), ALICE)
        assert other.status == 200, other.body
        assert json.loads(other.body)["choices"][0]["message"]["content"]
    finally:
        await engine.close()
