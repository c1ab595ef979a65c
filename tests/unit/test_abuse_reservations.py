"""#35, suspected: parts of a request the provider bills that a reservation used to miss. Each
lets a request cost more than it reserved, so concurrent ones could spend past a budget. Every
case is a request that may cost more than the whole daily budget: refused at once, before it
reaches the provider, as the budget's promise needs. Providers answer in memory
(``tests/helpers/memory_engine.py``): what is asserted is the engine's own reckoning."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Engine
from jupyter_server_ext.engine.admission.limiter import LimitSettings, UserRules
from jupyter_server_ext.engine.apis.native import NATIVE_READERS
from jupyter_server_ext.engine.errors import BadRequest
from jupyter_server_ext.engine.upstreams.transport.memory import MemoryRequest
from tests.helpers.memory_engine import Provider, completion, memory_engine, recording, upstream

DOLLAR_PER_MILLION = {"input": 1.0, "output": 1.0}
# the public names a course would use (course-model: an alias for the provider's gpt-4o-mini)
MODELS = {"fake-small": "fake-small", "gpt-4o-mini": "gpt-4o-mini", "course-model": "gpt-4o-mini"}


def engine_for(budget: float, sent: list[MemoryRequest] | None = None) -> Engine:
    """Three keys, on two accounts, serving MODELS at $1 a million tokens under a daily
    `budget`; each request a provider is sent is kept in `sent` and answered in a few tokens."""
    prices = {name: DOLLAR_PER_MILLION for name in MODELS}
    keys = [upstream(name, models=MODELS, prices=prices) for name in ("a1", "a2", "b1")]
    return memory_engine(
        recording([] if sent is None else sent, completion("ok", prompt=20, answer=2)),
        *keys,
        default_model="fake-small",
        limits=LimitSettings(user=UserRules(daily_budget_usd=budget)),
    )


async def refused(budget: float, body: dict[str, Any], endpoint: str) -> str:
    sent: list[MemoryRequest] = []
    engine = engine_for(budget, sent)
    try:
        with pytest.raises(BadRequest) as err:
            # a body in another API's shape comes with its reader, as its edge hands it
            await engine.chat(
                body, Caller("ann"), endpoint=endpoint, native_reader=NATIVE_READERS.get(endpoint)
            )
    finally:
        await engine.close()
    assert sent == []  # never sent
    return f"{err.value.code}: {err.value.message}"


async def test_an_image_is_reserved_by_the_model_an_alias_stands_for() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/chart.png"}}
    body = {"model": "course-model", "messages": [{"role": "user", "content": [image]}]}
    # billed as gpt-4o-mini: up to 48,169 tokens, $0.048, not the 3,000 its public name suggests
    assert "over_budget" in await refused(0.02, body, "chat/completions")


def pdf_of(pages: int) -> bytes:
    """A small PDF of `pages` pages, all drawing one content stream: a few hundred bytes."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages)).encode()
    objs.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages)
    objs.append(b"<< /Length 0 >>\nstream\n\nendstream")
    objs += [b"<< /Type /Page /Parent 2 0 R /Contents 3 0 R >>"] * pages
    out = b"%PDF-1.4\n"
    for i, obj in enumerate(objs, 1):
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    return out + b"trailer << /Root 1 0 R >>\n%%EOF\n"


async def test_a_completions_suffix_is_reserved_as_prompt() -> None:
    body = {"model": "fake-small", "prompt": "def f(", "suffix": "x" * 40_000, "max_tokens": 5}
    # 10,000 tokens of suffix at $1 a million: $0.01, past a $0.005 budget
    assert "over_budget" in await refused(0.005, body, "completions")


async def test_a_completions_suffix_is_reserved_after_each_prompt_of_a_batch() -> None:
    """Each prompt of a batch is completed with the suffix after it, so the provider reads the
    suffix once a prompt: three prompts with 10,000 tokens of suffix are 30,000 ($0.03), where
    the suffix was reserved once ($0.01) and the batch went out under a $0.02 budget."""
    body = {"model": "fake-small", "prompt": ["a(", "b(", "c("], "suffix": "x" * 40_000}
    assert "over_budget" in await refused(0.02, {**body, "max_tokens": 5}, "completions")


async def test_tools_are_reserved_with_the_system_prompt_the_provider_adds_for_them() -> None:
    """Anthropic writes a system prompt of its own into a request that offers tools, billed as
    prompt: up to 530 tokens, far more than a small tool's definition. One small tool and a
    5-token answer are some 60 tokens by their size ($0.00006 at $1 a million) and may be
    billed some 600 ($0.0006): past a $0.0005 budget, in the Messages API as Claude Code sends
    it and in a chat completion. The same question without the tool is answered."""
    ask = {"model": "fake-small", "max_tokens": 5, "messages": [{"role": "user", "content": "t?"}]}
    tool = {"name": "now", "description": "The time.", "input_schema": {"type": "object"}}
    function = {"name": "now", "description": "The time.", "parameters": {"type": "object"}}
    asks = {
        "messages": {**ask, "tools": [tool]},
        "chat/completions": {**ask, "tools": [{"type": "function", "function": function}]},
    }
    for endpoint, body in asks.items():
        assert "up to $0.0006" in await refused(0.0005, body, endpoint)
    sent: list[MemoryRequest] = []
    engine = engine_for(0.0005, sent)
    try:
        reply = await engine.chat(ask, Caller("ann"))
    finally:
        await engine.close()
    assert reply.status == 200 and len(sent) == 1


