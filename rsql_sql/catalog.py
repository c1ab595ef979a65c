"""The captured schema: tables, views, columns, types, primary and foreign keys, and
``assemble``, which makes one from a catalog's rows as every database's catalog reader fetches them.

Below the databases (they return a :class:`Schema`) and the ``schema`` package (which captures,
ranks and renders one).

``Schema.mapping()`` is a ``sqlglot.schema.MappingSchema``-compatible dict;
``Schema.sqlglot_schema()`` the ``MappingSchema`` itself, for qualification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "MAX_COLUMNS",
    "MAX_TABLES",
    "Column",
    "ForeignKey",
    "Schema",
    "Table",
    "ValuesPolicy",
    "assemble",
]

MAX_TABLES = 5000  # a capture stops listing beyond this many tables (Schema.truncated)
MAX_COLUMNS = 300  # per table


@dataclass
class Column:
    name: str
    type: str
    nullable: bool = True


@dataclass
class ForeignKey:
    columns: tuple[str, ...]
    ref_db: str | None
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass
class Table:
    name: str
    db: str  # schema namespace: "main" for SQLite/DuckDB, "public" etc. for PostgreSQL
    columns: list[Column] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    kind: str = "table"  # "table" or "view"
    columns_truncated: int = 0


@dataclass
class Schema:
    dialect: str
    default_db: str
    tables: list[Table] = field(default_factory=list)
    truncated: bool = False  # more than MAX_TABLES tables (or the time bound hit)
    elapsed_s: float = 0.0
    # Distinct values of short text columns, {(db, table): {column: values}}: filled by
    # ``capture_values`` only where the context policy allows values; they rank tables and point
    # at columns, and a value equal to a literal of the question is shown as an example.
    values: dict[tuple[str, str], dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # (min, max) as text of date / timestamp columns and integer columns named like a year,
    # {(db, table): {column: (lo, hi)}}: read by ``capture_values`` under the same rules; a
    # year in the question points at the column whose range holds it.
    ranges: dict[tuple[str, str], dict[str, tuple[str, str]]] = field(default_factory=dict)
    # The question's literals found in columns by ``capture_values(question=...)``'s probe:
    # {literal in lower case: ((db, table, column, the value as stored), ...)}.
    probes: dict[str, tuple[tuple[str, str, str, str], ...]] = field(default_factory=dict)
    # The retrieval index (:mod:`.index`), built on first use and rebuilt when the tables or
    # values change; not part of the schema's value.
    index_cache: Any = field(default=None, repr=False, compare=False)
    # (tables fingerprint, hash of every table's and column's name): see values.schema_shape
    # the value index the values came from (value_index.ValueIndex: complete or not, how
    # many columns read): set by ``capture_values``
    value_index: Any = field(default=None, repr=False, compare=False)
    shape_cache: Any = field(default=None, repr=False, compare=False)

    def table(self, name: str, db: str | None = None) -> Table | None:
        key = name.lower()
        want_db = (db or self.default_db).lower()
        for t in self.tables:
            if t.name.lower() == key and t.db.lower() == want_db:
                return t
        if db is None:  # an unqualified name outside the default schema, if unique
            hits = [t for t in self.tables if t.name.lower() == key]
            if len(hits) == 1:
                return hits[0]
        return None

    def mapping(self) -> dict[str, dict[str, dict[str, str]]]:
        """``{db: {table: {column: type}}}``, for ``MappingSchema(..., dialect=self.dialect)``.

        Always two levels deep (sqlglot wants one depth throughout); pass ``db=default_db``
        to qualify() so unqualified tables resolve to the default schema.
        """
        out: dict[str, dict[str, dict[str, str]]] = {}
        for t in self.tables:
            out.setdefault(t.db, {})[t.name] = {c.name: c.type or "UNKNOWN" for c in t.columns}
        return out

    def sqlglot_schema(self, dialect: str | None = None) -> Any:
        """A ``MappingSchema`` for qualify(); names compare as the dialect compares them."""
        from sqlglot import exp
        from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
        from sqlglot.schema import MappingSchema

        d = dialect or self.dialect
        # Catalog names are stored exactly (PostgreSQL keeps "Region" as is): normalize only
        # where the database itself ignores case.
        strategy = Dialect.get_or_raise(d).normalization_strategy
        normalize = strategy == NormalizationStrategy.CASE_INSENSITIVE

        def name(raw: str) -> str:
            # a normalizing MappingSchema reads each name as SQL: " Salary " (a DataFrame's
            # column, spaces and all) would lose its spaces and resolve nothing; quoted, it is
            # the one identifier it is (and still compared without case)
            return exp.to_identifier(raw, quoted=True).sql(dialect=d) if normalize else raw

        # Types are the database's own spellings: only names matter for qualification, and
        # one exotic type must not make the whole schema unusable.
        plain: dict[str, object] = {
            name(db): {name(t): {name(c): "UNKNOWN" for c in cols} for t, cols in tables.items()}
            for db, tables in self.mapping().items()
        }
        return MappingSchema(plain, dialect=d, normalize=normalize)

    def qualify(self, tree: Any, dialect: str | None = None, *, expand_stars: bool = True) -> Any:
        """`tree` (a sqlglot expression, changed in place) with every table and column
        resolved against this schema as `dialect` resolves names; raises sqlglot's
        OptimizeError naming the first name that does not resolve. `expand_stars`: False
        leaves ``SELECT *`` as it is (it reads the table, no column in particular)."""
        from sqlglot.optimizer.qualify import qualify

        d = dialect or self.dialect
        return qualify(
            tree,
            schema=self.sqlglot_schema(d),
            dialect=d,
            db=self.default_db,
            expand_stars=expand_stars,
            validate_qualify_columns=True,
            quote_identifiers=False,
            identify=False,
        )


class ValuesPolicy(Protocol):
    """What the schema code needs of a context policy (``rsql_common.context_policy.ContextPolicy``,
    which the SQL layer does not import): whether values may be used, and which columns not."""

    # read-only members: a frozen dataclass (ContextPolicy) is one
    @property
    def value_stats(self) -> bool: ...

    @property
    def redact_columns(self) -> tuple[str, ...]: ...

    def redacts(self, column: str) -> bool: ...


def assemble(
    dialect: str,
    default_db: str,
    col_rows: list[tuple[Any, ...]],
    pk_rows: list[tuple[Any, ...]],
    fk_rows: list[tuple[Any, ...]],
) -> Schema:
    """col_rows: (db, table, kind, column, type, nullable) in column order;
    pk_rows: (db, table, [columns]); fk_rows: (db, table, [cols], ref_db, ref_table, [ref_cols])."""
    tables: dict[tuple[str, str], Table] = {}
    for db, tname, kind, cname, ctype, nullable in col_rows:
        t = tables.get((db, tname))
        if t is None:
            t = tables[(db, tname)] = Table(tname, db, kind=kind)
        t.columns.append(Column(cname, str(ctype or ""), bool(nullable)))
    for db, tname, cols in pk_rows:
        t = tables.get((db, tname))
        if t is not None and cols:
            t.primary_key = tuple(cols)
    for db, tname, cols, rdb, rtable, rcols in fk_rows:
        t = tables.get((db, tname))
        if t is None:
            continue
        if not rcols:  # SQLite: a FK without columns points at the target's primary key
            target = tables.get((rdb or db, rtable))
            rcols = list(target.primary_key) if target else []
        t.foreign_keys.append(ForeignKey(tuple(cols), rdb, rtable, tuple(rcols)))
    return Schema(dialect, default_db, list(tables.values()))
