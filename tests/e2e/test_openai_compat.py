"""Any OpenAI client, unchanged: the real `openai` SDK and LangChain through both hosts.

Each test checks two sides: what the client got (exactly what the provider would give, plus
our limits) and what the provider received (what the client sent: nothing dropped, renamed
or added but the `user` pseudonym, the usage request on streams, and the budget cap).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams
from jupyter_server_ext.state import MemoryState
from jupyter_server_ext.wiring import user_id_secret
from tests.helpers import http, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import start_jupyter_server, start_service

pytestmark = pytest.mark.slow

PRICES = {
    "prices": {
        "fake-small": {"input": 1.0, "output": 2.0},
        "fake-large": {"input": 1.0, "output": 2.0},
    }
}
USERS = {
    "compat-alice": {"name": "alice"},
    "compat-bob": {"name": "bob"},
    "compat-slow": {"name": "slow"},
}
HOSTS = ("service", "extension")


def proxy_config(fp: FakeProvider) -> dict[str, Any]:
    return {
        "upstreams": upstreams_for(fp, **{alias: PRICES for alias in ("a1", "a2", "b1")}),
        "default_model": "fake-small",
        "max_wait_seconds": 3.0,
        "user_limits": ["1000/minute"],
        "limit_overrides": {"user:slow": {"user_limits": ["1 per 2 seconds"]}},
    }


class Host:
    def __init__(self, name: str, base: str, token: str, proc: Any) -> None:
        self.name, self.base, self.token, self.proc = name, base, token, proc

    @property
    def v1(self) -> str:
        return self.base + "v1"

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = "default",
        headers: dict | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        tok = self.token if token == "default" else token
        return http(method, self.base + path, body, f"Bearer {tok}" if tok else None, headers)

    def client(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.v1, api_key=kw.pop("api_key", self.token), **{"max_retries": 0, **kw}
        )


@pytest.fixture(scope="module")
def hosts(
    provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Host]]:
    provider.reset()
    cfg = proxy_config(provider)
    svc = start_service(
        tmp_path_factory.mktemp("compat-svc"), cfg, static_users=USERS, prefix="/services/rsql/"
    )
    srv = start_jupyter_server(tmp_path_factory.mktemp("compat-srv"), cfg)
    out = {
        "service": Host("service", svc.url, "compat-alice", svc),
        "extension": Host("extension", srv.proxy_url, srv.token, srv),
    }
    yield out
    svc.stop(9)
    srv.stop()


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest, hosts: dict[str, Host], provider: FakeProvider) -> Host:
    provider.reset()
    return hosts[request.param]


@pytest.fixture
def svc(hosts: dict[str, Host], provider: FakeProvider) -> Host:
    provider.reset()
    return hosts["service"]


# -- helpers -----------------------------------------------------------------------------------


def events(raw: bytes) -> list[Any]:
    """The data of each SSE event: a dict, or the string "[DONE]"."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def aggregate(chunks: list[Any]) -> dict[str, Any]:
    """What a client builds from a chat stream (written independently of the proxy's code)."""
    msg: dict[str, Any] = {"content": None, "refusal": None, "tool_calls": {}}
    out: dict[str, Any] = {"usage": None, "finish_reason": None, "logprobs": None, "top": {}}
    for ch in chunks:
        if ch == "[DONE]":
            continue
        for k in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if ch.get(k) is not None:
                out["top"][k] = ch[k]
        if ch.get("usage"):
            out["usage"] = ch["usage"]
        for c in ch["choices"]:
            d = c["delta"]
            for k in ("content", "refusal"):
                if d.get(k) is not None:
                    msg[k] = (msg[k] or "") + d[k]
            for tc in d.get("tool_calls") or []:
                cur = msg["tool_calls"].setdefault(
                    tc["index"], {"id": None, "type": None, "name": "", "arguments": ""}
                )
                cur["id"] = tc.get("id") or cur["id"]
                cur["type"] = tc.get("type") or cur["type"]
                fn = tc.get("function") or {}
                cur["name"] += fn.get("name") or ""
                cur["arguments"] += fn.get("arguments") or ""
            if c.get("logprobs"):
                out["logprobs"] = (out["logprobs"] or []) + (c["logprobs"].get("content") or [])
            if c.get("finish_reason"):
                out["finish_reason"] = c["finish_reason"]
    out["message"] = msg
    return out


