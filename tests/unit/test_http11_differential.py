"""The upstream client's reading of an answer, held side by side with h11's (a maintained
HTTP/1.1 parser) on the same bytes: whether it is refused, its status, its headers, its body, and
whether its connection may carry the next request. The upstream is hostile input: wherever two
parsers disagree on where an answer ends, a second answer can hide (a kept-alive connection then
hands it to the next caller), and wherever they disagree on a header, a header can be smuggled.

Our side runs the client's real code: ``HTTP11Client.request`` and ``Response.read`` or
``iter_chunks`` over a connection fed as asyncio's socket transport feeds it (``get_buffer`` and
``buffer_updated``, cut at random points, paused when the connection asks), with the server's
close as ``eof_received``. h11's side is a client ``h11.Connection`` that sent the same request.
Well-formed answers come from hypothesis with random framing (Content-Length, chunked with random
chunk splits, read to the close), header case and whitespace; each malformed family then bends one
thing; a table of named hostile cases gives each its verdict. Where we part from h11 on purpose,
the case says why (``differs``) and ``_deliberate`` applies the same rule to generated answers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_server_ext.engine.errors import HTTP11Error
from jupyter_server_ext.engine.upstreams.transport import http11
from jupyter_server_ext.engine.upstreams.transport.http11 import HTTP11Client

KEY = ("http", "upstream.test", 80)
URL = "http://upstream.test/v1/chat/completions"
FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))
BOUNDED = settings(
    max_examples=300,
    deadline=5000,  # ms; an example takes about 2
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass(frozen=True)
class Verdict:
    """What a reader made of an answer. ``answer``: read to its framed end; ``refused``: an
    error; ``incomplete``: still waiting for bytes (a real read then times out)."""

    outcome: str
    status: int = 0
    headers: tuple[tuple[bytes, bytes], ...] = ()  # the others than FRAMING, each's last value
    body: bytes = b""
    reusable: bool = False


REFUSED = Verdict("refused")
INCOMPLETE = Verdict("incomplete")


def _others(items: Any) -> tuple[tuple[bytes, bytes], ...]:
    last = {name: value for name, value in items if name not in FRAMING}
    return tuple(sorted(last.items()))


def _request_body(method: str) -> bytes:
    return b'{"model": "m"}' if method == "POST" else b""


# --- h11's reading ---------------------------------------------------------------------------


def _h11(raw: bytes, closes: bool, method: str) -> tuple[Verdict, list[Any]]:
    """h11's verdict on `raw` as the answer to one `method` request, and the heads it read."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=http11._MAX_HEADER)
    body = _request_body(method)
    conn.send(
        h11.Request(
            method=method,
            target="/v1/chat/completions",
            headers=[("Host", "upstream.test"), ("Content-Length", str(len(body)))],
        )
    )
    if body:
        conn.send(h11.Data(data=body))
    conn.send(h11.EndOfMessage())
    if raw:  # receive_data(b"") is h11's end of the connection
        conn.receive_data(raw)
    if closes:
        conn.receive_data(b"")
    heads: list[Any] = []
    data: list[bytes] = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return INCOMPLETE, heads
            if isinstance(event, (h11.InformationalResponse, h11.Response)):
                heads.append(event)
            elif isinstance(event, h11.Data):
                data.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed before the answer's end
                return REFUSED, heads
    except h11.RemoteProtocolError:
        return REFUSED, heads
    final = heads[-1]
    reusable = (
        conn.our_state is h11.DONE
        and conn.their_state is h11.DONE
        and not conn.trailing_data[0]
        and not closes
    )
    headers = _others((bytes(n), bytes(v)) for n, v in final.headers)
    return Verdict("answer", final.status_code, headers, b"".join(data), reusable), heads


