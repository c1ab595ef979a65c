"""One user's requests against everyone's capacity, over HTTP in a Jupyter server in this
process: a refusal caused by one request (too large, a crafted body, a fallback it may not use)
never cools, disables or fills capacity for others, and what a user tries counts against them.

The fake provider answers as OpenAI does: a request larger than an account's tokens per minute
gets a 429 "Request too large" (no wait cures it); a request that only finds the window full
gets a 429 "Rate limit reached" with a Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.parse
from typing import Any

import pytest

from tests.helpers import PROVIDER_KEYS, upstreams_for
from tests.helpers.fake_provider import FakeProvider, KeyPolicy
from tests.helpers.servers import USERS, InProcessJupyter

TOKENS_PER_MINUTE = 300


def ask(text: str = "hello", model: str = "fake-small", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def chat(server: InProcessJupyter, token: str, body: dict[str, Any]) -> tuple[int, dict, dict]:
    status, headers, raw = server.request("POST", "v1/chat/completions", body, token=token)
    return status, headers, json.loads(raw) if raw else {}


def get(server: InProcessJupyter, path: str, token: str) -> dict[str, Any]:
    status, _, raw = server.request("GET", path, token=token)
    assert status == 200, raw
    return json.loads(raw)


@pytest.fixture
def tight(jupyter_app_factory, fresh_provider: FakeProvider) -> InProcessJupyter:
    """Two accounts whose windows take 300 tokens a minute each."""
    fresh_provider.keys = {
        key: KeyPolicy(alias, account=account, token_limit=TOKENS_PER_MINUTE)
        for key, alias, account in PROVIDER_KEYS
    }
    return jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "default_max_tokens": 20,
            "user_limits": ["10/minute"],
            "admin_users": ["carol"],
            "max_wait_seconds": 2.0,
        },
        named_users=True,
    )


def test_an_oversized_request_cools_nothing_and_is_then_refused_before_it_is_sent(
    tight: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    big = ask("word " * 800)  # about 1,000 tokens: more than either account takes in a minute
    answers = [chat(tight, "tok-alice", big) for _ in range(5)]
    for status, headers, body in answers:
        # refused as the request's own fault: not a 429, which SDKs retry, and no Retry-After
        assert status == 400, body
        assert body["error"]["code"] == "request_too_large"
        assert "retry-after" not in headers
        assert str(TOKENS_PER_MINUTE) in body["error"]["message"]  # says the limit it is over
    # each account was asked once at most; after that the proxy knew the limit and refused it
    # itself, before it reached the provider
    assert len(fresh_provider.received) <= 2
    # no key cools down: another user is answered at once
    states = {
        u["alias"]: u["state"] for u in get(tight, "admin/upstreams", "tok-carol")["upstreams"]
    }
    assert set(states.values()) == {"healthy"}, states
    t0 = time.monotonic()
    status, _, body = chat(tight, "tok-bob", ask("hello"))
    assert status == 200, body
    assert time.monotonic() - t0 < 1.0
    # what alice tried counts against alice: five of her ten requests a minute are gone
    assert get(tight, "me", "tok-alice")["limits"][0]["used"] == 5


def test_a_full_window_still_cools_its_account_and_the_request_fails_over(
    tight: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    # the control case: a request that fits the limit but finds the window full is capacity, so
    # that account cools and the request goes to the other one
    fresh_provider.keys = {
        key: KeyPolicy(alias, account=account, token_limit=TOKENS_PER_MINUTE)
        for key, alias, account in PROVIDER_KEYS
    }
    medium = ask("word " * 150)  # about 190 tokens with its answer: one fits a minute, two do not
    first = [chat(tight, "tok-alice", medium) for _ in range(2)]
    assert [s for s, _, _ in first] == [200, 200]
    used = {r.alias for r in fresh_provider.received if r.status == 200}
    assert len({dict((a, c) for _, a, c in PROVIDER_KEYS)[u] for u in used}) == 2  # both accounts
    status, headers, body = chat(tight, "tok-bob", medium)
    assert status == 429, body  # both windows are full: capacity, with its wait
    assert int(headers["retry-after"]) >= 1
    states = {
        u["alias"]: u["state"] for u in get(tight, "admin/upstreams", "tok-carol")["upstreams"]
    }
    assert "cooling" in states.values(), states


def test_the_capacity_fallback_keeps_entitlements_and_the_reservation(
    jupyter_app_factory, fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    cheap = {"fake-small": {"input": 1.0, "output": 1.0}}
    dear = {"fake-large": {"input": 100.0, "output": 100.0}}
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(
                fresh_provider,
                a1={"models": ["fake-small"], "limits": ["1/minute"], "prices": cheap},
                a2={"models": ["fake-small"], "limits": ["1/minute"], "prices": cheap},
                b1={"models": ["fake-large"], "prices": dear},
            ),
            "default_model": "fake-small",
            "default_max_tokens": 50,
            "fallback_model": "b1",
            "fallback_on": ["capacity"],
            "max_wait_seconds": 0.3,
            "admin_users": ["carol"],
            "limit_overrides": {
                # students may use the small model only, within a daily budget
                "group:students": {"models": ["fake-small"], "user_daily_budget_usd": 1.0},
                # alice may use both, but her reservation was made at the small model's price
                "user:alice": {"models": ["fake-small", "fake-large"]},
                # dan has no budget to hold (so no price stops him), only the small model
                "user:dan": {"models": ["fake-small"]},
            },
        },
        named_users=True,
    )
    users = {**USERS, "tok-dan": {"name": "dan", "groups": []}}
    monkeypatch.setenv("RSQL_TEST_TOKEN_USERS", json.dumps(users))
    # a1 and a2 are keys of one account: its one request a minute is now used
    assert chat(server, "tok-alice", ask())[0] == 200
    # bob may not use fake-large: the fallback does not answer him, capacity does
    status, headers, body = chat(server, "tok-bob", ask())
    assert status == 429, body
    assert body["error"]["limit"] == "upstream capacity"
    assert "x-rsql-fallback" not in headers
    assert get(server, "me", "tok-bob")["budget"]["spent_usd"] == 0
    assert [r.body["model"] for r in fresh_provider.received] == ["fake-small"]
    # dan may not use fake-large either, and no budget decides it: his entitlements alone
    status, headers, body = chat(server, "tok-dan", ask())
    assert status == 429 and body["error"]["limit"] == "upstream capacity", body
    assert "x-rsql-fallback" not in headers
    # alice may use fake-large, but it costs more than her request reserved: not used either
    status, headers, body = chat(server, "tok-alice", ask())
    assert status == 429 and "x-rsql-fallback" not in headers, body
    assert len(fresh_provider.received) == 1
    # carol (staff) may use it, with no budget to hold: the fallback answers her
    status, headers, body = chat(server, "tok-carol", ask())
    assert status == 200, body
    assert headers["x-rsql-fallback"] == "b1" and body["model"] == "fake-large"
    # alice's own entitlement holds: asked for by name, fake-large answers her
    assert chat(server, "tok-alice", ask(model="fake-large"))[0] == 200


def test_a_self_hosted_server_down_at_start_serves_no_model_until_it_says_which(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    from tests.helpers import free_port

    lab = {
        "name": "lab-gpu",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens: down at start
        "max_in_flight": 4,
    }
    priced = {"prices": {"fake-small": {"input": 1.0, "output": 1.0}}}
    server = jupyter_app_factory(
        {
            "upstreams": [*upstreams_for(fresh_provider, a1=priced, a2=priced, b1=priced), lab],
            "default_model": "fake-small",
            "user_daily_budget_usd": 1.0,
        },
        named_users=True,
    )
    # the server is not known to serve fake-small, so it does not make fake-small unpriced
    status, _, body = chat(server, "tok-bob", ask())
    assert status == 200, body
    # nor does it serve a name nobody serves: that is a 404 naming what is served
    status, _, body = chat(server, "tok-bob", ask(model="made-up-model"))
    assert status == 404, body
    assert "fake-small" in body["error"]["message"]


# -- #35 2: no body, however shaped, takes the event loop from others -----------------------


async def test_one_users_bodies_sent_at_once_wait_their_turn_and_past_eight_are_refused() -> None:
    from jupyter_server_ext.engine.bodies.decode import MAX_WAITING, BodyDecoder
    from jupyter_server_ext.engine.errors import RateLimited
    from jupyter_server_ext.engine.privacy.offload import Offload

    offload = Offload()
    decoder = BodyDecoder(offload.run)
    raw = json.dumps({**ask("x" * 40_000)}).encode()  # past the size parsed at once
    theirs = json.dumps({**ask("y" * 40_000)}).encode()
    parsed: list[str] = []  # whose body each parse was, in order
    parse = decoder._decode

    def recorded(body: bytes, counted: bool = False) -> Any:
        parsed.append("victim" if body is theirs else "mallory")
        return parse(body, counted)

    decoder._decode = recorded  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(
            *(decoder.decode(raw, "mallory") for _ in range(12)),
            decoder.decode(theirs, "victim"),
            return_exceptions=True,
        )
    finally:
        await offload.close()
    mallory, victim = results[:12], results[12]
    # one of mallory's parsed a turn: the victim's comes second, not after all of hers
    assert parsed[:2] == ["mallory", "victim"] and len(parsed) == MAX_WAITING + 1, parsed
    refused = [r for r in mallory if isinstance(r, RateLimited)]
    assert len(refused) == 12 - MAX_WAITING
    assert all(r.limit == "request bodies being read at once" for r in refused)
    assert all(isinstance(r, dict) for r in mallory if not isinstance(r, RateLimited))
    assert isinstance(victim, dict)  # another user's body is never refused for hers
    assert decoder._turns == {}  # nothing kept per user once their bodies are read


# -- #35, suspected: a client that never reads its stream ---------------------------------


def _stream_socket(server: Any, rcvbuf: int = 0) -> socket.socket:
    """A raw connection to `server` on which alice's streamed chat completion is sent: a client
    whose reading the test decides (`rcvbuf`: a receive buffer that small, set before it
    connects)."""
    u = urllib.parse.urlsplit(server.proxy_url)
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((u.hostname, u.port))
    body = json.dumps({**ask(), "stream": True}).encode()
    sock.sendall(
        f"POST {u.path}v1/chat/completions HTTP/1.1\r\nHost: {u.netloc}\r\n"
        "Authorization: token tok-alice\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def _one_lease_server(factory: Any, provider: FakeProvider, **settings: Any) -> Any:
    """A server whose users each have one request at a time, a cut stream's usage drained
    within 0.5 s, and `settings`."""
    return factory(
        {
            "upstreams": upstreams_for(provider),
            "default_model": "fake-small",
            "user_concurrency": 1,
            "usage_drain_seconds": 0.5,
            **settings,
        },
        named_users=True,
    )


def _answered_within(server: Any, seconds: float) -> tuple[int, Any]:
    """Alice's chat completion, asked again until it is answered (her one lease free again) or
    `seconds` pass: the last status and body."""
    deadline = time.monotonic() + seconds
    status, _, body = chat(server, "tok-alice", ask())
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        status, _, body = chat(server, "tok-alice", ask())
    return status, body


def test_a_stream_nobody_reads_gives_back_its_lease_after_the_write_deadline(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    server = _one_lease_server(
        jupyter_app_factory, fresh_provider, stream_write_timeout_seconds=1.0
    )
    fresh_provider.word_delay = 0.0
    fresh_provider.script("word " * 300_000)  # some 40 MB of chunks: more than any buffer holds
    sock = _stream_socket(server, rcvbuf=4096)  # a client that reads nothing
    try:
        deadline = time.monotonic() + 5
        while not fresh_provider.received and time.monotonic() < deadline:
            time.sleep(0.02)  # the stream's request reached the provider (the script is its)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # the stream holds alice's one lease meanwhile
            status, _, body_ = chat(server, "tok-alice", ask())
            if status == 429:
                break
            time.sleep(0.05)
        assert status == 429 and "concurrency" in body_["error"]["message"], body_
        # past the write deadline the proxy gives up on the reader: the lease is free again
        status, body_ = _answered_within(server, 10)
        assert status == 200, body_
    finally:
        sock.close()


def test_a_stream_past_its_longest_time_is_cut_though_its_client_reads_on(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """``stream_max_seconds`` bounds a stream however steadily its client reads: a 60 s stream
    under a 1 s bound ends about a second in, without its ``[DONE]``, and its lease is free
    again long before the answer's own end. (Before, only a send that had to wait for its
    reader looked at the bound: a client that read every event at once kept the stream, and
    what it holds, to its end.)"""
    server = _one_lease_server(jupyter_app_factory, fresh_provider, stream_max_seconds=1.0)
    fresh_provider.word_delay = 0.1
    fresh_provider.script("word " * 600)  # 60 s of steady events
    with _stream_socket(server) as sock:
        t0, got = time.monotonic(), b""
        # every byte as it comes, until the proxy closes, or the stream's last chunk
        while (data := sock.recv(65536)) and not (got := got + data).endswith(b"0\r\n\r\n"):
            pass
        took = time.monotonic() - t0
    assert b"data: " in got and b"[DONE]" not in got, got[-300:]
    assert took < 4, f"the stream went on for {took:.1f} s"
    # alice's one lease is free again once the cut stream's usage is drained (within 0.5 s)
    status, answer = _answered_within(server, 5)
    assert status == 200, answer


# -- #35, suspected: the provider's remaining tokens against what a request reserves ----------


async def test_a_large_max_tokens_does_not_wait_on_a_window_that_counts_input_only() -> None:
    """Anthropic's input-token window counts a request's input; its answer counts elsewhere.
    A request that asks for 8,000 answer tokens must not wait for the input window's reset
    because 8,000 is more than the input tokens left (Claude Code asks for 32,000)."""
    from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams
    from jupyter_server_ext.state import MemoryState
    from tests.helpers.fake_anthropic import FakeAnthropic
    from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey

    key = "test-anthropic-key-window"
    with FakeAnthropic({key: AnthropicKey("claude", input_token_limit=5_000)}) as fake:
        claude = {
            "name": "claude",
            "provider": "anthropic",
            "base_url": fake.base_url,
            "api_key": key,
            "models": {"claude-small": "claude-fake-small"},
        }
        engine = Engine(
            EngineSettings(
                upstreams=parse_upstreams([claude], {}),
                default_model="claude-small",
                max_wait_seconds=1.0,
                health_check_seconds=0,
            ),
            state=MemoryState(),
        )
        try:
            # most of the input window used: about 1,000 input tokens left until it refills
            long = {**ask("word " * 3_200, model="claude-small"), "max_tokens": 10}
            assert (await engine.chat(long, Caller("ann"))).status == 200
            # a short question that may be answered at length fits what is left
            body = {**ask(model="claude-small"), "max_tokens": 8_000}
            for _ in range(2):
                reply = await engine.chat(body, Caller("bo"))
                assert reply.status == 200
        finally:
            await engine.close()
        assert len(fake.received) == 3 and fake.too_many == 0


# -- #35 4: what a translator cannot express never counts at the provider's window ------------


async def test_odd_content_parts_for_an_anthropic_upstream_are_400s_that_take_no_capacity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams
    from jupyter_server_ext.engine.errors import EngineError
    from jupyter_server_ext.state import MemoryState
    from tests.helpers.fake_anthropic import FakeAnthropic
    from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey

    key = "test-anthropic-key-odd"
    with FakeAnthropic({key: AnthropicKey("claude")}) as fake:
        claude = {
            "name": "claude",
            "provider": "anthropic",
            "base_url": fake.base_url,
            "api_key": key,
            "models": {"claude-small": "claude-fake-small"},
            "limits": ["5/minute"],  # the account's window, as the admin configured it
        }
        engine = Engine(
            EngineSettings(
                upstreams=parse_upstreams([claude], {}),
                default_model="claude-small",
                max_wait_seconds=0.5,
                health_check_seconds=0,
            ),
            state=MemoryState(),
        )
        odd = [
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            {"messages": [{"role": "user", "content": "hi"}], "stop": 7},
            {"messages": [{"role": "user", "content": "hi"}], "tools": True},
            {"messages": [{"role": "assistant", "content": "a", "tool_calls": 1}]},
            {"messages": [{"role": "user", "content": "hi"}], "top_p": "high"},
        ]
        try:
            for body in odd:
                with pytest.raises(EngineError) as err:
                    await engine.chat({"model": "claude-small", **body}, Caller("mallory"))
                assert err.value.status == 400 and err.value.extra.get("param"), err.value
            # none reached Anthropic or took a place in its window: another user is answered
            reply = await engine.chat(
                {"model": "claude-small", "messages": [{"role": "user", "content": "hi"}]},
                Caller("victim"),
            )
            assert reply.status == 200
        finally:
            await engine.close()
        assert len(fake.received) == 1
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]


async def test_the_second_wall_holds_when_a_translator_fails_in_a_way_nobody_foresaw(
    fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first wall is each translator's own checks; if one still raises (a bug to come), the
    request is a 400 that sends nothing and counts in no window, logged once, not per request."""
    from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams
    from jupyter_server_ext.engine.errors import EngineError
    from jupyter_server_ext.engine.upstreams.kinds import OpenAIKind
    from jupyter_server_ext.state import MemoryState

    class NobodyForesawThisError(Exception):
        pass

    def broken(self: Any, payload: dict[str, Any], *args: Any) -> dict[str, Any]:
        raise NobodyForesawThisError("a field nobody foresaw")

    monkeypatch.setattr(OpenAIKind, "body", broken)
    specs = parse_upstreams(upstreams_for(fresh_provider, a1={"limits": ["3/minute"]}))
    engine = Engine(
        EngineSettings(upstreams=specs[:1], default_model="fake-small", health_check_seconds=0),
        state=MemoryState(),
    )
    try:
        for _ in range(4):
            with pytest.raises(EngineError) as err:
                await engine.chat(ask(), Caller("mallory"))
            assert err.value.status == 400 and "cannot be sent" in err.value.message
        bucket = next(iter(engine.pool.buckets.values()))
        assert bucket.used(engine.clock()) == {"requests 3/minute": 0}
    finally:
        await engine.close()
    assert fresh_provider.received == []
    assert len([r for r in caplog.records if r.exc_info]) == 1


