"""The value index: every short text column's distinct values and every date column's range,
read whole once per database and schema shape, kept in memory and on disk.

Why whole: a read bounded in total (3 s at question time) covered 56-85% of a 900-table
warehouse's text columns, so the text a user got depended on how busy the machine was at the
first question. The index is read to its end instead, each query bounded (``QUERY_BOUND_S``):
a question waits for it up to its own bound; what is left is read by a thread on a
connection of its own (:meth:`~rsql_sql.databases.base.DB.for_thread`: a DuckDB cursor, a
SQLAlchemy engine's pool, a SQLite file opened again read-only), or, where the driver gives
none (a psycopg connection, an in-memory database), by the next questions where the last
one stopped. Complete, it is written under the user's cache folder, keyed by the database
(:meth:`~rsql_sql.databases.base.DB.identity`: a file with its size and time of change, a URL
without its password), the schema's shape and what the policy lets be read, so a new kernel
starts with it.

Fresh until: a database file changes (its identity changes); a server database's index is
read again in the background after ``REFRESH_S``, the last one served meanwhile, and one on
disk older than ``DISK_TTL_S`` is not used. ``RSQL_CACHE_DIR`` moves the folder (default
``$XDG_CACHE_HOME/rsql-assistant`` or ``~/.cache/rsql-assistant``); ``RSQL_CACHE_DIR=off``
keeps nothing on disk. Files are the user's own (folder 0700, file 0600): values are data. A
folder another user could have written into (not the user's, writable by group or others, a
symbolic link) is not used at all, with one warning (``private_folder``).

At interpreter exit the background readers are stopped and joined (:func:`_stop_readers`): a
thread still inside DuckDB when the interpreter finalizes aborts the process ("terminate
called after throwing an instance of ''", exit 134). A read stopped so is never kept as
complete.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..databases.base import interrupt_thread_dbs
from .private_folder import own_folder
from .words import name_words

__all__ = [
    "BuildParams",
    "Column",
    "Ranges",
    "Read",
    "ValueIndex",
    "Values",
    "cache_dir",
    "categorical_values",
    "forget",
    "value_index",
]

Values = dict[tuple[str, str], dict[str, tuple[str, ...]]]
Ranges = dict[tuple[str, str], dict[str, tuple[str, str]]]
Read = Callable[[str, float], list[tuple[Any, ...]]]
Column = tuple[str, str, str]  # (db, table, column)

QUERY_BOUND_S = 2.0  # one query of a batch; a single column's query 1 s
BATCH = 20  # columns per query: one round trip per column costs more than reading them
REFRESH_S = 300.0  # a server database's values are read again (in the background) after this
DISK_TTL_S = 24 * 3600.0  # an index on disk older than this is not used
_MAX_FILE_BYTES = 64 * 2**20  # a cache file larger than this is not read
MAX_FILES = 64  # indexes kept on disk, the newest
_MAX_BUILDS = 8  # indexes kept in memory (connections x shapes)
CACHE_VERSION = 1  # bump when the file's meaning changes
# at exit, how long the background readers are given to end: an interrupted DuckDB or SQLite
# query ends in milliseconds; a PostgreSQL one (nothing to interrupt) within its own bound
STOP_WAIT_S = QUERY_BOUND_S + 1.0
_STOP_POLL_S = 0.05  # at exit, the interrupts are sent again this often (see _stop_readers)

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR = re.compile(r"[12][0-9]{3}")


@dataclass(frozen=True)
class BuildParams:
    """What is read of each column: part of the cache key."""

    sample_rows: int = 1000  # the first rows of a column whose distinct values are read
    max_values: int = 150  # a column with more distinct values is not categorical
    max_len: int = 40  # ... nor one with a longer value


@dataclass(frozen=True)
class ValueIndex:
    """One published state of an index: what a question is answered with."""

    values: Values
    ranges: Ranges
    complete: bool
    columns_read: int
    columns_total: int
    read_s: float  # time spent reading (the whole build once complete)
    source: str  # "read" (this process) or "disk"


def cache_dir() -> Path | None:
    """Where indexes are kept on disk; None: nowhere (``RSQL_CACHE_DIR=off``)."""
    configured = os.environ.get("RSQL_CACHE_DIR", "").strip()
    if configured.lower() in ("off", "none", "0", "false"):
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "rsql-assistant"


def _disk_path(identity: str | None, key: tuple[Any, ...]) -> Path | None:
    folder = cache_dir()
    if identity is None or folder is None:
        return None
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, identity, *key]).encode()).hexdigest()
    return folder / "values" / f"{digest[:40]}.json"


def _load(path: Path | None) -> tuple[ValueIndex, float] | None:
    """The index kept at `path` and when it was written, or None (absent, old, unreadable,
    in a folder another user could write into)."""
    if path is None:
        return None
    with own_folder(path.parent, create=False) as folder:
        if folder is None:
            return None
        try:
            # O_NONBLOCK: a FIFO under the name must not hang the kernel
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(path.name, flags, dir_fd=folder)
        except OSError:  # none there, or a symbolic link
            return None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if (
                not stat.S_ISREG(st.st_mode)
                or st.st_uid != os.geteuid()
                or st.st_size > _MAX_FILE_BYTES
            ):
                return None
            try:
                raw = f.read(_MAX_FILE_BYTES + 1)
            except OSError:
                return None
    try:
        doc = json.loads(raw.decode("utf-8"))
        written = float(doc["written"])
        if doc.get("version") != CACHE_VERSION or not 0 <= time.time() - written < DISK_TTL_S:
            return None
        values: Values = {}
        for db, table, col, vals in doc["values"]:
            values.setdefault((str(db), str(table)), {})[str(col)] = tuple(map(str, vals))
        ranges: Ranges = {}
        for db, table, col, lo, hi in doc["ranges"]:
            ranges.setdefault((str(db), str(table)), {})[str(col)] = (str(lo), str(hi))
        n = int(doc["columns"])
        index = ValueIndex(values, ranges, True, n, n, float(doc["read_s"]), "disk")
    except (ValueError, KeyError, TypeError):  # a file cut or from elsewhere
        return None
    return index, written


def _save(path: Path | None, index: ValueIndex) -> None:
    """Write `index` to `path` (the user's own file, replaced whole); a failure keeps none."""
    if path is None:
        return
    doc = {
        "version": CACHE_VERSION,
        "written": time.time(),
        "columns": index.columns_total,
        "read_s": round(index.read_s, 3),
        "values": [
            [db, t, c, list(v)] for (db, t), cols in index.values.items() for c, v in cols.items()
        ],
        "ranges": [
            [db, t, c, lo, hi]
            for (db, t), cols in index.ranges.items()
            for c, (lo, hi) in cols.items()
        ],
    }
    data = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    with own_folder(path.parent, create=True) as folder, contextlib.suppress(OSError):
        if folder is None:
            return
        tmp = f".values-{secrets.token_hex(8)}.tmp"
        # O_EXCL and 0600: a new file of the user's own, readable by no one else
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
        _prune(folder)


def _prune(folder: int) -> None:
    """Drop the indexes no one will read (older than ``DISK_TTL_S``) and the oldest beyond
    ``MAX_FILES``: every change of a database file writes a new one. `folder`: the folder's
    descriptor (``private_folder.own_folder``)."""
    files = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".json"):
                with contextlib.suppress(OSError):
                    files.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    files.sort(reverse=True)
    now = time.time()
    for k, (mtime, name) in enumerate(files):
        if k >= MAX_FILES or now - mtime > DISK_TTL_S:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)


