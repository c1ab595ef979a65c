"""The replay file: a JSON-lines file of recorded answers (:class:`Entry`), appended to by
any number of kernels at once (:class:`ReplayStore`, under a file lock) and read as hostile
data: entries are type-checked on read, and the file is only ever opened as a regular file.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from ..client import ChatResult
from ..errors import UsageError
from .matching import FORMAT_VERSION

try:  # POSIX; elsewhere writes are still append-only, just not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # no fcntl on Windows: no lock there

__all__ = ["DEFAULT_FILE", "Entry", "ReplayStore", "resolve_path"]

DEFAULT_FILE = ".rsql-replay.jsonl"
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def resolve_path(configured: str | None = None) -> Path:
    """``configured``, else ``$RSQL_REPLAY_FILE``, else ``.rsql-replay.jsonl`` in the cwd.

    nbconvert and papermill start the kernel in the notebook's folder but do not tell it the
    notebook's name, so the default is one file per folder; fingerprints keep notebooks apart.
    """
    raw = (configured or "").strip() or os.environ.get("RSQL_REPLAY_FILE", "").strip()
    return Path(os.path.expanduser(raw)) if raw else Path.cwd() / DEFAULT_FILE


@dataclass
class Entry:
    """One recorded answer. Never holds the proxy URL, a token or a key."""

    fp: str
    recorded: str  # ISO 8601, UTC
    text: str
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    kind: str = ""  # "ask" (%%ask) or "sql" (%%sql_ai)
    cell: str = ""
    question: str = ""
    model_requested: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    upstream: str = ""  # the upstream that answered (its name on the proxy), when it said
    fallback: str = ""  # why the proxy's fallback model answered instead (X-RSQL-Fallback)
    failed: str = ""  # why this answer failed (its SQL did not pass): never replayed as one
    v: int = FORMAT_VERSION

    def to_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True) + "\n"

    @classmethod
    def from_obj(cls, obj: Any) -> Entry | None:
        """An entry from a parsed line, or None when any field has the wrong shape."""
        if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
            return None
        strs = (
            "fp",
            "recorded",
            "text",
            "model",
            "kind",
            "cell",
            "question",
            "model_requested",
            "upstream",
            "fallback",
            "failed",
        )
        if not all(isinstance(obj.get(k, ""), str) for k in strs):
            return None
        if not re.fullmatch(r"[0-9a-f]{32}", obj.get("fp", "")) or not _ISO.match(
            obj.get("recorded", "")
        ):
            return None
        usage = obj.get("usage") or {}
        parts = obj.get("parts") or {}
        cost = obj.get("cost_usd")
        if not isinstance(usage, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in usage.items()
        ):
            return None
        if not isinstance(parts, dict) or not all(isinstance(v, str) for v in parts.values()):
            return None
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))):
            return None
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj})

    def result(self) -> ChatResult:
        return ChatResult(
            text=self.text,
            model=self.model,
            usage=dict(self.usage),
            cost_usd=self.cost_usd,
            replayed_at=self.recorded,
            upstream=self.upstream or None,
        )

    def when(self) -> _dt.datetime:
        t = _dt.datetime.fromisoformat(self.recorded.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)  # hand-written: UTC


@contextmanager
def _locked(f: IO[Any], exclusive: bool) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class ReplayStore:
    """A JSON-lines file of :class:`Entry`; appends only, the last entry per fingerprint wins.

    Writers take an exclusive ``flock`` on the file itself and write each entry with one
    ``O_APPEND`` write, so two kernels recording at once never interleave lines; pruning
    rewrites the file in place under the same lock (never a rename: an appender waiting on
    the lock would otherwise write into the replaced file).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _open(self, flags: int) -> int:
        """A descriptor of the file itself: never through a symbolic link, never a FIFO or a
        device (opened without blocking, then checked), created owner-only."""
        how = flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, how, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP or (exc.errno != errno.ENOENT and self.path.is_symlink()):
                raise self._refused("is a symbolic link") from None
            if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened to write
                raise self._refused("is not a regular file") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._refused("is not a regular file")
        os.set_blocking(fd, True)
        return fd

    def _refused(self, what: str) -> UsageError:
        return UsageError(
            f"the replay file {self.path} {what}: it is only read and written as a regular file "
            "(a planted link would have answers written into the file it points at). Remove it, "
            "or set RSQLMagic.replay_file or RSQL_REPLAY_FILE to another path."
        )

    def entries(self) -> list[Entry]:
        """Every valid entry, in file order (lines that are not entries are skipped)."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return []
        with open(fd, encoding="utf-8", errors="replace") as f, _locked(f, exclusive=False):
            return list(_parse(f))

    def latest(self) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for e in self.entries():
            out[e.fp] = e  # later lines win
        return out

    def get(self, fp: str) -> Entry | None:
        return self.latest().get(fp)

    def append(self, entry: Entry) -> None:
        data = entry.to_line().encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "ab", buffering=0) as f, _locked(f, exclusive=True):
            f.write(data)

    def prune(
        self,
        *,
        older_than_days: float | None = None,
        keep_last: int | None = None,
        now: _dt.datetime | None = None,
        dry_run: bool = False,
    ) -> tuple[int, int]:
        """Keep the last entry per fingerprint, drop those older than ``older_than_days``,
        then keep only the ``keep_last`` most recently recorded. Returns (kept, removed)."""
        try:
            fd = self._open(os.O_RDWR)
        except FileNotFoundError:
            return 0, 0
        now = now or _dt.datetime.now(_dt.timezone.utc)
        with open(fd, "r+", encoding="utf-8", errors="replace") as f, _locked(f, exclusive=True):
            lines = f.read().splitlines()
            all_entries = list(_parse(lines))
            latest: dict[str, Entry] = {}
            for e in all_entries:
                latest.pop(e.fp, None)  # re-insert: order by the winning line
                latest[e.fp] = e
            kept = list(latest.values())
            if older_than_days is not None:
                cutoff = now - _dt.timedelta(days=older_than_days)
                kept = [e for e in kept if e.when() >= cutoff]
            if keep_last is not None:
                kept = sorted(kept, key=lambda e: e.when())[-keep_last:] if keep_last > 0 else []
                order = {id(e): i for i, e in enumerate(latest.values())}
                kept.sort(key=lambda e: order[id(e)])
            removed = len(lines) - len(kept)
            if not dry_run:
                f.seek(0)
                f.truncate()
                f.write("".join(e.to_line() for e in kept))
                f.flush()
            return len(kept), removed


def _parse(lines: Iterable[str]) -> Iterator[Entry]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            e = Entry.from_obj(json.loads(line))
        except (ValueError, TypeError):
            continue
        if e is not None:
            yield e
