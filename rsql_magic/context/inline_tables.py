"""The SQL tables of the editor's inline context (:mod:`.inline`): names only, bounded.

Two sources, listed by :func:`collect_tables` (the namespace's databases first):

- **Local databases in the namespace**: a ``sqlite3`` or DuckDB connection, a SQLAlchemy engine
  or connection of either (file or memory), recognised from modules already imported. Their
  catalog is read by ``capture_schema`` (bounded, read-only) at most one new database per
  request, within half the time left, and remembered by the connection's identity for
  ``CAPTURE_TTL_S``. A network database (PostgreSQL, a DuckDB with one attached) is never read
  from the editor. ``capture_schema``'s module (sqlglot) is imported in a background thread the
  first time one is seen, so that request lists none.
- **Schemas ``%%sql_ai`` captured**, handed over by :func:`remember_schema`.

Standard library only at import, as :mod:`.inline` (imported on the editor's keystroke).
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from typing import Any

from .inline_budget import MAX_COLUMNS, MAX_NAME, CollectionBudget, json_length

__all__ = ["CAPTURE_TTL_S", "MAX_CONNECTIONS", "MAX_TABLES", "collect_tables", "remember_schema"]

MAX_TABLES = 100  # tables in one answer
MAX_CONNECTIONS = 16  # remembered schemas per shell
CAPTURE_TTL_S = 60.0  # a local database's captured names serve this long, then are read again


# -- schemas captured elsewhere, handed over by name ----------------------------------------

# shell -> {connection label: [(table name, [column names])]}, most recently captured last
_SCHEMAS: weakref.WeakKeyDictionary[Any, dict[str, list[tuple[str, list[str]]]]] = (
    weakref.WeakKeyDictionary()
)


def remember_schema(shell: Any, connection: str, schema: Any) -> None:
    """Keep the table and column names of a schema `shell`'s session has captured, for
    :func:`.inline.frontend_context`.

    `connection`: how the user names it (a variable, ``"frames"``, a URL); `schema`: a
    :class:`rsql_sql.schema.Schema` (read as any object with ``tables``, each with
    ``name``, ``db`` and ``columns`` of ``name``). Only names are kept, bounded (100 tables of
    200 columns, 16 connections per shell): no values, nothing the schema object holds.
    A table outside the schema's ``default_db`` is named ``db.table``.
    """
    tables = _schema_names(schema)
    try:
        known = _SCHEMAS.setdefault(shell, {})
    except TypeError:  # a shell that cannot be weakly referenced: nothing is kept
        return
    label = str(connection)[:MAX_NAME]
    known.pop(label, None)
    known[label] = tables
    while len(known) > MAX_CONNECTIONS:
        known.pop(next(iter(known)))


def _schema_names(schema: Any) -> list[tuple[str, list[str]]]:
    """A captured schema's table and column names, bounded; nothing else of it."""
    default_db = str(getattr(schema, "default_db", "") or "")
    tables: list[tuple[str, list[str]]] = []
    for t in list(getattr(schema, "tables", ()) or ())[:MAX_TABLES]:
        try:
            name = str(t.name)
            db = str(getattr(t, "db", "") or "")
            if db and default_db and db != default_db:
                name = f"{db}.{name}"
            cols = [str(c.name)[:MAX_NAME] for c in list(t.columns)[:MAX_COLUMNS]]
        except Exception:  # a table we cannot read is left out
            continue
        tables.append((name[:MAX_NAME], cols))
    return tables


# -- local databases in the namespace, captured once and remembered -------------------------

# shell -> {id of a connection: (the connection, expiry, its tables)}. The entry holds the
# object itself (sqlite3's cannot be weakly referenced), so its id is never another's while the
# entry lives; each request drops the entries of connections gone from the namespace. A failed
# capture is remembered too, so it is not tried again on every keystroke.
_CAUGHT: weakref.WeakKeyDictionary[Any, dict[int, tuple[Any, float, Any]]] = (
    weakref.WeakKeyDictionary()
)
_BACKENDS = "rsql_sql.schema.backends"  # capture_schema's module: sqlglot and all
_LOADING: list[threading.Thread] = []  # the one background import of it, once per process
# (a capture may use this share of the time left; the database kinds read from the editor:
# local files or memory only, never a network database on a keystroke)
_CAPTURE_TIME_SHARE = 0.5
# SQLAlchemy dialects whose engines may read locally, told before capture_schema's module is
# imported (the database itself then decides: Database.reads_locally)
_LOCAL_DIALECTS = ("sqlite", "duckdb")


class _NotYet(Exception):
    """capture_schema's module is being imported in the background."""


