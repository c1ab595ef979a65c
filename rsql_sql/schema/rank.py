"""Which tables to show first: pinned ones, then by relevance to the question.

Lexical and offline (a few ms on ~900 tables, the index is built once per schema, see
:mod:`.index`). A question word scores a table by where it is found (the table's name, a
column's name, a column's values when the policy allows them), weighted by how rare the word
is across the schema. Then three corrections for what a word count misses:

- the namespace as a signal: when the best matches concentrate in one schema (one small
  database of a warehouse), its other tables, the joinable ones most, rank up, so they are
  not displaced by look-alike tables of other schemas;
- neighbours: tables joined (declared or inferred keys) to a strong match rank up a little;
- join paths: when two of the best tables connect only through a table not yet chosen (a
  bridge such as ``has_pet``), the bridge is placed right after them;
- a value's table brings the question's other tables: when a literal of the question is found
  in a table, the tables of its namespace the question names by a word of their name follow it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field

from ..catalog import Schema, Table, ValuesPolicy
from .index import SchemaIndex, index_of
from .name_match import (
    column_abbreviation_hits,
    column_prefix_hits,
    column_stem_hits,
    compound_hits,
    prefix_hits,
    spelled_columns,
)
from .words import acronyms, question_literals, question_words

__all__ = ["Ranking", "rank", "rank_tables"]

# Weights per place a word is found; a table name says most about what a question needs.
W_NAME, W_PREFIX, W_VALUE, W_COLUMN, W_COLUMN_PREFIX = 3.0, 2.0, 1.6, 1.0, 0.7
W_PROBE = 2.0  # a literal of the question found, whole, in a column
W_COLUMN_STEM = 0.35  # a column word sharing a long start ("religious", pf_religion): less sure
W_COMPOUND = 0.7  # a column named by two words' starts ("zero tolerance", zerotol)
_NUMBER = re.compile(r"(?<![0-9])[0-9]{2,}(?![0-9])")  # as index.py reads names
SEEDS = 8  # the best tables whose join paths are completed
SEED_SHARE = 0.3  # ... counting only those scoring at least this share of the best


@dataclass
class Ranking:
    """Tables in display order, and per table the columns the question matched."""

    tables: list[Table]
    matched: dict[int, set[str]] = field(default_factory=dict)  # id(table) -> column names
    scores: dict[int, float] = field(default_factory=dict)  # id(table) -> score
    # Only where the policy allows values: id(table) -> {column: a value equal to a literal of
    # the question, as stored}; and the question's years, for the ranges of date columns.
    examples: dict[int, dict[str, str]] = field(default_factory=dict)
    years: tuple[str, ...] = ()
    # id(table) -> the part of its score that values gave (a word or literal of the question
    # found in its values): why a table was placed where it is (rsql-eval's miss reasons)
    value_scores: dict[int, float] = field(default_factory=dict)


def rank(
    schema: Schema,
    question: str | None,
    pinned: list[str] | None = None,
    *,
    policy: ValuesPolicy | None = None,
) -> Ranking:
    """Rank `schema`'s tables for `question`; `policy` (a ContextPolicy) decides whether the
    captured values may be used: only with ``value_stats``, never a redacted column's."""
    idx = index_of(schema)
    use_values = policy is not None and getattr(policy, "value_stats", False)
    # %%sql_ai ranks a question twice (capture_values' probe, then the text) and, when the
    # probe found nothing new, with the same inputs: the second costs nothing
    memo_key = (
        question,
        tuple(pinned or ()),
        use_values,
        tuple(getattr(policy, "redact_columns", ())) if use_values else (),
        tuple(sorted(schema.probes.items())) if use_values else (),
    )
    if idx.rank_memo is not None and idx.rank_memo[0] == memo_key:
        memo: Ranking = idx.rank_memo[1]
        return memo
    ranking = _rank(schema, idx, question, pinned, policy if use_values else None)
    idx.rank_memo = (memo_key, ranking)
    return ranking


