"""The upstream HTTP/1.1 client against a raw loopback server that frames answers every way
HTTP/1.1 allows, and closes kept-alive connections behind the client's back."""

from __future__ import annotations

import asyncio
import itertools
import ssl

import pytest

from jupyter_server_ext.engine.errors import HTTP11Error
from jupyter_server_ext.engine.upstreams.transport.http11 import HTTP11Client

BODIES = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Ratelimit-Remaining-Requests: 7\r\n\r\nhello",
    b"/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        # a chunk's data may end in CR; its CRLF follows it (a chunk extension, a trailer)
        b"6\r\ndata: \r\n4;ext=1\r\n1\n\n\r\r\n0\r\nTrailer: x\r\n\r\n"
    ),
    b"/eof": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    b"/cut": b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
    b"/garbage": b"NOT HTTP\r\n\r\n",
}


@pytest.fixture
async def server():
    state = {"connections": 0, "close_after_one": False}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        (
                            line.split(b":")[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        ),
                        b"0",
                    )
                )
                await reader.readexactly(length)
                path = head.split(b" ")[1]
                writer.write(BODIES[path])
                await writer.drain()
                if path in (b"/eof", b"/cut", b"/garbage") or state["close_after_one"]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", state
    srv.close()


async def test_every_framing(server) -> None:
    url, state = server
    client = HTTP11Client()
    r = await client.request("POST", url + "/length", headers={}, body=b"{}", timeout=5)
    assert (r.status, await r.read(5)) == (200, b"hello")
    assert r.headers["x-ratelimit-remaining-requests"] == "7"
    r = await client.request("POST", url + "/chunked", headers={}, timeout=5)
    assert [c async for c in r.iter_chunks(5)] == [b"data: ", b"1\n\n\r"]
    assert state["connections"] == 1  # both answers on one kept-alive connection
    r = await client.request("GET", url + "/eof", headers={}, timeout=5)
    assert await r.read(5) == b"until the end"
    await client.close()


async def test_cut_and_malformed_answers_are_errors(server) -> None:
    url, _ = server
    client = HTTP11Client()
    r = await client.request("GET", url + "/cut", headers={}, timeout=5)
    with pytest.raises(HTTP11Error, match="end of the body|cut-off"):
        await r.read(5)
    with pytest.raises(HTTP11Error, match="status line"):
        await client.request("GET", url + "/garbage", headers={}, timeout=5)
    await client.close()


async def test_a_connection_the_server_closed_is_replaced(server) -> None:
    url, state = server
    state["close_after_one"] = True
    client = HTTP11Client()
    for _ in range(3):
        r = await client.request("POST", url + "/length", headers={}, body=b"x", timeout=5)
        assert await r.read(5) == b"hello"
        await asyncio.sleep(0.05)  # the server has closed it by now
    assert state["connections"] == 3
    await client.close()


async def test_refused_connection_and_timeouts() -> None:
    from tests.helpers import free_port

    client = HTTP11Client()
    with pytest.raises(OSError):
        await client.request("GET", f"http://127.0.0.1:{free_port()}/x", headers={}, timeout=5)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    with pytest.raises(asyncio.TimeoutError):
        await client.request("GET", f"http://127.0.0.1:{port}/x", headers={}, timeout=0.2)
    srv.close()
    with pytest.raises(HTTP11Error, match="not an http"):
        await client.request("GET", "ftp://example.invalid/x", headers={}, timeout=1)
    await client.close()


async def test_a_body_read_piece_by_piece_times_out_only_when_a_piece_is_late() -> None:
    """The timeout bounds the wait for each piece of a streamed body, not the whole body: eight
    pieces 0.1 s apart (0.8 s in all) pass a 0.3 s timeout, and the stall after them ends the
    read about 0.3 s after the last piece. A cancel from elsewhere stays a cancel."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(8):
            writer.write(b"2\r\nab\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(10)  # and then nothing

    srv = await asyncio.start_server(trickle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/x"
    client = HTTP11Client()
    loop = asyncio.get_running_loop()
    try:
        resp = await client.request("GET", url, headers={}, timeout=0.3)
        got: list[bytes] = []
        last = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            async for piece in resp.iter_chunks(0.3):
                got.append(piece)
                last = loop.time()
        assert got == [b"ab"] * 8
        assert 0.25 <= loop.time() - last < 1.0

        async def read_all() -> None:
            answer = await client.request("GET", url, headers={}, timeout=5)
            async for _ in answer.iter_chunks(5):
                pass

        task = asyncio.ensure_future(read_all())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        srv.close()
        await client.close()


async def _serve(
    *answers: bytes, piece: int = 0, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, str, list[int]]:
    """A server that answers the requests on a connection with `answers` in turn (over again
    after the last), each written whole or, with `piece`, a few bytes at a time, each its own
    TCP segment; over TLS with `tls`. Also the connections it took."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            for answer in itertools.cycle(answers):
                await reader.readuntil(b"\r\n\r\n")
                for at in range(0, len(answer), piece or len(answer)):
                    writer.write(answer[at : at + (piece or len(answer))])
                    await writer.drain()
                    if piece:
                        await asyncio.sleep(0.002)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    scheme = "https" if tls else "http"
    return srv, f"{scheme}://127.0.0.1:{srv.sockets[0].getsockname()[1]}/x", connections


