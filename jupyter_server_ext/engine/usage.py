"""The usage log: one row per request, written off the request path in batches.

Requests only append to a queue; a writer task hands batches to the store (SQLite or
PostgreSQL). ``close`` drains the queue, so a clean shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

from .records import Outcome

log = logging.getLogger("rsql.engine")

COLUMNS = (
    "ts", "request_id", "user", "client", "model", "upstream", "prompt_tokens",
    "completion_tokens", "cost_usd", "latency_ms", "overhead_ms", "status", "error", "cache_hit",
    "prompt", "redactions", "fallback",
)


class UsageStore(Protocol):
    """Where usage rows go (``jupyter_server_ext.store``: SQLite, PostgreSQL); the host that
    builds the engine hands it one. The admin API and the dashboard read it back."""

    name: str

    async def open(self) -> None: ...
    async def write(self, rows: list[tuple]) -> None: ...
    async def prune(self, before: float) -> int: ...
    async def stats(self, since: float) -> dict[str, Any]: ...
    async def series(self, since: float, step: int = 60, until: float | None = None) -> list[dict[str, Any]]: ...
    async def top_users(self, since: float, by: str = "requests", limit: int = 10) -> list[dict[str, Any]]: ...
    async def totals(self, since: float) -> dict[str, Any]: ...
    async def errors(self, limit: int) -> list[dict[str, Any]]: ...
    async def activity(self, user: str, limit: int) -> list[dict[str, Any]]: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


def row_of(o: Outcome, prompt: str | None) -> tuple:
    return (
        o.started, o.request_id, o.caller.user, o.caller.client, o.model, o.upstream,
        o.prompt_tokens, o.completion_tokens, round(o.cost_usd, 8), round(o.latency_s * 1000, 3),
        round(max(0.0, o.latency_s - o.upstream_s) * 1000, 3), o.status, o.error, int(o.cache_hit),
        prompt, json.dumps(o.redactions, sort_keys=True) if o.redactions else None, o.fallback,
    )


class UsageLog:
    def __init__(
        self, store: UsageStore, *, log_prompts: bool = False, retention_days: float = 90,
        batch: int = 500, interval: float = 0.5, spool_dir: str | None = None, spool_max_bytes: int = 256 * 2**20,
    ) -> None:
        self.store = store
        self.log_prompts = log_prompts
        self.retention_days = retention_days
        self.batch = batch
        self.interval = interval
        self._queue: list[tuple] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_prune = 0.0
        self.dropped = 0

    async def start(self) -> None:
        await self.store.open()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def record(self, outcome: Outcome) -> None:
        prompt = None
        if self.log_prompts and outcome.messages is not None:
            prompt = json.dumps(outcome.messages, ensure_ascii=False)[:20000]
        self._queue.append(row_of(outcome, prompt))
        if len(self._queue) >= self.batch:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush()
            if time.time() - self._last_prune > 3600 and self.retention_days > 0:
                self._last_prune = time.time()
                try:
                    n = await self.store.prune(time.time() - self.retention_days * 86400)
                    if n:
                        log.info("usage log: pruned %d rows older than %g days", n, self.retention_days)
                except Exception:
                    log.exception("usage log: pruning failed")

    async def flush(self) -> None:
        while self._queue:
            rows, self._queue = self._queue[: self.batch], self._queue[self.batch :]
            try:
                await self.store.write(rows)
            except Exception:
                # keep the rows for the next try, but never grow without bound
                log.exception("usage log: writing %d rows failed; will retry", len(rows))
                self._queue[:0] = rows
                if len(self._queue) > 100_000:
                    self.dropped += len(self._queue) - 100_000
                    del self._queue[: len(self._queue) - 100_000]
                return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        await self.flush()
        await self.store.close()
