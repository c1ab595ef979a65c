"""A request in the Responses or Messages API's shape, sent as it is to an upstream that speaks
that API itself (``UpstreamSpec.native_apis``): what the engine needs of it (the model, the
prompt estimate, the answer's limit, whether it streams) is read from its chat form, which is
also where every refusal a translated request would get comes from, so both ways hold the
same rules. What is one API's own (its headers, service tiers, hosted tools, error event,
payload fix-ups) is in its folder's ``native`` module; :data:`NATIVE_APIS` names them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..admission.hosted_tools import HostedTools, Use
from ..bodies.left_out import LeftOut
from ..bodies.media import audio_fields
from ..bodies.request import (
    STANDARD_SERVICE,
    ChatRequest,
    RequestLimits,
    check_standard_service,
    kinds_price,
    parse_chat_request,
)
from ..bodies.usage import UsageReading
from .messages import native as messages_native
from .messages import request as messages_request
from .messages.usage import MessagesUsage
from .responses import native as responses_native
from .responses import request as responses_request
from .responses.usage import ResponsesUsage

_MAX_HEADER_CHARS = 1000  # a passed header's value: printable ASCII, bounded


def _nothing(payload: dict[str, Any]) -> None:
    return None


def _no_long_context(passed: Mapping[str, str]) -> tuple[str, str] | None:
    return None


def _no_more_pages(form: dict[str, Any], chat: ChatRequest, wide: Callable[[], bool]) -> int:
    return 0


@dataclass(frozen=True)
class NativeAPI:
    """What one API's request sent as it came needs beyond its chat form (one per API: each
    function is its folder's ``native`` module's)."""

    to_chat: Callable[[Any, LeftOut], dict[str, Any]]  # its body as the chat form
    cap_field: str  # the field that limits the answer
    usage_reader: Callable[[], UsageReading]  # reads its answer's usage and hosted calls
    error_event: Callable[[str], bytes]  # the event that ends a stream that broke off upstream
    # what a field choosing the service may hold (``bodies.request.check_standard_service``)
    standard_values: dict[str, tuple[str, ...]]
    # the hosted tools it runs, each kind's calls at its price, and the cap all calls share
    hosted_uses: Callable[[dict[str, Any], HostedTools], tuple[list[Use], int | None]]
    passed_headers: tuple[str, ...] = ()  # a client's headers that go on with it
    # the end user is named in metadata.user_id alone (``bodies.attribution.set_end_user``);
    # else in OpenAI's user and safety_identifier, as on chat completions
    user_in_metadata: bool = False
    prepare: Callable[[dict[str, Any]], None] = _nothing  # the payload as it goes upstream
    # refuses (``BadRequest``, naming the field) what would make the provider bill a pass the
    # proxy cannot reserve
    refuse_unbounded: Callable[[dict[str, Any]], None] = _nothing
    # (header, value) of a passed header that asks for a model's long context, or None
    long_context: Callable[[Mapping[str, str]], tuple[str, str] | None] = _no_long_context
    # what fetched documents may cost beyond their stand-ins where the window may be wide
    # (`wide`: asked only of a request that has some)
    wider_pages: Callable[[dict[str, Any], ChatRequest, Callable[[], bool]], int] = _no_more_pages
    # what its provider bills a hosted call (kind, the upstream's provider kind, provider
    # model, the request's payload) where that is less than the kind's default price, the
    # dearest path of any provider (None: that price)
    call_price: Callable[[str, str, str, dict[str, Any]], float | None] = kinds_price


NATIVE_APIS: dict[str, NativeAPI] = {
    "responses": NativeAPI(
        to_chat=responses_request.to_chat,
        cap_field="max_output_tokens",
        usage_reader=ResponsesUsage,
        error_event=responses_native.error_event,
        standard_values=STANDARD_SERVICE,
        hosted_uses=responses_native.hosted_uses,
        prepare=responses_native.prepare,
        call_price=responses_native.call_price,
    ),
    "messages": NativeAPI(
        to_chat=messages_request.to_chat,
        cap_field="max_tokens",
        usage_reader=MessagesUsage,
        error_event=messages_native.error_event,
        standard_values=messages_native.STANDARD_VALUES,
        hosted_uses=messages_native.hosted_uses,
        passed_headers=messages_native.PASSED_HEADERS,
        user_in_metadata=True,
        long_context=messages_native.long_context,
        wider_pages=messages_native.wider_pages,
        refuse_unbounded=messages_native.refuse_unbounded,
        call_price=messages_native.call_price,
    ),
}


@dataclass(frozen=True)
class NativeAPIReader:
    """How a request in `api`'s shape, sent as it came, is read: the edge hands it to
    ``Engine.chat`` (its `native_reader`), so the engine reads a body it does not know through
    this (``parsing.NativeReader``) and imports no API. `api`: the endpoint it goes to."""

    api: str

    def parse(
        self,
        body: Any,
        headers: Mapping[str, str] | None,
        *,
        default_model: str,
        default_max_tokens: int,
        limits: RequestLimits,
        image: Callable[[str], int],
        wide_window: Callable[[str], bool],
    ) -> ChatRequest:
        """A body in this API's shape, to go upstream as it is (``Engine.parse``): read,
        bounded and estimated through its chat form, as a chat completion is; what the chat
        form leaves out and the upstream reads is estimated too, and a Messages request's
        fetched documents up to the wider page limit where its window may hold a million
        tokens."""
        api = NATIVE_APIS[self.api]
        left = LeftOut()  # the upstream reads what the chat form leaves out: estimated too
        form = api.to_chat(body, left)
        chat = parse_chat_request(
            form,
            default_model=default_model,
            default_max_tokens=default_max_tokens,
            limits=limits,
            image=image,
        )
        chat.prompt_tokens += left.tokens
        req = native_request(self.api, body, chat, headers)
        req.prompt_tokens += api.wider_pages(
            form, chat, lambda: req.long_context_asked is not None or wide_window(req.model)
        )
        req.files, req.page_tokens = chat.files, chat.page_tokens  # pages still to count
        return req

    def hosted_uses(
        self, payload: dict[str, Any], hosted: HostedTools
    ) -> tuple[list[Use], int | None]:
        """The hosted tools a request in this API's shape runs, each kind's calls at its price
        and what they may pull into the prompt, and the cap all their calls share (the
        Responses API's ``max_tool_calls``), or None (``parsing`` reserves them)."""
        return NATIVE_APIS[self.api].hosted_uses(payload, hosted)


# what an edge hands the engine for a request sent as it came, by API
NATIVE_READERS = {api: NativeAPIReader(api) for api in NATIVE_APIS}


def native_request(
    api: str, body: dict[str, Any], chat: ChatRequest, headers: Mapping[str, str] | None = None
) -> ChatRequest:
    """`body`, in `api`'s shape, as the request the engine answers; `chat`: its chat form,
    parsed (and bounded) as any chat completion is; `headers`: the client's, of which the API's
    own feature flags go on."""
    declared = NATIVE_APIS[api]
    check_standard_service(body, declared.standard_values)
    declared.refuse_unbounded(body)
    payload = dict(body)
    payload["model"] = chat.model
    declared.prepare(payload)
    # ``metadata`` goes on as the caller sent it, as a chat completion's does; the fields that
    # name the end user (``user``, ``safety_identifier``, ``metadata.user_id``) are the proxy's,
    # set after admission (``bodies.attribution.set_end_user``)
    passed = {}
    for name in declared.passed_headers:
        value = (headers or {}).get(name)
        if (
            isinstance(value, str)
            and len(value) <= _MAX_HEADER_CHARS
            and value.isascii()
            and value.isprintable()
        ):
            passed[name] = value
    heard, spoken = audio_fields(body, "input")
    return ChatRequest(
        payload=payload,
        upstream_headers=passed,
        model=chat.model,
        stream=chat.stream,
        wants_usage_chunk=True,  # each API's stream carries its usage; nothing to hide
        prompt_tokens=chat.prompt_tokens,
        max_tokens=chat.max_tokens,
        choices=1,
        max_tokens_set=chat.max_tokens_set,
        endpoint=api,
        cap_field=declared.cap_field,
        native=True,
        long_context_asked=declared.long_context(passed),
        error_event=declared.error_event,
        usage_reader=declared.usage_reader,
        user_in_metadata=declared.user_in_metadata,
        # named as the client sent them (a Responses request's sound is in `input`), and what
        # its chat form leaves out (a spoken answer's fields) counts too
        audio_in=heard or ("input" if chat.audio_in else ""),
        audio_out=spoken or chat.audio_out,
        call_price=declared.call_price,
    )
