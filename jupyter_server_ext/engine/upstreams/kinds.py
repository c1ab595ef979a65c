"""The provider kinds, one registry (``KINDS``): what each kind is (local or hosted, the APIs it
speaks natively, how its token window counts, its default URL) and how it is spoken over HTTP:
its URLs, authentication, request and answer bodies, error bodies and rate-limit signals,
turned into the one OpenAI form the engine and its callers use.

The upstreams setting accepts exactly the kinds here (``specs.PROVIDERS``), so a kind nobody
wrote stops start-up naming its upstream. ``HTTPTransport`` does the HTTP; a ``*Kind`` says
what to send and how to read what came back. ``kind_for`` is the one place that picks a kind.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from ..bodies.reading import read_json
from ..errors import UpstreamFailure
from . import anthropic

# Provider response headers a caller's tools read, passed on under this prefix (as LiteLLM
# does): never the provider's rate-limit headers (the caller's own limits are ours, in
# x-ratelimit-*), never one that may carry a key, an account or a deployment name.
PASSED_PREFIX = "llm_provider-"
_MAX_PASSED_CHARS = 200
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def passed_headers(headers: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The provider's headers in `names` as ``llm_provider-<name>``: short printable values only."""
    out = {}
    for name in names:
        value = headers.get(name)
        if (
            isinstance(value, str)
            and len(value) <= _MAX_PASSED_CHARS
            and _PRINTABLE.fullmatch(value)
        ):
            out[PASSED_PREFIX + name] = value
    return out


