"""Issue 73: what a provider bills that the proxy did not reserve or charge. Each test is an
attack a hub user can make over HTTP (the hub service's handlers on a loopback port) against
loopback providers that bill as theirs do: documents the provider fetches by URL or file id
(their pages), what web search and fetch pull into the prompt, the Responses API's one cap on
every built-in tool, a code container's size, Anthropic's code execution that its usage does not
count, a hosted tool inside a namespace, and hosted tools on chat completions (Groq runs them
there). Before the fix each let a user spend past their day's budget or reach a tool the admin
had not offered; the note of issue 73 gives the figures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado import httpclient

from tests.helpers import upstreams_for
from tests.helpers.fake_anthropic import PAGE_TOKENS, FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

CLAUDE_KEY = "test-anthropic-key-billing"
CHEAP = {"input": 1.0, "output": 1.0}  # $ a million tokens
DEAR = {"input": 3.0, "output": 15.0}  # Claude Sonnet's prices
PDF = "https://example.com/report.pdf"
FUNCTION = {"type": "function", "name": "shell", "parameters": {"type": "object"}}
STAFF = ["staff"]
# public name -> OpenAI's model behind it: its web_search tool is billed $0.01 a call on every
# model, its web_search_preview $0.01 on the reasoning models (gpt-5-mini) and $0.025 on the
# others (gpt-4.1, and gpt-5's chat snapshot)
SEARCH_MODELS = {
    "research-new": "gpt-5-mini",
    "research-old": "gpt-4.1",
    "research-chat": "gpt-5-chat-latest",
}


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture
async def start(
    tmp_path: Path, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> AsyncIterator[Any]:
    """`start(budget=..., **config)`: the service in front of a chat-only upstream (a1, a2:
    fake-small), one that speaks the Responses API (b1: native-small) and an Anthropic one
    (claude-small); carol (staff) has `budget` dollars a day, everyone else $5."""
    native = {
        # public names for OpenAI models whose web search OpenAI bills apart (SEARCH_MODELS)
        "models": {"native-small": "fake-small", **SEARCH_MODELS},
        "prices": {m: DEAR for m in ("native-small", *SEARCH_MODELS)},
    }
    upstreams = [
        *upstreams_for(
            fresh_provider,
            a1={"prices": {"fake-small": CHEAP}},
            a2={"prices": {"fake-small": CHEAP}},
            b1={**native, "responses_api": True},
        ),
        {
            "name": "claude",
            "provider": "anthropic",
            "base_url": claude.base_url,
            "api_key": CLAUDE_KEY,
            "models": {"claude-small": "claude-fake-small"},
            "prices": {"claude-small": DEAR},
        },
    ]
    async with proxy_starter(tmp_path, fresh_provider) as begin:

        async def go(budget: float = 5.0, claude_window: int = 0, **config: Any) -> Proxy:
            config.setdefault("user_daily_budget_usd", 5.0)
            config.setdefault("limit_overrides", {"user:carol": {"user_daily_budget_usd": budget}})
            ups = upstreams
            if claude_window:  # the Anthropic upstream says claude-small's window holds this
                windows = {"context_windows": {"claude-small": claude_window}}
                ups = [u | windows if u["name"] == "claude" else u for u in upstreams]
            return await begin(upstreams=ups, **config)

        yield go


async def send(
    p: Proxy, path: str, body: Any, token: str = "tok-carol", headers: dict[str, str] | None = None
) -> httpclient.HTTPResponse:
    """POST `body` as `token`'s: the response as it came (a stream's events unread)."""
    res = await p.client.fetch(
        p.base + path,
        method="POST",
        raise_error=False,
        body=body if isinstance(body, bytes) else json.dumps(body),
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    )
    assert isinstance(res, httpclient.HTTPResponse)
    return res


async def post(
    p: Proxy, path: str, body: Any, token: str = "tok-carol", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    res = await send(p, path, body, token, headers)
    return res.code, dict(res.headers), json.loads(res.body) if res.body else {}


async def spent(p: Proxy, token: str = "tok-carol") -> float:
    return float((await p.call("GET", "me", token))[1]["budget"]["spent_usd"])


def dropped(headers: dict[str, str]) -> list[str]:
    value = headers.get("X-Rsql-Dropped", "")
    return value.split(",") if value else []


def over_budget(status: int, answer: Any) -> bool:
    """A request refused before it reached a provider for what it may cost (in either API's
    error shape)."""
    error = answer.get("error") or {}
    return status in (400, 429) and "may cost up to" in str(error.get("message"))


def dollars(tokens: int, price: dict[str, float] = DEAR, side: str = "input") -> float:
    return tokens * price[side] / 1e6


# -- documents the provider fetches ----------------------------------------------------------


def messages_body(*blocks: dict[str, Any], max_tokens: int = 100) -> dict[str, Any]:
    content = [*blocks, {"type": "text", "text": "Sum it up."}]
    return {
        "model": "claude-small",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
    }


def by_url(url: str = PDF) -> dict[str, Any]:
    return {"type": "document", "source": {"type": "url", "url": url}}


async def test_a_document_anthropic_fetches_by_url_is_reserved_as_an_unseen_pdf(
    start: Any, claude: FakeAnthropic
) -> None:
    """A 60-page PDF by URL bills 180,000 input tokens ($0.54); its JSON is some 20 tokens. A
    $0.50 day admitted it and was charged $0.54 before; it is reserved as the 100 pages a
    provider reads of one PDF now, refused before it reaches Anthropic."""
    claude.documents[PDF] = 60
    p = await start(budget=0.50)
    status, _, answer = await post(p, "v1/messages", messages_body(by_url()))
    assert over_budget(status, answer), answer
    assert claude.received == [] and await spent(p) == 0.0
    # where the day holds it, it runs, and is charged what Anthropic billed for its pages
    p = await start(budget=5.0)
    status, _, answer = await post(p, "v1/messages", messages_body(by_url()))
    assert status == 200, answer
    assert claude.received[-1].fetched_pages == 60
    usage = answer["usage"]
    assert usage["input_tokens"] >= 60 * PAGE_TOKENS
    billed = dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")
    assert await spent(p) == pytest.approx(billed, abs=1e-6)


async def test_where_the_window_holds_a_million_tokens_a_fetched_pdf_is_reserved_at_600_pages(
    start: Any, claude: FakeAnthropic
) -> None:
    """Anthropic reads 600 pages of PDFs a request where its window holds a million tokens, 100
    elsewhere: a PDF by URL is reserved at 100 pages (600,000 tokens with each page's image, at
    the dearest rate a prompt token can be billed, an hour's cache write: $3.60) on a standard
    window, and up to the window on a million-token one ($6.00), so a $4.00 day admits the first
    and refuses the second before it reaches Anthropic."""
    claude.documents[PDF] = 60
    p = await start(budget=4.0)
    status, _, answer = await post(p, "v1/messages", messages_body(by_url()))
    assert status == 200, answer
    claude.received.clear()
    p = await start(budget=4.0, claude_window=1_000_000)
    status, _, answer = await post(p, "v1/messages", messages_body(by_url()))
    assert over_budget(status, answer), answer
    assert claude.received == []
    # with nothing fetched, the wide window reserves no more: a plain question is answered
    status, _, answer = await post(p, "v1/messages", messages_body())
    assert status == 200, answer


async def test_a_document_by_file_id_and_one_in_a_tool_result_are_reserved_too(
    start: Any, claude: FakeAnthropic
) -> None:
    claude.documents["file_011CNha8iCJcU1wXNR6q4V8w"] = 60
    p = await start(budget=0.50)
    by_id = {
        "type": "document",
        "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"},
    }
    status, _, answer = await post(p, "v1/messages", messages_body(by_id))
    assert over_budget(status, answer), answer
    turns = [
        {"role": "user", "content": "read it"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [by_url()]}],
        },
    ]
    claude.documents[PDF] = 60
    tools = [{"name": "get", "input_schema": {"type": "object"}}]
    body = {"model": "claude-small", "max_tokens": 100, "messages": turns, "tools": tools}
    status, _, answer = await post(p, "v1/messages", body)
    assert over_budget(status, answer), answer
    assert claude.received == []


async def test_a_file_the_responses_api_fetches_is_reserved_in_a_message_or_a_tools_output(
    start: Any, fresh_provider: FakeProvider
) -> None:
    fresh_provider.documents[PDF] = 60
    fresh_provider.documents["file-abc123"] = 60
    p = await start(budget=0.50)
    by_url_part = {"type": "input_file", "file_url": PDF}
    message = {"role": "user", "content": [by_url_part, {"type": "input_text", "text": "sum"}]}
    body = {"model": "native-small", "max_output_tokens": 100, "input": [message]}
    status, _, answer = await post(p, "v1/responses", body)
    assert over_budget(status, answer), answer
    # a function's output that is a file by id: the chat form used to read only its text
    call = {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"}
    output = {
        "type": "function_call_output",
        "call_id": "c1",
        "output": [{"type": "input_file", "file_id": "file-abc123"}],
    }
    body = {**body, "input": ["read it", call, output], "tools": [FUNCTION]}
    body["input"][0] = {"role": "user", "content": "read it"}
    status, _, answer = await post(p, "v1/responses", body)
    assert over_budget(status, answer), answer
    assert fresh_provider.received == []
    # a day that holds it: answered, and charged the pages the provider billed
    p = await start(budget=5.0)
    status, _, answer = await post(p, "v1/responses", {**body, "input": [message]})
    assert status == 200, answer
    assert fresh_provider.received[-1].fetched_pages == 60
    usage = answer["usage"]
    billed = dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")
    assert await spent(p) == pytest.approx(billed, abs=1e-6)


async def test_fetched_documents_count_against_the_file_part_cap(
    start: Any, claude: FakeAnthropic
) -> None:
    urls = [f"https://example.com/{i}.pdf" for i in range(21)]
    claude.documents.update(dict.fromkeys(urls, 1))
    p = await start(budget=1000.0, user_daily_budget_usd=None)
    status, _, answer = await post(p, "v1/messages", messages_body(*map(by_url, urls)))
    assert status == 400, answer
    assert "21 file parts; at most 20" in answer["error"]["message"]
    assert claude.received == []


async def test_a_document_source_the_proxy_cannot_price_is_refused_naming_it(
    start: Any, claude: FakeAnthropic
) -> None:
    p = await start()
    odd = {"type": "document", "source": {"type": "s3", "bucket": "b", "key": "k.pdf"}}
    status, _, answer = await post(p, "v1/messages", messages_body(odd))
    assert status == 400, answer
    assert "messages[0].content[0].source.type" in answer["error"]["message"]
    assert claude.received == []


# -- what hosted tools pull into the prompt --------------------------------------------------

SEARCH = {"type": "web_search_20250305", "name": "web_search"}
FETCH = {"type": "web_fetch_20250910", "name": "web_fetch"}


async def test_what_web_search_pulls_into_the_prompt_is_reserved(
    start: Any, claude: FakeAnthropic
) -> None:
    """Five searches at $0.01 and 8,000 tokens of results each: $0.17 billed. Reserved at the
    calls alone ($0.05) a $0.10 day admitted it; the results are reserved as prompt now."""
    claude.search_result_tokens = 8_000
    hosted = {"web_search": {"offered": True, "price_per_call": 0.01, "max_calls": 5}}
    p = await start(budget=0.10, hosted_tools=hosted)
    claude.script({"web_searches": 5, "content": [{"type": "text", "text": "Found."}]})
    body = {**messages_body(), "tools": [SEARCH]}
    status, _, answer = await post(p, "v1/messages", body)
    assert over_budget(status, answer), answer
    assert claude.received == []
    p = await start(budget=0.50, hosted_tools=hosted)
    status, _, answer = await post(p, "v1/messages", body)
    assert status == 200, answer
    assert claude.received[-1].tool_calls == 5
    usage = answer["usage"]
    billed = dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")
    assert await spent(p) == pytest.approx(billed + 5 * 0.01, abs=1e-6)


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/sse"},
        {"type": "file_search", "vector_store_ids": ["vs_course"]},
    ],
    ids=["mcp", "file-search"],
)
async def test_what_a_file_search_or_an_mcp_server_returns_is_reserved_as_prompt(
    start: Any, fresh_provider: FakeProvider, tool: dict[str, Any]
) -> None:
    """A file search's chunks (OpenAI's defaults: 20 of 800 tokens) and an MCP server's answer
    (a server the user may name: the provider caps none) are billed as input; they were
    reserved at nothing, so two calls of 25,000 tokens ($0.15 at $3) passed a $0.10 day. Now
    16,000 and 25,000 tokens a call by default, or the admin's ``content_tokens``."""
    kind = tool["type"]
    body = {"model": "native-small", "max_output_tokens": 100, "input": "x", "tools": [tool]}
    p = await start(budget=0.10, hosted_tools={kind: {"offered": True, "max_calls": 2}})
    status, _, answer = await post(p, "v1/responses", body)
    assert over_budget(status, answer), answer
    assert fresh_provider.received == []
    small = {kind: {"offered": True, "max_calls": 2, "content_tokens": 1_000}}
    p = await start(budget=0.10, hosted_tools=small)
    status, _, answer = await post(p, "v1/responses", body)
    assert status == 200, answer
    assert fresh_provider.received[-1].body["tools"] == [tool]


