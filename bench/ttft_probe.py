"""Marks on a streamed request's way to its first event, inside the server (#58's time to first token).

    python bench/ttft_probe.py PY -m jupyter_server_ext --config ... --port ...
    python bench/ttft_probe.py PY bench/forwarder.py --port ... ...

Runs a module or script (its command line, after the interpreter) with a few of tornado's,
asyncio's and (when present) the proxy's functions wrapped to note the time at each mark of a
stream's way. Requests must come one at a time (``bench/bench_ttft_path.py`` sends them so): the
marks are kept for the request under way, not per task. On SIGUSR1 the requests noted since the
last signal are appended to ``$TTFT_PROBE_OUT`` as one JSON line, and forgotten.

The marks (``time.perf_counter``; each request keeps the first time it passes each):

- ``line``: tornado parsed the request line (the head had arrived whole);
- ``handler``: the proxy's handler starts answering: the body is in, prepared (authenticated);
- ``engine``: the engine has the request (its caller known, its body decoded);
- ``forward``: the checks, the parse and the admission are done: failover starts;
- ``sent``: the request's bytes are written to the upstream;
- ``event``: the loop read the upstream's first event (its bytes, before any parsing);
- ``head``: the proxy's upstream client has the answer's status and headers;
- ``reply``: the stream's reply is made (the attempt's bookkeeping done);
- ``out``: the first event is written to the client.

With ``cpu_sent`` (the thread's CPU time from ``line`` to ``sent``) and the event loop's turns
between ``line`` and ``sent`` and between ``event`` and ``out``. A measuring harness only: the
wrapped functions do what they did, with a clock read added.
"""

from __future__ import annotations

import asyncio.base_events
import asyncio.selector_events
import asyncio.streams
import json
import os
import runpy
import signal
import sys
import time
from typing import Any

import tornado.httputil
import tornado.iostream

clock = time.perf_counter
marks: dict[str, float] = {}
noted: list[dict[str, float]] = []
turns = [0]


def _mark(name: str) -> None:
    if "line" in marks and name not in marks and "out" not in marks:
        marks[name] = clock()


def _wrap_async(cls: Any, attr: str, name: str) -> None:
    orig = getattr(cls, attr)

    async def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        _mark(name)
        return await orig(self, *args, **kwargs)

    setattr(cls, attr, wrapped)


def _wrap_sync(cls: Any, attr: str, name: str) -> None:
    orig = getattr(cls, attr)

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        _mark(name)
        return orig(self, *args, **kwargs)

    setattr(cls, attr, wrapped)


def _request_line(line: str) -> Any:
    marks.clear()
    marks["line"] = clock()
    marks["turns0"] = turns[0]
    marks["cpu0"] = time.thread_time()
    return _parse_line(line)


def _transport_write(self: Any, data: Any) -> Any:
    # the proxy's upstream client and the forwarder both write to the upstream through an
    # asyncio transport; tornado writes to clients through its own IOStream
    if "line" in marks and "sent" not in marks:
        marks["sent"] = clock()
        marks["turns_sent"] = turns[0]
        marks["cpu_sent"] = time.thread_time()
    return _write(self, data)


def _reader(orig: Any) -> Any:
    def read_ready(self: Any) -> Any:
        marks["_read"] = clock()  # the moment the loop found bytes on a socket
        return orig(self)

    return read_ready


def _received(orig: Any) -> Any:
    def data_received(self: Any, data: bytes) -> Any:
        if "sent" in marks and "event" not in marks and b"data:" in bytes(data):
            marks["event"] = marks.get("_read", clock())
            marks["turns_event"] = turns[0]
        return orig(self, data)

    return data_received


def _stream_write(self: Any, data: Any) -> Any:
    if "event" in marks and "out" not in marks and b"data:" in bytes(data):
        marks["out"] = clock()
        marks["turns_out"] = turns[0]
        noted.append(_request())
    return _tornado_write(self, data)


def _request() -> dict[str, float]:
    """The marks of the request just through, as µs after ``line``, and its turns and CPU."""
    t0 = marks["line"]
    out = {k: round((v - t0) * 1e6, 1) for k, v in marks.items() if k.isalpha()}
    out["cpu_sent"] = round((marks["cpu_sent"] - marks["cpu0"]) * 1e6, 1)
    out["turns_sent"] = marks["turns_sent"] - marks["turns0"]
    out["turns_out"] = marks["turns_out"] - marks["turns_event"]
    return out


def _run_once(self: Any) -> Any:
    turns[0] += 1
    return _loop_turn(self)


def _dump(*_: Any) -> None:
    path = os.environ.get("TTFT_PROBE_OUT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(noted) + "\n")
    noted.clear()


_parse_line = tornado.httputil.parse_request_start_line
tornado.httputil.parse_request_start_line = _request_line
# asyncio's private classes and methods, wrapped where they run (typed Any: not its API)
_transport: Any = getattr(asyncio.selector_events, "_SelectorSocketTransport")  # noqa: B009
_write = _transport.write
_transport.write = _transport_write
# a protocol's reads (the forwarder's streams), and a buffered protocol's (the proxy's client)
_transport._read_ready__data_received = _reader(_transport._read_ready__data_received)
_transport._read_ready__get_buffer = _reader(_transport._read_ready__get_buffer)
_protocol: Any = asyncio.streams.StreamReaderProtocol
_protocol.data_received = _received(_protocol.data_received)
_iostream: Any = tornado.iostream.BaseIOStream
_tornado_write = _iostream.write
_iostream.write = _stream_write
_loop: Any = asyncio.base_events.BaseEventLoop
_loop_turn = _loop._run_once
_loop._run_once = _run_once


def _probe_proxy() -> None:
    """The proxy's own marks, when it is what runs."""
    from jupyter_server_ext.engine.core import Engine
    from jupyter_server_ext.engine.failover import Forwarder
    from jupyter_server_ext.engine.replies import Replies
    from jupyter_server_ext.engine.upstreams.transport import http11
    from jupyter_server_ext.handlers.base import AnsweringMixin

    _wrap_async(AnsweringMixin, "_answer", "handler")
    _wrap_async(Engine, "chat", "engine")
    _wrap_async(Forwarder, "forward", "forward")
    _wrap_async(Replies, "stream_reply", "reply")
    _wrap_sync(http11.Response, "__init__", "head")
    conn: Any = http11._Conn
    conn.data_received = _received(conn.data_received)


def main() -> None:
    signal.signal(signal.SIGUSR1, _dump)
    args = sys.argv[2:]  # after the interpreter
    if args[:1] == ["-m"]:
        if args[1] == "jupyter_server_ext":
            _probe_proxy()
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
