"""What the proxy served, held against what a notebook's marks say (issue 75).

``POST {proxy}course/requests`` with the marks' request ids answers, for each id the caller may
see (an admin: any; an instructor: their group's students), who was served (``user``), for
which ``notebook`` and ``cell``, by which ``model``, when (``time``, ISO UTC), on which ``api``,
and how it ended (``status``); an id it does not know, or one the caller may not see, is
``"unknown"``. A mark an instructor can trust names a request the proxy served to this student,
for this notebook, with the model it names, before the cell was inserted. What is told apart:

- a made-up request id, or one past the course log's retention: unknown;
- another student's request id copied in: another user;
- a request of another notebook: another notebook (compared by the file's name, which is the
  same in a student's folder and a collected copy; where the proxy keeps a keyed hash of the
  path instead of the path, by the hash most of the notebook's requests have);
- a mark edited by hand: a model or time that is not the request's, counts that are not the
  recount of the mark's own fingerprints.

What it cannot tell: a mark that was removed (the cell then simply counts as the student's),
and who typed a cell: the log records requests, not keystrokes.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rsql_common.model_names import same_model

from .marks import Contribution, MarkedCell

__all__ = [
    "CellCheck",
    "Served",
    "Verdict",
    "check_cell",
    "expected_hash",
    "expected_user",
    "read_served",
]

# a cell cannot be inserted before its answer came; clocks differ a little
CLOCK_SKEW_S = 300
# how the usage log names a notebook unless the admin keeps names (notebook_names): a keyed hash
_HASHED = re.compile(r"nb-[0-9a-f]{16}")


@dataclass(frozen=True)
class Served:
    """One request as the proxy's log has it."""

    user: str
    notebook: str | None
    cell: str | None
    model: str | None
    time: str | None
    api: str | None
    status: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "notebook": self.notebook,
            "cell": self.cell,
            "model": self.model,
            "time": self.time,
            "api": self.api,
            "status": self.status,
        }


def _text(value: Any, limit: int = 300) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _served(value: Any) -> Served | None:
    if not isinstance(value, dict) or not _text(value.get("user")):
        return None
    status = value.get("status")
    return Served(
        user=str(value["user"])[:200],
        notebook=_text(value.get("notebook"), 1024),
        cell=_text(value.get("cell"), 80),
        model=_text(value.get("model"), 200),
        time=_text(value.get("time"), 40),
        api=_text(value.get("api"), 40),
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
    )


def read_served(answer: Any, ids: list[str]) -> dict[str, Served | None]:
    """The proxy's answer for `ids`: each id's request, or None (unknown, or not the
    caller's to see). Takes the answer as ``{"requests": {id: {...} | "unknown"}}``, the same
    without the ``requests`` wrapper, or a list of requests each with its ``id``; an id the
    answer does not mention is unknown."""
    body = answer.get("requests", answer) if isinstance(answer, dict) else answer
    found: dict[str, Served | None] = {}
    if isinstance(body, dict):
        for rid in ids:
            found[rid] = _served(body.get(rid))
    elif isinstance(body, list):
        by_id = {str(r.get("id")): r for r in body if isinstance(r, dict)}
        for rid in ids:
            found[rid] = _served(by_id.get(rid))
    return {rid: found.get(rid) for rid in ids}


@dataclass(frozen=True)
class Verdict:
    """One contribution of a mark, checked: what the proxy served for its request id (None:
    unknown), the problems (an instructor should look) and the notes (worth knowing)."""

    contribution: Contribution
    served: Served | None
    problems: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class CellCheck:
    """A marked cell and the verdict on each of its contributions, and on its counts."""

    cell: MarkedCell
    verdicts: tuple[Verdict, ...]
    problems: tuple[str, ...]  # the cell's own (its counts), apart from its requests'
    notes: tuple[str, ...]

    @property
    def all_problems(self) -> list[str]:
        return [*self.problems, *(p for v in self.verdicts for p in v.problems)]


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def _same_model(marked: str | None, served: str | None) -> bool:
    """A provider may answer with a dated name of the model asked (``gpt-4o`` answered as
    ``gpt-4o-2024-08-06``): that is the same model; ``gpt-4o`` is not ``gpt-4o-mini`` (one
    name inside the other passed a mark edited from one to the other)."""
    if not marked or not served:
        return True
    return same_model(marked, served)