# -- #35 1, reviewed: what a provider says about one request teaches nothing about the others ---


def _engine(specs: list[Any], clock: Any = time.monotonic, **settings: Any) -> Any:
    from jupyter_server_ext.engine import Engine, EngineSettings
    from jupyter_server_ext.state import MemoryState

    return Engine(
        EngineSettings(upstreams=specs, health_check_seconds=0, **settings),
        state=MemoryState(),
        clock=clock,
    )


async def test_a_provider_error_that_echoes_limit_numbers_teaches_no_limit(
    fresh_provider: FakeProvider,
) -> None:
    """OpenAI's 400 for an unknown field echoes its name, so a caller chooses the text; text
    that reads "Limit 1, Requested 2" must not become the account's token limit."""
    from jupyter_server_ext.engine import Caller, parse_upstreams
    from jupyter_server_ext.engine.errors import EngineError

    fresh_provider.strict_fields = True
    engine = _engine(
        parse_upstreams(upstreams_for(fresh_provider)),
        default_model="fake-small",
        max_wait_seconds=1.0,
    )
    try:
        echo = {**ask(), "Request too large: Limit 1, Requested 2": 1}
        for _ in range(2):
            with pytest.raises(EngineError) as err:
                await engine.chat(echo, Caller("mallory"))
            assert err.value.status == 400, err.value
        reply = await engine.chat(ask("a normal question"), Caller("victim"))
        assert reply.status == 200
    finally:
        await engine.close()


