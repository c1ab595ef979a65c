"""A Responses request sent as it came, to an upstream that speaks the API itself (OpenAI's):
what it needs beyond its chat form, the Responses API's part of ``apis.native``. Nothing stored
at the provider (the proxy keeps stored responses, each its owner's: ``stored``), the error
event that ends its stream, and the hosted tools it runs under the cap all their calls share."""

from __future__ import annotations

import re
from typing import Any

from ...admission.hosted_tools import HostedTools, Use, container_price
from . import request as responses_request
from . import stream as responses_stream

__all__ = ["call_price", "error_event", "hosted_uses", "prepare"]

# OpenAI's web search, USD a call: the web_search tool $10 a thousand on every model; its
# preview (web_search_preview) $10 on the reasoning models (the gpt-5 family and the o-series,
# not gpt-5's chat snapshots) and $25 on the others, gpt-4o and gpt-4.1: the kind's default,
# kept for a model named otherwise (an Azure deployment's own name)
_REASONING = re.compile(r"^(?:[\w.-]+/)?(?:gpt-5|o\d)(?:$|[-.])(?!.*chat)", re.IGNORECASE)
SEARCH = 0.01


def error_event(message: str) -> bytes:
    """The event that ends a stream that broke off upstream, in the Responses API's shape."""
    return responses_stream.event("error", {"code": "upstream_error", "message": message})


def call_price(kind: str, provider: str, model: str, payload: dict[str, Any]) -> float | None:
    """What OpenAI bills a built-in tool's call of `kind` on provider model `model` for the
    request `payload`, where the upstream that ran it is of OpenAI's kind (`provider`: Azure
    publishes its own prices) and the bill is less than the kind's default (None: the
    default). A call does not say which of the request's search tools it was: a preview among
    them on a model that bills it more prices every search at the default."""
    if kind != "web_search" or provider != "openai":
        return None
    types = [t["type"] for k, _, t in responses_request.hosted_tools_in(payload) if k == kind]
    preview = any(t.startswith("web_search_preview") for t in types)
    return SEARCH if types and (not preview or _REASONING.match(model)) else None


def prepare(payload: dict[str, Any]) -> None:
    """`payload` as it goes upstream: what is stored is kept by the proxy (``stored``), each
    response its owner's, so the provider keeps nothing another user of the same key could
    reach."""
    payload["store"] = False
    payload.pop("previous_response_id", None)
    items = payload.get("input")
    if isinstance(items, list):
        # without store a provider finds no item by its id: a reasoning item holding only
        # its id, no encrypted_content (what a stored conversation of a reasoning model
        # carries), is refused ("Item with id 'rs_...' not found"), and holds nothing a
        # model could read, so it is left out; one with its encrypted_content goes on
        payload["input"] = [i for i in items if not _bare_reasoning(i)]


def _bare_reasoning(item: Any) -> bool:
    """A reasoning item that only a provider which stored it could read."""
    return (
        isinstance(item, dict)
        and item.get("type") == "reasoning"
        and not item.get("encrypted_content")
    )


def hosted_uses(payload: dict[str, Any], hosted: HostedTools) -> tuple[list[Use], int | None]:
    """The hosted tools a Responses request runs, each kind's calls at its price (a code
    interpreter's by its container's size) and what they may pull into the prompt, and the cap
    all their calls share (``max_tool_calls``: the edge set it; a client's own smaller one
    stays)."""
    uses: list[Use] = []
    for kind, path, tool in responses_request.hosted_tools_in(payload):
        setting = hosted.of(kind)
        where = ".".join(f"tools[{i}]" for i in path)
        usd = (
            container_price(setting, tool.get("container"), where)
            if kind == "code_interpreter"
            else setting.price_per_call
        )
        uses.append(Use(kind, setting.max_calls, usd, setting.content_tokens))
    if not uses:
        return uses, None
    asked = payload.get("max_tool_calls")
    calls = sum(u.calls for u in uses)
    mine = asked if isinstance(asked, int) and not isinstance(asked, bool) and asked >= 0 else calls
    return uses, min(mine, calls)
