"""Many requests' writes to Redis in one round trip.

Why: each script call costs the proxy process about as much CPU in the client (building,
sending, reading, parsing) as the script costs Redis, and the writes at a request's first byte
and end (stamp its key's window, free its key slot, release its leases, settle its budget) need
no answer but "done". So the writes queued during one turn of the event loop go as one script
call on the next turn; each caller still awaits its own write, so a response is not finished
before its leases are released (a user's next request never finds its own last one still held).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .scripts import APPLY


class Batcher:
    """Queues writes (an op name and its arguments, see ``scripts.APPLY``) and applies all
    that were queued in one loop turn with one EVALSHA."""

    def __init__(self, redis: Any, max_ops: int = 256) -> None:
        self._apply = redis.register_script(APPLY)
        self.max_ops = max_ops
        self._args: list[Any] = []
        self._waiters: list[asyncio.Future] = []
        self._pending: set[asyncio.Task] = set()
        self._scheduled = False

    async def run(self, *op: Any) -> None:
        """Apply one write; raises what the Redis client raised (the caller decides)."""
        await self.queue(*op)

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
            await self._apply(keys=[], args=args)
        except BaseException as exc:  # every waiter learns it, and decides
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def drain(self) -> None:
        """Send what is queued and wait for every write in flight (at shutdown)."""
        self._flush()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