def aggregate_json(body: dict[str, Any]) -> dict[str, Any]:
    """The same view of a JSON completion."""
    choice = body["choices"][0]
    m = choice["message"]
    calls = {
        i: {
            "id": c["id"],
            "type": c["type"],
            "name": c["function"]["name"],
            "arguments": c["function"]["arguments"],
        }
        for i, c in enumerate(m.get("tool_calls") or [])
    }
    top = {
        k: body[k]
        for k in ("id", "created", "model", "system_fingerprint", "service_tier")
        if body.get(k) is not None
    }
    return {
        "usage": body.get("usage"),
        "finish_reason": choice["finish_reason"],
        "logprobs": (choice.get("logprobs") or {}).get("content"),
        "top": top,
        "message": {"content": m.get("content"), "refusal": m.get("refusal"), "tool_calls": calls},
    }


def answer(kind: str, tag: str) -> dict[str, Any]:
    """A provider's JSON answer of a kind the old cache lost: text with logprobs, tool calls,
    a refusal; all with system_fingerprint and service_tier."""
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    logprobs = None
    finish = "stop"
    if kind == "text":
        message["content"] = f"Use a LEFT JOIN {tag}"
        words = message["content"].split(" ")
        logprobs = {
            "content": [
                {
                    "token": (" " if i else "") + w,
                    "logprob": -0.1 * i,
                    "bytes": None,
                    "top_logprobs": [],
                }
                for i, w in enumerate(words)
            ],
            "refusal": None,
        }
    elif kind == "tools":
        message["tool_calls"] = [
            {
                "id": f"call_{tag}_1",
                "type": "function",
                "function": {
                    "name": "run_sql",
                    "arguments": json.dumps({"sql": "SELECT 1", "tag": tag}),
                },
            },
            {
                "id": f"call_{tag}_2",
                "type": "function",
                "function": {"name": "describe", "arguments": json.dumps({"table": "t"})},
            },
        ]
        finish = "tool_calls"
    else:
        message["refusal"] = f"I cannot help with that {tag}."
    return {
        "id": f"chatcmpl-{tag}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake-small",
        "system_fingerprint": "fp_compat",
        "service_tier": "default",
        "choices": [
            {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


TOOLS = [
    {
        "type": "function",
        "function": {"name": "run_sql", "parameters": {"type": "object", "properties": {}}},
    }
]


def ask(tag: str, stream: bool, usage: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "fake-small",
        "temperature": 0,
        "logprobs": True,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": f"question {tag}"}],
        **extra,
    }
    if stream:
        body["stream"] = True
        if usage:
            body["stream_options"] = {"include_usage": True}
    return body


def call(
    host: Host, body: dict[str, Any], headers: dict | None = None
) -> tuple[dict[str, str], Any]:
    status, hdrs, raw = host.http("POST", "v1/chat/completions", body, headers=headers)
    assert status == 200, raw
    return hdrs, events(raw) if body.get("stream") else json.loads(raw)


# -- 1. the cache gives back what the provider gave ----------------------------------------------


@pytest.mark.parametrize("kind", ["text", "tools", "refusal"])
@pytest.mark.parametrize(
    "first,second",
    [(False, False), (True, True), (True, False), (False, True)],
    ids=["json-json", "stream-stream", "stream-json", "json-stream"],
)
def test_a_cache_hit_is_the_original_answer(
    svc: Host, provider: FakeProvider, kind: str, first: bool, second: bool
) -> None:
    tag = f"{kind}-{int(first)}{int(second)}-{time.monotonic_ns()}"
    provider.script(answer(kind, tag))
    h1, original = call(svc, ask(tag, first))
    assert h1["x-rsql-cache"] == "miss"
    h2, replay = call(svc, ask(tag, second))
    assert h2["x-rsql-cache"] == "hit" and h2["x-rsql-cost-usd"] == "0"
    assert len(provider.received) == 1  # the provider was asked once
    # what the provider itself gives for a request of the second shape (cache bypassed)
    provider.script(answer(kind, tag))
    _, reference = call(svc, ask(tag, second), {"X-RSQL-Cache-Control": "no-cache"})
    if first == second:
        assert replay == original  # the very same body, the very same events
    if not second:
        assert replay == reference  # message, tool_calls, refusal, logprobs, fingerprint, usage
        assert replay["usage"]["cost_usd"] == pytest.approx(11 * 1e-6 + 7 * 2e-6)
    else:
        assert aggregate(replay) == aggregate(reference)
        assert all("system_fingerprint" in ch for ch in replay if ch != "[DONE]")
        assert (
            replay[-1] == "[DONE]"
            and replay[-2]["choices"] == []
            and replay[-2]["usage"]["cost_usd"] > 0
        )
    view = aggregate(replay) if second else aggregate_json(replay)
    assert view == (aggregate(original) if first else aggregate_json(original))
    expected = answer(kind, tag)["choices"][0]
    assert view["finish_reason"] == expected["finish_reason"]
    if kind == "tools":
        assert [c["name"] for c in view["message"]["tool_calls"].values()] == [
            "run_sql",
            "describe",
        ]
        assert view["message"]["content"] is None
    if kind == "refusal":
        assert view["message"]["refusal"] == expected["message"]["refusal"]
    if kind == "text":
        assert len(view["logprobs"]) == len(expected["logprobs"]["content"])


@pytest.mark.parametrize("with_usage", [False, True])
def test_a_replayed_stream_carries_usage_only_when_asked(
    svc: Host, provider: FakeProvider, with_usage: bool
) -> None:
    tag = f"usage-{with_usage}-{time.monotonic_ns()}"
    provider.script(answer("text", tag))
    for expect_cache in ("miss", "hit"):
        hdrs, chunks = call(svc, ask(tag, True, usage=with_usage))
        assert hdrs["x-rsql-cache"] == expect_cache
        data = [c for c in chunks if c != "[DONE]"]
        assert all(("usage" in c) == with_usage for c in data)
        assert any(c.get("usage") for c in data) == with_usage
    # we still meter it
    assert provider.received[0].body["stream_options"] == {"include_usage": True}


def test_the_cache_key_covers_every_parameter_that_changes_the_answer(
    svc: Host, provider: FakeProvider
) -> None:
    tag = f"key-{time.monotonic_ns()}"
    variants = [
        {},
        {"tools": [*TOOLS, {"type": "function", "function": {"name": "other"}}]},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"seed": 7},
        {"logprobs": False},
        {"top_logprobs": 2},
        {"n": 1, "max_tokens": 5},
        {"service_tier": "flex"},
        {"model": "fake-large"},
        {"parallel_tool_calls": False},
    ]
    for i, extra in enumerate(variants):
        hdrs, _ = call(svc, ask(tag, False, **extra))
        assert hdrs["x-rsql-cache"] == "miss", extra
        assert len(provider.received) == i + 1
    # what only changes delivery or attribution is not part of the key
    for extra in ({"user": "someone"}, {"stream": True}, {"metadata": {"a": "b"}}):
        body = {**ask(tag, False), **extra}
        hdrs, _ = call(svc, body)
        assert hdrs["x-rsql-cache"] == "hit", extra


# -- 2. errors as OpenAI sends them -------------------------------------------------------------


def test_missing_or_wrong_credentials_are_401(host: Host, provider: FakeProvider) -> None:
    for token in (None, "not-a-token"):
        for method, path, body in (
            ("POST", "v1/chat/completions", ask("x", False)),
            ("GET", "v1/models", None),
            ("GET", "me", None),
            ("GET", "v1/nothing", None),
        ):
            status, hdrs, raw = host.http(method, path, body, token=token)
            assert status == 401, (path, raw)
            assert hdrs["www-authenticate"].startswith("Bearer")
            err = json.loads(raw)["error"]
            assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        host.client(api_key="wrong").chat.completions.create(
            model="fake-small", messages=[{"role": "user", "content": "x"}]
        )
    assert provider.received == []


def test_unserved_paths_and_methods_answer_json_404_and_405(host: Host) -> None:
    for method, path in (
        ("GET", "v1/files"),
        ("POST", "v1/audio/speech"),
        ("GET", ""),
        ("DELETE", "v1/x/y"),
        ("POST", "v1/images/generations"),
        ("GET", "nothing/here"),
    ):
        status, hdrs, raw = host.http(method, path, {} if method == "POST" else None)
        assert status == 404, (method, path, raw)
        assert hdrs["content-type"].startswith("application/json")
        assert json.loads(raw)["error"]["code"] == "unknown_url"
    for method, path in (
        ("GET", "v1/chat/completions"),
        ("DELETE", "v1/models"),
        ("PUT", "v1/embeddings"),
    ):
        status, hdrs, raw = host.http(method, path, {} if method == "PUT" else None)
        assert status == 405, (method, path, raw)
        assert json.loads(raw)["error"]["code"] == "method_not_allowed"
    with pytest.raises(openai.NotFoundError):
        host.client().files.list()


def test_an_upstream_4xx_is_passed_through_as_sent(host: Host, provider: FakeProvider) -> None:
    provider.script(
        {
            "__status__": 400,
            "error": {
                "message": "Invalid value for 'temperature' with key sk-live-abcdef123456",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "invalid_value",
            },
        }
    )
    with pytest.raises(openai.BadRequestError) as info:
        host.client().chat.completions.create(
            model="fake-small", messages=[{"role": "user", "content": "x"}]
        )
    err = info.value
    assert err.status_code == 400 and err.code == "invalid_value" and err.param == "temperature"
    assert err.type == "invalid_request_error"
    assert "Invalid value for 'temperature'" in err.message and "sk-live" not in err.message


# -- 4. user pseudonyms ----------------------------------------------------------------------------


def test_user_is_forwarded_as_a_stable_pseudonym(svc: Host, provider: FakeProvider) -> None:
    seen = []
    for token in ("compat-alice", "compat-alice", "compat-bob"):
        status, _, raw = svc.http(
            "POST",
            "v1/chat/completions",
            {**ask("u", False), "temperature": 1, "user": "i-am-carol"},
            token=token,
        )
        assert status == 200, raw
        seen.append(provider.received[-1].body["user"])
    assert seen[0] == seen[1] != seen[2]
    assert all(s.startswith("rsql-") and "alice" not in s and "carol" not in s for s in seen)


@pytest.mark.parametrize("mode", ["hash", "name", "none"])
async def test_forward_user_modes(provider: FakeProvider, mode: str, tmp_path: Path) -> None:
    provider.reset()
    secret = user_id_secret(str(tmp_path / "user-id.secret"))
    assert user_id_secret(str(tmp_path / "user-id.secret")) == secret  # kept across restarts
    settings = EngineSettings(
        upstreams=parse_upstreams(upstreams_for(provider), {}),
        default_model="fake-small",
        forward_user=mode,
        user_id_secret=secret,
        health_check_seconds=0,
    )
    engine = Engine(settings, state=MemoryState())
    await engine.start()
    try:
        await engine.chat(
            {"messages": [{"role": "user", "content": "x"}], "user": "x"}, Caller("dana")
        )
    finally:
        await engine.close()
    body = provider.received[-1].body
    if mode == "none":
        assert "user" not in body
    elif mode == "name":
        assert body["user"] == "dana"
    else:
        again = Engine(settings, state=MemoryState())
        assert body["user"] == again.user_id("dana") != again.user_id("dan")


# -- 5. more of the API ------------------------------------------------------------------------------


def test_embeddings_completions_and_one_model(host: Host, provider: FakeProvider) -> None:
    client = host.client()
    raw = client.embeddings.with_raw_response.create(model="fake-small", input=["alpha", "beta"])
    emb = raw.parse()
    assert [len(d.embedding) for d in emb.data] == [8, 8] and emb.usage.prompt_tokens > 0
    assert (
        raw.headers["x-rsql-cache"] == "miss"
        and raw.headers["x-ratelimit-limit-requests"] == "1000"
    )
    sent = provider.received[-1]
    assert sent.path == "embeddings" and sent.body["input"] == ["alpha", "beta"]
    again = client.embeddings.with_raw_response.create(model="fake-small", input=["alpha", "beta"])
    assert (
        again.headers["x-rsql-cache"] == "hit"
        and again.parse().data[0].embedding == emb.data[0].embedding
    )
    floats = client.embeddings.create(model="fake-small", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(emb.data[0].embedding, abs=1e-6)

    done = client.completions.create(model="fake-small", prompt="SELECT", max_tokens=5)
    assert done.choices[0].text.startswith("Fake completion") and done.usage.completion_tokens <= 5
    assert provider.received[-1].path == "completions"
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="fake-small", prompt="SELECT", max_tokens=5, stream=True
        )
        if c.choices
    )
    assert text == done.choices[0].text

    model = client.models.retrieve("fake-small")
    assert model.id == "fake-small" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


def test_an_endpoint_no_upstream_serves_says_so(host: Host, provider: FakeProvider) -> None:
    provider.unserved = {"embeddings"}
    with pytest.raises(openai.NotFoundError) as info:
        host.client().embeddings.create(model="fake-small", input="x")
    assert info.value.code == "endpoint_not_served" and "does not offer it" in info.value.message
    assert {r.alias for r in provider.received} == {"a1", "a2", "b1"}  # each was asked once


def test_every_answer_tells_the_caller_its_own_quota(svc: Host, provider: FakeProvider) -> None:
    def remaining(key: str, text: str) -> int:
        raw = svc.client(api_key=key).chat.completions.with_raw_response.create(
            model="fake-small", messages=[{"role": "user", "content": text}]
        )
        h = raw.headers
        assert h["x-ratelimit-limit-requests"] == "1000"
        assert h["x-ratelimit-reset-requests"].endswith("s")
        return int(h["x-ratelimit-remaining-requests"])

    before = remaining("compat-bob", "quota")
    assert 0 < before < 1000
    remaining("compat-alice", "quota of another")  # another user's request
    # bob's own window: his next request took one, alice's took none of it (one more back only
    # if a request of his from a minute ago left the moving window in between)
    after = remaining("compat-bob", "quota again")
    assert after in (before - 1, before), (before, after)


# -- 7. the SDK and LangChain, checked against what the provider received ------------------------


class Recorder:
    """The bodies an httpx client sent: what the SDK put on the wire."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.sent.append(json.loads(request.content) if request.content else {})


def upstream_view(sent: dict[str, Any], received: dict[str, Any]) -> dict[str, Any]:
    """What the provider must have received for `sent`: the same body but for what the issue
    names (the user pseudonym; usage asked for on streams)."""
    expected = copy.deepcopy(sent)
    expected["user"] = received["user"]
    assert received["user"].startswith("rsql-")
    if sent.get("stream"):
        expected["stream_options"] = {**(sent.get("stream_options") or {}), "include_usage": True}
    return expected


def test_openai_sdk_sync_stream_tools_and_structured_output(
    host: Host, provider: FakeProvider
) -> None:
    rec = Recorder()
    client = host.client(http_client=httpx.Client(event_hooks={"request": [rec]}))
    r = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        user="me",
        seed=3,
    )
    assert r.choices[0].message.content == "Fake answer to: hi" and r.usage.total_tokens > 0
    provider.script(answer("tools", "sdk"))
    r = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "tools"}],
        tools=TOOLS,
        tool_choice="auto",
        temperature=0.5,
    )
    assert r.choices[0].message.tool_calls[0].function.name == "run_sql"
    schema = {
        "type": "object",
        "properties": {"sql": {"type": "string"}},
        "required": ["sql"],
        "additionalProperties": False,
    }
    provider.script(
        {
            **answer("text", "s"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {
                        "role": "assistant",
                        "content": '{"sql": "SELECT 1"}',
                        "refusal": None,
                    },
                }
            ],
        }
    )
    r = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "json"}],
        temperature=0.5,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "q", "schema": schema, "strict": True},
        },
    )
    assert json.loads(r.choices[0].message.content) == {"sql": "SELECT 1"}
    chunks = list(
        client.chat.completions.create(
            model="fake-small",
            messages=[{"role": "user", "content": "a b"}],
            stream=True,
            temperature=0.4,
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Fake answer to: a b"
    )
    # no usage chunk: not asked
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    chunks = list(
        client.chat.completions.create(
            model="fake-small",
            messages=[{"role": "user", "content": "c"}],
            stream=True,
            stream_options={"include_usage": True},
            temperature=0.4,
        )
    )
    assert chunks[-1].usage.total_tokens > 0 and chunks[-1].choices == []
    assert len(rec.sent) == len(provider.received) == 5
    for sent, got in zip(rec.sent, provider.received, strict=True):
        assert got.body == upstream_view(sent, got.body)


def test_openai_sdk_async_and_raw_response(host: Host, provider: FakeProvider) -> None:
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=host.v1, api_key=host.token, max_retries=0)
        r = await client.chat.completions.with_raw_response.create(
            model="fake-small", messages=[{"role": "user", "content": "async"}]
        )
        assert r.status_code == 200 and r.headers["x-rsql-cache"] in ("miss", "hit")
        assert r.headers["x-request-id"] and "x-ratelimit-remaining-requests" in r.headers
        assert r.parse().choices[0].message.content == "Fake answer to: async"
        stream = await client.chat.completions.create(
            model="fake-small", messages=[{"role": "user", "content": "s"}], stream=True
        )
        assert (
            "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            == "Fake answer to: s"
        )
        await client.close()

    asyncio.run(go())


def test_openai_sdk_retries_a_429_per_retry_after(svc: Host) -> None:
    client = svc.client(api_key="compat-slow")
    client.chat.completions.create(model="fake-small", messages=[{"role": "user", "content": "1"}])
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="fake-small", messages=[{"role": "user", "content": "2"}]
        )
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    t0 = time.monotonic()
    # one retry: the answer comes only if the SDK waited the Retry-After (whole seconds, at
    # least 1) before it, not its own first backoff (at most 0.5 s, which meets the 429 again)
    patient = svc.client(api_key="compat-slow", max_retries=1)
    r = patient.chat.completions.create(
        model="fake-small", messages=[{"role": "user", "content": "3"}]
    )
    assert r.choices[0].message.content == "Fake answer to: 3"
    assert time.monotonic() - t0 >= 0.95


def test_langchain_chat_and_embeddings(host: Host, provider: FakeProvider) -> None:
    lc = pytest.importorskip("langchain_openai")
    chat = lc.ChatOpenAI(
        base_url=host.v1, api_key=host.token, model="fake-small", temperature=0.2, max_retries=0
    )
    assert chat.invoke("hello").content == "Fake answer to: hello"
    assert "".join(c.content for c in chat.stream("x y")) == "Fake answer to: x y"
    emb = lc.OpenAIEmbeddings(
        base_url=host.v1,
        api_key=host.token,
        model="fake-small",
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    vectors = emb.embed_documents(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) == 8
    assert emb.embed_query("one") == pytest.approx(vectors[0], abs=1e-6)
    sent = provider.received[0].body
    assert sent["messages"] == [{"role": "user", "content": "hello"}] and sent["temperature"] == 0.2
