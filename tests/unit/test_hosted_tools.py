"""Hosted tools governed, not refused (issue 54): a tool the provider runs (web search, file
search, code, ...) goes to an upstream that speaks the request's API when the admin offers it to
the caller, reserved at admission and charged by the call as the provider reports it; otherwise
it is dropped and named in ``x-rsql-dropped`` (the default, so Codex works unchanged) or refused
naming where the admin changes it. Over HTTP through the hub service's handlers, with an
OpenAI-compatible upstream, one that speaks the Responses API and an Anthropic one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado import httpclient

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine import ConfigError
from jupyter_server_ext.engine.apis.messages.native import call_price as anthropic
from jupyter_server_ext.engine.apis.responses.native import call_price as openai
from tests.helpers import upstreams_for
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

CLAUDE_KEY = "test-anthropic-key-hosted"
PRICE = {"input": 1.0, "output": 1.0}  # $ a million tokens
SEARCH = 0.01  # $ a web search, the admin's price
HOSTED = {
    "web_search": {"offered": True, "groups": ["staff"], "price_per_call": SEARCH, "max_calls": 3}
}
FUNCTION = {"type": "function", "name": "shell", "parameters": {"type": "object"}}
# Codex with its defaults: function tools and the web search tool
CODEX_TOOLS = [FUNCTION, {"type": "web_search", "external_web_access": True}]


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture
async def start(
    tmp_path: Path, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> AsyncIterator[Any]:
    speaks = {
        "models": {"native-small": "fake-small"},
        "prices": {"native-small": PRICE},
        "responses_api": True,
    }
    upstreams = [
        *upstreams_for(
            fresh_provider,
            a1={"prices": {"fake-small": PRICE}},
            a2={"prices": {"fake-small": PRICE}},
            b1=speaks,
        ),
        {
            "name": "claude",
            "provider": "anthropic",
            "base_url": claude.base_url,
            "api_key": CLAUDE_KEY,
            "models": {"claude-small": "claude-fake-small"},
            "prices": {"claude-small": PRICE},
        },
    ]
    async with proxy_starter(tmp_path, fresh_provider) as begin:

        async def go(**config: Any) -> Proxy:
            config.setdefault("hosted_tools", HOSTED)
            config.setdefault("user_daily_budget_usd", 5.0)
            return await begin(upstreams=upstreams, **config)

        yield go


async def post(
    p: Proxy, path: str, body: dict[str, Any], token: str = "tok-alice"
) -> tuple[int, dict[str, str], Any]:
    res = await p.client.fetch(
        p.base + path,
        method="POST",
        raise_error=False,
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert isinstance(res, httpclient.HTTPResponse)
    return res.code, dict(res.headers), json.loads(res.body) if res.body else {}


async def spent(p: Proxy, token: str) -> float:
    return float((await p.call("GET", "me", token))[1]["budget"]["spent_usd"])


def dropped(headers: dict[str, str]) -> list[str]:
    value = headers.get("X-Rsql-Dropped", "")
    return value.split(",") if value else []


async def test_codex_with_its_default_web_search_is_answered_and_the_tool_named_as_dropped(
    start: Any, fresh_provider: FakeProvider
) -> None:
    """On a chat upstream no hosted tool can run: Codex's web search is left out, said in the
    header, and the request is answered (a 400 before)."""
    p = await start()
    body = {"model": "fake-small", "input": "ls", "tools": CODEX_TOOLS}
    status, headers, answer = await post(p, "v1/responses", body, "tok-carol")
    assert status == 200, answer
    assert "web_search" in dropped(headers)
    sent = fresh_provider.received[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["shell"]


async def test_an_offered_search_runs_where_the_upstream_speaks_the_api_and_is_billed_by_the_call(
    start: Any, fresh_provider: FakeProvider
) -> None:
    p = await start()
    fresh_provider.script({"web_searches": 2, "text": "Found two pages."})
    before = await spent(p, "tok-carol")
    body = {"model": "native-small", "input": "news on duckdb", "tools": CODEX_TOOLS}
    status, headers, answer = await post(p, "v1/responses", body, "tok-carol")
    assert status == 200, answer
    assert dropped(headers) == []
    sent = fresh_provider.received[-1]
    assert sent.path == "responses" and sent.tool_calls == 2
    assert any(t["type"] == "web_search" for t in sent.body["tools"])
    assert sent.body["max_tool_calls"] == 3  # the admin's max_calls, at the provider
    tokens = answer["usage"]["input_tokens"] + answer["usage"]["output_tokens"]
    charged = await spent(p, "tok-carol") - before
    assert charged == pytest.approx(tokens * PRICE["input"] / 1e6 + 2 * SEARCH, abs=1e-6)


async def test_a_search_not_offered_to_the_caller_is_dropped_even_where_it_could_run(
    start: Any, fresh_provider: FakeProvider
) -> None:
    p = await start()
    body = {"model": "native-small", "input": "news", "tools": CODEX_TOOLS}
    status, headers, answer = await post(p, "v1/responses", body, "tok-alice")  # a student
    assert status == 200, answer
    assert "web_search" in dropped(headers)
    sent = fresh_provider.received[-1]
    assert [t["type"] for t in sent.body["tools"]] == ["function"] and sent.tool_calls == 0


async def test_an_anthropic_upstream_runs_an_offered_search_capped_and_billed_by_the_call(
    start: Any, claude: FakeAnthropic
) -> None:
    p = await start()
    # the model asks for more searches than the cap: three run, billed by the call
    claude.script({"web_searches": 5, "content": [{"type": "text", "text": "Done."}]})
    before = await spent(p, "tok-carol")
    body = {
        "model": "claude-small",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "search the news"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
    }
    status, _, answer = await post(p, "v1/messages", body, "tok-carol")
    assert status == 200, answer
    sent = claude.received[-1]
    assert sent.body["tools"][0]["max_uses"] == 3 and sent.tool_calls == 3  # capped at max_calls
    usage = answer["usage"]
    assert usage["server_tool_use"]["web_search_requests"] == 3
    tokens = usage["input_tokens"] + usage["output_tokens"]
    charged = await spent(p, "tok-carol") - before
    assert charged == pytest.approx(tokens * PRICE["input"] / 1e6 + 3 * SEARCH, abs=1e-6)
    # fewer than reserved: charged the two the provider ran (its usage says), not the three
    claude.script({"web_searches": 2, "content": [{"type": "text", "text": "Two."}]})
    before = await spent(p, "tok-carol")
    status, _, answer = await post(p, "v1/messages", body, "tok-carol")
    assert status == 200, answer
    usage = answer["usage"]
    assert (
        claude.received[-1].tool_calls == 2 and usage["server_tool_use"]["web_search_requests"] == 2
    )
    tokens = usage["input_tokens"] + usage["output_tokens"]
    charged = await spent(p, "tok-carol") - before
    assert charged == pytest.approx(tokens * PRICE["input"] / 1e6 + 2 * SEARCH, abs=1e-6)


async def test_the_searches_are_reserved_so_a_budget_cannot_be_overspent(start: Any) -> None:
    # three searches at $0.01 may cost more than carol's whole $0.02 day: the calls alone, with
    # no search results reserved as prompt (else those, 3 x 8,000 tokens, would refuse it too)
    p = await start(
        hosted_tools={"web_search": {**HOSTED["web_search"], "content_tokens": 0}},
        limit_overrides={"user:carol": {"user_daily_budget_usd": 0.02}},
    )
    body = {"model": "native-small", "input": "news", "tools": CODEX_TOOLS}
    status, _, answer = await post(p, "v1/responses", body, "tok-carol")
    assert status == 400 and answer["error"]["code"] == "over_budget", answer
    status, _, answer = await post(p, "v1/responses", {**body, "tools": [FUNCTION]}, "tok-carol")
    assert status == 200, answer


async def test_an_admin_may_refuse_a_hosted_tool_that_is_not_run_naming_where_to_change_it(
    start: Any, fresh_provider: FakeProvider
) -> None:
    p = await start(hosted_tools={**HOSTED, "file_search": {"if_not_run": "refuse"}})
    body = {"model": "fake-small", "input": "x", "tools": [FUNCTION, {"type": "file_search"}]}
    status, _, answer = await post(p, "v1/responses", body, "tok-carol")
    assert status == 400, answer
    err = answer["error"]
    assert err["code"] == "hosted_tool_not_run" and err["param"] == "tools[1]"
    assert "c.RSQLProxy.hosted_tools['file_search']" in err["message"]
    assert fresh_provider.received == []


def test_a_misspelled_kind_or_field_stops_start_up_naming_the_nearest(
    fresh_provider: FakeProvider,
) -> None:
    for bad, says in (
        ({"web_serach": {"offered": True}}, "did you mean 'web_search'"),
        ({"web_search": {"ofered": True}}, "did you mean 'offered'"),
        ({"web_search": {"if_not_run": "ignore"}}, '"drop" or "refuse"'),
        ({"web_search": {"price_per_call": -1}}, "price_per_call"),
    ):
        with pytest.raises(ConfigError, match=says):
            RSQLProxy(upstreams=upstreams_for(fresh_provider), hosted_tools=bad).engine_settings()


def test_a_call_is_charged_its_providers_own_price_only_on_an_upstream_of_its_kind() -> None:
    """What each API's provider bills a web search call, where less than the kind's default
    ($0.025): OpenAI's web_search tool $0.01 on every model, its preview $0.01 on the
    reasoning models only (not gpt-5's chat snapshots), a preview beside the tool in one
    request at the default (a call does not say which it was); Azure publishes its own prices;
    Anthropic's search $0.01 on any model."""
    search = {"tools": [{"type": "web_search"}]}
    preview = {"tools": [{"type": "web_search_preview_2025_03_11"}]}
    both = {"tools": [{"type": "web_search"}, {"type": "web_search_preview"}]}
    assert openai("web_search", "openai", "gpt-4.1", search) == 0.01
    assert openai("web_search", "openai", "gpt-4.1", preview) is None
    assert openai("web_search", "openai", "gpt-5-chat-latest", preview) is None
    assert openai("web_search", "openai", "o4-mini", preview) == 0.01
    assert openai("web_search", "openai", "openai/gpt-5.1", preview) == 0.01
    assert openai("web_search", "openai", "gpt-50", preview) is None
    assert openai("web_search", "openai", "o3", both) == 0.01  # a reasoning model: both $0.01
    assert openai("web_search", "openai", "gpt-4o", both) is None
    assert openai("web_search", "azure", "gpt-5", search) is None
    assert openai("file_search", "openai", "gpt-5", {"tools": [{"type": "file_search"}]}) is None
    assert anthropic("web_search", "anthropic", "claude-sonnet-4-5", {}) == 0.01
    assert anthropic("code_interpreter", "anthropic", "claude-sonnet-4-5", {}) is None
