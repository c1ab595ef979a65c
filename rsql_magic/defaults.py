"""The kernel's defaults, declared once: the settings classes (:mod:`rsql_magic.session.settings`)
take their default values from here, and so do the functions those settings feed, so a default
changed here changes for ``%config``, the magics, the chat panel and a direct call alike."""

from __future__ import annotations

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
]

# %%ask's context (RSQLMagic.*)
CONTEXT_TOKENS = 3000  # all context together, counted as the proxy counts
MAX_FRAMES = 3  # frames described when none are named: the most recently defined
HEAD_ROWS = 5  # sample rows shown per frame
STATS_SAMPLE = 10_000  # longer frames get column statistics from a random sample of this size
PROXY_TIMEOUT_S = 120.0  # one proxy call

# %%sql_ai (SqlAIMagics.*)
SQL_MAX_RETRIES = 3  # asks again after a failed check, the error fed back
SQL_MAX_ROWS = 100_000  # rows fetched into the DataFrame
SQL_TIMEOUT_S = 60.0  # one statement
SCHEMA_CHARS = 6000  # the schema DDL sent
