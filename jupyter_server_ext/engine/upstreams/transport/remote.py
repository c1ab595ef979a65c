"""The HTTP transport: every provider reached over HTTP, through ``http11``, a small keep-alive
HTTP/1.1 client (docs/architecture.md, "Why a hand-written HTTP/1.1 client"). What is sent and
how answers are read is each provider kind's ``*Kind`` (``providers.kinds``)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ...bodies import json_codec
from ...bodies.reading import scrub
from ...errors import HTTP11Error, Untranslatable, UpstreamFailure
from ..kinds import kind_for, passed_headers
from ..specs import UpstreamSpec
from .http11 import HTTP11Client
from .protocol import HTTPClient, UpstreamAnswer, anonymized, with_public_model

log = logging.getLogger("rsql.engine")
_ERROR_OBJECT = re.compile(rb'"error"\s*:\s*\{')  # an error event's object, in any API


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


_UNFORESEEN: set[tuple[str, str, str]] = set()  # (provider, step, exception) logged, once each


def _log_once(spec: UpstreamSpec, step: str, exc: BaseException) -> None:
    """Log a failure nobody foresaw with its traceback once per provider, step and kind of
    exception: a user who repeats the request, or a provider that keeps sending the same
    thing, fills no log."""
    seen = (spec.provider, step, type(exc).__name__)
    if seen not in _UNFORESEEN:
        _UNFORESEEN.add(seen)
        log.error("%s for %s failed unexpectedly", step, spec.provider, exc_info=exc)


def untranslated(spec: UpstreamSpec, exc: Exception) -> UpstreamFailure:
    """A request the translation to `spec`'s provider failed on unexpectedly: a 400 that sends
    nothing (so no key's window counts it), and one log line with its traceback per kind of
    failure and provider, not one per request, however many a user sends."""
    _log_once(spec, "translating a request", exc)
    message = (
        f"this request cannot be sent to a {spec.provider} upstream: a field holds a value of a "
        f"kind the proxy cannot translate ({type(exc).__name__}); check the types of its fields"
    )
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": "unsupported_by_provider",
    }
    return UpstreamFailure("unsupported", message, 400, body=json.dumps({"error": error}).encode())


def unreadable(spec: UpstreamSpec, exc: Exception) -> UpstreamFailure:
    """A 2xx answer the proxy could not read (a provider's that breaks its own API): a server
    failure of that key, as a 5xx is (the request reached it and counts in its window; failover
    may try another key), logged once per provider and kind, never a 500 per request."""
    _log_once(spec, "reading an answer", exc)
    return UpstreamFailure("server", f"its answer could not be read ({type(exc).__name__})", 502)


def _error_answer(
    spec: UpstreamSpec, status: int, headers: Mapping[str, str], body: bytes
) -> tuple[float | None, bytes]:
    """(the wait it names, its body in OpenAI's form for the caller) of an error answer: no key,
    account, host or provider-side model name in it; one its kind cannot read is told by
    its status alone, so its kind (a 429, a 403) still decides the failover."""
    api = kind_for(spec)
    try:
        wait = api.retry_after(headers, body)
        text = api.error(status, body).decode("utf-8", "replace")
    except Exception as exc:  # a second wall, as for requests: a body no translation foresaw
        _log_once(spec, "reading an error answer", exc)
        error = {"message": f"the provider answered HTTP {status}", "type": "upstream_error"}
        wait, text = None, json.dumps({"error": {**error, "param": None, "code": None}})
    return wait, anonymized(text, spec).encode()


def _limits(spec: UpstreamSpec, headers: Mapping[str, str]) -> Mapping[str, str]:
    """The rate-limit headers the pool reads; none when its kind cannot read them."""
    try:
        return kind_for(spec).limits(headers, time.time())
    except Exception as exc:  # headers no translation foresaw: the pool's own counts stand
        _log_once(spec, "reading rate-limit headers", exc)
        return {}


def _told(event: bytes, public: str, spec: UpstreamSpec) -> bytes:
    """`event` naming the public model only (``with_public_model``); an error event (a
    provider's failure after its 200) without key, account or provider-side names. Only an
    error object is scrubbed: ``"error": null`` (every Responses event) is an answer."""
    if b'"error"' in event and _ERROR_OBJECT.search(event):
        event = anonymized(event.decode("utf-8", "replace"), spec).encode()
    return with_public_model(event, public)


async def _public(
    events: AsyncIterator[bytes], public: str, spec: UpstreamSpec
) -> AsyncIterator[bytes]:
    """`events` as callers may read them (``_told``)."""
    async for event in events:
        yield _told(event, public, spec)


def _split(buf: bytes) -> tuple[list[bytes], bytes]:
    """The SSE events that end in `buf`, each ending in one blank line ("\\n\\n"), and what
    is left of it; lines ended with CRLF, as some servers send them, as LF."""
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    events = []
    while (i := buf.find(b"\n\n")) >= 0:
        event, buf = buf[: i + 2], buf[i + 2 :]
        if event.strip():
            events.append(event)
    return events, buf


async def _sse_events(
    chunks: AsyncIterator[bytes], public: str = "", spec: UpstreamSpec | None = None
) -> AsyncIterator[bytes]:
    """Split a body into SSE events; with `spec`, each as callers may read it (``_told``), in
    the same pass: a stream that needs no translation takes one generator an event, not two."""
    buf = b""
    async for data in chunks:
        events, buf = _split(buf + data if buf else data)
        for event in events:
            yield event if spec is None else _told(event, public, spec)
    if buf.strip():
        event = buf.rstrip(b"\n") + b"\n\n"
        yield event if spec is None else _told(event, public, spec)


class HTTPTransport:
    """One keep-alive connection pool for all upstreams reached over HTTP; `client`: another
    way to send them (``memory.MemoryClient``: answered in memory, for tests)."""

    def __init__(self, *, connect_timeout: float = 10.0, client: HTTPClient | None = None) -> None:
        self.client: HTTPClient = client or HTTP11Client(connect_timeout=connect_timeout)

    async def close(self) -> None:
        await self.client.close()

    async def get_models(self, spec: UpstreamSpec, timeout: float) -> int:
        """Status of GET /models with this key: the health check of a disabled key."""
        return (await self.list_models(spec, timeout))[0]

    async def list_models(self, spec: UpstreamSpec, timeout: float) -> tuple[int, list[str]]:
        """(status, model ids) of the upstream's models listing; (0, []) when it gave no answer."""
        api = kind_for(spec)
        try:
            resp = await self.client.request(
                "GET",
                api.models_url(spec),
                headers=api.auth(spec),
                timeout=timeout,
            )
            body = await resp.read(timeout)
        except (HTTP11Error, OSError, asyncio.TimeoutError):
            return 0, []
        return resp.status, api.models_of(body) if resp.status == 200 else []

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
        api = kind_for(spec)
        # a request in an API the upstream speaks itself goes as it was sent, and so comes back
        native = endpoint in spec.native_apis
        if endpoint not in api.endpoints and not native:
            raise UpstreamFailure("unserved", f"HTTP 404: serves no v1/{endpoint}", 404)
        public = str(payload.get("model", ""))
        model = spec.provider_model(public)
        try:
            body = (
                {**payload, "model": model}
                if native
                else api.body(payload, endpoint, model, max_tokens)
            )
            sent = json_codec.dumps(body)
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
        except Exception as exc:  # a second wall: a field no translator check foresaw
            raise untranslated(spec, exc) from None
        headers = {
            **(headers or {}),
            **api.auth(spec),
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        try:
            resp = await self.client.request(
                "POST",
                api.url(spec, endpoint, model),
                headers=headers,
                body=sent,
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
        head = time.monotonic()
        # the pool reads rate limits in OpenAI's names; the caller gets the provider's own headers
        # that tools read, under a prefix
        rh, passed = _limits(spec, raw), passed_headers(raw, api.passed)
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
                wait, told = _error_answer(spec, status, raw, err)
                raise UpstreamFailure(kind, f"HTTP {status}", status, wait, rh, told)
            if not stream:
                got = await resp.read(timeout)
                answer = got if native else api.answer(got, public)
                return UpstreamAnswer(
                    status,
                    rh,
                    body=with_public_model(answer, public),
                    passed=passed,
                    head_wait=time.monotonic() - head,
                )
            # timeout bounds each read: a stalled stream cannot hold a slot for ever
            pieces = resp.iter_chunks(timeout)
            if native or not api.translates_streams:
                events = _sse_events(pieces, public, spec)
            else:
                events = _public(api.stream(_sse_events(pieces), public), public, spec)
            # read the first event before answering: failover stays possible until then
            first = await events.__anext__()
            return UpstreamAnswer(
                status,
                rh,
                events=events,
                first=first,
                close=resp.close,
                passed=passed,
                head_wait=time.monotonic() - head,
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
        except Exception as exc:  # a second wall: an answer no translation foresaw
            resp.close()
            raise unreadable(spec, exc) from None
