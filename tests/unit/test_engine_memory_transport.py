"""The engine over providers answered in memory (``transport.memory.MemoryClient``, given by the
composition root as ``Engine``'s `transports`): its own logic runs with no socket and no server,
every provider kind's translation and error reading as over the wire. Each answer here is in its
provider's published shape; what the user would notice is asserted: the answer, its cost against
their budget, which key answered, what the admin's status shows."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Engine
from jupyter_server_ext.engine.admission.hosted_tools import parse_hosted_tools
from jupyter_server_ext.engine.admission.limiter import LimitSettings, UserRules
from jupyter_server_ext.engine.apis.native import NATIVE_READERS
from jupyter_server_ext.engine.apis.translated import Translated
from jupyter_server_ext.engine.bodies import json_codec
from jupyter_server_ext.engine.errors import BadRequest, UpstreamError
from jupyter_server_ext.engine.info_endpoints import me_view
from jupyter_server_ext.engine.interface import Outcome, Reply
from jupyter_server_ext.engine.privacy.redact import parse_redact_patterns
from jupyter_server_ext.engine.request_state import Watch, watch_request
from jupyter_server_ext.engine.upstreams.transport.memory import (
    MemoryRequest,
    MemoryResponse,
)
from tests.helpers.memory_engine import PRICE, completion, memory_engine, recording, upstream

ASK = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 50}
ANN = Caller("ann")


def claude_message(usage: Any = None, text: str = "bonjour") -> dict[str, Any]:
    """A Message saying `text`, as Anthropic's API reference gives it (no usage: None)."""
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
    }
    return message if usage is None else {**message, "usage": usage}


def claude_upstream() -> dict[str, Any]:
    """An upstream of the anthropic kind serving public m as claude-x."""
    return upstream(
        "claude",
        provider="anthropic",
        base_url="https://claude.provider.test",  # Anthropic's root, as https://api.anthropic.com
        models={"m": "claude-x"},
    )


