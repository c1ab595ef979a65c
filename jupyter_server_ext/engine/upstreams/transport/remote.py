"""The HTTP transport: every provider reached over HTTP, through ``http11``, a small keep-alive
HTTP/1.1 client (docs/architecture.md, "Why a hand-written HTTP/1.1 client"). What is sent and
how answers are read is each provider kind's ``Dialect`` (``providers.dialects``)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from ...errors import HTTP11Error, Untranslatable, UpstreamFailure
from ..providers.dialects import dialect_for, passed_headers
from ..specs import UpstreamSpec
from .http11 import HTTP11Client
from .protocol import UpstreamReply, scrub

log = logging.getLogger("rsql.engine")


def connect_failure(spec: UpstreamSpec, exc: BaseException) -> UpstreamFailure:
    """A failure to reach `spec`, told to the client without the upstream's address.

    Why: Python's socket errors name the address ("Connect call failed ('10.0.0.5', 8443)", a
    certificate "not valid for 'gpu.internal'"), and the error reaches every user who asked;
    the address of an internal host is the admin's to know (issue 24). The server log keeps it,
    with the upstream's alias; never the URL's user info or the key."""
    if isinstance(exc, HTTP11Error):  # our own client's texts, which name no address
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
    log.warning(
        "upstream %s at %s: %s",
        spec.name,
        where,
        scrub(f"{type(exc).__name__}: {exc}", spec.api_key),
    )
    return UpstreamFailure("connect", scrub(text, spec.api_key))


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
    """One keep-alive connection pool for all upstreams reached over HTTP."""

    def __init__(self, *, connect_timeout: float = 10.0) -> None:
        self.client = HTTP11Client(connect_timeout=connect_timeout)

    async def close(self) -> None:
        await self.client.close()

    async def get_models(self, spec: UpstreamSpec, timeout: float) -> int:
        """Status of GET /models with this key: the health check of a disabled key."""
        return (await self.list_models(spec, timeout))[0]

    async def list_models(self, spec: UpstreamSpec, timeout: float) -> tuple[int, list[str]]:
        """(status, model ids) of the upstream's models listing; (0, []) when it gave no answer."""
        dialect = dialect_for(spec)
        try:
            resp = await self.client.request(
                "GET",
                dialect.models_url(spec),
                headers=dialect.auth(spec),
                timeout=timeout,
            )
            body = await resp.read(timeout)
        except (HTTP11Error, OSError, asyncio.TimeoutError):
            return 0, []
        return resp.status, dialect.models_of(body) if resp.status == 200 else []

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
        dialect = dialect_for(spec)
        if endpoint not in dialect.endpoints:
            raise UpstreamFailure("unserved", f"HTTP 404: serves no v1/{endpoint}", 404)
        public = str(payload.get("model", ""))
        model = spec.provider_model(public)
        try:
            body = dialect.body(payload, endpoint, model, max_tokens)
        except Untranslatable as exc:  # a field this provider cannot express: another kind may
            error = {
                "message": exc.message,
                "type": "invalid_request_error",
                "param": exc.param,
                "code": "unsupported_by_provider",
            }
            raise UpstreamFailure(
                "unsupported", exc.message, 400, body=json.dumps({"error": error}).encode()
            ) from None
        headers = {
            **dialect.auth(spec),
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        try:
            resp = await self.client.request(
                "POST",
                dialect.url(spec, endpoint, model),
                headers=headers,
                body=json.dumps(body).encode(),
                timeout=timeout,
            )
        except (
            asyncio.TimeoutError
        ):  # sent (a connect timeout is an HTTP11Error): the provider has it
            raise UpstreamFailure(
                "timeout", f"no answer within {timeout:g} s", accepted=True
            ) from None
        except (HTTP11Error, OSError) as exc:
            raise connect_failure(spec, exc) from None
        status, raw = resp.status, resp.headers
        # the pool reads rate limits in OpenAI's names; the caller gets the provider's own headers
        # that tools read, under a prefix
        rh, passed = dialect.limits(raw, time.time()), passed_headers(raw, dialect.passed)
        try:
            if status >= 400:
                err = await resp.read(timeout)
                kind = (
                    "rate_limited"
                    if status == 429
                    else "auth"
                    if status in (401, 403)
                    else "server"
                    if status >= 500 or status == 408
                    else "client"
                )
                raise UpstreamFailure(
                    kind,
                    f"HTTP {status}",
                    status,
                    dialect.retry_after(raw, err),
                    rh,
                    scrub(
                        dialect.error(status, err).decode("utf-8", "replace"), spec.api_key
                    ).encode(),
                )
            if not stream:
                answer = dialect.answer(await resp.read(timeout), public)
                return UpstreamReply(status, rh, body=answer, passed=passed)
            # timeout bounds each read: a stalled stream cannot hold a slot for ever
            events = dialect.stream(_sse_events(resp.iter_chunks(timeout)), public)
            # read the first event before answering: failover stays possible until then
            first = await events.__anext__()
            return UpstreamReply(
                status, rh, events=events, first=first, close=resp.close, passed=passed
            )
        except UpstreamFailure:
            raise
        except asyncio.TimeoutError:
            resp.close()
            raise UpstreamFailure(
                "timeout", f"no answer within {timeout:g} s", accepted=True
            ) from None
        except StopAsyncIteration:
            resp.close()
            raise UpstreamFailure("server", "stream ended before its first event") from None
        except (HTTP11Error, OSError) as exc:
            resp.close()
            raise connect_failure(spec, exc) from None
