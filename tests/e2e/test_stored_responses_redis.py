"""Stored responses (the Responses API's `store` and `previous_response_id`) live in the state
backend, so replicas behind one URL agree: a response stored through one replica is read,
continued and deleted through another, by its owner only, through a real Redis. One proxy's
stored responses: tests/unit/test_api_responses.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import proxy_starter


@pytest.fixture
async def start_proxy(
    tmp_path: Path, fresh_provider: FakeProvider
) -> AsyncIterator[Callable[..., Any]]:
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield start


async def test_a_stored_response_is_its_owners_on_every_replica(
    start_proxy: Callable[..., Any], fresh_provider: FakeProvider, redis_url: str, redis_prefix: str
) -> None:
    one = await start_proxy(state_url=redis_url, state_prefix=redis_prefix)
    two = await start_proxy(state_url=redis_url, state_prefix=redis_prefix)
    fresh_provider.script("Two tables: sales and regions.", "sales has 4 columns.")
    status, first = await one.call(
        "POST", "v1/responses", "tok-alice", {"model": "fake-small", "input": "Which tables?"}
    )
    assert status == 200, first
    rid = first["id"]
    # read through the other replica: the owner gets it, anyone else a 404 as for no such id
    status, read = await two.call("GET", f"v1/responses/{rid}", "tok-alice")
    assert status == 200 and read["output"] == first["output"]
    assert (await two.call("GET", f"v1/responses/{rid}", "tok-bob"))[0] == 404
    # continued through the other replica: the earlier turn goes upstream with the new one
    status, follow = await two.call(
        "POST",
        "v1/responses",
        "tok-alice",
        {"model": "fake-small", "input": "And sales?", "previous_response_id": rid},
    )
    assert status == 200, follow
    sent = [m.get("content") for m in fresh_provider.received[-1].body["messages"]]
    assert "Which tables?" in str(sent) and "Two tables: sales and regions." in str(sent)
    assert (await two.call("DELETE", f"v1/responses/{rid}", "tok-bob"))[0] == 404
    assert (await two.call("DELETE", f"v1/responses/{rid}", "tok-alice"))[0] == 200
    assert (await one.call("GET", f"v1/responses/{rid}", "tok-alice"))[0] == 404


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_the_per_user_cap_holds_when_responses_are_stored_at_once(
    backend: str,
    start_proxy: Callable[..., Any],
    fresh_provider: FakeProvider,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """responses_per_user = 3, and 48 responses sent in waves of 8 at once (through two
    replicas on Redis): exactly 3 stay readable. The cap is kept in one atomic step with each
    write; a read-modify-write of the index left 10 to 23 readable for a week (issue 53,
    finding 6)."""
    shared = {"state_url": redis_url, "state_prefix": redis_prefix} if backend == "redis" else {}
    one = await start_proxy(responses_per_user=3, **shared)
    two = await start_proxy(responses_per_user=3, **shared) if shared else one
    ids: list[str] = []
    for wave in range(6):
        answers = await asyncio.gather(
            *(
                (one if i % 2 else two).call(
                    "POST",
                    "v1/responses",
                    "tok-alice",
                    {"model": "fake-small", "input": f"{wave}.{i}"},
                )
                for i in range(8)
            )
        )
        assert all(status == 200 for status, _ in answers), answers
        ids += [body["id"] for _, body in answers]
    readable = [
        rid for rid in ids if (await one.call("GET", f"v1/responses/{rid}", "tok-alice"))[0] == 200
    ]
    assert len(readable) == 3, f"{len(readable)} of {len(ids)} stayed readable"
    assert set(readable) <= set(ids[-8:])  # the newest wave's