def _deliberate(head: Any) -> str:
    """Why we refuse a head h11 reads ('' when we do not), the rules of the named cases below."""
    names = {bytes(name) for name, _ in head.headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        return "te-with-cl"
    if b"transfer-encoding" in names and head.http_version < b"1.1":
        return "te-in-http10"
    return ""


def _expected(raw: bytes, closes: bool, method: str) -> Verdict:
    verdict, heads = _h11(raw, closes, method)
    return REFUSED if any(_deliberate(head) for head in heads) else verdict


# --- our reading -----------------------------------------------------------------------------


class _Wire(asyncio.Transport):
    """The socket under one connection: what the client writes goes nowhere; its pauses, resumes
    and close are noted for the feeder."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.paused = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


async def _settle() -> None:
    """Let the reading task run until it waits for bytes again (a few loop turns)."""
    for _ in range(6):
        await asyncio.sleep(0)


async def _read(
    raw: bytes, closes: bool, method: str, streamed: bool, cuts: list[int], reused: bool = False
) -> Verdict:
    """Our verdict on `raw`, fed in the pieces `cuts` makes, through the client's real path."""
    client = HTTP11Client()
    conn = http11._Conn(KEY, client._inbox)
    wire = _Wire()
    conn.connection_made(wire)
    conn.reused = reused
    client._idle[KEY] = [conn]  # the pool hands it out as the connection for the request
    gets = 0
    get = client._get

    async def once(key: Any) -> Any:  # a second connection would be the request sent again
        nonlocal gets
        gets += 1
        if gets > 1:
            raise AssertionError("the request was sent again on a fresh connection")
        return await get(key)

    client._get = once  # type: ignore[method-assign]

    async def call() -> tuple[http11.Response, bytes]:
        headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
        resp = await client.request(
            method, URL, headers=headers, body=_request_body(method), timeout=5
        )
        if streamed:
            return resp, b"".join([piece async for piece in resp.iter_chunks(5)])
        return resp, await resp.read(5)

    task = asyncio.ensure_future(call())
    await _settle()
    bounds = [0, *sorted(set(cuts)), len(raw)]
    for start, end in itertools.pairwise(bounds):
        piece = raw[start:end]
        while piece and not wire.closed:
            if wire.paused:  # the socket waits until the connection asks for more
                await _settle()
                if wire.paused:
                    break
            into = conn.get_buffer(-1)
            n = min(len(into), len(piece))
            into[:n] = piece[:n]
            conn.buffer_updated(n)
            piece = piece[n:]
            await _settle()
    if closes and not wire.closed:
        conn.eof_received()
        conn.connection_lost(None)
        await _settle()
    # kept: in the pool, and still fit for the next request when the pool hands it out
    kept = conn in client._idle.get(KEY, []) and conn.usable()
    await client.close()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return INCOMPLETE
    exc = task.exception()
    if isinstance(exc, HTTP11Error):
        return REFUSED
    if exc is not None:  # failover reads only HTTP11Error (and OSError, timeouts) as a failure
        return Verdict(f"raised {type(exc).__name__}: {exc}")
    resp, body = task.result()
    headers = _others(
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in resp.headers.items()
    )
    return Verdict("answer", resp.status, headers, body, kept)


@contextlib.contextmanager
def _loop_held_at_most(seconds: float) -> Iterator[None]:
    """A reader that never gives the event loop back (a negative Content-Length once made
    ``iter_chunks`` yield empty pieces for ever) fails its example instead of hanging the run:
    SIGALRM interrupts even a loop that never awaits. pytest-timeout's own alarm is put back."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the reader held the event loop for {seconds:g} s")

    handler = signal.signal(signal.SIGALRM, expire)
    outer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, *outer)
        signal.signal(signal.SIGALRM, handler)


def _ours(raw: bytes, closes: bool, method: str, streamed: bool, cuts: list[int]) -> Verdict:
    with _loop_held_at_most(5):
        return asyncio.run(_read(raw, closes, method, streamed, cuts))


# --- generated answers -----------------------------------------------------------------------

NAMES = st.sampled_from(
    [b"X-Request-Id", b"Content-Type", b"x-ratelimit-remaining-requests", b"Retry-After", b"Server"]
)
VALUE_BYTES = [*range(0x21, 0x7F), 0x20, 0x09, 0x80, 0xE9, 0xFF]
VALUES = st.lists(st.sampled_from(VALUE_BYTES), max_size=10).map(bytes)
OWS = st.sampled_from([b"", b" ", b"\t", b"  \t"])
BODIES = st.binary(max_size=120) | st.sampled_from(
    [b"", b"\r\n", b"0\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", b"\n\n\r\n"]
)
CASE = st.sampled_from([bytes.lower, bytes.upper, bytes.title, bytes])
# what a malformed family puts where a well-formed answer has something else
CONTROLS = [b"\x00", b"\r", b"\n", b"\x0b", b"\x0c", b"\x01", b"\x7f", b"\xff", b"\t", b"\r\n "]
LENGTHS = [b"+5", b"-1", b"0x5", b"1_0", b"", b" ", b"5 5", b"5,", b",5", b"1" * 21, b"\xb2", b"05"]
CODINGS = [
    b"chunked",
    b"Chunked",
    b"CHUNKED ",
    b"gzip",
    b"gzip, chunked",
    b"chunked, gzip",
    b"chunked, chunked",
    b"identity",
    b"xchunked",
    b"chunked;q=1",
    b"",
]
SIZES = [b"-1", b"-0", b"+5", b"0x5", b"1_0", b" 5", b"5 ", b"5\t", b"5 ;x", b"5;x", b"", b"f" * 21]
ENDS = [b"", b"\n", b"\r", b"XX", b"\r\r\n", b"\n\r"]
STATUS_LINES = [
    b"HTTP/1.1  200 OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 +20 OK",
    b"HTTP/1.1 099 Low",
    b"HTTP/1.1 200OK",
    b"HTTP/2.0 200 OK",
    b"HTTP/1.10 200 OK",
    b"http/1.1 200 OK",
    b"FOO/1.1 200 OK",
    b" HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK\x00",
    b"HTTP/1.1 200 \xe9",
    b"HTTP/1.1\t200 OK",
    b"",
]
ALPHABET = [b"\r", b"\n", b" ", b"\t", b":", b";", b",", b"0", b"5", b"a", b"\x00", b"-"]


@st.composite
def answers(draw: Any, family: str = "") -> tuple[bytes, bool]:
    """A well-formed answer and whether its server closes the connection after it; with a
    `family`, bent in that one way."""
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.1", b"1.0"]))
    status = draw(st.sampled_from([200, 200, 201, 204, 304, 400, 404, 429, 500]))
    reason = draw(st.sampled_from([b" OK", b"", b" ", b" Too Many Requests", b" \xe9t\xe9"]))
    status_line = b"HTTP/" + version + b" %d" % status + reason
    body = b"" if status in (204, 304) else draw(BODIES)
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if family == "chunks":
        framing, version = "chunked", b"1.1"
        status_line = b"HTTP/1.1 200 OK"
    if framing == "chunked" and version == b"1.0":
        framing = "length"  # chunked in HTTP/1.0 is a named case of its own
    fields = [
        draw(CASE)(name) + b":" + draw(OWS) + value + draw(OWS)
        for name, value in draw(st.lists(st.tuples(NAMES, VALUES), max_size=5))
    ]
    if framing == "length":
        fields.append(draw(CASE)(b"Content-Length") + b":" + draw(OWS) + b"%d" % len(body))
    elif framing == "chunked":
        fields.append(draw(CASE)(b"Transfer-Encoding") + b":" + draw(OWS) + draw(CASE)(b"chunked"))
    connection = draw(st.sampled_from([None, b"keep-alive", b"close", b"Keep-Alive, CLOSE"]))
    if connection is not None:
        fields.append(b"Connection: " + connection)
    fields = draw(st.permutations(fields))
    interim = [
        b"HTTP/1.1 %d Early\r\n%s\r\n" % (code, b"Link: </a>\r\n" if code == 103 else b"")
        for code in draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2))
    ]
    closes = framing == "close" or draw(st.booleans())

    # each family bends one thing before the answer is put together
    if family == "status":
        status_line = draw(st.sampled_from(STATUS_LINES))
    elif family == "name" and fields:
        at = draw(st.integers(0, len(fields) - 1))
        name, _, value = fields[at].partition(b":")
        bend = draw(st.sampled_from([b" :", b"\t:", b"", b"(:", b" x:"]))
        fields[at] = draw(st.sampled_from([name + bend + value, b" " + fields[at], b":" + value]))
    elif family == "value" and fields:
        at = draw(st.integers(0, len(fields) - 1))
        where = draw(st.integers(0, len(fields[at])))
        bad = draw(st.sampled_from(CONTROLS))
        fields[at] = fields[at][:where] + bad + fields[at][where:]
    elif family == "fold":
        at = draw(st.integers(0, len(fields)))
        more = draw(
            st.sampled_from(
                [b" x", b"\ty", b" Transfer-Encoding: chunked", b" ", b"  Content-Length: 3"]
            )
        )
        fields.insert(at, more)
    elif family == "lengths":
        for _ in range(draw(st.integers(1, 2))):
            value = draw(
                st.sampled_from([*LENGTHS, b"%d" % len(body), b"%d, %d" % (len(body), len(body))])
            )
            fields.insert(draw(st.integers(0, len(fields))), b"Content-Length: " + value)
    elif family == "codings":
        for _ in range(draw(st.integers(1, 2))):
            value = draw(st.sampled_from(CODINGS))
            fields.insert(draw(st.integers(0, len(fields))), b"Transfer-Encoding: " + value)
    elif family == "interim":
        code = draw(st.sampled_from([100, 101, 103, 199]))
        extra = draw(
            st.sampled_from(
                [b"", b"Content-Length: 5\r\n", b"Transfer-Encoding: gzip\r\n", b"X y\r\n"]
            )
        )
        interim.insert(
            draw(st.integers(0, len(interim))), b"HTTP/1.1 %d Hm\r\n%s\r\n" % (code, extra)
        )
    eols = [b"\r\n"] * (len(fields) + 2)
    if family == "line-ends":
        eols = [draw(st.sampled_from([b"\r\n", b"\n", b"\n", b"\r", b"\r\r\n"])) for _ in eols]

    wire = b"".join(interim) + b"".join(
        line + eol for line, eol in zip([status_line, *fields, b""], eols, strict=True)
    )
    if framing != "chunked":
        wire += body
    else:
        cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=5))))
        pieces = [body[a:b] for a, b in itertools.pairwise([0, *cuts, len(body)]) if body[a:b]]
        lines = []
        for piece in pieces:
            size = draw(st.sampled_from([b"%x", b"%X", b"00%x"])) % len(piece)
            ext = draw(st.sampled_from([b"", b"", b";a=b", b';q="1;2"', b" ", b"\t"]))
            lines.append([size + ext + b"\r\n", piece, b"\r\n"])
        last = draw(st.sampled_from([b"0", b"000", b"0;done"]))
        trailers = draw(st.sampled_from([b"", b"", b"X-Trailer: yes\r\n", b"A: 1\r\nB: 2\r\n"]))
        if family == "chunks":
            what = draw(st.sampled_from(["size", "end", "last", "trailer"]))
            if what == "size" and lines:
                at = draw(st.integers(0, len(lines) - 1))
                lines[at][0] = draw(st.sampled_from(SIZES)) + b"\r\n"
            elif what == "end" and lines:
                lines[draw(st.integers(0, len(lines) - 1))][2] = draw(st.sampled_from(ENDS))
            elif what == "last":
                last = draw(st.sampled_from([b"", b"-0", b"0x0", b" 0", b"0\n"]))
            else:
                trailers = draw(
                    st.sampled_from([b"no colon\r\n", b"X: a\n", b" X: a\r\n", b"X : a\r\n"])
                )
        end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
        wire += b"".join(b"".join(line) for line in lines) + last + b"\r\n" + trailers + end

    if family == "extra":
        wire += draw(
            st.sampled_from([b"X", b"\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
        )
    elif family == "cut":
        wire = wire[: draw(st.integers(0, max(0, len(wire) - 1)))]
    elif family == "bytes":
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(wire)))
            op = draw(st.sampled_from(["insert", "delete", "replace"]))
            byte = draw(st.sampled_from(ALPHABET))
            if op == "insert":
                wire = wire[:at] + byte + wire[at:]
            elif op == "delete":
                wire = wire[:at] + wire[at + 1 :]
            else:
                wire = wire[:at] + byte + wire[at + 1 :]
    return wire, closes


def _cuts(raw: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(raw)), max_size=8)


FAMILIES = [
    "line-ends",
    "fold",
    "name",
    "value",
    "lengths",
    "codings",
    "chunks",
    "status",
    "interim",
    "cut",
    "extra",
    "bytes",
]


def _compare(raw: bytes, closes: bool, method: str, streamed: bool, cuts: list[int]) -> None:
    expected = _expected(raw, closes, method)
    got = _ours(raw, closes, method, streamed, cuts)
    assert got == expected, f"{raw!r} (closes={closes}, {method}, cuts={sorted(set(cuts))})"


@BOUNDED
@given(
    answer=answers(),
    method=st.sampled_from(["GET", "POST"]),
    streamed=st.booleans(),
    data=st.data(),
)
def test_well_formed_answers_read_as_h11_reads_them(
    answer: tuple[bytes, bool], method: str, streamed: bool, data: Any
) -> None:
    raw, closes = answer
    expected = _expected(raw, closes, method)
    assert expected.outcome == "answer"
    _compare(raw, closes, method, streamed, data.draw(_cuts(raw)))


@BOUNDED
@given(
    family=st.sampled_from(FAMILIES),
    method=st.sampled_from(["GET", "POST"]),
    streamed=st.booleans(),
    data=st.data(),
)
def test_malformed_answers_are_refused_or_read_as_h11_reads_them(
    family: str, method: str, streamed: bool, data: Any
) -> None:
    raw, closes = data.draw(answers(family))
    _compare(raw, closes, method, streamed, data.draw(_cuts(raw)))


# --- named hostile cases ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    raw: bytes
    expect: Verdict
    closes: bool = False
    differs: str = ""  # why we read it otherwise than h11 does, on purpose


def ok(body: bytes, reusable: bool = True, status: int = 200, **headers: bytes) -> Verdict:
    named = tuple(sorted((k.replace("_", "-").encode(), v) for k, v in headers.items()))
    return Verdict("answer", status, named, body, reusable)


H = b"HTTP/1.1 200 OK\r\n"
TE = b"Transfer-Encoding: chunked\r\n"
CASES: dict[str, Case] = {
    # Content-Length
    "length": Case(H + b"Content-Length: 5\r\n\r\nhello", ok(b"hello")),
    "length-twice-equal": Case(
        H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", ok(b"hello")
    ),
    "length-list-equal": Case(H + b"Content-Length: 5, 5\r\n\r\nhello", ok(b"hello")),
    "length-twice-different": Case(
        H + b"Content-Length: 5\r\nContent-Length: 7\r\n\r\nhello!!", REFUSED
    ),
    "length-list-different": Case(H + b"Content-Length: 5, 7\r\n\r\nhello!!", REFUSED),
    "length-plus": Case(H + b"Content-Length: +5\r\n\r\nhello", REFUSED),
    "length-underscore": Case(H + b"Content-Length: 1_0\r\n\r\nhelloworld", REFUSED),
    "length-negative": Case(H + b"Content-Length: -1\r\n\r\nhello", REFUSED),
    "length-hex": Case(H + b"Content-Length: 0x5\r\n\r\nhello", REFUSED),
    "length-inner-space": Case(H + b"Content-Length: 1 0\r\n\r\nhelloworld", REFUSED),
    "length-empty": Case(H + b"Content-Length: \r\n\r\n", REFUSED),
    "length-superscript": Case(H + b"Content-Length: \xb2\r\n\r\nhi", REFUSED),
    "length-21-digits": Case(H + b"Content-Length: " + b"0" * 20 + b"5\r\n\r\nhello", REFUSED),
    "length-cut-by-close": Case(H + b"Content-Length: 50\r\n\r\nshort", REFUSED, closes=True),
    "length-bytes-beyond": Case(H + b"Content-Length: 2\r\n\r\nokEXTRA", ok(b"ok", reusable=False)),
    # Transfer-Encoding
    "chunked": Case(H + TE + b"\r\n5\r\nhello\r\n0\r\n\r\n", ok(b"hello")),
    "chunked-any-case": Case(
        H + b"transfer-encoding: ChUnKeD\r\n\r\n2\r\nhi\r\n0\r\n\r\n", ok(b"hi")
    ),
    "coding-gzip": Case(H + b"Transfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "coding-gzip-then-chunked": Case(
        H + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", REFUSED
    ),
    "coding-chunked-not-last": Case(
        H + b"Transfer-Encoding: chunked, gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n", REFUSED, closes=True
    ),
    "coding-xchunked": Case(
        H + b"Transfer-Encoding: xchunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", REFUSED
    ),
    "coding-twice": Case(H + TE + TE + b"\r\n2\r\nhi\r\n0\r\n\r\n", REFUSED),
    "coding-identity": Case(H + b"Transfer-Encoding: identity\r\n\r\nhi", REFUSED, closes=True),
    "te-with-cl": Case(
        H + b"Content-Length: 3\r\n" + TE + b"\r\n2\r\nhi\r\n0\r\n\r\n",
        REFUSED,
        differs="two framings at once: RFC 9112 6.3 says it ought to be an error; h11 lets chunked win",
    ),
    "te-in-http10": Case(
        b"HTTP/1.0 200 OK\r\n" + TE + b"\r\n2\r\nhi\r\n0\r\n\r\n",
        REFUSED,
        closes=True,
        differs="RFC 9112 6.1: chunked in HTTP/1.0 MUST be taken as faulty framing; h11 reads it",
    ),
    # chunk sizes and chunk framing
    "chunk-negative": Case(H + TE + b"\r\n-1\r\nhi\r\n0\r\n\r\n", REFUSED),
    "chunk-minus-zero": Case(H + TE + b"\r\n-0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", REFUSED),
    "chunk-0x": Case(H + TE + b"\r\n0x5\r\nhello\r\n0\r\n\r\n", REFUSED),
    "chunk-plus": Case(H + TE + b"\r\n+5\r\nhello\r\n0\r\n\r\n", REFUSED),
    "chunk-underscore": Case(H + TE + b"\r\n1_0\r\n" + b"h" * 16 + b"\r\n0\r\n\r\n", REFUSED),
    "chunk-space-before": Case(H + TE + b"\r\n 5\r\nhello\r\n0\r\n\r\n", REFUSED),
    "chunk-space-after": Case(H + TE + b"\r\n5 \r\nhello\r\n0\r\n\r\n", ok(b"hello")),
    "chunk-extension": Case(H + TE + b'\r\n5;a=b;q="x;y"\r\nhello\r\n0;end\r\n\r\n', ok(b"hello")),
    "chunk-space-before-extension": Case(H + TE + b"\r\n5 ;a\r\nhello\r\n0\r\n\r\n", REFUSED),
    "chunk-empty-size-line": Case(H + TE + b"\r\n2\r\nhi\r\n\r\n\r\nXX", REFUSED),
    "chunk-19-digits": Case(
        H + TE + b"\r\n" + b"0" * 18 + b"5\r\nhello\r\n0\r\n\r\n", ok(b"hello")
    ),
    "chunk-21-digits": Case(H + TE + b"\r\n" + b"f" * 21 + b"\r\nhello", REFUSED),
    "chunk-huge-waits": Case(H + TE + b"\r\n" + b"f" * 20 + b"\r\nhello", INCOMPLETE),
    "chunk-size-bare-lf": Case(H + TE + b"\r\n5\nhello\r\n0\r\n\r\n", REFUSED),
    "chunk-no-crlf-after-data": Case(H + TE + b"\r\n5\r\nhelloXX0\r\n\r\n", REFUSED),
    "chunk-lf-after-data": Case(H + TE + b"\r\n5\r\nhello\n0\r\n\r\n", REFUSED),
    "chunk-cut-by-close": Case(H + TE + b"\r\n5\r\nhel", REFUSED, closes=True),
    "chunk-size-line-endless": Case(H + TE + b"\r\n" + b"1" * 70000, REFUSED),
    "trailers": Case(H + TE + b"\r\n2\r\nhi\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n", ok(b"hi")),
    "trailers-bare-lf": Case(H + TE + b"\r\n2\r\nhi\r\n0\r\nX-T: 1\n\n", ok(b"hi")),
    "last-chunk-bare-lf-end": Case(H + TE + b"\r\n2\r\nhi\r\n0\r\n\n", ok(b"hi")),
    "trailers-malformed": Case(H + TE + b"\r\n2\r\nhi\r\n0\r\nno colon\r\n\r\n", REFUSED),
    "trailers-endless": Case(H + TE + b"\r\n2\r\nhi\r\n0\r\nX: " + b"a" * 70000, REFUSED),
    "chunk-larger-than-high-water": Case(
        H + TE + b"\r\n%x\r\n" % 300000 + b"z" * 300000 + b"\r\n0\r\n\r\n", ok(b"z" * 300000)
    ),
    # header smuggling
    "fold": Case(
        H + b"X-A: a\r\n b\r\n\tc\r\nContent-Length: 2\r\n\r\nhi", ok(b"hi", x_a=b"a b c")
    ),
    "fold-hides-no-framing": Case(
        H + b"X-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
        ok(b"hello", x_a=b"a Transfer-Encoding: chunked"),
    ),
    "fold-first": Case(H + b" Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "space-before-colon": Case(H + b"Content-Length : 2\r\n\r\nhi", REFUSED, closes=True),
    "tab-before-colon": Case(
        H + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", REFUSED, closes=True
    ),
    "line-without-colon": Case(H + b"Content-Length: 2\r\nnonsense\r\n\r\nhi", REFUSED),
    "empty-name": Case(H + b": x\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "nul-in-value": Case(H + b"X-A: a\x00b\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "bare-cr-in-value": Case(
        H + b"X-A: a\rContent-Length: 9\r\nContent-Length: 2\r\n\r\nhi", REFUSED
    ),
    "vertical-tab-in-value": Case(H + b"X-A: a\x0bb\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "obs-text-in-value": Case(
        H + b"X-A: \xe9t\xe9\r\nContent-Length: 2\r\n\r\nhi", ok(b"hi", x_a=b"\xe9t\xe9")
    ),
    # bare LF: RFC 9112 2.2 lets a recipient take a bare LF as a head's line end, as h11 does
    "bare-lf-head": Case(b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", ok(b"hello")),
    "lf-cr-lf-ends-head": Case(H + b"Content-Length: 2\n\r\nhi", ok(b"hi")),
    "mixed-ends-head-early": Case(
        H + b"Content-Length: 5\r\n\nhello\r\nContent-Length: 0\r\n\r\n",
        ok(b"hello", reusable=False),
    ),
    "bare-cr-line-end": Case(H + b"X-A: a\rContent-Length: 2\r\n\r\nhi", REFUSED),
    # whether the connection is kept
    "close": Case(
        H + b"Connection: close\r\nContent-Length: 2\r\n\r\nhi", ok(b"hi", reusable=False)
    ),
    "close-in-a-list": Case(
        H + b"Connection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nhi",
        ok(b"hi", reusable=False),
    ),
    "close-then-keep-alive": Case(
        H + b"Connection: close\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
        ok(b"hi", reusable=False),
    ),
    "http10-keep-alive": Case(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
        ok(b"hi", reusable=False),
    ),
    "read-to-close": Case(
        H + b"\r\nuntil the end", ok(b"until the end", reusable=False), closes=True
    ),
    "read-to-close-not-closed": Case(H + b"\r\nuntil the", INCOMPLETE),
    # status lines
    "no-reason": Case(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi", ok(b"hi")),
    "empty-reason": Case(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nhi", ok(b"hi")),
    "two-digit-status": Case(b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "four-digit-status": Case(b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "status-under-100": Case(b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "status-with-sign": Case(b"HTTP/1.1 +20 OK\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "two-spaces": Case(b"HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "not-http": Case(b"FOO/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "lower-case-http": Case(b"http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", REFUSED),
    "empty-line-first": Case(b"\r\n" + H + b"Content-Length: 2\r\n\r\nhi", REFUSED),
    "space-first": Case(b" " + H + b"Content-Length: 2\r\n\r\nhi", REFUSED),
    "space-first-unfinished": Case(b" HTTP/1.1 200", REFUSED),
    "garbage-unfinished": Case(b"NOT HTTP", INCOMPLETE),
    "http10": Case(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", ok(b"hi", reusable=False)),
    # 1xx, 204, 304
    "continue-then-answer": Case(
        b"HTTP/1.1 100 Continue\r\n\r\n" + H + b"Content-Length: 2\r\n\r\nhi", ok(b"hi")
    ),
    "early-hints-twice": Case(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 2 + H + b"Content-Length: 2\r\n\r\nhi",
        ok(b"hi"),
    ),
    "switching-protocols": Case(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nhi", REFUSED
    ),
    "continue-then-close": Case(b"HTTP/1.1 100 Continue\r\n\r\n", REFUSED, closes=True),
    "204-with-length-and-body": Case(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
        ok(b"", reusable=False, status=204),
    ),
    "204-bare": Case(b"HTTP/1.1 204 No Content\r\n\r\n", ok(b"", status=204)),
    "304-chunked-no-body": Case(
        b"HTTP/1.1 304 Not Modified\r\n" + TE + b"\r\n", ok(b"", status=304)
    ),
    # the head's size and its end
    "head-over-the-cap-whole": Case(
        H + b"X-Big: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nhi",
        REFUSED,
        differs="a head over 64 KiB is refused even when it arrives whole: the cap bounds the head, "
        "not how it was cut; h11 bounds only a head still incomplete",
    ),
    "head-endless": Case(H + b"X-Big: " + b"a" * 70000, REFUSED),
    "closed-inside-head": Case(H + b"Content-Len", REFUSED, closes=True),
    "closed-before-anything": Case(b"", REFUSED, closes=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_named_hostile_answers(name: str) -> None:
    case = CASES[name]
    theirs = _h11(case.raw, case.closes, "POST")[0]
    if case.differs:
        assert theirs != case.expect, f"h11 now reads it as we do: {theirs}"
    else:
        assert theirs == case.expect, "the table and h11 disagree"
    for method, streamed, cuts in [
        ("POST", False, []),
        ("GET", True, list(range(0, len(case.raw), 7)) if len(case.raw) < 4096 else [100, 70001]),
    ]:
        assert _ours(case.raw, case.closes, method, streamed, cuts) == case.expect


@pytest.mark.parametrize(
    "raw",
    [H + b"Content-Len", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early\r\n\r\nHTTP/1"],
    ids=["part-of-a-head", "an-interim-answer", "an-interim-answer-and-part-of-a-head"],
)
def test_a_kept_connection_closed_after_part_of_an_answer_is_not_sent_again(raw: bytes) -> None:
    """A kept-alive connection the server closes with nothing sent may have been closed before
    the request reached it: the client sends it once more, on a fresh connection. Once any byte
    of an answer came, the server had the request: sending it again could run it twice."""
    with _loop_held_at_most(5):
        verdict = asyncio.run(_read(raw, True, "POST", False, [], reused=True))
    assert verdict == REFUSED
