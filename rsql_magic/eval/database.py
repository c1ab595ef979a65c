"""The database rsql-eval asks its questions of, opened as %%sql_ai opens one.

:func:`open_database` takes ``--db``: a SQLAlchemy URL, or a SQLite or DuckDB file opened
read-only; a database that cannot be opened, read or has no tables is an
:class:`~rsql_magic.errors.EvalInputError` naming it (a URL without its password).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from rsql_magic.errors import BadConnection, EvalInputError
from rsql_sql.connections import DB, resolve
from rsql_sql.databases import database_for_file, file_kinds
from rsql_sql.schema import capture_schema

__all__ = ["open_database"]


def _safe_url(url: str) -> str:
    """`url` without its password, for messages."""
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit((parts.scheme, "…", parts.path, parts.query, parts.fragment))


def open_database(target: str) -> DB:
    """`target` as %%sql_ai opens it: a SQLAlchemy URL (``postgresql://…``, ``duckdb:///f``), or
    the path of a SQLite or DuckDB file, opened read-only and told apart by its header.

    Raises :class:`EvalInputError` for a file that is not there or not a database, an unknown
    kind of URL, or a database that cannot be reached or has no tables.
    """
    if "://" in target:
        shown = _safe_url(target)
        try:
            db = resolve(target)
        except Exception as e:
            kind = target.split("://", 1)[0]
            raise EvalInputError(
                f"--db {shown}: cannot open a {kind!r} database "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from None
        return _checked(db, shown)
    path = Path(os.path.expanduser(target))
    if not path.exists():
        raise EvalInputError(
            f"--db {target}: no such file (give a SQLite or DuckDB file, or a "
            "SQLAlchemy URL such as postgresql://user@host/db)"
        )
    if not path.is_file():
        raise EvalInputError(f"--db {target}: not a file")
    with path.open("rb") as f:
        head = f.read(16)
    database = database_for_file(head)
    if database is None:
        raise EvalInputError(f"--db {target}: not a {file_kinds()} database file")
    try:  # read-only, as its database opens a file named by URL (rsql-mcp's --db too)
        db = database.open_read_only(f"{database.url_schemes[0]}:///{path.resolve()}", str(path))
    except BadConnection as e:
        raise EvalInputError(f"--db {target}: {e}") from None
    return _checked(db, target)


def _checked(db: DB, shown: str) -> DB:
    """`db`, once its schema is read and has tables (`shown`: how messages name it)."""
    try:
        schema = capture_schema(db)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalInputError(f"--db {shown}: cannot read its schema: {first}") from None
    if not schema.tables:
        raise EvalInputError(f"--db {shown}: the database has no tables")
    return db
