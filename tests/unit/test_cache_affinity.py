"""Issue 74, must-have 1, in one process (memory state): a conversation keeps to the account
whose prompt cache holds it, yields at once when that account has no room, and no user can
join or move another's (the scenarios: tests/helpers/cache_affinity.py; three replicas on
Redis: tests/e2e/test_cache_affinity_redis.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import cache_affinity as scenarios
from tests.helpers.fake_provider import FakeProvider


@pytest.fixture
async def make(
    request: pytest.FixtureRequest, fresh_provider: FakeProvider
) -> AsyncIterator[scenarios.Make]:
    async with scenarios.maker(request, fresh_provider, "memory") as made:
        yield made


async def test_a_conversation_keeps_to_the_account_its_cache_is_on(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_conversation_keeps_to_the_account_its_cache_is_on(make, fresh_provider)


async def test_a_home_that_answers_429_is_left_at_once_and_the_next_becomes_home(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_home_that_answers_429_is_left_at_once_and_the_next_becomes_home(
        make, fresh_provider
    )


async def test_a_home_stays_where_its_cache_is_when_no_account_answers_a_turn(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_home_stays_where_its_cache_is_when_no_account_answers_a_turn(
        make, fresh_provider
    )


async def test_conversations_of_many_users_spread_over_every_account(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.conversations_of_many_users_spread_over_every_account(make, fresh_provider)


async def test_another_user_can_neither_join_nor_move_a_conversation(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.another_user_can_neither_join_nor_move_a_conversation(make, fresh_provider)


async def test_a_home_is_forgotten_when_the_providers_cache_would_be(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_home_is_forgotten_when_the_providers_cache_would_be(make, fresh_provider)


async def test_a_users_new_session_starts_where_their_last_left_its_tools_and_instructions(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.a_users_new_session_starts_where_their_last_left_its_tools_and_instructions(
        make, fresh_provider
    )


async def test_a_conversations_home_holds_no_prompt_text_and_no_user(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    engines = await make(replicas=1)
    session = {"X-Claude-Code-Session-Id": "5f0b6c1e-alice-session"}
    await scenarios.converse(engines, fresh_provider, "alice", "Churn by region?", 2, session)
    kept = repr(dict(engines[0].pool.homes._homes))  # noqa: SLF001 - what the process holds
    assert len(engines[0].pool.homes) == 2, kept
    for private in ("alice", "Churn", "5f0b6c1e", scenarios.SYSTEM[:24], "warehouse"):
        assert private not in kept, private
