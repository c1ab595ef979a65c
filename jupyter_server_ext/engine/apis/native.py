"""A request in the Responses or Messages API's shape, sent as it is to an upstream that speaks
that API itself (``UpstreamSpec.native_apis``): what the engine needs of it (the model, the
prompt estimate, the answer's limit, whether it streams) is read from its chat form, which is
also where every refusal a translated request would get comes from, so both ways hold the
same rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..bodies.request import STANDARD_SERVICE, ChatRequest, check_standard_service
from ..formats.anthropic import answer as messages_answer
from ..formats.responses import stream as responses_stream

NATIVE_APIS = ("responses", "messages")
# the field that limits the answer, in each API
CAP_FIELDS = {"responses": "max_output_tokens", "messages": "max_tokens"}


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
    # set after admission (``bodies.request.set_end_user``)
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