def _local_database(obj: Any) -> bool:
    """Whether `obj` is a SQLite or DuckDB connection (a SQLAlchemy engine or connection of
    one): recognised as ``connections.resolve`` does, reading only modules already imported."""
    kind = type(obj)
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(obj, sqlite3.Connection):
        return True
    mod = getattr(kind, "__module__", "") or ""
    if mod.startswith(("duckdb", "_duckdb")):
        return kind.__name__ == "DuckDBPyConnection"
    engine = sys.modules.get("sqlalchemy.engine") if mod.startswith("sqlalchemy") else None
    if engine is not None and isinstance(obj, (engine.Engine, engine.Connection)):
        return getattr(getattr(obj, "dialect", None), "name", "") in _LOCAL_DIALECTS
    return False


def _load_backends() -> tuple[Any | None, bool]:
    """(capture_schema's module or None, whether it may still come). Its import takes a few
    hundred ms, far past a keystroke's budget: it is begun in a thread, once, and a later
    request uses it."""
    if _LOADING and _LOADING[0].is_alive():  # meanwhile sys.modules may hold it half made
        return None, True
    mod = sys.modules.get(_BACKENDS)
    if mod is not None or _LOADING:  # imported (by the user's %%sql_ai too), or failed
        return mod, False

    def load() -> None:
        try:
            __import__(_BACKENDS)
        except Exception:  # no capture then; frames and variables still go
            pass

    _LOADING.append(threading.Thread(target=load, name="rsql-inline-import", daemon=True))
    _LOADING[0].start()
    return None, True


def _capture(obj: Any, timeout_s: float) -> list[tuple[str, list[str]]]:
    """The table and column names of a local database, read by capture_schema (bounded in time
    and size, read-only); a DuckDB with a network database attached is not read."""
    backends, coming = _load_backends()
    if backends is None:
        if coming:
            raise _NotYet
        return []
    db = backends.as_db(obj)
    if not db.database.reads_locally(db, timeout_s):
        return []
    return _schema_names(backends.capture_schema(db, timeout_s=timeout_s))


def _connection_tables(
    shell: Any, others: list[tuple[str, Any]], b: CollectionBudget
) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """(variable name, tables) of the local databases in the namespace: remembered ones, and
    at most one new capture per request, within the time left."""
    try:
        caught = _CAUGHT.setdefault(shell, {})
    except TypeError:
        return []
    now = time.monotonic()
    out: list[tuple[str, list[tuple[str, list[str]]]]] = []
    tried, present = False, set()
    for name, obj in others:
        if b.out_of_time():
            return out  # the entries not looked at stay
        try:
            if not _local_database(obj):
                continue
        except Exception:
            continue
        present.add(id(obj))
        entry = caught.get(id(obj))
        if entry is None or entry[0] is not obj or entry[1] < now:
            left = (b.deadline - time.perf_counter()) * _CAPTURE_TIME_SHARE
            if tried or left <= 0.001:
                b.truncated = True
                continue
            tried = True
            try:
                tables = _capture(obj, left)
            except _NotYet:  # capture_schema is still loading: asked on a later keystroke
                b.truncated = True
                continue
            except Exception:  # closed, locked, too slow: remembered as empty
                tables = []
            caught.pop(id(obj), None)
            caught[id(obj)] = entry = (obj, now + CAPTURE_TTL_S, tables)
        if entry[2]:
            out.append((name[:MAX_NAME], entry[2]))
    for gone in set(caught) - present:  # no longer in the namespace: let it be freed
        del caught[gone]
    while len(caught) > MAX_CONNECTIONS:
        caught.pop(next(iter(caught)))
    return out


def collect_tables(
    shell: Any, others: list[tuple[str, Any]], b: CollectionBudget
) -> list[dict[str, Any]]:
    """The answer's ``tables``: ``{"connection", "name", "columns"}`` of the local databases
    among `others` (the namespace's variables that are not frames), then of the schemas
    :func:`remember_schema` kept for `shell`; within `b`'s time and its section's size, at most
    ``MAX_TABLES``."""
    try:
        known = _SCHEMAS.get(shell)
    except TypeError:
        known = None
    out: list[dict[str, Any]] = []
    found = [
        *_connection_tables(shell, others, b),  # the databases the namespace holds now
        *reversed(list((known or {}).items())),  # then %%sql_ai's, the latest capture first
    ]
    for label, tables in found:
        for name, cols in tables:
            if len(out) >= MAX_TABLES:
                b.truncated = True
                return out
            if b.out_of_time():
                return out
            size = json_length(label) + json_length(name) + 50 + sum(json_length(c) for c in cols)
            if not b.take(size):
                return out
            out.append({"connection": label, "name": name, "columns": list(cols)})
    return out
