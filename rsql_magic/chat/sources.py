"""What the panel's context pickers offer: the notebook's frames, SQL connections, the R session."""

from __future__ import annotations

from typing import Any

from rsql_magic.context.frames import find_frames
from rsql_magic.context.named import connection_variables
from rsql_magic.context.rsession import r_session_exists
from rsql_sql.connections import jupysql_current

__all__ = ["FRAMES", "JUPYSQL", "connection_name", "has_r_session", "sql_connections", "sql_source"]

# the SQL picker's values beside connection variable names
JUPYSQL = "%jupysql"
FRAMES = "%frames"


def sql_connections(ns: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` for the SQL picker: connection variables, JupySQL's, frames."""
    out = [(f"{name} ({dialect})", name) for name, dialect in connection_variables(ns)]
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
