"""The schema as compact DDL in the target dialect, cut to what fits a character budget.

``render_ddl`` writes one ``CREATE TABLE`` line per table; ``describe_schema`` puts the tables
most relevant to the question first (:mod:`.rank`), keeps the columns of wide tables the
question needs and the keys joining them to the other tables shown, names the columns and
tables that do not fit, and (where the policy allows values) comments a column with the value
of the question it holds and every date column with its range; ``describe_connection``
captures and describes in one call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rsql_sql import defaults

from ..catalog import MAX_TABLES, Schema, Table, ValuesPolicy
from ..policy import SqlPolicy
from .backends import capture_schema
from .index import KEY_TAILS, SchemaIndex, TableInfo, index_of
from .notes import column_notes
from .rank import Ranking, rank
from .values import capture_values, is_text_type
from .words import CATEGORY_WORDS, PLACE_WORDS, question_literals

__all__ = ["describe_connection", "describe_schema", "render_ddl"]


@lru_cache(maxsize=4096)
def _type_sql(raw: str, source: str, target: str) -> str:
    if not raw:
        return ""
    from sqlglot import exp

    # Through sqlglot even within one dialect: "character varying(20)" becomes "VARCHAR(20)".

    try:
        return exp.DataType.build(raw, dialect=source, udt=True).sql(target)
    except Exception:
        return raw


# Words reserved in most SQL dialects: a column named like one must be quoted in the DDL we
# show, or the model copies it unquoted and the query fails to parse.
_RESERVED = frozenset(
    """all and any array as asc between both by case cast check collate column constraint create
    cross current_date current_time current_timestamp current_user default desc distinct do else
    end except exists false fetch for foreign from full grant group having in inner intersect
    into is join lateral leading left like limit natural not null offset on only or order outer
    over primary references right select session_user some table then to trailing true union
    unique user using when where window with""".split()
)


@lru_cache(maxsize=16384)
def _ident(name: str, dialect: str) -> str:
    from sqlglot import exp
    from sqlglot.dialects.dialect import Dialect

    d = Dialect.get_or_raise(dialect)
    reserved = _RESERVED | {w.lower() for w in getattr(d.generator_class, "RESERVED_KEYWORDS", ())}
    # Quote when the name is not a plain word, would change case, or is a reserved word.
    safe = (
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
        and not d.case_sensitive(name)
        and name.lower() not in reserved
    )
    return exp.to_identifier(name).sql(dialect, identify=not safe)


def _table_name(t: Table, schema: Schema, dialect: str) -> str:
    name = _ident(t.name, dialect)
    if t.db != schema.default_db:
        return f"{_ident(t.db, dialect)}.{name}"
    return name


def render_ddl(
    t: Table,
    schema: Schema,
    dialect: str | None = None,
    *,
    notes: Mapping[str, str] | None = None,
) -> str:
    """One compact ``CREATE TABLE`` (or ``CREATE VIEW``-marked) line for a table.

    `notes`: column -> a comment's text, made safe by the caller (:mod:`.notes`)."""
    d = dialect or schema.dialect
    pk = t.primary_key
    single_fk = {fk.columns[0]: fk for fk in t.foreign_keys if len(fk.columns) == 1}
    parts = []
    for c in t.columns:
        s = f"{_ident(c.name, d)} {_type_sql(c.type, schema.dialect, d)}".rstrip()
        if len(pk) == 1 and c.name == pk[0]:
            s += " PRIMARY KEY"
        elif not c.nullable and t.kind == "table":
            s += " NOT NULL"
        fk = single_fk.get(c.name)
        if fk is not None:
            ref = _ident(fk.ref_table, d)
            if fk.ref_db and fk.ref_db != schema.default_db:
                ref = f"{_ident(fk.ref_db, d)}.{ref}"
            s += f" REFERENCES {ref}"
            if fk.ref_columns:
                s += f"({', '.join(_ident(x, d) for x in fk.ref_columns)})"
        if notes and c.name in notes:
            s += f" /* {notes[c.name]} */"
        parts.append(s)
    if len(pk) > 1:
        parts.append(f"PRIMARY KEY ({', '.join(_ident(x, d) for x in pk)})")
    for fk in t.foreign_keys:
        if len(fk.columns) > 1:
            ref = _ident(fk.ref_table, d)
            parts.append(
                f"FOREIGN KEY ({', '.join(_ident(x, d) for x in fk.columns)}) REFERENCES {ref}"
                f"({', '.join(_ident(x, d) for x in fk.ref_columns)})"
            )
    if t.columns_truncated:
        parts.append(f"/* {t.columns_truncated} more columns */")
    suffix = {"view": "  -- a view", "dataframe": "  -- a pandas DataFrame"}.get(t.kind, "")
    return f"CREATE TABLE {_table_name(t, schema, d)} ({', '.join(parts)});{suffix}"


