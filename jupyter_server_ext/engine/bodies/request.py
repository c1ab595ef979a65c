"""Validation of an incoming chat-completions body, with errors that name the field.

Everything a caller sends is bounded here before it costs anything (the JSON itself is bounded
by ``decode``): the number and length of messages, and every parameter that multiplies what
the answer may cost (``n``, ``best_of``, ``max_tokens``, ``max_completion_tokens``), so a budget
reservation is a true worst case.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rsql_common.hidden_characters import (
    CONTROL_CHARACTERS as CONTROL_CHARACTERS,  # apis/inline reads it
)
from rsql_common.settings import setting
from rsql_common.tokens import most_tokens

from ..errors import BadRequest, OverBudget
from .decode import MAX_CONTAINERS, MAX_ITEMS
from .media import (
    MAX_FILE_PARTS,
    MAX_PAGES,
    PAGE_TEXT_TOKENS,
    SPOKEN_ANSWER_TOKENS,
    audio_fields,
    audio_tokens,
    image_tokens,
    inline_file,
    pdf_tokens,
)
from .streams import chat_error_event
from .usage import ChatUsage, UsageReading

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_CHOICES = 128  # the most choices (n, best_of) OpenAI itself accepts
MAX_TOKENS = 2**31 - 1  # providers read max_tokens as a 32-bit integer
MAX_MODEL_CHARS = 256
_MULTIPLIERS = ("n", "best_of")
_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")
_PROMPT_EXTRAS = ("tools", "functions", "response_format", "tool_choice")  # billed as prompt
TOOL_PROMPT = 530  # and with tools, the system prompt Anthropic writes for them: at most this


@dataclass(frozen=True)
class RequestLimits:
    """Caps on what one request may carry (``c.RSQLProxy.max_json_depth`` etc.)."""

    max_json_depth: int = setting(
        64,
        "Deepest nesting of JSON arrays and objects in a request body.",
        "from 2 to 500",
    )
    max_json_containers: int = setting(
        MAX_CONTAINERS,
        """Most JSON objects and arrays in one request body. Each costs the proxy's event loop
        about half a microsecond to check, so this bounds what one body can take from everyone
        else's requests; a long agent conversation with tools uses a few thousand.""",
        ">= 1",
    )
    max_json_items: int = setting(
        MAX_ITEMS,
        """Most JSON array items and object members in one request body (the default takes
        OpenAI's largest embeddings request, 300,000 token ids, with room to spare).""",
        ">= 1",
    )
    # the host reads the body's bytes itself (``handlers``); the engine bounds what it keeps of a
    # request by the same number (a stored response's conversation)
    max_body_bytes: int = setting(
        4 * 2**20,
        """Largest request body accepted by the proxy's endpoints (bytes); a larger one gets a
        413 before it is read whole. Other handlers of a Jupyter server keep their own limits.""",
        ">= 1024",
    )
    max_messages: int = setting(
        1000,
        "Most messages one chat-completions request may carry.",
        ">= 1",
    )
    max_message_chars: int = setting(
        1_000_000,
        "Longest text of one message (its content, or its text parts together), in characters.",
        ">= 1",
    )
    max_file_parts: int = MAX_FILE_PARTS


@dataclass(frozen=True, slots=True)
class Affinity:
    """A request's conversation, and how long the provider keeps its prompt cache since its
    last use: the key choice keeps it on the account that cache is on (``upstreams.affinity``)."""

    key: str  # a digest: no prompt text, no user name
    seconds: float
    # the user's stable prefix (tools, system text), long enough to be cached: a conversation
    # without a home of its own starts where the user's last one put that prefix ('': none)
    shared: str = ""


def kinds_price(kind: str, provider: str, model: str, payload: dict[str, Any]) -> float | None:
    """A request's hosted calls are charged their kind's price (``ChatRequest.call_price``)."""
    return None