def _rank(
    schema: Schema,
    idx: SchemaIndex,
    question: str | None,
    pinned: list[str] | None,
    policy: ValuesPolicy | None,
) -> Ranking:
    n = len(idx.infos)
    use_values = policy is not None
    score = [0.0] * n
    matched: dict[int, set[str]] = defaultdict(set)
    words = question_words(question or "")
    qcompact = {"".join(ch for ch in w.lower() if ch.isalnum()) for w in (question or "").split()}
    db_hits: dict[str, float] = defaultdict(float)
    # what values gave each table, and the question's words its names matched: a value match
    # that no other word of the question agrees with is weighed down (_agreement)
    by_value: dict[int, float] = defaultdict(float)
    agreeing: dict[int, set[str]] = defaultdict(set)
    value_words: dict[int, set[str]] = defaultdict(set)
    for w in words:
        weight = idx.word_idf(w)
        contrib: dict[int, float] = {}
        for i in idx.name_post.get(w, ()):
            contrib[i] = W_NAME
        if len(w) >= 4:
            for i in prefix_hits(idx, w):
                contrib[i] = max(contrib.get(i, 0.0), W_PREFIX)
        if len(w) >= 5:
            for i, cols in column_prefix_hits(idx, w).items():
                contrib[i] = max(contrib.get(i, 0.0), W_COLUMN_PREFIX)
                matched[i] |= cols
        for i, cols in idx.col_post.get(w, {}).items():
            contrib[i] = max(contrib.get(i, 0.0), W_COLUMN)
            matched[i] |= cols
        for i, cols in column_abbreviation_hits(idx, w).items():
            matched[i] |= cols
        if len(w) >= 7:
            for i, cols in column_stem_hits(idx, w).items():
                contrib[i] = max(contrib.get(i, 0.0), W_COLUMN_STEM)
                matched[i] |= cols
        for i in contrib:
            agreeing[i].add(w)
        if use_values and policy is not None:
            held = idx.value_post.get(w, {})
            # rarer across the warehouse, stronger: a word held by the values of many columns
            # ("normal", "other") says little about which one the question means
            rarity = 1.0 / (1.0 + math.log(max(1, sum(len(c) for c in held.values()))))
            for i, cols in held.items():
                ok = {c for c in cols if not policy.redacts(c)}
                if ok:
                    v = W_VALUE * rarity
                    if v > contrib.get(i, 0.0):
                        by_value[i] += (v - contrib.get(i, 0.0)) * weight
                        contrib[i] = v
                    value_words[i].add(w)
                    matched[i] |= ok
        for i, c in contrib.items():
            score[i] += c * weight
        for db in idx.db_post.get(w, ()):
            db_hits[db] += weight
        if len(w) >= 5:  # "flight" in "nycflights13"
            for db in idx.by_db:
                if w in db.lower() and db not in idx.db_post.get(w, ()):
                    db_hits[db] += weight * 0.7
    if words:
        _initials(idx, score, matched, agreeing, question or "")
        for i, cols in compound_hits(idx, question or "").items():
            score[i] += W_COMPOUND * idx.word_idf("")
            matched[i] |= cols
            agreeing[i].update(cols)
    examples: dict[int, dict[str, str]] = defaultdict(dict)
    years: tuple[str, ...] = ()
    valued: set[int] = set()  # tables holding a literal of the question
    if use_values and policy is not None and question:
        literals = question_literals(question)
        years = tuple(x for x in literals if x.isdigit())
        for lit in literals:
            # in the captured categorical values, or found by capture_values' probe
            probed = [
                (idx.by_name[(dbn, tname)], col, v)
                for dbn, tname, col, v in schema.probes.get(lit.lower(), ())
                if (dbn, tname) in idx.by_name
            ]
            found = [
                hit
                for hit in dict.fromkeys([*idx.value_exact.get(lit.lower(), ()), *probed])
                if not policy.redacts(hit[1])
            ]
            holders = {i for i, _, _ in found}
            valued |= holders
            for i in holders:  # weighed like a word: rarer across tables, stronger
                gain = W_PROBE * math.log(1 + n / len(holders))
                score[i] += gain
                by_value[i] += gain
                value_words[i].update(question_words(lit))
            for i, col, v in found:
                matched[i].add(col)
                examples[i].setdefault(col, v)
    for number in dict.fromkeys(_NUMBER.findall(question or "")):
        # a year or number of the question in a column's name: that column of a wide table is
        # shown; a year also ranks its tables up a little (a number may be a count: "top 10")
        key = number.lstrip("0") or "0"
        naming = idx.col_numbers.get(key, {})
        for i, cols in naming.items():
            matched[i] |= cols
            if len(key) == 4:
                score[i] += W_COLUMN_PREFIX * math.log(1 + n / len(naming))
    if by_value:
        _agreement(idx, score, by_value, agreeing, value_words, db_hits)
    if words:
        acr = acronyms(question or "")
        for i, info in enumerate(idx.infos):
            nw = info.name_words
            # a name all of whose words are asked about ("MovieGenre" for movies by genre)
            if len(nw) >= 2 and all(x in words for x in nw):
                score[i] += sum(idx.word_idf(x) for x in nw) * 0.5
            if info.compact in qcompact:  # the name as written, "has_pet"
                score[i] += W_NAME * idx.word_idf(info.name_words[0] if nw else "")
            elif len(info.compact) >= 3 and info.compact in acr:  # "bmt": bone marrow transpl.
                score[i] += W_NAME * idx.word_idf("")
        for db, h in db_hits.items():
            for i in idx.by_db[db]:
                score[i] += 0.5 * h
        _namespace_signal(idx, score)
        _neighbours(idx, score)
    if words:
        spelled_columns(idx, score, matched, question or "")
    order = _order(idx, score, pinned)
    if words:
        order = _complete_paths(idx, score, order, pinned)
    if valued and not pinned:
        order = _bring_named(idx, score, order, valued, set(words))
    tables = [idx.infos[i].table for i in order]
    return Ranking(
        tables,
        {id(idx.infos[i].table): cols for i, cols in matched.items()},
        {id(idx.infos[i].table): score[i] for i in range(n)},
        {id(idx.infos[i].table): ex for i, ex in examples.items()},
        years,
        {id(idx.infos[i].table): v for i, v in by_value.items() if v > 0},
    )