class Upstream(Protocol):
    """What a kind reads of an upstream's settings (``specs.UpstreamSpec`` is one)."""

    @property
    def provider(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def api_version(self) -> str: ...
    @property
    def auth(self) -> str: ...


class OpenAIKind:
    """Any OpenAI-compatible API: OpenAI, Groq, vLLM, Ollama, llama.cpp's server, TGI."""

    kind = "openai"
    # the model runs in a worker process of the proxy (transport.local): no HTTP, no key
    local = False
    # APIs besides chat completions the provider speaks itself (a request in one reaches it as
    # sent); an OpenAI-compatible server says so per upstream (``responses_api``)
    native_apis: tuple[str, ...] = ()
    # the provider's token window counts a request's answer budget (max_tokens) as well as its
    # prompt when it arrives (OpenAI, Azure and Groq do; Anthropic's and Gemini's count input)
    window_counts_answer = True
    # the provider caches only the prompt prefix a request marks for it (``cache_control``), so
    # our own clients' stable prefix is marked on the way (``prompt_cache.for_upstream``):
    # Anthropic; OpenAI-compatible providers cache a long prefix by themselves
    caches_marked_only = False
    # the provider bills a model's long-context rates only on a request that asks for them
    # (Anthropic's ``context-1m`` beta; without it a prompt past the threshold is refused), so
    # a request that does not ask is never charged them (``model_choice``)
    long_context_on_request = False
    # what the provider bills a prompt token read from its cache and written to it, as
    # multiples of the input price (a read, a 5-minute write, an hour's): an admin's price that
    # leaves a rate out is read with these (``prices.parse_prices``); None: the provider's cache
    # rates vary by model (OpenAI's reads; it bills no write), so a rate left out is the input
    # price, never below the bill
    cache_multipliers: tuple[float, float, float] | None = None
    default_base_url = ""  # the API root its official SDK defaults to, where there is one
    # the base URL an error about a missing or malformed one shows (its default where it has
    # one; an OpenAI-compatible provider's otherwise)
    base_url_example = "https://api.groq.com/openai/v1"
    passed: tuple[str, ...] = ("x-request-id", "openai-processing-ms", "openai-version")
    endpoints: tuple[str, ...] = ("chat/completions", "completions", "embeddings")
    # whether ``stream`` changes the events: a kind that passes them on as they come is read
    # with one generator an event fewer (transport.remote); set for each kind that overrides it
    translates_streams = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.translates_streams = cls.stream is not OpenAIKind.stream
        if cls.default_base_url and "base_url_example" not in cls.__dict__:
            cls.base_url_example = cls.default_base_url

    def url(self, spec: Upstream, endpoint: str, model: str) -> str:
        return f"{spec.base_url}/{endpoint}"

    def models_url(self, spec: Upstream) -> str:
        return spec.base_url + "/models"

    def auth(self, spec: Upstream) -> dict[str, str]:
        # a self-hosted server may take no key: then no Authorization header at all
        return {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}

    def body(
        self, payload: dict[str, Any], endpoint: str, model: str, max_tokens: int
    ) -> dict[str, Any]:
        return {**payload, "model": model} if "model" in payload else payload

    def limits(self, headers: Mapping[str, str], now: float) -> Mapping[str, str]:
        """The rate-limit headers the pool reads (OpenAI's x-ratelimit-* and retry-after)."""
        return headers

    def retry_after(self, headers: Mapping[str, str], body: bytes) -> float | None:
        return _seconds(headers.get("retry-after"))

    def error(self, status: int, body: bytes) -> bytes:
        """An error answer's body in OpenAI's form."""
        return body

    def answer(self, body: bytes, model: str) -> bytes:
        return body

    async def stream(self, events: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        """The stream's events as OpenAI's chunks: here, as they come."""
        async for event in events:
            yield event

    def models_of(self, body: bytes) -> list[str]:
        """Model ids in a models listing (OpenAI's {"data": [{"id": ...}]})."""
        listing = read_json(body)
        data = listing.get("data") if isinstance(listing, dict) else None
        ids = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
        return [i for i in ids if isinstance(i, str) and 0 < len(i) <= 256 and i.isprintable()][
            :500
        ]


class AzureKind(OpenAIKind):
    """Azure OpenAI: a deployment per model, in the deployments URL form with a dated
    ``api-version``, or the v1 API (``api_version: "v1"``), where the deployment is the body's
    model. Key in ``api-key``, or an Entra ID token as a bearer. Its 429s say how long to wait
    in ``retry-after-ms`` as well as in whole seconds."""

    kind = "azure"
    base_url_example = "https://NAME.openai.azure.com"  # each resource its own
    passed = ("x-request-id", "apim-request-id", "x-ms-region", "openai-processing-ms")

    def url(self, spec: Upstream, endpoint: str, model: str) -> str:
        if spec.api_version == "v1":
            return f"{spec.base_url}/openai/v1/{endpoint}"
        deployment = urllib.parse.quote(model, safe="")
        return f"{spec.base_url}/openai/deployments/{deployment}/{endpoint}?api-version={spec.api_version}"

    def models_url(self, spec: Upstream) -> str:
        if spec.api_version == "v1":
            return f"{spec.base_url}/openai/v1/models"
        return f"{spec.base_url}/openai/models?api-version={spec.api_version}"

    def auth(self, spec: Upstream) -> dict[str, str]:
        if spec.auth == "entra":
            return {"Authorization": f"Bearer {spec.api_key}"}
        return {"api-key": spec.api_key}

    def retry_after(self, headers: Mapping[str, str], body: bytes) -> float | None:
        ms = _seconds(headers.get("retry-after-ms"))
        return ms / 1000 if ms is not None else super().retry_after(headers, body)

    async def stream(self, events: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        """Azure begins a stream with a chunk of its own: no choices, an empty id, object and
        model, and the prompt's content-filter results. Clients that hold chunks to OpenAI's
        schema fail on it, so it is not passed on; its results ride on the next chunk (a chat
        or a legacy completions one), as the field ``prompt_filter_results`` the caller can
        read there."""
        held: Any = None
        async for event in events:
            obj = _filter_chunk(event)
            if obj is not None:
                held = obj["prompt_filter_results"]
                continue
            if held is not None:
                data = _event_object(event)
                if data is not None and data.get("object") and data.get("id"):
                    data["prompt_filter_results"] = held
                    event, held = b"data: " + json.dumps(data).encode() + b"\n\n", None
            yield event


class GeminiKind(OpenAIKind):
    """Google Gemini through its OpenAI-compatible endpoint. What differs from OpenAI: error
    answers may come as a one-item JSON list of Google's error object, and a 429 says how
    long to wait in its ``google.rpc.RetryInfo`` detail (``"retryDelay": "30s"``), not in a
    header."""

    kind = "gemini"
    window_counts_answer = False
    default_base_url = "https://generativelanguage.googleapis.com/v1beta/openai"
    passed = ("x-request-id", "server-timing")
    endpoints = ("chat/completions", "embeddings")

    def error(self, status: int, body: bytes) -> bytes:
        err = _google_error(body)
        if err is None:
            return body
        return json.dumps(
            {
                "error": {
                    "message": str(err.get("message") or f"HTTP {status}"),
                    "type": str(err.get("status") or "error").lower(),
                    "param": None,
                    "code": str(err.get("status") or status),
                }
            }
        ).encode()

    def retry_after(self, headers: Mapping[str, str], body: bytes) -> float | None:
        found = super().retry_after(headers, body)
        err = _google_error(body)
        if found is not None or err is None:
            return found
        details = err.get("details")
        for detail in details if isinstance(details, list) else ():
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(
                "google.rpc.RetryInfo"
            ):
                delay = detail.get("retryDelay")
                delay = delay if isinstance(delay, str) else ""
                return _seconds(delay[:-1] if delay.endswith("s") else delay)
        return None


class AnthropicKind(OpenAIKind):
    """Anthropic's native Messages API, translated both ways (``upstreams/anthropic``)."""

    kind = "anthropic"
    native_apis = ("messages",)
    window_counts_answer = False
    caches_marked_only = True
    long_context_on_request = True
    # Anthropic's pricing page, every model: a read 0.1x input, a 5-minute write 1.25x, an
    # hour's 2x
    cache_multipliers = (0.1, 1.25, 2.0)
    default_base_url = "https://api.anthropic.com"
    passed = ("request-id",)
    endpoints = ("chat/completions",)

    def url(self, spec: Upstream, endpoint: str, model: str) -> str:
        return spec.base_url + "/v1/messages"

    def models_url(self, spec: Upstream) -> str:
        return spec.base_url + "/v1/models"

    def auth(self, spec: Upstream) -> dict[str, str]:
        return {"x-api-key": spec.api_key, "anthropic-version": anthropic.ANTHROPIC_VERSION}

    def body(
        self, payload: dict[str, Any], endpoint: str, model: str, max_tokens: int
    ) -> dict[str, Any]:
        return anthropic.messages_request(payload, model=model, default_max_tokens=max_tokens)

    def limits(self, headers: Mapping[str, str], now: float) -> Mapping[str, str]:
        return anthropic.rate_headers(headers, time.time())

    def error(self, status: int, body: bytes) -> bytes:
        return anthropic.openai_error(status, body)

    def answer(self, body: bytes, model: str) -> bytes:
        try:
            message = json.loads(body)
        except ValueError:
            return body  # not JSON: charged as an answer without usage, its reservation
        except RecursionError:  # nested past what any JSON reader here takes: no answer at all
            raise UpstreamFailure("server", "its answer is nested too deep to read", 502) from None
        if not isinstance(message, dict):
            return body
        return json.dumps(
            anthropic.chat_completion(message, model=model, created=int(time.time()))
        ).encode()

    async def stream(self, events: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        translator = anthropic.StreamTranslator(model=model, created=int(time.time()))
        async for event in events:
            for out in translator.feed(event):
                yield out
            if translator.done:
                return


class LlamaCppKind(OpenAIKind):
    """A GGUF model run by llama-cpp-python in the proxy's own worker process
    (``transport.local``): chat completions in OpenAI's form, never spoken over HTTP."""

    kind = "llama_cpp"
    local = True
    window_counts_answer = False
    endpoints = ("chat/completions",)  # the local model only chats (``transport.local``)


# every provider kind the upstreams setting accepts, by the name it is given there
KINDS: dict[str, OpenAIKind] = {
    k.kind: k for k in (OpenAIKind(), AzureKind(), AnthropicKind(), GeminiKind(), LlamaCppKind())
}


def kind_for(spec: Upstream) -> OpenAIKind:
    """`spec`'s kind. Never a guess: a kind the upstreams setting does not know stops start-up,
    naming the upstream (``specs.parse_upstream``)."""
    return KINDS[spec.provider]


def _event_object(event: bytes) -> dict[str, Any] | None:
    if not event.startswith(b"data: {"):
        return None
    obj = read_json(event[6:])
    return obj if isinstance(obj, dict) else None


def _filter_chunk(event: bytes) -> dict[str, Any] | None:
    """Azure's prompt-filter chunk (no choices, no object), or None for any other event."""
    if b"prompt_filter_results" not in event:
        return None
    obj = _event_object(event)
    if obj is None or obj.get("choices") or obj.get("object"):
        return None
    return obj if "prompt_filter_results" in obj else None


def _seconds(value: str | None) -> float | None:
    """A `Retry-After`'s wait: seconds, or an HTTP-date (RFC 9110 10.2.3) read against the wall
    clock, the provider's own (the engine's clock need not be one)."""
    if value is None:
        return None
    try:
        secs = float(value)
    except ValueError:
        try:
            secs = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None  # neither: the reset headers or our default cover it
    return max(0.0, secs) if math.isfinite(secs) else None


def _google_error(body: bytes) -> dict[str, Any] | None:
    """Google's error object, from ``{"error": {...}}`` or ``[{"error": {...}}]``."""
    obj = read_json(body)
    if isinstance(obj, list) and obj:
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    return err if isinstance(err, dict) and "status" in err else None
