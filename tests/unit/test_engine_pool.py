"""The engine against a real loopback provider: key choice, failover, cooldowns, waiting."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Engine, EngineSettings, RateLimited, parse_upstreams
from jupyter_server_ext.engine.errors import BadRequest, UpstreamError, UpstreamRejected
from jupyter_server_ext.state import MemoryState
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider

ALICE = Caller("alice")
BOB = Caller("bob")
HELLO = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}


def make_engine(fp: FakeProvider, extra: dict[str, Any] | None = None, **settings: Any) -> Engine:
    specs = parse_upstreams(upstreams_for(fp, **(extra or {})))
    settings.setdefault("health_check_seconds", 0)
    return Engine(
        EngineSettings(upstreams=specs, default_model="fake-small", **settings), state=MemoryState()
    )


async def ask(engine: Engine, body: dict | None = None, caller: Caller = ALICE) -> dict:
    reply = await engine.chat(body or HELLO, caller)
    return json.loads(reply.body) | {"_upstream": reply.headers["X-RSQL-Upstream"]}


async def test_load_is_spread_over_all_keys(fresh_provider: FakeProvider) -> None:
    engine = make_engine(fresh_provider)
    try:
        for _ in range(30):
            await ask(engine)
    finally:
        await engine.close()
    counts = fresh_provider.count_by_alias()
    assert sum(counts.values()) == 30
    assert set(counts) == {"a1", "a2", "b1"}
    assert min(counts.values()) >= 8, counts  # never piled onto the first key


async def test_concurrent_load_is_spread(fresh_provider: FakeProvider) -> None:
    fresh_provider.latency = 0.05
    engine = make_engine(fresh_provider)
    try:
        await asyncio.gather(*(ask(engine) for _ in range(30)))
    finally:
        await engine.close()
    assert min(fresh_provider.count_by_alias().values()) >= 8


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_failover_on_server_errors_is_invisible(
    fresh_provider: FakeProvider, status: int
) -> None:
    fresh_provider.set_fault("a1", "status", status=status)
    engine = make_engine(fresh_provider, breaker_threshold=2)
    try:
        answers = [await ask(engine, caller=Caller(f"user{i}")) for i in range(12)]
        assert all(a["choices"][0]["message"]["content"].startswith("Fake answer") for a in answers)
        assert {a["_upstream"] for a in answers} <= {"a2", "b1"}
        # after two failures in a row the breaker keeps a1 out: it is no longer even tried
        assert fresh_provider.count_by_alias(status)["a1"] == 2
        key = next(k for k in engine.pool.keys if k.alias == "a1")
        assert engine.pool.key_state(key) == "breaker-open"
    finally:
        await engine.close()


async def test_breaker_half_open_probe_recovers(fresh_provider: FakeProvider) -> None:
    fresh_provider.set_fault("a1", "status", status=500, count=2)
    engine = make_engine(fresh_provider, breaker_threshold=2, breaker_seconds=0.3)
    try:
        for i in range(6):
            await ask(engine, caller=Caller(f"user{i}"))
        key = next(k for k in engine.pool.keys if k.alias == "a1")
        assert engine.pool.key_state(key) == "breaker-open"
        await asyncio.sleep(0.35)
        assert engine.pool.key_state(key) == "breaker-half-open"
        for _ in range(6):
            await ask(engine)
        assert engine.pool.key_state(key) == "healthy"
        assert fresh_provider.count_by_alias(200).get("a1", 0) >= 1
    finally:
        await engine.close()


@pytest.mark.parametrize("stream", [True, False])
async def test_a_hanging_key_is_not_retried_elsewhere_and_its_timeouts_open_its_breaker(
    fresh_provider: FakeProvider, stream: bool
) -> None:
    fresh_provider.set_fault("b1", "hang")  # takes the request, never answers
    engine = make_engine(fresh_provider, upstream_timeout_seconds=0.3, breaker_threshold=2)
    try:
        served = []
        for i in range(9):  # a stream's first event, or a JSON answer, never comes
            try:
                reply = await engine.chat({**HELLO, "stream": stream}, Caller(f"user{i}"))
            except UpstreamError as err:
                assert err.status == 504 and err.code == "upstream_timeout", err
                served.append("timed out")
                continue
            if stream:
                async for _ in reply.events:  # type: ignore[union-attr]
                    pass
            served.append(reply.headers["X-RSQL-Upstream"])
        # each timed-out request was tried on b1 alone (the provider has it and may bill it);
        # two in a row, of two users, opened b1's breaker, and it was not chosen again
        assert served.count("timed out") == 2, served
        assert fresh_provider.count_by_alias(0) == {"b1": 2}
        key = next(k for k in engine.pool.keys if k.alias == "b1")
        assert engine.pool.key_state(key) == "breaker-open"
        answers = [await ask(engine) for _ in range(6)]
        assert {a["_upstream"] for a in answers} <= {"a1", "a2"}
    finally:
        await engine.close()


async def test_a_client_that_leaves_while_its_key_is_probed_leaves_no_slot_held(
    fresh_provider: FakeProvider,
) -> None:
    small = {"models": ["fake-small"]}
    engine = make_engine(fresh_provider, {"a2": small, "b1": small})  # a1 alone: fake-large
    try:
        # a 403 about the request: the key is probed
        fresh_provider.forbidden_models = {"fake-large"}
        fresh_provider.models_delay = 1.0  # the probe (GET models) takes a second
        task = asyncio.ensure_future(ask(engine, {**HELLO, "model": "fake-large"}))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if any(r.status == 403 for r in fresh_provider.received):
                break
        await asyncio.sleep(0.1)  # the probe is under way: the client leaves
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.5)  # the shielded bookkeeping finishes on its own
        assert {k.alias: k.inflight for k in engine.pool.keys} == {"a1": 0, "a2": 0, "b1": 0}
        # and it kept what the probe found: the key passed, so the next 403 on it is the
        # request's own, answered without a second one-second probe
        began = time.monotonic()
        with pytest.raises(UpstreamRejected) as again:
            await ask(engine, {**HELLO, "model": "fake-large"})
        assert again.value.status == 403 and time.monotonic() - began < 0.5
    finally:
        await engine.close()


async def test_one_users_failing_requests_never_open_a_breaker(
    fresh_provider: FakeProvider,
) -> None:
    engine = make_engine(fresh_provider, breaker_threshold=2)
    try:
        for _ in range(4):  # a body that makes the provider fail on every key
            with pytest.raises(UpstreamError):
                await ask(engine, {**HELLO, "messages": [{"role": "user", "content": "CRASH"}]})
        assert {engine.pool.key_state(k) for k in engine.pool.keys} == {"healthy"}
        assert (await ask(engine, caller=BOB))["choices"]
        # the same failures from a second user are no longer one request's doing
        fresh_provider.set_fault("a1", "status", status=500)
        for i in range(8):
            await ask(engine, caller=Caller(f"user{i}"))
        a1 = next(k for k in engine.pool.keys if k.alias == "a1")
        assert engine.pool.key_state(a1) == "breaker-open"
    finally:
        await engine.close()


async def test_a_key_failing_where_another_serves_opens_its_breaker_for_a_lone_user(
    fresh_provider: FakeProvider,
) -> None:
    """A personal server has one user: a key that fails requests another key then serves is
    the key's fault, and its breaker opens without a second user."""
    fresh_provider.set_fault("a1", "status", status=500)
    engine = make_engine(fresh_provider, breaker_threshold=2)
    try:
        answers = [await ask(engine) for _ in range(8)]
        assert all(a["_upstream"] != "a1" for a in answers)
        a1 = next(k for k in engine.pool.keys if k.alias == "a1")
        assert engine.pool.key_state(a1) == "breaker-open"
        tried = fresh_provider.count_by_alias(500).get("a1", 0)
        assert tried == 2, tried  # then left alone
    finally:
        await engine.close()


