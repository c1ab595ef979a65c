"""The transport interface: how the engine reaches an upstream.

Two transports implement it: ``http_transport`` (OpenAI-compatible HTTP APIs) and ``local``
(the llama.cpp model in a child process); ``transports`` says which one serves an upstream.
Both answer the same way: an ``UpstreamAnswer`` for a 2xx, an ``UpstreamFailure`` saying what
kind of failure it was, so the engine decides on failover in one place.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...bodies.reading import read_json, scrub
from ..specs import UpstreamSpec

# a "model" key with a string value; a key inside a JSON string cannot match, its quotes escaped
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')
# where an answer's own model stands besides its top level: the object a Responses event
# carries ("response"), the Message of Anthropic's message_start ("message")
_ANSWER_OBJECTS = ("response", "message")


def anonymized(text: str, spec: UpstreamSpec) -> str:
    """A provider's error text as a caller may read it: no key, no organization or project id,
    no provider-side model or deployment name (each becomes the public name callers use), no
    host name of the upstream (an Azure resource, a lab server). The text is usually JSON, so
    a public name goes in JSON-escaped."""
    text = scrub(text, spec.api_key)
    names = {p: pub for pub, p in spec.model_map.items() if p and p != pub}
    if names:
        # one pass, longest name first: "ft-x-large" is not read as "ft-x" and a suffix, and a
        # public name put in is never replaced again
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        text = re.sub(alternatives, lambda m: json.dumps(names[m.group(0)])[1:-1], text)
    host = spec.base_url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    if host and host not in ("127.0.0.1", "localhost"):
        text = text.replace(host, "[upstream]")
    return text


@functools.lru_cache(maxsize=256)
def _public_field(public: str) -> tuple[bytes, bytes, bytes]:
    """`public` as it stands inside a JSON string, its model field, and that field as a
    replacement template."""
    value = json.dumps(public).encode()[1:-1]
    field = b'"model": "' + value + b'"'
    return value, field, field.replace(b"\\", b"\\\\")


def with_public_model(data: bytes, public: str) -> bytes:
    """An answer (or one event of it) whose own ``"model"`` names the public model: a provider
    answers with its own name (an Azure deployment, a fine-tune's id, a dated snapshot), which
    callers must not learn.

    The stream path is hot, so a chunk costs one native search: it is returned as it came when
    its model already is the public name, else with that one field replaced. Only an answer
    with more than one "model" string (a tool's input with a model of its own) is parsed, so
    that the answer's model is replaced and the tool's input is not."""
    if b'"model"' not in data:
        return data
    first = _MODEL_FIELD.search(data)
    if first is None:
        return data
    value, field, template = _public_field(public)
    if data.find(b'"model"', first.end()) < 0:  # the one model field, as every chunk has
        if first.group(1) == value:
            return data
        return data[: first.start()] + field + data[first.end() :]
    found = _MODEL_FIELD.findall(data)
    if all(f == value for f in found):
        return data
    answer = _with_answer_model(data, public) if len(found) > 1 else None
    # no one JSON object to place it in: every model string names the public model, so the
    # provider's name never passes
    return answer if answer is not None else _MODEL_FIELD.sub(template, data)


def _with_answer_model(data: bytes, public: str) -> bytes | None:
    """`data` (a JSON answer, or one SSE event of an answer) with the model of the answer
    itself set to `public`, at its top level and in the object an event carries; None when
    `data` holds no one JSON object."""
    at = data.find(b"{")
    end = len(data.rstrip())
    obj = read_json(data[at:end]) if at >= 0 else None
    if not isinstance(obj, dict):
        return None
    for holder in (obj, *(obj.get(k) for k in _ANSWER_OBJECTS)):
        if isinstance(holder, dict) and isinstance(holder.get("model"), str):
            holder["model"] = public
    return data[:at] + json.dumps(obj).encode() + data[end:]


@dataclass
class UpstreamAnswer:
    """A provider's answer (a 2xx) as its transport read it: a JSON body, or a stream's first
    event and the rest; the engine turns it into the client's ``Reply`` (``replies``)."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""  # non-streaming answer
    events: AsyncIterator[bytes] | None = None  # streaming: SSE events, each ending in a blank line
    first: bytes = b""  # the first event, read before the engine commits to this upstream
    close: Any = None  # releases the connection
    # provider headers for the caller (llm_provider-*)
    passed: Mapping[str, str] = field(default_factory=dict)
    # seconds from the answer's head (its status line) to this reply (a stream's first event, a
    # JSON answer's body): a provider that answers has counted the request by its head, so the
    # key's window is stamped that much earlier (``Pool.succeeded``)
    head_wait: float = 0.0


class HTTPResponse(Protocol):
    """An answer's status and headers (names lower-cased), its body read whole or as it comes:
    what ``HTTPTransport`` reads of any HTTP client's answer."""

    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self, timeout: float | None = None) -> bytes: ...

    def iter_chunks(self, timeout: float | None = None) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class HTTPClient(Protocol):
    """What ``HTTPTransport`` sends its requests through: ``http11.HTTP11Client`` to a provider,
    ``memory.MemoryClient`` in a test (every provider kind's translation and error reading run
    as they do over the wire)."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes = b"",
        timeout: float | None = None,
    ) -> HTTPResponse: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    """Carries requests to one kind of upstream."""

    async def send(
        self,
        spec: UpstreamSpec,
        payload: dict[str, Any],
        *,
        stream: bool,
        timeout: float,
        endpoint: str = "chat/completions",
        max_tokens: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamAnswer:
        """The upstream's 2xx answer (a stream: its first event already read, so failover stays
        possible until then); raises ``UpstreamFailure`` for anything else. `max_tokens`: the
        completion limit to send a provider that requires one, when the request set none;
        `headers`: the request's own for the upstream (an API's feature flags)."""
        ...

    async def get_models(self, spec: UpstreamSpec, timeout: float) -> int:
        """Status of a models listing with this upstream's key (0: no answer): the health
        check of a disabled key."""
        ...

    async def close(self) -> None: ...
