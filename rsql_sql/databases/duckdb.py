"""DuckDB: the connection, its walls, its functions, its catalog.

Walls around generated SQL: DuckDB's own parser (``json_serialize_sql``) must see exactly one
SELECT whose functions and table functions are allowlisted and whose table names are not file
paths; it runs in a READ ONLY transaction, rolled back, under a ``memory_limit`` sized from the
result bound. DuckDB has no statement timeout: a timer thread calls ``interrupt()``.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from rsql_sql.errors import BadConnection, QueryTimeout, Refused

from ..catalog import assemble
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
    run_cursor,
)
from .functions import database_function_names, table_function_allowed, width_problem

if TYPE_CHECKING:
    from ..catalog import Schema
    from ..policy import SqlPolicy

__all__ = ["DATABASE", "DuckDB", "DuckDBDatabase", "duckdb_parser_check"]

# A database file opened by URL: no files but the database, no network, no extensions, and no
# way to change that from SQL (a wall behind the parser check, as for the DataFrames)
_FILE_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
# what a DuckDB may have attached and still be read on a keystroke (local files only)
_LOCAL_ATTACHED = ("duckdb", "sqlite")


class DuckDBDatabase(Database):
    name = "duckdb"
    title = "DuckDB"
    standard_quotes = True
    functions: ClassVar[str] = """
    acos add age any_value approx_count_distinct approx_quantile arg_max arg_min argmax argmin
    array_agg array_length array_value array_extract array_slice array_contains array_distinct
    array_sort array_reverse array_concat array_position array_has array_to_string
    list list_aggregate list_avg list_concat list_contains list_distinct list_extract
    list_filter list_has list_max list_min list_position list_reverse list_slice list_sort
    list_sum list_transform list_unique list_value list_apply list_reduce list_count
    bit_count bit_length bool_and bool_or cardinality chr concat_ws contains cos count_star
    count_if countif current_date date_add date_diff date_part date_sub date_trunc datediff
    datepart datesub datetrunc day dayname dayofmonth dayofweek dayofyear decade divide epoch
    epoch_ms epoch_us epoch_ns era even factorial favg first fsum gamma gcd
    greatest_common_divisor hash hour ifnull instr isfinite isinf isnan isodow isoyear
    jaccard jaro_similarity jaro_winkler_similarity json_extract json_extract_string
    json_array_length json_keys json_object json_array json_type json_valid json_structure
    to_json last last_day lcase lcm len levenshtein lgamma list map median microsecond
    millennium millisecond minute mismatches mode month monthname nanosecond nextafter now
    octet_length ord position pow prefix quantile quantile_cont quantile_disc quarter
    regexp_extract regexp_extract_all regexp_full_match regexp_matches regexp_replace
    regexp_split_to_array second sha256 sin split split_part starts_with strftime
    string_split string_to_array strip_accents strlen strpos strptime struct_extract
    struct_pack suffix tan time_bucket timezone to_days to_hours to_minutes to_seconds
    to_timestamp today trunc try_cast try_strptime typeof ucase unicode unnest uuid
    gen_random_uuid week weekday weekofyear year yearweek row format printf fmod histogram
    product kurtosis skewness entropy regr_slope regr_intercept regr_r2 regr_count
    make_date make_time make_timestamp make_timestamptz current_timestamp get_current_timestamp
    range generate_series bool_or array_filter array_transform array_apply coalesce
    string_agg group_concat listagg nullif log2 atan atan2 asin cot cbrt sign signbit
    to_years to_months to_weeks to_milliseconds to_microseconds array_cat list_cat"""
    table_functions: ClassVar[str] = "range generate_series unnest"
    format_widths = True
    # As a scalar (not in FROM), range / generate_series build the whole list at once, which
    # neither interrupt() nor memory_limit stops (range(3e8): 14 GB, 68 s past a 5 s timeout).
    series_as_lists = True
    backslash_escapes_vary = False
    url_schemes = ("duckdb",)
    file_header = (8, b"DUCK")
    url_example = "duckdb:///PATH"

    def connect(self, obj: Any) -> DB | None:
        mod = type(obj).__module__
        if mod.startswith(("duckdb", "_duckdb")) and hasattr(obj, "execute"):
            return DuckDB(obj)
        return None

    def open_read_only(self, url: str, label: str) -> DB:
        path = file_of_url(url, "duckdb")
        try:
            import duckdb
        except ImportError:
            raise BadConnection(
                "a DuckDB file needs DuckDB: pip install 'rsql-assistant[duckdb]'"
            ) from None
        try:
            conn = duckdb.connect(str(path), read_only=True, config=_FILE_CONFIG)
        except Exception as e:
            raise BadConnection(f"cannot open {path} as DuckDB: {e}") from None
        return DuckDB(conn, label=label)

    def read_catalog(self, db: DB, timeout_s: float) -> Schema:
        return _read_catalog(db, timeout_s)

    def reads_locally(self, db: DB, timeout_s: float) -> bool:
        kinds = db.rows(
            "SELECT DISTINCT type FROM duckdb_databases() WHERE NOT internal", timeout_s
        )
        return all(str(k).lower() in _LOCAL_ATTACHED for (k,) in kinds)

    def query_sqlalchemy(
        self, db: Any, c: Any, sql: str, bounds: QueryBounds, *, own_transaction: bool
    ) -> Fetched:
        raw = c.connection.driver_connection
        policy, timeout_s = bounds.policy, bounds.timeout_s
        if bounds.guarded and policy is not None:
            duckdb_parser_check(lambda q: run_cursor(c, q, None).rows, sql, policy)
        cap = _memory_cap(raw, bounds.max_bytes if policy is not None else None)
        with cap, _interrupt_after(raw, timeout_s) as st:
            try:
                return run_cursor(
                    c, sql, bounds.max_rows, bounds.max_bytes, deadline_after(timeout_s), timeout_s
                )
            except Exception as e:
                if st["fired"]:
                    raise QueryTimeout(f"statement cancelled after {timeout_s:g} s") from e
                raise


DATABASE = DuckDBDatabase()


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
        # and gone before we return: a thread that still holds the connection when the
        # interpreter exits makes DuckDB abort the process ("terminate called ...", seen as
        # rsql-eval's exit -6; duckdb/duckdb#13904). After cancel it ends at once.
        timer.join()


# DuckDB runs inside the kernel: a sort, join or aggregate of a generated query may take this
# many times the result bound above what the database already holds (then "Out of Memory").
_HEADROOM = 4


@contextlib.contextmanager
def _memory_cap(conn: Any, max_bytes: int | None) -> Iterator[None]:
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
        conn.execute(f"SET memory_limit = '{int(held) + _HEADROOM * max_bytes}B'")
    except Exception:  # locked configuration, or a DuckDB without duckdb_memory()
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            conn.execute(f"SET memory_limit = '{str(old).replace(chr(39), '')}'")


class DuckDB(DriverDB):
    kind = "duckdb"
    database = DATABASE
    default_label = "duckdb"

    def for_thread(self) -> DB | None:
        # a cursor is a connection of its own to the same database: safe beside this one
        try:
            return for_a_thread(DuckDB(self.raw.cursor(), label=self.label))
        except Exception:  # a closed connection
            return None

    def identity(self) -> str | None:
        def find() -> str | None:
            try:
                row = self.raw.execute(
                    "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
                ).fetchone()
            except Exception:  # an old DuckDB, a closed connection
                return None
            return str(row[0]) if row and row[0] else None

        path = database_file(self.raw, find)
        return file_identity("duckdb", path) if path else None

    def run(self, sql: str, bounds: QueryBounds) -> Fetched:
        max_rows, timeout_s, read_only, policy, max_bytes = bounds.parts()
        guarded = read_only and policy is not None
        conn = self.raw
        if guarded and policy is not None:
            duckdb_parser_check(lambda q: conn.execute(q).fetchall(), sql, policy)
        with _memory_cap(conn, max_bytes if policy is not None else None):
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
                    return fetch_bounded(
                        cur, max_rows, max_bytes, deadline_after(timeout_s), timeout_s
                    )
                except (duckdb.InterruptException, RuntimeError) as e:
                    if st["fired"]:
                        raise QueryTimeout(f"statement cancelled after {timeout_s:g} s") from e
                    raise
        finally:
            if own_tx:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")


def _read_catalog(db: DB, timeout_s: float) -> Schema:
    (default_db,) = db.rows("SELECT current_schema()", timeout_s)[0]
    # Current database plus temp (where registered DataFrames live); not other attached ones.
    where = "table_catalog IN (current_database(), 'temp')"
    cols = db.rows(
        "SELECT c.table_schema, c.table_name, t.table_type, c.column_name, c.data_type, "
        "c.is_nullable = 'YES' "
        "FROM information_schema.columns AS c JOIN information_schema.tables AS t "
        "USING (table_catalog, table_schema, table_name) "
        f"WHERE c.{where} ORDER BY c.table_schema, c.table_name, c.ordinal_position",
        timeout_s,
    )
    cons = db.rows(
        "SELECT schema_name, table_name, constraint_type, constraint_column_names, "
        "referenced_table, referenced_column_names FROM duckdb_constraints() "
        "WHERE constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY') "
        "AND database_name IN (current_database(), 'temp')",
        timeout_s,
    )
    col_rows = [
        (s, t, "view" if kind == "VIEW" else "table", c, ty, nullable)
        for s, t, kind, c, ty, nullable in cols
    ]
    pk_rows = [(s, t, list(c)) for s, t, kind, c, _, _ in cons if kind == "PRIMARY KEY"]
    fk_rows = [
        (s, t, list(c), s, rt, list(rc or []))
        for s, t, kind, c, rt, rc in cons
        if kind == "FOREIGN KEY"
    ]
    return assemble("duckdb", default_db, col_rows, pk_rows, fk_rows)


# -- DuckDB's own parser as a wall -------------------------------------------------------------

_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN(?:\s+ANALY[SZ]E)?\s+", re.IGNORECASE)
_PATHLIKE = re.compile(r"[/\\:~*?]|\.[A-Za-z0-9]{1,8}$")


def _duck_refused(why: str, sql: str) -> Refused:
    return Refused(f"Refused by DuckDB's own parser: {why}; nothing ran.", sql=sql)


def _duck_args(node: dict[str, Any]) -> list[Any]:
    """A function node's argument expressions (DuckDB 2 ``arguments``, earlier ``children``)."""
    raw = node.get("arguments") or node.get("children") or []
    return [a.get("expression", a) if isinstance(a, dict) else a for a in raw]


