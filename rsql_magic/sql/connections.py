"""One small adapter over the connection kinds %%sql_ai and %%ask accept.

Accepted: ``sqlite3.Connection``, a DuckDB connection, a SQLAlchemy ``Engine`` or ``Connection``,
a SQLAlchemy URL string, JupySQL's connection objects, a psycopg connection, and a mapping of
pandas DataFrames (queried in-process through DuckDB under their variable names).

Every query runs with a time bound where the driver allows one (PostgreSQL
``statement_timeout``, SQLite's progress handler, DuckDB ``interrupt()`` from a timer) and fetches
at most ``max_rows`` rows and ``max_bytes`` bytes, chunk by chunk (:mod:`.fetch`; PostgreSQL
through a server-side cursor), so neither schema capture nor a generated query can hang a kernel
or fill its memory. SQLite also caps the length of any value it builds at the byte bound.

Generated SQL (``query(..., policy=SqlPolicy(...))``) also meets the database's own walls
(:mod:`rsql_magic.sql.walls`), so a mistake of the guard is still harmless:

- PostgreSQL: a READ ONLY transaction (a savepoint made read-only inside the user's open
  transaction), rolled back afterwards, with ``statement_timeout``, ``SET LOCAL ROLE`` to
  ``policy.postgres_role`` when given (a warning, once, when running as a superuser without it),
  ``standard_conforming_strings`` pinned on, and one statement sent (see :mod:`.fetch`).
- SQLite: ``PRAGMA query_only`` plus an authorizer that allows only reads and allowlisted
  functions: no ATTACH / DETACH (which ``VACUUM INTO`` uses too), no PRAGMA, no writes.
- DuckDB: DuckDB's own parser (``json_serialize_sql``) must see exactly one SELECT whose
  functions and table functions are allowlisted and whose table names are not file paths; it
  runs in a READ ONLY transaction, rolled back. The DataFrames connection is created with
  external access disabled and its configuration locked.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from rsql_magic.errors import QueryTimeout

from .dialects import sqlglot_dialect
from .fetch import Fetched, fetch_bounded, in_transaction, postgres_fetch
from .functions import database_function_names
from .policy import SqlPolicy
from .walls import duckdb_parser_check, pin_string_syntax, postgres_walls, sqlite_authorizer

__all__ = [
    "DB",
    "DuckDB",
    "Fetched",
    "FramesDB",
    "PostgresDBAPI",
    "SQLAlchemyDB",
    "SQLiteDB",
    "is_frame",
    "jupysql_current",
    "resolve",
]

_ENGINES: dict[str, Any] = {}  # URL -> Engine, so a URL named in many cells shares one pool


class DB:
    """A connection we can run bounded queries on. Subclasses per driver family."""

    kind: str = "dbapi"
    dialect: str = ""
    label: str = ""

    def query(
        self,
        sql: str,
        *,
        max_rows: int | None = None,
        timeout_s: float | None = None,
        read_only: bool = True,
        policy: SqlPolicy | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        """Run `sql`. With a `policy` (generated SQL) and `read_only`, the database's own
        read-only walls apply as well; without one (our catalog queries) only read-only.
        `max_bytes`: stop fetching at about this many bytes of rows (``Fetched.capped_bytes``)."""
        raise NotImplementedError

    def rows(self, sql: str, timeout_s: float | None = 10.0) -> list[tuple[Any, ...]]:
        """All rows of a (catalog) query; used by schema capture."""
        return self.query(sql, timeout_s=timeout_s).rows


def _deadline(timeout_s: float | None) -> float | None:
    return time.monotonic() + timeout_s if timeout_s else None


@contextlib.contextmanager
def _sqlite_length_cap(conn: sqlite3.Connection, max_bytes: int | None) -> Iterator[None]:
    """SQLite refuses to build any string, blob or row longer than the byte bound (zeroblob,
    printf widths, replace() chains): one step of its VM the progress handler cannot stop."""
    if not max_bytes or not hasattr(conn, "setlimit"):
        yield
        return
    limit = sqlite3.SQLITE_LIMIT_LENGTH
    old = conn.getlimit(limit)
    conn.setlimit(limit, min(old, max(max_bytes, 1_000_000)))
    try:
        yield
    finally:
        conn.setlimit(limit, old)


class SQLiteDB(DB):
    kind = "sqlite"
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, label: str = "sqlite3") -> None:
        self.raw = conn
        self.label = label

    def query(
        self,
        sql: str,
        *,
        max_rows: int | None = None,
        timeout_s: float | None = None,
        read_only: bool = True,
        policy: SqlPolicy | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        conn = self.raw
        deadline = _deadline(timeout_s)
        timed_out = False

        def progress() -> int:
            nonlocal timed_out
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                return 1  # non-zero aborts the statement with "interrupted"
            return 0

        # query_only makes SQLite itself refuse writes: a second line of defence behind the guard.
        was_query_only = conn.execute("PRAGMA query_only").fetchone()[0]
        if read_only and not was_query_only:
            conn.execute("PRAGMA query_only = ON")
        guarded = read_only and policy is not None
        if deadline is not None:
            conn.set_progress_handler(progress, 1000)
        if guarded and policy is not None:  # (guarded implies a policy; said for the type)
            # After our own PRAGMA: the authorizer also sees every statement we prepare.
            conn.set_authorizer(
                sqlite_authorizer(database_function_names("sqlite", policy.allowed_functions))
            )
        try:
            with _sqlite_length_cap(conn, max_bytes if policy is not None else None):
                cur = conn.cursor()
                cur.execute(sql)
                return fetch_bounded(cur, max_rows, max_bytes, deadline, timeout_s)
        except sqlite3.OperationalError as e:
            if timed_out:
                raise QueryTimeout(f"statement cancelled after {timeout_s:g} s") from e
            raise
        finally:
            if guarded:
                # sqlite3 cannot read back a previous authorizer: ours is removed, none is left
                conn.set_authorizer(None)
            if deadline is not None:
                conn.set_progress_handler(None, 0)
            if read_only and not was_query_only:
                conn.execute("PRAGMA query_only = OFF")


@contextlib.contextmanager
def _interrupt_after(conn: Any, timeout_s: float | None) -> Iterator[dict[str, bool]]:
    """DuckDB has no statement timeout: a timer thread calls ``interrupt()`` instead."""
    state = {"fired": False}
    if not timeout_s:
        yield state
        return

    def fire() -> None:
        state["fired"] = True
        with contextlib.suppress(Exception):
            conn.interrupt()

    timer = threading.Timer(timeout_s, fire)
    timer.daemon = True
    timer.start()
    try:
        yield state
    finally:
        timer.cancel()


class DuckDB(DB):
    kind = "duckdb"
    dialect = "duckdb"

    def __init__(self, conn: Any, label: str = "duckdb") -> None:
        self.raw = conn
        self.label = label

    def query(
        self,
        sql: str,
        *,
        max_rows: int | None = None,
        timeout_s: float | None = None,
        read_only: bool = True,
        policy: SqlPolicy | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        guarded = read_only and policy is not None
        conn = self.raw
        if guarded and policy is not None:
            duckdb_parser_check(lambda q: conn.execute(q).fetchall(), sql, policy)
        with _duckdb_memory_cap(conn, max_bytes if policy is not None else None):
            return self._run_generated(conn, sql, guarded, max_rows, max_bytes, timeout_s)

    @staticmethod
    def _run_generated(
        conn: Any,
        sql: str,
        guarded: bool,
        max_rows: int | None,
        max_bytes: int | None,
        timeout_s: float | None,
    ) -> Fetched:
        import duckdb

        own_tx = False
        if guarded:
            # Our own read-only transaction, unless the user's is open: DuckDB has no
            # savepoints, and a failed BEGIN would abort the user's transaction. In autocommit
            # mode every statement is a transaction of its own, so its id moves.
            txid = "SELECT txid_current()"
            if conn.execute(txid).fetchone() != conn.execute(txid).fetchone():
                conn.execute("BEGIN TRANSACTION READ ONLY")
                own_tx = True
        try:
            with _interrupt_after(conn, timeout_s) as st:
                try:
                    cur = conn.execute(sql)
                    return fetch_bounded(cur, max_rows, max_bytes, _deadline(timeout_s), timeout_s)
                except (duckdb.InterruptException, RuntimeError) as e:
                    if st["fired"]:
                        raise QueryTimeout(f"statement cancelled after {timeout_s:g} s") from e
                    raise
        finally:
            if own_tx:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")


# DuckDB runs inside the kernel: a sort, join or aggregate of a generated query may take this
# many times the result bound above what the database already holds (then "Out of Memory").
_DUCKDB_HEADROOM = 4


@contextlib.contextmanager
def _duckdb_memory_cap(conn: Any, max_bytes: int | None) -> Iterator[None]:
    """``memory_limit`` for one generated query: what DuckDB holds now plus a headroom.

    A generated ``ORDER BY`` over large values materializes them in the kernel's memory before
    the first row is fetched; the limit makes DuckDB refuse instead. A connection whose
    configuration is locked (our DataFrames one) keeps DuckDB's own limit.
    """
    if not max_bytes:
        yield
        return
    try:
        (locked,) = conn.execute("SELECT current_setting('lock_configuration')").fetchone()
    except Exception:
        locked = True
    if locked:  # a failed SET would abort the user's open transaction: never try one
        yield
        return
    try:
        (old,) = conn.execute("SELECT current_setting('memory_limit')").fetchone()
        (held,) = conn.execute(
            "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()"
        ).fetchone()
        conn.execute(f"SET memory_limit = '{int(held) + _DUCKDB_HEADROOM * max_bytes}B'")
    except Exception:  # locked configuration, or a DuckDB without duckdb_memory()
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            conn.execute(f"SET memory_limit = '{str(old).replace(chr(39), '')}'")


_FRAMES_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


class FramesDB(DuckDB):
    """pandas (or polars) frames registered as DuckDB views under their variable names."""

    kind = "frames"

    def __init__(self, frames: Mapping[str, Any]) -> None:
        try:
            import duckdb
        except ImportError:
            raise ImportError(
                "querying DataFrames needs DuckDB: pip install 'rsql-assistant[duckdb]'"
            ) from None

        # No files, no network, no extensions, and no way to change that from SQL; frames are
        # registered by name, so DuckDB need not look up Python variables either.
        conn = duckdb.connect(config=_FRAMES_CONFIG)
        for name, frame in frames.items():
            conn.register(name, frame)  # zero-copy: DuckDB scans the frame in place
        super().__init__(conn, label=f"DataFrames ({', '.join(frames) or 'none'}) via DuckDB")
        self.frames = dict(frames)


class PostgresDBAPI(DB):
    """A raw psycopg (3 or 2) connection, in autocommit mode or not, idle or in a transaction."""

    kind = "dbapi"
    dialect = "postgres"

    def __init__(self, conn: Any, label: str = "psycopg") -> None:
        self.raw = conn
        self.label = label

    def query(
        self,
        sql: str,
        *,
        max_rows: int | None = None,
        timeout_s: float | None = None,
        read_only: bool = True,
        policy: SqlPolicy | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        conn = self.raw
        deadline = _deadline(timeout_s)
        autocommit = bool(getattr(conn, "autocommit", False))
        in_tx = not autocommit and in_transaction(conn)
        with conn.cursor() as cur:
            # Three ways in: our own explicit transaction (autocommit), the driver's implicit
            # one (idle), or a savepoint inside the user's open transaction, made read-only
            # by SET LOCAL (undone by ROLLBACK TO SAVEPOINT, like the timeout and the role).
            if autocommit:
                cur.execute("BEGIN READ ONLY" if read_only else "BEGIN")
            elif not in_tx:
                if read_only:
                    cur.execute("SET TRANSACTION READ ONLY")
            else:
                cur.execute("SAVEPOINT rsql_sql_ai")

            def finish(ok: bool) -> None:
                keep = ok and not read_only
                if autocommit:
                    cur.execute("COMMIT" if keep else "ROLLBACK")
                elif not in_tx:
                    conn.commit() if keep else conn.rollback()
                else:
                    cur.execute(
                        "RELEASE SAVEPOINT rsql_sql_ai"
                        if keep
                        else "ROLLBACK TO SAVEPOINT rsql_sql_ai"
                    )

            def run(q: str) -> list[tuple[Any, ...]]:
                cur.execute(q)
                return cur.fetchall() if cur.description else []

            try:
                if timeout_s:
                    cur.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                if policy is not None:
                    pin_string_syntax(run, sql)
                if read_only and policy is not None:
                    postgres_walls(run, policy, conn, self.label)
                out = postgres_fetch(
                    conn,
                    sql,
                    max_rows=max_rows,
                    max_bytes=max_bytes,
                    deadline=deadline,
                    timeout_s=timeout_s,
                    generated=policy is not None,
                )
            except Exception as e:
                finish(False)
                if "statement timeout" in str(e):
                    raise QueryTimeout(f"statement cancelled after {timeout_s:g} s") from e
                raise
            finish(True)
            return out


class SQLAlchemyDB(DB):
    kind = "sqlalchemy"

    def __init__(self, bind: Any, label: str | None = None) -> None:
        self.bind = bind  # Engine or Connection
        name = bind.dialect.name
        self.sa_dialect = name
        self.dialect = sqlglot_dialect(name, check=False)
        self.label = label or f"SQLAlchemy {name}"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A SQLAlchemy ``Connection``: a new one from the Engine (closed afterwards), or the
        Connection this was made from."""
        from sqlalchemy.engine import Engine

        if isinstance(self.bind, Engine):
            with self.bind.connect() as c:
                yield c
        else:
            yield self.bind

    def query(
        self,
        sql: str,
        *,
        max_rows: int | None = None,
        timeout_s: float | None = None,
        read_only: bool = True,
        policy: SqlPolicy | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        guarded = read_only and policy is not None
        deadline = _deadline(timeout_s)
        with self.connection() as c:
            own_tx = not c.in_transaction()
            if own_tx:
                tx = c.begin()
            elif self.dialect == "postgres":
                tx = c.begin_nested()  # a savepoint inside the caller's transaction
            else:
                # DuckDB has no savepoints, and JupySQL keeps its connection's transaction
                # open: run inside it (SQLite's query_only still guards writes).
                tx = None
            failed = False
            try:
                if self.dialect == "postgres":
                    if read_only and own_tx:
                        c.exec_driver_sql("SET TRANSACTION READ ONLY")
                    if timeout_s:
                        c.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                    if policy is not None:
                        pin_string_syntax(lambda q: self._run(c, q, None).rows, sql)
                    if guarded and policy is not None:
                        postgres_walls(
                            lambda q: self._run(c, q, None).rows, policy, self.bind, self.label
                        )
                    return postgres_fetch(
                        c.connection.dbapi_connection,
                        sql,
                        max_rows=max_rows,
                        max_bytes=max_bytes,
                        deadline=deadline,
                        timeout_s=timeout_s,
                        generated=policy is not None,
                    )
                if self.dialect == "sqlite":
                    raw = c.connection.driver_connection
                    return SQLiteDB(raw).query(
                        sql,
                        max_rows=max_rows,
                        timeout_s=timeout_s,
                        read_only=read_only,
                        policy=policy,
                        max_bytes=max_bytes,
                    )
                if self.dialect == "duckdb":
                    raw = c.connection.driver_connection
                    if guarded and policy is not None:
                        duckdb_parser_check(lambda q: self._run(c, q, None).rows, sql, policy)
                    cap = _duckdb_memory_cap(raw, max_bytes if policy is not None else None)
                    with cap, _interrupt_after(raw, timeout_s) as st:
                        try:
                            return self._run(c, sql, max_rows, max_bytes, deadline, timeout_s)
                        except Exception as e:
                            if st["fired"]:
                                raise QueryTimeout(
                                    f"statement cancelled after {timeout_s:g} s"
                                ) from e
                            raise
                # Other dialects: no database-side wall of ours beyond the transaction that is
                # rolled back; the guard stands alone.
                return self._run(c, sql, max_rows, max_bytes, deadline, timeout_s)
            except Exception as e:
                failed = True
                if tx is not None:
                    tx.rollback()
                else:
                    c.rollback()  # a failed statement leaves the transaction unusable
                if "statement timeout" in str(e):
                    raise QueryTimeout(f"statement cancelled after {timeout_s:g} s") from e
                raise
            finally:
                if tx is not None and tx.is_active:
                    if read_only:
                        tx.rollback()
                    else:
                        tx.commit()
                elif tx is None and not read_only and not failed:
                    c.commit()

    @staticmethod
    def _run(
        c: Any,
        sql: str,
        max_rows: int | None,
        max_bytes: int | None = None,
        deadline: float | None = None,
        timeout_s: float | None = None,
    ) -> Fetched:
        # The DBAPI cursor, with no parameters at all: SQLAlchemy's exec_driver_sql still passes
        # an empty tuple, which makes psycopg read a '%' in the model's SQL as a placeholder.
        cur = c.connection.cursor()
        try:
            cur.execute(sql)
            return fetch_bounded(cur, max_rows, max_bytes, deadline, timeout_s)
        finally:
            cur.close()


def is_frame(obj: Any) -> bool:
    """A pandas or polars DataFrame (told by its type's module: neither library is imported)."""
    mod = type(obj).__module__
    return type(obj).__name__ == "DataFrame" and (
        mod.startswith("pandas") or mod.startswith("polars")
    )


def _jupysql_inner(obj: Any) -> Any | None:
    """JupySQL wraps connections (SQLAlchemyConnection, DBAPIConnection): unwrap to ours."""
    if type(obj).__module__.startswith("sql.connection"):
        return getattr(obj, "_connection", None)
    return None


def jupysql_current() -> Any | None:
    """JupySQL's active connection (``%sql sqlite://`` ...), unwrapped; None when there is none."""
    import sys

    mod = sys.modules.get("sql.connection")  # only when the user loaded JupySQL
    if mod is None:
        return None
    cur = getattr(getattr(mod, "ConnectionManager", None), "current", None)
    return _jupysql_inner(cur) if cur is not None else None


def resolve(obj: Any) -> DB:
    """Wrap any accepted connection object in a :class:`DB`. Raises TypeError otherwise."""
    if isinstance(obj, DB):
        return obj
    inner = _jupysql_inner(obj)
    if inner is not None:
        return resolve(inner)
    if isinstance(obj, sqlite3.Connection):
        return SQLiteDB(obj)
    mod = type(obj).__module__
    if mod.startswith(("duckdb", "_duckdb")) and hasattr(obj, "execute"):
        return DuckDB(obj)
    if isinstance(obj, str):
        if "://" not in obj:
            raise TypeError(f"{obj!r} is not a database URL (expected e.g. 'sqlite:///file.db')")
        import sqlalchemy as sa

        eng = _ENGINES.get(obj)
        if eng is None:
            eng = _ENGINES[obj] = sa.create_engine(obj)
        return SQLAlchemyDB(eng, label=f"SQLAlchemy {eng.dialect.name} ({eng.url!r})")
    if mod.startswith("sqlalchemy"):
        if hasattr(obj, "dialect") and (hasattr(obj, "connect") or hasattr(obj, "exec_driver_sql")):
            return SQLAlchemyDB(obj)
    if mod.startswith("psycopg") or mod.startswith("psycopg2"):
        return PostgresDBAPI(obj, label=mod.split(".")[0])
    if isinstance(obj, Mapping) and obj and all(is_frame(v) for v in obj.values()):
        return FramesDB(obj)
    if is_frame(obj):
        return FramesDB({"df": obj})
    raise TypeError(
        f"cannot use a {type(obj).__module__}.{type(obj).__name__} as a database connection: "
        "expected a sqlite3 or DuckDB connection, a SQLAlchemy engine, connection or URL, "
        "a JupySQL connection, or a dict of DataFrames"
    )
