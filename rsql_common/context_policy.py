"""What the collectors may send about a table's or a frame's values: the context policy.

An admin sets it once on the proxy (``context_policy``); the kernel reads it from ``GET me`` and
merges the user's own, stricter one (:mod:`rsql_magic.privacy`); the SQL package's schema code
and warehouse tools apply it (:mod:`rsql_sql`), for the kernel's agent and for the proxy's MCP
endpoint alike. A pure value, so it lives here, apart from both packages.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REDACTED", "ContextPolicy"]

REDACTED = "[redacted]"  # what a redacted column's values become in sample rows


@dataclass(frozen=True)
class ContextPolicy:
    """What the collectors may send about values.

    ``sample_rows``: False sends no sample rows (frames' ``head``, R's ``head``).
    ``value_stats``: False sends nothing computed from the values: no ranges (min/max), no
    distinct counts, no example or top values, no factor / category levels, no true-shares,
    no null counts. Names, types and row counts stay.
    ``redact_columns``: glob patterns (case-insensitive, on the column name): matching columns
    keep their name and type, nothing else (no null count, range, examples, levels, and
    ``[redacted]`` in sample rows).
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
        """Does a redact pattern match this column name (case-insensitive glob)?

        A tuple name (pandas MultiIndex columns) matches when any of its levels or the joined
        name matches.
        """
        if not self.redact_columns:
            return False
        names = [str(c) for c in column] if isinstance(column, tuple) else []
        names.append(".".join(names) if names else str(column))
        for name in names:
            low = name.lower()
            for pat in self.redact_columns:
                if fnmatch.fnmatchcase(low, pat.lower()):
                    return True
        return False

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