async def test_web_fetch_is_told_the_admins_cap_on_what_it_pulls_in_and_reserved_for_it(
    start: Any, claude: FakeAnthropic
) -> None:
    claude.fetch_tokens = 60_000  # a long page's text
    hosted = {"web_fetch": {"offered": True, "max_calls": 2, "content_tokens": 5_000}}
    body = {**messages_body(), "tools": [FETCH]}
    # reserved for: two fetches of 5,000 tokens are $0.06 of prompt (at the dearest rate a
    # prompt token can be billed, an hour's cache write), past a $0.02 day (the prompt and the
    # answer alone are $0.004)
    p = await start(budget=0.02, hosted_tools=hosted)
    status, _, answer = await post(p, "v1/messages", body)
    assert over_budget(status, answer), answer
    assert claude.received == []
    # at the admin's 5,000 a fetch, not the 25,000 default ($0.30): a $0.10 day admits it
    p = await start(budget=0.10, hosted_tools=hosted)
    claude.script({"web_fetches": 2, "content": [{"type": "text", "text": "Read."}]})
    status, _, answer = await post(p, "v1/messages", body)
    assert status == 200, answer
    sent = claude.received[-1]
    tool = sent.body["tools"][0]
    assert (tool["max_uses"], tool["max_content_tokens"]) == (2, 5_000)
    assert sent.web_fetches == 2
    # billed what the cap let in (not 120,000 tokens), and charged that: the provider's bill
    usage = answer["usage"]
    assert usage["input_tokens"] < 2 * 5_000 + 1_000
    billed = dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")
    assert await spent(p) == pytest.approx(billed, abs=1e-6)


