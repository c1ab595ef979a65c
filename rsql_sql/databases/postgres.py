"""PostgreSQL: psycopg connections, their walls, the functions, the catalog, folded names.

Walls around generated SQL: a READ ONLY transaction (a savepoint made read-only inside the
user's open transaction), rolled back afterwards, with ``statement_timeout``, ``SET LOCAL ROLE``
to ``policy.postgres_role`` when given (a warning, once, when running as a superuser without
it), ``standard_conforming_strings`` pinned on, and one statement sent: a query runs as a
server-side cursor, which also keeps what is not fetched on the server.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from sqlglot import exp

from rsql_common.terminal import shown
from rsql_sql.errors import BadConnection, QueryTimeout, Refused, SuperuserWarning

from ..catalog import assemble
from ..database_rules import replace_spans, span
from ..policy import Fetched, fetch_bounded
from .base import DB, Database, DriverDB, QueryBounds, deadline_after, run_cursor

if TYPE_CHECKING:
    from sqlglot.errors import OptimizeError

    from ..catalog import Schema
    from ..policy import SqlPolicy

__all__ = [
    "DECLARE_PREFIX",
    "DATABASE",
    "PostgresDBAPI",
    "PostgresDatabase",
    "in_transaction",
    "pin_string_syntax",
    "postgres_fetch",
    "postgres_folded_names",
    "postgres_walls",
    "readable_tables",
]


class PostgresDatabase(Database):
    name = "postgres"
    title = "PostgreSQL"
    standard_quotes = True
    functions: ClassVar[str] = """
    age array_length array_lower array_upper array_position array_positions array_remove
    array_replace array_to_json array_to_string array_agg array_cat array_append array_prepend
    array_dims array_ndims bit_length bool_and bool_or every btrim cardinality cbrt
    char_length character_length chr clock_timestamp concat_ws date_bin date_part date_trunc
    div extract format format_type gcd lcm generate_series isfinite json_agg
    json_array_elements json_array_elements_text json_array_length json_build_array
    json_build_object json_each json_each_text json_extract_path json_extract_path_text
    json_object_agg json_object_keys json_strip_nulls json_typeof jsonb_agg
    jsonb_array_elements jsonb_array_elements_text jsonb_array_length jsonb_build_array
    jsonb_build_object jsonb_each jsonb_each_text jsonb_extract_path jsonb_extract_path_text
    jsonb_object_agg jsonb_object_keys jsonb_path_exists jsonb_path_query
    jsonb_path_query_array jsonb_path_query_first jsonb_pretty jsonb_strip_nulls jsonb_typeof
    jsonb_set jsonb_insert to_json to_jsonb row_to_json json_object jsonb_object
    justify_days justify_hours justify_interval localtime localtimestamp make_date
    make_interval make_time make_timestamp make_timestamptz min_scale mode now num_nonnulls
    num_nulls octet_length overlay percentile_cont percentile_disc position quote_ident
    quote_literal quote_nullable random regexp_count regexp_instr regexp_like regexp_match
    regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table regexp_substr
    scale split_part starts_with statement_timestamp string_to_array string_to_table strpos
    timeofday to_char to_date to_hex to_number to_timestamp transaction_timestamp translate
    trim_scale trunc unnest width_bucket bit_and bit_or bit_xor regr_avgx regr_avgy regr_count
    regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy encode decode sha224 sha256
    sha384 sha512 gen_random_uuid ascii convert_from convert_to factorial isodow isoyear
    date_add date_subtract timezone nullif greatest least pg_typeof current_date
    current_timestamp current_time generate_subscripts array_sample array_shuffle
    jsonb_to_recordset json_to_recordset jsonb_to_record json_to_record any_value"""
    table_functions: ClassVar[str] = """
    generate_series generate_subscripts unnest json_each json_each_text jsonb_each
    jsonb_each_text json_array_elements json_array_elements_text jsonb_array_elements
    jsonb_array_elements_text json_object_keys jsonb_object_keys regexp_matches
    regexp_split_to_table string_to_table jsonb_path_query json_to_recordset
    jsonb_to_recordset"""
    format_widths = True
    savepoints = True
    url_schemes = ("postgresql", "postgres")
    url_example = "postgresql://..."
    runs_as_role = True
    concurrent = True  # opened by URL: a SQLAlchemy engine with a pool

    def open_read_only(self, url: str, label: str) -> DB:
        # through SQLAlchemy, as a URL named in a %%sql_ai cell: every statement runs in a read-only
        # transaction (the connection's role is the database's to limit)
        scheme = url.split("://", 1)[0].lower()
        if not scheme.startswith("postgresql"):
            url = "postgresql" + url[len("postgres") :]
        from .sqlalchemy_adapter import from_url

        try:
            db = from_url(url)
            db.rows("SELECT 1", timeout_s=10.0)
        except Exception as e:
            raise BadConnection(
                f"cannot connect: {type(e).__name__}: {shown(str(e)).splitlines()[0][:300]}"
            ) from None
        if db.database is not self:
            raise BadConnection(f"{scheme} is not PostgreSQL")
        db.label = label
        return db

    def connect(self, obj: Any) -> DB | None:
        mod = type(obj).__module__
        return PostgresDBAPI(obj, label=mod.split(".")[0]) if mod.startswith("psycopg") else None

    def read_catalog(self, db: DB, timeout_s: float) -> Schema:
        return _read_catalog(db, timeout_s)

    def as_the_database_reads(
        self,
        sql: str,
        stmt: exp.Expr,
        schema: Schema,
        qualify_errors: Callable[[exp.Expr], OptimizeError | None],
    ) -> tuple[str, str] | None:
        folded = postgres_folded_names(sql, stmt, schema)
        if folded is None:
            return None
        text, names = folded
        shown = ", ".join(f'"{n}"' for n in names)
        return (
            text,
            f"quoted {shown} as the catalog spells it (PostgreSQL folds unquoted names to lower case)",
        )

    def query_sqlalchemy(
        self, db: Any, c: Any, sql: str, bounds: QueryBounds, *, own_transaction: bool
    ) -> Fetched:
        policy, timeout_s = bounds.policy, bounds.timeout_s
        if bounds.read_only and own_transaction:
            c.exec_driver_sql("SET TRANSACTION READ ONLY")
        if timeout_s:
            c.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
        if policy is not None:
            pin_string_syntax(lambda q: run_cursor(c, q, None).rows, sql)
        if bounds.guarded and policy is not None:
            postgres_walls(lambda q: run_cursor(c, q, None).rows, policy, db.bind, db.label)
        return postgres_fetch(
            c.connection.dbapi_connection,
            sql,
            max_rows=bounds.max_rows,
            max_bytes=bounds.max_bytes,
            deadline=deadline_after(timeout_s),
            timeout_s=timeout_s,
            generated=policy is not None,
        )


DATABASE = PostgresDatabase()


class PostgresDBAPI(DriverDB):
    """A raw psycopg (3 or 2) connection, in autocommit mode or not, idle or in a transaction."""

    kind = "dbapi"
    database = DATABASE
    default_label = "psycopg"

    def run(self, sql: str, bounds: QueryBounds) -> Fetched:
        max_rows, timeout_s, read_only, policy, max_bytes = bounds.parts()
        conn = self.raw
        deadline = deadline_after(timeout_s)
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

            def execute(q: str) -> list[tuple[Any, ...]]:
                cur.execute(q)
                return cur.fetchall() if cur.description else []

            try:
                if timeout_s:
                    cur.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                if policy is not None:
                    pin_string_syntax(execute, sql)
                if read_only and policy is not None:
                    postgres_walls(execute, policy, conn, self.label)
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


_PG_SYSTEM = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)


def _read_catalog(db: DB, timeout_s: float) -> Schema:
    (default_db,) = db.rows("SELECT current_schema()", timeout_s)[0]
    # pg_catalog rather than information_schema: the latter's views are several times slower
    # on large catalogs. Arrays travel as JSON text so every driver returns them alike.
    cols = db.rows(
        "SELECT n.nspname, c.relname, c.relkind, a.attname, "
        "format_type(a.atttypid, a.atttypmod), NOT a.attnotnull "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition "
        "AND a.attnum > 0 AND NOT a.attisdropped "
        f"AND {_PG_SYSTEM} AND has_schema_privilege(n.oid, 'USAGE') "
        "ORDER BY n.nspname, c.relname, a.attnum",
        timeout_s,
    )
    cons = db.rows(
        "SELECT n.nspname, c.relname, con.contype, "
        "array_to_json(ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i) "
        "  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i))::text, "
        "fn.nspname, fc.relname, "
        "array_to_json(ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i) "
        "  JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i))::text "
        "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_class fc ON fc.oid = con.confrelid "
        "LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace "
        f"WHERE con.contype IN ('p', 'f') AND {_PG_SYSTEM}",
        timeout_s,
    )
    col_rows = [
        (s, t, "view" if k in ("v", "m") else "table", c, ty, nullable)
        for s, t, k, c, ty, nullable in cols
    ]
    pk_rows = [(s, t, json.loads(c)) for s, t, kind, c, _, _, _ in cons if kind == "p"]
    fk_rows = [
        (s, t, json.loads(c), rs, rt, json.loads(rc))
        for s, t, kind, c, rs, rt, rc in cons
        if kind == "f"
    ]
    return assemble("postgres", default_db, col_rows, pk_rows, fk_rows)


# the tables and views the current role may read: a schema it may use, SELECT on any column
_READABLE = (
    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
    f"AND {_PG_SYSTEM} AND has_schema_privilege(n.oid, 'USAGE') "
    "AND has_any_column_privilege(c.oid, 'SELECT')"
)


def readable_tables(db: DB, policy: SqlPolicy, timeout_s: float) -> set[tuple[str, str]]:
    """The ``(schema, table)`` pairs `policy`'s role may read, asked as that role inside the
    walls generated SQL meets: the catalog is read as the connection's login, which may see
    schemas and tables the role cannot (the MCP tools show only what the role reads)."""
    fetched = db.query(_READABLE, timeout_s=timeout_s, read_only=True, policy=policy)
    return {(str(r[0]), str(r[1])) for r in fetched.rows}


def postgres_folded_names(sql: str, stmt: exp.Expr, schema: Schema) -> tuple[str, list[str]] | None:
    """``(sql, names)``: `sql` with each unquoted table or column name that PostgreSQL would
    fold to a name the catalog lacks, but that the catalog has in exactly one other case,
    quoted as the catalog spells it; None when there is none.

    Names the statement defines itself (CTEs, table and column aliases) are left alone: they
    fold the same way at their definition and at their use. A column's table qualifier that
    names a rewritten table is quoted with it.
    """
    tables: dict[str, set[str]] = {}
    for t in schema.tables:
        tables.setdefault(t.name.lower(), set()).add(t.name)
    columns: dict[str, set[str]] = {}
    for t in schema.tables:
        for c in t.columns:
            columns.setdefault(c.name.lower(), set()).add(c.name)
    defined = {cte.alias_or_name.lower() for cte in stmt.find_all(exp.CTE)}
    defined |= {a.alias.lower() for a in stmt.find_all(exp.Alias) if a.alias}
    defined |= {t.alias.lower() for t in stmt.find_all(exp.Table) if t.alias}
    edits: list[tuple[int, int, str]] = []
    names: list[str] = []

    def spelled(ident: exp.Identifier, known: dict[str, set[str]]) -> str | None:
        """The catalog's one spelling of an unquoted name it lacks as folded, if any."""
        folded = ident.name.lower()
        options = known.get(folded, set())
        if ident.quoted or folded in defined or folded in options or len(options) != 1:
            return None
        return next(iter(options))

    def fix(ident: exp.Identifier, name: str) -> None:
        where_is = span(ident)
        if where_is is None:
            return
        edits.append((where_is[0], where_is[1], '"' + name.replace('"', '""') + '"'))
        if name not in names:
            names.append(name)

    for ref in stmt.find_all(exp.Table):
        if isinstance(ref.this, exp.Identifier) and (name := spelled(ref.this, tables)) is not None:
            fix(ref.this, name)
    for col in stmt.find_all(exp.Column):
        if (
            isinstance(col.this, exp.Identifier)
            and (name := spelled(col.this, columns)) is not None
        ):
            fix(col.this, name)
        qualifier = col.args.get("table")
        if (
            isinstance(qualifier, exp.Identifier)
            and (name := spelled(qualifier, tables)) is not None
        ):
            fix(qualifier, name)
    return (replace_spans(sql, edits), names) if edits else None


