"""A fast loopback OpenAI-compatible upstream for the benchmarks, run in its own process.

Raw asyncio (no framework) so it costs little CPU next to the proxy under test: it answers
POST .../chat/completions, JSON or SSE, and can enforce a moving-window request limit per API key
like a provider. GET /stats gives counts (answered, 429s, per key); POST /reset zeroes them and
empties the windows.

Timing, like a real provider's answer:
  --first-byte S      seconds from the request's arrival to the response's first byte: the HTTP
                      head and, for a stream, its first SSE event (default: --latency, 50 ms)
  --stream-seconds S  a stream's total time: the remaining events are spread evenly up to S
                      (default: all right after the first)
  --answer-seconds S  a JSON (non-streamed) answer's time: head and whole body after S
                      (default: --first-byte)

Limits, like OpenAI: a request counts in its key's moving window when it ARRIVES. Beyond the
limit: 429 with Retry-After (whole seconds until the oldest counted request leaves). With
--ratelimit-headers on, every answer's head (computed when the head is sent, as a provider does
when it answers) and every 429 carry x-ratelimit-limit-requests, x-ratelimit-remaining-requests
(the limit minus the requests now in the window) and x-ratelimit-reset-requests (time until the
window is back to its initial state: newest counted arrival + period - now, as "1.234s").

    python bench/upstream.py --port 18000 --latency 0.05 [--limit 10/2]
    python bench/upstream.py --port 18000 --first-byte 0.2 --stream-seconds 2 --limit 10/10 \
        --ratelimit-headers on

--spans: for each answered request whose body names a user as ``@user:NAME@`` (bench/editors.py
puts it in the cell), keep [arrival, end of the answer] under NAME in /stats' ``spans``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import re
import time

MODELS = ("fake-small", "fake-large")
USER_MARK = re.compile(rb"@user:([A-Za-z0-9_-]{1,40})@")


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ok = 0
        self.limited = 0
        self.per_key: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        self.started = time.time()
        self.t0 = time.monotonic()
        self.arrivals: list[float] = []  # counted arrivals, seconds since the reset (bounded below)
        self.spans: dict[str, list[list[float]]] = collections.defaultdict(list)  # --spans

    def counted(self, now: float) -> None:
        self.ok += 1
        if len(self.arrivals) < 100_000:
            self.arrivals.append(round(now - self.t0, 4))

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "ok": self.ok,
                "rate_limited": self.limited,
                "per_key": dict(self.per_key),
                "since": self.started,
                "arrivals": self.arrivals,
                "spans": self.spans,
            }
        ).encode()


class Window:
    """Requests per key in a moving window, stamped on arrival (as a provider counts them)."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit, self.period = limit, period
        self.hits: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    def _current(self, key: str, now: float) -> collections.deque:
        q = self.hits[key]
        while q and q[0] <= now - self.period:
            q.popleft()
        return q

    def admit(self, key: str, now: float) -> float:
        """0 when admitted (and counted), else seconds until a slot frees."""
        q = self._current(key, now)
        if len(q) >= self.limit:
            return q[0] + self.period - now
        q.append(now)
        return 0.0

    def headers(self, key: str, now: float) -> str:
        """OpenAI's x-ratelimit-*-requests headers for `key` as of `now`."""
        q = self._current(key, now)
        reset = q[-1] + self.period - now if q else 0.0
        return (
            f"x-ratelimit-limit-requests: {self.limit}\r\n"
            f"x-ratelimit-remaining-requests: {max(0, self.limit - len(q))}\r\n"
            f"x-ratelimit-reset-requests: {max(0.0, reset):.3f}s\r\n"
        )


def completion(model: str, stream: bool) -> tuple[bytes, list[bytes]]:
    usage = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
    cid, created = "chatcmpl-bench", int(time.time())
    if not stream:
        body = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "SELECT 1; -- a fixed answer"},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return json.dumps(body).encode(), []

    def chunk(delta: dict, finish: str | None = None, **extra: object) -> bytes:
        obj = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w}) for w in ("SELECT", " 1;", " -- a", " fixed", " answer")]
    events.append(chunk({}, "stop"))
    events.append(
        b"data: "
        + json.dumps(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        ).encode()
        + b"\n\n"
    )
    events.append(b"data: [DONE]\n\n")
    return b"", events


