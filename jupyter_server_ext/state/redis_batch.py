"""Many requests' script calls to Redis in one round trip.

Why: each script call costs the proxy process 250-350 µs of CPU in redis-py (packing, the
connection pool, the socket timeout, parsing; measured in docs/benchmarks.md), several times
what the script costs Redis. So the calls queued during one turn of the event loop go as one
script call on the next turn: admissions (each with its key pick) in one, the writes at
requests' first bytes and ends (stamp a key's window, free its slot, release leases, settle
budgets) in another. Each caller still awaits its own call, so a response is not finished
before its leases are released (a user's next request never finds its own last one held).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .scripts import APPLY


class Batcher:
    """Queues calls (an op and its arguments: ``scripts.APPLY`` by default) and sends all that
    were queued in one loop turn with one EVALSHA. With `results`, the script answers each op
    with its length and its items, in order, and each caller gets its own items."""

    def __init__(self, redis: Any, script: str = APPLY, *, results: bool = False, max_ops: int = 256) -> None:
        self._apply = redis.register_script(script)
        self.results = results
        self.max_ops = max_ops
        self._args: list[Any] = []
        self._waiters: list[asyncio.Future] = []
        self._pending: set[asyncio.Task] = set()
        self._scheduled = False

    async def run(self, *op: Any) -> Any:
        """Apply one call and return its items (with `results`); raises what the Redis client
        raised (the caller decides)."""
        return await self.queue(*op)

    def queue(self, *op: Any) -> asyncio.Future:
        """Queue one write; the future is done once it is applied (or failed)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._args.extend(op)
        self._waiters.append(fut)
        if len(self._waiters) >= self.max_ops:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            # two loop turns: writes from tasks woken in this turn (a request's ends, made
            # together with asyncio.gather) join the same batch
            loop.call_soon(loop.call_soon, self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        if not self._waiters:
            return
        args, waiters = self._args, self._waiters
        self._args, self._waiters = [], []
        task = asyncio.ensure_future(self._send(args, waiters))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, args: list[Any], waiters: list[asyncio.Future]) -> None:
        try:
            out = await self._apply(keys=[], args=args)
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
        self._flush()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
