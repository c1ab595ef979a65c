"""The course log's rows on their way to the database: journaled on local disk and written in
batches off the request path, as the usage log's are (``journaled.JournaledLog``), into the
course log's own table of the same store; and each course's rows dropped past its retention.

The rows themselves are ``engine.courses.log``'s (its ``COLUMNS``); this room only moves them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .journaled import JournaledLog, Names

log = logging.getLogger("rsql.engine")


class CourseLogStore(Protocol):
    """What the course log needs of a store (``jupyter_server_ext.store``: SQLite, PostgreSQL),
    beside the usage log's table: a table of its own, and of the readings of it."""

    name: str

    async def course_open(self) -> None: ...
    async def course_write(self, rows: list[tuple[Any, ...]]) -> None:
        """Store `rows`, skipping any whose (course, request_id) the store already holds."""

    async def course_prune(self, before: Mapping[str, float], others_before: float | None) -> int:
        """Drop each course's rows and readings older than its time in `before`, and those of
        courses not in it older than `others_before` (None: keep them); how many went."""

    async def ping(self) -> bool: ...


class CourseRowLog(JournaledLog):
    """`retention_days`: each logged course's; `others_days`: how long rows of a course no
    longer logged are kept (the usage log's retention; 0 keeps them). `width` and `size_of` are
    the rows' (``JournaledLog``). The store is the usage log's, which closes it."""

    names = Names("course log", "course log spool", "course log's database")

    def __init__(
        self,
        store: CourseLogStore,
        *,
        retention_days: Mapping[str, int],
        others_days: float,
        width: int,
        size_of: Callable[[tuple[Any, ...]], int],
        clock: Callable[[], float] = time.time,
        **journal: Any,
    ) -> None:
        super().__init__(width=width, size_of=size_of, **journal)
        self.store = store
        self.retention_days = dict(retention_days)
        self.others_days = others_days
        self.clock = clock

    async def store_open(self) -> None:
        await self.store.course_open()

    async def store_write(self, rows: list[tuple[Any, ...]]) -> None:
        await self.store.course_write(rows)

    async def store_prune(self) -> int:
        now = self.clock()
        before = {c: now - days * 86400 for c, days in self.retention_days.items()}
        others = now - self.others_days * 86400 if self.others_days > 0 else None
        n = await self.store.course_prune(before, others)
        if n:
            log.info("course log: pruned %d rows and readings past their retention", n)
        return n

    async def store_ping(self) -> bool:
        return await self.store.ping()

    async def store_close(self) -> None:
        return None  # the usage log's store: the usage log closes it
