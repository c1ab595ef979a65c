"""What the collectors may send about a table's or a frame's values: the context policy.

An admin sets it once on the proxy (``context_policy``); the kernel reads it from ``GET me`` and
merges the user's own, stricter one (:mod:`rsql_magic.privacy`); the SQL package's schema code
and warehouse tools apply it (:mod:`rsql_sql`), for the kernel's agent and for the proxy's MCP
endpoint alike. A pure value, so it lives here, apart from both packages.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REDACTED", "ContextPolicy", "column_names"]

REDACTED = "[redacted]"  # what a redacted column's values become in sample rows


@dataclass(frozen=True)
class ContextPolicy:
    """What the collectors may send about values.

    ``sample_rows``: False sends no sample rows (frames' ``head``, R's ``head``).
    ``value_stats``: False sends nothing computed from the values: no ranges (min/max), no
    distinct counts, no example or top values, no factor / category levels, no true-shares,
    no null counts. Names, types and row counts stay.
    ``redact_columns``: glob patterns (case-insensitive, on the column's own name: see
    :meth:`redacts`): matching columns keep their name and type, nothing else (no null count,
    range, examples, levels, and ``[redacted]`` in sample rows and in frames queried by SQL).
    """

    sample_rows: bool = True
    value_stats: bool = True
    redact_columns: tuple[str, ...] = ()
    source: str = ""  # who set it: "admin", "user", "admin + user", "unreadable"
    # the admin's share of a merged policy: what --show-context attributes to the admin
    admin: ContextPolicy | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: Any, source: str = "") -> ContextPolicy:
        """Lenient parsing of a policy dict; a malformed field is read as the strict value."""
        if not isinstance(d, dict):
            return cls(source=source)
        pats = d.get("redact_columns") or ()
        if isinstance(pats, str):
            pats = (pats,)
        if not isinstance(pats, (list, tuple)):
            pats = ("*",)  # cannot tell which columns: withhold all of them
        return cls(
            sample_rows=d.get("sample_rows", True) is True,
            value_stats=d.get("value_stats", True) is True,
            redact_columns=tuple(str(p) for p in pats if str(p).strip()),
            source=source,
        )

    @classmethod
    def strict(cls, source: str = "") -> ContextPolicy:
        return cls(sample_rows=False, value_stats=False, redact_columns=("*",), source=source)

    @property
    def is_open(self) -> bool:
        """True when nothing is withheld."""
        return self.sample_rows and self.value_stats and not self.redact_columns

    def merge(self, other: ContextPolicy | None) -> ContextPolicy:
        """The stricter of both, field by field."""
        if other is None:
            return self
        pats = tuple(dict.fromkeys((*self.redact_columns, *other.redact_columns)))
        src = " + ".join(s for s in (self.source, other.source) if s)
        return ContextPolicy(
            self.sample_rows and other.sample_rows,
            self.value_stats and other.value_stats,
            pats,
            src,
        )

    def redacts(self, column: Any) -> bool:
        """Does a redact pattern match this column? The one rule every collector and the
        frames' SQL apply, on a column's own label (case-insensitive glob).

        Every name the label goes by is tried (:func:`column_names`): a tuple (a pandas
        MultiIndex column) by each of its levels, its joined name and its text; anything else
        (an int, a date) by its text; each with case, Unicode compatibility forms and
        surrounding or repeated whitespace folded, as a reader (and DuckDB's case-insensitive
        names) would take ``" Salary "`` for ``salary``.
        """
        if not self.redact_columns:
            return False
        matcher = _matcher(tuple(self.redact_columns))
        return any(matcher(name) for name in column_names(column))

    def withheld_positions(self, frame: Any) -> list[int]:
        """The positions of a pandas or polars frame's columns whose values the policy withholds.

        Decided on each column's own label (every level, every duplicate: by position, never
        by a name another library gave it) and, for a struct column, its fields' names too (a
        field is read by name in SQL, and its values are in the column's). Duck-typed: neither
        library is imported."""
        if not self.redact_columns:
            return []
        labels = list(frame.columns)
        dtypes = _dtypes_of(frame, len(labels))
        return [
            i
            for i, label in enumerate(labels)
            if self.redacts(label) or any(self.redacts(f) for f in _field_names(dtypes[i]))
        ]

    def regexes(self) -> list[str]:
        """The redact patterns as anchored regexes (for R, which matches them itself)."""
        return [fnmatch.translate(p.lower()) for p in self.redact_columns]

    def describe(self) -> str:
        if self.is_open:
            return "no restrictions"
        parts = []
        if not self.sample_rows:
            parts.append("no sample rows")
        if not self.value_stats:
            parts.append("no value statistics")
        if self.redact_columns:
            parts.append("values withheld for columns matching " + ", ".join(self.redact_columns))
        return "; ".join(parts)


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """One compiled regex for a policy's patterns, folded as names are (a schema's thousands of
    columns are each checked against them)."""
    # each pattern lowered as well as folded, as names are: folding never matches less
    forms = dict.fromkeys(f for p in patterns for f in (p.lower(), _fold(p)))
    return re.compile("|".join(fnmatch.translate(f) for f in forms)).match


def _fold(name: str) -> str:
    # compatibility forms (fullwidth letters, ligatures), case and whitespace runs folded
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _levels(label: tuple[Any, ...]) -> list[str]:
    out: list[str] = []
    for level in label:
        out.extend(_levels(level) if isinstance(level, tuple) else [str(level)])
    return out


def column_names(column: Any) -> list[str]:
    """Every name a column label goes by, as :meth:`ContextPolicy.redacts` compares them
    (lowered, and folded): a tuple's levels (nested ones flattened), their dotted join and the
    tuple's text (how DuckDB and ``str`` name it); anything else by its text."""
    if not isinstance(column, tuple):
        return list(_forms(str(column)))
    levels = _levels(column)
    return list(
        dict.fromkeys(f for n in (*levels, ".".join(levels), str(column)) for f in _forms(n))
    )