# A table wider than this shows the columns the question needs (matched by name, abbreviation
# or value; join keys to the other tables shown), its keys and its first few columns, then as
# many more as the budget leaves; "/* N more columns */" counts the rest, and a line after the
# DDL names them as far as they fit. The best match keeps all its columns when they take at
# most FIRST_WIDE_SHARE of the budget.
WIDE_COLUMNS = 20
KEEP_LEADING = 4
FIRST_WIDE_SHARE = 0.35
NEEDED_TABLES = 8  # the first tables shown never give way to the "more columns" lines
MORE_SHARE = 0.08  # the share of the budget those lines may take from the tables after them
WEAK_SHARE = 0.2  # a table scoring at most this share of the best matches nothing much


@dataclass
class _Line:
    table: Table
    keep: set[str] | None  # the columns shown of an elided table; None: all of them
    notes: dict[str, str]
    ddl: str


def _join_columns(t: Table, others: list[Table], idx: SchemaIndex) -> set[str]:
    """`t`'s columns that join it to one of `others`: declared keys either way, the same key
    column in both (``station_id``), a key column naming the other table (``station_id`` ->
    ``stations``), and `t`'s column that another table's key column names (``cards.setCode``
    -> ``sets.code``, ``x_id`` -> ``x.id``; else `t`'s own key)."""
    out: set[str] = set()
    pos = idx.position.get(id(t))
    if pos is None:
        return out
    info = idx.infos[pos]
    names = {(o.db.lower(), o.name.lower()) for o in others}
    for fk in t.foreign_keys:
        if ((fk.ref_db or t.db).lower(), fk.ref_table.lower()) in names:
            out.update(fk.columns)
    mine = [(c, info.columns.get(c, ())) for c in info.key_columns | set(t.primary_key)]
    for o in others:
        for fk in o.foreign_keys:
            if ((fk.ref_db or o.db).lower(), fk.ref_table.lower()) == (
                t.db.lower(),
                t.name.lower(),
            ):
                out.update(fk.ref_columns or t.primary_key)
        opos = idx.position.get(id(o))
        if opos is None or o.db != t.db:
            continue
        oinfo = idx.infos[opos]
        keys = {oinfo.columns.get(c, ()) for c in oinfo.key_columns | set(o.primary_key)}
        for c, ws in mine:
            if not ws:
                continue
            if ws in keys and (len(ws) > 1 or c in t.primary_key):
                out.add(c)
            elif len(ws) >= 2 and oinfo.name_words and ws[-2] == oinfo.name_words[-1]:
                out.add(c)
        out |= _named_by(t, info, oinfo, idx)
    return out


def _named_by(t: Table, info: TableInfo, oinfo: TableInfo, idx: SchemaIndex) -> set[str]:
    """`t`'s columns that a key column of the other table names: ``setCode`` names ``sets``
    (its last name word before the key word), and joins its ``code`` (a column whose words
    end that key's words), else its ``set_code``, else its own key."""
    if not info.name_words:
        return set()
    out: set[str] = set()
    by_words: dict[tuple[str, ...], str] | None = None
    for oc in oinfo.key_columns:
        ws = oinfo.columns.get(oc, ())
        if len(ws) < 2 or ws[-1] not in KEY_TAILS or ws[-2] != info.name_words[-1]:
            continue
        if by_words is None:
            by_words = {ws: c for c, ws in info.columns.items() if ws}
        hit = next((by_words[ws[k:]] for k in range(len(ws)) if ws[k:] in by_words), None)
        out.update([hit] if hit is not None else _own_keys(t, idx))
    return out


def _own_keys(t: Table, idx: SchemaIndex) -> list[str]:
    if t.primary_key:
        return list(t.primary_key)
    pos = idx.position.get(id(t))
    if pos is None:
        return []
    info = idx.infos[pos]
    own = {("id",), (*info.name_words[-1:], "id")}
    return [c for c, ws in info.columns.items() if ws in own][:1]


