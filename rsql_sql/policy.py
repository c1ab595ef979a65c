"""What a generated statement may do: the settings both walls (guard and database) read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .fetch import DEFAULT_MAX_RESULT_BYTES

__all__ = ["DEFAULT_MAX_RESULT_BYTES", "SqlPolicy"]


@dataclass(frozen=True)
class SqlPolicy:
    """``allowed_functions``: names added to the engines' allowlists (``name`` for every
    engine, ``dialect:name`` for one; lower-case, stripped); ``postgres_role``: a role without
    superuser rights that PostgreSQL queries run as (``SET LOCAL ROLE``), or None;
    ``max_result_bytes``: fetching a result stops at about this many bytes of rows (0 or None:
    no byte bound)."""

    allowed_functions: frozenset[str] = field(default_factory=frozenset)
    postgres_role: str | None = None
    max_result_bytes: int | None = DEFAULT_MAX_RESULT_BYTES

    @classmethod
    def make(
        cls,
        allowed_functions: Iterable[str] = (),
        postgres_role: str | None = None,
        max_result_bytes: int | None = DEFAULT_MAX_RESULT_BYTES,
    ) -> SqlPolicy:
        return cls(
            frozenset(n.strip().lower() for n in allowed_functions if n and n.strip()),
            (postgres_role or "").strip() or None,
            max_result_bytes if max_result_bytes and max_result_bytes > 0 else None,
        )
