"""One Lua script called over a pipelined Redis connection of its own: the hot path's client.

Why not redis-py here: every admission and every batch of request ends is one EVALSHA, and
redis-py spends 100-250 µs of CPU on each (its retry wrapper, the connection pool's lock,
command packing, the response callbacks; profiled under wrk, docs/benchmarks.md), as much as
the rest of the request's Redis cost. This client does only what those calls need: it packs
EVALSHA, writes it on one connection without waiting for earlier replies (Redis applies and
answers a connection's commands in order), and matches replies to callers first in, first out;
hiredis parses them. Everything else (reads, the admin views, PING) stays on redis-py.

Errors are redis-py's own classes, so callers tell an outage from a script error as before: a
lost connection fails every call in flight with ``ConnectionError`` (the next call reconnects),
and so does a Redis still loading its data (``BusyLoadingError``) or unable to take writes;
a reply later than ``socket_timeout`` closes the connection and fails them with
``TimeoutError``; a script error is a ``ResponseError``. Redis forgets its scripts when it
restarts: a ``NOSCRIPT`` reply loads the script again and the call is sent once more.

Only plain TCP connections (``redis://``) are served; for TLS or a Unix socket
:func:`pipelined_connection` returns None and the scripts go through redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any

import hiredis
from redis.asyncio.connection import Connection
from redis.exceptions import BusyLoadingError, DataError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def _pack(parts: tuple[Any, ...] | list[Any]) -> bytes:
    """A command in RESP, with redis-py's encoding of arguments (floats by repr)."""
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        if isinstance(p, bytes):
            b = p
        elif isinstance(p, str):
            b = p.encode()
        elif isinstance(p, bool):
            raise DataError(
                f"invalid Redis argument {p!r}: convert a bool to a string or a number first"
            )
        elif isinstance(p, int):
            b = b"%d" % p
        elif isinstance(p, float):
            b = repr(p).encode()
        else:
            raise DataError(f"invalid Redis argument of type {type(p).__name__}: {p!r}")
        out += (b"$%d\r\n" % len(b), b, b"\r\n")
    return b"".join(out)


