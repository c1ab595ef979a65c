"""A fast loopback OpenAI-compatible upstream for the benchmarks, run in its own process.

Raw asyncio (no framework) so it costs little CPU next to the proxy under test: it answers
POST .../chat/completions after a fixed latency (default 50 ms), JSON or SSE, and can enforce a
moving-window request limit per API key like a provider, answering 429 with Retry-After and
x-ratelimit-* headers. GET /stats gives counts (answered, 429s, per key); POST /reset zeroes them.

    python bench/upstream.py --port 18000 --latency 0.05 [--limit 10/2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import time

MODELS = ("fake-small", "fake-large")


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ok = 0
        self.limited = 0
        self.per_key: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        self.started = time.time()

    def as_json(self) -> bytes:
        return json.dumps(
            {"ok": self.ok, "rate_limited": self.limited, "per_key": dict(self.per_key),
             "since": self.started}
        ).encode()


class Window:
    """Requests per key in a moving window, stamped on arrival (as a provider counts them)."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit, self.period = limit, period
        self.hits: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    def admit(self, key: str, now: float) -> float:
        """0 when admitted (and counted), else seconds until a slot frees."""
        q = self.hits[key]
        while q and q[0] <= now - self.period:
            q.popleft()
        if len(q) >= self.limit:
            return q[0] + self.period - now
        q.append(now)
        return 0.0


def completion(model: str, stream: bool) -> tuple[bytes, list[bytes]]:
    usage = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
    cid, created = "chatcmpl-bench", int(time.time())
    if not stream:
        body = {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "SELECT 1; -- a fixed answer"},
                         "finish_reason": "stop"}],
            "usage": usage,
        }
        return json.dumps(body).encode(), []

    def chunk(delta: dict, finish: str | None = None, **extra: object) -> bytes:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w}) for w in ("SELECT", " 1;", " -- a", " fixed", " answer")]
    events.append(chunk({}, "stop"))
    events.append(b"data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                         "model": model, "choices": [], "usage": usage}).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return b"", events


class Upstream(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # one request at a time per connection (no pipelining from our clients)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

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

    def _send(self, status: int, body: bytes, ctype: str = "application/json", extra: str = "") -> None:
        if self.transport is None:
            return
        reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 400: "Bad Request"}.get(status, "X")
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )
        self.busy = False
        if self.buf:
            self._parse()

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        app = self.app
        if method == "GET" and path.endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}).encode())
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
                retry = max(1, math.ceil(wait))
                extra = (f"Retry-After: {retry}\r\nx-ratelimit-limit-requests: {app.window.limit}\r\n"
                         f"x-ratelimit-remaining-requests: 0\r\nx-ratelimit-reset-requests: {wait:.3f}s\r\n")
                body = json.dumps({"error": {"message": "Rate limit reached for requests", "type": "requests",
                                             "code": "rate_limit_exceeded"}}).encode()
                self._send(429, body, extra=extra)
                return
        try:
            req = json.loads(body)
            model = req.get("model") or MODELS[0]
            stream = bool(req.get("stream"))
        except (ValueError, AttributeError):
            self._send(400, b'{"error": {"message": "bad json"}}')
            return
        app.stats.ok += 1
        app.stats.per_key[key[-6:]][0] += 1
        payload, events = completion(model, stream)
        loop = asyncio.get_running_loop()
        if not stream:
            loop.call_later(app.latency, self._send, 200, payload)
            return
        loop.call_later(app.latency, self._stream, events)

    def _stream(self, events: list[bytes]) -> None:
        if self.transport is None:
            return
        out = [b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"]
        for ev in events:
            out.append(b"%x\r\n%s\r\n" % (len(ev), ev))
        out.append(b"0\r\n\r\n")
        # the first event goes out at the latency mark; the rest follow as one more write
        self.transport.write(out[0] + out[1])
        self.transport.write(b"".join(out[2:]))
        self.busy = False
        if self.buf:
            self._parse()


class App:
    def __init__(self, latency: float, limit: str | None) -> None:
        self.latency = latency
        self.stats = Stats()
        self.window = None
        if limit:
            n, _, per = limit.partition("/")
            self.window = Window(int(n), float(per or 60))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--limit", default="", help="N/SECONDS per API key, e.g. 10/2 (moving window)")
    args = ap.parse_args()
    app = App(args.latency, args.limit or None)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(app), args.host, args.port, backlog=2048)
    print(f"upstream on http://{args.host}:{args.port}/v1 latency={args.latency}s limit={args.limit or 'none'}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