# -- the Responses API's one cap on built-in tools -------------------------------------------


@pytest.mark.parametrize(
    "second",
    [
        {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/sse"},
        {"type": "web_search_preview"},
    ],
    ids=["with-an-mcp-connector", "with-web-search-preview"],
)
async def test_the_responses_tool_cap_holds_for_each_kind_and_is_reserved_at_the_dearest(
    start: Any, fresh_provider: FakeProvider, second: dict[str, Any]
) -> None:
    """``max_tool_calls`` caps every built-in tool together. Sent as the sum of each kind's
    ``max_calls`` (15, or 10) while each kind was reserved at its own, the model spent it all on
    web search: $0.735 charged of a $0.30 day. Now it is the smallest ``max_calls`` (5), and
    reserved at the dearest kind's price and content."""
    fresh_provider.search_content_tokens = 8_000
    hosted = {
        "web_search": {"offered": True, "price_per_call": 0.025, "max_calls": 5},
        # a connector whose server answers with little, as its admin says
        "mcp": {"offered": True, "max_calls": 10, "content_tokens": 0},
    }
    body = {
        "model": "native-small",
        "max_output_tokens": 100,
        "input": "news on duckdb",
        "tools": [{"type": "web_search"}, second],
    }
    # reserved at the dearest kind: five searches' $0.125 and 40,000 tokens of results ($0.12)
    # are past a $0.20 day (at the cheapest, the free connector's, about $0.002 would pass)
    p = await start(budget=0.20, hosted_tools=hosted)
    status, _, answer = await post(p, "v1/responses", body)
    assert over_budget(status, answer), answer
    assert fresh_provider.received == []
    p = await start(budget=0.30, hosted_tools=hosted)
    fresh_provider.script({"web_searches": 20, "text": "Found it."})
    status, _, answer = await post(p, "v1/responses", body)
    assert status == 200, answer
    sent = fresh_provider.received[-1]
    assert sent.body["max_tool_calls"] == 5 and sent.tool_calls == 5
    usage = answer["usage"]
    billed = dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")
    charged = await spent(p)
    assert charged == pytest.approx(billed + 5 * 0.025, abs=1e-6)
    assert charged <= 0.30


# -- a hosted call charged what its provider bills ------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_web_search_is_charged_what_anthropic_bills_for_it_not_the_dearest_price(
    start: Any, claude: FakeAnthropic, stream: bool
) -> None:
    """Anthropic bills $0.01 a search. The kind's default price is the dearest any provider
    publishes (OpenAI's $0.025, on gpt-4o and gpt-4.1), which a search is still reserved at;
    it was charged that too, two and a half times Anthropic's bill (Claude Code streams its
    searches). An admin's own price (a contract's rate) is what every call is charged, even
    one that is the default."""
    body = {**messages_body(), "tools": [SEARCH], "stream": stream}
    for hosted, each in (
        ({"web_search": {"offered": True, "max_calls": 5}}, 0.01),
        # the admin's own price, though it is the default: a contract's rate, charged as set
        ({"web_search": {"offered": True, "max_calls": 5, "price_per_call": 0.025}}, 0.025),
    ):
        p = await start(hosted_tools=hosted)
        claude.script({"web_searches": 4, "content": [{"type": "text", "text": "Found."}]})
        res = await send(p, "v1/messages", body)
        assert res.code == 200, res.body
        assert claude.received[-1].tool_calls == 4
        charged = await spent(p)
        assert charged == pytest.approx(billed_dollars(res.body, stream) + 4 * each, abs=1e-6)