def expected_user(checked: dict[str, Served | None], given: str | None) -> str | None:
    """Whose notebook this is: `given` (``--user``), else the user most of its known
    requests were served to (None when none is known)."""
    if given:
        return given
    users = Counter(s.user for s in checked.values() if s is not None)
    return users.most_common(1)[0][0] if users else None


def expected_hash(checked: dict[str, Served | None]) -> str | None:
    """The keyed hash most of the notebook's known requests were served for, where the proxy
    names notebooks so (None: it names them by path, or none is known)."""
    hashes = Counter(
        s.notebook for s in checked.values() if s and s.notebook and _HASHED.fullmatch(s.notebook)
    )
    return hashes.most_common(1)[0][0] if hashes else None


def _other_notebook(served: str, notebook: str | None, hashed: str | None) -> bool:
    if _HASHED.fullmatch(served):
        return hashed is not None and served != hashed
    return bool(notebook) and posixpath.basename(served) != posixpath.basename(notebook or "")


def _verdict(
    c: Contribution,
    served: Served | None,
    user: str | None,
    notebook: str | None,
    hashed: str | None = None,
) -> Verdict:
    problems: list[str] = []
    notes: list[str] = []
    if c.request_id is None:
        notes.append("the mark names no request (a replayed answer, or an older extension)")
        return Verdict(c, None, (), tuple(notes))
    if served is None:
        problems.append(
            "the proxy knows no such request: made up, of a course you cannot read, or past "
            "the log's retention"
        )
        return Verdict(c, None, tuple(problems), ())
    if user is not None and served.user != user:
        problems.append(f"served to another user ({served.user}), not {user}")
    if served.notebook:
        if _other_notebook(served.notebook, notebook, hashed):
            problems.append(f"served for another notebook ({served.notebook})")
    else:
        notes.append("the proxy does not know which notebook the request came from")
    if not _same_model(c.model, served.model):
        problems.append(f"the mark says model {c.model}, the proxy served {served.model}")
    marked, answered = _when(c.time), _when(served.time)
    if marked is not None and answered is not None:
        if (answered - marked).total_seconds() > CLOCK_SKEW_S:
            problems.append(
                f"the mark says the cell was inserted at {c.time}, before the answer "
                f"({served.time})"
            )
    if served.status is not None and not 200 <= served.status < 300:
        problems.append(f"the request failed (status {served.status}): it answered nothing")
    return Verdict(c, served, tuple(problems), tuple(notes))


def check_cell(
    cell: MarkedCell,
    served: dict[str, Served | None],
    *,
    user: str | None,
    notebook: str | None,
    hashed: str | None = None,
) -> CellCheck:
    """`cell`'s mark against what the proxy served: each contribution's request (`user`: the
    student's; `notebook`: its name; `hashed`: its keyed hash, where the proxy keeps those),
    and the counts the mark records against the recount of its fingerprints."""
    verdicts = tuple(
        _verdict(c, served.get(c.request_id) if c.request_id else None, user, notebook, hashed)
        for c in cell.mark.contributions
    )
    problems: list[str] = [f"the mark is malformed: {p}" for p in cell.mark.problems]
    notes: list[str] = []
    recorded = cell.mark.recorded_assistant_lines
    if not cell.counts_agree:
        said = f"{recorded} of {cell.mark.recorded_lines}"
        now = f"{cell.assistant_lines} of {cell.lines}"
        if recorded is not None and recorded < cell.assistant_lines:
            problems.append(
                f"the mark says {said} lines are the assistant's, its own fingerprints find "
                f"{now}: edited by hand"
            )
        else:
            notes.append(
                f"the mark says {said} lines, the recount finds {now} (edited where the "
                "extension does not count, e.g. VS Code)"
            )
    if not cell.mark.contributions:
        problems.append("the mark names no contribution")
    return CellCheck(cell, verdicts, tuple(problems), tuple(notes))