# -- walls -------------------------------------------------------------------------------------


def pin_string_syntax(run: Callable[[str], list[tuple[Any, ...]]], sql: str) -> None:
    """Inside our (sub)transaction, before generated SQL: strings read as the guard read them.

    With ``standard_conforming_strings = off`` (a legacy per-database or per-role setting)
    PostgreSQL reads ``\\'`` inside '...' as an escaped quote, so a statement the guard saw as
    one SELECT can be several (``COMMIT; CREATE ...``) under the simple query protocol.
    ``SET LOCAL`` ends with the transaction or savepoint; the value is read back, so a server
    that ignores it refuses the statement instead.
    """
    run("SET LOCAL standard_conforming_strings = on")
    rows = run("SHOW standard_conforming_strings")
    if not rows or str(rows[0][0]).lower() != "on":
        raise Refused(
            "Refused: standard_conforming_strings could not be set on for this statement, so "
            "PostgreSQL might read its strings differently from the check; nothing ran. "
            "Ask the database owner to set standard_conforming_strings = on.",
            sql=sql,
        )


# the connections already warned about, held weakly: a set of id()s took a new connection for
# one that was gone when it got the old one's address, and never warned of it (a flaky test)
_SUPERUSER_WARNED: weakref.WeakSet[Any] = weakref.WeakSet()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def postgres_walls(
    run: Callable[[str], list[tuple[Any, ...]]], policy: SqlPolicy, key: Any, label: str
) -> None:
    """Inside our (sub)transaction, before generated SQL: read-only, and the configured role.

    SET LOCAL ends with the transaction or savepoint, so the user's session keeps its own
    settings. A superuser can read and write server files (COPY, pg_read_file) even in a read-only
    transaction; only a role without those rights makes the database itself refuse them.
    """
    run("SET LOCAL transaction_read_only = on")
    if policy.postgres_role:
        run(f"SET LOCAL ROLE {_quote_ident(policy.postgres_role)}")
        return
    if key in _SUPERUSER_WARNED:
        return
    with contextlib.suppress(TypeError):  # no weak reference: warned each time, never less
        _SUPERUSER_WARNED.add(key)
    rows = run("SELECT rolsuper, current_user FROM pg_roles WHERE rolname = current_user")
    if rows and rows[0][0]:
        warnings.warn(
            f"generated SQL runs on {label} as the superuser {rows[0][1]!r}: a read-only "
            "transaction does not stop a superuser from reading server files or signalling "
            f"other sessions. Set {policy.role_setting} to a role without superuser rights "
            "that can SELECT your tables.",
            SuperuserWarning,
            stacklevel=2,
        )


