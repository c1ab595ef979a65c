"""A small HTTP/1.1 client with keep-alive, for the proxy's calls to upstreams.

Why by hand: on the proxy's hot path aiohttp's client cost about 280 us of CPU per upstream
call here (profiled under wrk), as much as tornado's whole server side, and httpx's pool
degrades badly at a few hundred concurrent calls (docs/architecture.md, "Why a hand-written
HTTP/1.1 client"). The proxy needs little of either: POST and GET with a JSON body,
keep-alive, TLS, Content-Length or chunked answers, read whole or streamed, and precise
timeouts. Everything else (redirects, cookies, proxies, compression: we send
``Accept-Encoding: identity``) is deliberately left out.

The upstream is hostile input, so an answer's framing is read as h11 reads it (the differential
test, tests/unit/test_http11_differential.py, holds the two side by side): where two parsers
disagree on where an answer ends or what a header is, a second answer or a header can hide.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from ...errors import HTTP11Error

_MAX_HEADER = 64 * 1024
_HIGH_WATER = 256 * 1024  # bytes in and unread that pause the socket
# the blank line that ends a head or trailers: a bare LF ends a line there (RFC 9112 2.2 lets a
# recipient take it so; h11 does), never in the chunks' framing
_HEAD_END = re.compile(rb"\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")  # trailers that are only their blank line
# each allows what h11 allows: a line ends in CRLF or LF (a CR elsewhere is a bare CR), a value
# or reason has no NUL, CR, LF, VT or FF, a name is a token (no whitespace before its colon), a
# status has three digits, a chunk size is bare hex (no sign, 0x, _ or leading space, which int()
# takes) with an extension after a ';' (ignored)
_STATUS = re.compile(rb"HTTP/([0-9]\.[0-9]) ([0-9]{3})(?: [^\x00\r\n\x0b\x0c]*)?\r?")
_FIELDS = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+:[^\x00\r\n\x0b\x0c]*\r?\n)*")
_FOLD = re.compile(rb"\r?\n[ \t]+")  # obs-fold: a line that goes on the one before it
# a chunk's size line up to its CRLF, the first in the buffer ('.' never passes an LF)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*\r\n")
# the framing headers: each repeat counts (joined as RFC 9110 5.3 joins them), not only the last
_JOINED = frozenset(("content-length", "transfer-encoding", "connection"))
_T = TypeVar("_T")

if sys.version_info >= (3, 11):

    async def within(aw: Awaitable[_T], timeout: float | None) -> _T:
        """`aw`, cancelled after `timeout` seconds (TimeoutError). Not ``asyncio.wait_for``:
        before Python 3.12 it wraps `aw` in a task of its own, one more task and loop turn per
        read on the hot path (profiled under wrk), and it can swallow a cancel that arrives as
        the read completes."""
        if timeout is None:
            return await aw
        async with asyncio.timeout(timeout):
            return await aw

    class EachWithin:
        """A time limit on each await of a sequence that one task makes after another (a body
        read piece by piece, a stream written event by event), kept with one timer for the
        sequence instead of one for every await.

        Why: ``asyncio.timeout`` arms and cancels a timer for each await (some 15 Python calls,
        a heap push, a cancelled handle left in the heap): at three awaits an event, a fifth
        of a streamed request's instructions (bench/count_proxy.py --stream). Here an await only
        notes when it is due; the one timer, when it fires, re-arms for the await under way,
        or cancels it if it is late, which surfaces as ``TimeoutError`` as with
        ``asyncio.timeout`` (a cancel from elsewhere stays a cancel)."""

        __slots__ = ("_loop", "_due", "_task", "_timer", "_expired")

        def __init__(self) -> None:
            self._loop = asyncio.get_running_loop()
            self._due = 0.0
            self._task: asyncio.Task[Any] | None = None
            self._timer: asyncio.TimerHandle | None = None
            self._expired = False

        async def within(self, aw: Awaitable[_T], timeout: float | None) -> _T:
            """`aw`, cancelled after `timeout` seconds (TimeoutError); None: no limit."""
            if timeout is None:
                return await aw
            task = asyncio.current_task()
            assert task is not None
            self._due = due = self._loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > due:  # none armed, or armed for later
                if timer is not None:
                    timer.cancel()
                self._timer = self._loop.call_at(due, self._fire)
            self._task = task
            try:
                return await aw
            except asyncio.CancelledError:
                if self._expired:
                    self._expired = False
                    if task.uncancel() == 0:
                        raise TimeoutError from None
                raise
            finally:
                self._task = None

        def _fire(self) -> None:
            self._timer = None
            if self._task is None:  # between awaits: the next one arms again
                return
            if self._loop.time() < self._due:  # a later await under way: its own due time
                self._timer = self._loop.call_at(self._due, self._fire)
                return
            self._expired = True
            self._task.cancel()

        def close(self) -> None:
            """Disarm: the sequence is over."""
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

else:  # Python 3.10 has no asyncio.timeout, nor Task.uncancel
    within = asyncio.wait_for

    class EachWithin:  # type: ignore[no-redef]  # the same name on each Python
        """``within`` for each await of a sequence (on Python 3.10: ``asyncio.wait_for``)."""

        async def within(self, aw: Awaitable[_T], timeout: float | None) -> _T:
            return await asyncio.wait_for(aw, timeout)

        def close(self) -> None:
            pass


def _fields(text: bytes) -> dict[str, str]:
    """The header lines in `text` (each ending in CRLF or LF), names lower-cased. A line HTTP/1.1
    does not allow is an error, not skipped: a reader that skips or trims it differently from the
    next one on the path is how a header is smuggled."""
    if _FIELDS.fullmatch(text) is None:
        # obs-fold, rare enough to look for only here: one line, joined with a space (RFC 9112
        # 5.2), unless there is no line before it to continue
        if text[:1] in (b" ", b"\t") or _FIELDS.fullmatch(text := _FOLD.sub(b" ", text)) is None:
            raise HTTP11Error("malformed header line")
    hdrs: dict[str, str] = {}
    for line in text.split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep:  # not the empty string after the last LF
            key = name.lower().decode("latin-1")
            # strip: OWS and the CR of a CRLF (the pattern lets no other whitespace in)
            val = value.strip().decode("latin-1")
            if hdrs.setdefault(key, val) is not val:  # said before (two Set-Cookie are common)
                hdrs[key] = hdrs[key] + ", " + val if key in _JOINED else val
    length = hdrs.get("content-length")
    if length is not None:
        if "," in length:  # repeated: one value said again is one length; two are two framings
            lengths = {v.strip(" \t") for v in length.split(",")}
            if len(lengths) != 1:
                raise HTTP11Error("conflicting Content-Length values")
            hdrs["content-length"] = length = lengths.pop()
        # isdigit alone takes '²' (latin-1 has it), int() takes '+5' and '1_0'
        if not (length.isascii() and length.isdigit() and len(length) <= 20):
            raise HTTP11Error("malformed Content-Length")
    te = hdrs.get("transfer-encoding")
    if te is not None and te.lower() != "chunked":  # none we can decode, or chunked not alone
        raise HTTP11Error("unsupported Transfer-Encoding (chunked alone is read)")
    return hdrs


def _head(raw: bytes) -> tuple[bytes, int, dict[str, str]]:
    """(HTTP version, status, headers) of a head whose lines each end in CRLF or LF."""
    line, _, fields = raw.partition(b"\n")
    status = _STATUS.fullmatch(line)
    if status is None or status[2] < b"100":
        raise HTTP11Error("malformed status line")
    version, hdrs = status[1], _fields(fields)
    if "transfer-encoding" in hdrs:
        # two framings at once: RFC 9112 6.3 says chunked wins but that it ought to be an error
        # (h11 lets chunked win); in HTTP/1.0 chunked MUST be taken as faulty framing (6.1)
        if "content-length" in hdrs:
            raise HTTP11Error("both Transfer-Encoding and Content-Length")
        if version < b"1.1":
            raise HTTP11Error("Transfer-Encoding in an HTTP/1.0 answer")
    return version, int(status[2]), hdrs


def _tokens(value: str) -> list[str]:
    """The lower-cased items of a comma-separated header value (``Connection``)."""
    return [item.strip(" \t") for item in value.lower().split(",")]


class _Conn(asyncio.BufferedProtocol):
    """One keep-alive connection, an ``asyncio.BufferedProtocol``: the bytes that came and are
    not read yet, which the answer of the moment parses where they lie.

    Why not asyncio's streams: a ``StreamReader`` costs a coroutine, a buffer copy and its own
    wake-up for every ``readuntil`` and ``readexactly``, two of each a streamed event (the
    chunk's size line, its data) and two a JSON answer (the head, the body), with a timer each.
    Here an answer's head, and a chunk's size and data, are found in the bytes that are already
    in; a read waits only when they are not (bench/count_proxy.py counts the difference).

    Why buffered: for a plain ``Protocol`` the transport reads with ``sock.recv(256 KiB)``, a
    fresh 256 KiB object each read, which glibc maps and unmaps as pages (past its 128 KiB mmap
    threshold): 10 µs a read where a read of a few hundred bytes into a kept buffer takes 1 µs
    (measured on the 2-core bench machine), once a JSON answer and once each streamed event.
    Here the socket reads into the client's one buffer (``HTTP11Client._inbox``) and only what
    came is kept."""

    __slots__ = ("key", "reused", "transport", "buf", "eof", "_waiter", "_paused", "_inbox")

    def __init__(self, key: tuple[Any, ...], inbox: memoryview) -> None:
        self.key = key
        self.reused = False
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._inbox = inbox

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport: we connect TCP

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._inbox

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._inbox[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        # most answers arrive in one piece, taken as it is; a body over several, joined
        self.buf = self.buf + data if self.buf else data
        if len(self.buf) > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True  # a reader behind: the socket waits until it wants more
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self) -> None:
        """Wait until more bytes are in (or the connection ended: ``eof``)."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        await waiter

    async def head(self) -> tuple[bytes, int, dict[str, str]]:
        """The answer's HTTP version, status and headers (taken from ``buf``), past any 1xx
        interim answer (100 Continue, 103 Early Hints) before it."""
        interim = False
        while True:
            while (end := _HEAD_END.search(self.buf)) is None:
                if len(self.buf) > _MAX_HEADER:
                    raise HTTP11Error("response headers too large")
                if self.buf[:1] and self.buf[0] < 0x21:  # no status line starts so: no wait
                    raise HTTP11Error("malformed status line")
                if self.eof:
                    if self.buf or interim:  # the server had the request: not to send again
                        raise HTTP11Error("connection closed inside the answer's head")
                    # closed before an answer: the caller may send it once more
                    raise ConnectionResetError("closed before the answer's head")
                await self.more()
            at = end.start() + 1  # the last line's LF
            if at > _MAX_HEADER:  # whole or in pieces, a head has one cap
                raise HTTP11Error("response headers too large")
            head, self.buf = self.buf[:at], self.buf[end.end() :]
            version, status, hdrs = _head(head)
            if status >= 200:
                return version, status, hdrs
            if status == 101:  # we never ask to switch
                raise HTTP11Error("101 Switching Protocols to a request that asked for none")
            interim = True

    def usable(self) -> bool:
        t = self.transport
        return t is not None and not t.is_closing() and not self.eof and not self.buf

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Response:
    """Status and headers are read; the body is read with ``read`` or ``iter_chunks``."""

    def __init__(
        self,
        client: HTTP11Client,
        conn: _Conn,
        version: bytes,
        status: int,
        headers: dict[str, str],
    ) -> None:
        self._client = client
        self._conn: _Conn | None = conn
        self.status = status
        self.headers = headers  # lower-cased names
        # the head was checked (_head): Transfer-Encoding is "chunked" alone, without a
        # Content-Length, and a Content-Length is digits
        self._chunked = "transfer-encoding" in headers
        length = headers.get("content-length")
        self._length = 0 if status in (204, 304) else int(length) if length is not None else None
        connection = headers.get("connection")
        self._keep = (
            (self._chunked or self._length is not None)
            and version >= b"1.1"  # HTTP/1.0 keep-alive is a hint we do not take (as h11)
            and (connection is None or "close" not in _tokens(connection))
        )

    async def read(self, timeout: float | None = None) -> bytes:
        """The whole body, within `timeout` in all (one timer, not one per piece)."""
        conn = self._conn
        if conn is not None and self._length is not None and len(conn.buf) >= self._length:
            # a Content-Length body already in (most JSON answers): no wait, no timer
            data, conn.buf = conn.buf[: self._length], conn.buf[self._length :]
            self.release()
            return data

        async def collect() -> bytes:
            return b"".join([chunk async for chunk in self.iter_chunks(None)])

        return await within(collect(), timeout)

    async def iter_chunks(self, timeout: float | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives; `timeout` bounds the wait for each piece."""
        conn = self._conn
        if conn is None:
            return
        each = EachWithin()
        try:
            if self._length is not None:
                left = self._length
                while left:
                    if not conn.buf:
                        if conn.eof:
                            raise HTTP11Error("connection closed before the end of the body")
                        await each.within(conn.more(), timeout)
                        continue
                    data, conn.buf = conn.buf[:left], conn.buf[left:]
                    left -= len(data)
                    yield data
            elif self._chunked:
                left = 0  # of the current chunk's data, not given yet
                while True:
                    buf = conn.buf
                    if left:
                        if len(buf) >= left + 2:
                            if buf[left : left + 2] != b"\r\n":
                                raise HTTP11Error("malformed chunked body (no CRLF after a chunk)")
                            data, conn.buf, left = buf[:left], buf[left + 2 :], 0
                            yield data
                            continue
                        if _HIGH_WATER <= len(buf) < left:  # a huge chunk: what is in, now
                            data, conn.buf, left = buf, b"", left - len(buf)
                            yield data
                            continue
                    elif size_line := _CHUNK_SIZE.match(buf):
                        if size := int(size_line[1], 16):
                            conn.buf, left = buf[size_line.end() :], size
                            continue
                        rest = buf[size_line.end() :]  # the last chunk; trailers, an empty line
                        if end := _LINE_END.match(rest):
                            conn.buf = rest[end.end() :]
                            break
                        if end := _HEAD_END.search(rest):
                            _fields(rest[: end.start() + 1])  # checked, not kept
                            conn.buf = rest[end.end() :]
                            break
                        if len(rest) > _MAX_HEADER:
                            raise HTTP11Error("malformed chunked body (trailers too large)")
                    elif b"\r\n" in buf:  # a whole size line that is not one
                        raise HTTP11Error("malformed chunked body (a chunk size)")
                    elif len(buf) > _MAX_HEADER:
                        raise HTTP11Error("malformed chunked body (no chunk size line)")
                    if conn.eof:
                        raise HTTP11Error("malformed or cut-off body (it ended inside a chunk)")
                    await each.within(conn.more(), timeout)
            else:  # no framing: the body runs to the end of the connection
                while True:
                    if conn.buf:
                        data, conn.buf = conn.buf, b""
                        yield data
                    elif conn.eof:
                        break
                    else:
                        await each.within(conn.more(), timeout)
        except BaseException:
            self.close()
            raise
        finally:
            each.close()
        self.release()

    def release(self) -> None:
        """Give the connection back when the body was read in full, else close it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._keep:
                self._client._put(conn)
            else:
                conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


@functools.lru_cache(maxsize=1024)  # an upstream's few URLs, split once (urlsplit: 3 µs a call)
def _route(url: str) -> tuple[tuple[str, str, int], str, str]:
    """(the pool's key: scheme, host, port; the request target; the Host header) of `url`."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        # no host: the text reaches clients
        raise HTTP11Error(f"not an http(s) URL (scheme {u.scheme!r})")
    port = u.port or (443 if u.scheme == "https" else 80)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    host = u.hostname if u.port is None else f"{u.hostname}:{u.port}"
    return (u.scheme, u.hostname, port), target, host


class HTTP11Client:
    def __init__(self, *, connect_timeout: float = 10.0, max_idle: int = 512) -> None:
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[Any, ...], list[_Conn]] = {}
        self._ssl: ssl.SSLContext | None = None
        # what every connection of this client reads into: the transport fills it and the
        # connection copies out what came before the callback returns (asyncio reads a socket,
        # or decrypts TLS, into a protocol's buffer and reports it in one step), so no two reads
        # share it and no connection keeps a buffer of its own while idle
        self._inbox = memoryview(bytearray(64 * 1024))

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _put(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) < self.max_idle and conn.usable():
            conn.reused = True
            idle.append(conn)
        else:
            conn.close()

    async def _get(self, key: tuple[Any, ...]) -> _Conn:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # most recently used first: the likeliest to be alive
            if conn.usable():
                return conn
            conn.close()
        scheme, host, port = key
        try:
            _, conn = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(
                    lambda: _Conn(key, self._inbox),
                    host,
                    port,
                    ssl=self._ssl_context() if scheme == "https" else None,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            # told apart from an answer's timeout: nothing was sent, so another key may be tried
            raise HTTP11Error(f"no connection within {self.connect_timeout:g} s") from None
        return conn

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Response:
        """Send the request and read the status line and headers (within `timeout`)."""
        key, target, host = _route(url)
        head = [
            f"{method} {target} HTTP/1.1",
            f"Host: {host}",
            f"Content-Length: {len(body)}",
            "Accept-Encoding: identity",
        ]
        head += [f"{k}: {v}" for k, v in headers.items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        for attempt in (1, 2):
            conn = await self._get(key)
            try:
                assert conn.transport is not None  # connected
                conn.transport.write(raw)
                version, status, hdrs = await within(conn.head(), timeout)
            except ConnectionError as exc:
                conn.close()
                # a kept-alive connection the server had already closed: the request never
                # reached it, so sending it once more on a fresh connection is safe
                if conn.reused and attempt == 1:
                    continue
                raise HTTP11Error(f"connection failed ({type(exc).__name__})") from None
            except BaseException:
                conn.close()
                raise
            return Response(self, conn, version, status, hdrs)
        raise HTTP11Error("connection failed")  # not reached: the loop returns or raises

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