async def test_a_body_the_provider_refuses_fills_no_token_window(
    fresh_provider: FakeProvider,
) -> None:
    """A 400 about the request is billed nothing by the provider: it counts as one request with
    no tokens, so a request's answer budget cannot fill the account's tokens per minute."""
    from jupyter_server_ext.engine import Caller, parse_upstreams
    from jupyter_server_ext.engine.errors import EngineError

    fresh_provider.strict_fields = True
    specs = parse_upstreams(upstreams_for(fresh_provider, a1={"token_limits": ["1000/minute"]}))
    engine = _engine(specs[:1], default_model="fake-small", max_wait_seconds=1.0)
    try:
        with pytest.raises(EngineError) as err:
            await engine.chat({**ask(), "top_p": "high", "max_tokens": 900}, Caller("mallory"))
        assert err.value.status == 400 and "top_p" in err.value.message, err.value
        t0 = time.monotonic()
        reply = await engine.chat({**ask(), "max_tokens": 900}, Caller("victim"))
        assert reply.status == 200
        assert time.monotonic() - t0 < 0.5  # served at once, not after the window's minute
    finally:
        await engine.close()
    assert [r.status for r in fresh_provider.received] == [400, 200]


async def test_a_body_that_makes_the_provider_fail_fills_no_token_window(
    fresh_provider: FakeProvider,
) -> None:
    """A body that trips a provider's bug gets a 500 on every key: the provider generated and
    billed nothing, so the request's huge answer budget does not fill the account's tokens per
    minute for the next user."""
    from jupyter_server_ext.engine import Caller, parse_upstreams
    from jupyter_server_ext.engine.errors import EngineError

    specs = parse_upstreams(upstreams_for(fresh_provider, a1={"token_limits": ["1000/minute"]}))
    engine = _engine(specs[:1], default_model="fake-small", max_wait_seconds=1.0)
    crash = {"messages": [{"role": "user", "content": "CRASH"}], "max_tokens": 900}
    try:
        with pytest.raises(EngineError) as err:
            await engine.chat(crash, Caller("mallory"))
        assert err.value.status >= 500, err.value
        t0 = time.monotonic()
        reply = await engine.chat({**ask(), "max_tokens": 900}, Caller("victim"))
        assert reply.status == 200
        assert time.monotonic() - t0 < 0.5  # served at once, not after the window's minute
    finally:
        await engine.close()
    assert [r.status for r in fresh_provider.received][-1] == 200


