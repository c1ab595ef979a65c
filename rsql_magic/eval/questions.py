"""Question sets: JSON lines or YAML, each question with its gold SQL or its expected rows.

One question per JSONL line (blank lines and lines starting with ``#`` are skipped)::

    {"id": "q01", "question": "How many flights left JFK?", "gold_sql": "SELECT count(*) ..."}
    {"question": "Which carrier is UA?", "expected": [["United Air Lines Inc."]]}

or, in YAML, a list of the same mappings (or a mapping with a ``questions`` list). Keys:
``question`` (required), exactly one of ``gold_sql`` and ``expected`` (a list of rows, each a
list of values, or of single values for one column), and optionally ``id`` (default: the line
or item number) and ``ordered`` (with ``expected`` only: compare rows in order; a gold query
says so itself with a top-level ``ORDER BY``). Any other key is refused, so a misspelt
``gold-sql`` does not silently become a question without an answer.

The file is read as data from anyone: a regular file only (a FIFO would hang the run), at most
:data:`MAX_BYTES`, every field type-checked; a bad one stops the run naming the line.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsql_magic.errors import EvalInputError

__all__ = ["MAX_BYTES", "Question", "load_questions", "parse_question"]

MAX_BYTES = 20 * 2**20
_KEYS = {"id", "question", "gold_sql", "expected", "ordered"}


@dataclass(frozen=True)
class Question:
    """One question and how to know the right answer: `gold_sql` or `expected` rows."""

    id: str
    question: str
    gold_sql: str | None = None
    expected: tuple[tuple[Any, ...], ...] | None = None
    ordered: bool = False  # with `expected`: compare rows in order


def _read(path: Path) -> str:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise EvalInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalInputError(f"{path}: is a folder, not a questions file") from None
    except OSError as e:
        raise EvalInputError(f"{path}: cannot be read: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise EvalInputError(f"{path}: is a folder, not a questions file")
        if not stat.S_ISREG(info.st_mode):
            raise EvalInputError(f"{path}: not a regular file")
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise EvalInputError(f"{path}: larger than {MAX_BYTES // 2**20} MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise EvalInputError(f"{path}, line {line}: not UTF-8 text") from None


def _row(value: Any, where: str) -> tuple[Any, ...]:
    if isinstance(value, list):
        cells = value
    elif isinstance(value, dict):
        raise EvalInputError(f"{where}: `expected` rows are lists of values, not objects")
    else:
        cells = [value]
    for c in cells:
        if c is not None and not isinstance(c, str | int | float | bool):
            raise EvalInputError(f"{where}: `expected` values are numbers, text, booleans or null")
    return tuple(cells)


def parse_question(obj: Any, where: str, default_id: str) -> Question:
    """One question from a parsed JSON / YAML value; `where` names it in errors."""
    if not isinstance(obj, dict):
        raise EvalInputError(
            f"{where}: expected an object with `question` and `gold_sql` or "
            f"`expected`, got {type(obj).__name__}"
        )
    unknown = sorted(str(k) for k in obj if k not in _KEYS)
    if unknown:
        raise EvalInputError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})"
        )
    text = obj.get("question")
    if not isinstance(text, str) or not text.strip():
        raise EvalInputError(f"{where}: `question` must be non-empty text")
    qid = obj.get("id", default_id)
    if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
        raise EvalInputError(f"{where}: `id` must be text or a number")
    gold, expected = obj.get("gold_sql"), obj.get("expected")
    if (gold is None) == (expected is None):
        raise EvalInputError(f"{where}: give exactly one of `gold_sql` and `expected`")
    ordered = obj.get("ordered", False)
    if not isinstance(ordered, bool):
        raise EvalInputError(f"{where}: `ordered` must be true or false")
    if gold is not None:
        if not isinstance(gold, str) or not gold.strip():
            raise EvalInputError(f"{where}: `gold_sql` must be non-empty text")
        if "ordered" in obj:
            raise EvalInputError(
                f"{where}: `ordered` goes with `expected`; a gold query "
                "orders its rows with ORDER BY"
            )
        return Question(str(qid).strip(), text.strip(), gold_sql=gold.strip())
    if not isinstance(expected, list):
        raise EvalInputError(f"{where}: `expected` must be a list of rows")
    rows = tuple(_row(r, where) for r in expected)
    return Question(str(qid).strip(), text.strip(), expected=rows, ordered=ordered)


def _jsonl(path: Path, text: str) -> list[Question]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise EvalInputError(
                f"{path}, line {n}: not valid JSON ({e.msg}, column {e.colno})"
            ) from None
        out.append(parse_question(obj, f"{path}, line {n}", f"line{n}"))
    return out


def _yaml(path: Path, text: str) -> list[Question]:
    try:
        import yaml
    except ImportError:
        raise EvalInputError(
            f"{path}: reading YAML needs PyYAML (pip install pyyaml), or "
            "write the questions as JSON lines"
        ) from None
    try:
        data = yaml.safe_load(text)  # safe_load: no Python objects from a file of anyone's
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise EvalInputError(
            f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})"
        ) from None
    if isinstance(data, dict) and set(data) == {"questions"}:
        data = data["questions"]
    if not isinstance(data, list):
        raise EvalInputError(f"{path}: expected a list of questions (or `questions:` with one)")
    return [parse_question(obj, f"{path}, item {i}", f"item{i}") for i, obj in enumerate(data, 1)]


def load_questions(path: str | os.PathLike[str]) -> list[Question]:
    """The questions of a ``.jsonl`` / ``.json`` (JSON lines) or ``.yaml`` / ``.yml`` file.

    Raises :class:`EvalInputError` naming the file and line (YAML: the item) of a bad entry.
    """
    p = Path(path)
    text = _read(p)
    questions = _yaml(p, text) if p.suffix.lower() in (".yaml", ".yml") else _jsonl(p, text)
    if not questions:
        raise EvalInputError(f"{p}: no questions in it")
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise EvalInputError(f"{p}: the id {q.id!r} is used twice")
        seen.add(q.id)
    return questions
