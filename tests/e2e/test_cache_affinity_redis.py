"""Issue 74, must-have 1, across three replicas sharing a real Redis: a conversation whose turns
reach different replicas keeps to one account (the key is picked by the Lua script every
replica runs, which reads and moves the conversation's home), yields when that account has no
room, and no user can join or move another's. The same scenarios as one process
(tests/unit/test_cache_affinity.py; tests/helpers/cache_affinity.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import cache_affinity as scenarios
from tests.helpers.fake_provider import FakeProvider


@pytest.fixture
async def make(
    request: pytest.FixtureRequest, fresh_provider: FakeProvider
) -> AsyncIterator[scenarios.Make]:
    async with scenarios.maker(request, fresh_provider, "redis") as made:
        yield made


async def test_a_conversation_keeps_to_the_account_its_cache_is_on_across_replicas(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_conversation_keeps_to_the_account_its_cache_is_on(make, fresh_provider)


async def test_a_home_that_answers_429_is_left_at_once_on_every_replica(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_home_that_answers_429_is_left_at_once_and_the_next_becomes_home(
        make, fresh_provider
    )


async def test_a_home_stays_where_its_cache_is_when_no_account_answers_a_turn_on_replicas(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_home_stays_where_its_cache_is_when_no_account_answers_a_turn(
        make, fresh_provider
    )


async def test_conversations_of_many_users_spread_over_every_account_across_replicas(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.conversations_of_many_users_spread_over_every_account(make, fresh_provider)


async def test_another_user_can_neither_join_nor_move_a_conversation_across_replicas(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.another_user_can_neither_join_nor_move_a_conversation(make, fresh_provider)


async def test_a_users_new_session_starts_where_their_last_left_its_tools_and_instructions_across_replicas(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_users_new_session_starts_where_their_last_left_its_tools_and_instructions(
        make, fresh_provider
    )


async def test_replicas_with_pseudonym_keys_of_their_own_keep_a_conversation_on_one_account(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.replicas_with_keys_of_their_own_keep_a_conversation_on_one_account(
        make, fresh_provider
    )


async def test_a_conversations_home_in_redis_holds_no_prompt_text_and_no_user(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    """What every replica reads to keep a conversation home: a digest naming an account, with
    nothing of the prompt, the session's name or the user in its key or value."""
    engines = await make(replicas=1)
    session = {"X-Claude-Code-Session-Id": "5f0b6c1e-alice-session"}
    await scenarios.converse(engines, fresh_provider, "alice", "Churn by region?", 2, session)
    state = engines[0].state
    stored = []
    async for key in state.redis.scan_iter(match=state.prefix + "up:home:*"):  # type: ignore[attr-defined]
        stored.append((key, await state.redis.get(key)))  # type: ignore[attr-defined]
    assert len(stored) == 2, stored  # the session's home, and its user's stable prefix's
    seen = repr(stored)
    for private in ("alice", "Churn", "5f0b6c1e", scenarios.SYSTEM[:24], "warehouse"):
        assert private not in seen, private
