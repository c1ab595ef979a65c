"""The SQL package's errors, all in one tree under the roots both user-side packages share
(:mod:`rsql_common.errors`); :mod:`rsql_magic.errors` re-exports every one, so a notebook reads
them where it reads the kernel's.

::

    RSQLError
    ├── SqlError            %%sql_ai's SQL failed at a stage, pointing at a Position
    │   ├── SqlCheckError   a generated statement failed a check; the model is told why
    │   │   ├── Refused     the read-only guard refused it: nothing ran
    │   │   └── SqlTooLarge past a bound of what the checks take (size, nesting, depth, parts)
    │   └── SqlAIError      no acceptable SQL within the retries (the magic's failure)
    ├── QueryTimeout        a statement ran past its time bound and was cancelled
    └── BadConnection       a database URL the MCP servers cannot open read-only

    RSQLWarning (a UserWarning)
    └── SuperuserWarning    generated SQL runs on PostgreSQL as a superuser

What an error carries lives here too: :class:`Position` (where it points, unpacked once, in
:class:`SqlError`), and the records of %%sql_ai's tries (:class:`Attempt`, :class:`Escalation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rsql_common.errors import RSQLError, RSQLWarning
from rsql_common.stages import CHECK_STAGES, STAGES, CheckStage, Stage, check_stage

__all__ = [
    "Attempt",
    "BadConnection",
    "Escalation",
    "Position",
    "QueryTimeout",
    "Refused",
    "SqlAIError",
    "SqlCheckError",
    "SqlError",
    "SqlTooLarge",
    "SuperuserWarning",
]


# -- %%sql_ai ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where an error points in the SQL text that was checked, from sqlglot's token ``meta``:
    1-based ``line``, ``column`` as sqlglot counts it (the token's last character, 1-based), and
    ``start`` / ``end``, 0-based offsets of the token's first and last character."""

    line: int
    column: int
    start: int
    end: int


@dataclass
class Attempt:
    """One model answer and what became of it."""

    answer: str
    sql: str
    stage: Stage | Literal["ok"]  # "ok", or the stage where it failed
    error: str | None = None
    transpiled_from: str | None = None
    position: Position | None = None  # where the error points in `sql`, when known


@dataclass
class Escalation:
    """A model of a chain whose SQL failed after its retries, so the next one was asked."""

    model: str
    stage: Stage
    error: str


class SqlError(RSQLError):
    """%%sql_ai's SQL failed: ``message`` says why, ``stage`` where (one of ``allowed``).

    ``line``, ``column``, ``start``, ``end``: where in ``sql`` the error points (see
    :class:`Position`), None when unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: Stage,
        sql: str | None,
        position: Position | None,
        allowed: frozenset[str] = STAGES,
    ) -> None:
        check_stage(stage, allowed)
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.sql = sql
        self.position = position
        self.line = position.line if position else None
        self.column = position.column if position else None
        self.start = position.start if position else None
        self.end = position.end if position else None


class SqlCheckError(SqlError):
    """A generated statement failed a check; ``message`` is what the model is told.

    ``stage``: one of :data:`~rsql_common.stages.CheckStage`.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: CheckStage,
        sql: str | None = None,
        position: Position | None = None,
    ) -> None:
        super().__init__(message, stage=stage, sql=sql, position=position, allowed=CHECK_STAGES)


class Refused(SqlCheckError):
    """The read-only guard refused the statement: nothing ran."""

    def __init__(
        self, message: str, *, sql: str | None = None, position: Position | None = None
    ) -> None:
        super().__init__(message, stage="refused", sql=sql, position=position)


class SqlTooLarge(SqlCheckError):
    """A statement past one of the bounds every check takes it within (stage "parse"): nothing
    was checked and nothing ran. ``bound``: the bound's name in :mod:`rsql_sql.defaults`
    (``SQL_MAX_CHARS``, ``SQL_MAX_NESTING``, ``SQL_MAX_DEPTH``, ``SQL_MAX_NODES``); ``limit``:
    its value; ``found``: what the statement has (or, for its stars, would have)."""

    def __init__(
        self,
        message: str,
        *,
        bound: str,
        limit: int,
        found: int,
        sql: str | None = None,
        position: Position | None = None,
    ) -> None:
        super().__init__(message, stage="parse", sql=sql, position=position)
        self.bound = bound
        self.limit = limit
        self.found = found


class SqlAIError(SqlError):
    """No acceptable SQL within the retries, or it was refused: nothing (more) ran.

    ``stage``: one of :data:`~rsql_common.stages.Stage`; ``sql``: the last SQL tried;
    ``attempts``: every try; ``escalations``: the chain's models that failed before.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: list[Attempt],
        sql: str,
        stage: Stage,
        position: Position | None = None,
    ) -> None:
        super().__init__(message, stage=stage, sql=sql, position=position)
        self.attempts = attempts
        self.escalations: list[Escalation] = []  # the chain's models that failed before (run_chain)

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a Python traceback: the user's error is the SQL's.
        lines = [f"SqlAIError: {self.message.splitlines()[0]}"]
        lines += self.message.splitlines()[1:]
        if self.sql:
            lines += ["", "Last SQL:", *("    " + x for x in self.sql.splitlines())]
        return lines


class QueryTimeout(RSQLError):
    """The statement ran past its time bound and was cancelled."""


class SuperuserWarning(RSQLWarning):
    """Generated SQL runs on PostgreSQL as a superuser, with no ``postgres_role`` set."""


# -- rsql-mcp ------------------------------------------------------------------------------


class BadConnection(RSQLError, ValueError):
    """An ``rsql-mcp --db`` argument that cannot be used; the message names the problem."""
