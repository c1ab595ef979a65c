"""How a question's words meet column and table names that do not spell them alike.

A word and a name meet when one extends the other ("repub", "republican"), when they share a
long start ("religious", ``pf_religion``), as an adjective and its noun ("snowy",
``weather_snow``), as an abbreviation ("cust", "mgr"), as the starts of two adjacent words
("zero tolerance", ``zerotol``), or by initials and compounds in the best tables' columns
(:func:`spelled_columns`). :mod:`.rank` weighs what each kind says; the look-ups over the
warehouse's words are cached on the index, per word.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from .index import SchemaIndex
from .words import acronyms

T = TypeVar("T")

__all__ = [
    "column_abbreviation_hits",
    "column_prefix_hits",
    "column_stem_hits",
    "compound_hits",
    "prefix_hits",
    "spelled_columns",
]


CACHE_WORDS = 20000  # words of many questions remembered per look-up; then it starts again


def _remember(cache: dict[str, T], w: str, hit: T) -> T:
    if len(cache) > CACHE_WORDS:
        cache.clear()
    cache[w] = hit
    return hit


def _columns_where(
    idx: SchemaIndex, cache: dict[str, dict[int, set[str]]], w: str, match: Callable[[str], bool]
) -> dict[int, set[str]]:
    """Per table, the columns with a word `match` takes among those of `w`'s first letter
    (each relation here needs it), remembered in `cache` per question word."""
    hit = cache.get(w)
    if hit is None:
        hit = {}
        for cw in _same_start(idx, w):
            if cw != w and match(cw):
                for i, cols in idx.col_post[cw].items():
                    hit.setdefault(i, set()).update(cols)
        _remember(cache, w, hit)
    return hit


def prefix_hits(idx: SchemaIndex, w: str) -> set[int]:
    """Tables with a name word that extends `w` or that `w` extends ("repub", "republican")."""
    hit = idx.prefix_cache.get(w)
    if hit is None:
        hit = set()
        for nw, tabs in idx.name_vocab.items():
            if nw != w and (nw.startswith(w) or (len(nw) >= 4 and w.startswith(nw))):
                hit |= tabs
        _remember(idx.prefix_cache, w, hit)
    return hit


def column_stem_hits(idx: SchemaIndex, w: str) -> dict[int, set[str]]:
    """Columns with a word sharing a long start with `w` (see :func:`_related`: "diabetic"
    for ``Diabetes``, "religious" for ``pf_religion``)."""
    return _columns_where(
        idx, idx.column_stem_cache, w, lambda cw: len(cw) >= 7 and _related(cw, w)
    )


def compound_hits(idx: SchemaIndex, question: str) -> dict[int, set[str]]:
    """Columns named by the starts of two words the question has side by side ("zero
    tolerance" -> ``zerotol``, "seat belt" -> ``seatbelt``): looked up by their first three
    letters (:attr:`SchemaIndex.compact_heads`), so a question costs a few look-ups."""
    if idx.compact_heads is None:
        heads: dict[str, list[tuple[int, str, str]]] = {}
        for i, info in enumerate(idx.infos):
            for cname in info.columns:
                compact = "".join(ch for ch in cname.lower() if ch.isalnum())
                if 6 <= len(compact) <= 12 and compact.isalpha():
                    heads.setdefault(compact[:3], []).append((i, cname, compact))
        idx.compact_heads = heads
    seq = [t.lower() for t in re.findall(r"[A-Za-z]+", question)]
    pairs = [(a, b) for a, b in zip(seq, seq[1:], strict=False) if len(a) >= 3 and len(b) >= 3]
    hit: dict[int, set[str]] = {}
    for a, b in pairs:
        for i, cname, compact in idx.compact_heads.get(a[:3], ()):
            if _compound(compact, [(a, b)]):
                hit.setdefault(i, set()).add(cname)
    return hit


def _same_start(idx: SchemaIndex, w: str) -> list[str]:
    """The column words that start with `w`'s letter: every relation below needs it, and a
    warehouse has tens of thousands of column words (looked at once per new question word)."""
    if idx.col_by_first is None:
        by_first: dict[str, list[str]] = {}
        for cw in idx.col_post:
            if cw:
                by_first.setdefault(cw[0], []).append(cw)
        idx.col_by_first = by_first
    return idx.col_by_first.get(w[:1], [])


def column_prefix_hits(idx: SchemaIndex, w: str) -> dict[int, set[str]]:
    """Columns with a word that extends `w` or that `w` extends, both at least 5 letters
    ("unemploy" for "unemployment"): longer than for names, columns are many; and the noun of
    an adjective in -y ("snowy" for ``weather_snow``)."""
    return _columns_where(
        idx,
        idx.column_prefix_cache,
        w,
        lambda cw: (len(cw) >= 5 and (cw.startswith(w) or w.startswith(cw))) or w == cw + "y",
    )


def _related(cw: str, w: str) -> bool:
    """A column word and a question word of one stem that the stemmer and prefixes do not
    join: an adjective in -y ("snowy" for ``weather_snow``), or a long shared start
    ("religious" for ``pf_religion``). They pick columns of wide tables; they do not rank:
    a shared start meets by chance across a warehouse ("history", "historical")."""
    if len(cw) == 4 and w == cw + "y":
        return True
    if len(cw) >= 7 and len(w) >= 7:
        k = 0
        for a, b in zip(cw, w, strict=False):
            if a != b:
                break
            k += 1
        return k >= max(6, min(len(cw), len(w)) - 2)
    return False


def _compound(compact: str, pairs: list[tuple[str, str]]) -> bool:
    """A column name made of the starts of two words the question has side by side
    ("vacdays" for "vacation days"), each at least 3 letters."""
    for a, b in pairs:
        if compact[:3] != a[:3]:
            continue
        for k in range(3, min(len(a), len(compact) - 3) + 1):
            rest = compact[k:]
            if compact[:k] == a[:k] and len(rest) >= 3 and b.startswith(rest):
                return True
    return False


def _is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(ch in it for ch in short)


def column_abbreviation_hits(idx: SchemaIndex, w: str) -> dict[int, set[str]]:
    """Columns with a word that abbreviates `w` and is not in ``ABBREVIATIONS``: a prefix of
    at least 4 letters ("cust", "descr" for customer, description) or a consonant skeleton
    of 3 to 5 letters ("mgr", "whs" for manager, warehouse); or of its stem (:func:`_related`).
    Used to pick the columns of wide tables, not to rank: short words are many and some are
    English."""
    if not (len(w) >= 5 and w.isalpha()):
        return {}
    return _columns_where(
        idx, idx.column_abbreviation_cache, w, lambda cw: _related(cw, w) or _abbreviates(cw, w)
    )


def _abbreviates(cw: str, w: str) -> bool:
    """`cw` (3 to 5 letters, `w`'s first) is `w`'s start of 4 or more, or its consonants."""
    if not (3 <= len(cw) <= 5 and len(w) >= len(cw) + 2):
        return False
    skeleton = not any(ch in "aeiou" for ch in cw[1:]) and _is_subsequence(cw, w)
    return (len(cw) >= 4 and w.startswith(cw)) or skeleton


_RAW_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")
SPELLED_TABLES = 30  # the best tables whose columns are read for acronyms and compounds


def spelled_columns(
    idx: SchemaIndex, score: list[float], matched: dict[int, set[str]], question: str
) -> None:
    """Columns of the best tables that the question names in a way words do not meet: by
    initials ("economic freedom" -> ``ef_score``, "pocket depth" -> ``BL.PD.avg``), as the
    initials of the column ("ERA" -> ``earned_run_average``) or inside a compound
    ("college" in ``percollege``). They pick the columns of wide tables; they do not rank:
    short initials meet by chance across a warehouse, but rarely within a table that already
    matches."""
    acr = {a for a in acronyms(question) if len(a) >= 2}
    tokens = {t.lower() for t in re.findall(r"[A-Za-z]+", question)}
    long_tokens = {t for t in tokens if len(t) >= 5}
    seq = [t.lower() for t in re.findall(r"[A-Za-z]+", question)]
    pairs = [(a, b) for a, b in zip(seq, seq[1:], strict=False) if len(a) >= 3 and len(b) >= 3]
    best = sorted((i for i in range(len(score)) if score[i] > 0), key=lambda i: -score[i])
    for i in best[:SPELLED_TABLES]:
        for cname in idx.infos[i].columns:
            parts = [p.lower() for p in _RAW_PART.findall(cname)]
            if not parts:
                continue
            compact = "".join(parts)
            if (
                any(2 <= len(p) <= 4 and p in acr for p in parts)
                or (len(parts) >= 3 and "".join(p[0] for p in parts) in tokens)
                or any(t in compact and t != compact for t in long_tokens)
                or (6 <= len(compact) <= 12 and _compound(compact, pairs))
            ):
                matched[i].add(cname)
