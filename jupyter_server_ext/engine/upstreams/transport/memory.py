"""Providers answered in memory: an HTTP client for ``HTTPTransport`` whose answers a function
gives, as httpx's ``MockTransport`` does. For tests of the engine's own logic (admission,
budgets, failover, settlement) that need no socket: everything above the wire runs as it does
for a provider (each kind's request and answer translation, its rate-limit headers, how its
errors are read), so a test gives the answer in the provider's published shape.

    def provider(request: MemoryRequest) -> MemoryResponse:
        return MemoryResponse(json={"choices": [...], "usage": {...}})

    http = HTTPTransport(client=MemoryClient(provider))
    engine = Engine(settings, state=MemoryState(), transports=Transports(http=http))
"""

from __future__ import annotations

import inspect
import json as json_module
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...bodies import json_codec


@dataclass(frozen=True)
class MemoryRequest:
    """A request as it would have gone on the wire: its method, URL, headers and body."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body read as JSON (a request the engine sent carries one)."""
        return json_module.loads(self.body)


class MemoryResponse:
    """An answer: `json` (an object, sent as JSON), `body` (bytes as they are) or `events` (a
    stream: each an SSE event's data, or bytes as they are, sent in turn), with `status` and
    `headers` (names lower-cased as on the wire)."""

    def __init__(
        self,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        *,
        json: Any = None,
        body: bytes = b"",
        events: Iterable[Any] | None = None,
    ) -> None:
        self.status = status
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        self._body = json_codec.dumps(json) if json is not None else body
        self._events = None if events is None else [_sse(e) for e in events]
        self.closed = False

    async def read(self, timeout: float | None = None) -> bytes:
        if self._events is not None:
            return b"".join(self._events)
        return self._body

    async def iter_chunks(self, timeout: float | None = None) -> AsyncIterator[bytes]:
        for chunk in self._events if self._events is not None else [self._body]:
            if self.closed:
                return
            yield chunk

    def close(self) -> None:
        self.closed = True


def _sse(event: Any) -> bytes:
    """One event of a stream: bytes as they are; "[DONE]"; else an object as a data line."""
    if isinstance(event, bytes):
        return event
    data = event if isinstance(event, str) else json_codec.dumps(event).decode()
    return f"data: {data}\n\n".encode()


Handler = Callable[[MemoryRequest], "MemoryResponse | Awaitable[MemoryResponse]"]


class MemoryClient:
    """An ``HTTPClient`` whose every request is answered by `handler` (a function, or a
    coroutine function); `sent` keeps the requests in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sent: list[MemoryRequest] = []

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes = b"",
        timeout: float | None = None,
    ) -> MemoryResponse:
        request = MemoryRequest(method, url, dict(headers), body)
        self.sent.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer

    async def close(self) -> None:
        pass