def chat_chunk(
    delta: dict[str, Any] | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """A chat completion chunk as OpenAI streams it: one choice's delta, or (`usage`) the usage
    chunk, with no choices, that ``stream_options.include_usage`` asks for."""
    choice = {"index": 0, "delta": delta or {"content": "a"}, "finish_reason": None}
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return {**chunk, "choices": [], "usage": usage} if usage else chunk


def streaming(events: list[Any]) -> Callable[[MemoryRequest], MemoryResponse]:
    """A provider that answers every request with the stream `events`."""

    def provider(request: MemoryRequest) -> MemoryResponse:
        return MemoryResponse(headers={"Content-Type": "text/event-stream"}, events=events)

    return provider


@pytest.fixture
async def engine_over() -> AsyncIterator[Callable[..., Engine]]:
    made: list[Engine] = []

    def make(handler: Any, *upstreams: dict[str, Any], **settings: Any) -> Engine:
        made.append(memory_engine(handler, *upstreams, **settings))
        return made[-1]

    yield make
    for engine in made:
        await engine.close()


async def test_an_answer_is_charged_its_usage_at_the_models_price(
    engine_over: Callable[..., Engine],
) -> None:
    sent: list[MemoryRequest] = []
    provider = recording(sent, completion("hi there", prompt=12, answer=3))
    budget = LimitSettings(user=UserRules(daily_budget_usd=1.0))
    engine = engine_over(provider, upstream("a"), limits=budget)
    reply = await engine.chat(dict(ASK), Caller("ann"))
    answer = json_codec.loads(reply.body)
    assert answer["choices"][0]["message"]["content"] == "hi there"
    cost = 12 * 0.001 + 3 * 0.002
    assert float(reply.headers["X-RSQL-Cost-USD"]) == pytest.approx(cost)
    me = await me_view(engine, Caller("ann"))
    assert me["budget"]["spent_usd"] == pytest.approx(cost)  # settled from the reservation
    # what the provider was sent: its own URL and key, the user's pseudonym, not their name
    (request,) = sent
    assert request.url == "https://a.provider.test/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-a"
    assert request.json()["user"] != "ann" and request.json()["max_tokens"] == 50


async def until_a_was_asked(engine: Engine, asked: list[str]) -> None:
    """Ask until the pool has picked a once (its first pick today, on a tie; the loop holds
    whichever order the pool's choice takes), each request answered by b all the same."""
    for _ in range(30):
        reply = await engine.chat(dict(ASK), Caller("ann"))
        assert reply.status == 200 and reply.headers["X-RSQL-Upstream"] == "b"
        assert json_codec.loads(reply.body)["choices"][0]["message"]["content"] == "from b"
        if "a" in asked:
            break
    assert asked.count("a") == 1 and asked[-1] == "b"  # the same request, answered by b


async def only_b_answers(engine: Engine) -> None:
    """Five more requests, which go to b alone while a cools."""
    for _ in range(5):
        reply = await engine.chat(dict(ASK), Caller("bob"))
        assert reply.headers["X-RSQL-Upstream"] == "b"


async def test_a_429_fails_over_to_another_account_and_the_key_cools(
    engine_over: Callable[..., Engine],
) -> None:
    asked: list[str] = []

    def provider(request: MemoryRequest) -> MemoryResponse:
        asked.append(request.url.split(".", 1)[0].removeprefix("https://"))
        if asked[-1] == "a":  # account a's request window is spent for 30 s, as OpenAI says it
            error = {"error": {"message": "Rate limit reached", "type": "requests"}}
            spent = {
                "Retry-After": "30",
                "x-ratelimit-limit-requests": "10",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "30s",
            }
            return MemoryResponse(429, spent, json=error)
        return MemoryResponse(json=completion("from b", prompt=5, answer=2))

    engine = engine_over(provider, upstream("a"), upstream("b"))
    await until_a_was_asked(engine, asked)
    assert dict(engine.key_states()) == {"a": "cooling", "b": "healthy"}
    await only_b_answers(engine)  # a cools for the 30 s the provider said
    assert asked.count("a") == 1


async def test_a_retry_after_given_as_a_date_cools_the_key_until_then(
    engine_over: Callable[..., Engine],
) -> None:
    """RFC 9110 lets Retry-After be an HTTP-date: it was read as no wait at all, so the key
    cooled for the proxy's default second and was asked again well inside the wait it said."""
    asked: list[str] = []

    def provider(request: MemoryRequest) -> MemoryResponse:
        asked.append(request.url.split(".", 1)[0].removeprefix("https://"))
        if asked[-1] == "a":
            later = email.utils.formatdate(time.time() + 30, usegmt=True)
            error = {"error": {"message": "Rate limit reached", "type": "requests"}}
            return MemoryResponse(429, {"Retry-After": later}, json=error)
        return MemoryResponse(json=completion("from b", prompt=5, answer=2))

    engine = engine_over(provider, upstream("a"), upstream("b"), default_cooldown_seconds=0.2)
    await until_a_was_asked(engine, asked)
    await asyncio.sleep(0.5)  # past the default cooldown, well within the date's 30 s
    await only_b_answers(engine)
    assert asked.count("a") == 1


async def test_an_accepted_attempt_that_timed_out_is_not_answered_again_by_the_fallback(
    engine_over: Callable[..., Engine],
) -> None:
    """The provider took the request and gave no answer in time: it may still bill it, so the
    request is charged its worst case and ends (504), as it does without a fallback. The
    capacity fallback answered it as well, billing it twice past its reservation, and the
    timed-out key's slot was never given back: its 2-a-minute window stayed one short for good."""
    hang = {"main": True}

    def provider(request: MemoryRequest) -> MemoryResponse:
        if request.url.startswith("https://main.") and hang["main"]:
            raise asyncio.TimeoutError  # sent, and no answer came
        return MemoryResponse(json=completion("ok", prompt=5, answer=1))

    main = upstream("main", limits=["2/minute"])
    fb = upstream("fb", models=["small"], prices={"small": PRICE})
    budget = LimitSettings(user=UserRules(daily_budget_usd=1.0))
    engine = engine_over(provider, main, fb, fallback_model="fb", limits=budget)
    with pytest.raises(UpstreamError) as err:
        await engine.chat(dict(ASK), Caller("ann"))
    assert err.value.status == 504 and "may still bill it" in err.value.message
    me = await me_view(engine, Caller("ann"))
    assert me["budget"]["spent_usd"] >= 50 * 0.002  # its worst case: 50 tokens of answer
    key = next(k for k in engine.pool.keys if k.alias == "main")
    assert key.inflight == 0  # its slot given back, counted in the window
    hang["main"] = False
    reply = await engine.chat(dict(ASK), Caller("bob"))  # the window's second request
    assert reply.headers["X-RSQL-Upstream"] == "main" and "X-RSQL-Fallback" not in reply.headers


async def test_an_image_to_an_azure_deployment_is_reserved_as_the_model_it_stands_for(
    engine_over: Callable[..., Engine],
) -> None:
    """A deployment named prod-vision standing for gpt-4o-mini is priced as gpt-4o-mini, and
    its image is billed as gpt-4o-mini bills one: up to 48,169 tokens at high detail ($0.0072
    at $0.15 a million), not the 3,000 of a model the deployment's name does not match."""
    sent: list[MemoryRequest] = []

    def provider(request: MemoryRequest) -> MemoryResponse:
        sent.append(request)
        return MemoryResponse(status=500)

    azure = {
        "name": "az",
        "provider": "azure",
        "base_url": "https://school.openai.azure.com",
        "api_version": "2024-10-21",
        "api_key": "sk-az",
        "models": {"gpt-4o-mini": "prod-vision"},
    }
    budget = LimitSettings(user=UserRules(daily_budget_usd=0.005))
    engine = engine_over(provider, azure, limits=budget)
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/c.png"}}
    body = {"model": "gpt-4o-mini", "max_tokens": 5}
    with pytest.raises(BadRequest) as err:
        await engine.chat({**body, "messages": [{"role": "user", "content": [image]}]}, ANN)
    assert err.value.code == "over_budget" and sent == []


async def test_a_stream_is_passed_on_and_settled_from_its_usage_chunk(
    engine_over: Callable[..., Engine],
) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    events = [
        chat_chunk({"role": "assistant", "content": "one "}),
        chat_chunk({"content": "two"}),
        chat_chunk(usage=usage),
        "[DONE]",
    ]

    def provider(request: MemoryRequest) -> MemoryResponse:
        assert request.json()["stream_options"] == {"include_usage": True}  # asked by the proxy
        return MemoryResponse(headers={"Content-Type": "text/event-stream"}, events=events)

    engine = engine_over(
        provider, upstream("a"), limits=LimitSettings(user=UserRules(daily_budget_usd=1.0))
    )
    reply = await engine.chat({**ASK, "stream": True}, Caller("ann"))
    assert reply.events is not None
    text = b"".join([event async for event in reply.events]).decode()
    assert '"one "' in text and '"two"' in text and text.endswith("data: [DONE]\n\n")
    me = await me_view(engine, Caller("ann"))
    assert me["budget"]["spent_usd"] == pytest.approx(10 * 0.001 + 4 * 0.002)


async def test_an_anthropic_upstream_is_spoken_to_in_its_own_api(
    engine_over: Callable[..., Engine],
) -> None:
    def provider(request: MemoryRequest) -> MemoryResponse:
        assert request.url == "https://claude.provider.test/v1/messages"
        assert request.headers["x-api-key"] == "sk-claude"
        sent = request.json()
        assert sent["messages"] == [{"role": "user", "content": "hello"}]
        return MemoryResponse(json=claude_message({"input_tokens": 8, "output_tokens": 2}))

    engine = engine_over(provider, claude_upstream())
    reply = await engine.chat(dict(ASK), Caller("ann"))
    answer = json_codec.loads(reply.body)
    assert answer["choices"][0]["message"]["content"] == "bonjour"
    assert answer["model"] == "m"  # the public name, never the provider's own
    assert float(reply.headers["X-RSQL-Cost-USD"]) == pytest.approx(8 * 0.001 + 2 * 0.002)


@pytest.mark.parametrize(
    "usage",
    [None, {"input_tokens": "1200", "output_tokens": 50}, {"input_tokens": 8, "output_tokens": -2}],
    ids=["none", "a-count-as-text", "a-negative-count"],
)
async def test_a_message_whose_usage_cannot_be_read_is_charged_its_reservation_not_0(
    engine_over: Callable[..., Engine], usage: Any
) -> None:
    """Through chat completions, a Message from an upstream of the anthropic kind with no usage
    or an unreadable count was read as 0 tokens, and the request was free; sent as it came
    (v1/messages) the same Message was charged its reservation. Both are now."""
    message = claude_message(usage)
    budget = LimitSettings(user=UserRules(daily_budget_usd=1.0))
    engine = engine_over(
        lambda _request: MemoryResponse(json=message), claude_upstream(), limits=budget
    )
    reply = await engine.chat(dict(ASK), Caller("ann"))
    assert json_codec.loads(reply.body)["choices"][0]["message"]["content"] == "bonjour"
    me = await me_view(engine, Caller("ann"))
    # the reservation: the 50 tokens it may answer at $0.002 each, and the prompt's estimate
    assert me["budget"]["spent_usd"] > 50 * 0.002
    assert float(reply.headers["X-RSQL-Cost-USD"]) == pytest.approx(me["budget"]["spent_usd"])


async def test_a_messages_request_sent_as_it_came_is_settled_by_its_apis_usage(
    engine_over: Callable[..., Engine],
) -> None:
    """The edge hands the engine the API's reader (``apis.native.NATIVE_READERS``): the body goes
    upstream as it came, and its answer is settled by the Messages usage, cache reads at their
    rate."""
    sent: list[dict[str, Any]] = []

    def provider(request: MemoryRequest) -> MemoryResponse:
        sent.append(request.json())
        usage = {
            "input_tokens": 10,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 0,
            "output_tokens": 5,
        }
        return MemoryResponse(json=claude_message(usage, text="ok"))

    priced = {"m": {**PRICE, "cache_read": 100.0}}  # a cached token at a tenth of the price
    claude = upstream(
        "claude",
        provider="anthropic",
        base_url="https://claude.provider.test",
        models={"m": "claude-x"},
        prices=priced,
    )
    engine = engine_over(provider, claude)
    body = {
        "model": "m",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello"}],
    }
    reader = NATIVE_READERS["messages"]
    reply = await engine.chat(
        body, Caller("ann"), endpoint="messages", api="messages", native_reader=reader
    )
    assert json_codec.loads(reply.body)["content"][0]["text"] == "ok"  # the Message, as it came
    assert sent[0]["system"] == body["system"]  # the cache mark went on untouched
    assert float(reply.headers["X-RSQL-Cost-USD"]) == pytest.approx(
        10 * 0.001 + 1000 * 0.0001 + 5 * 0.002
    )
    # a body for an API's endpoint comes with its reader, and a chat body with none
    with pytest.raises(ValueError):
        await engine.chat(body, Caller("ann"), endpoint="messages")
    with pytest.raises(ValueError):
        await engine.chat(dict(ASK), Caller("ann"), native_reader=reader)


@pytest.mark.parametrize("read", [1, 0], ids=["after-its-first-event", "before-any"])
async def test_a_messages_stream_its_client_left_is_charged_its_whole_usage(
    engine_over: Callable[..., Engine], read: int
) -> None:
    """A Message's input and cache counts come in its first event, its output in its last: a
    client that leaves after the first, or before any, is charged both, read on in the
    background (the bill rule), not the output alone; its row written once."""

    def event(kind: str, **data: Any) -> bytes:
        return (
            f"event: {kind}\ndata: {json_codec.dumps({'type': kind, **data}).decode()}\n\n".encode()
        )

    started = {
        "id": "msg_3",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    events = [
        event("message_start", message=started),
        event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": "hello"}),
        event("content_block_stop", index=0),
        event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 30}),
        event("message_stop"),
    ]

    provider = streaming(events)
    claude = upstream(
        "claude",
        provider="anthropic",
        base_url="https://claude.provider.test",
        models={"m": "claude-x"},
        prices={"m": {**PRICE, "cache_read": 100.0}},
    )
    engine = engine_over(provider, claude, limits=LimitSettings(user=UserRules(daily_budget_usd=5)))
    body = {"model": "m", "max_tokens": 50, "stream": True, "messages": ASK["messages"]}
    reply = await engine.chat(
        body,
        Caller("ann"),
        endpoint="messages",
        api="messages",
        native_reader=NATIVE_READERS["messages"],
    )
    assert reply.events is not None
    rows: list[Outcome] = []
    engine.on_outcome.append(rows.append)
    if read:
        assert b"message_start" in await reply.events.__anext__()
    await reply.events.aclose()  # the client leaves
    await asyncio.gather(*list(engine.replies.background))  # the answer read on, then charged
    me = await me_view(engine, Caller("ann"))
    assert me["budget"]["spent_usd"] == pytest.approx(10 * 0.001 + 1000 * 0.0001 + 30 * 0.002)
    assert [(row.status, row.prompt_tokens, row.completion_tokens) for row in rows] == [
        (499, 1010, 30)
    ]