async def test_failover_on_connection_refused(fresh_provider: FakeProvider) -> None:
    from tests.helpers import free_port

    extra = {"b1": {"base_url": f"http://127.0.0.1:{free_port()}/v1"}}
    engine = make_engine(fresh_provider, extra)
    try:
        answers = [await ask(engine) for _ in range(6)]
        assert {a["_upstream"] for a in answers} <= {"a1", "a2"}
    finally:
        await engine.close()


async def test_rejected_key_is_disabled_then_reenabled_by_health_check(
    fresh_provider: FakeProvider,
) -> None:
    bad_key = "sk-test-revoked-fake01"
    extra = {"a2": {"api_key": bad_key}}
    engine = make_engine(fresh_provider, extra)
    try:
        answers = [await ask(engine) for _ in range(9)]
        assert all(a["_upstream"] != "a2" for a in answers)
        key = next(k for k in engine.pool.keys if k.alias == "a2")
        assert engine.pool.key_state(key) == "disabled"
        assert (await engine.health_check())["a2"] == "disabled"  # still rejected
        # the provider accepts the key again (e.g. the account was paid): the check re-enables it
        fresh_provider.keys[bad_key] = fresh_provider.keys.pop("sk-test-a2-fake0123456789")
        assert (await engine.health_check())["a2"] == "healthy"
        answers = [await ask(engine) for _ in range(9)]
        assert any(a["_upstream"] == "a2" for a in answers)
    finally:
        await engine.close()


