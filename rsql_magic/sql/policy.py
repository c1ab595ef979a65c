"""What a generated statement may do: the settings both walls (guard and database) read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .fetch import DEFAULT_MAX_RESULT_BYTES
from .functions import normalize_extra

__all__ = ["DEFAULT_MAX_RESULT_BYTES", "SqlPolicy"]


@dataclass(frozen=True)
class SqlPolicy:
    """``allowed_functions``: names added to the per-dialect allowlists (``name`` for every
    dialect, ``dialect:name`` for one); ``postgres_role``: a role without superuser rights that
    PostgreSQL queries run as (``SET LOCAL ROLE``), or None; ``max_result_bytes``: fetching a
    result stops at about this many bytes of rows (0 or None: no byte bound)."""

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
            normalize_extra(allowed_functions),
            (postgres_role or "").strip() or None,
            max_result_bytes if max_result_bytes and max_result_bytes > 0 else None,
        )
