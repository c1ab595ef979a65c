"""What every SQL database module declares (:class:`Database`), every connection adapter is
(:class:`DB`), and which databases there are (:func:`database_for`: one module per database,
loaded when first asked for; a name and a title for those reached only through SQLAlchemy).

A database is what the checks ask instead of comparing names: its function allowlists, how its
strings and names are read, how its catalog is read, and the walls it puts around generated SQL
on a SQLAlchemy connection. A :class:`DB` is one connection of a database, with bounded queries.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rsql_sql.errors import BadConnection

from ..policy import Fetched, fetch_bounded

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.errors import OptimizeError

    from ..catalog import Schema
    from ..policy import SqlPolicy

__all__ = [
    "DB",
    "DriverDB",
    "QueryBounds",
    "Database",
    "deadline_after",
    "database_file",
    "database_for",
    "database_for_file",
    "database_for_url",
    "databases",
    "file_kinds",
    "url_examples",
    "file_identity",
    "file_of_url",
    "for_a_thread",
    "interrupt_thread_dbs",
    "run_cursor",
]


def file_of_url(url: str, scheme: str) -> Path:
    """The existing file a ``scheme:///PATH`` URL names; raises :class:`BadConnection`."""
    # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute/path.db
    rest = url[len(scheme) + len(":///") :]
    if not url.lower().startswith(f"{scheme}:///") or not rest:
        raise BadConnection(f"expected {scheme}:///PATH")
    path = Path(rest).expanduser()
    if not path.is_file():
        raise BadConnection(f"no such file: {path}")
    return path


def file_identity(kind: str, path: str) -> str | None:
    """`kind:path:size:mtime` of a database file and its write-ahead log (changes reach the
    log first), or None when there is no such file (in memory)."""
    if not path or path == ":memory:":
        return None
    parts = [kind, str(Path(path).resolve())]
    for p in (Path(path), Path(path + ".wal"), Path(path + "-wal")):
        try:
            st = p.stat()
        except OSError:
            continue
        parts += [str(st.st_size), str(st.st_mtime_ns)]
    return ":".join(parts) if len(parts) > 2 else None


_FILES: dict[int, tuple[Any, str | None]] = {}  # id(connection) -> (it, its database file)


def database_file(conn: Any, find: Callable[[], str | None]) -> str | None:
    """The database file of `conn`, asked once per connection (`find` runs a query; the
    value index asks before every question whether the file changed)."""
    hit = _FILES.get(id(conn))
    if hit is not None and hit[0] is conn:
        return hit[1]
    path = find()
    if len(_FILES) >= 32:
        _FILES.pop(next(iter(_FILES)))
    _FILES[id(conn)] = (conn, path)  # the connection held: its id is not reused meanwhile
    return path


def deadline_after(timeout_s: float | None) -> float | None:
    """The ``time.monotonic()`` a query must end by, or None without a timeout."""
    return time.monotonic() + timeout_s if timeout_s else None


def run_cursor(
    c: Any,
    sql: str,
    max_rows: int | None,
    max_bytes: int | None = None,
    deadline: float | None = None,
    timeout_s: float | None = None,
) -> Fetched:
    """`sql` on the DBAPI cursor of `c`, a SQLAlchemy ``Connection``, fetched within the bounds."""
    # The DBAPI cursor, with no parameters at all: SQLAlchemy's exec_driver_sql still passes
    # an empty tuple, which makes psycopg read a '%' in the model's SQL as a placeholder.
    cur = c.connection.cursor()
    try:
        cur.execute(sql)
        return fetch_bounded(cur, max_rows, max_bytes, deadline, timeout_s)
    finally:
        cur.close()


@dataclass(frozen=True, slots=True)
class QueryBounds:
    """One query's bounds and walls, as :meth:`DB.query` was given them."""

    max_rows: int | None
    timeout_s: float | None
    read_only: bool
    policy: SqlPolicy | None
    max_bytes: int | None

    def parts(
        self,
    ) -> tuple[int | None, float | None, bool, SqlPolicy | None, int | None]:
        """(max_rows, timeout_s, read_only, policy, max_bytes)."""
        return self.max_rows, self.timeout_s, self.read_only, self.policy, self.max_bytes

    @property
    def guarded(self) -> bool:
        """Generated SQL run read-only: the database's own walls go up around it."""
        return self.read_only and self.policy is not None


