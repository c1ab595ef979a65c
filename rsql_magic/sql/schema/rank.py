"""Which tables to show first: pinned ones, then by relevance to the question."""

from __future__ import annotations

import re

from .model import Schema, Table

__all__ = ["rank_tables"]

_WORD = re.compile(r"[A-Za-z][a-z0-9]*|[0-9]+")


def _stem(w: str) -> str:
    w = w.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and w[-3] in "sxz":
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def _words(text: str) -> set[str]:
    out = set()
    for chunk in re.split(r"[^A-Za-z0-9]+", text):
        if not chunk:
            continue
        out.add(_stem(chunk))
        for w in _WORD.findall(chunk):  # snake_case and camelCase parts
            out.add(_stem(w))
    return out


def rank_tables(
    schema: Schema, question: str | None, pinned: list[str] | None = None
) -> list[Table]:
    """Tables in the order they should be shown: pinned, then by relevance to the question
    (name hits weigh most, then column-name hits, then being joined by FK to a hit)."""
    pinned_l = [p.lower() for p in (pinned or [])]

    def is_pinned(t: Table) -> int:
        full = f"{t.db}.{t.name}".lower()
        for i, p in enumerate(pinned_l):
            if p in (t.name.lower(), full):
                return i
        return -1

    q = _words(question or "")
    qtext = (question or "").lower()
    score: dict[int, float] = {}
    by_key = {(t.db, t.name): i for i, t in enumerate(schema.tables)}
    for i, t in enumerate(schema.tables):
        s = 0.0
        if q:
            if t.name.lower() in qtext or _stem(t.name) in q:
                s += 10
            tw = _words(t.name)
            s += 3 * len(tw & q)
            hits = sum(1 for c in t.columns if _words(c.name) & q)
            s += min(hits, 3)
        score[i] = s
    # Tables joined (by FK, either way) to a relevant table are likely needed for the join.
    bonus: dict[int, float] = {}
    for i, t in enumerate(schema.tables):
        for fk in t.foreign_keys:
            j = by_key.get((fk.ref_db or t.db, fk.ref_table))
            if j is None:
                continue
            if score[i] >= 3:
                bonus[j] = max(bonus.get(j, 0), score[i] * 0.3)
            if score[j] >= 3:
                bonus[i] = max(bonus.get(i, 0), score[j] * 0.3)
    for j, b in bonus.items():
        score[j] += b

    def key(i: int) -> tuple:
        p = is_pinned(schema.tables[i])
        return (0 if p >= 0 else 1, p, -score[i], i)

    return [schema.tables[i] for i in sorted(range(len(schema.tables)), key=key)]
