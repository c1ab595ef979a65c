"""A body sent to each endpoint, read by that endpoint's parser: bounded, its model defaulted
and its cost estimated (``Engine.parse``). A request in another API's shape, sent as it came,
is read the way its edge hands the engine (``NativeReader``; the Responses and Messages APIs':
``apis.native``), through its chat form, so it is held to the same bounds as a chat
completion; the engine imports no API."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .admission.hosted_tools import HostedTools, Use, reserve
from .bodies.media import billed_image_tokens
from .bodies.request import (
    ChatRequest,
    RequestLimits,
    parse_chat_request,
    parse_completions_request,
    parse_embeddings_request,
)
from .bodies.usage import chat_hosted_tools
from .settings import EngineSettings
from .upstreams.pool import Key

# the endpoints whose bodies the engine reads itself; another's comes with its reader
CHAT_ENDPOINTS = ("chat/completions", "completions", "embeddings")


class NativeReader(Protocol):
    """How a body in an API's own shape, to go upstream as it came, is read: its chat form
    bounded and estimated as a chat completion (``parse``), and the hosted tools it runs, each
    kind's calls at its price, with the cap they share (``hosted_uses``). `api`: the endpoint
    such a body goes to."""

    @property
    def api(self) -> str: ...

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
    ) -> ChatRequest: ...

    def hosted_uses(
        self, payload: dict[str, Any], hosted: HostedTools
    ) -> tuple[list[Use], int | None]: ...


def check_reader(endpoint: str, native_reader: NativeReader | None) -> None:
    """A body for an API's own endpoint comes with that API's reader, and a chat body with
    none: a Messages body read as a chat completion would be bounded and priced as the wrong
    thing (a mistake of the caller's code, not of the request)."""
    named = None if native_reader is None else native_reader.api
    if named == (None if endpoint in CHAT_ENDPOINTS else endpoint):
        return
    given = repr(named) if named else "none"
    raise ValueError(f"a body for {endpoint!r} came with the reader of {given}")


def image_cost(serving: Sequence[Key], model: str) -> int:
    """The most one image may cost on public `model`, served by the keys `serving`: by the
    provider models its upstreams bill it as (an alias like course-model is billed as the model
    it stands for) and by the public name itself, as its price is looked up (an Azure
    deployment named prod-vision that stands for gpt-4o-mini bills gpt-4o-mini's image
    tokens); the most any model bills while none serves it."""
    if not serving:
        return billed_image_tokens([])
    return billed_image_tokens([model, *(k.spec.provider_model(model) for k in serving)])


def parse_request(
    settings: EngineSettings,
    body: Any,
    endpoint: str,
    default: str,
    headers: Mapping[str, str] | None,
    image: Callable[[str], int],
    wide_window: Callable[[str], bool] = lambda model: False,
    native_reader: NativeReader | None = None,
) -> ChatRequest:
    """A body sent to `endpoint`, bounded and estimated (``Engine.parse``); `image`: what an
    image may cost on a public model; `wide_window`: whether a public model's window may hold a
    million tokens (the admin's ``context_windows``); `native_reader`: how to read a body in
    its own API's shape, sent as it came (its edge's; ``check_reader``)."""
    check_reader(endpoint, native_reader)
    limits, max_tokens = settings.request_limits, settings.default_max_tokens
    if native_reader is not None:  # sent as it is: read (and bounded) through its chat form
        req = native_reader.parse(
            body,
            headers,
            default_model=default,
            default_max_tokens=max_tokens,
            limits=limits,
            image=image,
            wide_window=wide_window,
        )
        _reserve_hosted(req, settings, endpoint, native_reader)
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


def _reserve_hosted(
    req: ChatRequest,
    settings: EngineSettings,
    endpoint: str,
    native_reader: NativeReader | None = None,
) -> None:
    """The hosted tools `req` runs (those left in it: the edge dropped the rest), reserved:
    each kind's calls at its price, and what they may pull into the prompt as prompt."""
    payload, shared = req.payload, None
    if not (payload.get("tools") or payload.get("mcp_servers") or "web_search_options" in payload):
        return  # most requests: nothing to read
    hosted = HostedTools(settings.hosted_tools)
    uses: list[Use] = []
    if native_reader is not None:
        uses, shared = native_reader.hosted_uses(payload, hosted)
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
