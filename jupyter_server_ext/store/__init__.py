"""Usage-log stores: SQLite (default, WAL) and PostgreSQL.

Both implement ``jupyter_server_ext.engine.accounting.usage.UsageStore``; the host hands one to the engine.
"""

from __future__ import annotations

import logging

from ..engine.accounting.usage import UsageStore

# JupyterHub's client (the hub login, imported by every proxy) imports alembic, whose plugin
# registry says "setup plugin ..." seven times at INFO before the proxy's first line. The usage
# log has no alembic migrations; one of its own that runs says so in one line (sqlite.py).
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def open_store(database_url: str) -> UsageStore:
    """A store for ``c.RSQLProxy.database_url``: ``sqlite:///path``, a path, or ``postgresql://``."""
    if database_url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(database_url)
    from .sqlite import SQLiteStore

    path = (
        database_url.removeprefix("sqlite:///")
        if database_url.startswith("sqlite:")
        else database_url
    )
    return SQLiteStore(path)
