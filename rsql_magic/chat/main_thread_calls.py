"""Work handed from the panel's worker thread to the kernel's main thread, waited for with bounds.

The panel's agent turn asks the model in its worker thread (so the main thread stays free for
the Stop click), but every tool must run on the main thread: rpy2 requires it, a sqlite3
connection refuses any other thread, and cells mutate the frames the tools read. So the
worker queues each tool call here and waits:

- **How it reaches the main thread.** The kernel's own event loop: ipykernel runs the main
  shell's messages (cells, comm messages such as widget clicks) as callbacks of the tornado
  ``IOLoop`` of the main thread (``kernel.io_loop``), whose ``add_callback`` is safe to call
  from any thread (it is asyncio's ``call_soon_threadsafe``). The job runs when the loop is
  next idle: at once between cells, after the running cell otherwise. Whoever blocks the main
  thread waiting for the turn (``ChatPanel.wait``, a script, a test) runs the queue itself
  with :meth:`MainThreadCalls.pump`. With neither, the job is never run on another thread: it
  times out.
- **Bounded.** A job not started within ``start_timeout`` (a long cell holds the main thread)
  is withdrawn, never run late; a started one is waited for at most ``run_timeout`` (the
  tools bound their own work far below that) and its late result is dropped. Stop withdraws
  a job not yet started at once, and stops waiting for a started one.
- **No deadlock.** The worker only ever waits with a timeout; the main thread never waits for
  the worker while it holds a job (a job is a plain call, run outside the queue's lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from rsql_magic.errors import HandOffFailed

__all__ = ["HandOffFailed", "MainThreadCalls"]

T = TypeVar("T")

_POLL_S = 0.05  # how often a waiting worker looks at Stop


class _Job(Generic[T]):
    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.state = "pending"  # pending, running, done, withdrawn
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.thread: str = ""


class MainThreadCalls:
    """Runs calls on the kernel's main thread for a worker thread.

    ``loop``: returns the main thread's event loop (anything with a thread-safe
    ``add_callback``), or None when there is none (a plain IPython shell: then only
    :meth:`pump` runs jobs). ``main``: the thread jobs must run on."""

    def __init__(
        self,
        loop: Callable[[], Any] = lambda: None,
        *,
        main: threading.Thread | None = None,
        start_timeout: float = 30.0,
        run_timeout: float = 120.0,
    ) -> None:
        self._loop = loop
        self.main = main or threading.main_thread()
        self.start_timeout = start_timeout
        self.run_timeout = run_timeout
        self._lock = threading.Lock()
        self._queue: list[_Job[Any]] = []

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def call(self, fn: Callable[[], T], stopped: Callable[[], bool] = lambda: False) -> T:
        """From a worker: ``fn()`` run on the main thread; raises :class:`HandOffFailed` when
        it was not run or not finished in time or ``stopped()`` came true first, and whatever
        ``fn`` raised. On the main thread itself, ``fn()`` is simply called."""
        if threading.current_thread() is self.main:
            return fn()
        job: _Job[T] = _Job(fn)
        with self._lock:
            self._queue.append(job)
        loop = self._loop()
        if loop is not None:
            try:
                loop.add_callback(self.pump)
            except Exception:  # a closed loop: a pump by a waiting main thread may still come
                pass
        started = time.monotonic()
        while not job.done.wait(_POLL_S):
            with self._lock:
                state = job.state
                if state == "pending" and (
                    stopped() or time.monotonic() - started > self.start_timeout
                ):
                    job.state = "withdrawn"  # never run late: the turn has moved on
                    self._queue.remove(job)
            if state == "pending" and job.state == "withdrawn":
                if stopped():
                    raise HandOffFailed("stopped", "stopped before the tool ran")
                raise HandOffFailed(
                    "busy",
                    f"the kernel's main thread was busy (a running cell?) for "
                    f"{self.start_timeout:g} s: the tool did not run",
                )
            if state == "running" and stopped():
                raise HandOffFailed("stopped", "stopped while the tool ran")
            if state == "running" and time.monotonic() - started > self.run_timeout:
                raise HandOffFailed(
                    "slow", f"the tool did not finish within {self.run_timeout:g} s"
                )
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]  # set with done, as fn's T

    def pump(self) -> int:
        """On the main thread: run every job queued. Returns how many ran."""
        if threading.current_thread() is not self.main:
            return 0  # jobs run on the main thread or not at all
        ran = 0
        while True:
            with self._lock:
                if not self._queue:
                    return ran
                job = self._queue.pop(0)
                job.state = "running"
            job.thread = threading.current_thread().name
            try:
                job.value = job.fn()
            except Exception as e:  # handed back to the worker, raised there
                job.error = e
            except BaseException:  # an interrupt is the main thread's own: the job failed
                job.error = HandOffFailed("stopped", "interrupted while the tool ran")
                raise
            finally:
                job.state = "done"
                job.done.set()
            ran += 1