def _duck_bound(node: Any) -> int | float | str | None:
    """A constant argument's value, or an upper bound of it (least(x, 100)); None if unknown."""
    if not isinstance(node, dict):
        return None
    if node.get("class") == "CAST":
        return _duck_bound(node.get("child"))
    if node.get("class") == "CONSTANT":
        literal = node.get("literal")
        if isinstance(literal, dict):  # DuckDB 2: {"kind": "INTEGER", "text": "3"}
            kind, text = str(literal.get("kind", "")), literal.get("text")
            value: Any = text
            if kind != "STRING" and isinstance(text, str):
                try:
                    value = int(text)
                except ValueError:
                    try:
                        value = float(text)
                    except ValueError:
                        return None
        else:  # earlier: {"value": {"is_null": false, "value": 3, ...}}
            v = node.get("value") or {}
            value = None if v.get("is_null") else v.get("value")
        return value if isinstance(value, int | float | str) else None
    if str(node.get("function_name", "")).lower() == "least":
        nums = [b for a in _duck_args(node) if isinstance(b := _duck_bound(a), int | float)]
        return min(nums) if nums else None
    return None


def duckdb_parser_check(
    run: Callable[[str], list[tuple[Any, ...]]], sql: str, policy: SqlPolicy
) -> None:
    """DuckDB's own parser must see one SELECT calling only allowlisted functions.

    `run(text)` runs a catalog query on the same database. ``json_serialize_sql`` refuses
    anything but SELECT and lists every function, table function and table the statement names,
    as DuckDB itself reads them: differences between sqlglot's parser and DuckDB's cannot hide a
    call.
    """
    text = _EXPLAIN_PREFIX.sub("", sql, count=1)
    quoted = "'" + text.replace("'", "''") + "'"
    try:
        (raw,) = run(f"SELECT json_serialize_sql({quoted})")[0]
    except Exception as e:  # no json extension: fail closed
        raise _duck_refused(
            f"json_serialize_sql is unavailable ({type(e).__name__})", sql
        ) from None
    tree = json.loads(raw)
    if tree.get("error"):
        raise _duck_refused(str(tree.get("error_message") or "not a SELECT"), sql)
    if len(tree.get("statements") or []) != 1:
        raise _duck_refused("more than one statement", sql)
    names = database_function_names(DATABASE, policy.allowed_functions)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for v in node:
                if isinstance(v, dict | list):  # leaves name nothing: no call for each
                    walk(v)
            return
        if not isinstance(node, dict):
            return
        if node.get("type") == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            table_fn = str(fn.get("function_name") or "")
            if fn.get("schema") or not table_function_allowed(
                table_fn, DATABASE, policy.allowed_functions
            ):
                raise _duck_refused(f"table function {table_fn}() is not allowed", sql)
            walk(fn.get("children") or fn.get("arguments"))
            return
        if node.get("type") == "BASE_TABLE" and _PATHLIKE.search(str(node.get("table_name", ""))):
            raise _duck_refused(f"table name {node.get('table_name')!r} looks like a file", sql)
        name = node.get("function_name")
        if isinstance(name, str):
            operator = node.get("is_operator") or not re.search(r"\w", name)
            if node.get("schema") or node.get("catalog"):
                raise _duck_refused(f"schema-qualified function {name}()", sql)
            if not operator and name.lower() not in names:
                raise _duck_refused(f"{name}() is not on the allowlist", sql)
            if not operator:
                args = [_duck_bound(a) for a in _duck_args(node)]
                too_big = width_problem(name, args, DATABASE)
                if too_big:
                    raise _duck_refused(too_big, sql)
        for v in node.values():
            if isinstance(v, dict | list):
                walk(v)

    walk(tree["statements"])
