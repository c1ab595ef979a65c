"""The usage log: one row per request, journaled on local disk at once and written to the
store (SQLite or PostgreSQL) in batches off the request path (``journaled.JournaledLog``).

``record`` appends the row to the spool (``spool.Journal``), so a row survives the database
being unreachable and the process being killed; a writer task sends the journal to the store,
which keeps one row per request_id. ``close`` flushes; what the store does not take stays
spooled for the next process on the same folder.

Notebooks in the usage log (:class:`NotebookCosts`): how a row names the notebook a request
came from, and what a user spent in one (GET me/cost, ``%ask_cost``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any, Protocol

from ..errors import RateLimited
from ..interface import Outcome
from .journaled import JournaledLog

log = logging.getLogger("rsql.engine")

COLUMNS = (
    "ts",
    "request_id",
    "user",
    "client",
    "model",
    "upstream",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "overhead_ms",
    "status",
    "error",
    "cache_hit",
    "prompt",
    "redactions",
    "fallback",
    "escalation",
    "notebook",
    "cell",
    "api",
    "result_rows",
    # the prompt cache: tokens read from it and written to it, and what the request would have
    # cost without it (what the cache saved is that less cost_usd)
    "cache_read_tokens",
    "cache_write_tokens",
    "uncached_usd",
    # of prompt_tokens and completion_tokens, those that were sound (charged at the audio rates)
    "audio_input_tokens",
    "audio_output_tokens",
)


class UsageStore(Protocol):
    """Where usage rows go (``jupyter_server_ext.store``: SQLite, PostgreSQL); the host that
    builds the engine hands it one. The admin API and the dashboard read it back."""

    name: str

    async def open(self) -> None: ...
    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        """Store `rows`, skipping any whose request_id the store already holds."""

    async def prune(self, before: float) -> int: ...
    async def stats(self, since: float) -> dict[str, Any]: ...
    async def series(
        self, since: float, step: int = 60, until: float | None = None
    ) -> list[dict[str, Any]]: ...
    async def top_users(
        self, since: float, by: str = "requests", limit: int = 10
    ) -> list[dict[str, Any]]: ...
    async def totals(self, since: float) -> dict[str, Any]: ...
    async def errors(self, limit: int) -> list[dict[str, Any]]: ...
    async def activity(self, user: str, limit: int) -> list[dict[str, Any]]: ...
    async def notebooks(
        self, since: float, user: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Requests, tokens and cost per (user, notebook) since `since`, dearest first."""

    async def notebook_cost(
        self, user: str, notebook: str, day: float, week: float
    ) -> dict[str, Any]:
        """One user's spend in one notebook since `day` and since `week`, and its dearest cells."""

    async def prompt_cache(self, user: str, since: float) -> dict[str, Any]:
        """One user's prompt cache since `since`: tokens read, hit ratio, dollars saved, in all
        and by model."""

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


def row_of(o: Outcome, prompt: str | None) -> tuple[Any, ...]:
    return (
        o.started,
        o.request_id,
        o.caller.user,
        o.caller.client,
        o.model,
        o.upstream,
        o.prompt_tokens,
        o.completion_tokens,
        round(o.cost_usd, 8),
        round(o.latency_s * 1000, 3),
        round(max(0.0, o.latency_s - o.upstream_s) * 1000, 3),
        o.status,
        o.error,
        int(o.cache_hit),
        prompt,
        json.dumps(o.redactions, sort_keys=True) if o.redactions else None,
        o.fallback,
        o.escalation,
        o.notebook,
        o.cell,
        o.api,
        o.result_rows,
        o.cache_read_tokens,
        o.cache_write_tokens,
        round(o.uncached_usd, 8),
        o.audio_input_tokens,
        o.audio_output_tokens,
    )


class UsageLog(JournaledLog):
    """The usage log's rows, journaled and written in batches (``JournaledLog``); the stores
    keep one row per request_id, so a row sent twice (a retry, a restart, a peer taking over a
    dead process's journal) is stored once. Rows older than `retention_days` are pruned (0
    keeps all)."""

    def __init__(
        self,
        store: UsageStore,
        *,
        log_prompts: bool = False,
        retention_days: float = 90,
        **journal: Any,
    ) -> None:
        # a row waiting in memory counts its prompt text (column 14) and about 300 bytes more
        super().__init__(width=len(COLUMNS), size_of=lambda r: 300 + len(r[14] or ""), **journal)
        self.store = store
        self.log_prompts = log_prompts
        self.retention_days = retention_days

    def record(self, outcome: Outcome) -> None:
        prompt = None
        if self.log_prompts and outcome.messages is not None:
            prompt = json.dumps(outcome.messages, ensure_ascii=False)[:20000]
        self.append(row_of(outcome, prompt))

    async def store_open(self) -> None:
        await self.store.open()

    async def store_write(self, rows: list[tuple[Any, ...]]) -> None:
        await self.store.write(rows)

    async def store_prune(self) -> int:
        if self.retention_days <= 0:
            return 0
        n = await self.store.prune(time.time() - self.retention_days * 86400)
        if n:
            log.info("usage log: pruned %d rows older than %g days", n, self.retention_days)
        return n

    async def store_ping(self) -> bool:
        return await self.store.ping()

    async def store_close(self) -> None:
        await self.store.close()


class NotebookCosts:
    """`key`: the pseudonym key (notebook ids stay stable across replicas that share it);
    `names`: the admin opted into notebook paths in the usage log."""

    def __init__(self, key: bytes, *, names: bool, usage: UsageLog | None) -> None:
        self._key = key
        self._names = names
        self._usage = usage
        # one query of a user's at a time, a few per process: reads of the usage log are the
        # database's work for everyone, and asking costs the user no quota
        self._readers: set[str] = set()
        self._slots = asyncio.Semaphore(4)

    def notebook_id(self, path: str | None) -> str | None:
        """How the usage log names a notebook: its path when the admin opts into names, else a
        keyed hash of it."""
        if not path:
            return None
        if self._names:
            return path
        digest = hmac.new(self._key, b"notebook:" + path.encode(), hashlib.sha256).hexdigest()
        return "nb-" + digest[:16]

    async def cost(self, user: str, path: str, store: UsageStore) -> dict[str, Any]:
        """What `user` spent in the notebook at `path` since UTC midnight and since Monday
        00:00 UTC, and its dearest cells this week."""
        if user in self._readers:
            raise RateLimited(
                "one cost query at a time: the last one is still running",
                retry_after=1,
                limit="cost queries in flight",
            )
        self._readers.add(user)
        try:
            async with self._slots:
                now = time.time()
                day = now - now % 86400
                week = day - time.gmtime(now).tm_wday * 86400
                notebook = self.notebook_id(path) or ""
                if self._usage is not None:
                    await self._usage.flush()  # the rows of requests just answered are counted
                return {
                    "notebook": notebook,
                    **await store.notebook_cost(user, notebook, day, week),
                }
        finally:
            self._readers.discard(user)
