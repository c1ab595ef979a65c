"""What the panel's context pickers offer: the notebook's frames, SQL connections, the R session."""

from __future__ import annotations

from typing import Any

from rsql_magic.context.frames import find_frames
from rsql_magic.context.rsession import r_session_exists
from rsql_sql.connections import jupysql_current, resolve

__all__ = ["FRAMES", "JUPYSQL", "connection_name", "has_r_session", "sql_connections", "sql_source"]

# the SQL picker's values beside connection variable names
JUPYSQL = "%jupysql"
FRAMES = "%frames"

# connection objects the SQL picker offers, by the module their type comes from
_CONN_MODULES = (
    "sqlite3",
    "duckdb",
    "_duckdb",
    "sqlalchemy",
    "psycopg",
    "psycopg2",
    "sql.connection",
)


def sql_connections(ns: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` for the SQL picker: connection variables, JupySQL's, frames."""
    out: list[tuple[str, str]] = []
    for name, obj in list(ns.items()):
        if name.startswith("_") or isinstance(obj, type):
            continue
        mod = type(obj).__module__ or ""
        if not mod.startswith(_CONN_MODULES):
            continue
        try:
            db = resolve(obj)
        except Exception:  # not a connection after all: not offered
            continue
        out.append((f"{name} ({db.dialect})", name))
    try:
        if jupysql_current() is not None:
            out.append(("JupySQL current connection", JUPYSQL))
    except Exception:  # JupySQL in a state of its own: not offered
        pass
    if find_frames(ns):
        out.append(("DataFrames (DuckDB)", FRAMES))
    return out


def sql_source(value: str, ns: dict[str, Any]) -> tuple[str, Any] | None:
    """The schema collector's ``(label, connection)`` for the picker's ``value`` (None: no
    schema; the frames are described by the frame collector already)."""
    if not value or value == FRAMES:
        return None
    if value == JUPYSQL:
        return ("JupySQL current connection", None)
    return (value, ns[value]) if value in ns else None


def connection_name(value: str) -> str | None:
    """What %%sql_ai's CONN would say for the picker's ``value`` (None: its default)."""
    return {JUPYSQL: None, FRAMES: "frames", "": None}.get(value, value)


def has_r_session(shell: Any) -> bool:
    loaded: set[str] = getattr(getattr(shell, "extension_manager", None), "loaded", set())
    return "rpy2.ipython" in loaded or r_session_exists()