@dataclass
class ChatRequest:
    payload: dict[str, Any]  # what goes upstream (model filled in)
    model: str
    stream: bool
    wants_usage_chunk: bool  # the client itself asked for stream_options.include_usage
    prompt_tokens: int  # estimate
    max_tokens: int | None  # completion tokens per choice: the client's, or the default
    choices: int = 1  # completions the provider generates and bills (n, best_of)
    max_tokens_set: bool = True  # False: the client set no limit and max_tokens is our default
    prediction_tokens: int = 0  # predicted output: rejected prediction tokens are billed too
    endpoint: str = "chat/completions"  # the upstream path under its base_url
    # the field a budget cap is written to when the client set no limit (None: no completion)
    cap_field: str | None = "max_completion_tokens"
    # headers for the upstream beside the payload: a request sent as it was (``apis.native``)
    # keeps the API's own feature flags (Anthropic's anthropic-beta)
    upstream_headers: dict[str, str] = field(default_factory=dict)
    # inline PDFs (data, tokens by size) whose pages are still to be counted (``count_files``),
    # each page its text and image (`page_tokens`)
    files: list[tuple[str, int]] = field(default_factory=list)
    page_tokens: int = 0
    # reserved at its model's long-context rates (``ModelChoice.admission_price``): a request
    # charged its worst case or an estimate is charged at them too
    long_context: bool = False
    # what the hosted tools it runs may cost at most (``hosted_tools.reserve``), reserved
    # beside its tokens (what they may pull into the prompt is in `prompt_tokens`), and each
    # kind's price a call for this request (a container's by its size), which settles it
    hosted_usd: float = 0.0
    hosted_prices: tuple[tuple[str, float], ...] = ()
    # what the answer says of the request itself (x-rsql-dropped: hosted tools left out)
    reply_headers: dict[str, str] = field(default_factory=dict)
    # it asks a provider's prompt cache to keep something for an hour (Anthropic's
    # cache_control ttl "1h"): a write the usage does not say the length of is an hour's
    cache_hour: bool = False
    # its conversation, kept on the account its prompt cache is on (``upstreams.affinity``)
    affinity: Affinity | None = None
    # one of the kernel's own: its stable prefix is marked for Anthropic's cache
    # (``prompt_cache.for_upstream``)
    mark_prefix: bool = False
    # sent as it was, in its own API's shape (``apis.native``): its answer's events go on as
    # they came, and the engine learns what it needs of that API from the fields below
    native: bool = False
    # the passed header asking for the model's long context (billed at its rates past a prompt
    # length) as (header, value), or None: only ``native_request`` writes it and `upstream_headers`
    long_context_asked: tuple[str, str] | None = None
    # the event that ends its stream when the upstream's breaks off, in its API's shape
    error_event: Callable[[str], bytes] = field(default=chat_error_event)
    # what reads its answer's usage, in its API's shape (``bodies.usage``)
    usage_reader: Callable[[], UsageReading] = field(default=ChatUsage)
    # its API names the end user in ``metadata.user_id`` alone (the Messages API's shape)
    user_in_metadata: bool = False
    # the field that sends audio (an ``input_audio`` part, an earlier spoken answer) and the
    # one that asks for a spoken answer ('': none): billed at the model's audio rates
    audio_in: str = ""
    audio_out: str = ""
    # what its API's provider bills a hosted call (kind, upstream kind, provider model,
    # payload) where less than the kind's price, if the admin did not price it (``Replies``)
    call_price: Callable[[str, str, str, dict[str, Any]], float | None] = field(default=kinds_price)

    @property
    def completion_tokens(self) -> int:
        """The most completion tokens this request can be billed for."""
        return self.choices * ((self.max_tokens or 0) + self.prediction_tokens)

    @property
    def audio(self) -> tuple[bool, bool]:
        """Whether it sends audio, and asks for a spoken answer (``Price.worst``)."""
        return bool(self.audio_in), bool(self.audio_out)

    @property
    def reserve_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# -- estimates -----------------------------------------------------------------------------


def _json_tokens(value: Any) -> int:
    try:
        return most_tokens(json.dumps(value))
    except (TypeError, ValueError):  # not JSON (an in-process caller's object): the upstream says
        return 0


