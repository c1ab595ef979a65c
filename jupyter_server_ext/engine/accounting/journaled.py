"""Rows journaled on local disk at once and written to a database in batches, off the request
path: what the usage log (``usage``) and the course log (``course_rows``) both are.

``append`` puts the row in the spool (``spool.Journal``), so a row survives the database being
unreachable and the process being killed; a writer task sends the journal to the store, which
keeps one row per key (a request id), so a row sent twice is stored once. ``close`` flushes;
what the store does not take stays spooled for the next process on the same folder. Each kind
of log says how its rows reach its store (``store_*``) and what its lines call it (``Names``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import StoreUnreachable
from .spool import MEMORY_BYTES, ROTATE_BYTES, Journal

log = logging.getLogger("rsql.engine")


class Names(NamedTuple):
    """What a log's lines call it, its journal and its database."""

    log: str = "usage log"
    spool: str = "usage spool"
    database: str = "usage database"


def said(exc: BaseException) -> str:
    """An error as a log line names it: its type and the first of its message."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JournaledLog:
    """Journals each row on local disk as it is appended, and a writer task sends the journal to
    the store in batches. While the store is unreachable the rows stay in the journal (bounded
    by `spool_max_bytes`) and the writer retries with capped backoff. Without a `spool_dir`
    rows wait in memory only. Every hour past start the store drops what it keeps no longer
    (``store_prune``).

    `width`: a row's columns (a row an older version journaled is padded to it); `size_of`:
    what a row waiting in memory counts against `memory_bytes`."""

    names = Names()

    def __init__(
        self,
        *,
        width: int,
        size_of: Callable[[tuple[Any, ...]], int],
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
        self.width = width
        self.size_of = size_of
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
        # rows not journaled: no spool, spool full or the disk failing
        self._mem: list[tuple[Any, ...]] = []
        self._mem_size = 0
        self._fresh = 0  # rows appended since the last flush
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

    # -- the store: each kind of log its own --------------------------------------------------

    async def store_open(self) -> None:
        raise NotImplementedError

    async def store_write(self, rows: list[tuple[Any, ...]]) -> None:
        """Store `rows`, skipping any the store already holds."""
        raise NotImplementedError

    async def store_prune(self) -> int:
        """Drop the rows past their retention; how many went (0: nothing to prune)."""
        raise NotImplementedError

    async def store_ping(self) -> bool:
        raise NotImplementedError

    async def store_close(self) -> None:
        raise NotImplementedError

    @property
    def started(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        names = self.names
        if self.spool_dir and self.spool is None:
            journal = Journal(self.spool_dir, self.spool_max_bytes, **self.spool_sizes)
            try:
                await asyncio.to_thread(journal.open)
                self.spool = journal
            except OSError as exc:
                log.warning(
                    "%s off: cannot use the folder %s (%s); while the %s is "
                    "unreachable, rows are kept in memory only (at most %d). Set "
                    "c.RSQLProxy.usage_spool_dir to a folder this process can write",
                    names.spool,
                    journal.folder,
                    said(exc),
                    names.database,
                    self.memory_rows,
                )
            else:
                await self._adopt()
        try:
            await asyncio.wait_for(self.store_open(), self.write_timeout)
        except Exception as exc:  # the proxy still answers; rows wait in the spool
            self._down(exc)
        if self._task is None:
            self._stopping = False
            self._task = asyncio.ensure_future(self._run())

    # -- the request path -----------------------------------------------------------------------

    def append(self, row: tuple[Any, ...]) -> None:
        """Journal `row` (else keep it in memory, within bounds); the writer sends it on."""
        self._fresh += 1
        if self._fresh >= self.batch:
            self._wake.set()
        spool = self.spool
        if spool is not None and spool.append(row):
            return
        self._keep(row)

    def _keep(self, row: tuple[Any, ...]) -> None:
        """A row the journal did not take waits in memory, within bounds; past them it is dropped."""
        spool, names = self.spool, self.names
        if spool is not None and spool.error is not None:
            self._warn_once(
                "disk",
                "%s: writing to %s failed (%s); new rows are kept in memory "
                "only (at most %d) until it works again",
                names.spool,
                spool.folder,
                said(spool.error),
                self.memory_rows,
            )
        elif spool is not None and spool.full:
            self._warn_once(
                "full",
                "%s %s is full (%d of c.RSQLProxy.usage_spool_max_bytes = %d "
                "bytes): new rows are kept in memory only (at most %d) until the %s "
                "answers again",
                names.spool,
                spool.folder,
                spool.bytes,
                spool.max_bytes,
                self.memory_rows,
                names.database,
            )
        size = self.size_of(row)
        if len(self._mem) >= self.memory_rows or self._mem_size + size > self.memory_bytes:
            # the newest row goes: rows already queued may be on their way to the store
            self.dropped += 1
            self._warn_once(
                "drop",
                "%s: rows are being dropped (memory queue full at %d rows); "
                "the %s has been unreachable since %s",
                names.log,
                len(self._mem),
                names.database,
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
            if time.time() - self._last_prune > 3600 and self.down_since is None:
                self._last_prune = time.time()
                try:
                    await self.store_prune()
                except Exception:
                    log.exception("%s: pruning failed", self.names.log)

    async def _adopt(self) -> None:
        """Take over segments left in the spool folder by processes that are gone."""
        spool = self.spool
        self._next_adopt = time.monotonic() + self.adopt_interval
        if spool is None:
            return
        try:
            found = await asyncio.to_thread(spool.find_orphans)
        except Exception:
            log.exception("%s: looking for rows left by earlier processes failed", self.names.spool)
            return
        if found:
            n = spool.take(found)
            log.info(
                "%s: writing %d rows left in %s by processes that are gone",
                self.names.spool,
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
                    log.exception("%s: writing rows failed; will retry", self.names.log)
                return False
            if self.down_since is not None:
                log.info(
                    "%s reachable again after %.1f s: wrote %d spooled rows",
                    self.names.database,
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
                        "%s: syncing %s to disk failed (%s)",
                        self.names.spool,
                        spool.folder,
                        said(exc),
                    )
            while (seg := spool.next_segment()) is not None:
                if seg.pending is None:
                    seg.pending = await asyncio.to_thread(spool.load, seg)
                chunk = seg.pending[: self.batch]
                if not chunk:
                    raise RuntimeError(
                        f"{self.names.spool}: {seg.path} has {seg.unsent} rows to send but none "
                        "loaded"
                    )
                # a row an older version journaled lacks the columns added since: they are empty
                width = self.width
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
            self._mem_size = max(0, self._mem_size - sum(self.size_of(r) for r in rows))
            if self.down_since is not None:
                self._outage_written += len(rows)

    async def _send(self, rows: list[tuple[Any, ...]]) -> None:
        """Write `rows`, or raise StoreUnreachable. When the store answers but refuses the
        batch, the rows go one by one and only the rows it refuses are dropped (logged)."""
        try:
            await asyncio.wait_for(self.store_write(rows), self.write_timeout)
            return
        except Exception as exc:
            if not await self._reachable():
                raise StoreUnreachable() from exc
        for row in rows:
            try:
                await asyncio.wait_for(self.store_write([row]), self.write_timeout)
            except Exception as exc:
                if not await self._reachable():
                    raise StoreUnreachable() from exc
                self.dropped += 1
                log.error(
                    "%s: the database refused the row of request %s (%s); it was dropped",
                    self.names.log,
                    row[1],
                    said(exc),
                )

    async def _reachable(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.store_ping(), self.write_timeout))
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
                "%s unreachable (%s): %s; they are written once it answers",
                self.names.database,
                said(exc),
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
        names = self.names
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
                "%s: the last flush took over %g s and was stopped", names.log, self.write_timeout
            )
        if self.spool is not None:
            rows, nbytes = self.spool.close()
            if rows:
                log.warning(
                    "%s: %d rows (%d bytes) are not in the %s yet; they stay "
                    "in %s and are written by the next process started with this spool folder",
                    names.log,
                    rows,
                    nbytes,
                    names.database,
                    self.spool.folder,
                )
            self.spool = None
        if self._mem:
            log.error(
                "%s: %d rows held only in memory are lost (the %s is unreachable "
                "and the spool was %s)",
                names.log,
                len(self._mem),
                names.database,
                "full" if self.spool_dir else "off",
            )
            self._mem.clear()
        try:
            await self.store_close()
        except Exception:
            log.exception("%s: closing the store failed", names.log)
