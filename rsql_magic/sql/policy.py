"""What a generated statement may do: the settings both walls (guard and database) read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .functions import normalize_extra

__all__ = ["SqlPolicy"]


@dataclass(frozen=True)
class SqlPolicy:
    """``allowed_functions``: names added to the per-dialect allowlists (``name`` for every
    dialect, ``dialect:name`` for one); ``postgres_role``: a role without superuser rights that
    PostgreSQL queries run as (``SET LOCAL ROLE``), or None."""

    allowed_functions: frozenset[str] = field(default_factory=frozenset)
    postgres_role: str | None = None

    @classmethod
    def make(
        cls, allowed_functions: Iterable[str] = (), postgres_role: str | None = None
    ) -> SqlPolicy:
        return cls(normalize_extra(allowed_functions), (postgres_role or "").strip() or None)