async def test_every_key_failing_gives_one_clear_error(fresh_provider: FakeProvider) -> None:
    # each key's 503 quotes the key it was sent, as a provider's words may
    overloaded = {"__status__": 503, "error": {"message": "overloaded, key {key}"}}
    fresh_provider.script(overloaded, overloaded, overloaded)
    engine = make_engine(fresh_provider)
    try:
        with pytest.raises(UpstreamError) as err:
            await ask(engine)
        assert err.value.status == 502
        assert sorted(r.alias for r in fresh_provider.received) == ["a1", "a2", "b1"]
        for alias in ("a1", "a2", "b1"):
            assert alias in err.value.message
        assert not [key for key in fresh_provider.keys if key in err.value.message]
    finally:
        await engine.close()


async def test_provider_headers_keep_us_below_an_unconfigured_limit(
    fresh_provider: FakeProvider,
) -> None:
    # the provider allows acct-b 2 requests per 30 s; we did not configure that limit, but its
    # x-ratelimit-remaining-requests header says so and the pool obeys it
    b1 = fresh_provider.keys["sk-test-b1-fake0123456789"]
    b1.limit, b1.window = 2, 30
    engine = make_engine(fresh_provider)
    try:
        answers = [await ask(engine) for _ in range(15)]
        assert len(answers) == 15
        assert fresh_provider.too_many == 0
        assert fresh_provider.count_by_alias()["b1"] == 2
    finally:
        await engine.close()


async def test_upstream_429_cools_the_account_and_fails_over(fresh_provider: FakeProvider) -> None:
    import openai

    # someone else spends acct-b's quota outside the proxy, so our next call there gets a 429
    b1_key = "sk-test-b1-fake0123456789"
    b1 = fresh_provider.keys[b1_key]
    b1.limit, b1.window = 1, 30
    openai.OpenAI(base_url=fresh_provider.base_url, api_key=b1_key).chat.completions.create(**HELLO)
    engine = make_engine(fresh_provider)
    try:
        answers = [await ask(engine) for _ in range(15)]
        assert len(answers) == 15  # the client never saw the 429
        assert fresh_provider.count_by_alias(429) == {"b1": 1}  # one 429, then b1 is left alone
        assert {a["_upstream"] for a in answers} == {"a1", "a2"}
        bucket = engine.pool.buckets[("acct-b", "fake-small")]
        assert bucket.cool_until - time.monotonic() > 20  # Retry-After (about 30 s) respected
        key = next(k for k in engine.pool.keys if k.alias == "b1")
        assert engine.pool.key_state(key) == "cooling"
    finally:
        await engine.close()


async def test_cooldown_only_extends(fresh_provider: FakeProvider) -> None:
    engine = make_engine(fresh_provider)
    try:
        bucket = engine.pool.bucket(engine.pool.keys[0], "fake-small")
        now = time.monotonic()
        bucket.cool(now + 30)
        bucket.cool(now + 1)  # a second, shorter 429 must not shorten the first
        assert bucket.cool_until == pytest.approx(now + 30)
        # and while acct-a cools, its two keys are both skipped
        answers = [await ask(engine) for _ in range(4)]
        assert {a["_upstream"] for a in answers} == {"b1"}
    finally:
        await engine.close()


