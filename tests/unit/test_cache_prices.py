"""Issue 74, must-have 2: a prompt cache billed as the provider bills it. A read from the cache at
the model's read rate (Anthropic 0.1x input; OpenAI and the Responses API their cached-input
price), a write at the rate of its length (Anthropic 1.25x for 5 minutes, 2x for an hour, from
the answer's ``cache_creation`` breakdown, else from the request's ``ttl``), on every API and
both ways of translation; the usage row keeps what was read and written and what it would have
cost without the cache. Over HTTP, through the hub service's handlers, in front of loopback
providers that cache per account as theirs do."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

CLAUDE_KEY = "test-anthropic-key-cache-prices"
# Claude Sonnet's rates: $3 in, $15 out, a read $0.30, a 5-minute write $3.75, an hour's $6
SONNET = {
    "input": 3.0,
    "output": 15.0,
    "cache_read": 0.3,
    "cache_write_5m": 3.75,
    "cache_write": 6.0,
}
# an OpenAI model's: cached input at a tenth
MINI = {"input": 1.0, "output": 2.0, "cache_read": 0.1}
LONG = "The warehouse holds orders, customers and products; " * 120  # ~1,600 tokens


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


def claude_upstream(claude: FakeAnthropic, price: dict[str, float]) -> dict[str, Any]:
    """The Anthropic upstream serving claude-small at `price`."""
    return {
        "name": "claude",
        "provider": "anthropic",
        "base_url": claude.base_url,
        "api_key": CLAUDE_KEY,
        "models": {"claude-small": "claude-fake-small"},
        "prices": {"claude-small": price},
    }


@pytest.fixture
async def proxy(
    tmp_path: Path, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> AsyncIterator[Proxy]:
    native = {"models": {"native-small": "fake-small"}, "prices": {"native-small": MINI}}
    upstreams = [
        *upstreams_for(
            fresh_provider,
            a1={"prices": {"fake-small": MINI}},
            a2={"prices": {"fake-small": MINI}},
            b1={**native, "responses_api": True},
        ),
        claude_upstream(claude, SONNET),
    ]
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield await start(upstreams=upstreams, user_daily_budget_usd=50.0)


async def charged(p: Proxy, path: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """What one request cost its caller (the answer's X-RSQL-Cost-USD, to the hundred-millionth
    of a dollar: GET me rounds to the millionth), and its answer."""
    res = await p.client.fetch(
        p.base + path,
        method="POST",
        raise_error=False,
        body=json.dumps(body),
        headers={"Authorization": "Bearer tok-carol"},
    )
    assert res.code == 200, res.body
    return float(res.headers["X-RSQL-Cost-USD"]), json.loads(res.body)


def anthropic_bill(usage: dict[str, Any]) -> float:
    """What Anthropic bills for a Message's usage at Sonnet's rates."""
    made = usage.get("cache_creation") or {}
    return (
        usage["input_tokens"] * SONNET["input"]
        + made.get("ephemeral_5m_input_tokens", 0) * SONNET["cache_write_5m"]
        + made.get("ephemeral_1h_input_tokens", 0) * SONNET["cache_write"]
        + usage.get("cache_read_input_tokens", 0) * SONNET["cache_read"]
        + usage["output_tokens"] * SONNET["output"]
    ) / 1e6


def openai_bill(prompt: int, cached: int, completion: int) -> float:
    return ((prompt - cached) * MINI["input"] + cached * MINI["cache_read"]) / 1e6 + (
        completion * MINI["output"] / 1e6
    )


def messages_body(ttl: str | None = None, question: str = "Which table holds orders?") -> Any:
    mark: dict[str, Any] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return {
        "model": "claude-small",
        "max_tokens": 50,
        "system": [{"type": "text", "text": LONG, "cache_control": mark}],
        "messages": [{"role": "user", "content": question}],
    }


@pytest.mark.parametrize("ttl", [None, "1h"], ids=["five-minutes", "one-hour"])
async def test_an_anthropic_cache_write_then_read_is_charged_what_anthropic_bills(
    proxy: Proxy, claude: FakeAnthropic, ttl: str | None
) -> None:
    """Reads were charged at the input price (10x Anthropic's) and every write at the hour's
    rate: a 15-turn session was charged 4.4x its bill. Each at its own rate now."""
    first, answer = await charged(proxy, "v1/messages", messages_body(ttl))
    usage = answer["usage"]
    assert usage["cache_creation_input_tokens"] > 1000 and first == pytest.approx(
        anthropic_bill(usage), abs=1e-7
    )
    second, answer = await charged(proxy, "v1/messages", messages_body(ttl, "And customers?"))
    usage = answer["usage"]
    assert usage["cache_read_input_tokens"] > 1000 and second == pytest.approx(
        anthropic_bill(usage), abs=1e-7
    )
    assert second < first / 3  # what the cache is for
    await proxy.engine.usage.flush()
    _, rows = await proxy.call("GET", "admin/users/carol/activity?limit=2", "tok-admin")
    newest, oldest = rows["activity"]
    assert (oldest["cache_write_tokens"], newest["cache_read_tokens"]) == (
        claude.received[-2].cache_write,
        claude.received[-1].cache_read,
    )
    # without the cache the second would have cost its whole prompt at the input price
    uncached = (usage["input_tokens"] + usage["cache_read_input_tokens"]) * 3.0 / 1e6 + usage[
        "output_tokens"
    ] * 15.0 / 1e6
    assert newest["uncached_usd"] == pytest.approx(uncached, abs=1e-7)


async def test_chat_completions_to_an_anthropic_upstream_are_charged_its_cache_rates(
    proxy: Proxy, claude: FakeAnthropic
) -> None:
    """The translated direction: a chat request's cache marks reach Anthropic and its usage,
    the write's length included, comes back in the chat usage and is settled from it."""

    def body(question: str) -> dict[str, Any]:
        system = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
        return {
            "model": "claude-small",
            "max_tokens": 50,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
        }

    for question in ("Which table holds orders?", "And customers?"):
        cost, answer = await charged(proxy, "v1/chat/completions", body(question))
        sent = claude.received[-1]
        usage = answer["usage"]
        assert usage["prompt_tokens_details"]["cached_tokens"] == sent.cache_read
        fresh = usage["prompt_tokens"] - sent.cache_write - sent.cache_read
        bill = (
            fresh * 3.0
            + sent.cache_write * 3.75
            + sent.cache_read * 0.3
            + usage["completion_tokens"] * 15.0
        ) / 1e6
        assert cost == pytest.approx(bill, abs=1e-7)
    assert claude.received[-1].cache_read > 1000


def chat_body(model: str, question: str) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 20,
        "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": question}],
    }