class Database:
    """One SQL database as the checks see it. Subclass it in the database's own module (one module
    per database, registered by name in :mod:`rsql_sql.databases`); a database sqlglot knows
    but we have no module for is a plain ``Database(name)``: the guard alone, no walls."""

    #: sqlglot's dialect name, the registry's key
    name: str = ""
    #: how prompts and messages name it
    title: str = ""
    #: pure functions sqlglot parses as Anonymous in this database, beyond the common ones
    #: (:mod:`rsql_sql.databases.functions`), lower-case, space-separated
    functions: ClassVar[str] = ""
    #: ``FROM f(...)`` functions that generate rows without touching files or the network
    table_functions: ClassVar[str] = ""
    #: printf / format read widths from their format string (so the guard bounds them)
    format_widths: bool = False
    #: range / generate_series as a value build their whole list at once (DuckDB)
    series_as_lists: bool = False
    #: a setting can make plain '...' strings read backslash escapes (PostgreSQL, MySQL)
    backslash_escapes_vary: bool = True
    #: inside a caller's open transaction, generated SQL runs in a savepoint (SQLAlchemy)
    savepoints: bool = False
    #: identifiers quote as standard SQL does ("name", a quote doubled): no sqlglot needed
    standard_quotes: bool = False
    #: URL schemes a read-only connection is opened by (``rsql-mcp --db``, the proxy's MCP
    #: connections); ``scheme+driver`` matches too. Empty: not opened by URL.
    url_schemes: tuple[str, ...] = ()
    url_example: str = ""  # for help and error texts
    #: how its database files begin: (offset, bytes); None for a database without files
    file_header: tuple[int, bytes] | None = None
    #: one connection serves concurrent tool calls (a pool), rather than one call at a time
    concurrent: bool = False
    #: statements can run as a role the caller names (``SET LOCAL ROLE``): an admin's MCP
    #: connection of this database must name one, and one of another database must not
    runs_as_role: bool = False

    def __init__(self, name: str | None = None, title: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.title = title or self.title or self.name

    def __repr__(self) -> str:
        return f"<Database {self.name}>"

    def connect(self, obj: Any) -> DB | None:
        """`obj` as a :class:`DB` when it is a driver connection of this database, else None.
        Must not import the driver: told by the object's type and module."""
        return None

    def open_read_only(self, url: str, label: str) -> DB:
        """A read-only connection to `url` (one of :attr:`url_schemes`); raises
        :class:`~rsql_sql.errors.BadConnection` saying why not."""
        raise BadConnection(f"{self.title} connections are not opened by URL")

    def read_catalog(self, db: DB, timeout_s: float) -> Schema:
        """The catalog of `db` in a few bulk queries (:func:`rsql_sql.schema.capture_schema`
        bounds and sorts it). By default, what the connection itself can tell (SQLAlchemy's
        inspector)."""
        return db.read_catalog_generically()

    def reads_locally(self, db: DB, timeout_s: float) -> bool:
        """Whether reading `db`'s catalog touches only local files or memory (the editor's
        completions read it on a keystroke, never over a network)."""
        return False

    def quote(self, name: str) -> str:
        """`name` as a quoted identifier of this database."""
        if self.standard_quotes:
            return '"' + name.replace('"', '""') + '"'
        from sqlglot import exp

        return str(exp.Identifier(this=name).sql(self.name or None, identify=True))

    def as_the_database_reads(
        self,
        sql: str,
        stmt: exp.Expr,
        schema: Schema,
        qualify_errors: Callable[[exp.Expr], OptimizeError | None],
    ) -> tuple[str, str] | None:
        """``(sql, note)``: `sql` with the names the validator would read differently from this
        database rewritten to what the database makes of them (:mod:`rsql_sql.database_rules`);
        None when nothing differs."""
        return None

    def query_sqlalchemy(
        self, db: Any, c: Any, sql: str, bounds: QueryBounds, *, own_transaction: bool
    ) -> Fetched:
        """Run `sql` on `c`, a SQLAlchemy ``Connection`` of this database inside the transaction
        the adapter opened (`db`: the :class:`~.sqlalchemy_adapter.SQLAlchemyDB`;
        `own_transaction`: the adapter began it, rather than a savepoint in the caller's or the
        caller's own). By default no database-side wall of ours beyond that transaction, rolled
        back: the guard stands alone."""
        timeout_s = bounds.timeout_s
        return run_cursor(
            c, sql, bounds.max_rows, bounds.max_bytes, deadline_after(timeout_s), timeout_s
        )


class DB:
    """A connection we can run bounded queries on: one adapter per driver family, in its
    database's module (SQLAlchemy and DataFrames are adapters over the others)."""

    kind: str = "dbapi"
    label: str = ""
    database: Database = Database("")
    #: what captured tables are called (DataFrames: "dataframe"); None keeps the catalog's word
    table_kind: str | None = None

    @property
    def dialect(self) -> str:
        """The database's sqlglot dialect name."""
        return self.database.name

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
        return self.run(sql, QueryBounds(max_rows, timeout_s, read_only, policy, max_bytes))

    def run(self, sql: str, bounds: QueryBounds) -> Fetched:
        """:meth:`query`, with its bounds in one record: what each adapter implements."""
        raise NotImplementedError

    def rows(self, sql: str, timeout_s: float | None = 10.0) -> list[tuple[Any, ...]]:
        """All rows of a (catalog) query; used by schema capture."""
        return self.query(sql, timeout_s=timeout_s).rows

    def read_catalog_generically(self) -> Schema:
        """The catalog without a database's own queries; only SQLAlchemy can."""
        raise TypeError(f"schema capture is not supported for {self.label}")

    def for_thread(self) -> DB | None:
        """A DB on the same database that another thread may use while this one is in use
        (the value index is read in the background), or None where the driver gives none:
        then the index is read only while a question waits for it."""
        return None

    def identity(self) -> str | None:
        """What names this database from any process, for caches kept on disk: a file with
        its size and time of change, a URL without its password. None: a database of this
        process only (in memory), or a driver that does not say."""
        return None


class DriverDB(DB):
    """A connection of a database's own driver (sqlite3, DuckDB, psycopg): `raw` is it."""

    default_label = ""

    def __init__(self, conn: Any, label: str | None = None) -> None:
        self.raw = conn
        self.label = self.default_label if label is None else label


# the connections for_thread opened (a DuckDB cursor, a SQLite file opened again), while in use
_THREAD_DBS: weakref.WeakSet[DriverDB] = weakref.WeakSet()
_THREAD_DBS_LOCK = threading.Lock()


def for_a_thread(db: DriverDB) -> DriverDB:
    """`db`, a connection :meth:`DB.for_thread` opened whose driver has ``interrupt()``,
    callable from any thread (DuckDB's, sqlite3's): noted so that
    :func:`interrupt_thread_dbs` reaches it."""
    with _THREAD_DBS_LOCK:
        _THREAD_DBS.add(db)
    return db


def interrupt_thread_dbs() -> None:
    """Interrupt the query each connection :meth:`DB.for_thread` opened is running now: the
    value index stops its background readers so at interpreter exit
    (``rsql_sql.schema.value_index``). One not running a query is left as it is."""
    with _THREAD_DBS_LOCK:
        dbs = list(_THREAD_DBS)
    for db in dbs:
        with contextlib.suppress(Exception):  # closed meanwhile
            db.raw.interrupt()


# -- the databases by name: which module holds each, loaded when first asked for (as sqlglot
# loads its dialects), so a database's driver code costs nothing until a connection of it comes

# database name -> its module (which defines DATABASE); one line per database
_MODULES = {
    "sqlite": "sqlite",
    "duckdb": "duckdb",
    "postgres": "postgres",
}

_LOADED: dict[str, Database] = {}


def database_for(name: str) -> Database:
    """The database a sqlglot dialect name stands for; a database without a module of its own is a
    plain :class:`Database` of that name (the guard alone)."""
    database = _LOADED.get(name)
    if database is None:
        module = _MODULES.get(name)
        if module is not None:
            database = importlib.import_module(f"{__package__}.{module}").DATABASE
        else:
            database = _BY_NAME_ONLY.get(name) or Database(name)
        _LOADED[name] = database
    return database


def databases() -> list[Database]:
    """Every database with a module of its own, in registry order."""
    return [database_for(name) for name in _MODULES]


def database_for_url(url: str) -> Database | None:
    """The database whose connections `url` opens (its scheme, ``scheme+driver`` too), or None."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    base = scheme.split("+", 1)[0]
    return next((e for e in databases() if base and base in e.url_schemes), None)


def database_for_file(head: bytes) -> Database | None:
    """The database whose files begin as `head` (a file's first 16 bytes), or None."""
    for database in databases():
        if database.file_header is not None:
            at, magic = database.file_header
            if head[at : at + len(magic)] == magic:
                return database
    return None


def file_kinds() -> str:
    """The databases whose files :func:`database_for_file` knows, for error texts ("SQLite or
    DuckDB")."""
    return " or ".join(e.title for e in databases() if e.file_header is not None)


def url_examples() -> str:
    """The URL forms :func:`database_for_url` knows, for help and error texts."""
    return ", ".join(e.url_example for e in databases() if e.url_example)


# Engines sqlglot knows that we reach only through SQLAlchemy: a name and a title each, no
# walls of their own (the guard, the transaction rolled back, and the database's permissions).
# A database that earns walls, a function list or catalog queries gets a module of its own.


class _NoEscapes(Database):
    backslash_escapes_vary = False  # plain '...' never reads escapes, whatever the settings


_BY_NAME_ONLY: dict[str, Database] = {
    e.name: e
    for e in (
        _NoEscapes("tsql", "T-SQL (SQL Server)"),
        Database("mysql", "MySQL"),
        Database("bigquery", "BigQuery"),
        Database("snowflake", "Snowflake"),
        Database("oracle", "Oracle"),
        Database("redshift", "Redshift"),
        Database("trino", "Trino"),
        Database("clickhouse", "ClickHouse"),
    )
}
