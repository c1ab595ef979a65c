"""The warehouse tools over one database, for an agent turn with no kernel (``rsql-eval --agent``).

:class:`WarehouseTools` is a :class:`~rsql_magic.agent.loop.ToolBox`: ``search_schema``,
``describe_table`` and ``run_sql`` of the catalogue (:data:`rsql_sql.warehouse.CATALOGUE`) over
the one connection it was given, so the model names no connection (there is no notebook to
choose from). Everything the kernel's
tools hold to holds here, because it is the same code: the guard, the database rules, the
database's read-only walls and the result bounds (``warehouse.run_sql``), the context policy
given (values withheld, columns refused), and text cut to ``max_chars``. Arguments are the
model's text: checked (JSON object, known keys, strings, a length bound each) before anything
runs, and a bad call is an error result that says what was wrong, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsql_magic.privacy import ContextPolicy
from rsql_sql.connections import DB
from rsql_sql.policy import SqlPolicy
from rsql_sql.warehouse import CATALOGUE, ToolBounds

from .calls import ToolResult, dispatch, function_specs, warehouse_result, warehouse_table

__all__ = ["TOOLS", "WarehouseTools"]

SQL_ROWS = 20  # rows run_sql returns, as the kernel's run_sql

# the catalogue's tools (rsql_sql.warehouse.CATALOGUE) over one database: no connection argument
TOOLS = warehouse_table()


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
        return dispatch(self.handlers, TOOLS, name, arguments, self.max_chars)

    @property
    def handlers(self) -> dict[str, Callable[..., ToolResult]]:
        """Each tool's function: the catalogue's, over this box's database and bounds."""
        bounds = ToolBounds(
            policy=self.policy,
            sql_policy=self.sql_policy,
            max_rows=SQL_ROWS,
            timeout_s=self.time_limit_s,
            max_chars=self.max_chars,
        )

        def handler(name: str) -> Callable[..., ToolResult]:
            def run(**args: str) -> ToolResult:
                out = CATALOGUE[name].run(self.db, args, bounds)
                return warehouse_result(name, self.db, args, out)

            return run

        return {name: handler(name) for name in CATALOGUE}