# -- fetching --------------------------------------------------------------------------------

# Generated text that DECLARE can take: a query (after comments and parentheses).
_QUERY_START = re.compile(
    r"^\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*(?:\(\s*)*(?:SELECT|WITH|VALUES|TABLE)\b",
    re.IGNORECASE | re.DOTALL,
)
DECLARE_PREFIX = "rsql_sql_ai_cursor_"
_CURSOR_IDS = itertools.count(1)


class _Declared:
    """A cursor declared by hand (``DECLARE``), read with ``FETCH FORWARD``: what a driver's own
    server-side cursor does, for the driver that will not make one here."""

    def __init__(self, cur: Any, name: str) -> None:
        self.cur, self.name = cur, name
        self.description = None  # known after the first FETCH, as with psycopg2's own

    def fetchmany(self, n: int) -> list[Any]:
        self.cur.execute(f'FETCH FORWARD {int(n)} FROM "{self.name}"')
        self.description = self.cur.description
        rows: list[Any] = self.cur.fetchall()
        return rows

    def close(self) -> None:
        self.cur.close()


def _driver(raw: Any) -> str:
    mod = type(raw).__module__
    if mod.startswith("psycopg2"):
        return "psycopg2"
    if mod == "psycopg" or mod.startswith("psycopg."):
        return "psycopg"
    return ""


