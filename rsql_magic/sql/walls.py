"""The database-side read-only walls generated SQL meets, behind the guard.

A mistake of the guard (:mod:`rsql_magic.sql.guard`) is still harmless when the database itself
refuses what a generated statement must not do. :mod:`rsql_magic.sql.connections` puts these in
place around each generated statement (``query(..., policy=...)``):

- SQLite: ``sqlite_authorizer``, an authorizer that allows only reads and allowlisted functions.
- DuckDB: ``duckdb_parser_check``, DuckDB's own parser must see one SELECT calling only
  allowlisted functions.
- PostgreSQL: ``postgres_walls``, a read-only (sub)transaction and the configured role.
"""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from collections.abc import Callable
from typing import Any

from rsql_magic.errors import Refused, SuperuserWarning

from .functions import database_function_names, table_function_allowed, width_problem
from .policy import SqlPolicy

__all__ = [
    "duckdb_parser_check",
    "pin_string_syntax",
    "postgres_walls",
    "sqlite_authorizer",
]


_SQLITE_READS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}


def sqlite_authorizer(names: frozenset[str]) -> Callable[..., int]:
    """Allow reads and allowlisted functions; deny everything else (ATTACH and DETACH, which
    ``VACUUM INTO`` also needs, every PRAGMA, writes, transactions, virtual table changes)."""

    def authorize(action: int, arg1: str | None, arg2: str | None, _db: Any, _trig: Any) -> int:
        if action in _SQLITE_READS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_OK if (arg2 or "").lower() in names else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_UPDATE and arg1 in ("sqlite_master", "sqlite_temp_master"):
            # preparing a table-valued function (json_each) registers it in the schema;
            # query_only still stops any real write
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return authorize


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
    names = database_function_names("duckdb", policy.allowed_functions)

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
                table_fn, "duckdb", policy.allowed_functions
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
                too_big = width_problem(name, args, "duckdb")
                if too_big:
                    raise _duck_refused(too_big, sql)
        for v in node.values():
            if isinstance(v, dict | list):
                walk(v)

    walk(tree["statements"])


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


_SUPERUSER_WARNED: set[int] = set()


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
    if id(key) in _SUPERUSER_WARNED:
        return
    _SUPERUSER_WARNED.add(id(key))
    rows = run("SELECT rolsuper, current_user FROM pg_roles WHERE rolname = current_user")
    if rows and rows[0][0]:
        warnings.warn(
            f"%%sql_ai runs generated SQL on {label} as the superuser {rows[0][1]!r}: a "
            "read-only transaction does not stop a superuser from reading server files or "
            "signalling other sessions. Set %config SqlAIMagics.postgres_role = '<role>' to a "
            "role without superuser rights that can SELECT your tables.",
            SuperuserWarning,
            stacklevel=2,
        )