@pytest.mark.parametrize("api", ["messages", "responses"])
async def test_a_translated_stream_left_at_its_first_event_is_charged_and_lets_go(
    engine_over: Callable[..., Engine], api: str
) -> None:
    """A Messages or Responses client (Claude Code, Codex) on a chat upstream that leaves as the
    answer starts (its first event, which the edge writes before any of the upstream's): the
    answer is read on and charged what the provider billed, and the user's one place at once
    is free again, as for any stream."""
    usage = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
    provider = streaming([chat_chunk(), chat_chunk(), chat_chunk(usage=usage), "[DONE]"])

    one_at_a_time = UserRules(daily_budget_usd=5, concurrency=1)
    engine = engine_over(provider, upstream("a"), limits=LimitSettings(user=one_at_a_time))
    edge = Translated(engine)
    ask = {"model": "m", "stream": True}
    if api == "messages":
        reply = await edge.messages({**ask, "max_tokens": 50, "messages": ASK["messages"]}, ANN)
    else:
        reply = await edge.responses({**ask, "max_output_tokens": 50, "input": "hi"}, ANN)
    assert reply.events is not None
    assert await reply.events.__anext__()  # the API's first event, then the client is gone
    await reply.events.aclose()
    await asyncio.gather(*list(engine.replies.background))  # read on, then charged
    me = await me_view(engine, ANN)
    assert me["budget"]["spent_usd"] == pytest.approx(100 * 0.001 + 40 * 0.002)
    assert me["concurrency"]["in_flight"] == 0
    again = await engine.chat(dict(ASK), ANN)  # admitted: the lease was given back
    assert again.status == 200