class _Wire(asyncio.Protocol):
    """One connection: replies go to the waiting futures in the order the commands went out."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiters: collections.deque[tuple[asyncio.Future[Any], asyncio.TimerHandle]] = (
            collections.deque()
        )
        self.error: Exception | None = None  # set once the connection is gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # asyncio types it BaseTransport; it is a Transport

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.error is not None or self.transport is None or self.transport.is_closing():
            raise self.error or RedisConnectionError("Redis connection closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        timer = loop.call_later(self.timeout, self._timed_out)
        self.waiters.append((fut, timer))
        self.transport.write(command)
        return fut

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                if not self.waiters:  # a reply nobody asked for: the stream is out of step
                    self._fail(RedisConnectionError("Redis sent a reply that was not asked for"))
                    return
                fut, timer = self.waiters.popleft()
                timer.cancel()
                if not fut.done():  # a caller that was cancelled still had its reply read
                    fut.set_result(reply)
        except hiredis.ProtocolError as exc:
            self._fail(RedisConnectionError(f"Redis protocol error: {exc}"))

    def _timed_out(self) -> None:
        self._fail(RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s"))

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        while self.waiters:
            fut, timer = self.waiters.popleft()
            timer.cancel()
            if not fut.done():
                fut.set_exception(self.error)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis connection lost ({exc or 'closed by the server'})"))


class PipelinedConnection:
    """One connection to Redis on which commands go out without waiting for earlier replies.

    Commands sent on it are applied by Redis in the order they were sent: the state backend
    relies on that (a request's end, queued before its answer goes out, is applied before any
    later admission or read of this process)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 2.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._wire: _Wire | None = None
        self._connecting: asyncio.Future[Any] | None = None
        self._backlog: list[tuple[bytes, asyncio.Future[Any]]] = []

    def send_nowait(self, command: bytes) -> asyncio.Future[Any]:
        """Send one packed command now, in order with every other; the future is its reply (an
        error reply is the result, not raised). Before a connection is up, commands wait in
        order and go out first once it is."""
        wire = self._wire
        if (
            wire is not None
            and wire.error is None
            and wire.transport is not None
            and not wire.transport.is_closing()
        ):
            return wire.send(command)
        fut = asyncio.get_running_loop().create_future()
        self._backlog.append((command, fut))
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        return fut

    async def send(self, command: bytes) -> Any:
        """The reply to one packed command (an error reply is returned, not raised)."""
        return await self.send_nowait(command)

    async def _connect(self) -> None:
        self._wire = None
        try:
            wire = await self._open()
        except BaseException as exc:
            backlog, self._backlog = self._backlog, []
            for _, fut in backlog:
                if not fut.done():
                    fut.set_exception(
                        exc if isinstance(exc, Exception) else RedisConnectionError("cancelled")
                    )
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._connecting = None
        # the commands that waited go out first, in order, before the connection is offered
        backlog, self._backlog = self._backlog, []
        for command, fut in backlog:
            _chain(wire.send(command), fut)
        self._wire = wire

    async def _open(self) -> _Wire:
        loop = asyncio.get_running_loop()
        try:
            _, wire = await asyncio.wait_for(
                loop.create_connection(lambda: _Wire(self.timeout), self.host, self.port),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise RedisTimeoutError(
                f"connecting to Redis at {self.host}:{self.port} timed out"
            ) from None
        except OSError as exc:
            raise RedisConnectionError(
                f"cannot connect to Redis at {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        hello: list[tuple[Any, ...]] = []
        if self.password is not None:
            hello.append(
                ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            )
        if self.db:
            hello.append(("SELECT", self.db))
        try:
            for reply in await asyncio.gather(*(wire.send(_pack(c)) for c in hello)):
                if isinstance(reply, ResponseError):
                    raise reply
        except BaseException:
            wire._fail(RedisConnectionError("Redis refused the connection's set-up"))
            raise
        return wire

    def close(self) -> None:
        if self._wire is not None:
            self._wire._fail(RedisConnectionError("Redis connection closed"))
            self._wire = None


class ScriptConnection:
    """Calls one Lua script on a PipelinedConnection, ``await sc(keys=[...], args=[...])``, like
    redis-py's Script."""

    def __init__(self, script: str, conn: PipelinedConnection) -> None:
        self.script = script.encode()
        self.sha = hashlib.sha1(self.script).hexdigest()
        self.conn = conn

    async def __call__(
        self, keys: list[Any] | tuple[Any, ...] = (), args: list[Any] | tuple[Any, ...] = ()
    ) -> Any:
        command = _pack(("EVALSHA", self.sha, len(keys), *keys, *args))
        return await self._result(self.conn.send_nowait(command), command)

    def start(
        self, keys: list[Any] | tuple[Any, ...] = (), args: list[Any] | tuple[Any, ...] = ()
    ) -> asyncio.Future[Any]:
        """Like the call, but the command is sent (in order) before this returns."""
        command = _pack(("EVALSHA", self.sha, len(keys), *keys, *args))
        return asyncio.ensure_future(self._result(self.conn.send_nowait(command), command))

    async def _result(self, sent: asyncio.Future[Any], command: bytes) -> Any:
        reply = await sent
        if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
            # a restarted (or flushed) Redis: load the script and try once more
            loaded = await self.conn.send(_pack(("SCRIPT", "LOAD", self.script)))
            if isinstance(loaded, ResponseError):
                raise _error_of(loaded)
            reply = await self.conn.send(command)
        if isinstance(reply, ResponseError):
            raise _error_of(reply)
        return reply


def _error_of(reply: ResponseError) -> Exception:
    """redis-py's class for an error reply where it tells an outage from a mistake: a Redis that
    is still loading its data after a restart, or a replica that cannot take writes, is down
    for now (the state backend answers 503 and retries), not a bug."""
    text = str(reply)
    if text.startswith("LOADING"):
        return BusyLoadingError(text)
    if text.startswith(("READONLY", "MASTERDOWN")):
        return RedisConnectionError(f"Redis cannot take writes now: {text}")
    return reply


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    def copy(done: asyncio.Future[Any]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())  # type: ignore[arg-type]  # checked: it raised
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)


def pipelined_connection(redis: Any) -> PipelinedConnection | None:
    """A PipelinedConnection to the server of redis-py client `redis` (same address, database,
    credentials and timeouts); None unless it connects over plain TCP (TLS, a Unix socket)."""
    pool = redis.connection_pool
    kw = pool.connection_kwargs
    if pool.connection_class is not Connection or kw.get("decode_responses"):
        return None
    return PipelinedConnection(
        host=kw.get("host", "localhost"),
        port=int(kw.get("port", 6379)),
        db=int(kw.get("db", 0) or 0),
        username=kw.get("username"),
        password=kw.get("password"),
        timeout=kw.get("socket_timeout") or 2.0,
        connect_timeout=kw.get("socket_connect_timeout") or 2.0,
    )


def script_caller(redis: Any, script: str, conn: PipelinedConnection | None = None) -> Any:
    """How to call `script`: on `conn` when there is one, else through redis-py's own script
    object (its connection pool; no order between calls)."""
    return ScriptConnection(script, conn) if conn is not None else redis.register_script(script)