def estimate_tokens(
    messages: list[dict[str, Any]],
    model: str = "",
    *,
    image: int | None = None,
    files: list[tuple[str, int]] | None = None,
) -> int:
    """Prompt tokens, estimated on the generous side; settled to the provider's count later.
    Images cost what `model` may bill for them at most (``media``), or `image` each. Inline
    PDFs count by their size here and go into `files`, for their pages to be counted apart
    (``count_files``): without `files`, by their size only (an estimate shown, not reserved).

    Why not tiktoken: it downloads its vocabularies at run time, and providers' own tokenizers
    differ anyway; the estimate only sizes reservations, which are settled to real usage.
    """
    image = image_tokens(model) if image is None else image
    tokens = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            tokens += most_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                # by its type first: a part of another type that also holds a "text" is
                # billed as what its type says (a recording, an image, a PDF), not as the text
                kind = part.get("type")
                if kind == "text" and isinstance(part.get("text"), str):
                    tokens += most_tokens(part["text"])
                elif kind == "image_url":
                    tokens += image
                elif kind == "file":  # a PDF: by its pages
                    size = _json_tokens(part)
                    data = inline_file(part)
                    if data is None:  # a file id: the provider holds it, its size unknown here
                        tokens += max(size, MAX_PAGES * (PAGE_TEXT_TOKENS + image))
                    else:
                        tokens += size
                        if files is not None:
                            files.append((data, size))
                elif kind in ("input_audio", "audio_url"):  # by the seconds it can hold
                    tokens += audio_tokens(part) or _json_tokens(part)
                else:  # another kind: by its size
                    tokens += _json_tokens(part)
        if isinstance(m.get("audio"), dict):  # an earlier spoken answer, heard again
            tokens += SPOKEN_ANSWER_TOKENS
        if m.get("tool_calls"):
            tokens += _json_tokens(m["tool_calls"])
    return tokens + 4 * len(messages) + 3


async def count_files(
    req: ChatRequest,
    run: Callable[..., Awaitable[Any]],
    user: str,
    before_worker: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Add to `req`'s prompt what its inline PDFs may cost by their pages: on the event loop
    within a budget of a few milliseconds, else in the worker process (`run`: ``Offload.run``,
    in `user`'s turn), as inflating and scanning a crafted file is CPU work without end.
    `before_worker`: awaited before a job goes to the worker (the request's admission: no
    user's work reaches the worker everyone shares before their limits let it)."""
    if not req.files:
        return
    files, req.files = req.files, []
    try:
        extra = pdf_tokens(files, req.page_tokens, inline=True)
    except OverBudget:
        if before_worker is not None:
            await before_worker()
        extra = await run(user, pdf_tokens, files, req.page_tokens)
    req.prompt_tokens += extra


# -- validation ----------------------------------------------------------------------------


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, extra={"param": param})


def _int_field(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        shown = (
            repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
        )
        raise _bad(f"'{name}' must be an integer from {lo} to {hi}, got {shown[:60]}", name)
    return value


def _check_messages(messages: Any, limits: RequestLimits) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list of {role, content} objects", "messages")
    if len(messages) > limits.max_messages:
        raise _bad(
            f"'messages' has {len(messages)} messages; at most {limits.max_messages} are accepted",
            "messages",
        )
    file_parts = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}] must be an object, got {type(m).__name__}", f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            shown = (
                repr(role)[:40] if isinstance(role, str) or role is None else type(role).__name__
            )
            raise _bad(
                f"messages[{i}].role must be one of {sorted(ROLES)}, got {shown}",
                f"messages[{i}].role",
            )
        content = m.get("content")
        chars = 0
        if isinstance(content, str):
            chars = len(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _bad(
                        f"{where} must be an object with a 'type', like {{'type': 'text', 'text': ...}}",
                        where,
                    )
                file_parts += part["type"] == "file"
                if file_parts > limits.max_file_parts:  # each is read to count its pages
                    total = sum(
                        isinstance(p, dict) and p.get("type") == "file"
                        for n in messages
                        if isinstance(n, dict) and isinstance(n.get("content"), list)
                        for p in n["content"]
                    )
                    raise _bad(
                        f"the request holds {total} file parts; at most "
                        f"{limits.max_file_parts} are accepted in one request",
                        f"messages[{i}].content",
                    )
                text = part.get("text")
                if part["type"] == "text" and not isinstance(text, str):
                    raise _bad(f"{where}.text must be a string", f"{where}.text")
                if isinstance(text, str):
                    chars += len(text)
        elif content is not None:
            raise _bad(
                f"messages[{i}].content must be a string or a list of parts, got {type(content).__name__}",
                f"messages[{i}].content",
            )
        if chars > limits.max_message_chars:
            raise _bad(
                f"messages[{i}].content is {chars} characters long; at most {limits.max_message_chars} "
                "are accepted",
                f"messages[{i}].content",
            )
    return messages


def parse_chat_request(
    body: Any,
    *,
    default_model: str,
    default_max_tokens: int,
    limits: RequestLimits | None = None,
    image: Callable[[str], int] = image_tokens,
) -> ChatRequest:
    """`image`: the most one image may cost on a public model (by default, by its name)."""
    limits = limits or RequestLimits()
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object with 'model' and 'messages'")
    messages = _check_messages(body.get("messages"), limits)
    model = _check_model(body, default_model)
    stream = _check_stream(body)
    # both limits may come; a provider may honour either, so the larger one is reserved
    given = [
        v for v in (_int_field(body, f, 1, MAX_TOKENS) for f in _TOKEN_FIELDS) if v is not None
    ]
    choices = max(
        [1]
        + [v for v in (_int_field(body, f, 1, MAX_CHOICES) for f in _MULTIPLIERS) if v is not None]
    )
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature <= 2
    ):
        raise _bad(
            f"'temperature' must be a number from 0 to 2, got {str(temperature)[:40]}",
            "temperature",
        )
    for name in ("frequency_penalty", "presence_penalty"):  # OpenAI's range; NaN is refused too
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not -2 <= value <= 2
        ):
            raise _bad(f"'{name}' must be a number from -2 to 2, got {str(value)[:40]}", name)
    stream_options = _check_stream_options(body)
    wants_usage = bool(stream_options and stream_options.get("include_usage"))
    check_standard_service(body)

    per_image = image(model)
    files: list[tuple[str, int]] = []
    prompt_tokens = estimate_tokens(messages, image=per_image, files=files)
    prompt_tokens += sum(_json_tokens(body[n]) for n in _PROMPT_EXTRAS if body.get(n) is not None)
    prompt_tokens += TOOL_PROMPT if body.get("tools") or body.get("functions") else 0
    prediction = body.get("prediction")
    prediction_tokens = _json_tokens(prediction) if prediction is not None else 0

    audio_in, audio_out = audio_fields(body)
    payload = dict(body)
    payload["model"] = model
    if stream:
        # ask for the usage chunk so streamed requests are metered exactly; dropped again
        # before the client sees it unless the client asked for it too
        payload["stream_options"] = {**(stream_options or {}), "include_usage": True}
    return ChatRequest(
        payload=payload,
        model=model,
        stream=stream,
        wants_usage_chunk=wants_usage,
        prompt_tokens=prompt_tokens,
        max_tokens=max(given) if given else default_max_tokens,
        choices=choices,
        max_tokens_set=bool(given),
        prediction_tokens=prediction_tokens,
        files=files,
        page_tokens=PAGE_TEXT_TOKENS + per_image,
        audio_in=audio_in,
        audio_out=audio_out,
    )


