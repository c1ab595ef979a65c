"""Read-only guard: decided on the parsed statement, never on the text.

Text checks are easy to fool (``WITH d AS (DELETE ... RETURNING *) SELECT ...``, comments,
``EXPLAIN ANALYZE DELETE``); the parse tree is not. Only SELECT (with WITH and set operations),
EXPLAIN of a read-only statement, SHOW and DESCRIBE pass unless writes are allowed; more than
one statement is always refused. Where the driver allows it, execution also runs inside a
read-only transaction (PostgreSQL) or with ``PRAGMA query_only`` (SQLite) as a second wall.
"""

from __future__ import annotations

import re

from sqlglot import exp

from .errors import Refused

__all__ = ["check_statements", "statement_kind", "ALLOWED"]

ALLOWED = "SELECT, WITH ... SELECT, EXPLAIN, SHOW and DESCRIBE"

# Node types that change data, schema, session or files. Looked up by name so an older or newer
# sqlglot without one of them still imports.
_WRITE_NAMES = (
    "Insert Update Delete Merge Create Drop Alter AlterColumn TruncateTable Copy Set Pragma "
    "Into Grant Revoke Transaction Commit Rollback LoadData Attach Detach Use Cache Uncache "
    "Refresh Kill Install Export Analyze Comment Vacuum Call"
).split()
_WRITE_NODES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, n) for n in _WRITE_NAMES if isinstance(getattr(exp, n, None), type)
)

# Functions with side effects that a SELECT can call.
_SIDE_EFFECT_FUNCTIONS = frozenset(
    """pg_terminate_backend pg_cancel_backend pg_reload_conf pg_rotate_logfile set_config
    setval nextval lo_import lo_export lo_unlink pg_read_file pg_read_binary_file pg_ls_dir
    pg_stat_file dblink dblink_exec pg_advisory_lock pg_advisory_xact_lock pg_switch_wal
    pg_create_restore_point pg_promote txid_current load_extension writefile readfile
    query_table install load checkpoint force_checkpoint""".split()
)

_EXPLAIN_OPTS = re.compile(
    r"^\s*(?:\((?:[^()]|\([^()]*\))*\)|ANALYZE|ANALYSE|VERBOSE|QUERY\s+PLAN|FORMAT\s+\w+)\s*",
    re.IGNORECASE,
)


def explained_text(stmt: exp.Command) -> str:
    """The text of the statement an ``EXPLAIN [ANALYZE] [(options)]`` command explains."""
    arg = stmt.expression
    text = arg.name if isinstance(arg, exp.Literal) else str(arg or "")
    while True:  # strip EXPLAIN's options to reach the statement it explains
        m = _EXPLAIN_OPTS.match(text)
        if not m or not m.group(0):
            break
        text = text[m.end() :]
    return text


def explained_statements(stmt: exp.Command, dialect: str) -> list[exp.Expression]:
    """The statement(s) an EXPLAIN command explains, parsed."""
    from .validate import parse_statements  # local: validate imports this module

    return parse_statements(explained_text(stmt), dialect)


def statement_kind(stmt: exp.Expression) -> str:
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
}


def _describe(stmt: exp.Expression, dialect: str) -> str:
    text = stmt.sql(dialect)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(stmt: exp.Expression, dialect: str, why: str) -> Refused:
    return Refused(
        f"Refused: {why}. %%sql_ai runs only {ALLOWED} unless --allow-write is given; nothing ran.",
        sql=stmt.sql(dialect),
    )


def _check_tree(root: exp.Expression, dialect: str, allow_write: bool) -> None:
    for node in root.walk():
        if isinstance(node, _WRITE_NODES) and not allow_write:
            if node is root:
                why = f"{statement_kind(node)} is not read-only (`{_describe(node, dialect)}`)"
            elif isinstance(node, exp.Into):
                why = "SELECT ... INTO creates a table"
            else:
                why = f"the statement holds a {statement_kind(node)} (`{_describe(node, dialect)}`)"
            raise _refuse(root, dialect, why)
        if isinstance(node, exp.Func) and not allow_write:
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in _SIDE_EFFECT_FUNCTIONS:
                raise _refuse(root, dialect, f"{name}() has side effects")


def check_statements(
    statements: list[exp.Expression], dialect: str, *, allow_write: bool = False
) -> exp.Expression:
    """Return the single statement if it may run; raise :class:`Refused` otherwise."""
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
    stmt = stmts[0]
    if isinstance(stmt, exp.Command):
        kind = str(stmt.this).upper()
        if kind == "EXPLAIN":
            inner = explained_statements(stmt, dialect)
            # EXPLAIN ANALYZE runs what it explains: the explained statement must pass too.
            check_statements(inner, dialect, allow_write=allow_write)
            return stmt
        if kind in ("SHOW", "DESCRIBE", "DESC"):
            return stmt
        if not allow_write:
            raise _refuse(stmt, dialect, f"{kind} is not one of the read-only statements")
        return stmt
    if not allow_write and not isinstance(stmt, exp.Query | exp.Describe | exp.Show | exp.Values):
        raise _refuse(
            stmt, dialect, f"{statement_kind(stmt)} is not read-only (`{_describe(stmt, dialect)}`)"
        )
    _check_tree(stmt, dialect, allow_write)
    return stmt
