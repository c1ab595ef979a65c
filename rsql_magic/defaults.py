"""The kernel's defaults, declared once: the settings classes (:mod:`rsql_magic.session.config`)
take their default values from here, and so do the functions those settings feed, so a default
changed here changes for ``%config``, the magics, the chat panel and a direct call alike.
``%%sql_ai``'s own are declared in the SQL package (:mod:`rsql_sql.defaults`), which cannot read
the kernel's, and only named here."""

from __future__ import annotations

from rsql_sql.defaults import (
    SCHEMA_CHARS,
    SQL_MAX_RETRIES,
    SQL_MAX_ROWS,
    SQL_TIMEOUT_S,
    VALUES_WAIT_S,
)

__all__ = [
    "CONTEXT_TOKENS",
    "HEAD_ROWS",
    "MAX_FRAMES",
    "PROXY_TIMEOUT_S",
    "SCHEMA_CHARS",
    "SQL_MAX_RETRIES",
    "SQL_MAX_ROWS",
    "SQL_TIMEOUT_S",
    "STATS_SAMPLE",
    "VALUES_WAIT_S",
]

# %%ask's context (RSQLMagic.*)
CONTEXT_TOKENS = 3000  # all context together, counted as the proxy counts
MAX_FRAMES = 3  # frames described when none are named: the most recently defined
HEAD_ROWS = 5  # sample rows shown per frame
STATS_SAMPLE = 10_000  # longer frames get column statistics from a random sample of this size
PROXY_TIMEOUT_S = 120.0  # one proxy call
