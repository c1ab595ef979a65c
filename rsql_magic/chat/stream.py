"""The stream worker: streams one answer at a time into a turn, in a thread of its own.

ipywidgets callbacks (clicks, the input box) run on the kernel's main thread, the thread that
also runs cells. The answer streams in this worker, which updates the turn's widgets
(ipykernel sends widget state from any thread); the main thread stays free, so the Stop
click arrives. Stop sets a flag and hangs up the HTTP connection, from the moment it is made
(before any answer has begun, too): that ends the read in the worker and tells the proxy the
client is gone, so the proxy ends the request (a stream is billed for what was streamed) and
frees the user's concurrency slot.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from rsql_magic import render
from rsql_magic.client import ChatResult
from rsql_magic.errors import StreamStopped

from .text import error_text
from .widgets import Turn, answer_html, error_html, footer_html

__all__ = ["Hangup", "StreamWorker"]

# one answer's request: called with the keyword hooks ``on_delta`` (each piece of text),
# ``on_connect`` (the connection's socket, before the request is sent), ``on_response`` (the
# open HTTP response) and ``on_retry`` (a 429 waited out: start over), as ProxyClient.chat and
# Route.chat take them; returns the whole answer
AnswerCall = Callable[..., ChatResult]


class Hangup:
    """Ends a streaming HTTP response from another thread.

    A ``close`` from another thread does not reliably wake a ``recv`` blocked in the worker;
    ``shutdown`` does, and sends FIN, so the proxy sees the client go. It is called on a
    duplicate of the connection's socket (its public ``fileno()``), taken as soon as it is
    connected and kept until :meth:`release`, so the descriptor cannot be reused meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._requested = False

    def attach(self, resp: Any) -> None:
        """Take hold of the connection of ``resp`` (a socket, or a response: anything with a
        ``fileno()``), before the request is sent or read. A turn of several requests (agent
        mode) attaches each in turn: the one before is let go."""
        try:
            sock = socket.socket(fileno=socket.dup(resp.fileno()))
        except (AttributeError, OSError, ValueError):
            return  # no socket behind it (the in-process engine): nothing to hang up
        with self._lock:
            earlier, self._sock = self._sock, sock
            if earlier is not None:
                earlier.close()
            if self._requested:
                self._shutdown()

    def hang_up(self) -> None:
        """End the stream now, or as soon as its response is attached."""
        with self._lock:
            self._requested = True
            self._shutdown()

    def release(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _shutdown(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other end


class StreamWorker:
    """Streams answers into turns, one at a time. After each, whatever the outcome
    (``turn.state``: done, stopped or error), ``on_finish(turn)`` runs in the worker while it
    is still busy, then ``on_idle(turn)`` once the next answer may start."""

    def __init__(self, on_finish: Callable[[Turn], None], on_idle: Callable[[Turn], None]) -> None:
        self._on_finish = on_finish
        self._on_idle = on_idle
        self._stop = threading.Event()
        self._hangup = Hangup()
        self._thread: threading.Thread | None = None
        self._busy = False

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def stopping(self) -> bool:
        """True once Stop was pressed for the current answer (an agent turn checks it between
        its requests and while a tool waits for the kernel's main thread)."""
        return self._stop.is_set()

    def start(self, turn: Turn, call: AnswerCall) -> None:
        """Stream ``call``'s answer into ``turn`` in a new thread."""
        self._busy = True
        self._stop.clear()
        self._hangup = Hangup()
        self._thread = threading.Thread(
            target=self._run, args=(turn, call, self._hangup), name="rsql-chat-stream", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the streaming answer: flag it, and end its HTTP response now."""
        self._stop.set()
        self._hangup.hang_up()

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the current answer is finished; False if it still runs."""
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()

    def _run(self, turn: Turn, call: AnswerCall, hangup: Hangup) -> None:
        buf: list[str] = []
        last = [0.0]

        def on_delta(piece: str) -> None:
            if self._stop.is_set():
                raise StreamStopped
            buf.append(piece)
            now = time.monotonic()
            if now - last[0] > 0.1:  # ~10 widget updates a second is plenty
                last[0] = now
                turn.answer = "".join(buf)
                turn.answer_html.value = answer_html(turn.answer + " ▍")

        try:
            res = call(
                on_delta=on_delta,
                on_connect=hangup.attach,
                on_response=hangup.attach,
                on_retry=buf.clear,
            )
        except Exception as e:  # never let a worker die silently: the turn shows it
            if isinstance(e, StreamStopped) or self._stop.is_set():
                finish_stopped(turn, "".join(buf))
            else:
                finish_error(turn, "".join(buf), e)
        else:
            finish_done(turn, res)
        finally:
            hangup.release()
        try:
            self._on_finish(turn)
        finally:
            self._busy = False
        self._on_idle(turn)


def finish_done(turn: Turn, res: ChatResult) -> None:
    turn.result = res
    turn.answer = res.text
    turn.state = "done"
    turn.answer_html.value = answer_html(res.text)
    turn.footer.value = footer_html(render.footer(res))


def finish_stopped(turn: Turn, partial: str) -> None:
    turn.answer = partial
    turn.state = "stopped"
    turn.answer_html.value = answer_html(partial)
    turn.footer.value = footer_html("stopped")


def finish_error(turn: Turn, partial: str, e: Exception) -> None:
    turn.answer = partial
    turn.state = "error"
    turn.error = e
    turn.answer_html.value = (answer_html(partial) if partial else "") + error_html(error_text(e))