async def test_a_stream_closed_or_lost_before_it_is_read_is_charged_and_lets_go(
    engine_over: Callable[..., Engine],
) -> None:
    """A host that never reads a stream's reply (its client left as the answer came: the task
    cancelled as the reply arrived) still ends the request: charged what the provider billed,
    its place at once given back, whether the events are closed or simply dropped."""
    usage = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
    provider = streaming([chat_chunk(), chat_chunk(usage=usage), "[DONE]"])

    one_at_a_time = UserRules(daily_budget_usd=5, concurrency=1)
    engine = engine_over(provider, upstream("a"), limits=LimitSettings(user=one_at_a_time))
    billed = 100 * 0.001 + 40 * 0.002
    reply = await engine.chat({**ASK, "stream": True}, ANN)
    assert reply.events is not None
    await reply.events.aclose()  # closed before a single read
    await asyncio.gather(*list(engine.replies.background))
    me = await me_view(engine, ANN)
    assert me["budget"]["spent_usd"] == pytest.approx(billed)
    assert me["concurrency"]["in_flight"] == 0
    reply = await engine.chat({**ASK, "stream": True}, ANN)  # the one place was given back
    del reply  # dropped unread: asyncio closes a started generator it collects
    gc.collect()
    for _ in range(20):  # the loop runs the close it scheduled, then the read on
        await asyncio.sleep(0)
        if engine.replies.background:
            await asyncio.gather(*list(engine.replies.background))
        if (await me_view(engine, ANN))["concurrency"]["in_flight"] == 0:
            break
    me = await me_view(engine, ANN)
    assert me["budget"]["spent_usd"] == pytest.approx(2 * billed)
    assert me["concurrency"]["in_flight"] == 0