async def test_openais_cached_input_is_charged_at_its_price_on_chat_completions(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    first, _ = await charged(proxy, "v1/chat/completions", chat_body("fake-small", "orders?"))
    cost, answer = await charged(proxy, "v1/chat/completions", chat_body("fake-small", "who?"))
    cached = answer["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and cached == fresh_provider.received[-1].cached_tokens
    usage = answer["usage"]
    assert cost == pytest.approx(
        openai_bill(usage["prompt_tokens"], cached, usage["completion_tokens"]), abs=1e-8
    )
    assert cost < first / 2


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("v1/responses", "native-small"),  # sent as it came
        ("v1/responses", "fake-small"),  # translated to chat completions and back
        ("v1/messages", "fake-small"),  # Messages onto an OpenAI upstream, and back
    ],
    ids=["responses-as-sent", "responses-translated", "messages-translated"],
)
async def test_cached_input_is_charged_at_its_price_on_every_api(
    proxy: Proxy, fresh_provider: FakeProvider, path: str, model: str
) -> None:
    def body(question: str) -> dict[str, Any]:
        if path == "v1/responses":
            return {
                "model": model,
                "max_output_tokens": 20,
                "instructions": LONG,
                "input": question,
            }
        return {
            "model": model,
            "max_tokens": 20,
            "system": LONG,
            "messages": [{"role": "user", "content": question}],
        }

    await charged(proxy, path, body("orders?"))
    cost, answer = await charged(proxy, path, body("who?"))
    cached = fresh_provider.received[-1].cached_tokens
    assert cached >= 1024
    usage = answer["usage"]
    if path == "v1/responses":
        prompt, completion = usage["input_tokens"], usage["output_tokens"]
        assert usage["input_tokens_details"]["cached_tokens"] == cached
    else:  # Anthropic's input_tokens leave the cache reads out
        prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
        completion = usage["output_tokens"]
        assert usage["cache_read_input_tokens"] == cached
    assert cost == pytest.approx(openai_bill(prompt, cached, completion), abs=1e-8)


