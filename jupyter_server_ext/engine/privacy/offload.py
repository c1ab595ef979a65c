"""CPU-heavy work of one request, away from the event loop: pattern redaction of long prompts.

Why a process and not a thread: Python's regular expressions hold the GIL while they scan, so a
thread would still stall every other request of the proxy for as long as one prompt takes. One
worker process, started on first use, does such jobs one at a time, taking users in turn (each
user's jobs in order, one user's queue never ahead of another's), so one user who sends long
prompts waits for their own jobs, not the others for them. Short texts are redacted in place:
under ``INLINE_CHARS`` the worst case is a few milliseconds, less than the trip to the worker.
Every job has a deadline (``JOB_SECONDS``): one past it is refused and the worker killed and
started anew, so no input that some bound failed to foresee holds the one worker everyone shares.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import EngineError, PayloadTooLarge, RateLimited
from .redact import Pattern, Redactor

INLINE_CHARS = 4096
# the slowest job foreseen (200,000 characters of IBAN-like text redacted) takes half a second
JOB_SECONDS = 5.0
# one user's jobs in the worker's queue at once (the one running included): past it a 429, so
# no user can line up work without end, and each waits only behind their own
MAX_USER_JOBS = 4


def _note_pid(pid: Any) -> None:
    """In the worker as it starts: its pid, where the proxy can read it to end a job past its
    deadline."""
    pid.value = os.getpid()


def text_chars(value: Any) -> int:
    """Characters of text a redaction may scan in `value` (messages, tools, a prompt, an
    input): every string in it (tool calls' arguments and tools' descriptions are scanned too),
    but data: URLs, whose bytes are not scanned."""
    if isinstance(value, str):
        return 0 if value.startswith("data:") else len(value)
    if isinstance(value, list):
        return sum(text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(text_chars(v) for v in value.values())
    return 0


def redact_fields(
    patterns: tuple[Pattern, ...], fields: dict[str, Any]
) -> tuple[dict[str, Any], Redactor]:
    """Redact a request's `fields` ("messages", "tools", "prompt", "input") with one Redactor; runs in the
    worker process (or in place, for short texts)."""
    redactor = Redactor(patterns)
    out = {}
    for name, value in fields.items():
        if name == "messages":
            out[name] = redactor.messages(value)
        elif name == "tools":
            out[name] = redactor.tools(value)
        elif name == "record":  # a stored response at rest: every string in it
            out[name] = redactor.everything(value)
        else:
            out[name] = redactor.inputs(value)
    return out, redactor


def check_redact_size(payload: dict[str, Any], limit: int) -> None:
    """Refuse a request with more text than the proxy redacts in one request: scanning is CPU
    work one user could otherwise make endless (a 413 naming the setting)."""
    chars = text_chars([payload.get(n) for n in ("messages", "prompt", "input", "tools")])
    if chars > limit:
        raise PayloadTooLarge(
            f"this request holds {chars} characters of text, more than the {limit} the proxy "
            "redacts in one request (personal-data patterns are on); send less, or an admin can "
            "raise c.RSQLProxy.redact_max_chars",
            code="too_much_to_redact",
            extra={"redact_max_chars": limit},
        )


class Offload:
    """The worker process and its fair queue."""

    def __init__(self) -> None:
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._queues: dict[str, collections.deque[Any]] = {}
        self._turns: collections.deque[str] = collections.deque()
        self._runner: asyncio.Task[Any] | None = None
        self._serving: str | None = None  # whose job the worker runs now
        self.job_seconds = JOB_SECONDS
        self.max_user_jobs = MAX_USER_JOBS
        self._worker_pid: Any = None  # shared with the worker, which writes its pid there

    async def run(self, user: str, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in the worker, after the jobs of users ahead in turn; its result. A 429
        when `user` already has ``max_user_jobs`` jobs in the queue."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if user not in self._queues:
            self._queues[user] = collections.deque()
        queued = len(self._queues[user]) + (user == self._serving)
        if queued >= self.max_user_jobs:
            if not self._queues[user]:
                del self._queues[user]
            raise RateLimited(
                f"{queued} of your requests are already waiting for the proxy's shared worker "
                "(long texts redacted, PDFs' pages counted, large bodies read); send fewer at once",
                retry_after=1,
                limit="requests in the shared worker at once",
            )
        if user not in self._turns and user != self._serving:
            self._turns.append(user)
        self._queues[user].append((fn, args, fut))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._work())
        return await fut

    async def redact(
        self,
        patterns: tuple[Pattern, ...],
        fields: dict[str, Any],
        user: str,
        chars: int | None = None,
    ) -> tuple[dict[str, Any], Redactor]:
        """`fields` redacted: in place when short, else in the worker process, in `user`'s turn.
        `chars`: how much text they hold, when the caller knows better than ``text_chars``."""
        if (text_chars(list(fields.values())) if chars is None else chars) <= INLINE_CHARS:
            return redact_fields(patterns, fields)
        redacted: tuple[dict[str, Any], Redactor] = await self.run(
            user, redact_fields, patterns, fields
        )
        return redacted

    async def _work(self) -> None:
        while self._turns:
            user = self._serving = self._turns.popleft()
            queue = self._queues[user]
            fn, args, fut = queue.popleft()
            if fut.done():  # its request was cancelled while it waited
                self._serving = None
                self._requeue(user)
                continue
            try:
                result = await asyncio.wait_for(
                    asyncio.wrap_future(self._pool().submit(fn, *args)), self.job_seconds
                )
            except asyncio.TimeoutError:  # not the builtin's alias before Python 3.11
                self._end_worker()
                result = PayloadTooLarge(
                    f"this request took the proxy's shared worker more than {self.job_seconds:g} "
                    "s, the most one request may take of it, so its work was stopped; send a "
                    "smaller or simpler request",
                    code="too_much_work",
                    extra={"job_seconds": self.job_seconds},
                )
            except BrokenProcessPool:
                self._executor = (
                    None  # the worker died (killed, out of memory): a new one next time
                )
                result = EngineError(
                    "the proxy's redaction worker stopped; retry the request",
                    status=503,
                    code="redaction_unavailable",
                )
            except Exception as exc:
                result = exc
            if not fut.done():
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
            # back in line only now, behind everyone who came while this job ran
            self._serving = None
            self._requeue(user)

    def _requeue(self, user: str) -> None:
        if self._queues.get(user):
            self._turns.append(user)
        else:
            self._queues.pop(user, None)

    def _end_worker(self) -> None:
        """Kill the worker: a running job cannot be cancelled, only ended with its process. The
        next job starts a new one."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if self._worker_pid is not None and self._worker_pid.value:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._worker_pid.value, getattr(signal, "SIGKILL", signal.SIGTERM))
        executor.shutdown(wait=False, cancel_futures=True)

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the proxy's process has threads and open sockets a fork would copy
            context = multiprocessing.get_context("spawn")
            self._worker_pid = context.Value("i", 0, lock=False)
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_note_pid,
                initargs=(self._worker_pid,),
            )
        return self._executor

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        for queue in self._queues.values():
            for _, _, fut in queue:
                fut.cancel()
        self._queues.clear()
        self._turns.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