async def test_a_stream_without_usage_left_early_is_charged_its_prompt_and_each_event_once(
    engine_over: Callable[..., Engine],
) -> None:
    """With no usage from the provider, a stream is charged its prompt and a token an event it
    sent (the bill rule's estimate): the same whether its client left after the first event
    or before any (the first is counted once)."""
    events = [chat_chunk(), chat_chunk(), chat_chunk(), "[DONE]"]
    provider = streaming(events)

    engine = engine_over(
        provider, upstream("a"), limits=LimitSettings(user=UserRules(daily_budget_usd=5))
    )
    prompt = engine.parse(dict(ASK)).prompt_tokens
    for read, who in ((1, Caller("ann")), (0, Caller("bob"))):
        reply = await engine.chat({**ASK, "stream": True}, who)
        assert reply.events is not None
        if read:
            await reply.events.__anext__()
        await reply.events.aclose()
        await asyncio.gather(*list(engine.replies.background))
        spent = (await me_view(engine, who))["budget"]["spent_usd"]
        assert spent == pytest.approx(prompt * 0.001 + len(events) * 0.002), read


async def test_a_stream_whose_client_left_at_the_provider_is_charged_each_event_once(
    engine_over: Callable[..., Engine],
) -> None:
    """A client that leaves while the provider has its request: the answer is awaited and read
    in the background (``request_state.at_provider``); with no usage from the provider, charged its prompt and
    a token an event, the first counted once."""
    events = [chat_chunk(), chat_chunk(), chat_chunk(), "[DONE]"]
    asked, answer = asyncio.Event(), asyncio.Event()

    async def provider(request: MemoryRequest) -> MemoryResponse:
        asked.set()
        await answer.wait()  # the provider is generating
        return MemoryResponse(headers={"Content-Type": "text/event-stream"}, events=events)

    engine = engine_over(
        provider, upstream("a"), limits=LimitSettings(user=UserRules(daily_budget_usd=5))
    )
    watches: list[Watch] = []

    async def client() -> None:
        watches.append(watch_request())  # as the host does where it starts answering
        await engine.chat({**ASK, "stream": True}, ANN)

    task = asyncio.create_task(client())
    await asked.wait()
    watches[0].client_left()
    answer.set()
    with pytest.raises(asyncio.CancelledError):  # the request ends for its client at once
        await task
    await asyncio.gather(*list(engine.replies.background))
    prompt = engine.parse(dict(ASK)).prompt_tokens
    spent = (await me_view(engine, ANN))["budget"]["spent_usd"]
    assert spent == pytest.approx(prompt * 0.001 + len(events) * 0.002)