def categorical_values(
    values: Iterable[Any], *, max_values: int = 50, max_len: int = 40
) -> tuple[str, ...] | None:
    """The distinct values of one column if it looks categorical, else None.

    Categorical: at most `max_values` distinct non-empty strings, none longer than `max_len`,
    not all numbers. Free text, identifiers and numbers are not what a question names.
    """
    seen: dict[str, None] = {}
    for v in values:
        if v is None:
            continue
        s = str(v).strip()
        if len(s) > max_len:
            return None
        if s and s not in seen:
            seen[s] = None
            if len(seen) > max_values:
                return None
    if not seen or all(s.replace(".", "", 1).lstrip("-").isdigit() for s in seen):
        return None
    return tuple(seen)


class _Build:
    """One reading of a database's values, resumable: what a call does not finish the next
    call, or a thread, continues from where it stopped."""

    def __init__(
        self,
        text: list[Column],
        ranged: list[Column],
        params: BuildParams,
        quote: Callable[[str], str],
        identity: str | None,
        path: Path | None,
        previous: ValueIndex | None,
    ) -> None:
        self.text, self.ranged, self.params, self.quote = text, list(ranged), params, quote
        self.identity, self.path, self.previous = identity, path, previous
        self.pos = self.rpos = 0
        self.values: Values = {}
        self.ranges: Ranges = {}
        self.read_s = 0.0
        self.lock = threading.Lock()  # one reader at a time: a waiting question or the thread
        self.done = threading.Event()
        self.stop = threading.Event()  # set at interpreter exit: read no further
        self.thread: threading.Thread | None = None
        self.born = time.monotonic()
        self.published = self._publish()

    def _publish(self) -> ValueIndex:
        # copies: the index a question ranks with never changes under it
        return ValueIndex(
            {k: dict(v) for k, v in self.values.items()},
            {k: dict(v) for k, v in self.ranges.items()},
            self.done.is_set(),
            self.pos + self.rpos,
            len(self.text) + len(self.ranged),
            self.read_s,
            "read",
        )

    def served(self) -> ValueIndex:
        """What a question gets now: the index once complete; while a refresh is read, the
        last complete one; else what is read so far."""
        if self.done.is_set() or self.previous is None:
            return self.published
        return self.previous

    def step(self, read: Read, deadline: float) -> None:
        """Read batches until `deadline` (monotonic), the end or a stop; publishes what it
        read. A batch a stop cut short is not kept: it is read again, whole, if ever."""
        t0 = time.monotonic()
        try:
            while not self.done.is_set() and not self.stop.is_set() and time.monotonic() < deadline:
                if self.pos < len(self.text):
                    batch = self.text[self.pos : self.pos + BATCH]
                    self._values(batch, _read_parts(read, self._value_parts(batch), self.stop))
                    self.pos += len(batch)
                elif self.rpos < len(self.ranged):
                    batch = self.ranged[self.rpos : self.rpos + BATCH]
                    self._ranges(batch, _read_parts(read, self._range_parts(batch), self.stop))
                    self.rpos += len(batch)
                else:
                    self.done.set()
        finally:
            self.read_s += time.monotonic() - t0
            self.published = self._publish()
            if self.done.is_set():
                self.previous = None
                _save(self.path, self.published)

    def _value_parts(self, batch: list[Column]) -> list[str]:
        q, p = self.quote, self.params
        # DISTINCT over each column's first rows, at most one value more than kept (enough to
        # tell a column is not categorical), cut to one character past max_len in the
        # database: a column of long texts crosses the wire as short prefixes
        return [
            f"SELECT {k} AS k, v FROM (SELECT DISTINCT substr(CAST(c AS VARCHAR), 1, "
            f"{int(p.max_len) + 1}) AS v FROM (SELECT {q(col)} AS c FROM {q(dbn)}.{q(tname)} "
            f"LIMIT {int(p.sample_rows)}) AS r WHERE c IS NOT NULL LIMIT {int(p.max_values) + 1}"
            f") AS d{k}"
            for k, (dbn, tname, col) in enumerate(batch)
        ]

    def _values(self, batch: list[Column], rows: list[tuple[Any, ...]]) -> None:
        by_col: dict[int, list[Any]] = {}
        for k, v in rows:
            by_col.setdefault(int(k), []).append(v)
        for k, vals in by_col.items():
            dbn, tname, col = batch[k]
            if all(isinstance(v, str) and _ISO_DATE.fullmatch(v[:10]) for v in vals) or (
                "year" in name_words(col) and all(_YEAR.fullmatch(str(v)) for v in vals)
            ):
                # dates (and years) kept as text or untyped (SQLite), however few: a range
                # says more than a list
                self.ranged.append((dbn, tname, col))
                continue
            p = self.params
            found = categorical_values(vals, max_values=p.max_values, max_len=p.max_len)
            if found:
                self.values.setdefault((dbn, tname), {})[col] = found

    def _range_parts(self, batch: list[Column]) -> list[str]:
        q = self.quote
        # min and max over the whole column: a year outside the first rows counts too
        return [
            f"SELECT {k} AS k, substr(CAST(min({q(col)}) AS VARCHAR), 1, 32) AS lo, "
            f"substr(CAST(max({q(col)}) AS VARCHAR), 1, 32) AS hi FROM {q(dbn)}.{q(tname)}"
            for k, (dbn, tname, col) in enumerate(batch)
        ]

    def _ranges(self, batch: list[Column], rows: list[tuple[Any, ...]]) -> None:
        for k, lo, hi in rows:
            if (
                isinstance(lo, str)
                and isinstance(hi, str)
                and lo[:4].isdigit()
                and hi[:4].isdigit()
            ):
                dbn, tname, col = batch[int(k)]
                self.ranges.setdefault((dbn, tname), {})[col] = (lo, hi)

    def run_in_thread(self, read: Read, close: Callable[[], None]) -> None:
        """Read the rest on another thread (`read` on a connection of its own, which `close`
        closes when the thread ends); stopped at interpreter exit (:func:`_stop_readers`)."""

        def work() -> None:
            try:
                with self.lock:
                    self.step(read, float("inf"))
            except Exception:  # the connection closed under it, or a stop: later questions go on
                pass
            finally:
                with contextlib.suppress(Exception):
                    close()
                with _READERS_LOCK:
                    _READERS.discard(self)

        self.thread = threading.Thread(target=work, name="rsql-value-index", daemon=True)
        with _READERS_LOCK:
            _READERS.add(self)
        self.thread.start()


