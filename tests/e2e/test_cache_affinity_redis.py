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


async def test_conversations_of_many_users_spread_over_every_account_across_replicas(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.conversations_of_many_users_spread_over_every_account(make, fresh_provider)


async def test_another_user_can_neither_join_nor_move_a_conversation_across_replicas(
    make: scenarios.Make, fresh_provider: FakeProvider
) -> None:
    await scenarios.another_user_can_neither_join_nor_move_a_conversation(make, fresh_provider)