async def test_an_answer_that_arrives_a_few_bytes_at_a_time_reads_the_same() -> None:
    """Head, chunk size lines, chunk data and trailers split anywhere across TCP segments: the
    same chunks as when the answer comes in one piece, and the connection is kept for the next
    request."""
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-Id: r1\r\n\r\n"
        b'10\r\ndata: {"a": 1}\n\n\r\n11\r\ndata: {"b": 22}\n\n\r\n'
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    srv, url, connections = await _serve(answer, piece=3)
    client = HTTP11Client()
    try:
        for _ in range(2):
            r = await client.request("POST", url, headers={}, body=b"{}", timeout=5)
            assert r.headers["x-request-id"] == "r1"
            assert b"".join([c async for c in r.iter_chunks(5)]) == (
                b'data: {"a": 1}\n\ndata: {"b": 22}\n\n'
            )
        assert len(connections) == 1  # one connection, kept
    finally:
        srv.close()
        await client.close()


async def test_a_huge_chunk_is_given_in_pieces_and_whole() -> None:
    """A 1 MB chunk is not held whole before it is given (the reader's buffer stays bounded),
    and every byte of it arrives, in order."""
    data = bytes(range(256)) * 4096  # 1 MiB
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(data):x}\r\n".encode()
        + data
        + b"\r\n0\r\n\r\n"
    )
    srv, url, _ = await _serve(answer)
    client = HTTP11Client()
    try:
        r = await client.request("GET", url, headers={}, timeout=5)
        pieces = [c async for c in r.iter_chunks(5)]
        assert b"".join(pieces) == data
        assert max(len(p) for p in pieces) < len(data)
    finally:
        srv.close()
        await client.close()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
            "malformed",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nab\r\n0\r\n\r\n",
            "malformed",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n", "CRLF"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 70000, "size line"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000, "headers too large"),
    ],
    ids=["not-hex", "negative", "no-crlf", "endless-size-line", "endless-head"],
)
async def test_a_hostile_framing_is_an_error_not_a_hang(answer: bytes, error: str) -> None:
    srv, url, connections = await _serve(answer)
    client = HTTP11Client()
    try:
        with pytest.raises(HTTP11Error, match=error):
            r = await client.request("GET", url, headers={}, timeout=5)
            await r.read(5)
        with pytest.raises(HTTP11Error):  # the broken connection is not used again
            r = await client.request("GET", url, headers={}, timeout=5)
            await r.read(5)
        assert len(connections) == 2
    finally:
        srv.close()
        await client.close()


async def test_bytes_after_an_answer_make_its_connection_unfit_to_keep() -> None:
    """An upstream that sends more than the answer it framed: the extra bytes would be read as
    the next request's answer, so the connection is closed, not kept."""
    srv, url, connections = await _serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
    client = HTTP11Client()
    try:
        for _ in range(2):
            r = await client.request("GET", url, headers={}, timeout=5)
            assert await r.read(5) == b"ok"
        assert len(connections) == 2
    finally:
        srv.close()
        await client.close()


async def test_tls_answers_whole_and_streamed_on_one_kept_connection(tmp_path, monkeypatch) -> None:
    """An upstream behind TLS (a lab server with its own certificate authority, trusted through
    SSL_CERT_FILE as OpenSSL reads it): a JSON answer and a chunked stream arrive the same as in
    the clear, on one kept-alive connection; a server whose certificate nobody vouches for is
    refused before anything is sent."""
    import trustme

    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(served)
    srv, url, connections = await _serve(
        b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"ok": true}',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'd\r\ndata: {"a":1}\r\n6\r\n\n\n\n\n\n\n\r\n0\r\n\r\n',
        tls=served,
    )
    client = HTTP11Client()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):  # not yet trusted
            await client.request("GET", url, headers={}, timeout=5)
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        client = HTTP11Client()
        r = await client.request("POST", url, headers={}, body=b"{}", timeout=5)
        assert (r.status, await r.read(5)) == (200, b'{"ok": true}')
        r = await client.request("POST", url, headers={}, body=b"{}", timeout=5)
        assert b"".join([c async for c in r.iter_chunks(5)]) == b'data: {"a":1}\n\n\n\n\n\n'
        assert len(connections) == 1  # kept for both (the refused one never got past TLS)
    finally:
        await client.close()
        srv.close()


async def test_answers_read_side_by_side_each_stay_their_own() -> None:
    """The client's connections read into one buffer (the client's _inbox): eight answers arriving at
    once, each in pieces that interleave with the others', each reach their own caller whole
    and unmixed, and so again on the same kept connections."""
    servers = []
    for i in range(8):
        data = bytes((i * 31 + n) % 251 for n in range(64 * 1024))  # each its own bytes
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data) + data
        servers.append((data, *await _serve(answer, piece=4096)))
    client = HTTP11Client()

    async def ask(url: str) -> bytes:
        r = await client.request("GET", url, headers={}, timeout=5)
        return await r.read(5)

    try:
        for _ in range(2):
            got = await asyncio.gather(*(ask(url) for _, _, url, _ in servers))
            assert [g == data for g, (data, *_) in zip(got, servers, strict=True)] == [True] * 8
        assert [len(connections) for *_, connections in servers] == [1] * 8
    finally:
        for _, srv, _, _ in servers:
            srv.close()
        await client.close()
