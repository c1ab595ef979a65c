"""Calling upstreams: OpenAI-compatible HTTP APIs (the local GGUF model is in ``local``).

HTTP goes through ``http11``, a small keep-alive HTTP/1.1 client (see there why not aiohttp or
httpx). Both transports answer the same way: an ``UpstreamReply`` for a 2xx, an ``UpstreamFailure``
saying what kind of failure it was, so the engine decides on failover in one place.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .http11 import HTTP11Client, HTTPError
from .settings import UpstreamSpec

# Provider error texts sometimes quote part of the key ("Incorrect API key provided: sk-ab***yz").
_KEYLIKE = re.compile(r"\b(?:sk|gsk|xai|hf)[-_][A-Za-z0-9_*.-]{4,}")


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


@dataclass
class UpstreamFailure(Exception):
    """kind: rate_limited | auth | server | timeout | connect | client (a 4xx to pass on) |
    unserved (this upstream does not serve the endpoint)."""

    kind: str
    message: str
    status: int = 0
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date; the reset headers or our default cover it


async def _sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Split a body into SSE events, each ending in one blank line ("\\n\\n")."""
    buf = b""
    async for data in chunks:
        buf += data
        if b"\r" in buf:  # some servers end lines with CRLF; the blank line must be found
            buf = buf.replace(b"\r\n", b"\n")
        while (i := buf.find(b"\n\n")) >= 0:
            event, buf = buf[: i + 2], buf[i + 2 :]
            if event.strip():
                yield event
    if buf.strip():
        yield buf.rstrip(b"\n") + b"\n\n"


class HTTPTransport:
    """One keep-alive connection pool for all OpenAI-compatible upstreams."""

    def __init__(self, *, connect_timeout: float = 10.0) -> None:
        self.client = HTTP11Client(connect_timeout=connect_timeout)

    async def close(self) -> None:
        await self.client.close()

    async def get_models(self, spec: UpstreamSpec, timeout: float) -> int:
        """Status of GET /models with this key: the health check of a disabled key."""
        try:
            resp = await self.client.request(
                "GET", spec.base_url + "/models",
                headers={"Authorization": f"Bearer {spec.api_key}"}, timeout=timeout,
            )
            await resp.read(timeout)
            return resp.status
        except (HTTPError, OSError, asyncio.TimeoutError):
            return 0

    async def send(
        self, spec: UpstreamSpec, payload: dict[str, Any], *, stream: bool, timeout: float,
        endpoint: str = "chat/completions",
    ) -> UpstreamReply:
        headers = {
            "Authorization": f"Bearer {spec.api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        try:
            resp = await self.client.request(
                "POST", f"{spec.base_url}/{endpoint}", headers=headers,
                body=json.dumps(payload).encode(), timeout=timeout,
            )
        except asyncio.TimeoutError:
            raise UpstreamFailure("timeout", f"no answer within {timeout:g} s") from None
        except (HTTPError, OSError) as exc:
            raise UpstreamFailure("connect", scrub(f"{type(exc).__name__}: {exc}", spec.api_key)) from None
        status, rh = resp.status, resp.headers
        try:
            if status >= 400:
                body = await resp.read(timeout)
                kind = (
                    "rate_limited" if status == 429
                    else "auth" if status in (401, 403)
                    else "server" if status >= 500 or status == 408
                    else "client"
                )
                raise UpstreamFailure(
                    kind, f"HTTP {status}", status, _retry_after(rh), rh,
                    scrub(body.decode("utf-8", "replace"), spec.api_key).encode(),
                )
            if not stream:
                return UpstreamReply(status, rh, body=await resp.read(timeout))
            # timeout bounds each read: a stalled stream cannot hold a slot for ever
            events = _sse_events(resp.iter_chunks(timeout))
            # read the first event before answering: failover stays possible until then
            first = await events.__anext__()
            return UpstreamReply(status, rh, events=events, first=first, close=resp.close)
        except UpstreamFailure:
            raise
        except asyncio.TimeoutError:
            resp.close()
            raise UpstreamFailure("timeout", f"no answer within {timeout:g} s") from None
        except StopAsyncIteration:
            resp.close()
            raise UpstreamFailure("server", "stream ended before its first event") from None
        except (HTTPError, OSError) as exc:
            resp.close()
            raise UpstreamFailure("connect", scrub(f"{type(exc).__name__}: {exc}", spec.api_key)) from None