def _read_parts(read: Read, parts: list[str], stop: threading.Event) -> list[tuple[Any, ...]]:
    """The rows of ``UNION ALL`` of `parts`; when that fails (a view that fails, a permission,
    a type that cannot be cast, a table name the walls refuse, a time-out), each half on its
    own, down to the bad part, which is skipped. One bad column in a batch of 20 then costs
    about 9 queries, not 21. After a `stop` (the query interrupted) the error is raised: the
    batch's columns were not read, not found empty."""
    try:
        return read(" UNION ALL ".join(parts), QUERY_BOUND_S if len(parts) > 1 else 1.0)
    except Exception:  # (a time-out too: one slow table must not cost the batch's others)
        if stop.is_set():
            raise
        if len(parts) == 1:
            return []
        mid = len(parts) // 2
        return _read_parts(read, parts[:mid], stop) + _read_parts(read, parts[mid:], stop)


# the builds whose thread is reading now, stopped at interpreter exit
_READERS_LOCK = threading.Lock()
_READERS: set[_Build] = set()


def _stop_readers(wait_s: float = STOP_WAIT_S) -> list[threading.Thread]:
    """Stop the background readers and wait for them, up to `wait_s` in all; the threads still
    running then (none unless a query ignored its interrupt and its own bound).

    Run at interpreter exit (atexit runs while the interpreter is whole, before it finalizes):
    a daemon thread that is inside DuckDB then is ended by the interpreter (pthread_exit) as
    it takes the GIL back, DuckDB's C++ catches that unwinding and does not rethrow it, and
    the process aborts ("terminate called after throwing an instance of ''", SIGABRT, exit
    134: a failed batch job). Each reader stops before its next query; the query it is in is
    interrupted where the connection was opened for it (a DuckDB cursor, a SQLite file: see
    ``interrupt_thread_dbs``), else (SQLAlchemy's pool) ends within its own bound; the
    reader closes its connection as it ends."""
    with _READERS_LOCK:
        builds = list(_READERS)
    for build in builds:
        build.stop.set()
    threads = [b.thread for b in builds if b.thread is not None]
    deadline = time.monotonic() + wait_s
    for _ in range(int(wait_s / _STOP_POLL_S) + 2):
        alive = [t for t in threads if t.is_alive()]
        left = deadline - time.monotonic()
        if not alive or left <= 0:
            return alive
        # again each round: an interrupt sent between two queries of a reader (before it saw
        # the stop) ends nothing, and DuckDB forgets it when the next query starts
        interrupt_thread_dbs()
        alive[0].join(min(_STOP_POLL_S, left))
    return [t for t in threads if t.is_alive()]


