"""A leaner HTTP/1.1 host for the same tornado handlers, for one measurement (#58).

    python bench/lean_host.py PY -m jupyter_server_ext --config ... --port ...
    python bench/lean_host.py PY bench/forwarder.py --port ... ...

Runs a module or script (given as its command line, after the interpreter) with tornado's
``HTTPServer`` replaced by ``LeanHTTPServer``: the same ``tornado.web.Application`` and the same
handlers, but each connection an ``asyncio.Protocol`` whose requests are parsed by httptools
(llhttp, in C: uvicorn's parser) instead of tornado's ``HTTP1Connection`` on an ``IOStream``
(pure Python: buffering, the start line and headers parsed line by line, a timeout and a task
for every request's headers). #58 asks, if the host is the limit, for a leaner host measured
behind the same handlers: ``bench/bench_lean_host.py`` runs rsql-proxy and the bare forwarder
on both hosts.

A measuring host, not the product's: HTTP/1.1 with keep-alive, Content-Length and chunked
bodies both ways, requests on a connection served one after another (pipelined ones wait
their turn), flow control on writes, the close callback tornado's handlers rely on (a client
that leaves cancels its request). Left out: TLS, HTTP/1.0 keep-alive, ``Expect: 100-continue``,
idle and body timeouts, the body size cap (the proxy's handlers hold bodies to their own
limit): what a product host would have to add.
"""

from __future__ import annotations

import asyncio
import runpy
import socket
import sys
from collections import deque
from types import SimpleNamespace
from typing import Any

import httptools
from tornado import httpserver, httputil

_CONTEXT = SimpleNamespace(remote_ip="127.0.0.1", protocol="http", trusted_downstream=set())


class _Request:
    """One request as the parser reads it: its start line and headers, then its body."""

    __slots__ = ("start", "headers", "body", "complete", "keep_alive")

    def __init__(self, start: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> None:
        self.start, self.headers = start, headers
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = True


class _Connection(httputil.HTTPConnection):
    """tornado's view of the request being answered: what a handler writes goes out framed."""

    def __init__(self, proto: _Protocol, req: _Request) -> None:
        self.proto, self.req = proto, req
        self.context = _CONTEXT
        self.stream = None  # no IOStream: handlers that reach for one find none
        self.close_callback: Any = None
        self.chunked = False
        self.done = asyncio.get_running_loop().create_future()

    def set_close_callback(self, callback: Any) -> None:
        self.close_callback = callback

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> asyncio.Future[None]:
        assert isinstance(start_line, httputil.ResponseStartLine)
        code = start_line.code
        head = self.req.start.method == "HEAD" or code in (204, 304) or code < 200
        self.chunked = not head and "Content-Length" not in headers
        if self.chunked:
            headers["Transfer-Encoding"] = "chunked"
        if not self.req.keep_alive:
            headers["Connection"] = "close"
        lines = [f"HTTP/1.1 {code} {start_line.reason}"]
        lines += [f"{name}: {value}" for name, value in headers.get_all()]
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("CR or LF in a response header")
        text = "\r\n".join(lines)
        data = (text + "\r\n\r\n").encode("latin-1")
        return self.proto.send(data + self._frame(chunk) if chunk else data)

    def _frame(self, chunk: bytes) -> bytes:
        if self.chunked:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunk else b""
        return chunk

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        return self.proto.send(self._frame(chunk))

    def finish(self) -> None:
        if self.chunked:
            self.proto.send(b"0\r\n\r\n")
        if not self.done.done():
            self.done.set_result(None)


class _Protocol(asyncio.Protocol):
    """One client connection: parses with httptools, hands each request to the application."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.requests: deque[_Request] = deque()
        self.arrived = asyncio.Event()
        self.current: _Connection | None = None
        self.writable: asyncio.Future[None] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._reading: _Request | None = None
        self.task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.task = asyncio.ensure_future(self.serve())

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.current is not None and self.current.close_callback is not None:
            self.current.close_callback()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        if self.task is not None:
            self.task.cancel()

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # -- httptools' callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers = b"", []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        headers = httputil.HTTPHeaders()
        for name, value in self._headers:
            headers.add(name.decode("latin-1"), value.decode("latin-1"))
        version = f"HTTP/{self.parser.get_http_version()}"
        start = httputil.RequestStartLine(
            self.parser.get_method().decode("ascii"), self._url.decode("latin-1"), version
        )
        req = self._reading = _Request(start, headers)
        req.keep_alive = self.parser.should_keep_alive()
        self.requests.append(req)
        self.arrived.set()

    def on_body(self, body: bytes) -> None:
        if self._reading is not None:
            self._reading.body.append(body)
            self.arrived.set()

    def on_message_complete(self) -> None:
        if self._reading is not None:
            self._reading.complete = True
            self._reading = None
            self.arrived.set()

    # -- serving ------------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write `data`; the future is done once the transport takes more (flow control)."""
        fut = asyncio.get_running_loop().create_future()
        if self.transport is None:
            fut.set_exception(httputil.HTTPOutputError("the client has gone"))
            fut.exception()
            return fut
        if data:
            self.transport.write(data)
        if self.writable is None:
            fut.set_result(None)
        else:

            def wake(_: object) -> None:
                if not fut.done():
                    fut.set_result(None)

            self.writable.add_done_callback(wake)
        return fut

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def _next(self) -> None:
        self.arrived.clear()
        await self.arrived.wait()

    async def serve(self) -> None:
        """The connection's requests, one after another, each answered before the next."""
        while True:
            while not self.requests:
                await self._next()
            req = self.requests[0]
            conn = self.current = _Connection(self, req)
            delegate = self.app.start_request(self, conn)
            started = delegate.headers_received(req.start, req.headers)
            if started is not None:
                await started
            while True:  # the body as it arrives (a streaming handler reads it piece by piece)
                while req.body:
                    got = delegate.data_received(req.body.pop(0))
                    if got is not None:
                        await got
                if req.complete:
                    break
                await self._next()
            delegate.finish()
            await conn.done
            self.requests.popleft()
            self.current = None
            if not req.keep_alive:
                self.close()
                return


class LeanHTTPServer:
    """``tornado.httpserver.HTTPServer``'s calls that rsql-proxy and the forwarder make."""

    def __init__(self, app: Any, **_settings: Any) -> None:
        self.app = app
        self.servers: list[asyncio.AbstractServer] = []
        # what rsql-proxy's drain sets (keep-alive off for requests arriving after its stop)
        self.conn_params = SimpleNamespace(no_keep_alive=False)

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        for sock in sockets:
            serving = loop.create_task(loop.create_server(lambda: _Protocol(self.app), sock=sock))
            serving.add_done_callback(lambda t: self.servers.append(t.result()))

    def listen(self, port: int, address: str = "") -> None:
        sock = socket.create_server((address or "127.0.0.1", port), reuse_port=False)
        sock.setblocking(False)
        self.add_sockets([sock])

    def stop(self) -> None:
        for server in self.servers:
            server.close()

    async def close_all_connections(self) -> None:
        return None


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2:
        raise SystemExit(__doc__)
    httpserver.HTTPServer = LeanHTTPServer  # type: ignore[misc,assignment]  # the host swapped in
    if args[1] == "-m":
        sys.argv = [args[2], *args[3:]]
        runpy.run_module(args[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args[1:]
        runpy.run_path(args[1], run_name="__main__")


if __name__ == "__main__":
    main()
