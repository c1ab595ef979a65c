"""Parsing generated SQL with sqlglot, shared by the guard and the validator.

``parse_statements`` parses in the target dialect; a failure becomes a :class:`SqlCheckError`
(stage "parse") whose message keeps sqlglot's wording, points at the token, and whose
position is kept as data. ``explained_text`` / ``explained_statements`` reach the statement an
``EXPLAIN`` command explains, which sqlglot keeps as text.

Every statement any caller checks is parsed here, so here it is held to the bounds of
:mod:`rsql_sql.defaults` before anything else reads it (:class:`SqlTooLarge`, naming the
bound): its characters before it is tokenized, its parentheses' nesting on the tokens (sqlglot's
parser recurses on them, about twenty Python frames a level), and its parsed tree's depth and
parts (what the guard and qualification walk, qualification in time that grows with the square
of both).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from rsql_sql.defaults import SQL_MAX_CHARS, SQL_MAX_DEPTH, SQL_MAX_NESTING, SQL_MAX_NODES
from rsql_sql.errors import Position, SqlCheckError, SqlTooLarge

from .token_pointers import caret, offset_of, pointer, strip_ansi

__all__ = [
    "explained_statements",
    "explained_text",
    "parse_statements",
    "quiet_sqlglot",
    "tree_size",
    "without_trailing_semicolons",
]


@contextlib.contextmanager
def quiet_sqlglot() -> Iterator[None]:
    """sqlglot logs a warning when it falls back to a Command (EXPLAIN, SHOW): not ours to show."""
    log = logging.getLogger("sqlglot")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def _parse_error(e: ParseError | TokenError, sql: str) -> tuple[str, Position | None]:
    """The message for the model and, when sqlglot knows it, where the error points."""
    if isinstance(e, ParseError) and e.errors:
        err = e.errors[0]
        desc = err.get("description") or "Invalid expression"
        line, col = err.get("line") or 1, err.get("col") or 1
        hl = err.get("highlight") or ""
        end = offset_of(sql, line, col)
        start = end - max(1, len(hl)) + 1
        msg = f"{desc}. Line {line}, Col: {col}."
        return f"{msg}\n{caret(sql, start, end)}", Position(line, col, start, end)
    return strip_ansi(str(e)), None


_WRITE_SHORTER = (
    "Write it shorter: an IN (...) list in place of a chain of ORs, a CTE (WITH) in place of "
    "nested subqueries, named columns in place of *."
)


def _check_chars(sql: str) -> None:
    if len(sql) > SQL_MAX_CHARS:
        raise SqlTooLarge(
            f"The statement is {len(sql):,} characters long; the checks take statements of at "
            f"most {SQL_MAX_CHARS:,} characters (SQL_MAX_CHARS). {_WRITE_SHORTER}",
            bound="SQL_MAX_CHARS",
            limit=SQL_MAX_CHARS,
            found=len(sql),
            sql=sql,
        )


_OPENING = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSING = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}


def _check_nesting(tokens: list[Token], sql: str) -> None:
    """Refuse parentheses (brackets, braces) nested past SQL_MAX_NESTING, pointing at the first
    one past it: sqlglot's parser would recurse into each."""
    level = 0
    for tok in tokens:
        if tok.token_type in _OPENING:
            level += 1
            if level > SQL_MAX_NESTING:
                position = Position(tok.line, tok.col, tok.start, tok.end)
                raise SqlTooLarge(
                    f"The statement nests parentheses more than {SQL_MAX_NESTING} levels deep; "
                    f"the checks follow at most {SQL_MAX_NESTING} levels (SQL_MAX_NESTING). "
                    f"{_WRITE_SHORTER}{pointer(sql, position)}",
                    bound="SQL_MAX_NESTING",
                    limit=SQL_MAX_NESTING,
                    found=level,
                    sql=sql,
                    position=position,
                )
        elif tok.token_type in _CLOSING:
            level = max(0, level - 1)


def tree_size(stmt: exp.Expr) -> tuple[int, int, exp.Expr | None]:
    """``(parts, depth, first node past SQL_MAX_DEPTH or None)`` of a parsed statement, read
    without recursion (the tree may be thousands of levels deep: a chain of ORs)."""
    parts, depth, past = 0, 0, None
    stack: list[tuple[exp.Expr, int]] = [(stmt, 1)]
    while stack:
        node, level = stack.pop()
        parts += 1
        if level > depth:
            depth = level
            if past is None and level > SQL_MAX_DEPTH:
                past = node
        stack.extend((child, level + 1) for child in node.iter_expressions())
    return parts, depth, past