async def test_a_price_without_cache_rates_charges_a_read_at_the_input_price(
    tmp_path: Path, fresh_provider: FakeProvider
) -> None:
    """An admin's price that names no read rate: the dearest a read can be (the input price),
    so a cache never makes a request cheaper than its provider could bill it."""
    plain = {"input": 1.0, "output": 2.0}
    upstreams = upstreams_for(
        fresh_provider, **{a: {"prices": {"fake-small": plain}} for a in ("a1", "a2", "b1")}
    )
    async with proxy_starter(tmp_path, fresh_provider) as start:
        p = await start(upstreams=upstreams, user_daily_budget_usd=50.0)
        await charged(p, "v1/chat/completions", chat_body("fake-small", "orders?"))
        cost, answer = await charged(p, "v1/chat/completions", chat_body("fake-small", "who?"))
    usage = answer["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= 1024
    assert cost == pytest.approx(
        (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6, abs=1e-8
    )


@pytest.mark.parametrize("ttl", [None, "1h"], ids=["five-minutes", "one-hour"])
async def test_an_anthropic_price_without_cache_rates_charges_what_anthropic_bills(
    tmp_path: Path, fresh_provider: FakeProvider, claude: FakeAnthropic, ttl: str | None
) -> None:
    """An admin's price for a Claude model that names no cache rate (the basic form, input and
    output): a write was charged at the input price, where Anthropic bills 1.25x for 5 minutes
    and 2x for an hour (a 100K-token hour's write on Sonnet: $0.30 charged, $0.60 billed), and a
    read at the input price, ten times its bill. An Anthropic upstream's price takes
    Anthropic's multipliers for the rates it leaves out; an OpenAI-compatible upstream's stay at
    the input price (its provider's rates vary by model, and it bills no write)."""
    from jupyter_server_ext.config.proxy import RSQLProxy

    plain = {"input": 3.0, "output": 15.0}
    async with proxy_starter(tmp_path, fresh_provider) as start:
        p = await start(
            upstreams=[claude_upstream(claude, plain)],
            default_model="claude-small",
            user_daily_budget_usd=50.0,
        )
        first, answer = await charged(p, "v1/messages", messages_body(ttl))
        written = answer["usage"]
        second, answer = await charged(p, "v1/messages", messages_body(ttl, "And customers?"))
        read = answer["usage"]
    assert written["cache_creation_input_tokens"] > 1000 and read["cache_read_input_tokens"] > 1000
    # SONNET's cache rates: what Anthropic bills
    assert first == pytest.approx(anthropic_bill(written), abs=1e-7)
    assert second == pytest.approx(anthropic_bill(read), abs=1e-7)
    # the same price on an OpenAI-compatible upstream: no cache rate of its own
    settings = RSQLProxy(
        upstreams=upstreams_for(fresh_provider, a1={"prices": {"fake-small": plain}})
    ).engine_settings()
    price = next(s for s in settings.upstreams if s.name == "a1").prices["fake-small"]
    assert (price.cache_read, price.cache_write, price.cache_write_5m) == (None, None, None)


def test_a_cache_rate_above_input_or_mistyped_stops_start_up(fresh_provider: FakeProvider) -> None:
    from jupyter_server_ext.config.proxy import RSQLProxy
    from jupyter_server_ext.engine import ConfigError

    for bad, says in (
        ({"input": 1, "output": 1, "cache_read": 2}, "'cache_read' (2.0) cannot be above 'input'"),
        ({"input": 1, "output": 1, "cache_reed": 0.1}, "cache_reed"),
    ):
        upstreams = upstreams_for(fresh_provider, a1={"prices": {"fake-small": bad}})
        with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
            RSQLProxy(upstreams=upstreams).engine_settings()


async def test_what_the_cache_saved_is_shown_to_the_user_and_the_admin(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    """GET me (what %ask_status shows), the admin's stats by model and user, and the notebooks'
    spend: the share of prompts read from a cache and the dollars that saved."""
    headers = {"Authorization": "Bearer tok-carol", "X-RSQL-Notebook": "course/week1.ipynb"}
    for question in ("orders?", "who?", "where?"):
        res = await proxy.client.fetch(
            proxy.base + "v1/chat/completions",
            method="POST",
            body=json.dumps(chat_body("fake-small", question)),
            headers=headers,
        )
        assert res.code == 200
    read = sum(r.cached_tokens for r in fresh_provider.received)
    assert read >= 2 * 1024
    await proxy.engine.usage.flush()
    me = (await proxy.call("GET", "me", "tok-carol"))[1]["prompt_cache"]
    prompt = sum(r.billed_tokens for r in fresh_provider.received) - 3 * 10  # less the answers
    assert me["read_tokens"] == read and 0.4 < me["hit_ratio"] < 1
    # each read at $0.10 a million where the input price is $1.00
    assert me["saved_usd"] == pytest.approx(read * (1.0 - 0.1) / 1e6, abs=1e-6)
    assert [m["model"] for m in me["by_model"]] == ["fake-small"]
    assert prompt > read
    _, stats = await proxy.call("GET", "admin/stats?hours=1", "tok-admin")
    assert stats["prompt_cache"]["read_tokens"] == read
    by_user = {u["user"]: u["prompt_cache"] for u in stats["by_user"]}
    assert by_user["carol"]["saved_usd"] == me["saved_usd"]
    _, books = await proxy.call("GET", "admin/notebooks", "tok-admin")
    (book,) = books["notebooks"]
    assert book["prompt_cache"]["read_tokens"] == read


def test_status_and_cost_say_what_the_prompt_cache_read_and_saved() -> None:
    from rsql_magic import render

    cache = {
        "read_tokens": 3000,
        "hit_ratio": 0.6,
        "saved_usd": 0.0027,
        "by_model": [
            {"model": "gpt-5", "read_tokens": 2000, "hit_ratio": 0.8, "saved_usd": 0.002},
            {
                "model": "claude-sonnet-4-5",
                "read_tokens": 1000,
                "hit_ratio": 0.4,
                "saved_usd": 0.0007,
            },
        ],
    }
    text = "\n".join(render.me_markdown({"user": "carol", "prompt_cache": cache}))
    assert "**prompt cache today**: 60% of prompt tokens read from it, $0.0027 saved" in text
    assert "gpt-5: 80% of prompt tokens read from it, $0.0020 saved" in text
    none = "\n".join(render.me_markdown({"user": "carol", "prompt_cache": {"read_tokens": 0}}))
    assert "nothing read from a provider's cache" in none
    day = {
        "requests": 3,
        "prompt_tokens": 4800,
        "completion_tokens": 30,
        "cost_usd": 0.002,
        "prompt_cache": {"read_tokens": 3000, "hit_ratio": 0.625, "saved_usd": 0.0027},
    }
    md = render.cost_markdown({"notebook": "w.ipynb", "today": day, "week": day}, "w.ipynb")
    assert "| from the prompt cache | saved |" in md and "| 62% | $0.0027 |" in md
