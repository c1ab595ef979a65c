"""A conversation kept on the account whose prompt cache holds it (issue 74), the same on every
state backend: the scenarios of tests/unit/test_cache_affinity.py (one process, memory state)
and tests/e2e/test_cache_affinity_redis.py (three replicas sharing a real Redis). The provider
is the loopback fake, which caches prompts per account as OpenAI does (1,024 tokens and more,
in 128-token steps), on three keys of three accounts."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams
from jupyter_server_ext.engine.errors import UpstreamError
from jupyter_server_ext.state import MemoryState
from tests.helpers import PROVIDER_KEYS, require, upstreams_for
from tests.helpers.fake_provider import FakeProvider, KeyPolicy

PRICE = {"input": 1.0, "output": 2.0, "cache_read": 0.1}
SYSTEM = "You answer questions about the shop's warehouse: orders, customers, products. " * 80
Make = Callable[..., Awaitable[list[Engine]]]


def three_accounts(fp: FakeProvider) -> None:
    """The fake's three keys, each on an account of its own (a prompt cache each)."""
    fp.keys = {key: KeyPolicy(alias, account=f"acct-{alias}") for key, alias, _ in PROVIDER_KEYS}


@asynccontextmanager
async def maker(request: pytest.FixtureRequest, fp: FakeProvider, kind: str) -> AsyncIterator[Make]:
    """`make(replicas=1, own_secrets=False, **settings)`: engines over the fake's three
    accounts, on memory state (one process: `replicas` is 1) or sharing one Redis (replicas),
    each with a pseudonym key of its own with `own_secrets` (replicas whose admin set no
    user_id_secret); all closed afterwards."""
    three_accounts(fp)
    made: list[Engine] = []
    prefixes: list[str] = []

    async def make(replicas: int = 1, own_secrets: bool = False, **settings: Any) -> list[Engine]:
        upstreams = upstreams_for(
            fp, **{a: {"prices": {"fake-small": PRICE}} for _, a, _ in PROVIDER_KEYS}
        )

        def es() -> EngineSettings:
            return EngineSettings(
                upstreams=parse_upstreams(upstreams),
                default_model="fake-small",
                health_check_seconds=0,
                user_id_secret=(
                    secrets.token_bytes(16) if own_secrets else b"one secret for every replica"
                ),
                **settings,
            )

        if kind == "memory":
            engines = [Engine(es(), state=MemoryState())]
        else:
            require("redis")
            from jupyter_server_ext.state.admission.redis import RedisState

            prefix = f"rsqltest-{secrets.token_hex(4)}:"
            prefixes.append(prefix)
            engines = [
                Engine(es(), state=RedisState(url(), prefix=prefix)) for _ in range(replicas)
            ]
        made.extend(engines)
        for engine in engines:
            await engine.start()
        return engines

    def url() -> str:
        return str(request.getfixturevalue("redis_server")) + "/9"

    try:
        yield make
    finally:
        for engine in made:
            await engine.close()
        for prefix in prefixes:
            await _clean(url(), prefix)