async def test_a_conversation_whose_client_left_while_it_was_answered_keeps_to_that_account(
    engine_over: Callable[..., Engine],
) -> None:
    """The provider answered (and cached the prompt) though nobody read the answer: the account
    is the conversation's home all the same, so its next turns go there, not cold elsewhere."""
    asked, answer = asyncio.Event(), asyncio.Event()
    served: list[str] = []

    async def provider(request: MemoryRequest) -> MemoryResponse:
        served.append(request.url.split(".", 1)[0].removeprefix("https://"))
        if len(served) == 1:
            asked.set()
            await answer.wait()  # the provider is generating
        return MemoryResponse(json=completion("ok", prompt=5, answer=1))

    engine = engine_over(provider, upstream("a"), upstream("b"))
    body = {**ASK, "prompt_cache_key": "thread-1"}  # the conversation, as Codex names it
    watches: list[Watch] = []

    async def client() -> None:
        watches.append(watch_request())
        await engine.chat(dict(body), ANN)

    task = asyncio.create_task(client())
    await asked.wait()
    watches[0].client_left()
    answer.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.gather(*list(engine.replies.background))
    for _ in range(3):
        await engine.chat(dict(body), ANN)
    assert served == served[:1] * 4, served


async def test_a_stream_left_after_its_hosted_tools_ran_is_charged_their_calls(
    engine_over: Callable[..., Engine],
) -> None:
    """Groq names the built-in tools it ran in a chat stream's early chunks and the usage in its
    last: a client that leaves in between is charged both (the read on goes on with the reader
    that saw the calls), not the tokens alone."""
    tool = {"index": 0, "type": "browser.search", "arguments": "{}"}
    said = {"content": "Found.", "executed_tools": [tool, {**tool, "index": 1}]}
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    provider = streaming([chat_chunk(said), chat_chunk(usage=usage), "[DONE]"])

    offered = {"web_search": {"offered": True, "price_per_call": 0.01, "max_calls": 3}}
    engine = engine_over(
        provider,
        upstream("a"),
        # room for what the searches may pull into the prompt, reserved (8,000 tokens each)
        limits=LimitSettings(user=UserRules(daily_budget_usd=50)),
        hosted_tools=parse_hosted_tools(offered),
    )
    body = {**ASK, "stream": True, "tools": [{"type": "browser_search"}]}
    reply = await engine.chat(body, ANN)
    assert reply.events is not None
    assert b"executed_tools" in await reply.events.__anext__()
    await reply.events.aclose()  # the client leaves before the usage chunk
    await asyncio.gather(*list(engine.replies.background))
    spent = (await me_view(engine, ANN))["budget"]["spent_usd"]
    assert spent == pytest.approx(100 * 0.001 + 10 * 0.002 + 2 * 0.01)


