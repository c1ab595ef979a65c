"""Read-only guard: an allowlist decided on the parsed statement, never on the text.

Text checks are easy to fool (``WITH d AS (DELETE ... RETURNING *) SELECT ...``, comments,
``EXPLAIN ANALYZE DELETE``); the parse tree is not. A statement passes only when it is one
SELECT (with WITH and set operations), EXPLAIN of such a statement, SHOW or DESCRIBE, and when
every node of its tree is of a kind known to only read and every function it calls is on the
database's allowlist of pure functions (:mod:`rsql_sql.databases.functions`). More than one
statement is always refused. The database enforces read-only as well (each database's walls, in
:mod:`rsql_sql.databases`), so a mistake here is still harmless.
"""

from __future__ import annotations

import functools
import re

from sqlglot import Token, Tokenizer, TokenType, exp
from sqlglot.dialects.dialect import Dialect

from rsql_sql.errors import Position, Refused

from ..databases import Database, database_for
from ..databases.functions import (
    MAX_GENERATED_WIDTH,
    READ_ONLY_NODES,
    call_width,
    function_allowed,
    function_names,
    table_function_allowed,
    unsafe_reason,
    width_problem,
)
from ..parse import explained_statements, explained_text
from ..token_pointers import pointer

__all__ = ["check_backslash_quotes", "check_statements", "statement_kind", "ALLOWED"]

ALLOWED = "SELECT, WITH ... SELECT, EXPLAIN, SHOW and DESCRIBE"

# Node types that change data, schema, session or files: named in refusals as writes.
_WRITE_NAMES = (
    "Insert Update Delete Merge Create Drop Alter AlterColumn TruncateTable Copy Set Pragma "
    "Into Grant Revoke Transaction Commit Rollback LoadData Attach Detach Use Cache Uncache "
    "Refresh Kill Install Export Analyze Comment Vacuum Call Returning Lock Put Get Execute "
    "ExecuteSql Declare"
).split()
_WRITE_NODES: tuple[type[exp.Expr], ...] = tuple(
    getattr(exp, n) for n in _WRITE_NAMES if isinstance(getattr(exp, n, None), type)
)

# SHOW / DESCRIBE that sqlglot keeps as text: only a plain (dotted) name, or nothing.
_PLAIN_NAME = re.compile(r"^\s*(?:[A-Za-z_][\w$]*(?:\s*\.\s*[A-Za-z_][\w$]*)*)?\s*;?\s*$")
# Table names that a database may read as a file or URL (DuckDB's replacement scans).
_PATHLIKE = re.compile(r"[/\\:~*?]|\.[A-Za-z0-9]{1,8}$")


def statement_kind(stmt: exp.Expr) -> str:
    """A short upper-case name: SELECT, DELETE, DROP TABLE, EXPLAIN ..."""
    if isinstance(stmt, exp.Command):
        return str(stmt.this).upper()
    if isinstance(stmt, exp.Drop | exp.Create):
        kind = stmt.args.get("kind")
        return f"{stmt.key.upper()} {kind}".strip() if kind else stmt.key.upper()
    return _KIND_NAMES.get(stmt.key, stmt.key.upper())


_KIND_NAMES = {
    "truncatetable": "TRUNCATE TABLE",
    "altercolumn": "ALTER COLUMN",
    "loaddata": "LOAD DATA",
    "lock": "FOR UPDATE / FOR SHARE (row locks)",
    "returning": "RETURNING",
}


def _describe(stmt: exp.Expr, dialect: str) -> str:
    text = stmt.sql(dialect)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(
    stmt: exp.Expr,
    dialect: str,
    why: str,
    sql: str | None = None,
    node: exp.Expr | None = None,
) -> Refused:
    """A refusal of `stmt`, pointing at `node`'s token in `sql` when its position is known."""
    position = _position(sql, node) if node is not None else None
    where = pointer(sql, position) if sql and position else ""
    return Refused(
        f"Refused: {why}. %%sql_ai runs only {ALLOWED} unless --allow-write is given; "
        f"nothing ran.{where}",
        sql=stmt.sql(dialect),
        position=position,
    )


def _position(sql: str | None, node: exp.Expr) -> Position | None:
    """Where `node`'s token (or its name's) is in `sql`, when the parser recorded it."""
    if not sql:
        return None
    meta = node.meta or {}
    if "start" not in meta:
        ident = node.this if isinstance(node.this, exp.Identifier) else node.find(exp.Identifier)
        meta = (ident.meta or {}) if ident is not None else {}
    if "start" not in meta or "end" not in meta:
        return None
    return Position(meta.get("line", 1), meta.get("col", 1), meta["start"], meta["end"])