def _priority(
    t: Table, needed: set[str], others: list[Table], idx: SchemaIndex
) -> tuple[list[str], int]:
    """`t`'s columns in the order they are kept: the table's own keys and the join keys to the
    other tables shown (first: kept even when one table is too wide for the budget), what the
    question needs, its first few columns (the core: how many of them is the second value),
    then the rest in the table's order."""
    names = [c.name for c in t.columns]
    joins = _join_columns(t, others, idx)
    core = list(
        dict.fromkeys(
            _own_keys(t, idx)
            + [c for c in names if c in joins]
            + [c for c in names if c in needed]
            + names[:KEEP_LEADING]
        )
    )
    return list(dict.fromkeys(core + names)), len(core)


def _cut(t: Table, keep: set[str], schema: Schema, dialect: str, notes: dict[str, str]) -> str:
    """`t`'s DDL with only the columns in `keep` (in the table's order) and a count of the rest."""
    if len(keep) >= len(t.columns):
        return render_ddl(t, schema, dialect, notes=notes)
    cols = [c for c in t.columns if c.name in keep]
    cut = Table(
        t.name,
        t.db,
        cols,
        primary_key=t.primary_key if all(c in keep for c in t.primary_key) else (),
        foreign_keys=[f for f in t.foreign_keys if all(c in keep for c in f.columns)],
        kind=t.kind,
        columns_truncated=len(t.columns) - len(cols) + t.columns_truncated,
    )
    return render_ddl(cut, schema, dialect, notes=notes)


def _widest(
    t: Table,
    priority: list[str],
    base: int,
    max_len: int,
    schema: Schema,
    dialect: str,
    notes: dict[str, str],
) -> tuple[set[str], str]:
    """The longest prefix (at least `base` long) of `priority` whose DDL has at most
    `max_len` characters."""
    lo, hi = base, len(priority)
    best = set(priority[:base])
    best_ddl = _cut(t, best, schema, dialect, notes)
    while lo < hi:  # binary search on the number of columns kept
        k = (lo + hi + 1) // 2
        keep = set(priority[:k])
        ddl = _cut(t, keep, schema, dialect, notes)
        if len(ddl) <= max_len:
            best, best_ddl, lo = keep, ddl, k
        else:
            hi = k - 1
    return best, best_ddl


def _more_line(line: _Line, schema: Schema, dialect: str, room: int) -> str:
    """``-- more columns of t: a, b (+N)``: the columns an elided table left out, as many
    names as fit in `room` characters ("" when not even the count fits)."""
    t = line.table
    keep = line.keep or set()
    left = [c.name for c in t.columns if c.name not in keep]
    total = len(left) + t.columns_truncated
    head = f"-- more columns of {_table_name(t, schema, dialect)}: "
    names: list[str] = []
    size = len(head) + len(f" (+{total})")
    for c in left:
        nm = _ident(c, dialect)
        if "\n" in nm or "\r" in nm:  # a name that would forge a line is only counted
            continue
        if size + len(nm) + 2 > room:
            break
        names.append(nm)
        size += len(nm) + 2
    if not names:
        return ""
    more = total - len(names)
    return head + ", ".join(names) + (f" (+{more})" if more else "")


