"""A body sent to each endpoint, read by that endpoint's parser: bounded, its model defaulted
and its cost estimated (``Engine.parse``). The Responses and Messages APIs are read through
their chat form, so they are held to the same bounds as a chat completion."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .admission.hosted_tools import HostedTools, Use, container_price, reserve
from .apis.native import NATIVE_APIS, native_request
from .bodies.hosted_kinds import chat_hosted_tools
from .bodies.left_out import LeftOut, fetched_files
from .bodies.media import MAX_PAGES, billed_image_tokens
from .bodies.request import (
    ChatRequest,
    parse_chat_request,
    parse_completions_request,
    parse_embeddings_request,
)
from .errors import BadRequest
from .formats.anthropic import request as anthropic_api
from .formats.responses import request as responses_api
from .settings import EngineSettings
from .upstreams.pool import Key


def image_cost(serving: Sequence[Key], model: str) -> int:
    """The most one image may cost on public `model`, served by the keys `serving`: by the
    provider models its upstreams bill it as (an alias like course-model is billed as the model
    it stands for); the most any model bills while none serves it."""
    return billed_image_tokens([k.spec.provider_model(model) for k in serving])


def parse_request(
    settings: EngineSettings,
    body: Any,
    endpoint: str,
    default: str,
    headers: Mapping[str, str] | None,
    image: Callable[[str], int],
    wide_window: Callable[[str], bool] = lambda model: False,
) -> ChatRequest:
    """A body sent to `endpoint`, bounded and estimated (``Engine.parse``); `image`: what an
    image may cost on a public model; `wide_window`: whether a public model's window may hold a
    million tokens (the admin's ``context_windows``)."""
    limits, max_tokens = settings.request_limits, settings.default_max_tokens
    if endpoint in NATIVE_APIS:  # sent as it is: read (and bounded) through its chat form
        api = responses_api if endpoint == "responses" else anthropic_api
        left = LeftOut()  # the upstream reads what the chat form leaves out: estimated too
        form = api.to_chat(body, left)
        chat = parse_chat_request(
            form,
            default_model=default,
            default_max_tokens=max_tokens,
            limits=limits,
            image=image,
        )
        chat.prompt_tokens += left.tokens
        req = native_request(endpoint, body, chat, headers)
        if endpoint == "messages":
            wide = req.long_context_beta is not None or wide_window(req.model)
            req.prompt_tokens += _wider_pages(fetched_files(form["messages"]), chat, wide)
        _reserve_hosted(req, settings, endpoint)
        req.files, req.page_tokens = chat.files, chat.page_tokens  # pages still to count
        req.cache_hour = asks_an_hour(body)
        return req
    if endpoint == "embeddings":
        return parse_embeddings_request(body, default_model=default, limits=limits)
    if endpoint == "completions":
        return parse_completions_request(
            body, default_model=default, default_max_tokens=max_tokens, limits=limits
        )
    req = parse_chat_request(
        body, default_model=default, default_max_tokens=max_tokens, limits=limits, image=image
    )
    _reserve_hosted(req, settings, endpoint)
    req.cache_hour = asks_an_hour(body)
    return req


def asks_an_hour(body: Any) -> bool:
    """Whether a request marks any block for a one-hour prompt cache (Anthropic's
    ``cache_control`` with ``ttl: "1h"``: on its tools, system blocks, message parts, or the
    request itself), in its own shape or the chat form."""

    def hour(obj: Any) -> bool:
        mark = obj.get("cache_control") if isinstance(obj, dict) else None
        return isinstance(mark, dict) and mark.get("ttl") == "1h"

    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else []

    if not isinstance(body, dict):
        return False
    blocks = [body, *listed(body.get("tools")), *listed(body.get("system"))]
    for m in listed(body.get("messages")):
        blocks += listed(m.get("content")) if isinstance(m, dict) else []
    return any(map(hour, blocks))


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


def _reserve_hosted(req: ChatRequest, settings: EngineSettings, endpoint: str) -> None:
    """The hosted tools `req` runs (those left in it: the edge dropped the rest), reserved:
    each kind's calls at its price, and what they may pull into the prompt as prompt."""
    payload, shared = req.payload, None
    if not (payload.get("tools") or payload.get("mcp_servers") or "web_search_options" in payload):
        return  # most requests: nothing to read
    hosted = HostedTools(settings.hosted_tools)
    uses: list[Use] = []
    if endpoint == "responses":
        for kind, path, tool in responses_api.hosted_tools_in(payload):
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
    elif endpoint == "messages":
        named = payload.get("container")
        if isinstance(named, str) or (isinstance(named, dict) and named.get("id")):
            raise BadRequest(
                "'container': a container by id is not offered through this proxy (containers "
                "belong to the provider account that every user of this hub shares); leave it "
                "out and each request runs in its own",
                code="hosted_tool_not_priced",
                extra={"param": "container"},
            )
        for kind, _, tool in anthropic_api.hosted_tools_in(payload):
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
    elif endpoint == "chat/completions":
        for kind, _ in chat_hosted_tools(payload):
            setting = hosted.of(kind)
            uses.append(
                Use(kind, setting.max_calls, setting.price_per_call, setting.content_tokens)
            )
    reservation = reserve(uses, shared)
    req.hosted_usd = reservation.usd
    req.hosted_prices = reservation.prices
    req.prompt_tokens += reservation.tokens