async def test_keys_of_one_account_share_its_limit(fresh_provider: FakeProvider) -> None:
    limits = {"limits": ["3 per 20 seconds"]}
    engine = make_engine(fresh_provider, {"a1": limits, "b1": limits}, max_wait_seconds=0)
    try:
        ok, refused = [], []
        for _ in range(9):
            try:
                ok.append(await ask(engine))
            except RateLimited as exc:
                refused.append(exc)
        by_upstream = [a["_upstream"] for a in ok]
        assert len(ok) == 6  # 3 for acct-a (a1 + a2 together) and 3 for acct-b
        assert sum(u in ("a1", "a2") for u in by_upstream) == 3
        assert by_upstream.count("b1") == 3
        assert {"a1", "a2"} <= set(by_upstream)  # spread inside the account too
        assert len(refused) == 3
        assert all(
            r.headers["Retry-After"].isdigit() and int(r.headers["Retry-After"]) >= 1
            for r in refused
        )
    finally:
        await engine.close()


async def test_zero_upstream_429s_when_limits_match_the_provider(
    fresh_provider: FakeProvider,
) -> None:
    for pol in fresh_provider.keys.values():
        pol.limit, pol.window = 4, 1.0
    fresh_provider.latency = 0.02
    limits = {"limits": ["4 per 1 second"]}
    engine = make_engine(fresh_provider, {"a1": limits, "b1": limits}, max_wait_seconds=15)
    try:
        t0 = time.monotonic()
        answers = await asyncio.gather(*(ask(engine) for _ in range(40)))
        elapsed = time.monotonic() - t0
    finally:
        await engine.close()
    assert len(answers) == 40
    assert fresh_provider.too_many == 0
    # 2 accounts x 4/s: 40 requests need about 4-5 s; much more would mean wasted capacity
    assert 3.5 < elapsed < 9, elapsed


async def test_waits_for_capacity_then_answers(fresh_provider: FakeProvider) -> None:
    limits = {"limits": ["1 per 1 second"]}
    engine = make_engine(fresh_provider, {"a1": limits, "b1": limits}, max_wait_seconds=3)
    try:
        t0 = time.monotonic()
        answers = [await ask(engine) for _ in range(3)]
        assert len(answers) == 3
        assert time.monotonic() - t0 >= 0.9  # the third waited for a window to move
    finally:
        await engine.close()


async def test_no_capacity_within_max_wait_is_a_429_with_retry_after(
    fresh_provider: FakeProvider,
) -> None:
    limits = {"limits": ["1 per 30 seconds"]}
    engine = make_engine(fresh_provider, {"a1": limits, "b1": limits}, max_wait_seconds=1)
    try:
        await ask(engine)
        await ask(engine)
        t0 = time.monotonic()
        with pytest.raises(RateLimited) as err:
            await ask(engine)
        assert time.monotonic() - t0 < 0.5  # the wait could not succeed, so no waiting
        assert 25 <= int(err.value.headers["Retry-After"]) <= 31
        assert err.value.status == 429
    finally:
        await engine.close()


async def test_token_limits_bind_before_request_limits(fresh_provider: FakeProvider) -> None:
    limits = {"limits": ["30/minute"], "token_limits": ["300 per 30 seconds"]}
    engine = make_engine(fresh_provider, {"a1": limits, "b1": limits}, max_wait_seconds=0)
    # about 50 prompt tokens; the fake answer echoes the words: about 95 tokens per request
    body = {**HELLO, "messages": [{"role": "user", "content": "word " * 40}], "max_tokens": 60}
    try:
        ok = 0
        with pytest.raises(RateLimited):
            for _ in range(20):
                await ask(engine, body)
                ok += 1
        # 2 accounts x 300 tokens, ~95 tokens each, the next one reserving prompt + max_tokens
        assert 4 <= ok <= 6, ok
        assert fresh_provider.too_many == 0
    finally:
        await engine.close()


async def test_request_larger_than_any_token_limit_is_a_400(fresh_provider: FakeProvider) -> None:
    limits = {"token_limits": ["100/minute"]}
    engine = make_engine(fresh_provider, {"a1": limits, "b1": limits})
    try:
        with pytest.raises(BadRequest, match="max_tokens"):
            await ask(engine, {**HELLO, "max_tokens": 500})
    finally:
        await engine.close()


