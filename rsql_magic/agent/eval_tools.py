"""The warehouse tools over one database, for an agent turn with no kernel (``rsql-eval --agent``).

:class:`WarehouseTools` is a :class:`~rsql_magic.agent.loop.ToolBox`: ``search_schema``,
``describe_table`` and ``run_sql`` of :mod:`.warehouse` over the one connection it was given,
so the model names no connection (there is no notebook to choose from). Everything the kernel's
tools hold to holds here, because it is the same code: the guard, the engine rules, the
database's read-only walls and the result bounds (``warehouse.run_sql``), the context policy
given (values withheld, columns refused), and text cut to ``max_chars``. Arguments are the
model's text: checked (JSON object, known keys, strings, a length bound each) before anything
runs, and a bad call is an error result that says what was wrong, never an exception.
"""

from __future__ import annotations

from typing import Any

from rsql_common.tokens import CHARS_PER_TOKEN
from rsql_magic.privacy import ContextPolicy
from rsql_sql import warehouse
from rsql_sql.connections import DB
from rsql_sql.policy import SqlPolicy

from .calls import ToolResult, dispatch, function_specs, sql_result

__all__ = ["TOOLS", "WarehouseTools"]

SQL_ROWS = 20  # rows run_sql returns, as the kernel's run_sql

# name -> (description, {argument: its description}); every argument is a required string
TOOLS: dict[str, tuple[str, dict[str, str]]] = {
    "search_schema": (
        "The tables of the database most relevant to a question, as DDL.",
        {"question": "What you want to find in the database."},
    ),
    "describe_table": (
        "One table's columns, types and keys (names and types only, no values).",
        {"table": "The table's name, as search_schema shows it."},
    ),
    "run_sql": (
        f"Run one read-only SQL query; returns the first {SQL_ROWS} rows and the row count. "
        "Writes are refused.",
        {"sql": "One SELECT statement in the database's dialect."},
    ),
}


class WarehouseTools:
    """``search_schema``, ``describe_table`` and ``run_sql`` over `db` alone.

    `sql_policy`: the walls run_sql's statements meet (allowed functions, PostgreSQL role, the
    result bound); `policy`: the context policy in force (None: nothing withheld, as for a
    user's own database); `time_limit_s`: each query's time bound; `max_chars`: each result's."""

    def __init__(
        self,
        db: DB,
        *,
        sql_policy: SqlPolicy | None = None,
        policy: ContextPolicy | None = None,
        time_limit_s: float = 10.0,
        max_chars: int = 6000,
    ) -> None:
        self.db = db
        self.sql_policy = sql_policy
        self.policy = policy
        self.time_limit_s = max(0.05, float(time_limit_s))
        self.max_chars = max(500, int(max_chars))

    def specs(self) -> list[dict[str, Any]]:
        """The tools as OpenAI function definitions."""
        return function_specs(TOOLS)

    def call(self, name: str, arguments: str | dict[str, Any]) -> ToolResult:
        """Run tool `name` with the model's `arguments` (JSON text or a dict); never raises
        for what the model sent."""
        return dispatch(self, TOOLS, name, arguments, self.max_chars)

    def _search_schema(self, question: str) -> ToolResult:
        text = warehouse.search_schema(
            self.db,
            question,
            policy=self.policy,
            budget_tokens=max(200, self.max_chars // CHARS_PER_TOKEN),
            sql_policy=self.sql_policy,
        )
        tables = sum(1 for ln in text.splitlines() if ln.lstrip().upper().startswith("CREATE "))
        return ToolResult(text, f"{tables} tables ({self.db.dialect or 'SQL'})")

    def _describe_table(self, table: str) -> ToolResult:
        text = warehouse.describe_table(self.db, table, policy=self.policy)
        missing = text.startswith("Table '")
        return ToolResult(text, "no such table" if missing else f"table {table}", missing)

    def _run_sql(self, sql: str) -> ToolResult:
        res = warehouse.run_sql(
            self.db,
            sql,
            sql_policy=self.sql_policy,
            policy=self.policy,
            max_rows=SQL_ROWS,
            timeout_s=self.time_limit_s,
            max_chars=self.max_chars,
        )
        return sql_result(res)