def _check_model(body: dict[str, Any], default_model: str) -> str:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad(f"'model' must be a string, got {type(model).__name__}", "model")
    model = model or default_model
    if not model:
        raise _bad("'model' is required (no default model is configured)", "model")
    if len(model) > MAX_MODEL_CHARS or not model.isprintable():
        raise _bad(
            f"'model' must be a model id of at most {MAX_MODEL_CHARS} printable characters", "model"
        )
    return model


def _check_stream(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad(f"'stream' must be true or false, got {type(stream).__name__}", "stream")
    return stream


# Fields that choose a service the provider bills above the prices the proxy charges, each with
# the values billed at them at most (docs/admins/providers.md, "Fields that change a price"):
# OpenAI's service tiers ("flex" is half the price; "priority", renamed "fast", and "scale" are
# dearer), fast mode (``speed``: a multiple of the model's price), US-only inference
# (``inference_geo``: 1.1x). OpenAI-compatible gateways pass the last two on to Claude. Any other
# value would let a request cost more than its reservation: refused, naming the field.
STANDARD_SERVICE: dict[str, tuple[str, ...]] = {
    "service_tier": ("auto", "default", "flex"),
    "speed": ("standard",),
    "inference_geo": ("global",),
}


def check_standard_service(
    body: dict[str, Any], standard: dict[str, tuple[str, ...]] = STANDARD_SERVICE
) -> None:
    """Refuse a field of `body` asking for a service billed above the price table."""
    for name, allowed in standard.items():
        value = body.get(name)
        if value is not None and value not in allowed:
            shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
            raise _bad(
                f"'{name}' {shown} is not offered through this proxy: the provider bills it "
                f"above the prices the proxy charges; send {' or '.join(map(repr, allowed))} "
                "or leave it out",
                name,
            )


def _check_stream_options(body: dict[str, Any]) -> dict[str, Any] | None:
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise _bad("'stream_options' must be an object", "stream_options")
    return stream_options


def _input_tokens(value: Any, name: str, limits: RequestLimits) -> int:
    """Tokens of an embeddings `input` or a legacy `prompt`: a string, a list of strings, a list
    of token ids, or a list of such lists."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise _bad(f"'{name}' must be a string, a list of strings or a list of token ids", name)
    if len(items) > limits.max_messages * 2:
        raise _bad(
            f"'{name}' has {len(items)} items; at most {limits.max_messages * 2} are accepted", name
        )
    tokens = 0
    for i, item in enumerate(items):
        if isinstance(item, str):
            if len(item) > limits.max_message_chars:
                raise _bad(
                    f"{name}[{i}] is longer than {limits.max_message_chars} characters",
                    f"{name}[{i}]",
                )
            tokens += most_tokens(item) + 1
        elif isinstance(item, int) and not isinstance(item, bool):
            tokens += 1
        elif isinstance(item, list) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in item
        ):
            tokens += len(item)
        else:
            raise _bad(f"{name}[{i}] must be a string or a list of token ids", f"{name}[{i}]")
    return tokens


def _prompt_count(prompt: Any) -> int:
    """How many prompts a legacy `prompt` holds: a string or one list of token ids is one; a list
    of strings or of token-id lists is one per item."""
    if isinstance(prompt, list) and prompt and not all(isinstance(t, int) for t in prompt):
        return len(prompt)
    return 1


def parse_completions_request(
    body: Any, *, default_model: str, default_max_tokens: int, limits: RequestLimits | None = None
) -> ChatRequest:
    """The legacy ``POST v1/completions``: `prompt` instead of messages; 16 tokens by default."""
    limits = limits or RequestLimits()
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object with 'model' and 'prompt'")
    model = _check_model(body, default_model)
    prompt_tokens = (
        _input_tokens(body.get("prompt", ""), "prompt", limits)
        if body.get("prompt", "") != ""
        else 1
    )
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise _bad("'suffix' must be a string", "suffix")
    if suffix and len(suffix) > limits.max_message_chars:
        raise _bad(f"'suffix' is longer than {limits.max_message_chars} characters", "suffix")
    if suffix:  # the text after the insertion point is prompt too, after each of a batch's
        prompt_tokens += most_tokens(suffix) * _prompt_count(body.get("prompt", ""))
    stream = _check_stream(body)
    check_standard_service(body)
    max_tokens = _int_field(body, "max_tokens", 0, MAX_TOKENS)
    choices = max(
        [1]
        + [v for v in (_int_field(body, f, 1, MAX_CHOICES) for f in _MULTIPLIERS) if v is not None]
    )
    # a list of prompts is a batch: the provider completes (and bills) each one n times
    choices *= _prompt_count(body.get("prompt", ""))
    stream_options = _check_stream_options(body)
    payload = dict(body)
    payload["model"] = model
    if stream:
        payload["stream_options"] = {**(stream_options or {}), "include_usage": True}
    # the API's own default is 16 tokens; the reservation assumes the smaller of it and ours
    return ChatRequest(
        payload=payload,
        model=model,
        stream=stream,
        wants_usage_chunk=bool(stream_options and stream_options.get("include_usage")),
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens if max_tokens is not None else min(16, default_max_tokens),
        choices=choices,
        max_tokens_set=max_tokens is not None,
        endpoint="completions",
        cap_field="max_tokens",
    )


def parse_embeddings_request(
    body: Any, *, default_model: str, limits: RequestLimits | None = None
) -> ChatRequest:
    """``POST v1/embeddings``: priced per input token, nothing generated."""
    limits = limits or RequestLimits()
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object with 'model' and 'input'")
    model = _check_model(body, default_model)
    if "input" not in body:
        raise _bad("'input' is required: a string or a list of strings", "input")
    prompt_tokens = _input_tokens(body["input"], "input", limits)
    if body.get("stream"):
        raise _bad("embeddings cannot be streamed", "stream")
    payload = dict(body)
    payload["model"] = model
    return ChatRequest(
        payload=payload,
        model=model,
        stream=False,
        wants_usage_chunk=False,
        prompt_tokens=prompt_tokens,
        max_tokens=0,
        max_tokens_set=True,
        endpoint="embeddings",
        cap_field=None,
    )
