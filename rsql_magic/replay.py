"""Replay store: record each answer once, replay it on every rerun (offline, no quota).

A notebook run by nbconvert / papermill in a scheduled job or CI, or handed out to students,
should show the same answers every time and rerun without a proxy or keys. Each chat request
is reduced to a *fingerprint* (model, messages with their context, parameters; see
:func:`request_view` for what is ignored) and looked up in a JSON-lines file next to the
notebook. Modes (``RSQLMagic.replay`` / env ``RSQL_REPLAY``):

- ``off``: never look, never record (default in interactive sessions);
- ``auto``: replay a stored answer, else ask the proxy and record (default in batch runs);
- ``only``: never call the proxy; a missing entry fails, saying what differs from the
  closest recorded entry of the same question;
- ``refresh``: always ask and record (the new entry wins on read).

An entry says which model and upstream answered. In ``auto`` a recorded answer is replayed
only while the proxy would still answer with that model (the model asked for, or the user's
default from ``GET me``): after a configuration change it is asked again, with a warning, and
the new answer recorded. An answer the proxy's fallback gave is never replayed in ``auto``. A
``%%sql_ai`` attempt whose SQL failed is marked failed and never replayed as an answer (``only``
says so instead); when a later attempt worked, its answer is recorded for the cell's first
request, so a rerun goes straight to the SQL that worked.

The file is data handed around with notebooks, so it is treated as hostile: entries are
type-checked on read and replayed answers are rendered through the same sanitizer as live
ones; replayed SQL goes through %%sql_ai's guard and read-only walls like any answer. It holds
neither the proxy URL nor tokens: only hashes of the request, its question and the answer.
It is created readable by its owner only (answers may quote the user's data), and never opened
through a symbolic link or as anything but a regular file: a link planted in a folder handed
out would have answers appended to the file it points at (``~/.bashrc``), a FIFO would hang the
kernel. ``rsql-replay`` prints recorded fields with terminal controls shown, not obeyed.

``rsql-replay`` (``python -m rsql_magic.replay_cli``) lists, shows and prunes entries.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from .client import ChatResult
from .errors import ReplayMissing, RSQLWarning, UsageError

try:  # POSIX; elsewhere writes are still append-only, just not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # no fcntl on Windows: no lock there

__all__ = [
    "DEFAULT_FILE",
    "MODES",
    "Entry",
    "Replay",
    "ReplayMissing",
    "ReplayStore",
    "fingerprint",
    "request_parts",
    "request_view",
    "resolve_mode",
    "resolve_path",
]

MODES = ("off", "auto", "only", "refresh")
DEFAULT_FILE = ".rsql-replay.jsonl"
_FORMAT = 1  # bump when the fingerprint changes meaning: old entries then simply never match

# Text that varies between runs of the same notebook without changing the question.
_VOLATILE: list[tuple[re.Pattern[str], str]] = [
    # memory addresses in reprs: <Foo object at 0x7f...>
    (re.compile(r"\b0x[0-9a-fA-F]{6,16}\b"), "0x?"),
    # ipykernel's per-process cell files in tracebacks: /tmp/ipykernel_123/456.py
    (re.compile(r"[^\s\"'(]*ipykernel_\d+[/\\]\d+\.py"), "<cell>"),
    (re.compile(r"<ipython-input-\d+-[0-9a-f]+>"), "<cell>"),
    # execution counts move when a cell is added above: In [7], Cell In[7], Out[7]
    (re.compile(r"\b(In|Out) ?\[\d+\]"), r"\1 [n]"),
]
_HEADING = re.compile(r"^(#{1,6} |create (table|view) |question:$)", re.I)
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


# -- settings --------------------------------------------------------------------------------


def resolve_mode(configured: str | None, batch: bool) -> str:
    """The mode in effect: ``configured`` (a trait), else ``$RSQL_REPLAY``, else by run kind."""
    for value, where in (
        (configured, "RSQLMagic.replay"),
        (os.environ.get("RSQL_REPLAY"), "RSQL_REPLAY"),
    ):
        v = (value or "").strip().lower()
        if v:
            if v not in MODES:
                raise UsageError(f"{where}={value!r}: expected one of {', '.join(MODES)}")
            return v
    return "auto" if batch else "off"


def resolve_path(configured: str | None = None) -> Path:
    """``configured``, else ``$RSQL_REPLAY_FILE``, else ``.rsql-replay.jsonl`` in the cwd.

    nbconvert and papermill start the kernel in the notebook's folder but do not tell it the
    notebook's name, so the default is one file per folder; fingerprints keep notebooks apart.
    """
    raw = (configured or "").strip() or os.environ.get("RSQL_REPLAY_FILE", "").strip()
    return Path(os.path.expanduser(raw)) if raw else Path.cwd() / DEFAULT_FILE


# -- fingerprint -----------------------------------------------------------------------------


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def _content(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def request_view(body: dict[str, Any]) -> dict[str, Any]:
    """What counts in a fingerprint: the model asked for (empty: the proxy's default), each
    message's role and normalized text, temperature and max_tokens.

    Not counted: streaming, cache bypass, the proxy and the user, the time of asking, memory
    addresses, ipykernel's cell file names and execution counts in tracebacks, line endings
    and trailing blanks, and key order. Everything the model is shown counts: a new column, a
    changed dtype, different sample rows or value ranges, another error, another question.
    """
    return {
        "model": str(body.get("model") or ""),
        "messages": [
            {"role": str(m.get("role", "")), "content": _normalize(_content(m.get("content")))}
            for m in body.get("messages") or []
            if isinstance(m, dict)
        ],
        "params": {
            k: body.get(k) for k in ("temperature", "max_tokens") if body.get(k) is not None
        },
    }


def _hash(obj: Any, n: int = 32) -> str:
    raw = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:n]


def fingerprint(body: dict[str, Any]) -> str:
    """A stable hash of :func:`request_view` of a chat request body."""
    return _hash([_FORMAT, request_view(body)])


def _sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """Split a message at Markdown headings, ``CREATE TABLE`` lines and ``Question:``."""
    key = "text"
    lines: list[str] = []
    for line in text.split("\n"):
        if _HEADING.match(line):
            if lines:
                yield key, lines
            key, lines = _section_key(line), [line]
        else:
            lines.append(line)
    if lines:
        yield key, lines


def _section_key(line: str) -> str:
    line = line.lstrip("# ").strip()
    if line.lower().startswith("create "):
        return " ".join(line.split("(")[0].split()[:3])  # CREATE TABLE name
    if line.lower() == "question:":
        return "question"
    return re.sub(r"\d[\d,.]*", "N", line)[:100]  # the same frame with more rows: same key


def _frame_parts(lines: list[str]) -> dict[str, list[str]]:
    """A frame section's columns (names and types), column stats and sample rows."""
    names, stats, rows = [], [], []
    in_rows = False
    for line in lines[1:]:
        if re.match(r"^first \d+ rows:", line):
            in_rows = True
        elif in_rows:
            rows.append(line)
        elif line.startswith("- "):
            names.append(line.split(",")[0])
            stats.append(line)
    return {"columns": names, "column stats": stats, "sample rows": rows}


def request_parts(body: dict[str, Any]) -> dict[str, str]:
    """Short hashes of each part of a request, to say what changed when nothing matches."""
    view = request_view(body)
    out = {"model": _hash(view["model"], 10), "parameters": _hash(view["params"], 10)}
    for i, m in enumerate(view["messages"], 1):
        for key, lines in _sections(m["content"]):
            label = f"{m['role']} message {i}: {key}"
            out[label] = _hash(lines, 10)
            if re.search(r"\b(DataFrame|data\.frame|tibble|LazyFrame)\b", key):
                for sub, sub_lines in _frame_parts(lines).items():
                    out[f"{label} / {sub}"] = _hash(sub_lines, 10)
    return out


def describe_difference(want: dict[str, str], have: dict[str, str]) -> list[str]:
    """What differs between two :func:`request_parts`, most specific first."""
    out: list[str] = []
    for key, h in want.items():
        if key not in have:
            out.append(f"new: {key}")
        elif have[key] != h:
            subs = [k for k in want if k.startswith(key + " / ") and have.get(k) != want[k]]
            if not subs:
                out.append(f"changed: {key}")
    out += [f"gone: {k}" for k in have if k not in want]
    return out


# -- the file --------------------------------------------------------------------------------


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
    v: int = _FORMAT

    def to_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True) + "\n"

    @classmethod
    def from_obj(cls, obj: Any) -> Entry | None:
        """An entry from a parsed line, or None when any field has the wrong shape."""
        if not isinstance(obj, dict) or obj.get("v") != _FORMAT:
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


