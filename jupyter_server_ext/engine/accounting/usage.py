"""The usage log: one row per request, journaled on local disk at once and written to the
store (SQLite or PostgreSQL) in batches off the request path.

``record`` appends the row to the spool (``spool.Journal``), so a row survives the database
being unreachable and the process being killed; a writer task sends the journal to the store,
which keeps one row per request_id. ``close`` flushes; what the store does not take stays
spooled for the next process on the same folder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

from ..errors import StoreUnreachable
from ..records import Outcome
from .spool import MEMORY_BYTES, ROTATE_BYTES, Journal

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
    )


def _said(exc: BaseException) -> str:
    """An error as a log line names it: its type and the first of its message."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class UsageLog:
    """Journals each row on local disk as the request finishes (``record``), and a writer task
    sends the journal to the store in batches. While the store is unreachable the rows stay in
    the journal (bounded by `spool_max_bytes`) and the writer retries with capped backoff; the
    stores keep one row per request_id, so a row sent twice (a retry, a restart, a peer taking
    over a dead process's journal) is stored once. Without a `spool_dir` rows wait in memory only.
    """

    def __init__(
        self,
        store: UsageStore,
        *,
        log_prompts: bool = False,
        retention_days: float = 90,
        batch: int = 500,
        interval: float = 0.5,
        spool_dir: str | None = None,
        spool_max_bytes: int = 256 * 2**20,
        memory_rows: int = 20_000,
        memory_bytes: int = 32 * 2**20,
        max_backoff: float = 15.0,
        adopt_interval: float = 30.0,
        write_timeout: float = 30.0,
        spool_rotate_bytes: int = ROTATE_BYTES,
        spool_memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self.store = store
        self.log_prompts = log_prompts
        self.retention_days = retention_days
        self.batch = batch
        self.interval = interval
        self.spool_dir = spool_dir
        self.spool_max_bytes = spool_max_bytes
        self.spool_sizes = {"rotate_bytes": spool_rotate_bytes, "memory_bytes": spool_memory_bytes}
        self.memory_rows = memory_rows
        self.memory_bytes = memory_bytes
        self.max_backoff = max_backoff
        self.adopt_interval = adopt_interval
        self.write_timeout = write_timeout
        self.spool: Journal | None = None
        self._mem: list[
            tuple[Any, ...]
        ] = []  # rows not journaled: no spool, spool full or the disk failing
        self._mem_size = 0
        self._fresh = 0  # rows recorded since the last flush
        self._wake = asyncio.Event()
        self._stopping = False  # close() asked the writer to end
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[Any] | None = None
        self._last_prune = 0.0
        self._next_adopt = 0.0
        self._backoff = interval
        self._warned: set[str] = set()  # warnings given in this outage
        self._outage_written = 0
        self.dropped = 0
        self.down_since: float | None = None  # wall clock of the first failure of this outage
        self.down_error: str | None = None

    async def start(self) -> None:
        if self.spool_dir and self.spool is None:
            journal = Journal(self.spool_dir, self.spool_max_bytes, **self.spool_sizes)
            try:
                await asyncio.to_thread(journal.open)
                self.spool = journal
            except OSError as exc:
                log.warning(
                    "usage spool off: cannot use the folder %s (%s); while the usage database is "
                    "unreachable, rows are kept in memory only (at most %d). Set "
                    "c.RSQLProxy.usage_spool_dir to a folder this process can write",
                    journal.folder,
                    _said(exc),
                    self.memory_rows,
                )
            else:
                await self._adopt()
        try:
            await asyncio.wait_for(self.store.open(), self.write_timeout)
        except Exception as exc:  # the proxy still answers; rows wait in the spool
            self._down(exc)
        if self._task is None:
            self._stopping = False
            self._task = asyncio.ensure_future(self._run())

    # -- the request path -----------------------------------------------------------------------

    def record(self, outcome: Outcome) -> None:
        prompt = None
        if self.log_prompts and outcome.messages is not None:
            prompt = json.dumps(outcome.messages, ensure_ascii=False)[:20000]
        row = row_of(outcome, prompt)
        self._fresh += 1
        if self._fresh >= self.batch:
            self._wake.set()
        spool = self.spool
        if spool is not None and spool.append(row):
            return
        self._keep(row)

    def _keep(self, row: tuple[Any, ...]) -> None:
        """A row the journal did not take waits in memory, within bounds; past them it is dropped."""
        spool = self.spool
        if spool is not None and spool.error is not None:
            self._warn_once(
                "disk",
                "usage spool: writing to %s failed (%s); new rows are kept in memory "
                "only (at most %d) until it works again",
                spool.folder,
                _said(spool.error),
                self.memory_rows,
            )
        elif spool is not None and spool.full:
            self._warn_once(
                "full",
                "usage spool %s is full (%d of c.RSQLProxy.usage_spool_max_bytes = %d "
                "bytes): new rows are kept in memory only (at most %d) until the usage database "
                "answers again",
                spool.folder,
                spool.bytes,
                spool.max_bytes,
                self.memory_rows,
            )
        size = 300 + len(row[14] or "")
        if len(self._mem) >= self.memory_rows or self._mem_size + size > self.memory_bytes:
            # the newest row goes: rows already queued may be on their way to the store
            self.dropped += 1
            self._warn_once(
                "drop",
                "usage log: rows are being dropped (memory queue full at %d rows); "
                "the usage database has been unreachable since %s",
                len(self._mem),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.down_since or time.time())),
            )
            return
        self._mem.append(row)
        self._mem_size += size

    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(msg, *args)

    # -- the writer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            if self.down_since is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                except asyncio.TimeoutError:
                    pass
            else:  # backing off: new rows only go to the spool
                await asyncio.sleep(self._backoff)
            if self._stopping:  # a cancel the wait swallowed (close): close flushes last
                return
            self._wake.clear()
            if self.spool is not None and time.monotonic() >= self._next_adopt:
                await self._adopt()
            await self.flush()
            if (
                time.time() - self._last_prune > 3600
                and self.retention_days > 0
                and self.down_since is None
            ):
                self._last_prune = time.time()
                try:
                    n = await self.store.prune(time.time() - self.retention_days * 86400)
                    if n:
                        log.info(
                            "usage log: pruned %d rows older than %g days", n, self.retention_days
                        )
                except Exception:
                    log.exception("usage log: pruning failed")

    async def _adopt(self) -> None:
        """Take over segments left in the spool folder by processes that are gone."""
        spool = self.spool
        self._next_adopt = time.monotonic() + self.adopt_interval
        if spool is None:
            return
        try:
            found = await asyncio.to_thread(spool.find_orphans)
        except Exception:
            log.exception("usage spool: looking for rows left by earlier processes failed")
            return
        if found:
            n = spool.take(found)
            log.info(
                "usage spool: writing %d rows left in %s by processes that are gone",
                n,
                spool.folder,
            )
            self._wake.set()

    async def flush(self) -> bool:
        """Send every row the journal and memory hold. False when the store is unreachable
        (the rows stay for the next try)."""
        async with self._lock:
            self._fresh = 0
            try:
                await self._drain()
            except StoreUnreachable as exc:
                self._down(exc.__cause__ or exc)
                return False
            except Exception as exc:  # reading the spool back failed: try again later
                if f"error {type(exc).__name__}" not in self._warned:
                    self._warned.add(f"error {type(exc).__name__}")
                    log.exception("usage log: writing rows failed; will retry")
                return False
            if self.down_since is not None:
                log.info(
                    "usage database reachable again after %.1f s: wrote %d spooled rows",
                    time.time() - self.down_since,
                    self._outage_written,
                )
                self.down_since = self.down_error = None
                self._backoff = self.interval
                self._warned.clear()
            spool = self.spool
            if spool is not None:
                spool.full = False
                if spool.error is not None:  # everything is written: try the disk again
                    spool.error = None
            return True

    async def _drain(self) -> None:
        spool = self.spool
        if spool is not None:
            todo = spool.unsynced()
            if todo:
                try:
                    await asyncio.to_thread(spool.sync, todo)
                except (
                    OSError
                ) as exc:  # the rows still go to the store; only a power cut could lose them
                    self._warn_once(
                        "sync",
                        "usage spool: syncing %s to disk failed (%s)",
                        spool.folder,
                        _said(exc),
                    )
            while (seg := spool.next_segment()) is not None:
                if seg.pending is None:
                    seg.pending = await asyncio.to_thread(spool.load, seg)
                chunk = seg.pending[: self.batch]
                if not chunk:
                    raise RuntimeError(
                        f"usage spool: {seg.path} has {seg.unsent} rows to send but none loaded"
                    )
                # a row an older version journaled lacks the columns added since: they are empty
                width = len(COLUMNS)
                rows = [r + (None,) * (width - len(r)) for r in chunk if r is not None]
                if rows:
                    await self._send(rows)
                spool.confirm(seg, len(chunk))
                if self.down_since is not None:
                    self._outage_written += len(rows)
        while self._mem:
            rows = self._mem[: self.batch]
            await self._send(rows)
            del self._mem[: len(rows)]  # only _keep changes the queue, and it only appends
            self._mem_size = max(0, self._mem_size - sum(300 + len(r[14] or "") for r in rows))
            if self.down_since is not None:
                self._outage_written += len(rows)

    async def _send(self, rows: list[tuple[Any, ...]]) -> None:
        """Write `rows`, or raise StoreUnreachable. When the store answers but refuses the
        batch, the rows go one by one and only the rows it refuses are dropped (logged)."""
        try:
            await asyncio.wait_for(self.store.write(rows), self.write_timeout)
            return
        except Exception as exc:
            if not await self._reachable():
                raise StoreUnreachable() from exc
        for row in rows:
            try:
                await asyncio.wait_for(self.store.write([row]), self.write_timeout)
            except Exception as exc:
                if not await self._reachable():
                    raise StoreUnreachable() from exc
                self.dropped += 1
                log.error(
                    "usage log: the database refused the row of request %s (%s); it was dropped",
                    row[1],
                    _said(exc),
                )

    async def _reachable(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.store.ping(), self.write_timeout))
        except Exception:
            return False

    def _down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.time()
            self.down_error = type(exc).__name__
            self._outage_written = 0
            where = (
                f"spooling rows to {self.spool.folder}"
                if self.spool is not None
                else f"keeping up to {self.memory_rows} rows in memory (no spool folder)"
            )
            log.warning(
                "usage database unreachable (%s): %s; they are written once it answers",
                _said(exc),
                where,
            )
            self._backoff = self.interval
        else:
            self._backoff = min(self.max_backoff, self._backoff * 2)

    def status(self) -> dict[str, Any]:
        """The spool and the writer, for ``GET status``: rows and bytes waiting on disk, rows
        waiting in memory only, rows dropped, and since when the database is unreachable."""
        spool = (
            self.spool.status()
            if self.spool is not None
            else {"rows": 0, "bytes": 0, "max_bytes": self.spool_max_bytes, "full": False}
        )
        return {
            "spool": {"enabled": self.spool is not None, **spool},
            "memory_rows": len(self._mem),
            "dropped_rows": self.dropped,
            "unreachable_since": round(self.down_since, 3) if self.down_since is not None else None,
            "error": self.down_error,
        }

    async def close(self) -> None:
        """A last flush; rows the database does not take stay spooled for the next start."""
        if self._task is not None:
            task, self._task = self._task, None
            # a stop the writer reads as well as a cancel: Python 3.11's asyncio.wait_for
            # swallows a cancel that comes as the wait it guards ends (a row logged at shutdown
            # wakes the writer), and the writer would go round for good, its close never done.
            # A cancel of close() itself is not swallowed here.
            self._stopping = True
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the writer logs its own failures
        try:
            await asyncio.wait_for(self.flush(), self.write_timeout)
        except asyncio.TimeoutError:
            log.warning(
                "usage log: the last flush took over %g s and was stopped", self.write_timeout
            )
        if self.spool is not None:
            rows, nbytes = self.spool.close()
            if rows:
                log.warning(
                    "usage log: %d rows (%d bytes) are not in the usage database yet; they stay "
                    "in %s and are written by the next process started with this spool folder",
                    rows,
                    nbytes,
                    self.spool.folder,
                )
            self.spool = None
        if self._mem:
            log.error(
                "usage log: %d rows held only in memory are lost (the usage database is unreachable "
                "and the spool was %s)",
                len(self._mem),
                "full" if self.spool_dir else "off",
            )
            self._mem.clear()
        try:
            await self.store.close()
        except Exception:
            log.exception("usage log: closing the store failed")
