"""The transport interface: how the engine reaches an upstream.

Two transports implement it: ``http_transport`` (OpenAI-compatible HTTP APIs) and ``local``
(the llama.cpp model in a child process); ``transports`` says which one serves an upstream.
Both answer the same way: an ``UpstreamReply`` for a 2xx, an ``UpstreamFailure`` saying what
kind of failure it was, so the engine decides on failover in one place.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..specs import UpstreamSpec

# Provider error texts sometimes quote part of the key ("Incorrect API key provided: sk-ab***yz").
_KEYLIKE = re.compile(
    r"(?<![A-Za-z0-9])(?:sk|gsk|xai|hf)[-_][A-Za-z0-9_*.-]{4,}|(?<![A-Za-z0-9])AIza[A-Za-z0-9_-]{8,}"
)


def scrub(text: str, secret: str = "") -> str:
    """Remove key text from anything that may reach a client or a log."""
    if secret:
        text = text.replace(secret, "[key]")
    return _KEYLIKE.sub("[key]", text)


@dataclass
class UpstreamReply:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""  # non-streaming answer
    events: AsyncIterator[bytes] | None = None  # streaming: SSE events, each ending in a blank line
    first: bytes = b""  # the first event, read before the engine commits to this upstream
    close: Any = None  # releases the connection
    # provider headers for the caller (llm_provider-*)
    passed: Mapping[str, str] = field(default_factory=dict)


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
    ) -> UpstreamReply:
        """The upstream's 2xx answer (a stream: its first event already read, so failover stays
        possible until then); raises ``UpstreamFailure`` for anything else. `max_tokens`: the
        completion limit to send a provider that requires one, when the request set none."""
        ...

    async def get_models(self, spec: UpstreamSpec, timeout: float) -> int:
        """Status of a models listing with this upstream's key (0: no answer): the health
        check of a disabled key."""
        ...

    async def close(self) -> None: ...