FAMILY = 4  # columns sharing a word of initials that make a family of indicators


def _initials(
    idx: SchemaIndex,
    score: list[float],
    matched: dict[int, set[str]],
    agreeing: dict[int, set[str]],
    question: str,
) -> None:
    """Initials of two or three words of the question that are a word of a column's name
    of ``FAMILY`` or more of its columns ("economic freedom" -> ``ef_score``, ``ef_trade``; "smear
    positive" -> ``new_sp_m2534``) rank the table a little, weighed by how rare they are: wide
    tables of indicators name their families so."""
    for ac in acronyms(question):
        if len(ac) > 3:
            continue
        for i, cols in idx.col_post.get(ac, {}).items():
            if len(cols) < FAMILY:  # a family (ef_score, ef_trade, ...), not one by chance
                continue
            score[i] += W_COLUMN_PREFIX * idx.word_idf(ac)
            matched[i] |= cols
            agreeing[i].add(ac)


ALONE = 0.4  # what a value match keeps when no other word of the question agrees with it


def _agreement(
    idx: SchemaIndex,
    score: list[float],
    by_value: dict[int, float],
    agreeing: dict[int, set[str]],
    value_words: dict[int, set[str]],
    db_hits: dict[str, float],
) -> None:
    """A value match counts in full when another word of the question agrees with its table
    (a word of its name or columns, of its namespace's name, or of another table of its
    namespace); alone, it keeps ``ALONE``: "normal" in a medical question equals a value of
    ``cards.layout``, and must not lift the card game above ``Laboratory``."""
    db_words: dict[str, set[str]] = defaultdict(set)
    for j, ws in agreeing.items():
        db_words[idx.infos[j].table.db] |= ws
    for i, v in list(by_value.items()):
        db = idx.infos[i].table.db
        if db in db_hits or (agreeing.get(i, set()) | db_words[db]) - value_words[i]:
            continue
        cut = v * (1 - ALONE)
        score[i] -= cut
        by_value[i] = v - cut


def _namespace_signal(idx: SchemaIndex, score: list[float]) -> None:
    """When the top matches concentrate in one namespace, its tables rank up (its joinable
    ones most), so a question's own small database keeps its places."""
    top = sorted((i for i in range(len(score)) if score[i] > 0), key=lambda i: -score[i])[:10]
    if not top:
        return
    mass: dict[str, float] = defaultdict(float)
    for i in top:
        mass[idx.infos[i].table.db] += score[i]
    db, m = max(mass.items(), key=lambda kv: kv[1])
    if m < 0.5 * sum(mass.values()) or len(idx.by_db[db]) > 60:
        return  # spread over namespaces, or one too big to say anything
    best = max(score[i] for i in idx.by_db[db])
    hits = {i for i in idx.by_db[db] if score[i] >= 0.3 * best}
    for i in idx.by_db[db]:
        joinable = bool(idx.strong.get(i, set()) & hits or idx.weak.get(i, set()) & hits)
        score[i] += best * (0.3 if joinable else 0.1)


