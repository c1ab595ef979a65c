"""The HTTP transport: OpenAI-compatible APIs, through ``http11``, a small keep-alive
HTTP/1.1 client (docs/architecture.md, "Why a hand-written HTTP/1.1 client")."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .http11 import HTTP11Client, HTTPError
from .settings import UpstreamSpec
from .transport import UpstreamFailure, UpstreamReply, scrub

log = logging.getLogger("rsql.engine")


def connect_failure(spec: UpstreamSpec, exc: BaseException) -> UpstreamFailure:
    """A failure to reach `spec`, told to the client without the upstream's address.

    Why: Python's socket errors name the address ("Connect call failed ('10.0.0.5', 8443)", a
    certificate "not valid for 'gpu.internal'"), and the error reaches every user who asked;
    the address of an internal host is the admin's to know (issue 24). The server log keeps it,
    with the upstream's alias; never the URL's user info or the key."""
    if isinstance(exc, HTTPError):  # our own client's texts, which name no address
        text = str(exc)
    elif isinstance(exc, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(exc, socket.gaierror):
        text = "host name not resolved"
    elif isinstance(exc, ssl.SSLError):
        text = f"TLS handshake failed ({type(exc).__name__})"
    else:
        text = f"connection failed ({type(exc).__name__})"
    u = urllib.parse.urlsplit(spec.base_url)
    try:
        where = f"{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}"
    except ValueError:  # a port that is no number: the URL is refused elsewhere
        where = u.hostname or "?"
    log.warning("upstream %s at %s: %s", spec.name, where, scrub(f"{type(exc).__name__}: {exc}", spec.api_key))
    return UpstreamFailure("connect", scrub(text, spec.api_key))


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
        except asyncio.TimeoutError:  # sent (a connect timeout is an HTTPError): the provider has it
            raise UpstreamFailure("timeout", f"no answer within {timeout:g} s", accepted=True) from None
        except (HTTPError, OSError) as exc:
            raise connect_failure(spec, exc) from None
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
            raise UpstreamFailure("timeout", f"no answer within {timeout:g} s", accepted=True) from None
        except StopAsyncIteration:
            resp.close()
            raise UpstreamFailure("server", "stream ended before its first event") from None
        except (HTTPError, OSError) as exc:
            resp.close()
            raise connect_failure(spec, exc) from None