def describe_schema(
    schema: Schema,
    question: str | None = None,
    tables: list[str] | None = None,
    budget_chars: int = defaults.SCHEMA_CHARS,
    dialect: str | None = None,
    *,
    policy: ValuesPolicy | None = None,
) -> str:
    """Compact DDL of `schema` within `budget_chars` (see :func:`describe_connection`).

    `policy`: the context policy (``rsql_common.context_policy.ContextPolicy``); only one that allows
    value statistics lets the values captured by ``capture_values`` steer the ranking, pick
    columns of wide tables and show as examples (a value equal to a literal of the question,
    the range of a date column holding a year of it).
    """
    d = dialect or schema.dialect
    ranking = rank(schema, question, tables, policy=policy)
    order = ranking.tables
    idx = index_of(schema)
    n = len(order)
    if tables:  # --tables: only the pinned ones (their FK targets are still named in DDL)
        pinned_l = {p.lower() for p in tables}
        order = [
            t for t in order if t.name.lower() in pinned_l or f"{t.db}.{t.name}".lower() in pinned_l
        ]
    header = f"-- {d} schema: {n} table{'s' if n != 1 else ''}"
    lines: list[_Line] = []
    used = len(header) + 1
    room = budget_chars - 80
    # What the "more columns" lines may claim: a share of the budget from the tables after the
    # needed ones, twice that from tables that match little of the question.
    reserve = reserve_all = 0
    max_reserve = int(budget_chars * MORE_SHARE)
    best = max((ranking.scores.get(id(t), 0.0) for t in order[:1]), default=0.0)
    weak = best * WEAK_SHARE if question else -1.0
    rest: list[Table] = []
    smallest = min((len(t.name) + 20 for t in order), default=0)
    hinted = _names_unexplained_value(question, ranking)
    for k, t in enumerate(order):
        if used + smallest + 1 > room and lines:
            rest.append(t)  # nothing more can fit: skip rendering the rest
            continue
        notes, noted = column_notes(t, ranking, schema, policy, d)
        if noted:  # a value or range of this question's
            full = render_ddl(t, schema, d, notes=notes)
        else:  # no note, or only the date ranges, the same for every question
            full = _cached_ddl(idx, t, schema, d, notes)
        line = _Line(t, None, notes, full)
        if (
            not tables
            and len(t.columns) > WIDE_COLUMNS
            and not (not lines and len(full) <= budget_chars * FIRST_WIDE_SHARE)
        ):
            if lines and used + _least_len(idx, t, schema, d) + 1 > room:
                rest.append(t)  # not even its keys and first columns fit: skip the work
                continue
            needed = ranking.matched.get(id(t), set()) | noted
            if hinted and k < HINTED_TABLES:
                needed |= _category_columns(t, idx)
            priority, base = _priority(t, needed, [x.table for x in lines], idx)
            line.keep = set(priority[:base])
            line.ddl = _cut(t, line.keep, schema, d, notes)
            if not lines and used + len(line.ddl) + 1 > room:  # one very wide table
                line.keep, line.ddl = _widest(t, priority, 0, room - used, schema, d, notes)
        elif not lines and used + len(full) + 1 > room:
            priority, _ = _priority(t, noted, [], idx)
            line.keep, line.ddl = _widest(t, priority, 0, room - used, schema, d, notes)
        if ranking.scores.get(id(t), 0.0) <= weak:
            limit = room - min(reserve_all, 2 * max_reserve)
        elif k < NEEDED_TABLES or tables:
            limit = room
        else:
            limit = room - reserve
        if used + len(line.ddl) + 1 <= limit or not lines:
            lines.append(line)
            used += len(line.ddl) + 1
            if line.keep is not None and len(line.keep) < len(t.columns):
                reserve_all += len(_more_line(line, schema, d, room)) + 1
                reserve = min(max_reserve, reserve_all)
        else:
            rest.append(t)
    used = _join_later_tables(lines, rest, schema, d, idx, ranking, used, room)
    _fill_wide_tables(lines, schema, d, room - used - reserve)
    shown = len(lines)
    if shown < n:
        header += f", {shown} shown" + (" (most relevant to the question)" if question else "")
    if schema.truncated:
        header += f"; listing stopped at {MAX_TABLES} tables"
    out = [header, *(x.ddl for x in lines)]
    space = room - sum(len(x) + 1 for x in out)
    for line in lines:  # name the left-out columns of elided tables, as far as they fit
        if line.keep is None or len(line.keep) >= len(line.table.columns):
            continue
        more = _more_line(line, schema, d, space - 1)
        if more:
            out.append(more)
            space -= len(more) + 1
    if rest:
        # Name the tables we could not show, as many as fit: the model can ask about them.
        names: list[str] = []
        body = sum(len(x) + 1 for x in out)
        space = budget_chars - body - len("-- other tables: ") - len(f" (+{len(rest)} more)")
        for t in rest:
            nm = _table_name(t, schema, d)
            if space - len(nm) - 2 < 0:
                break
            names.append(nm)
            space -= len(nm) + 2
        more_tables = len(rest) - len(names)
        tail = f"-- other tables: {', '.join(names)}" if names else "-- other tables:"
        if more_tables:
            tail += f" (+{more_tables} more)"
        out.append(tail)
    return "\n".join(out)[:budget_chars]


HINTED_TABLES = 12  # the best tables whose category columns a value of the question keeps
HINTS = 6  # ... at most this many per table, places first


def _names_unexplained_value(question: str | None, ranking: Ranking) -> bool:
    """Whether the question names a value ("Texas", 'Gd') that no value read explains: then
    it compares a column the names do not say, most likely a category's."""
    found = {v.lower() for ex in ranking.examples.values() for v in ex.values()}
    return any(
        not lit.isdigit() and lit.lower() not in found for lit in question_literals(question or "")
    )