class Upstream(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # one request at a time per connection (no pipelining from our clients)
        self.span: list[float] | None = None  # --spans: this request's [arrival, end]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a socket's: a WriteTransport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._parse()

    def _parse(self) -> None:
        while not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + n:
                return
            body = self.buf[end + 4 : end + 4 + n]
            self.buf = self.buf[end + 4 + n :]
            self.busy = True
            self._handle(method, path, headers, body)

    def _send(
        self, status: int, body: bytes, ctype: str = "application/json", extra: str = ""
    ) -> None:
        if self.transport is None:
            return
        reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 400: "Bad Request"}.get(
            status, "X"
        )
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )
        self._ended()
        self.busy = False
        if self.buf:
            self._parse()

    def _ended(self) -> None:
        if self.span is not None:
            self.span[1] = round(time.monotonic() - self.app.stats.t0, 4)
            self.span = None

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        app = self.app
        if method == "GET" and path.endswith("/models"):
            self._send(
                200,
                json.dumps(
                    {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}
                ).encode(),
            )
            return
        if path == "/stats":
            self._send(200, app.stats.as_json())
            return
        if path == "/reset":
            app.stats.reset()
            if app.window is not None:
                app.window.hits.clear()
            self._send(200, b"{}")
            return
        if not path.endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        key = headers.get("authorization", "")[7:]
        if app.window is not None:
            wait = app.window.admit(key, time.monotonic())
            if wait > 0:
                app.stats.limited += 1
                app.stats.per_key[key[-6:]][1] += 1
                extra = f"Retry-After: {max(1, math.ceil(wait))}\r\n"
                if app.headers:
                    extra += app.window.headers(key, time.monotonic())
                body = json.dumps(
                    {
                        "error": {
                            "message": "Rate limit reached for requests",
                            "type": "requests",
                            "code": "rate_limit_exceeded",
                        }
                    }
                ).encode()
                self._send(429, body, extra=extra)
                return
        try:
            req = json.loads(body)
            model = req.get("model") or MODELS[0]
            stream = bool(req.get("stream"))
        except (ValueError, AttributeError):
            self._send(400, b'{"error": {"message": "bad json"}}')
            return
        app.stats.counted(time.monotonic())
        app.stats.per_key[key[-6:]][0] += 1
        if app.spans and (m := USER_MARK.search(body)) and len(app.stats.spans) < 10_000:
            self.span = [round(time.monotonic() - app.stats.t0, 4), -1.0]
            app.stats.spans[m.group(1).decode()].append(self.span)
        payload, events = completion(model, stream)
        loop = asyncio.get_running_loop()
        if not stream:
            loop.call_later(app.answer_seconds, self._answer, key, payload)
            return
        if app.head_first:  # the head at once (with the window as it is now), the events later
            self._stream_head(key, events, head_only=True)
            loop.call_later(app.first_byte, self._stream_head, key, events, False, True)
            return
        loop.call_later(app.first_byte, self._stream_head, key, events)

    def _limit_headers(self, key: str) -> str:
        app = self.app
        return (
            app.window.headers(key, time.monotonic())
            if app.headers and app.window is not None
            else ""
        )

    def _answer(self, key: str, payload: bytes) -> None:
        self._send(200, payload, extra=self._limit_headers(key))

    def _stream_head(
        self, key: str, events: list[bytes], head_only: bool = False, headless: bool = False
    ) -> None:
        if self.transport is None:
            return
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            + self._limit_headers(key)
            + "\r\n"
        ).encode()
        if head_only:  # --head-first: the head now, the first event at the first-byte mark
            self.transport.write(head)
            return
        chunks = [b"%x\r\n%s\r\n" % (len(ev), ev) for ev in events]
        chunks[-1] += b"0\r\n\r\n"
        # the head and the first event at the first-byte mark
        self.transport.write((b"" if headless else head) + chunks[0])
        rest = chunks[1:]
        spread = max(0.0, self.app.stream_seconds - self.app.first_byte)
        if spread <= 0:
            self._stream_rest(b"".join(rest), True)
            return
        loop = asyncio.get_running_loop()
        for i, c in enumerate(rest, 1):  # evenly up to the stream's end
            loop.call_later(spread * i / len(rest), self._stream_rest, c, i == len(rest))

    def _stream_rest(self, data: bytes, last: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if last:
            self._ended()
            self.busy = False
            if self.buf:
                self._parse()


class App:
    def __init__(
        self,
        latency: float,
        limit: str | None,
        *,
        first_byte: float | None = None,
        stream_seconds: float = 0.0,
        answer_seconds: float | None = None,
        headers: bool = False,
        spans: bool = False,
        head_first: bool = False,
    ) -> None:
        self.spans = spans
        self.head_first = head_first
        self.first_byte = latency if first_byte is None else first_byte
        self.answer_seconds = self.first_byte if answer_seconds is None else answer_seconds
        self.stream_seconds = stream_seconds
        self.headers = headers
        self.stats = Stats()
        self.window = None
        if limit:
            n, _, per = limit.partition("/")
            self.window = Window(int(n), float(per or 60))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument(
        "--latency", type=float, default=0.05, help="the first byte's time unless --first-byte"
    )
    ap.add_argument(
        "--first-byte", type=float, default=None, help="seconds to the head and first SSE event"
    )
    ap.add_argument("--stream-seconds", type=float, default=0.0, help="a stream's total time")
    ap.add_argument("--answer-seconds", type=float, default=None, help="a JSON answer's total time")
    ap.add_argument("--ratelimit-headers", choices=("on", "off"), default="off")
    ap.add_argument(
        "--head-first",
        action="store_true",
        help="a stream's HTTP head at once, its first event at --first-byte (some providers)",
    )
    ap.add_argument("--limit", default="", help="N/SECONDS per API key, e.g. 10/2 (moving window)")
    ap.add_argument("--spans", action="store_true", help="keep @user:NAME@ requests' spans")
    args = ap.parse_args()
    app = App(
        args.latency,
        args.limit or None,
        first_byte=args.first_byte,
        stream_seconds=args.stream_seconds,
        answer_seconds=args.answer_seconds,
        headers=args.ratelimit_headers == "on",
        spans=args.spans,
        head_first=args.head_first,
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(app), args.host, args.port, backlog=2048)
    print(
        f"upstream on http://{args.host}:{args.port}/v1 first byte {app.first_byte}s, stream {app.stream_seconds}s, "
        f"JSON {app.answer_seconds}s, limit {args.limit or 'none'}, headers {args.ratelimit_headers}",
        flush=True,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
