"""Run a checked statement and turn the result into a DataFrame; word database errors."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pandas as pd

from .connections import DB

__all__ = ["QueryResult", "database_error_message", "function_names_in_error", "run_query"]


@dataclass
class QueryResult:
    frame: pd.DataFrame
    more: bool  # the result had more rows than were fetched
    elapsed_s: float


def run_query(
    db: DB, sql: str, *, max_rows: int, timeout_s: float | None, read_only: bool = True
) -> QueryResult:
    """Run `sql` on `db`, fetch at most `max_rows` rows, cancel after `timeout_s`."""
    t0 = time.perf_counter()
    fetched = db.query(sql, max_rows=max_rows, timeout_s=timeout_s, read_only=read_only)
    frame = pd.DataFrame.from_records(fetched.rows, columns=fetched.columns)
    return QueryResult(frame, fetched.more, time.perf_counter() - t0)


def _root(e: BaseException) -> BaseException:
    # SQLAlchemy wraps the driver's exception; its own text appends the SQL and a URL.
    return getattr(e, "orig", None) or e


def database_error_message(e: BaseException) -> str:
    """The driver's own message (PostgreSQL's includes ``LINE 1: ...`` and a caret)."""
    root = _root(e)
    msg = str(root).strip()
    msg = re.sub(r"\n?\[SQL: .*", "", msg, flags=re.DOTALL).strip()
    return f"{type(root).__name__}: {msg}"


_FUNC_ERRORS = (
    re.compile(r"function ([A-Za-z_][\w.]*)\(", re.IGNORECASE),  # PostgreSQL
    re.compile(r"no such function: ([A-Za-z_]\w*)", re.IGNORECASE),  # SQLite
    re.compile(r"Function with name \"?([A-Za-z_]\w*)\"? does not exist", re.IGNORECASE),  # DuckDB
    re.compile(r"'([A-Za-z_]\w*)' is not a recognized built-in function", re.IGNORECASE),  # T-SQL
    re.compile(r"FUNCTION [\w.]*?\.?([A-Za-z_]\w*) does not exist", re.IGNORECASE),  # MySQL
)


def function_names_in_error(e: BaseException | str) -> set[str]:
    """Upper-case names of functions a database error says do not exist."""
    text = e if isinstance(e, str) else str(_root(e))
    out: set[str] = set()
    for rx in _FUNC_ERRORS:
        out.update(m.group(1).split(".")[-1].upper() for m in rx.finditer(text))
    return out
