"""A Messages request sent as it came, to an upstream that speaks the API itself (Anthropic's):
what it needs beyond its chat form, the Messages API's part of ``apis.native``. The client's
beta flags that go on with it (``anthropic-beta``) and the long-context beta among them, the
service tiers it may ask for, the error event that ends its stream, the server tools it runs
(and their caps as the edge set them), and the wider page limit of a million-token window."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ...admission.hosted_tools import HostedTools, Use
from ...bodies.left_out import fetched_files
from ...bodies.media import MAX_PAGES
from ...bodies.request import STANDARD_SERVICE, ChatRequest
from ...errors import BadRequest
from . import answer as messages_answer
from . import request as messages_request

__all__ = [
    "PASSED_HEADERS",
    "STANDARD_VALUES",
    "call_price",
    "error_event",
    "hosted_uses",
    "long_context",
    "refuse_unbounded",
    "wider_pages",
]

# a client's header that goes on with the request: Anthropic's beta features (the fields that
# need them would be refused without it)
PASSED_HEADERS = ("anthropic-beta",)
# What a field choosing the service may hold (``STANDARD_SERVICE``: fast mode, US-only inference
# and tiers billed above the price table are refused, naming the field): the Messages API's
# tiers are Anthropic's own two ("auto" draws on an organization's Priority Tier commitment,
# which its contract prices, as does a request that names none)
STANDARD_VALUES = {**STANDARD_SERVICE, "service_tier": ("auto", "standard_only")}
# an anthropic-beta name that opens a context window past the standard one
# (context-1m-2025-08-07): past 200K prompt tokens Anthropic bills its long-context rates
_LONG_CONTEXT_BETA = re.compile(r"context-\d+m-")
# Anthropic reads at most 100 pages of PDFs a request, 600 where the request's context window
# holds a million tokens (its PDF support page); a window holds what a request is billed for at
# most. A fetched document's stand-in is reserved at 100 pages, as a chat file by id is
# (``estimate_tokens``); where the window may be wide, the fetched documents of a request are
# reserved together up to the wider limit.
WIDE_PAGES = 600
WIDE_WINDOW = 1_000_000
# USD a server tool's call where Anthropic bills less than the kind's default (the dearest path
# of any provider): its web search $10 a thousand searches, on every model
CALL_PRICES = {"web_search": 0.01}


def error_event(message: str) -> bytes:
    """The event that ends a stream that broke off upstream, in the Messages API's shape."""
    return messages_answer.event("error", {"error": {"type": "api_error", "message": message}})


def long_context(passed: Mapping[str, str]) -> tuple[str, str] | None:
    """The beta in the passed anthropic-beta header that opens Claude's long context (billed at
    the long-context rates past 200K prompt tokens), as (header, beta); None when none does."""
    header = passed.get("anthropic-beta", "")
    beta = next(
        (b.strip() for b in header.split(",") if _LONG_CONTEXT_BETA.match(b.strip().lower())),
        None,
    )
    return ("anthropic-beta", beta) if beta is not None else None


def wider_pages(form: dict[str, Any], chat: ChatRequest, wide: Callable[[], bool]) -> int:
    """What the fetched documents of a request (`form`: its chat form) may cost beyond 100
    pages each, where its window may hold a million tokens (`wide`, asked only when the
    request fetches documents: most do not)."""
    fetched = fetched_files(form["messages"])
    if not fetched or not wide():
        return 0
    most = min(WIDE_PAGES * chat.page_tokens, WIDE_WINDOW)
    return max(0, most - fetched * MAX_PAGES * chat.page_tokens)


def refuse_unbounded(payload: dict[str, Any]) -> None:
    """Refuse an edit of ``context_management`` that makes Anthropic compact the conversation
    (``compact_20260112``, beta ``compact-2026-01-12``): past its trigger the provider runs a
    second pass that reads the whole conversation and writes a summary of no length the proxy
    could reserve, and bills it apart from the answer (``usage.iterations``, which the
    settlement reads all the same: ``MessagesUsage``). Edits that clear earlier tool results or
    thinking make a request cheaper, and go on."""
    managed = payload.get("context_management")
    edits = managed.get("edits") if isinstance(managed, dict) else None
    for i, edit in enumerate(edits if isinstance(edits, list) else ()):
        kind = edit.get("type") if isinstance(edit, dict) else None
        if isinstance(kind, str) and kind.lower().startswith("compact"):
            raise BadRequest(
                f"'context_management.edits[{i}]': {kind[:40]!r} is not offered through this "
                "proxy: Anthropic then runs a second pass that summarises the whole "
                "conversation and bills it apart from the answer, at a length no budget can "
                "reserve beforehand; compact the conversation in the client (as Claude Code "
                "does) or leave the edit out",
                extra={"param": f"context_management.edits[{i}].type"},
            )


def call_price(kind: str, provider: str, model: str, payload: dict[str, Any]) -> float | None:
    """What Anthropic bills a server tool's call of `kind`, on any model of any request, where
    the upstream that ran it is of its kind (`provider`); None: the kind's default price."""
    return CALL_PRICES.get(kind) if provider == "anthropic" else None


def hosted_uses(payload: dict[str, Any], hosted: HostedTools) -> tuple[list[Use], int | None]:
    """The server tools a Messages request runs, each kind's calls at its price and what they
    may pull into the prompt (the calls capped by ``max_uses`` and the fetched text by
    ``max_content_tokens`` where the edge set them; one container a request, billed by its
    time); the Messages API has no cap that all calls share (None)."""
    named = payload.get("container")
    if isinstance(named, str) or (isinstance(named, dict) and named.get("id")):
        raise BadRequest(
            "'container': a container by id is not offered through this proxy (containers "
            "belong to the provider account that every user of this hub shares); leave it "
            "out and each request runs in its own",
            code="hosted_tool_not_priced",
            extra={"param": "container"},
        )
    uses: list[Use] = []
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
    return uses, None
