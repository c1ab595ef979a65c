"""Per-schema retrieval index: words of names, columns and values, and the join graph.

Built once per captured schema (cached on ``Schema.index_cache``, rebuilt when the tables or
values change), so ranking a question is a few dictionary look-ups per word.

The join graph has the declared foreign keys plus join keys inferred from names, within one
namespace: most warehouses declare none. Inferred: the same key-like column in two tables
(``student.StuID`` ~ ``has_pet.StuID``), and a column naming another table's key
(``x_id`` -> table ``x``, ``home_team_id`` -> ``teams.team_id``). Same-named plain columns
(``carrier``) join too, but only in small namespaces and as weak edges.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..catalog import Schema, Table
from .words import name_words

__all__ = ["KEY_TAILS", "SchemaIndex", "TableInfo", "index_of"]

_NUMBER = re.compile(r"[0-9]{2,}")  # one digit ("x1", "a4") says too little
KEY_TAILS = ("id", "number", "code", "key", "num", "nr")
# Column names that join nothing even when two tables share them.
_GENERIC = frozenset(
    """id name title description type kind status value values note notes comment date time
    year month day hour minute created updated timestamp rownames x y z count total amount
    price rating label flag code key group category text url""".split()
)
WEAK_MAX_TABLES = 15  # same-named plain columns join only in namespaces this small
FAN_OUT = 20  # a key column in more tables than this links each only to the key's owner


@dataclass
class TableInfo:
    table: Table
    key: str  # "db.name", lower case
    name_words: tuple[str, ...]
    compact: str  # the name in lower case without punctuation: "moviegenre"
    columns: dict[str, tuple[str, ...]]  # column -> its words
    key_columns: set[str] = field(default_factory=set)  # keys and join columns: always shown


@dataclass
class SchemaIndex:
    infos: list[TableInfo]
    by_db: dict[str, list[int]]
    # word -> {table index: columns}; separate fields weigh differently
    name_post: dict[str, set[int]]
    col_post: dict[str, dict[int, set[str]]]
    value_post: dict[str, dict[int, set[str]]]
    db_post: dict[str, set[str]]  # word -> namespaces whose name has it
    idf: dict[str, float]
    strong: dict[int, set[int]]
    weak: dict[int, set[int]]
    name_vocab: dict[str, set[int]]  # name word -> tables, for prefix matches
    fingerprint: tuple[int, ...] = ()
    # (table, dialect, its notes' items) -> DDL: see render._cached_ddl
    ddl: dict[tuple[object, ...], str] = field(default_factory=dict)
    least: dict[tuple[int, str, str], int] = field(default_factory=dict)  # see render._least_len
    prefix_cache: dict[str, set[int]] = field(default_factory=dict)  # word -> tables
    column_prefix_cache: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    column_abbreviation_cache: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    column_stem_cache: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    by_name: dict[tuple[str, str], int] = field(default_factory=dict)  # (db, name) -> index
    # a captured value in lower case -> (table index, column, the value as stored)
    value_exact: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    # a number in a column's name -> {table index: columns}: "year_1990", "pop2020", "q4_2012"
    # (name words leave digits out: as words they name no concept, but a question's year or
    # number may name exactly that column of a wide table)
    col_numbers: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    either: dict[int, set[int]] = field(default_factory=dict)  # strong and weak edges
    position: dict[int, int] = field(default_factory=dict)  # id(table) -> its index
    rank_memo: tuple[tuple[object, ...], Any] | None = None  # the last ranking: see rank.rank
    col_by_first: dict[str, list[str]] | None = None  # column words by first letter (rank.py)
    # a column's compact name's first 3 letters -> (table index, column, compact): rank.py
    compact_heads: dict[str, list[tuple[int, str, str]]] | None = None

    def word_idf(self, w: str) -> float:
        return self.idf.get(w, self.idf.get("", 1.0))


def _fingerprint(schema: Schema) -> tuple[int, ...]:
    return (
        id(schema.tables),
        len(schema.tables),
        sum(len(t.columns) for t in schema.tables),
        id(schema.values),
        len(schema.values),
    )


def index_of(schema: Schema) -> SchemaIndex:
    """The schema's index, from its cache when the schema has not changed."""
    fp = _fingerprint(schema)
    cached = schema.index_cache
    if isinstance(cached, SchemaIndex) and cached.fingerprint == fp:
        return cached
    idx = _build(schema)
    idx.fingerprint = fp
    schema.index_cache = idx
    return idx


def _is_key_like(words: tuple[str, ...]) -> bool:
    return len(words) >= 2 and words[-1] in KEY_TAILS