async def test_an_anthropic_429_for_one_oversized_request_cools_nothing_for_smaller_ones() -> None:
    """Anthropic's 429 for a request larger than a whole window names no number, and behind a
    gateway no rate-limit header says so either: it cools requests at least that large, not the
    account's smaller ones."""
    from jupyter_server_ext.engine import Caller, parse_upstreams
    from jupyter_server_ext.engine.errors import EngineError
    from tests.helpers.fake_anthropic import FakeAnthropic
    from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey

    key = "test-anthropic-key-oversized"
    with FakeAnthropic({key: AnthropicKey("claude", input_token_limit=2_000)}) as fake:
        fake.refuse_oversized, fake.rate_headers = True, False
        claude = {
            "name": "claude",
            "provider": "anthropic",
            "base_url": fake.base_url,
            "api_key": key,
            "models": {"claude-small": "claude-fake-small"},
        }
        engine = _engine(
            parse_upstreams([claude], {}), default_model="claude-small", max_wait_seconds=1.0
        )
        try:
            big = {**ask("word " * 2_400, model="claude-small"), "max_tokens": 10}
            for _ in range(3):
                with pytest.raises(EngineError) as err:
                    await engine.chat(big, Caller("mallory"))
                assert err.value.status == 429, err.value
            t0 = time.monotonic()
            reply = await engine.chat({**ask(model="claude-small"), "max_tokens": 50}, Caller("bo"))
            assert reply.status == 200
            assert time.monotonic() - t0 < 0.5
        finally:
            await engine.close()
        # mallory's later attempts waited on the cooldown her own size keeps: sent once
        assert [r.status for r in fake.received] == [429, 200]


