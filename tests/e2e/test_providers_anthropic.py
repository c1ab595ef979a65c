"""An Anthropic upstream through the proxy, as a caller with the official ``openai`` SDK sees it.

The provider side is ``tests/helpers/fake_anthropic.py``, which follows Anthropic's published
reference field by field: the Messages API (https://docs.anthropic.com/en/api/messages),
streaming (https://docs.anthropic.com/en/docs/build-with-claude/streaming), errors
(https://docs.anthropic.com/en/api/errors), rate limits
(https://docs.anthropic.com/en/api/rate-limits) and prompt caching
(https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).

A caller names the admin's public model (``claude-small``) and gets OpenAI's answers, streams,
tool calls, errors and usage; what Anthropic bills (prompt-cache writes included) is what the
caller is charged; a 529 or a 429 falls over to another key, and a request Anthropic cannot
express goes to an upstream of another kind serving the same model, or is refused naming the
field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.helpers.fake_anthropic import FakeAnthropic, KeyPolicy
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.fake_provider import KeyPolicy as OpenAIKey
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

KEY_A = "test-anthropic-key-a"
KEY_B = "test-anthropic-key-b"
OPENAI_KEY = "test-openai-key-claude-small"
USERS = {"an-alice": {"name": "alice"}}
# $1 input, $5 output, $2 a cache write, per million tokens
PRICE = {"input": 1.0, "output": 5.0, "cache_write": 2.0}
TOOL = {
    "type": "function",
    "function": {
        "name": "row_count",
        "description": "rows in a table",
        "parameters": {
            "type": "object",
            "properties": {"table": {"type": "string"}},
            "required": ["table"],
        },
    },
}


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    # one organization: both keys share its prompt cache
    fa = FakeAnthropic(
        {KEY_A: KeyPolicy("claude-a", account="org"), KEY_B: KeyPolicy("claude-b", account="org")}
    )
    fa.start()
    yield fa
    fa.stop()


@pytest.fixture(scope="module")
def other_kind() -> Iterator[FakeProvider]:
    fp = FakeProvider(
        {OPENAI_KEY: OpenAIKey("openai-small")}, model_ids=["claude-small-elsewhere"]
    ).start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def proxy(
    anthropic: FakeAnthropic, other_kind: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyService]:
    upstreams = [
        {
            "name": alias,
            "provider": "anthropic",
            "base_url": anthropic.base_url,
            "api_key": key,
            "account": alias,
            # claude-fo / claude-rl: names of the failover test's own, so its cooldowns stay there
            "models": {
                "claude-small": "claude-fake-small",
                "claude-only": "claude-fake-large",
                "claude-fo": "claude-fake-small",
                "claude-rl": "claude-fake-small",
            },
            "prices": {m: PRICE for m in ("claude-small", "claude-only", "claude-fo", "claude-rl")},
        }
        for alias, key in (("claude-a", KEY_A), ("claude-b", KEY_B))
    ] + [
        # the same public model from an OpenAI-compatible server (another kind)
        {
            "name": "openai-small",
            "base_url": other_kind.base_url,
            "api_key": OPENAI_KEY,
            "models": {"claude-small": "claude-small-elsewhere"},
            "prices": {"claude-small": PRICE},
        },
    ]
    svc = start_service(
        tmp_path_factory.mktemp("anthropic"),
        {
            "upstreams": upstreams,
            "default_model": "claude-only",
            "max_wait_seconds": 1.0,
            "user_daily_budget_usd": 5.0,
            "health_check_seconds": 0.0,
        },
        static_users=USERS,
    )
    yield svc
    svc.stop(9)


def client(proxy: ProxyService) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "v1", api_key="an-alice", max_retries=0)


def test_an_answer_and_its_stream_say_the_same_in_openais_form(
    proxy: ProxyService, anthropic: FakeAnthropic
) -> None:
    anthropic.reset()
    messages = [
        {"role": "system", "content": "You answer about SQL."},
        {"role": "user", "content": "How do I count rows?"},
    ]
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="claude-only", messages=messages, max_tokens=50
    )
    answer = raw.parse()
    sent = anthropic.received[-1]
    # the native request: system at the top, the provider's model id, its version header
    assert sent.body["system"] in (
        "You answer about SQL.",
        [{"type": "text", "text": "You answer about SQL."}],
    )
    assert sent.body["model"] == "claude-fake-large" and sent.body["max_tokens"] == 50
    assert sent.headers.get("anthropic-version") == "2023-06-01"
    assert answer.object == "chat.completion" and answer.choices[0].finish_reason == "stop"
    text = answer.choices[0].message.content
    assert "How do I count rows?" in text
    assert raw.headers["llm_provider-request-id"].startswith("req_")
    stream = client(proxy).chat.completions.create(
        model="claude-only",
        messages=messages,
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == answer.usage.completion_tokens


def test_a_tool_call_round_trips(proxy: ProxyService, anthropic: FakeAnthropic) -> None:
    anthropic.reset()
    anthropic.script(
        {
            "content": [{"type": "tool_use", "name": "row_count", "input": {"table": "sales"}}],
            "stop_reason": "tool_use",
        }
    )
    first = client(proxy).chat.completions.create(
        model="claude-only",
        messages=[{"role": "user", "content": "rows in sales?"}],
        tools=[TOOL],
        max_tokens=50,
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "row_count" and json.loads(call.function.arguments) == {
        "table": "sales"
    }
    second = client(proxy).chat.completions.create(
        model="claude-only",
        tools=[TOOL],
        max_tokens=50,
        messages=[
            {"role": "user", "content": "rows in sales?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "1204"},
        ],
    )
    assert second.choices[0].message.content
    sent = anthropic.received[-1].body["messages"]
    assert (
        sent[1]["content"][0]["type"] == "tool_use"
        and sent[2]["content"][0]["type"] == "tool_result"
    )
    assert sent[2]["content"][0]["tool_use_id"] == call.id


def test_a_prompt_cache_write_and_read_are_charged_what_anthropic_bills(
    proxy: ProxyService,
    anthropic: FakeAnthropic,
) -> None:
    anthropic.reset()
    long_doc = "The sales table has columns id, region, amount and day. " * 40
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": long_doc, "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "user", "content": "Which column holds money?"},
    ]
    costs = []
    for _ in range(2):
        raw = client(proxy).chat.completions.with_raw_response.create(
            model="claude-only", messages=messages, max_tokens=20
        )
        answer, rec = raw.parse(), anthropic.received[-1]
        usage = answer.usage.model_dump()
        assert answer.usage.prompt_tokens == rec.billed_tokens - answer.usage.completion_tokens
        # a 5-minute write (no ttl) at Anthropic's 1.25x input and a read at its 0.1x, as the
        # price names only an hour's write
        fresh = answer.usage.prompt_tokens - rec.cache_write - rec.cache_read
        expected = (
            fresh * 1.0
            + rec.cache_write * 1.25
            + rec.cache_read * 0.1
            + answer.usage.completion_tokens * 5.0
        ) / 1e6
        assert float(raw.headers["x-rsql-cost-usd"]) == pytest.approx(expected, rel=1e-6)
        costs.append((rec.cache_write, rec.cache_read, usage.get("cache_creation_input_tokens")))
    # the first request wrote the cache, the second read it, and the caller saw both counts
    (w1, r1, c1), (w2, r2, c2) = costs
    assert w1 > 0 and r1 == 0 and c1 == w1
    assert w2 == 0 and r2 == w1 and c2 == 0


def test_what_anthropic_cannot_express_goes_to_another_kind_or_is_refused_naming_the_field(
    proxy: ProxyService,
    anthropic: FakeAnthropic,
    other_kind: FakeProvider,
) -> None:
    anthropic.reset()
    other_kind.reset()
    # n=2 on a model that an OpenAI-compatible server serves too: it answers, unchanged
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="claude-small",
        messages=[{"role": "user", "content": "two ways?"}],
        n=2,
        max_tokens=10,
    )
    assert raw.headers["x-rsql-upstream"] == "openai-small"
    assert len(raw.parse().choices) == 2
    assert (
        other_kind.received[-1].body["model"] == "claude-small-elsewhere"
        and other_kind.received[-1].body["n"] == 2
    )
    # on a model only Anthropic serves: a 400 naming the field, and nothing was sent
    with pytest.raises(openai.BadRequestError) as err:
        client(proxy).chat.completions.create(
            model="claude-only", messages=[{"role": "user", "content": "x"}], n=2
        )
    body = err.value.body
    assert (
        isinstance(body, dict)
        and body["param"] == "n"
        and body["code"] == "unsupported_by_provider"
    )
    assert not anthropic.received


def test_anthropic_errors_come_back_in_openai_form_without_the_key(
    proxy: ProxyService, anthropic: FakeAnthropic
) -> None:
    anthropic.reset()
    with pytest.raises(openai.BadRequestError) as err:
        client(proxy).chat.completions.create(
            model="claude-only", messages=[{"role": "user", "content": "x"}], temperature=1.5
        )
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "temperature"
    anthropic.set_fault("claude-a", "status", status=400)
    anthropic.set_fault("claude-b", "status", status=400)
    with pytest.raises(openai.BadRequestError) as err:
        client(proxy).chat.completions.create(
            model="claude-only", messages=[{"role": "user", "content": "y"}]
        )
    text = json.dumps(err.value.body)
    assert "invalid_request_error" in text and KEY_A not in text and KEY_B not in text
    anthropic.reset()
    # an error whose text quotes the key it was sent (some providers' do): passed on, the key
    # taken out of it
    anthropic.script(
        {
            "__status__": 400,
            "error": {
                "type": "invalid_request_error",
                "message": "messages: bad request for x-api-key {key}",
            },
        }
    )
    with pytest.raises(openai.BadRequestError) as err:
        client(proxy).chat.completions.create(
            model="claude-only", messages=[{"role": "user", "content": "z"}]
        )
    text = json.dumps(err.value.body)
    assert "bad request for x-api-key" in text, text  # the provider's words came through
    assert KEY_A not in text and KEY_B not in text, text
    anthropic.reset()
    # embeddings: no upstream of this model offers them
    with pytest.raises(openai.NotFoundError):
        client(proxy).embeddings.create(model="claude-only", input="x")


def test_a_rate_limited_key_and_an_overloaded_one_fall_over(
    proxy: ProxyService, anthropic: FakeAnthropic
) -> None:
    """Last in this module: the overloaded key's breaker stays open after it."""
    anthropic.reset()
    anthropic.set_fault("claude-b", "status", status=429, count=1)
    for i in range(3):  # whichever key each goes to first, every one is answered
        assert (
            client(proxy)
            .chat.completions.create(
                model="claude-rl", messages=[{"role": "user", "content": f"r{i}"}], max_tokens=10
            )
            .choices
        )
    assert anthropic.count_by_alias(429) == {"claude-b": 1}
    anthropic.reset()
    # 529 overloaded_error: a server error, failed over
    anthropic.set_fault("claude-a", "overloaded")
    served = [
        client(proxy)
        .chat.completions.with_raw_response.create(
            model="claude-fo", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=10
        )
        .headers["x-rsql-upstream"]
        for i in range(3)
    ]
    assert set(served) == {"claude-b"}
    assert anthropic.count_by_alias(529).get("claude-a", 0) >= 1