atexit.register(_stop_readers)


_LOCK = threading.Lock()
# key -> (the build, the connection object it belongs to): the object is held so that its id,
# part of the key, cannot be reused by another connection while the entry lives
_BUILDS: dict[tuple[Any, ...], tuple[_Build, Any]] = {}


def value_index(
    key: tuple[Any, ...],
    target: Any,
    db: Any,
    read: Read,
    thread_read: Callable[[], tuple[Read, Callable[[], None]] | None],
    columns: Callable[[], tuple[list[Column], list[Column]]],
    disk_key: tuple[Any, ...],
    params: BuildParams,
    wait_s: float,
) -> ValueIndex:
    """The value index for `key` (connection, shape, policy), waiting up to `wait_s` for it.

    `read` runs a query on the caller's connection (only while this call waits);
    `thread_read` opens a connection a thread may use (None: the driver has none);
    `columns`: the text columns and the date columns to read (asked for only when a build
    starts: listing 10,000 columns costs ms a question should not pay); `disk_key`: what, with the
    database's identity, names the index on disk.
    """
    identity = db.identity()
    now = time.monotonic()
    with _LOCK:
        entry = _BUILDS.get(key)
        build = entry[0] if entry is not None and entry[1] is target else None
        if build is not None and build.done.is_set() and _stale(build, identity, now):
            build = _new_build(columns, params, db, identity, disk_key, build.published)
        elif build is None:
            build = _new_build(columns, params, db, identity, disk_key, None)
        if len(_BUILDS) >= _MAX_BUILDS and key not in _BUILDS:
            _BUILDS.pop(min(_BUILDS, key=lambda k: _BUILDS[k][0].born))
        _BUILDS[key] = (build, target)
    if not build.done.is_set():
        deadline = now + wait_s
        if build.thread is not None and build.thread.is_alive():
            build.done.wait(wait_s)
        elif build.lock.acquire(timeout=max(0.0, wait_s)):
            try:
                build.step(read, deadline)
                if not build.done.is_set() and build.thread is None:
                    opened = thread_read()
                    if opened is not None:
                        build.run_in_thread(*opened)
            finally:
                build.lock.release()
    return build.served()