async def test_a_limit_a_provider_names_is_believed_only_above_what_it_served_and_not_for_long(
    fresh_provider: FakeProvider,
) -> None:
    """A "Request too large ... Limit N" below a request the account served is wrong and not
    taken; one above it is taken, so a request past it is refused before it is sent, for ten
    minutes, after which the provider is asked again."""
    from jupyter_server_ext.engine import Caller, parse_upstreams
    from jupyter_server_ext.engine.errors import EngineError

    later = [0.0]
    engine = _engine(
        parse_upstreams(upstreams_for(fresh_provider))[:1],
        default_model="fake-small",
        max_wait_seconds=1.0,
        clock=lambda: time.monotonic() + later[0],
    )

    def too_large(limit: int) -> dict[str, Any]:
        message = (
            "Request too large for fake-small in organization org-fake0123 on tokens per min "
            f"(TPM): Limit {limit}, Requested {limit + 1000}. The input or output tokens must "
            "be reduced in order to run successfully."
        )
        return {"__status__": 429, "error": {"message": message, "type": "tokens"}}

    served = {**ask("word " * 4_000), "max_tokens": 10}  # about 5,000 tokens
    larger = {**ask("word " * 6_000), "max_tokens": 10}  # about 7,500 tokens
    try:
        assert (await engine.chat(served, Caller("victim"))).status == 200
        fresh_provider.script(too_large(4_500))
        with pytest.raises(EngineError) as err:
            await engine.chat(served, Caller("mallory"))
        assert err.value.status == 400 and err.value.code == "request_too_large", err.value
        assert (await engine.chat(served, Caller("victim"))).status == 200  # 4,500 not believed
        fresh_provider.script(too_large(7_000))
        with pytest.raises(EngineError):
            await engine.chat(larger, Caller("mallory"))
        sent = len(fresh_provider.received)
        with pytest.raises(EngineError) as err:  # believed: refused here, not sent
            await engine.chat(larger, Caller("victim"))
        assert err.value.code == "request_too_large" and len(fresh_provider.received) == sent
        assert (await engine.chat(served, Caller("victim"))).status == 200
        later[0] = 601.0  # the lesson is over: the provider is asked again
        assert (await engine.chat(larger, Caller("victim"))).status == 200
    finally:
        await engine.close()