# -- one magic call's replay -----------------------------------------------------------------


def _now() -> str:
    return (
        _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


_URL_CREDENTIALS = re.compile(r"(\w+://)[^/\s:@]+:[^/\s@]+@")


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and len(s) >= 6:
            text = text.replace(s, "[redacted]")
    return _URL_CREDENTIALS.sub(r"\1[redacted]@", text)


@dataclass
class Replay:
    """What one cell's chat calls do with the store. Passed to ``ProxyClient.chat``."""

    mode: str
    store: ReplayStore
    kind: str = "ask"
    cell: str = ""
    question: str = ""
    secrets: tuple[str, ...] = ()  # the proxy token: never written, even if echoed back
    # fingerprints this kernel recorded itself: "auto" replays answers from earlier runs only,
    # so a question asked twice in one run still goes to the proxy (and its cache) both times
    recorded_here: set[str] | None = None

    # fingerprints this cell's calls looked up or recorded, in order (see ``settle``)
    asked: list[str] = field(default_factory=list)

    def lookup(self, body: dict[str, Any], model: str | None = None) -> ChatResult | None:
        """The recorded answer (``auto`` / ``only``), None to ask; ``only`` raises if none.

        ``model``: what the proxy would answer with now (the model asked for, or the user's
        default from ``GET me``); None when unknown (no proxy: the recorded answer stands)."""
        if self.mode not in ("auto", "only"):
            return None
        fp = fingerprint(body)
        self.asked.append(fp)
        if self.mode == "auto" and self.recorded_here is not None and fp in self.recorded_here:
            return None
        entry = self.store.get(fp)
        if entry is not None and entry.failed:
            if self.mode == "only":
                raise ReplayMissing(
                    f"replay only (RSQL_REPLAY=only): the answer recorded for "
                    f"{self.cell or 'this cell'} ({entry.recorded}) failed ({entry.failed}), "
                    f"and a failed answer is never replayed." + _HOW_TO_RECORD
                )
            return None  # auto: ask again
        if entry is not None and self.mode == "auto" and self._outdated(entry, model):
            return None
        if entry is not None:
            return entry.result()
        if self.mode == "only":
            raise ReplayMissing(self.explain_missing(body))
        return None

    def _outdated(self, entry: Entry, model: str | None) -> bool:
        """Whether the proxy would no longer answer as recorded (``auto``): it says so."""
        why = ""
        if entry.fallback:
            why = f"it was the proxy's fallback answer ({entry.fallback})"
        elif model and entry.model and not _same_model(entry.model, model):
            why = f"it came from {entry.model!r}, and the proxy now answers with {model!r}"
        if why:
            warnings.warn(
                f"replay: the answer recorded for {self.cell or 'this cell'} on "
                f"{entry.recorded} is not replayed: {why}. Asked again; the new answer is "
                f"recorded in {self.store.path}",
                RSQLWarning,
                stacklevel=4,
            )
        return bool(why)

    def record(self, body: dict[str, Any], res: ChatResult) -> None:
        if self.mode not in ("auto", "refresh"):
            return
        fp = fingerprint(body)
        if not self.asked or self.asked[-1] != fp:
            self.asked.append(fp)
        if self.recorded_here is not None:
            if self.mode == "auto" and fp in self.recorded_here:
                return  # recorded once in this run: the first answer stays the recorded one
            self.recorded_here.add(fp)
        secrets = self.secrets
        self.store.append(
            Entry(
                fp=fp,
                recorded=_now(),
                text=_scrub(res.text, secrets),
                model=_scrub(res.model or "", secrets),
                usage={
                    k: v
                    for k, v in (res.usage or {}).items()
                    if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                },
                cost_usd=res.cost_usd,
                kind=self.kind,
                cell=_scrub(self.cell, secrets)[:200],
                question=_scrub(self.question, secrets)[:500],
                model_requested=str(body.get("model") or ""),
                parts=request_parts(body),
                upstream=_scrub(res.upstream or "", secrets)[:100],
                fallback=_scrub(res.fallback or "", secrets)[:100],
            )
        )

    def settle(self, worked: bool, why: str = "") -> None:
        """After a %%sql_ai cell: every attempt but the one that worked is marked failed, and
        the answer that worked is recorded for the cell's first request (same model), so a
        rerun replays it at once; when none worked, every attempt is marked failed (`why`)."""
        if self.mode not in ("auto", "refresh") or not self.asked:
            return
        latest = self.store.latest()
        asked = list(dict.fromkeys(self.asked))
        good = latest.get(self.asked[-1]) if worked else None
        first = latest.get(asked[0])
        failed = asked if good is None else [fp for fp in asked if fp != good.fp]
        if good is not None and first is not None and first.fp != good.fp:
            if _same_model(good.model, first.model):
                self.store.append(
                    replace(
                        first,
                        recorded=_now(),
                        text=good.text,
                        model=good.model,
                        usage=dict(good.usage),
                        cost_usd=good.cost_usd,
                        upstream=good.upstream,
                        fallback=good.fallback,
                        failed="",
                    )
                )
                failed.remove(first.fp)
        for fp in failed:
            e = latest.get(fp)
            if e is not None and not e.failed:
                reason = short_text(why, 200) if why else "a later attempt was needed"
                self.store.append(replace(e, recorded=_now(), failed=reason or "failed"))
        self.asked.clear()

    def explain_missing(self, body: dict[str, Any]) -> str:
        where = self.cell or "this cell"
        head = (
            f"replay only (RSQL_REPLAY=only): no recorded answer for {where}"
            + (f", question {short_text(self.question)!r}" if self.question else "")
            + f" in {self.store.path}."
        )
        entries = list(self.store.latest().values())
        same = [e for e in entries if e.kind == self.kind and e.question == self.question[:500]]
        if not same:
            tail = (
                f" Nothing is recorded for this question ({len(entries)} entries in the file)."
                if entries
                else " The file has no entries."
            )
            return head + tail + _HOW_TO_RECORD
        want = request_parts(body)
        best = max(same, key=lambda e: sum(want.get(k) == h for k, h in e.parts.items()))
        diff = describe_difference(want, best.parts) or ["the request (no single part differs)"]
        if best.model_requested != str(body.get("model") or ""):
            diff.insert(
                0,
                f"model: recorded {best.model_requested or '(proxy default)'!r}, "
                f"now {body.get('model') or '(proxy default)'!r}",
            )
            diff = [d for d in diff if d != "changed: model"]
        msgs = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        if len(msgs) > 2 and msgs[-1].get("role") == "user":
            # a follow-up (a %%sql_ai retry): what was fed back says why it was asked
            first = _content(msgs[-1].get("content")).strip().split("\n")[0]
            diff.append(f"this request is a retry, after: {short_text(first, 120)}")
        return (
            head + f" The closest entry (recorded {best.recorded}, {best.cell or 'cell ?'}) "
            "differs in:\n  - " + "\n  - ".join(diff) + _HOW_TO_RECORD
        )


_HOW_TO_RECORD = (
    "\nRecord it where the proxy is reachable with RSQL_REPLAY=auto (or refresh), then rerun."
)


# a snapshot's date suffix: gpt-4o-mini-2024-07-18, claude-sonnet-4-5-20250929
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


def _same_model(recorded: str, now: str) -> bool:
    """The same model: equal names, or one a dated snapshot of the other. Only a date counts:
    gpt-4o-mini is not gpt-4o, nor claude-sonnet-4-5 claude-sonnet-4."""
    return _SNAPSHOT.sub("", recorded) == _SNAPSHOT.sub("", now)


def short_text(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
