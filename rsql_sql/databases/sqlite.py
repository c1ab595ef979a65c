"""SQLite: the ``sqlite3`` connection, its walls, its functions, its catalog, how it reads names.

Walls around generated SQL: ``PRAGMA query_only`` plus an authorizer that allows only reads and
allowlisted functions (no ATTACH / DETACH, which ``VACUUM INTO`` uses too, no PRAGMA, no
writes); the progress handler ends a statement at its timeout, and the length limit stops one
VM step from building a value past the byte bound.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from sqlglot import exp

from rsql_sql.errors import BadConnection, QueryTimeout

from ..catalog import assemble
from ..database_rules import MAX_REWRITES, literal, replace_spans, span, unresolved_column
from ..parse import parse_statements
from ..policy import Fetched, fetch_bounded
from .base import (
    DB,
    Database,
    DriverDB,
    QueryBounds,
    database_file,
    deadline_after,
    file_identity,
    file_of_url,
    for_a_thread,
)
from .functions import database_function_names

if TYPE_CHECKING:
    from sqlglot.errors import OptimizeError

    from ..catalog import Schema

__all__ = ["DATABASE", "SQLiteDB", "SQLiteDatabase", "sqlite_authorizer", "sqlite_string_literals"]


class SQLiteDatabase(Database):
    name = "sqlite"
    title = "SQLite"
    standard_quotes = True
    functions: ClassVar[str] = """
    char date datetime glob group_concat hex ifnull iif instr julianday like likelihood likely
    printf format quote random replace soundex strftime time total typeof unicode unixepoch
    unlikely timediff concat_ws octet_length acos acosh asin asinh atan atan2 atanh
    cos cosh log2 pi sin sinh tan tanh trunc json json_array json_array_length json_extract
    json_insert json_object json_patch json_remove json_replace json_set json_type json_valid
    json_quote json_group_array json_group_object json_each json_tree jsonb jsonb_array
    jsonb_extract jsonb_object regexp match -> ->> median percentile"""
    table_functions: ClassVar[str] = "json_each json_tree generate_series"
    format_widths = True
    backslash_escapes_vary = False  # plain '...' never reads escapes, whatever the settings
    url_schemes = ("sqlite",)
    file_header = (0, b"SQLite format 3\x00")
    url_example = "sqlite:///PATH"

    def connect(self, obj: Any) -> DB | None:
        return SQLiteDB(obj) if isinstance(obj, sqlite3.Connection) else None

    def open_read_only(self, url: str, label: str) -> DB:
        path = file_of_url(url, "sqlite")
        try:
            # mode=ro: SQLite itself opens the file read-only, behind query_only and the
            # authorizer that every statement meets
            conn = sqlite3.connect(
                f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, check_same_thread=False
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise BadConnection(f"cannot open {path} as SQLite: {e}") from None
        return SQLiteDB(conn, label=label)

    def read_catalog(self, db: DB, timeout_s: float) -> Schema:
        return _read_catalog(db, timeout_s)

    def reads_locally(self, db: DB, timeout_s: float) -> bool:
        return True

    def as_the_database_reads(
        self,
        sql: str,
        stmt: exp.Expr,
        schema: Schema,
        qualify_errors: Callable[[exp.Expr], OptimizeError | None],
    ) -> tuple[str, str] | None:
        found = sqlite_string_literals(sql, qualify_errors, stmt)
        if found is None:
            return None
        text, strings = found
        shown = ", ".join(strings)
        return (
            text,
            f"read {shown} as {'a string' if len(strings) == 1 else 'strings'}, as SQLite does",
        )

    def query_sqlalchemy(
        self, db: Any, c: Any, sql: str, bounds: QueryBounds, *, own_transaction: bool
    ) -> Fetched:
        return SQLiteDB(c.connection.driver_connection).run(sql, bounds)


DATABASE = SQLiteDatabase()


@contextlib.contextmanager
def _length_cap(conn: sqlite3.Connection, max_bytes: int | None) -> Iterator[None]:
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


class SQLiteDB(DriverDB):
    kind = "sqlite"
    database = DATABASE
    default_label = "sqlite3"

    def _main_file(self) -> str | None:
        """The file of the main database when it is the only one (no ATTACH: a second
        connection would not see the others), else None."""
        try:
            dbs = [(r[1], r[2]) for r in self.raw.execute("PRAGMA database_list").fetchall()]
        except sqlite3.Error:
            return None
        files = dict(dbs)
        if set(files) - {"main", "temp"} or not files.get("main"):
            return None
        return str(files["main"])

    def for_thread(self) -> DB | None:
        # sqlite3 connections belong to the thread that made them: the file opened again,
        # read-only, for the other thread
        path = self._main_file()
        if path is None:
            return None
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(Path(path).resolve()))}?mode=ro",
                uri=True,
                check_same_thread=False,
            )
        except sqlite3.Error:
            return None
        return for_a_thread(SQLiteDB(conn, label=self.label))

    def identity(self) -> str | None:
        path = database_file(self.raw, self._main_file)
        return file_identity("sqlite", path) if path else None

    def run(self, sql: str, bounds: QueryBounds) -> Fetched:
        max_rows, timeout_s, read_only, policy, max_bytes = bounds.parts()
        conn = self.raw
        deadline = deadline_after(timeout_s)
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
                sqlite_authorizer(database_function_names(DATABASE, policy.allowed_functions))
            )
        try:
            with _length_cap(conn, max_bytes if policy is not None else None):
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


_READS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}


def sqlite_authorizer(names: frozenset[str]) -> Callable[..., int]:
    """Allow reads and allowlisted functions; deny everything else (ATTACH and DETACH, which
    ``VACUUM INTO`` also needs, every PRAGMA, writes, transactions, virtual table changes)."""

    def authorize(action: int, arg1: str | None, arg2: str | None, _db: Any, _trig: Any) -> int:
        if action in _READS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_OK if (arg2 or "").lower() in names else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_UPDATE and arg1 in ("sqlite_master", "sqlite_temp_master"):
            # preparing a table-valued function (json_each) registers it in the schema;
            # query_only still stops any real write
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return authorize


def _read_catalog(db: DB, timeout_s: float) -> Schema:
    # Table-valued pragmas let one query read every table's columns (SQLite >= 3.16).
    cols = db.rows(
        'SELECT m.name, m.type, p.name, p.type, p."notnull", p.pk '
        "FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
        "WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY m.name, p.cid",
        timeout_s,
    )
    fks = db.rows(
        'SELECT m.name, f.id, f.seq, f."table", f."from", f."to" '
        "FROM sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS f "
        "WHERE m.type = 'table' ORDER BY m.name, f.id, f.seq",
        timeout_s,
    )
    col_rows = []
    pks: dict[str, list[tuple[int, str]]] = {}
    for tname, kind, cname, ctype, notnull, pk in cols:
        col_rows.append(("main", tname, kind, cname, ctype, not notnull and not pk))
        if pk:
            pks.setdefault(tname, []).append((pk, cname))
    pk_rows = [("main", t, [c for _, c in sorted(v)]) for t, v in pks.items()]
    grouped: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for tname, fid, _seq, rtable, frm, to in fks:
        grouped.setdefault((tname, fid), []).append((rtable, frm, to))
    fk_rows = []
    for (tname, _), parts in grouped.items():
        rcols = [to for _, _, to in parts]
        fk_rows.append(
            (
                "main",
                tname,
                [f for _, f, _ in parts],
                "main",
                parts[0][0],
                [] if any(c is None for c in rcols) else rcols,
            )
        )
    return assemble("sqlite", "main", col_rows, pk_rows, fk_rows)


_POINTS_AT = re.compile(r"Line: (\d+), Col: (\d+)")


def sqlite_string_literals(
    sql: str,
    qualify_errors: Callable[[exp.Expr], OptimizeError | None],
    stmt: exp.Expr | None = None,
) -> tuple[str, list[str]] | None:
    """``(sql, strings)``: `sql` with each double-quoted token that resolves to no column in
    scope written as the string literal SQLite makes of it; None when there is none.

    SQLite reads a double-quoted token that names no column in scope as a string
    (``WHERE Country = "USA"``); models write this all the time.
    `qualify_errors(statement)` is the validator's column resolution: the error it raises for
    the statement, or None. A token is rewritten only when that resolution names it as
    unresolved, it is an unqualified column reference, and it was written with double quotes
    (backticks and brackets are identifiers only, in SQLite too). Only the occurrence the error
    points at is rewritten, one at a time: the same name may resolve in another scope (a
    subquery over a table that has that column). `stmt`: `sql` as the validator parsed it,
    read as it is (the generated SQL is parsed once per check); each rewrite is parsed anew.
    """
    strings: list[str] = []
    parsed = [stmt] if stmt is not None else None
    for _ in range(MAX_REWRITES):
        stmts = parsed if parsed is not None else parse_statements(sql, "sqlite")
        parsed = None
        if len(stmts) != 1:
            return None
        err = qualify_errors(stmts[0])
        if err is None:
            break
        name = unresolved_column(str(err))
        if name is None:
            break
        where = _POINTS_AT.search(str(err))
        edits = []
        for col in stmts[0].find_all(exp.Column):
            ident = col.this
            where_is = span(ident) if isinstance(ident, exp.Identifier) else None
            if (
                where_is is None
                or col.table
                or not ident.quoted
                or ident.name.lower() != name.lower()
                or sql[where_is[0]] != '"'
            ):
                continue
            meta = ident.meta or {}
            if where and (meta.get("line"), meta.get("col")) != (
                int(where.group(1)),
                int(where.group(2)),
            ):
                continue
            edits.append((where_is[0], where_is[1], literal(ident.name)))
        if len(edits) != 1:
            break  # an unquoted name, a quoted one SQLite would not turn into a string, or unsure which
        token = sql[edits[0][0] : edits[0][1]]
        if token not in strings:
            strings.append(token)
        sql = replace_spans(sql, edits)
    return (sql, strings) if strings else None