def _decode_unicode_escapes(text: str) -> str:
    """PostgreSQL's ``U&"..."`` escapes (``\\XXXX``, ``\\+XXXXXX``), for naming what was meant."""

    def one(m: re.Match[str]) -> str:
        code = m.group(1) or m.group(2)
        if code is None:
            return "\\"
        try:
            return chr(int(code, 16))
        except ValueError:
            return m.group(0)

    return re.sub(r"\\(?:([0-9A-Fa-f]{4})|\+([0-9A-Fa-f]{6})|\\)", one, text)


def _check_unicode_escapes(sql: str | None, dialect: str) -> None:
    """Refuse ``U&"..."`` / ``U&'...'``: sqlglot reads ``U&"f"(x)`` as ``U & "f"(x)``, so the
    function the database would call is hidden behind escapes. Analytic SQL never needs them."""
    if not sql or "&" not in sql:
        return
    from sqlglot.dialects.dialect import Dialect

    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(sql)
    except Exception:
        return  # the parser has already accepted it; nothing more to learn here
    for i, tok in enumerate(tokens):
        if tok.token_type == TokenType.UNICODE_STRING:
            position = Position(tok.line, tok.col, tok.start, tok.end)
            raise Refused(
                "Refused: U&'...' Unicode escapes are not accepted in generated SQL; "
                f"nothing ran.{pointer(sql, position)}",
                sql=sql,
                position=position,
            )
        if (
            tok.text.upper() == "U"
            and i + 2 < len(tokens)
            and tokens[i + 1].token_type == TokenType.AMP
            and tokens[i + 1].start == tok.end + 1
            and sql[tokens[i + 1].end + 1 : tokens[i + 1].end + 2] in ('"', "'")  # &" or &'
        ):
            target = tokens[i + 2]
            meant = _decode_unicode_escapes(target.text)
            called = i + 3 < len(tokens) and tokens[i + 3].token_type == TokenType.L_PAREN
            what = f"a call of {meant}()" if called else f"the name {meant!r}"
            position = Position(tok.line, tok.col, tok.start, target.end + 1)
            raise Refused(
                f'Refused: U&"..." Unicode escapes hide {what}; escaped identifiers are not '
                f"accepted in generated SQL; nothing ran.{pointer(sql, position)}",
                sql=sql,
                position=position,
            )


def _function_refusal(
    root: exp.Expr, node: exp.Func, dialect: str, sql: str | None, table: bool = False
) -> Refused:
    names = sorted(function_names(node))
    name = node.name if isinstance(node, exp.Anonymous) else node.sql_name().lower()
    name = _decode_unicode_escapes(name) if "\\" in name else name
    reason = next((r for n in [name, *names] if (r := unsafe_reason(n))), None)
    kind = "table function" if table else "function"
    if reason:
        why = f"{name}() {reason}"
    else:
        why = f"{name}() is not a known read-only {kind} for {dialect}"
    position = _position(sql, node)
    where = pointer(sql, position) if sql and position else ""
    return Refused(
        f"Refused: {why}; only pure scalar, aggregate and window functions on the allowlist "
        "run (add a safe one with %config SqlAIMagics.allowed_functions; --allow-write does "
        f"not lift this), so nothing ran.{where}",
        sql=root.sql(dialect),
        position=position,
    )


def _bound(node: exp.Expr | None) -> int | float | str | None:
    """A literal argument's value, or an upper bound of it (least(x, 100)); None when unknown."""
    if isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        return _bound(node.this)
    if isinstance(node, exp.Neg):
        inner = _bound(node.this)
        return -inner if isinstance(inner, int | float) else None
    if isinstance(node, exp.Literal):
        if node.is_string:
            text: str = node.this
            return text
        try:
            return int(node.this)
        except ValueError:
            try:
                return float(node.this)
            except ValueError:
                return None
    if isinstance(node, exp.Least) or (
        isinstance(node, exp.Anonymous) and node.name.lower() == "least"
    ):
        nums = [b for a in _call_args(node) if isinstance(b := _bound(a), int | float)]
        return min(nums) if nums else None
    return None


def _call_args(node: exp.Func) -> list[exp.Expr | None]:
    """A call's arguments in the order the database takes them."""
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    if isinstance(node, exp.Repeat):
        return [node.this, node.args.get("times")]
    if isinstance(node, exp.Pad):
        return [node.this, node.expression, node.args.get("fill_pattern")]
    if isinstance(node, exp.GenerateSeries):
        args = [node.args.get("start"), node.args.get("end"), node.args.get("step")]
        return args[:2] if args[2] is None else args
    return [node.this, *node.expressions] if isinstance(node.this, exp.Expression) else []


def _call_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name
    if isinstance(node, exp.Pad):
        return "lpad"
    if isinstance(node, exp.GenerateSeries):
        return "generate_series"
    return node.sql_name().lower()


def _call_bounds(node: exp.Func) -> list[int | float | str | None]:
    return [_bound(a) for a in _call_args(node)]


