"""Usage-log stores: SQLite (default, WAL) and PostgreSQL."""

from __future__ import annotations

from typing import Any


def open_store(database_url: str) -> Any:
    """A store for ``c.RSQLProxy.database_url``: ``sqlite:///path``, a path, or ``postgresql://``."""
    if database_url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(database_url)
    from .sqlite import SQLiteStore

    path = database_url.removeprefix("sqlite:///") if database_url.startswith("sqlite:") else database_url
    return SQLiteStore(path)