async def test_the_priority_tier_billed_above_the_price_is_refused_naming_the_field() -> None:
    body = {"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]}
    why = await refused(1.0, {**body, "service_tier": "priority"}, "chat/completions")
    assert "service_tier" in why


async def test_an_image_is_reserved_what_the_model_bills_for_it() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/chart.png"}}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [image]}]}
    # gpt-4o-mini bills a high-detail image up to 48,169 tokens: $0.048 here
    assert "over_budget" in await refused(0.02, body, "chat/completions")


async def test_a_small_pdf_of_many_pages_is_reserved_by_its_pages() -> None:
    data = base64.b64encode(pdf_of(60)).decode()
    file = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{data}"},
    }
    body = {"model": "fake-small", "messages": [{"role": "user", "content": [file]}]}
    assert len(data) < 8000  # some 6,000 characters: about 1,500 tokens by its size
    # 60 pages, each its text and its image: some 360,000 tokens, $0.36
    assert "over_budget" in await refused(0.1, body, "chat/completions")


def compressed_pdf(pages: int) -> str:
    """A PDF 1.5 whose page tree is in a compressed object stream, where no page shows, as a
    base64 data URL."""
    import zlib

    hidden = zlib.compress(b"<< /Type /Pages /Count %d >> " % pages + b"<< /Type /Page >> " * pages)
    pdf = (
        b"%PDF-1.5\n1 0 obj\n<< /Type /ObjStm /N 9 /First 0 /Filter /FlateDecode /Length "
        + str(len(hidden)).encode()
        + b" >>\nstream\n"
        + hidden
        + b"\nendstream\nendobj\n%%EOF\n"
    )
    assert b"/Page" not in pdf.replace(b"/ObjStm", b"")
    return "data:application/pdf;base64," + base64.b64encode(pdf).decode()


async def test_pages_compressed_in_an_object_stream_are_counted_too() -> None:
    def ask(pages: int) -> dict[str, Any]:
        file = {"type": "file", "file": {"filename": "b.pdf", "file_data": compressed_pdf(pages)}}
        return {"model": "fake-small", "messages": [{"role": "user", "content": [file]}]}

    assert "over_budget" in await refused(0.1, ask(60), "chat/completions")
    # two pages are reserved as two ($0.012), not as the most a PDF may have ($0.60)
    engine = engine_for(0.1)
    try:
        reply = await engine.chat({**ask(2), "max_tokens": 5}, Caller("ann"))
    finally:
        await engine.close()
    assert reply.status == 200


# -- #53, finding 7: every field that changes what the provider bills, on every API -----------


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        # OpenAI's priority processing, under both its names, on each of its APIs
        (
            "chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "service_tier": "fast"},
        ),
        ("completions", {"prompt": "hi", "service_tier": "priority"}),
        ("responses", {"input": "hi", "service_tier": "priority"}),
        # fast mode and US-only inference, which OpenAI-compatible gateways pass on to Claude
        ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "speed": "fast"}),
        ("responses", {"input": "hi", "inference_geo": "us"}),
        # the Messages API: a tier that is not Anthropic's, fast mode, US-only inference
        (
            "messages",
            {
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
                "service_tier": "priority",
            },
        ),
        (
            "messages",
            {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "speed": "fast"},
        ),
        (
            "messages",
            {
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
                "inference_geo": "us",
            },
        ),
    ],
    ids=[
        "chat-fast-tier",
        "completions-priority-tier",
        "responses-priority-tier",
        "chat-fast-mode",
        "responses-us-only",
        "messages-priority-tier",
        "messages-fast-mode",
        "messages-us-only",
    ],
)
async def test_a_field_billed_above_the_price_is_refused_naming_it_on_every_api(
    endpoint: str, body: dict[str, Any]
) -> None:
    field = next(k for k in ("service_tier", "speed", "inference_geo") if k in body)
    why = await refused(1.0, {"model": "fake-small", **body}, endpoint)
    assert field in why


def gemini_pro(budget: float, provider: Provider) -> Engine:
    """An engine serving Gemini 2.5 Pro at the built-in price: Google bills a prompt past
    200,000 tokens at $2.50 / $15 a million instead of $1.25 / $10."""
    a1 = upstream("a1", models={"gemini-2.5-pro": "gemini-2.5-pro"}, prices={})
    return memory_engine(
        provider,
        a1,
        default_model="gemini-2.5-pro",
        limits=LimitSettings(user=UserRules(daily_budget_usd=budget)),
    )


async def test_a_gemini_pro_prompt_past_200k_tokens_is_charged_googles_long_context_rates() -> None:
    # the provider counts some 210,000 tokens of prompt: no flag, a long prompt is enough
    engine = gemini_pro(100.0, recording([], completion("ok", prompt=210_000, answer=5)))
    body = {"messages": [{"role": "user", "content": "lorem " * 140_000}], "max_tokens": 5}
    try:
        reply = await engine.chat(body, Caller("ann"))
    finally:
        await engine.close()
    long_rates = (210_000 * 2.5 + 5 * 15.0) / 1e6
    assert float(reply.headers["X-RSQL-Cost-USD"]) == pytest.approx(long_rates, abs=1e-7)


async def test_a_gemini_pro_prompt_that_may_pass_200k_tokens_is_reserved_at_the_long_rates() -> (
    None
):
    # some 60,000 tokens by the proxy's estimate (four characters a token): a tokenizer that
    # makes a token of fewer characters may count more than 200,000, so it is reserved at the
    # long-context rates, $0.15, past a $0.12 budget ($0.075 at the standard ones)
    body = {"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "x" * 240_000}]}
    sent: list[MemoryRequest] = []
    engine = gemini_pro(0.12, recording(sent, completion("ok", prompt=60_000, answer=5)))
    try:
        with pytest.raises(BadRequest) as err:
            await engine.chat({**body, "max_tokens": 5}, Caller("ann"))
    finally:
        await engine.close()
    assert err.value.code == "over_budget"
    assert sent == []