async def _clean(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(url)
    async for key in r.scan_iter(match=prefix + "*"):
        await r.delete(key)
    await r.aclose()


def turns(question: str, n: int) -> dict[str, Any]:
    """A conversation's n-th request: the system text, then every earlier turn, then its own."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for i in range(n):
        messages.append({"role": "user", "content": f"{question} (part {i})"})
        if i < n - 1:
            messages.append({"role": "assistant", "content": f"An answer to part {i}."})
    return {"model": "fake-small", "max_tokens": 10, "messages": messages}


async def converse(
    engines: list[Engine],
    fp: FakeProvider,
    who: str,
    question: str,
    n: int,
    headers: dict[str, str] | None = None,
) -> list[tuple[str, int]]:
    """`n` turns of one conversation, each on the next replica: (key, cached tokens) each."""
    out = []
    for i in range(1, n + 1):
        engine = engines[i % len(engines)]
        await engine.chat(turns(question, i), Caller(who), trace_headers=headers)
        sent = fp.received[-1]
        out.append((sent.alias, sent.cached_tokens))
    return out


async def a_conversation_keeps_to_the_account_its_cache_is_on(make: Make, fp: FakeProvider) -> None:
    """Ten turns: on one account, read from its cache from the second on. Left to headroom
    alone (the preference off), the same turns go round the accounts and mostly start cold."""
    engines = await make(replicas=3)
    kept = await converse(engines, fp, "alice", "Which table holds orders?", 10)
    assert len({key for key, _ in kept}) == 1, kept
    assert all(cached >= 1024 for _, cached in kept[1:]), kept
    fp.reset()
    three_accounts(fp)
    engines = await make(replicas=3, prompt_cache_seconds=0)
    spread = await converse(engines, fp, "alice", "Which table holds orders?", 10)
    assert len({key for key, _ in spread}) > 1, spread
    assert sum(c for _, c in spread) < sum(c for _, c in kept)


async def a_home_that_answers_429_is_left_at_once_and_the_next_becomes_home(
    make: Make, fp: FakeProvider
) -> None:
    engines = await make(replicas=3)
    first = await converse(engines, fp, "bob", "Top customers?", 2)
    home = first[0][0]
    fp.set_fault(home, "status", status=429, count=1)  # the home's account is at its limit
    reply = await engines[0].chat(turns("Top customers?", 3), Caller("bob"))
    assert reply.status == 200
    moved = fp.received[-1].alias
    # tried at its home first, refused there, then sent elsewhere
    tried = [(r.alias, r.status) for r in fp.received[-2:]]
    assert tried == [(home, 429), (moved, 200)] and moved != home, tried
    # the account that served it is the home now: the next turns stay there
    for n in (4, 5):
        await engines[n % len(engines)].chat(turns("Top customers?", n), Caller("bob"))
        assert fp.received[-1].alias == moved


async def a_home_stays_where_its_cache_is_when_no_account_answers_a_turn(
    make: Make, fp: FakeProvider
) -> None:
    """A turn every account fails (500s): none of them answered it, so none holds the
    conversation in its cache now but its home. The home moved to each key as it was picked,
    and the next turn went to the last one tried, cold."""
    engines = await make(replicas=3)
    home = (await converse(engines, fp, "erin", "Late orders by region?", 2))[0][0]
    for alias in {r.alias for r in fp.received} | {a for _, a, _ in PROVIDER_KEYS}:
        fp.set_fault(alias, "status", status=500, count=1)
    with pytest.raises(UpstreamError):
        await engines[0].chat(turns("Late orders by region?", 3), Caller("erin"))
    assert len({r.alias for r in fp.received[-3:]}) == 3  # every account tried
    for alias in {a for _, a, _ in PROVIDER_KEYS}:
        fp.set_fault(alias, None)
    await engines[-1].chat(turns("Late orders by region?", 3), Caller("erin"))
    assert fp.received[-1].alias == home and fp.received[-1].cached_tokens >= 1024


async def conversations_of_many_users_spread_over_every_account(
    make: Make, fp: FakeProvider
) -> None:
    """Homes keep each conversation where it is; new ones still go where there is most room."""
    engines = await make(replicas=3)
    firsts = []
    for i in range(6):
        await engines[i % len(engines)].chat(turns(f"Question {i}?", 1), Caller(f"user{i % 3}"))
        firsts.append(fp.received[-1].alias)
    assert set(firsts) == {alias for _, alias, _ in PROVIDER_KEYS}, firsts


async def another_user_can_neither_join_nor_move_a_conversation(
    make: Make, fp: FakeProvider
) -> None:
    """Mallory sends Alice's session name and Alice's very prefix: her requests are chosen a
    key as any new conversation's (not steered to Alice's account, so nothing there tells her
    what Alice has cached), and Alice's next turn still goes home."""
    engines = await make(replicas=3)
    session = {"X-Claude-Code-Session-Id": "5f0b6c1e-alice-session"}
    alice = await converse(engines, fp, "alice", "Churn by region?", 1, session)
    home = alice[0][0]
    for n, headers in ((1, session), (2, None), (3, session)):
        await engines[n % len(engines)].chat(
            turns("Churn by region?", n), Caller("mallory"), trace_headers=headers
        )
        assert fp.received[-1].alias != home, "mallory's request was sent to alice's account"
        if n == 1:  # nor did her usage say that Alice's prompt is cached (its cached_tokens)
            assert fp.received[-1].cached_tokens == 0
    await engines[-1].chat(turns("Churn by region?", 2), Caller("alice"), trace_headers=session)
    assert fp.received[-1].alias == home


async def a_home_is_forgotten_when_the_providers_cache_would_be(
    make: Make, fp: FakeProvider
) -> None:
    """Past the cache's life the conversation has no home: its next turn is chosen a key by
    headroom (here: not the account last used), and keeps to that one from then."""
    engines = await make(replicas=1, prompt_cache_seconds=0.3)
    first = (await converse(engines, fp, "carol", "Revenue by month?", 1))[0][0]
    await engines[0].chat(turns("Revenue by month?", 2), Caller("carol"))
    assert fp.received[-1].alias == first  # within its life: home
    await asyncio.sleep(0.5)  # past it: the home is gone with the provider's cache
    await engines[0].chat(turns("Revenue by month?", 3), Caller("carol"))
    second = fp.received[-1].alias
    assert second != first
    await engines[0].chat(turns("Revenue by month?", 4), Caller("carol"))
    assert fp.received[-1].alias == second


async def a_users_new_session_starts_where_their_last_left_its_tools_and_instructions(
    make: Make, fp: FakeProvider
) -> None:
    """A new Claude Code session names a new conversation but sends the same system text first:
    it starts on the account that cached it for the user's last session and reads it from
    there. Another user's session with the very same system text is not steered to it."""
    engines = await make(replicas=3)
    first = {"X-Claude-Code-Session-Id": "0f6d2a31-first-session"}
    last = await converse(engines, fp, "dora", "Orders per day?", 3, first)
    home = last[-1][0]  # a key per account (three_accounts)
    second = {"X-Claude-Code-Session-Id": "8c1e44b0-second-session"}
    started = await converse(engines, fp, "dora", "A new question: returns by region?", 2, second)
    assert {alias for alias, _ in started} == {home}, started
    # the system text (some 1,500 tokens) read from the cache from the session's first turn
    assert started[0][1] >= 1024, started
    await engines[0].chat(turns("Orders per day?", 1), Caller("erin"), trace_headers=second)
    assert fp.received[-1].alias != home


async def replicas_with_keys_of_their_own_keep_a_conversation_on_one_account(
    make: Make, fp: FakeProvider
) -> None:
    """Replicas whose admin set no user_id_secret each make a pseudonym key of their own; the
    conversations' names are keyed by one secret they share through Redis, so a session whose
    turns reach all three still keeps to one account."""
    engines = await make(replicas=3, own_secrets=True)
    kept = await converse(engines, fp, "frank", "Margins by product line?", 6)
    assert len({key for key, _ in kept}) == 1, kept
    assert all(cached >= 1024 for _, cached in kept[1:]), kept