@pytest.mark.parametrize("api", ["messages", "responses"])
async def test_a_translated_json_answer_is_read_once_and_told_in_its_apis_shape(
    engine_over: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    """Claude Code or Codex on a chat upstream, unstreamed: the edge turns the answer the engine
    read into its API's shape, without decoding the bytes again (issue 78: one decode of an
    answer on every path), and the client reads the provider's text and usage."""
    engine = engine_over(
        lambda request: MemoryResponse(json=completion("SELECT 1", 120, 30)), upstream("a")
    )
    edge = Translated(engine)
    decoded: list[bytes] = []
    loads = json_codec.loads

    def counted(data: bytes | str) -> Any:
        if b"SELECT 1" in (data if isinstance(data, bytes) else data.encode()):
            decoded.append(data if isinstance(data, bytes) else data.encode())
        return loads(data)

    monkeypatch.setattr(json_codec, "loads", counted)
    if api == "messages":
        reply = await edge.messages(
            {"model": "m", "max_tokens": 50, "messages": ASK["messages"]}, ANN
        )
        told = json_codec.loads(reply.body)
        assert told["content"] == [{"type": "text", "text": "SELECT 1"}]
        assert (told["usage"]["input_tokens"], told["usage"]["output_tokens"]) == (120, 30)
    else:
        reply = await edge.responses({"model": "m", "max_output_tokens": 50, "input": "hi"}, ANN)
        told = json_codec.loads(reply.body)
        assert told["output"][0]["content"][0]["text"] == "SELECT 1"
        assert (told["usage"]["input_tokens"], told["usage"]["output_tokens"]) == (120, 30)
    assert len(decoded) == 2, decoded  # the provider's bytes by the engine, the reply's by us
    assert float(reply.headers["X-RSQL-Cost-USD"]) == pytest.approx(120 * 0.001 + 30 * 0.002)


@pytest.mark.parametrize("api", ["messages", "responses"])
async def test_a_translated_answer_gives_the_user_their_redacted_values_back(
    engine_over: Callable[..., Engine], api: str
) -> None:
    """With redaction on, the provider sees a placeholder for the user's e-mail address and
    answers with it; the user reads their own address back in their API's answer (the engine
    maps it back before the edge writes the answer: the edge reads what the engine restored)."""
    sent: list[MemoryRequest] = []

    def provider(request: MemoryRequest) -> MemoryResponse:
        sent.append(request)
        prompt = json_codec.dumps(request.json()["messages"]).decode()
        placeholder = prompt[prompt.index("<email-") :].split(">", 1)[0] + ">"
        return MemoryResponse(json=completion(f"I will write to {placeholder}.", 20, 8))

    engine = engine_over(provider, upstream("a"), redact_patterns=parse_redact_patterns(["email"]))
    edge = Translated(engine)
    ask = "Write to ann.lee@example.org about the report"
    if api == "messages":
        messages = [{"role": "user", "content": ask}]
        reply = await edge.messages({"model": "m", "max_tokens": 50, "messages": messages}, ANN)
        text = json_codec.loads(reply.body)["content"][0]["text"]
    else:
        reply = await edge.responses({"model": "m", "max_output_tokens": 50, "input": ask}, ANN)
        text = json_codec.loads(reply.body)["output"][0]["content"][0]["text"]
    assert "ann.lee@example.org" not in json_codec.dumps(sent[0].json()).decode()
    assert text == "I will write to ann.lee@example.org."
    assert reply.answer == json_codec.loads(reply.body)  # the reply's object is its body


def test_a_reply_whose_body_is_written_anew_forgets_the_answer_it_was_read_as() -> None:
    """Whoever rewrites a reply's bytes without its object (a host, a later step) leaves no
    stale answer for an edge to read: the redacted placeholders once reached users that way."""
    reply = Reply(200, {}, body=b'{"a": 1}', answer={"a": 1})
    assert reply.answer == {"a": 1}
    reply.body = b'{"a": 2}'
    assert reply.answer is None
    reply.body, reply.answer = b'{"a": 3}', {"a": 3}
    assert reply.answer == {"a": 3}