def in_transaction(raw: Any) -> bool:
    """Whether a psycopg (3 or 2) connection is inside a transaction (not idle)."""
    info = getattr(raw, "info", None)
    status = getattr(info, "transaction_status", None)  # psycopg 3
    if status is None and hasattr(raw, "get_transaction_status"):  # psycopg2
        status = raw.get_transaction_status()
    return status is not None and int(status) != 0  # 0: idle, outside a transaction


def postgres_fetch(
    raw: Any,
    sql: str,
    *,
    max_rows: int | None,
    max_bytes: int | None,
    deadline: float | None,
    timeout_s: float | None,
    generated: bool,
) -> Fetched:
    """Run `sql` on a raw psycopg connection, inside the transaction the caller opened.

    `generated`: a model's statement. A query then runs as a server-side cursor, and psycopg 3
    sends anything else with the extended protocol, which refuses more than one statement.
    """
    driver = _driver(raw)
    query = generated and bool(_QUERY_START.match(sql)) and in_transaction(raw)  # DECLARE needs one
    # the driver's own server-side cursor; psycopg2 refuses one in autocommit mode (JupySQL's
    # connections), even inside the transaction we began, so there we declare it ourselves
    named = query and (driver == "psycopg" or (driver == "psycopg2" and not raw.autocommit))
    name = f"{DECLARE_PREFIX}{next(_CURSOR_IDS)}"
    cur = raw.cursor(name=name) if named else raw.cursor()
    try:
        if query and not named:
            cur.execute(f'DECLARE "{name}" CURSOR WITHOUT HOLD FOR {sql}')
            cur = _Declared(cur, name)
        elif generated and driver == "psycopg" and not named:
            cur.execute(sql, prepare=True)
        else:
            cur.execute(sql)
        return fetch_bounded(cur, max_rows, max_bytes, deadline, timeout_s)
    finally:
        try:
            cur.close()
        except Exception:  # the transaction failed: the caller rolls it back, cursor and all
            pass
