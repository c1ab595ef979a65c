"""A body sent to each endpoint, read by that endpoint's parser: bounded, its model defaulted
and its cost estimated (``Engine.parse``). The Responses and Messages APIs are read through
their chat form, so they are held to the same bounds as a chat completion."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .admission.hosted_tools import reserve_usd
from .apis.native import NATIVE_APIS, native_request
from .bodies.media import billed_image_tokens
from .bodies.request import (
    ChatRequest,
    parse_chat_request,
    parse_completions_request,
    parse_embeddings_request,
)
from .formats.anthropic import request as anthropic_api
from .formats.left_out import LeftOut
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
) -> ChatRequest:
    """A body sent to `endpoint`, bounded and estimated (``Engine.parse``); `image`: what an
    image may cost on a public model."""
    limits, max_tokens = settings.request_limits, settings.default_max_tokens
    if endpoint in NATIVE_APIS:  # sent as it is: read (and bounded) through its chat form
        api = responses_api if endpoint == "responses" else anthropic_api
        left = LeftOut()  # the upstream reads what the chat form leaves out: estimated too
        chat = parse_chat_request(
            api.to_chat(body, left),
            default_model=default,
            default_max_tokens=max_tokens,
            limits=limits,
            image=image,
        )
        chat.prompt_tokens += left.tokens
        req = native_request(endpoint, body, chat, headers)
        req.hosted_usd = reserve_usd(settings.hosted_tools, [k for k, _ in left.hosted])
        req.files, req.page_tokens = chat.files, chat.page_tokens  # pages still to count
        return req
    if endpoint == "embeddings":
        return parse_embeddings_request(body, default_model=default, limits=limits)
    if endpoint == "completions":
        return parse_completions_request(
            body, default_model=default, default_max_tokens=max_tokens, limits=limits
        )
    return parse_chat_request(
        body, default_model=default, default_max_tokens=max_tokens, limits=limits, image=image
    )