@functools.lru_cache(maxsize=4096)
def _forms(name: str) -> tuple[str, ...]:
    # lowered (what a pattern matched before folding: never less) and folded
    low, folded = name.lower(), _fold(name)
    return (low,) if low == folded else (low, folded)


_MAX_FIELD_DEPTH = 8  # nested structs deeper than this are not searched (and nobody writes them)


def _dtypes_of(frame: Any, n: int) -> list[Any]:
    """A frame's column dtypes by position (pandas ``dtypes``, polars ``dtypes``)."""
    try:
        dtypes = list(frame.dtypes)
    except Exception:
        return [None] * n
    return dtypes if len(dtypes) == n else [None] * n


def _field_names(dtype: Any, depth: int = 0) -> list[str]:
    """The field names of a struct dtype, nested ones and those inside lists included: a
    polars ``Struct`` (``fields``), an Arrow struct (a pandas ``ArrowDtype``'s
    ``pyarrow_dtype``). Anything else has none."""
    if dtype is None or depth > _MAX_FIELD_DEPTH:
        return []
    arrow = getattr(dtype, "pyarrow_dtype", None)
    if arrow is not None:
        dtype = arrow
    out: list[str] = []
    fields = getattr(dtype, "fields", None)
    if isinstance(fields, (list, tuple)):  # polars Struct (and pyarrow's, where it has them)
        for f in fields:
            out.append(str(getattr(f, "name", f)))
            inner_type = getattr(f, "dtype", None) or getattr(f, "type", None)
            out += _field_names(inner_type, depth + 1)
    elif type(dtype).__module__.startswith("pyarrow") and hasattr(dtype, "num_fields"):
        for i in range(int(dtype.num_fields)):
            f = dtype.field(i)
            out.append(str(f.name))
            out += _field_names(f.type, depth + 1)
    inner = getattr(dtype, "inner", None) or getattr(dtype, "value_type", None)
    if inner is not None and inner is not dtype:  # a list or array of structs
        out += _field_names(inner, depth + 1)
    return out
