"""Many requests' script calls to Redis in one round trip, in order.

Why: each script call costs the proxy process CPU (packing, a system call each way, parsing:
about 60 µs on script_conn's pipelined connection, 135-250 µs through redis-py), so the calls
queued during one turn of the event loop go as one script call: admissions (each with its key
pick) in one, the writes at requests' first bytes and ends (stamp a key's window, free its slot,
release leases, settle budgets) in another. Writes wait for the batch at Redis to answer before
the next goes (one call when Redis is idle, larger batches as load grows); admissions, which
an answer waits on, go on the next loop turn, pipelined behind any batch still at Redis, at
most a few a batch (``ADMISSIONS_PER_BATCH`` in state/admission/redis.py says why).

On one ordered connection (``ordered``) Redis applies calls in the order they were written, and
a batch is written as it is flushed; admissions flush the queued writes first. So a request's
end need not be awaited before its answer goes out: the user's next request (or a read of the
state) from this process is applied after it. Without that connection (TLS, a Unix socket:
redis-py's pool, no order) callers await their writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .pipelined import PipelinedConnection, script_caller
from .scripts import APPLY


class Batcher:
    """Queues calls (an op and its arguments: ``scripts.APPLY`` by default) and sends all that
    were queued in one loop turn with one EVALSHA. With `results`, the script answers each op
    with its length and its items, in order, and each caller gets its own items."""

    def __init__(
        self,
        redis: Any,
        script: str = APPLY,
        *,
        results: bool = False,
        max_ops: int = 256,
        conn: PipelinedConnection | None = None,
        writes_first: Batcher | None = None,
        eager: bool = False,
    ) -> None:
        self._apply = script_caller(redis, script, conn)
        # on one ordered connection a call is applied after every call sent before it, so a
        # caller of `writes_first`'s may go on without waiting: what it queued goes out before
        # this batcher's next batch (and before any read that flushes it first)
        self.ordered = conn is not None
        self.writes_first = writes_first
        # eager: send on the next loop turn even while a batch is at Redis (pipelined); else
        # hold what queues until the batch at Redis answers (larger batches, less CPU)
        self.eager = eager
        self.results = results
        self.max_ops = max_ops
        self._args: list[Any] = []
        self._waiters: list[asyncio.Future[Any]] = []
        self._pending: set[asyncio.Task[Any]] = set()
        self._scheduled = False

    async def run(self, *op: Any) -> Any:
        """Apply one call and return its items (with `results`); raises what the Redis client
        raised (the caller decides)."""
        return await self.queue(*op)

    def send(self, *op: Any, failed: Callable[[BaseException], None]) -> asyncio.Future[Any]:
        """Queue a write whose caller goes on at once; an error it meets goes to `failed`."""
        done = self.queue(*op)

        def told(d: asyncio.Future[Any]) -> None:
            exc = None if d.cancelled() else d.exception()
            if exc is not None:
                failed(exc)

        done.add_done_callback(told)
        return done

    async def write(self, *op: Any, failed: Callable[[BaseException], None]) -> None:
        """Apply a write nobody needs the answer of: on an ordered connection return once it is
        queued (it is applied before anything this process sends later), else once it is
        applied. An error it meets goes to `failed` either way."""
        done = self.send(*op, failed=failed)
        if not self.ordered:
            await asyncio.wait({done})

    def queue(self, *op: Any) -> asyncio.Future[Any]:
        """Queue one write; the future is done once it is applied (or failed)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._args.extend(op)
        self._waiters.append(fut)
        if len(self._waiters) >= self.max_ops:
            self.flush()
        elif self._scheduled:
            pass
        elif self.eager:  # admissions: the answer waits on them, so they go on the next turn
            self._scheduled = True
            loop.call_soon(self.flush)
        elif not self._pending:
            self._scheduled = True
            # two loop turns: writes from tasks woken in this turn (a request's ends, made
            # together with asyncio.gather) join the same batch
            loop.call_soon(loop.call_soon, self.flush)
        # else: a batch is at Redis; what queues meanwhile goes when its answer comes back
        return fut

    def flush(self) -> None:
        """Send what is queued now (a batch of its own; earlier batches may still be at Redis)."""
        if self.writes_first is not None:
            self.writes_first.flush()
        self._scheduled = False
        if not self._waiters:
            return
        args, waiters = self._args, self._waiters
        self._args, self._waiters = [], []
        # on an ordered connection the batch is written now, before anything sent after this
        call = (
            self._apply.start(keys=[], args=args)
            if self.ordered
            else self._apply(keys=[], args=args)
        )
        task = asyncio.ensure_future(self._send(call, waiters))
        self._pending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if self._waiters and not self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    async def _send(self, call: Awaitable[Any], waiters: list[asyncio.Future[Any]]) -> None:
        try:
            out = await call
        except BaseException as exc:  # every waiter learns it, and decides
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        i = 0
        for fut in waiters:
            item = None
            if self.results:
                n = int(out[i])
                item, i = out[i + 1 : i + 1 + n], i + 1 + n
            if not fut.done():
                fut.set_result(item)

    async def drain(self) -> None:
        """Send what is queued and wait for every write in flight (at shutdown)."""
        self.flush()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
