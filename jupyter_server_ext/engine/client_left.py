"""A client that leaves while its request is at the provider: the request goes on to the answer.

The provider generates, and bills, an answer whatever the client does, so a request whose
client leaves while the provider has it is not stopped there: its own task waits for the
provider's answer (a JSON answer whole, a stream's first event) or failure, and hands it to the
background (``Replies.adopt``), which reads it to its end and charges it. A client that leaves
at any other moment (waiting for its admission or a key) stops its request at once.

Why not a task of its own for the upstream call, shielded from the cancel: that was a task and
two more turns of the event loop every request, about 0.12 ms of every answer's time to first
token and 3% of a request's CPU (measured with ``bench/count_proxy.py``).

The host says who left (``Watch.client_left``); the engine says when its request is at the
provider (``at_provider``). A request the host gives no watch (the engine run in-process) is
never cancelled by a client, and a cancel that does reach a request at the provider (the host's
shutdown cutting it short) charges what the provider may bill, as an answer nobody reads.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Watch", "at_provider", "watch_request"]


class Watch:
    """One request's task and whether its client left while the request was at the provider."""

    __slots__ = ("task", "calls", "left")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.calls = 0  # upstream calls under way (one, but for a request that fans out)
        self.left = False

    def client_left(self) -> None:
        """The client is gone: stop the request now, unless it is at the provider (then the
        engine hands the answer to the background once it is in, and ends the request)."""
        if self.calls:
            self.left = True
        elif not self.task.done():
            self.task.cancel()


_WATCH: contextvars.ContextVar[Watch | None] = contextvars.ContextVar("rsql_watch", default=None)


def watch_request() -> Watch:
    """Watch the current task's request (the host calls this where it starts answering)."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("watch_request() outside a task")
    watch = Watch(task)
    _WATCH.set(watch)
    return watch


@contextmanager
def at_provider() -> Iterator[Watch | None]:
    """The request is at the provider for the block: a client that leaves meanwhile does not
    cancel it (the block's end then finds ``Watch.left`` set). None: nobody watches."""
    watch = _WATCH.get()
    if watch is None:
        yield None
        return
    watch.calls += 1
    try:
        yield watch
    finally:
        watch.calls -= 1
