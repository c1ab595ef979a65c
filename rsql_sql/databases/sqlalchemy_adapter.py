"""SQLAlchemy: an ``Engine``, ``Connection`` or URL over any database, as a thin wrapper.

The adapter opens the transaction (a savepoint inside the caller's open one where the database
has savepoints), then hands the statement to its database (``Database.query_sqlalchemy``), which
puts up the same walls as on that database's own driver connection; it rolls back afterwards.
Engines without a module of their own run with that transaction alone, and their catalog is
read by SQLAlchemy's bulk inspector.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rsql_sql.errors import QueryTimeout

from ..catalog import assemble
from ..dialects import sqlglot_dialect
from ..policy import Fetched
from .base import DB, QueryBounds, database_for, file_identity

if TYPE_CHECKING:
    from ..catalog import Schema

__all__ = ["SQLAlchemyDB", "dispose_url_pools", "from_url"]

_ENGINES: dict[str, Any] = {}  # URL -> Engine, so a URL named in many cells shares one pool


def from_url(url: str) -> SQLAlchemyDB:
    """A database URL (``sqlite:///file.db``) as a :class:`SQLAlchemyDB`, one pool per URL."""
    if "://" not in url:
        raise TypeError(f"{url!r} is not a database URL (expected e.g. 'sqlite:///file.db')")
    import sqlalchemy as sa

    eng = _ENGINES.get(url)
    if eng is None:
        eng = _ENGINES[url] = sa.create_engine(url)
    return SQLAlchemyDB(eng, label=f"SQLAlchemy {eng.dialect.name} ({eng.url!r})")


def dispose_url_pools(containing: str) -> None:
    """Close and forget the pools of every URL holding `containing` (a database being dropped:
    its connections must go first)."""
    for url in [u for u in _ENGINES if containing in u]:
        _ENGINES.pop(url).dispose()


class SQLAlchemyDB(DB):
    kind = "sqlalchemy"

    def __init__(self, bind: Any, label: str | None = None) -> None:
        self.bind = bind  # Engine or Connection
        name = bind.dialect.name
        self.sa_dialect = name
        self.database = database_for(sqlglot_dialect(name, check=False))
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

    def run(self, sql: str, bounds: QueryBounds) -> Fetched:
        read_only, timeout_s = bounds.read_only, bounds.timeout_s
        with self.connection() as c:
            own_tx = not c.in_transaction()
            if own_tx:
                tx = c.begin()
            elif self.database.savepoints:
                tx = c.begin_nested()  # a savepoint inside the caller's transaction
            else:
                # DuckDB has no savepoints, and JupySQL keeps its connection's transaction
                # open: run inside it (SQLite's query_only still guards writes).
                tx = None
            failed = False
            try:
                return self.database.query_sqlalchemy(self, c, sql, bounds, own_transaction=own_tx)
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

    def _url(self) -> Any:
        from sqlalchemy.engine import Engine

        return self.bind.url if isinstance(self.bind, Engine) else None

    def for_thread(self) -> DB | None:
        # an Engine hands each query a pooled connection of its own; an in-memory database
        # lives in one connection only, and a Connection is the caller's
        url = self._url()
        if url is None or url.database in (None, "", ":memory:"):
            return None
        return self

    def identity(self) -> str | None:
        url = self._url()
        if url is None or url.database in (None, "", ":memory:"):
            return None
        if self.sa_dialect in ("sqlite", "duckdb"):
            return file_identity(self.sa_dialect, url.database)
        return str(url.render_as_string(hide_password=True))

    def read_catalog_generically(self) -> Schema:
        """Any dialect: the inspector's bulk (get_multi_*) calls."""
        import sqlalchemy as sa
        from sqlalchemy.engine.reflection import ObjectKind

        with self.connection() as c:
            insp = sa.inspect(c)
            default_db = insp.default_schema_name or "main"
            cols = insp.get_multi_columns(kind=ObjectKind.ANY)
            pks = insp.get_multi_pk_constraint()
            fks = insp.get_multi_foreign_keys()
            views = set(insp.get_view_names())
        col_rows = []
        for (s, t), clist in cols.items():
            for col in clist:
                ty = col["type"]
                try:
                    ty_s = ty.compile(dialect=c.dialect)
                except Exception:
                    ty_s = str(ty)
                col_rows.append(
                    (
                        s or default_db,
                        t,
                        "view" if t in views else "table",
                        col["name"],
                        ty_s,
                        col.get("nullable", True),
                    )
                )
        pk_rows = [
            (s or default_db, t, pk.get("constrained_columns") or []) for (s, t), pk in pks.items()
        ]
        fk_rows = [
            (
                s or default_db,
                t,
                fk["constrained_columns"],
                fk.get("referred_schema") or (s or default_db),
                fk["referred_table"],
                fk["referred_columns"],
            )
            for (s, t), fl in fks.items()
            for fk in fl
        ]
        return assemble(self.dialect, default_db, col_rows, pk_rows, fk_rows)