async def test_stream_fails_over_before_the_first_byte(fresh_provider: FakeProvider) -> None:
    fresh_provider.set_fault("a1", "status", status=500)
    fresh_provider.set_fault("a2", "status", status=500)
    engine = make_engine(fresh_provider)
    try:
        reply = await engine.chat({**HELLO, "stream": True}, ALICE)
        events = [ev async for ev in reply.events]
        assert reply.headers["X-RSQL-Upstream"] == "b1"
        text = "".join(
            (json.loads(e[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for e in events
            if e.startswith(b"data: {")
        )
        assert text == "Fake answer to: hello"
        assert events[-1] == b"data: [DONE]\n\n"
        # we asked upstream for usage; the client did not, so it is not passed on
        assert not any(b'"usage"' in e for e in events)
    finally:
        await engine.close()


async def test_unknown_model_is_a_404(fresh_provider: FakeProvider) -> None:
    engine = make_engine(fresh_provider)
    try:
        with pytest.raises(BadRequest) as err:
            await ask(engine, {**HELLO, "model": "gpt-nope"})
        assert err.value.status == 404 and "fake-small" in err.value.message
    finally:
        await engine.close()


async def test_requests_that_get_no_answer_cost_nothing_and_count_only_if_sent(
    fresh_provider: FakeProvider,
) -> None:
    from jupyter_server_ext.engine import LimitSettings, UserRules, parse_rates

    user = UserRules(limits=parse_rates(["3/minute"], where="t"), daily_budget_usd=1.0)
    # priced, so an answer costs something and one that never came could be charged
    prices = {m: {"input": 100.0, "output": 200.0} for m in ("fake-small", "fake-large")}
    small_only = {"models": ["fake-small"], "prices": prices}
    engine = make_engine(
        fresh_provider,
        {"a1": small_only, "a2": small_only, "b1": {"limits": ["1/minute"], "prices": prices}},
        limits=LimitSettings(user=user),
        max_wait_seconds=0.2,
    )
    try:
        # no key has room (only b1 serves fake-large): nothing was sent, so nothing counts
        only_b1 = {**HELLO, "model": "fake-large"}
        await ask(engine, only_b1)
        spent = (await engine.limiter.snapshot("alice", ()))["budget"]["spent_usd"]
        assert spent > 0  # the answer's price
        with pytest.raises(RateLimited) as err:
            await ask(engine, only_b1)
        assert err.value.limit == "upstream capacity"
        snap = await engine.limiter.snapshot("alice", ())
        assert snap["limits"][0]["used"] == 1 and snap["budget"]["spent_usd"] == spent
        # every upstream failed: it costs nothing, but each attempt reached a provider, so it
        # counts in the user's window (one user cannot make failing requests without bound)
        for alias in ("a1", "a2", "b1"):
            fresh_provider.set_fault(alias, "status", status=503, count=1)
        with pytest.raises(UpstreamError):
            await ask(engine)
        snap = await engine.limiter.snapshot("alice", ())
        assert snap["limits"][0]["used"] == 2
        assert snap["budget"]["spent_usd"] == spent
        await ask(engine)
        with pytest.raises(RateLimited) as err:
            await ask(engine)
        assert err.value.limit == "user 3/minute"
    finally:
        await engine.close()


async def test_a_stream_that_breaks_after_its_first_byte_ends_with_an_error_event(
    fresh_provider: FakeProvider,
) -> None:
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "die_mid_stream", count=1)
    engine = make_engine(fresh_provider)
    body = {
        **HELLO,
        "stream": True,
        "messages": [{"role": "user", "content": "one two three four five six"}],
    }
    try:
        reply = await engine.chat(body, ALICE)
        events = [ev async for ev in reply.events]
        # no failover once bytes went out: the client sees part of the answer, then an error
        assert any(b'"content": "Fake"' in e for e in events)
        assert b'"error"' in events[-1] and b"broke off" in events[-1]
        assert len(fresh_provider.received) == 1
        # the slot was given back: the next request is served at once
        assert all(k.inflight == 0 for k in engine.pool.keys)
        assert (await ask(engine))["choices"][0]["message"]["content"] == "Fake answer to: hello"
    finally:
        await engine.close()