def _stale(build: _Build, identity: str | None, now: float) -> bool:
    if identity is not None and identity.startswith(("duckdb:", "sqlite:")):
        return identity != build.identity  # a file: its values change only with it
    return now - build.born >= REFRESH_S


def _new_build(
    columns: Callable[[], tuple[list[Column], list[Column]]],
    params: BuildParams,
    db: Any,
    identity: str | None,
    disk_key: tuple[Any, ...],
    previous: ValueIndex | None,
) -> _Build:
    path = _disk_path(identity, disk_key)
    build = _Build(*columns(), params, db.database.quote, identity, path, previous)
    stored = _load(path) if previous is None else None
    if stored is not None:
        index, written = stored
        build.values, build.ranges = index.values, index.ranges
        build.pos, build.rpos = len(build.text), len(build.ranged)
        build.read_s = index.read_s
        build.done.set()
        # a server's index is read again when it is REFRESH_S old, counted from its writing
        build.born -= max(0.0, time.time() - written)
        build.published = ValueIndex(
            index.values,
            index.ranges,
            True,
            index.columns_read,
            index.columns_total,
            index.read_s,
            "disk",
        )
    return build


def forget() -> None:
    """Drop every index kept in memory (tests, and a kernel asked to start over)."""
    with _LOCK:
        _BUILDS.clear()
