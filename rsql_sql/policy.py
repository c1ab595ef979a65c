"""What a generated statement may do: the settings both walls (guard and database) read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .fetch import DEFAULT_MAX_RESULT_BYTES

__all__ = ["DEFAULT_MAX_RESULT_BYTES", "KERNEL_ROLE_SETTING", "SqlPolicy"]

# how a kernel's user sets the PostgreSQL role (the default of SqlPolicy.role_setting)
KERNEL_ROLE_SETTING = "%config SqlAIMagics.postgres_role = '<role>'"


@dataclass(frozen=True)
class SqlPolicy:
    """``allowed_functions``: names added to the databases' allowlists (``name`` for every
    database, ``dialect:name`` for one; lower-case, stripped); ``postgres_role``: a role without
    superuser rights that PostgreSQL queries run as (``SET LOCAL ROLE``), or None;
    ``max_result_bytes``: fetching a result stops at about this many bytes of rows (0 or None:
    no byte bound); ``role_setting``: how a user of this front end sets ``postgres_role``, as
    the warning about a superuser connection tells them (a magic's setting in a kernel, an
    option on a command line)."""

    allowed_functions: frozenset[str] = field(default_factory=frozenset)
    postgres_role: str | None = None
    max_result_bytes: int | None = DEFAULT_MAX_RESULT_BYTES
    role_setting: str = KERNEL_ROLE_SETTING

    @classmethod
    def make(
        cls,
        allowed_functions: Iterable[str] = (),
        postgres_role: str | None = None,
        max_result_bytes: int | None = DEFAULT_MAX_RESULT_BYTES,
        *,
        role_setting: str = KERNEL_ROLE_SETTING,
    ) -> SqlPolicy:
        return cls(
            frozenset(n.strip().lower() for n in allowed_functions if n and n.strip()),
            (postgres_role or "").strip() or None,
            max_result_bytes if max_result_bytes and max_result_bytes > 0 else None,
            role_setting,
        )
