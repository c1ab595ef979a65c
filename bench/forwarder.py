"""A bare forwarder: the least an LLM proxy on tornado + asyncio does, for the benchmarks.

Per request it checks a bearer token, parses the JSON body, puts in an upstream key (round robin
over ``--key``), forwards over a pooled keep-alive HTTP/1.1 connection and answers: a JSON answer
whole, a stream event by event as the upstream sends it. No limits, no log, no cache, no
failover, no metrics, no usage rows: what rsql-proxy does beyond this is what
``bench/bench_forwarder.py`` measures against it, in the same run, on the same cores. Orjson
parses the body as it does in the proxy (the standard library where it is missing).

    python bench/forwarder.py --port 18080 --upstream http://127.0.0.1:18000/v1 \
        --token bench-000 --key sk-a --key sk-b
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tornado import httpserver, web

loads: Callable[[bytes], Any]
try:
    import orjson

    loads = orjson.loads
except ImportError:  # pragma: no cover - the bench extra has it
    import json

    loads = json.loads

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Pool:
    """Idle keep-alive connections to one upstream (last used first, so few stay warm)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Conn] = []

    async def get(self) -> tuple[Conn, bool]:
        """A connection and whether it was reused (a reused one may have been closed meanwhile)."""
        while self.idle:
            reader, writer = self.idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return (reader, writer), True
            writer.close()
        return await asyncio.open_connection(self.host, self.port), False

    def put(self, conn: Conn) -> None:
        self.idle.append(conn)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return status, headers


class Forward(web.RequestHandler):
    def initialize(self, pool: Pool, prefix: str, auth: str, keys: itertools.cycle) -> None:
        self.pool, self.prefix, self.auth, self.keys = pool, prefix, auth, keys

    async def post(self, path: str) -> None:
        if not hmac.compare_digest(self.request.headers.get("Authorization", ""), self.auth):
            self.set_status(401)
            self.finish(b'{"error": {"message": "bad token"}}')
            return
        try:
            body = loads(self.request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            self.set_status(400)
            self.finish(b'{"error": {"message": "a JSON object with a model"}}')
            return
        head = (
            f"POST {self.prefix}/{path} HTTP/1.1\r\nHost: {self.pool.host}:{self.pool.port}\r\n"
            f"Authorization: Bearer {next(self.keys)}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.request.body)}\r\n\r\n"
        ).encode()
        for _attempt in range(2):  # a kept-alive connection the upstream closed: once more, fresh
            conn, reused = await self.pool.get()
            try:
                await self.exchange(conn, head + self.request.body)
                return
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                conn[1].close()
                if not reused or self._headers_written:
                    self.set_status(502)
                    self.finish(f'{{"error": {{"message": "{type(exc).__name__}"}}}}'.encode())
                    return

    async def exchange(self, conn: Conn, request: bytes) -> None:
        reader, writer = conn
        writer.write(request)
        status, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
        self.set_status(status)
        self.set_header("Content-Type", headers.get("content-type", "application/json"))
        if "retry-after" in headers:
            self.set_header("Retry-After", headers["retry-after"])
        if "chunked" not in headers.get("transfer-encoding", ""):
            data = await reader.readexactly(int(headers.get("content-length", "0")))
            self.pool.put(conn)
            self.finish(data)
            return
        self.set_header("Cache-Control", "no-cache")
        while True:  # each chunk is one SSE event from bench/upstream.py: passed on as it comes
            size = int((await reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readline()  # the empty trailer
                break
            chunk = await reader.readexactly(size + 2)
            self.write(chunk[:-2])
            await self.flush()
        self.pool.put(conn)
        self.finish()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="the upstream's base URL, .../v1")
    ap.add_argument("--token", required=True, help="the bearer token clients must send")
    ap.add_argument("--key", action="append", required=True, help="an upstream key (repeatable)")
    args = ap.parse_args()
    up = urlsplit(args.upstream)
    settings = {
        "pool": Pool(up.hostname or "127.0.0.1", up.port or 80),
        "prefix": up.path.rstrip("/"),
        "auth": f"Bearer {args.token}",
        "keys": itertools.cycle(args.key),
    }
    app = web.Application([(r"/v1/(.*)", Forward, settings)], log_function=lambda h: None)
    # the same HTTP server settings as rsql-proxy (no xheaders: jupyter_server_ext/service.py)
    httpserver.HTTPServer(app).listen(args.port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