def _nested_width(node: exp.Func, database: Database) -> str | None:
    """Why `node` builds too wide a value with the calls around it, or None: widths multiply
    down a chain of builders, and a lambda applies its body once per element of a list of
    any length (counted as ``MAX_GENERATED_WIDTH``)."""
    width = call_width(_call_name(node), _call_bounds(node), database)
    if width is None:
        return None
    outer: exp.Expr | None = node.parent
    while outer is not None:
        if isinstance(outer, exp.Lambda):
            width *= MAX_GENERATED_WIDTH
        elif isinstance(outer, exp.Func):
            width *= call_width(_call_name(outer), _call_bounds(outer), database) or 1
        if width > MAX_GENERATED_WIDTH:
            # a node that is neither (a Select...) never multiplies; named for safety's sake
            where = (
                "inside a lambda"
                if isinstance(outer, exp.Lambda)
                else f"inside {_call_name(outer)}()"
                if isinstance(outer, exp.Func)
                else f"inside {outer.key}"
            )
            return (
                f"{_call_name(node)}() {where} builds a value of more than "
                f"{MAX_GENERATED_WIDTH:,} in one step (nested widths multiply); build it "
                "in one call with a literal width"
            )
        outer = outer.parent
    return None


# Typed row generators that only compute (no files, no network).
_ROW_GENERATORS = tuple(
    c
    for n in ("Unnest", "Explode", "GenerateSeries", "ExplodingGenerateSeries")
    if isinstance(c := getattr(exp, n, None), type)
)


def _table_function_ok(node: exp.Func, database: Database, extra: frozenset[str]) -> bool:
    if isinstance(node, exp.Anonymous):
        return table_function_allowed(node.name, database, extra)
    if isinstance(node, _ROW_GENERATORS):
        return True
    return any(table_function_allowed(n, database, extra) for n in function_names(node))


def _check_tree(
    root: exp.Expr,
    dialect: str,
    allow_write: bool,
    extra: frozenset[str],
    sql: str | None,
) -> None:
    database = database_for(dialect)
    for node in root.walk():
        if isinstance(node, exp.Func):
            if isinstance(node, exp.Anonymous) and not isinstance(node.this, str | exp.Identifier):
                raise _function_refusal(root, node, dialect, sql)
            parent = node.parent
            if isinstance(parent, exp.Table) and node.arg_key == "this":
                if not _table_function_ok(node, database, extra):
                    raise _function_refusal(root, node, dialect, sql, table=True)
            elif not function_allowed(node, database, extra):
                raise _function_refusal(root, node, dialect, sql)
            in_from = isinstance(parent, exp.Table) and node.arg_key == "this"
            too_big = width_problem(
                _call_name(node), _call_bounds(node), database, scalar=not in_from
            )
            if too_big:
                raise _refuse(root, dialect, too_big, sql, node)
            nested = None if in_from else _nested_width(node, database)
            if nested:
                raise _refuse(root, dialect, nested, sql, node)
            if isinstance(parent, exp.Dot) and node.arg_key == "expression":
                # schema.f(...): a user-defined function, whatever its name
                raise _refuse(
                    root,
                    dialect,
                    f"a schema-qualified function call (`{_describe(parent, dialect)}`) may "
                    "run a user-defined function",
                    sql,
                    node,
                )
            continue
        if isinstance(node, _WRITE_NODES):
            if allow_write:
                continue
            if node is root:
                why = f"{statement_kind(node)} is not read-only (`{_describe(node, dialect)}`)"
            elif isinstance(node, exp.Into):
                why = "SELECT ... INTO creates a table"
            else:
                why = f"the statement holds a {statement_kind(node)} (`{_describe(node, dialect)}`)"
            raise _refuse(root, dialect, why, sql, node)
        if isinstance(node, exp.Table):
            ident = node.this
            if isinstance(ident, exp.Identifier) and _PATHLIKE.search(ident.name):
                raise _refuse(
                    root,
                    dialect,
                    f"the table name {ident.name!r} looks like a file path or URL, which some "
                    "databases read as a file",
                    sql,
                    ident,
                )
        if type(node) not in READ_ONLY_NODES and not allow_write:
            raise _refuse(
                root,
                dialect,
                f"{type(node).__name__} (`{_describe(node, dialect)}`) is not one of the "
                "read-only constructs a generated query may use",
                sql,
                node,
            )