def _neighbours(idx: SchemaIndex, score: list[float]) -> None:
    bonus: dict[int, float] = {}
    for i, s in enumerate(score):
        if s <= 0:
            continue
        for j in idx.strong.get(i, ()):
            bonus[j] = max(bonus.get(j, 0.0), 0.25 * s)
    for j, b in bonus.items():
        score[j] += b


def _pin_pos(idx: SchemaIndex, pinned: list[str] | None) -> dict[int, int]:
    if not pinned:
        return {}
    want = [p.lower() for p in pinned]
    out = {}
    for i, info in enumerate(idx.infos):
        for k, p in enumerate(want):
            if p in (info.table.name.lower(), info.key):
                out[i] = k
                break
    return out


def _order(idx: SchemaIndex, score: list[float], pinned: list[str] | None) -> list[int]:
    pins = _pin_pos(idx, pinned)
    return sorted(
        range(len(score)),
        key=lambda i: (0 if i in pins else 1, pins.get(i, 0), -score[i], i),
    )


def _path(
    idx: SchemaIndex, start: int, targets: set[int], graph: dict[int, set[int]], max_hops: int = 4
) -> list[int]:
    """The tables strictly between `start` and the nearest of `targets` (BFS), or []."""
    prev = {start: -1}
    queue = deque([(start, 0)])
    while queue:
        i, d = queue.popleft()
        if d >= max_hops:
            continue
        for j in sorted(graph.get(i, ())):
            if j in prev:
                continue
            prev[j] = i
            if j in targets:
                path = []
                k = i
                while k != start:
                    path.append(k)
                    k = prev[k]
                return path
            queue.append((j, d + 1))
    return []


def _complete_paths(
    idx: SchemaIndex, score: list[float], order: list[int], pinned: list[str] | None
) -> list[int]:
    pins = _pin_pos(idx, pinned)
    head = [i for i in order if i in pins]
    rest = [i for i in order if i not in pins]
    if not rest or score[rest[0]] <= 0:
        return order
    best = score[rest[0]]
    seeds = [i for i in rest[:SEEDS] if score[i] >= SEED_SHARE * best]
    out: list[int] = list(head)
    placed = set(out)
    for s in seeds:
        if s in placed:
            continue
        db = idx.infos[s].table.db
        mates = {j for j in placed if idx.infos[j].table.db == db}
        if mates and not (idx.either.get(s, set()) & mates):
            path = _path(idx, s, mates, idx.strong) or _path(idx, s, mates, idx.either)
            out.append(s)
            placed.add(s)
            for j in reversed(path):
                if j not in placed:
                    out.append(j)
                    placed.add(j)
            continue
        out.append(s)
        placed.add(s)
    out += [i for i in rest if i not in placed]
    return out


BROUGHT = 2  # tables of its namespace the question names that a value's table brings along


def _bring_named(
    idx: SchemaIndex, score: list[float], order: list[int], valued: set[int], words: set[str]
) -> list[int]:
    """A table reached through a value ("cartoons written by Todd Casey" -> ``Cartoon``)
    brings the tables of its namespace the question also names by a word of their name
    ("countries ... on TV" -> ``TV_Channel``), placed right after it unless already among
    the first ``SEEDS``: the value's table alone rarely answers."""
    out = list(order)
    for a in sorted(valued, key=out.index)[:SEEDS]:
        if out.index(a) >= SEEDS:
            break
        db = idx.infos[a].table.db
        first = set(out[:SEEDS])
        named = [
            j
            for j in idx.by_db[db]
            if j != a
            and j not in first
            and any(len(w) >= 2 and w in words for w in idx.infos[j].name_words)
        ]
        named.sort(key=lambda j: (-score[j], j))
        at = out.index(a) + 1
        for j in named[:BROUGHT]:
            out.remove(j)
            out.insert(at, j)
            at += 1
    return out


def rank_tables(
    schema: Schema, question: str | None, pinned: list[str] | None = None
) -> list[Table]:
    """Tables in the order they should be shown: pinned, then by relevance to the question
    (without values: see :func:`rank` for the policy that allows them)."""
    return rank(schema, question, pinned).tables
