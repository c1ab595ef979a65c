"""The usage log's on-disk journal: every row is appended here before it goes to the database.

Each process appends to segment files of its own (``usage-<pid>-<time>-<random>.jsonl``, one
JSON array per line) and holds an exclusive ``flock`` on each until every row in it is
confirmed by the store. An append is one ``os.write`` on an ``O_APPEND`` descriptor: once it
returns, the row is in the OS page cache and survives the process being killed (SIGKILL, OOM);
the writer fsyncs what it sends, so a machine crash loses at most the rows since the last flush.

Confirmed rows leave the journal: the active segment is truncated once all of its rows are
written, and a sealed one (rotated at ``ROTATE_BYTES``) is deleted. A row can be sent twice
(after a crash between the store's commit and the truncation, or when a peer takes a segment
over): the stores ignore a row whose request_id they already hold, so that is harmless.

Several processes may share one folder: a process takes over (``adopt``) only segments whose
lock it can take, i.e. whose owner is gone. Locks are per open file, so a second journal in the
same process cannot take a live segment either. Plain Python; the caller runs the slow parts
(``sync``, ``load``, ``find_orphans``) in a thread.

A row in the folder is a charge to its user, so the folder is trusted only when no one else can
write it (owned by this process's user, no group or other write bit), and a segment is taken
over only when it is a regular file of this user that no one else can read or write, opened
without following a symbolic link and without blocking (a FIFO would hang the reader). A
planted file is skipped with a warning that names it, and left for the admin to look at.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import stat
import time
from typing import Any

from ..bodies import json_codec
from ..errors import UnsafeFolder

log = logging.getLogger("rsql.engine")

PREFIX, SUFFIX = "usage-", ".jsonl"
ROTATE_BYTES = 4 * 2**20  # a segment is sealed past this; bounds what a take-over re-reads
MEMORY_BYTES = 16 * 2**20  # journaled rows also kept in memory (to send without reading back)


def _folder_problem(st: os.stat_result) -> str | None:
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by this process's user (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):o}); chmod 700 it"
    return None


def _segment_problem(st: os.stat_result) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by this process's user"
    if st.st_mode & 0o077:
        return f"readable or writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


class Segment:
    """One journal file: `rows` lines in it, the first `sent` confirmed by the store.

    `pending` holds rows `sent..rows` in memory, or is None when they must be read back
    from disk (``Journal.load``); an entry is None for a line that could not be parsed.
    """

    __slots__ = (
        "path",
        "fd",
        "rows",
        "sent",
        "bytes",
        "synced",
        "pending",
        "pending_bytes",
        "sealed",
        "adopted",
    )

    def __init__(
        self, path: str, fd: int, *, rows: int = 0, nbytes: int = 0, adopted: bool = False
    ) -> None:
        self.path = path
        self.fd = fd
        self.rows = rows
        self.sent = 0
        self.bytes = nbytes
        self.synced = nbytes
        self.pending: list[Any] | None = None if adopted else []
        self.pending_bytes = 0  # what the appended rows in `pending` count against MEMORY_BYTES
        self.sealed = adopted
        self.adopted = adopted

    @property
    def unsent(self) -> int:
        return self.rows - self.sent


class Journal:
    """The segments of one process in `folder`, at most `max_bytes` on disk in all."""

    def __init__(
        self,
        folder: str,
        max_bytes: int,
        *,
        rotate_bytes: int = ROTATE_BYTES,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self.folder = os.path.abspath(folder)
        self.max_bytes = max_bytes
        self.rotate_bytes = rotate_bytes
        self.memory_cap = memory_bytes
        self.segments: list[Segment] = []  # oldest first; the last one is appended to unless sealed
        self.bytes = 0
        self.memory_bytes = 0
        self.full = False  # an append found no room; the caller resets it once it has warned
        self.error: OSError | None = None  # the disk refused a write: journaling stopped
        self._known: set[str] = set()
        self._refused: set[str] = set()  # planted files already named in a warning

    # -- set-up and shutdown ----------------------------------------------------------------

    def open(self) -> None:
        """Make the folder (owner-only: rows may hold prompts) and the first segment."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        why = _folder_problem(os.stat(self.folder))
        if why:
            raise UnsafeFolder(f"{self.folder} is {why}")
        self._new_segment()

    def close(self) -> tuple[int, int]:
        """Sync and release every segment; delete the ones with nothing left to send.
        Returns the (rows, bytes) left in the folder for a later process."""
        left_rows = left_bytes = 0
        for seg in self.segments:
            try:
                if seg.unsent == 0:
                    os.unlink(seg.path)
                else:
                    if seg.synced < seg.bytes:
                        os.fsync(seg.fd)
                    left_rows += seg.unsent
                    left_bytes += seg.bytes
            except OSError as exc:
                log.warning("usage spool: closing %s failed: %s", seg.path, exc)
            finally:
                os.close(seg.fd)
        self.segments.clear()
        self.bytes = self.memory_bytes = 0
        return left_rows, left_bytes

    # -- the hot path -------------------------------------------------------------------------

    def append(self, row: tuple[Any, ...]) -> bool:
        """Journal one row; False when it is not journaled (spool full, or the disk refused)."""
        if self.error is not None:
            return False
        line = json_codec.dumps(row) + b"\n"
        n = len(line)
        if self.bytes + n > self.max_bytes:
            self.full = True
            return False
        seg = self.segments[-1] if self.segments and not self.segments[-1].sealed else None
        try:
            if seg is None or seg.bytes >= self.rotate_bytes:
                seg = self._new_segment()
            written = os.write(seg.fd, line)
            if written != n:  # disk full mid-line: cut the partial line off, stop journaling
                os.ftruncate(seg.fd, seg.bytes)
                raise OSError(28, f"short write ({written} of {n} bytes)")
        except OSError as exc:
            self.error = exc
            return False
        seg.rows += 1
        seg.bytes += n
        self.bytes += n
        if seg.pending is not None:
            seg.pending.append(row)
            seg.pending_bytes += n
            self.memory_bytes += n
            if self.memory_bytes > self.memory_cap:
                self._spill()
        return True

    def _new_segment(self) -> Segment:
        if self.segments and not self.segments[-1].sealed:
            self.segments[-1].sealed = True
        name = f"{PREFIX}{os.getpid()}-{time.time_ns():x}-{secrets.token_hex(3)}{SUFFIX}"
        path = os.path.join(self.folder, name)
        # locked under a name no peer looks at, then renamed: a peer scanning the folder can
        # never lock (and take over) a segment in the instant before its owner does
        tmp = os.path.join(self.folder, "." + name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, path)
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            raise
        seg = Segment(path, fd)
        self._known.add(path)
        self.segments.append(seg)
        return seg

    def _spill(self) -> None:
        """Too many journaled rows in memory (a long outage): forget them, they are on disk
        and are read back segment by segment; new rows go to a fresh segment."""
        for seg in self.segments:
            seg.pending = None
            seg.pending_bytes = 0
        self.memory_bytes = 0
        if self.segments:
            self.segments[-1].sealed = True

    # -- the writer's side ----------------------------------------------------------------------

    @property
    def unsent(self) -> int:
        return sum(seg.unsent for seg in self.segments)

    def next_segment(self) -> Segment | None:
        """The oldest segment with rows to send."""
        for seg in self.segments:
            if seg.unsent:
                return seg
        return None

    def unsynced(self) -> list[tuple[Segment, int]]:
        return [(seg, seg.bytes) for seg in self.segments if seg.synced < seg.bytes]

    @staticmethod
    def sync(todo: list[tuple[Segment, int]]) -> None:
        """fsync segments (in a thread: the loop goes on appending meanwhile)."""
        for seg, upto in todo:
            os.fsync(seg.fd)
            seg.synced = max(seg.synced, upto)

    @staticmethod
    def load(seg: Segment) -> list[Any]:
        """The rows of a segment after its first `seg.sent` lines, read back from disk (in a
        thread). A line that is not a row (a torn write after a power cut) reads as None."""
        try:
            if seg.adopted:  # the file checked when it was taken over, whatever has its name now
                data = _read_all(seg.fd)
            else:
                with open(seg.path, "rb") as f:
                    data = f.read()
        except FileNotFoundError:  # removed by hand: its rows are gone
            log.warning(
                "usage spool: %s was removed before its %d rows were written", seg.path, seg.unsent
            )
            data = b""
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        out: list[Any] = []
        bad = 0
        for raw in lines[seg.sent : seg.rows]:
            try:
                row = json.loads(raw)
                ok = isinstance(row, list) and isinstance(row[1], str)
            except (ValueError, IndexError):
                ok = False
            if ok:
                out.append(tuple(row))
            else:
                out.append(None)
                bad += 1
        if bad:
            log.warning("usage spool: %d unreadable lines in %s were skipped", bad, seg.path)
        out.extend([None] * (seg.rows - seg.sent - len(out)))  # lines the file no longer has
        return out

    def confirm(self, seg: Segment, n: int) -> None:
        """The store holds the next `n` rows of `seg`: drop them; a segment with nothing left
        is truncated (the active one) or deleted (a sealed one)."""
        seg.sent += n
        if seg.pending is not None:
            if seg.pending_bytes:  # rows differ in size: an estimate, exact once the list empties
                freed = (
                    seg.pending_bytes
                    if n >= len(seg.pending)
                    else seg.pending_bytes * n // len(seg.pending)
                )
                seg.pending_bytes -= freed
                self.memory_bytes = max(0, self.memory_bytes - freed)
            del seg.pending[:n]
        if seg.unsent:
            return
        try:
            if seg.sealed:
                try:
                    os.unlink(seg.path)
                except FileNotFoundError:
                    pass
                os.close(seg.fd)
                self.segments.remove(seg)
                self._known.discard(seg.path)
            else:
                os.ftruncate(seg.fd, 0)
                seg.rows = seg.sent = seg.synced = 0
                seg.pending = []
            self.bytes -= seg.bytes
            seg.bytes = 0
        except OSError as exc:  # it stays; its rows are sent again later and ignored
            log.warning("usage spool: removing written rows from %s failed: %s", seg.path, exc)

    # -- taking over the segments of processes that are gone -----------------------------------

    def find_orphans(self) -> list[Segment]:
        """Segments in the folder whose owner is gone (their lock is free): locked for this
        process now, not yet taken into the journal (``take``). Run in a thread."""
        found: list[Segment] = []
        try:
            names = sorted(os.listdir(self.folder))
        except OSError as exc:
            log.warning("usage spool: cannot list %s: %s", self.folder, exc)
            return found
        for name in names:
            path = os.path.join(self.folder, name)
            # a segment its maker died before naming (a live maker names it at once)
            leftover = name.startswith("." + PREFIX) and _older_than(path, 60)
            if (
                not (leftover or (name.startswith(PREFIX) and name.endswith(SUFFIX)))
                or path in self._known
            ):
                continue
            try:  # never through a link, never blocking on a FIFO
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                self._refuse(
                    path, "a symbolic link" if os.path.islink(path) else exc.strerror or str(exc)
                )
                continue
            why = _segment_problem(os.fstat(fd))
            if why:
                os.close(fd)
                self._refuse(path, why)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # between listing and locking, another process may have taken it, sent it
                # and deleted it: only the file still under this name counts
                if os.fstat(fd).st_ino != os.lstat(path).st_ino:
                    raise FileNotFoundError(path)
                data = _read_all(fd)  # the file checked above, not whatever has its name now
                rows = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
                if leftover or rows == 0:
                    os.unlink(path)
                    raise FileNotFoundError(path)
            except OSError:  # BlockingIOError: its owner is alive
                os.close(fd)
                continue
            found.append(Segment(path, fd, rows=rows, nbytes=len(data), adopted=True))
        return found

    def _refuse(self, path: str, why: str) -> None:
        if path not in self._refused:
            self._refused.add(path)
            log.warning(
                "usage spool: skipped %s (%s): not a segment this process wrote; its rows are "
                "not charged. Remove it once you have looked at it",
                path,
                why,
            )

    def take(self, found: list[Segment]) -> int:
        """Add segments from ``find_orphans`` ahead of this process's own; returns their rows."""
        for seg in found:
            self._known.add(seg.path)
            self.bytes += seg.bytes
        self.segments[:0] = found
        return sum(seg.rows for seg in found)

    def status(self) -> dict[str, Any]:
        return {
            "rows": self.unsent,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "full": self.full,
        }


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _older_than(path: str, seconds: float) -> bool:
    try:
        return os.stat(path).st_mtime < time.time() - seconds
    except OSError:
        return False
