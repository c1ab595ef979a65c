"""The chat panel's stream worker without a proxy: hanging up a blocked read, and how a turn
ends (done, stopped, failed) with the panel's hooks in order."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from rsql_magic.client import ChatResult
from rsql_magic.errors import ProxyError

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")


def test_hangup_wakes_a_read_blocked_in_another_thread() -> None:
    from rsql_magic.chat.stream import Hangup

    ours, theirs = socket.socketpair()
    reader = ours.makefile("rb")  # like an HTTP response: a file with a public fileno()
    hangup = Hangup()
    hangup.attach(reader)
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(reader.read(1)))
    t.start()
    time.sleep(0.2)
    assert t.is_alive()  # blocked: nothing was sent
    hangup.hang_up()
    t.join(2)
    assert not t.is_alive() and got == [b""]
    hangup.release()
    reader.close()
    ours.close()
    theirs.close()


def test_hangup_before_attach_and_release_keeps_the_response_open() -> None:
    from rsql_magic.chat.stream import Hangup

    ours, theirs = socket.socketpair()
    early = Hangup()
    early.hang_up()  # Stop pressed before the response arrived
    early.attach(ours)
    assert ours.recv(1) == b""  # shut down at once
    early.release()

    a, b = socket.socketpair()
    late = Hangup()
    late.attach(a)
    late.release()  # closes only its own duplicate
    b.sendall(b"x")
    assert a.recv(1) == b"x"
    late.attach(object())  # no socket behind it (the in-process engine): nothing to do
    late.hang_up()
    for s in (ours, theirs, a, b):
        s.close()


def _worker(events: list[str]) -> Any:
    from rsql_magic.chat.stream import StreamWorker

    worker: Any = None

    def on_finish(turn: Any) -> None:
        events.append(f"finish {turn.state} busy={worker.busy}")

    def on_idle(turn: Any) -> None:
        events.append(f"idle busy={worker.busy}")

    worker = StreamWorker(on_finish, on_idle)
    return worker


def test_a_turn_is_done_stopped_or_failed() -> None:
    from rsql_magic.chat.widgets import ChatWidgets

    view = ChatWidgets()
    events: list[str] = []
    worker = _worker(events)

    def answer(**hooks: Any) -> ChatResult:
        for piece in ("Hello", " world"):
            hooks["on_delta"](piece)
        return ChatResult(
            text="Hello world", model="m", usage={}, cost_usd=None, cache_hit=False, latency_s=0.1
        )

    done = view.add_turn("hi?")
    worker.start(done, answer)
    assert worker.wait(5)
    assert done.state == "done" and "Hello world" in done.answer_html.value
    assert "m · " in done.footer.value
    assert events == ["finish done busy=True", "idle busy=False"]

    release = threading.Event()

    def endless(**hooks: Any) -> ChatResult:
        while True:
            hooks["on_delta"]("w ")
            release.wait(0.01)

    stopped = view.add_turn("long?")
    worker.start(stopped, endless)
    time.sleep(0.2)
    assert worker.busy
    worker.stop()
    assert worker.wait(5) and stopped.state == "stopped" and "stopped" in stopped.footer.value

    def refused(**hooks: Any) -> ChatResult:
        hooks["on_delta"]("part")
        raise ProxyError(429, "user 2/minute reached", limit="user 2/minute", retry_after=30)

    failed = view.add_turn("again?")
    worker.start(failed, refused)
    assert worker.wait(5) and failed.state == "error"
    assert "part" in failed.answer_html.value and "Rate limited" in failed.answer_html.value
    assert not worker.busy