def _near(node: exp.Expr) -> Position | None:
    """Where in the text `node` is: the first name or value under it, its right-hand side first
    (in a chain of ORs, the operand where the chain passed the bound)."""
    for side in (node.args.get("expression"), node):
        if not isinstance(side, exp.Expr):
            continue
        for n in side.bfs():
            meta = n.meta if isinstance(n, exp.Identifier | exp.Literal) else {}
            if "start" in meta and "end" in meta:
                return Position(meta.get("line", 1), meta.get("col", 1), meta["start"], meta["end"])
    return None


def _check_tree(stmts: list[exp.Expr], sql: str) -> None:
    total = 0
    for stmt in stmts:
        parts, depth, past = tree_size(stmt)
        total += parts
        if past is not None:
            position = _near(past)
            where = pointer(sql, position) if position else ""
            raise SqlTooLarge(
                f"The statement is {depth:,} levels deep; the checks follow at most "
                f"{SQL_MAX_DEPTH} levels (SQL_MAX_DEPTH), and each operand of a chain of ORs, "
                f"ANDs or || is one more. {_WRITE_SHORTER}{where}",
                bound="SQL_MAX_DEPTH",
                limit=SQL_MAX_DEPTH,
                found=depth,
                sql=sql,
                position=position,
            )
    if total > SQL_MAX_NODES:
        raise SqlTooLarge(
            f"The statement has {total:,} parts (names, values, operators); the checks take at "
            f"most {SQL_MAX_NODES:,} (SQL_MAX_NODES). {_WRITE_SHORTER}",
            bound="SQL_MAX_NODES",
            limit=SQL_MAX_NODES,
            found=total,
            sql=sql,
        )


def parse_statements(sql: str, dialect: str) -> list[exp.Expr]:
    """Parse every statement of `sql`; raise :class:`SqlCheckError` (stage "parse"), or
    :class:`SqlTooLarge` for a statement past a bound of :mod:`rsql_sql.defaults`."""
    _check_chars(sql)
    reader = sqlglot.Dialect.get_or_raise(dialect)
    try:
        with quiet_sqlglot():
            tokens = reader.tokenize(sql)
            _check_nesting(tokens, sql)
            stmts = reader.parser(error_level=ErrorLevel.RAISE).parse(tokens, sql)
    except (ParseError, TokenError) as e:
        message, position = _parse_error(e, sql)
        raise SqlCheckError(message, stage="parse", sql=sql, position=position) from None
    except RecursionError:
        # nesting the token count does not see (NOT NOT ..., nested CASE): the parser's own
        raise SqlTooLarge(
            "The statement nests its expressions deeper than the parser follows; the checks "
            f"follow at most {SQL_MAX_NESTING} levels of parentheses (SQL_MAX_NESTING) and "
            f"{SQL_MAX_DEPTH} levels in all (SQL_MAX_DEPTH). {_WRITE_SHORTER}",
            bound="SQL_MAX_DEPTH",
            limit=SQL_MAX_DEPTH,
            found=SQL_MAX_DEPTH + 1,
            sql=sql,
        ) from None
    # a `;` followed by a comment is a chunk of its own to sqlglot, an exp.Semicolon that holds
    # the comment and nothing else: no statement (``SELECT 1; -- note`` is one statement)
    out = [s for s in stmts if s is not None and not _comment_only(s)]
    _check_tree(out, sql)
    return out


def _comment_only(stmt: exp.Expr) -> bool:
    return isinstance(stmt, exp.Semicolon) and not any(stmt.args.values())


def without_trailing_semicolons(sql: str, dialect: str) -> str:
    """`sql` cut before its first ``;`` when nothing but ``;`` and comments follow it (as the
    tokenizer reads it), else `sql` as it is. What runs is then the one statement that was
    checked, never a tail that only this tokenizer read as a comment (a database that nests
    comments differently, a ``/*! ... */`` that MySQL runs)."""
    if len(sql) > SQL_MAX_CHARS or ";" not in sql:
        return sql  # too long: parse_statements says so
    try:
        with quiet_sqlglot():
            tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except (TokenError, ValueError):
        return sql  # parse_statements says what is wrong
    first = next((i for i, t in enumerate(tokens) if t.token_type == TokenType.SEMICOLON), None)
    if first is None or any(t.token_type != TokenType.SEMICOLON for t in tokens[first:]):
        return sql
    return sql[: tokens[first].start].rstrip()


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


def explained_statements(stmt: exp.Command, dialect: str) -> list[exp.Expr]:
    """The statement(s) an EXPLAIN command explains, parsed."""
    return parse_statements(explained_text(stmt), dialect)