def check_statements(
    statements: list[exp.Expr],
    dialect: str,
    *,
    allow_write: bool = False,
    allowed_functions: frozenset[str] = frozenset(),
    sql: str | None = None,
) -> exp.Expr:
    """Return the single statement if it may run; raise :class:`Refused` otherwise.

    `allowed_functions`: names added to the dialect's function allowlist (lower-case;
    ``dialect:name`` for one dialect). `sql`: the text the statements were parsed from, so a
    refusal can point at the offending token.
    """
    stmts = [s for s in statements if s is not None]
    if not stmts:
        raise Refused("Refused: the answer holds no SQL statement; nothing ran.")
    if len(stmts) > 1:
        kinds = ", ".join(statement_kind(s) for s in stmts)
        raise Refused(
            f"Refused: the answer holds {len(stmts)} statements ({kinds}); %%sql_ai runs "
            "exactly one statement per cell, so nothing ran. Answer with one statement.",
            sql=";\n".join(s.sql(dialect) for s in stmts),
        )
    _check_unicode_escapes(sql, dialect)
    check_backslash_quotes(sql, dialect)
    stmt = stmts[0]
    if isinstance(stmt, exp.Command):
        kind = str(stmt.this).upper()
        if kind == "EXPLAIN":
            inner = explained_statements(stmt, dialect)
            # EXPLAIN ANALYZE runs what it explains: the explained statement must pass too.
            check_statements(
                inner,
                dialect,
                allow_write=allow_write,
                allowed_functions=allowed_functions,
                sql=explained_text(stmt),
            )
            return stmt
        if kind in ("SHOW", "DESCRIBE", "DESC"):
            arg = stmt.expression
            text = arg.name if isinstance(arg, exp.Literal) else str(arg or "")
            if _PLAIN_NAME.match(text) or allow_write:
                return stmt
            raise _refuse(stmt, dialect, f"{kind} takes only a plain name here (`{text[:40]}`)")
        if not allow_write:
            raise _refuse(stmt, dialect, f"{kind} is not one of the read-only statements")
        return stmt
    if not allow_write and not isinstance(stmt, exp.Query | exp.Describe | exp.Show | exp.Values):
        raise _refuse(
            stmt, dialect, f"{statement_kind(stmt)} is not read-only (`{_describe(stmt, dialect)}`)"
        )
    if isinstance(stmt, exp.Describe | exp.Show):
        # the statement itself only reads; what it names or wraps is checked like a query
        for child in stmt.iter_expressions():
            _check_tree(child, dialect, allow_write, allowed_functions, sql)
        return stmt
    _check_tree(stmt, dialect, allow_write, allowed_functions, sql)
    return stmt


# -- string literals a database may read two ways: with or without backslash escapes
#
# PostgreSQL reads ``'\'`` as a whole string, but with the legacy setting
# ``standard_conforming_strings = off`` (per database or role) the backslash escapes the quote
# and the string runs on: ``SELECT '\' AS q, '; COMMIT; CREATE TABLE ...; -- '`` is one SELECT
# to the guard and three statements to the server. MySQL is the mirror image (escapes, unless
# ``NO_BACKSLASH_ESCAPES``). So a statement must tokenize the same both ways, or it is refused:
# the statement the guard checked is then the one the database runs, whatever the setting.
# PostgreSQL connections also pin the setting on for generated SQL (``walls``); this check holds
# without that.


@functools.cache
def _other_reading(dialect: str) -> Tokenizer:
    """The dialect's tokenizer with backslash escapes in strings switched the other way."""
    d = Dialect.get_or_raise(dialect)
    cls = d.tokenizer_class
    escapes = list(cls.STRING_ESCAPES)
    escapes = [e for e in escapes if e != "\\"] if "\\" in escapes else [*escapes, "\\"]
    other = type(f"{cls.__name__}OtherEscapes", (cls,), {"STRING_ESCAPES": escapes})
    tokenizer: Tokenizer = other(dialect=d)
    return tokenizer


def _shape(tokens: list[Token]) -> list[tuple[TokenType, int, int]]:
    return [(t.token_type, t.start, t.end) for t in tokens]


def check_backslash_quotes(sql: str | None, dialect: str) -> None:
    """Raise :class:`Refused` when `sql` splits into different tokens if the database reads
    backslashes in strings differently from the dialect's default."""
    if not sql or "\\" not in sql or not database_for(dialect).backslash_escapes_vary:
        return
    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(sql)
    except Exception:
        return  # the parser has already accepted it; nothing more to learn here
    try:
        other = _shape(_other_reading(dialect).tokenize(sql))
    except Exception:
        other = None  # unterminated the other way: certainly read differently
    if other == _shape(tokens):
        return
    first = next((t for t in tokens if "\\" in sql[t.start : t.end + 1]), tokens[0])
    position = Position(first.line, first.col, first.start, first.end)
    raise Refused(
        "Refused: a string literal holds a backslash that the database may read as an escape "
        "(PostgreSQL does when standard_conforming_strings is off), so the string would end "
        "somewhere else than the check saw and the rest could run as other statements; write "
        "a quote inside a string as '' and keep backslashes away from quotes; nothing ran."
        f"{pointer(sql, position)}",
        sql=sql,
        position=position,
    )