def _category_columns(t: Table, idx: SchemaIndex) -> set[str]:
    """`t`'s text columns named like a category (``region``, ``bldg_type``), at most
    ``HINTS``: places first (a capitalized value is most often one), then in the table's
    order."""
    pos = idx.position.get(id(t))
    if pos is None:
        return set()
    words = idx.infos[pos].columns
    hits = [
        c.name
        for c in t.columns
        if is_text_type(c.type) and CATEGORY_WORDS.intersection(words.get(c.name, ()))
    ]
    hits.sort(key=lambda c: not PLACE_WORDS.intersection(words.get(c, ())))
    return set(hits[:HINTS])


def _join_later_tables(
    lines: list[_Line],
    rest: list[Table],
    schema: Schema,
    dialect: str,
    idx: SchemaIndex,
    ranking: Ranking,
    used: int,
    room: int,
) -> int:
    """Elided tables gain their join keys to the tables shown after them; when that overflows
    the budget, the last tables shown give way. Returns the characters used."""
    shown = [x.table for x in lines]
    for line in lines:
        if line.keep is None or len(line.keep) >= len(line.table.columns):
            continue
        others = [o for o in shown if o is not line.table]
        extra = _join_columns(line.table, others, idx) - line.keep
        if extra:
            line.keep |= extra
            ddl = _cut(line.table, line.keep, schema, dialect, line.notes)
            used += len(ddl) - len(line.ddl)
            line.ddl = ddl
    while used > room and len(lines) > 1:
        gone = lines.pop()
        used -= len(gone.ddl) + 1
        rest.insert(0, gone.table)
    return used


def _fill_wide_tables(lines: list[_Line], schema: Schema, dialect: str, spare: int) -> None:
    """With budget left after every table, elided tables show more of their columns, the
    first ones shown first, each as far as what is left allows."""
    for line in lines:
        if spare <= 0:
            return
        t = line.table
        if line.keep is None or len(line.keep) >= len(t.columns):
            continue
        names = [c.name for c in t.columns]
        priority = [c for c in names if c in line.keep] + [c for c in names if c not in line.keep]
        old = len(line.ddl)
        line.keep, line.ddl = _widest(
            t, priority, len(line.keep), old + spare, schema, dialect, line.notes
        )
        spare -= len(line.ddl) - old


def _least_len(idx: SchemaIndex, t: Table, schema: Schema, dialect: str) -> int:
    """A lower bound of the length of `t` elided: its own keys and first columns, no more."""
    key = (id(t), dialect, "least")
    size = idx.least.get(key)
    if size is None:
        keep = set(_own_keys(t, idx)) | {c.name for c in t.columns[:KEEP_LEADING]}
        # the count in the marker may have a digit less than this one's
        size = idx.least[key] = len(_cut(t, keep, schema, dialect, {})) - 1
    return size


def _cached_ddl(
    idx: SchemaIndex, t: Table, schema: Schema, dialect: str, notes: dict[str, str]
) -> str:
    key = (id(t), dialect, *sorted(notes.items()))
    ddl = idx.ddl.get(key)
    if ddl is None:
        ddl = idx.ddl[key] = render_ddl(t, schema, dialect, notes=notes)
    return ddl


def describe_connection(
    conn: Any,
    question: str | None = None,
    tables: list[str] | None = None,
    budget_chars: int = defaults.SCHEMA_CHARS,
    dialect: str | None = None,
    *,
    policy: ValuesPolicy | None = None,
    sql_policy: SqlPolicy | None = None,
) -> str:
    """Compact DDL of `conn`'s schema in the target dialect, cut to what fits `budget_chars`.

    `conn`: sqlite3 / DuckDB connection, SQLAlchemy Engine / Connection / URL string, a JupySQL
    connection (None = JupySQL's active one), a psycopg connection, or a dict of DataFrames.
    Tables named in `tables` come first (and only they are shown); the rest are ordered by
    relevance to `question`. Tables that do not fit are listed by name.
    `policy` (``rsql_common.context_policy.ContextPolicy``): when it allows value statistics, the
    values of short text columns and the ranges of date columns are read, and the question's
    literals looked up (bounded, see :func:`capture_values`); they help pick the tables and
    the columns of wide tables, and a value equal to a literal of the question (or a date
    range holding a year of it) is shown as a comment on its column. Without value
    statistics nothing is read and the text shows no value. `sql_policy`: the walls those
    reads run in, the ones generated SQL runs in (``SqlAIMagics.postgres_role`` and the rest).
    """
    schema = capture_schema(conn)
    # reads nothing unless the policy allows values
    capture_values(conn, schema, policy=policy, sql_policy=sql_policy, question=question)
    return describe_schema(schema, question, tables, budget_chars, dialect, policy=policy)
