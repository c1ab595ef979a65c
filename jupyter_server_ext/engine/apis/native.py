"""A request in the Responses or Messages API's shape, sent as it is to an upstream that speaks
that API itself (``UpstreamSpec.native_apis``): what the engine needs of it (the model, the
prompt estimate, the answer's limit, whether it streams) is read from its chat form, which is
also where every refusal a translated request would get comes from, so both ways hold the
same rules."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..admission.hosted_tools import HostedTools, Use, container_price
from ..bodies.left_out import LeftOut, fetched_files
from ..bodies.media import MAX_PAGES
from ..bodies.request import (
    STANDARD_SERVICE,
    ChatRequest,
    RequestLimits,
    check_standard_service,
    parse_chat_request,
)
from ..bodies.usage import UsageReading
from ..errors import BadRequest
from .messages import answer as messages_answer
from .messages import request as messages_request
from .messages.usage import MessagesUsage
from .responses import request as responses_request
from .responses import stream as responses_stream
from .responses.usage import ResponsesUsage

NATIVE_APIS = ("responses", "messages")
# the field that limits the answer, in each API
CAP_FIELDS = {"responses": "max_output_tokens", "messages": "max_tokens"}
# the APIs that name the end user in metadata.user_id alone (``bodies.attribution.set_end_user``):
# the Responses API takes OpenAI's user and safety_identifier as chat completions does
USER_IN_METADATA = frozenset({"messages"})


# a client's header that goes on with a request sent as it was: Anthropic's beta features (the
# fields that need them would be refused without it); printable ASCII, bounded
PASSED_HEADERS = {"messages": ("anthropic-beta",)}
_MAX_HEADER_CHARS = 1000
# What a field choosing the service may hold in a request sent as it was (``STANDARD_SERVICE``:
# fast mode, US-only inference and tiers billed above the price table are refused, naming the
# field): the Messages API's tiers are Anthropic's own two ("auto" draws on an organization's
# Priority Tier commitment, which its contract prices, as does a request that names none)
STANDARD_VALUES = {
    "messages": {**STANDARD_SERVICE, "service_tier": ("auto", "standard_only")},
    "responses": STANDARD_SERVICE,
}
# an anthropic-beta name that opens a context window past the standard one
# (context-1m-2025-08-07): past 200K prompt tokens Anthropic bills its long-context rates
_LONG_CONTEXT_BETA = re.compile(r"context-\d+m-")


def _responses_error(message: str) -> bytes:
    return responses_stream.event("error", {"code": "upstream_error", "message": message})


def _messages_error(message: str) -> bytes:
    return messages_answer.event("error", {"error": {"type": "api_error", "message": message}})


# the event that ends a stream that broke off upstream, in each API's shape
ERROR_EVENTS = {"responses": _responses_error, "messages": _messages_error}
# what reads each API's answer's usage, and the hosted tools' calls it shows
USAGE_READERS: dict[str, Callable[[], UsageReading]] = {
    "responses": ResponsesUsage,
    "messages": MessagesUsage,
}
# each API's reader: its body as the chat form, the hosted tools it runs
READERS = {"responses": responses_request, "messages": messages_request}


# Anthropic reads at most 100 pages of PDFs a request, 600 where the request's context window
# holds a million tokens (its PDF support page); a window holds what a request is billed for at
# most. A fetched document's stand-in is reserved at 100 pages, as a chat file by id is
# (``estimate_tokens``); where the window may be wide, the fetched documents of a request are
# reserved together up to the wider limit.
WIDE_PAGES = 600
WIDE_WINDOW = 1_000_000


def _wider_pages(fetched: int, chat: ChatRequest, wide: bool) -> int:
    """What `fetched` documents of a Messages request may cost beyond 100 pages each."""
    if not fetched or not wide:
        return 0
    most = min(WIDE_PAGES * chat.page_tokens, WIDE_WINDOW)
    return max(0, most - fetched * MAX_PAGES * chat.page_tokens)


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
        api = self.api
        left = LeftOut()  # the upstream reads what the chat form leaves out: estimated too
        form = READERS[api].to_chat(body, left)
        chat = parse_chat_request(
            form,
            default_model=default_model,
            default_max_tokens=default_max_tokens,
            limits=limits,
            image=image,
        )
        chat.prompt_tokens += left.tokens
        req = native_request(api, body, chat, headers)
        if api == "messages":
            wide = req.long_context_beta is not None or wide_window(req.model)
            req.prompt_tokens += _wider_pages(fetched_files(form["messages"]), chat, wide)
        req.files, req.page_tokens = chat.files, chat.page_tokens  # pages still to count
        return req

    def hosted_uses(
        self, payload: dict[str, Any], hosted: HostedTools
    ) -> tuple[list[Use], int | None]:
        """The hosted tools a request in this API's shape runs, each kind's calls at its price
        and what they may pull into the prompt, and the cap all their calls share (the
        Responses API's ``max_tool_calls``), or None (``parsing`` reserves them)."""
        api = self.api
        uses: list[Use] = []
        shared = None
        if api == "responses":
            for kind, path, tool in responses_request.hosted_tools_in(payload):
                setting = hosted.of(kind)
                where = ".".join(f"tools[{i}]" for i in path)
                usd = (
                    container_price(setting, tool.get("container"), where)
                    if kind == "code_interpreter"
                    else setting.price_per_call
                )
                uses.append(Use(kind, setting.max_calls, usd, setting.content_tokens))
            asked = payload.get("max_tool_calls")
            if uses:  # the edge set the cap; a client's own smaller one stays
                shared = min(
                    asked
                    if isinstance(asked, int) and not isinstance(asked, bool) and asked >= 0
                    else sum(u.calls for u in uses),
                    sum(u.calls for u in uses),
                )
        else:  # messages
            named = payload.get("container")
            if isinstance(named, str) or (isinstance(named, dict) and named.get("id")):
                raise BadRequest(
                    "'container': a container by id is not offered through this proxy (containers "
                    "belong to the provider account that every user of this hub shares); leave it "
                    "out and each request runs in its own",
                    code="hosted_tool_not_priced",
                    extra={"param": "container"},
                )
            for kind, _, tool in messages_request.hosted_tools_in(payload):
                setting = hosted.of(kind)
                calls = setting.max_calls
                if kind in ("web_search", "web_fetch"):  # capped by the edge (``max_uses``)
                    uses_ = tool.get("max_uses")
                    if isinstance(uses_, int) and not isinstance(uses_, bool) and uses_ >= 0:
                        calls = min(calls, uses_)
                elif kind == "code_interpreter":  # one container a request, billed by its time
                    calls = 1
                tokens = setting.content_tokens
                if kind == "web_fetch":  # the cap the edge sent holds for text (not for PDFs)
                    most = tool.get("max_content_tokens")
                    if isinstance(most, int) and not isinstance(most, bool) and most >= 0:
                        tokens = min(tokens, most) if tokens else most
                uses.append(Use(kind, calls, setting.price_per_call, tokens))
        return uses, shared


# what an edge hands the engine for a request sent as it came, by API
NATIVE_READERS = {api: NativeAPIReader(api) for api in NATIVE_APIS}


def native_request(
    api: str, body: dict[str, Any], chat: ChatRequest, headers: Mapping[str, str] | None = None
) -> ChatRequest:
    """`body`, in `api`'s shape, as the request the engine answers; `chat`: its chat form,
    parsed (and bounded) as any chat completion is; `headers`: the client's, of which the API's
    own feature flags go on."""
    check_standard_service(body, STANDARD_VALUES[api])
    payload = dict(body)
    payload["model"] = chat.model
    if api == "responses":
        # what is stored is kept by the proxy (``stored``), each response its owner's: the
        # provider keeps nothing another user of the same key could reach
        payload["store"] = False
        payload.pop("previous_response_id", None)
        items = payload.get("input")
        if isinstance(items, list):
            # without store a provider finds no item by its id: a reasoning item holding only
            # its id, no encrypted_content (what a stored conversation of a reasoning model
            # carries), is refused ("Item with id 'rs_...' not found"), and holds nothing a
            # model could read, so it is left out; one with its encrypted_content goes on
            payload["input"] = [i for i in items if not _bare_reasoning(i)]
    # ``metadata`` goes on as the caller sent it, as a chat completion's does; the fields that
    # name the end user (``user``, ``safety_identifier``, ``metadata.user_id``) are the proxy's,
    # set after admission (``bodies.attribution.set_end_user``)
    passed = {}
    for name in PASSED_HEADERS.get(api, ()):
        value = (headers or {}).get(name)
        if (
            isinstance(value, str)
            and len(value) <= _MAX_HEADER_CHARS
            and value.isascii()
            and value.isprintable()
        ):
            passed[name] = value
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
        cap_field=CAP_FIELDS[api],
        native=True,
        long_context_beta=_long_context_beta(passed.get("anthropic-beta", "")),
        error_event=ERROR_EVENTS[api],
        usage_reader=USAGE_READERS[api],
        user_in_metadata=api in USER_IN_METADATA,
    )


def _bare_reasoning(item: Any) -> bool:
    """A reasoning item that only a provider which stored it could read."""
    return (
        isinstance(item, dict)
        and item.get("type") == "reasoning"
        and not item.get("encrypted_content")
    )


def _long_context_beta(header: str) -> str | None:
    """The beta in an anthropic-beta header that opens Claude's long context (billed at the
    long-context rates past 200K prompt tokens), or None."""
    return next(
        (b.strip() for b in header.split(",") if _LONG_CONTEXT_BETA.match(b.strip().lower())),
        None,
    )