async def test_an_openai_web_search_is_charged_what_openai_bills_on_the_model_that_ran_it(
    start: Any, fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI bills its web_search tool $0.01 a call on every model, and its web_search_preview
    $0.01 on the reasoning models and $0.025 on the others: each call is charged by the tool the
    request offered and the model the upstream ran (behind a public name of the hub's), not the
    name the client sent. Every one was charged $0.025."""
    monkeypatch.setattr(
        fresh_provider, "model_ids", (*fresh_provider.model_ids, *SEARCH_MODELS.values())
    )
    p = await start(hosted_tools={"web_search": {"offered": True, "max_calls": 5}})
    before = 0.0
    for public, tool, each in (
        ("research-new", "web_search", 0.01),
        ("research-old", "web_search", 0.01),
        ("research-new", "web_search_preview", 0.01),
        ("research-old", "web_search_preview", 0.025),
        ("research-chat", "web_search_preview", 0.025),
    ):
        fresh_provider.script({"web_searches": 3, "text": "Found it."})
        body = {
            "model": public,
            "max_output_tokens": 100,
            "input": "news on duckdb",
            "tools": [{"type": tool}],
        }
        status, _, answer = await post(p, "v1/responses", body)
        assert status == 200, answer
        sent = fresh_provider.received[-1]
        assert sent.body["model"] == SEARCH_MODELS[public] and sent.tool_calls == 3
        usage = answer["usage"]
        billed = dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")
        now = await spent(p)
        assert now - before == pytest.approx(billed + 3 * each, abs=1e-6), (public, tool)
        before = now


async def test_a_hosted_tool_in_a_namespace_is_governed_like_any_other(
    start: Any, fresh_provider: FakeProvider
) -> None:
    """A namespace groups functions; a web search put inside one reached the provider for a
    user it was never offered to."""
    p = await start()
    namespace = {"type": "namespace", "name": "ns", "tools": [FUNCTION, {"type": "web_search"}]}
    body = {"model": "native-small", "input": "x", "tools": [namespace]}
    status, headers, answer = await post(p, "v1/responses", body, "tok-alice")
    assert status == 200, answer
    assert "web_search" in dropped(headers)
    sent = fresh_provider.received[-1].body
    assert sent["tools"] == [{**namespace, "tools": [FUNCTION]}]
    assert "max_tool_calls" not in sent


# -- code containers -------------------------------------------------------------------------


def coder(container: Any) -> dict[str, Any]:
    return {"type": "code_interpreter", "container": container}


async def test_a_code_container_is_reserved_and_charged_by_its_size(
    start: Any, fresh_provider: FakeProvider
) -> None:
    """OpenAI bills a 64 GB container $1.92 a session; it was charged the flat $0.05 a call."""
    hosted = {"code_interpreter": {"offered": True, "max_calls": 3}}
    body = {
        "model": "native-small",
        "max_output_tokens": 100,
        "input": "run it",
        "tools": [coder({"type": "auto", "memory_limit": "64g"})],
    }
    p = await start(budget=1.0, hosted_tools=hosted)
    status, _, answer = await post(p, "v1/responses", body)
    assert over_budget(status, answer), answer
    assert fresh_provider.received == []
    p = await start(budget=10.0, hosted_tools=hosted)
    fresh_provider.script({"code_runs": 3, "text": "Ran it."})
    status, _, answer = await post(p, "v1/responses", body)
    assert status == 200, answer
    sent = fresh_provider.received[-1]
    assert (sent.code_runs, sent.container) == (3, "64g")
    usage = answer["usage"]
    billed = dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")
    # three runs in one container: one session
    assert await spent(p) == pytest.approx(billed + 1.92, abs=1e-6)


async def test_two_code_containers_of_different_sizes_are_charged_at_the_dearest(
    start: Any, fresh_provider: FakeProvider
) -> None:
    """An answer's container calls do not say which tool's size they ran at: with a 64 GB and a
    1 GB code interpreter in one request, a session in the 64 GB one ($1.92) was charged the
    last tool's $0.03. Each session is charged the dearest size the request named."""
    hosted = {"code_interpreter": {"offered": True, "max_calls": 1}}
    sizes = ("64g", "1g")
    body = {
        "model": "native-small",
        "max_output_tokens": 100,
        "input": "run it",
        "tools": [coder({"type": "auto", "memory_limit": m}) for m in sizes],
    }
    p = await start(budget=10.0, hosted_tools=hosted)
    fresh_provider.script({"code_runs": 1, "text": "Ran it."})
    status, _, answer = await post(p, "v1/responses", body)
    assert status == 200, answer
    assert fresh_provider.received[-1].container == "64g"  # the provider ran the first
    usage = answer["usage"]
    billed = dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")
    assert await spent(p) == pytest.approx(billed + 1.92, abs=1e-6)


@pytest.mark.parametrize(
    ("container", "param"),
    [
        ({"type": "auto", "memory_limit": "128g"}, "tools[0].container.memory_limit"),
        ({"type": "auto", "memory_limit": "16g"}, "tools[0].container.memory_limit"),
        ("cntr_6800ab1c2d3e", "tools[0].container"),
    ],
    ids=["a-size-nobody-prices", "a-size-the-admin-refuses", "a-container-by-id"],
)
async def test_a_container_without_a_price_here_is_refused_naming_the_field(
    start: Any, fresh_provider: FakeProvider, container: Any, param: str
) -> None:
    hosted = {
        "code_interpreter": {"offered": True, "container_prices": {"16g": None}, "max_calls": 1}
    }
    p = await start(hosted_tools=hosted)
    body = {"model": "native-small", "input": "run", "tools": [coder(container)]}
    status, _, answer = await post(p, "v1/responses", body)
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert answer["error"]["code"] == "hosted_tool_not_priced"
    assert fresh_provider.received == []


async def test_a_messages_container_by_id_is_refused(start: Any, claude: FakeAnthropic) -> None:
    """A container by id is the account's, which every user of the hub's key shares."""
    p = await start(hosted_tools={"code_interpreter": {"offered": True}})
    body = {
        **messages_body(),
        "container": "container_011CPR5CNjB747bTd36fQLFk",
        "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
    }
    status, _, answer = await post(p, "v1/messages", body)
    assert status == 400 and "'container'" in answer["error"]["message"], answer
    assert claude.received == []


async def test_a_compaction_anthropic_would_bill_apart_is_refused_and_other_edits_go_on(
    start: Any, claude: FakeAnthropic
) -> None:
    """Anthropic's server-side compaction (``compact_20260112``) runs a second pass over the
    whole conversation, billed apart from the answer and out of its top-level usage, at a
    summary length no reservation can bound: refused naming the edit, nothing sent. An edit
    that clears earlier tool results (what Claude Code sends) only makes a request cheaper."""
    p = await start()
    beta = {"anthropic-beta": "context-management-2025-06-27,compact-2026-01-12"}
    clear = {"type": "clear_tool_uses_20250919"}
    for edits in ([{"type": "compact_20260112"}], [clear, {"type": "COMPACT_20270101"}]):
        body = {**messages_body(), "context_management": {"edits": edits}}
        status, _, answer = await post(p, "v1/messages", body, headers=beta)
        i = len(edits) - 1
        assert status == 400, answer
        assert answer["error"]["message"].startswith(f"'context_management.edits[{i}]'"), answer
        assert "bills it apart from the answer" in answer["error"]["message"]
    assert claude.received == []
    body = {**messages_body(), "context_management": {"edits": [clear]}}
    status, _, answer = await post(p, "v1/messages", body, headers=beta)
    assert status == 200, answer
    assert claude.received[-1].body["context_management"] == {"edits": [clear]}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_anthropic_code_execution_is_charged_when_its_usage_leaves_it_out(
    start: Any, claude: FakeAnthropic, stream: bool
) -> None:
    """The Messages usage counts searches and fetches, not code runs: a run was charged $0
    though Anthropic bills the container's time. The answer's own blocks say it ran."""
    p = await start(hosted_tools={"code_interpreter": {"offered": True, "price_per_call": 0.05}})
    claude.script({"code_runs": 2, "content": [{"type": "text", "text": "Ran it."}]})
    tool = {"type": "code_execution_20250825", "name": "code_execution"}
    body = {**messages_body(), "tools": [tool], "stream": stream}
    res = await send(p, "v1/messages", body)
    assert res.code == 200, res.body
    assert claude.received[-1].code_runs == 2
    billed = claude.received[-1].billed_tokens  # input and output, at $3 and $15
    charged = await spent(p)
    assert charged > 0.05  # the container, once, and the tokens
    assert charged == pytest.approx(0.05 + billed_dollars(res.body, stream), abs=1e-6)
    assert billed > 0


def billed_dollars(raw: bytes, stream: bool) -> float:
    """What a Message's usage says its tokens cost at Sonnet's prices."""
    if not stream:
        usage = json.loads(raw)["usage"]
    else:
        usage = {}
        for line in raw.decode().splitlines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                usage.update((event.get("message") or {}).get("usage") or {})
                usage.update(event.get("usage") or {})
    return dollars(usage["input_tokens"]) + dollars(usage["output_tokens"], side="output")


# -- hosted tools on chat completions --------------------------------------------------------

GROQ_TOOLS = [
    {"type": "function", "function": {"name": "shell", "parameters": {"type": "object"}}},
    {"type": "browser_search"},
    {"type": "mcp", "server_label": "x", "server_url": "https://mcp.attacker.example/sse"},
]


async def test_hosted_tools_on_chat_completions_are_dropped_for_whom_they_are_not_offered(
    start: Any, fresh_provider: FakeProvider
) -> None:
    """Groq runs browser search, code and any remote MCP server on chat completions; they went
    to the provider unpriced and unchecked. Now the rule of every API holds."""
    p = await start()
    body = {"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]}
    status, headers, answer = await post(
        p, "v1/chat/completions", {**body, "tools": GROQ_TOOLS}, "tok-alice"
    )
    assert status == 200, answer
    assert set(dropped(headers)) == {"web_search", "mcp"}
    assert fresh_provider.received[-1].body["tools"] == GROQ_TOOLS[:1]
    # OpenAI's web search on its search models, too
    status, headers, answer = await post(
        p, "v1/chat/completions", {**body, "web_search_options": {}}, "tok-alice"
    )
    assert status == 200 and dropped(headers) == ["web_search"], answer
    assert "web_search_options" not in fresh_provider.received[-1].body
    # a request whose only tools are hosted ones that do not run: refused, not answered as if
    status, _, answer = await post(
        p, "v1/chat/completions", {**body, "tools": GROQ_TOOLS[1:]}, "tok-alice"
    )
    assert status == 400 and answer["error"]["code"] == "hosted_tool_not_run", answer


async def test_an_offered_hosted_tool_on_chat_completions_is_reserved_and_charged(
    start: Any, fresh_provider: FakeProvider
) -> None:
    hosted = {
        "web_search": {"offered": True, "groups": STAFF, "price_per_call": 0.01, "max_calls": 3}
    }
    p = await start(hosted_tools=hosted)
    body = {
        "model": "fake-small",
        "messages": [{"role": "user", "content": "news?"}],
        "tools": [{"type": "browser_search"}],
    }
    answer_with = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "fake-small",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "Found.",
                    "executed_tools": [
                        {"index": 0, "type": "browser.search", "arguments": "{}"},
                        {"index": 1, "type": "browser.search", "arguments": "{}"},
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
    }
    fresh_provider.script(answer_with)
    status, _, answer = await post(p, "v1/chat/completions", body)
    assert status == 200, answer
    assert fresh_provider.received[-1].body["tools"] == body["tools"]
    first = await spent(p)
    assert first == pytest.approx(dollars(110, CHEAP) + 2 * 0.01, abs=1e-6)
    # an answer that does not say which tools ran is charged what they were reserved
    del answer_with["choices"][0]["message"]["executed_tools"]
    fresh_provider.script(answer_with)
    status, _, answer = await post(p, "v1/chat/completions", body)
    assert status == 200, answer
    assert await spent(p) - first == pytest.approx(dollars(110, CHEAP) + 3 * 0.01, abs=1e-6)