def _build(schema: Schema) -> SchemaIndex:
    infos: list[TableInfo] = []
    by_db: dict[str, list[int]] = defaultdict(list)
    name_post: dict[str, set[int]] = defaultdict(set)
    col_post: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    value_post: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    db_post: dict[str, set[str]] = defaultdict(set)
    df: dict[str, int] = defaultdict(int)
    value_exact: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    col_numbers: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for i, t in enumerate(schema.tables):
        nw = name_words(t.name)
        cols = {c.name: name_words(c.name) for c in t.columns}
        info = TableInfo(
            t,
            f"{t.db}.{t.name}".lower(),
            nw,
            "".join(ch for ch in t.name.lower() if ch.isalnum()),
            cols,
        )
        info.key_columns.update(t.primary_key)
        for fk in t.foreign_keys:
            info.key_columns.update(fk.columns)
        infos.append(info)
        by_db[t.db].append(i)
        seen: set[str] = set(nw)
        for w in nw:
            name_post[w].add(i)
        for cname, ws in cols.items():
            for w in ws:
                col_post[w][i].add(cname)
                seen.add(w)
            for number in _NUMBER.findall(cname):
                col_numbers[number.lstrip("0") or "0"][i].add(cname)
        for cname, vals in schema.values.get((t.db, t.name), {}).items():
            for v in vals:
                value_exact[v.lower()].append((i, cname, v))
                for w in name_words(v):
                    if len(w) > 1:
                        value_post[w][i].add(cname)
                        seen.add(w)
        for w in seen:
            df[w] += 1
    for db in by_db:
        for w in name_words(db):
            db_post[w].add(db)
    n = max(1, len(infos))
    idf = {w: math.log(1 + n / c) for w, c in df.items()}
    idf[""] = math.log(1 + n)  # a word found nowhere: as rare as can be
    strong, weak = _join_graph(schema, infos, by_db)
    name_vocab: dict[str, set[int]] = {w: s for w, s in name_post.items() if len(w) >= 3}
    either: dict[int, set[int]] = defaultdict(set)
    for g in (strong, weak):
        for a, bs in g.items():
            either[a] |= bs
    return SchemaIndex(
        infos,
        dict(by_db),
        dict(name_post),
        col_post,
        value_post,
        dict(db_post),
        idf,
        strong,
        weak,
        name_vocab,
        either=dict(either),
        position={id(info.table): i for i, info in enumerate(infos)},
        by_name={(info.table.db, info.table.name): i for i, info in enumerate(infos)},
        value_exact=dict(value_exact),
        col_numbers=dict(col_numbers),
    )


def _join_graph(
    schema: Schema, infos: list[TableInfo], by_db: dict[str, list[int]]
) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    strong: dict[int, set[int]] = defaultdict(set)
    weak: dict[int, set[int]] = defaultdict(set)
    pos = {(t.table.db.lower(), t.table.name.lower()): i for i, t in enumerate(infos)}

    def link(a: int, b: int, graph: dict[int, set[int]]) -> None:
        if a != b:
            graph[a].add(b)
            graph[b].add(a)

    for i, info in enumerate(infos):
        t = info.table
        for fk in t.foreign_keys:
            j = pos.get(((fk.ref_db or t.db).lower(), fk.ref_table.lower()))
            if j is not None:
                link(i, j, strong)
    for _db, members in by_db.items():
        # A table's own key: its primary key, else a column "<its name> id" or "id".
        own_key: dict[int, set[tuple[str, ...]]] = defaultdict(set)
        by_last: dict[str, list[int]] = defaultdict(list)  # last name word -> tables
        col_tables: dict[tuple[str, ...], list[tuple[int, str]]] = defaultdict(list)
        for i in members:
            info = infos[i]
            if info.name_words:
                by_last[info.name_words[-1]].append(i)
            for cname, ws in info.columns.items():
                col_tables[ws].append((i, cname))
                if cname in info.table.primary_key and len(info.table.primary_key) == 1:
                    own_key[i].add(ws)
                elif (
                    info.name_words
                    and ws
                    and ws[-1] in KEY_TAILS
                    and (ws[:-1] == info.name_words[-len(ws) + 1 :] if len(ws) > 1 else True)
                ):
                    own_key[i].add(ws)
        small = len(members) <= WEAK_MAX_TABLES
        for ws, holders in col_tables.items():
            if len(holders) < 2 or not ws:
                continue
            key_like = _is_key_like(ws) or any(ws in own_key[i] for i, _ in holders)
            generic = len(ws) == 1 and ws[0] in _GENERIC
            if key_like and not generic:
                # a key shared by many tables (a fact table's dimension key) still joins
                for a, ca in holders:
                    infos[a].key_columns.add(ca)
                owners = [i for i, _ in holders if ws in own_key[i]]
                if len(holders) > FAN_OUT and owners:
                    # tenant_id in a thousand tables: each joins the table that owns the key,
                    # not every other holder (a million edges, built every cell)
                    for a, _ in holders:
                        for b in owners:
                            link(a, b, strong)
                elif len(holders) <= FAN_OUT:
                    for a, _ in holders:
                        for b, _ in holders:
                            link(a, b, strong)
            elif small and not generic and len(holders) <= 4:
                for a, _ in holders:
                    for b, _ in holders:
                        link(a, b, weak)
        # "<x> id" / "home team id" naming table x, or ending in another table's key
        keys_by_words: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, ks in own_key.items():
            for k in ks:
                if len(k) >= 2:
                    keys_by_words[k].append(i)
        for i in members:
            for cname, ws in infos[i].columns.items():
                if not _is_key_like(ws):
                    continue
                hit = False
                for cut in range(len(ws) - 1):
                    for j in keys_by_words.get(ws[cut:], ()):
                        link(i, j, strong)
                        hit = True
                for j in by_last.get(ws[-2], ()):
                    if infos[j].table.primary_key or any(w[-1] in KEY_TAILS for w in own_key[j]):
                        link(i, j, strong)
                        hit = True
                if hit:
                    infos[i].key_columns.add(cname)
    return dict(strong), dict(weak)
