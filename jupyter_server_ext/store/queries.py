"""Turning usage rows into the admin views; shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
from typing import Any

from ..engine.accounting.usage import COLUMNS


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return round(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo), 3)


# The prompt cache's columns summed, in both dialects: tokens read from it, the prompt tokens of
# the rows that say (a row of an older version has no cache columns: neither read nor saved),
# and what it saved (each request at the input price throughout, less what it cost)
CACHE_SUMS = (
    "SUM(COALESCE(cache_read_tokens, 0)), "
    "SUM(CASE WHEN uncached_usd IS NULL THEN 0 ELSE COALESCE(prompt_tokens, 0) END), "
    "SUM(COALESCE(uncached_usd, cost_usd, 0) - COALESCE(cost_usd, 0))"
)


def prompt_cache(read: Any, prompt: Any, saved: Any) -> dict[str, Any]:
    """What a provider's prompt cache did for some requests: tokens read from it, the share of
    their prompts that was (None: no prompt said), and the dollars it saved."""
    read, prompt = int(read or 0), int(prompt or 0)
    return {
        "read_tokens": read,
        "hit_ratio": round(read / prompt, 4) if prompt else None,
        "saved_usd": round(float(saved or 0), 6),
    }


def summarize(
    totals: tuple[Any, ...],
    latencies: list[float],
    by_model: list[tuple[Any, ...]],
    by_user: list[tuple[Any, ...]],
) -> dict[str, Any]:
    """`totals`: (requests, succeeded, prompt, completion, cost, response-cache hits, then the
    CACHE_SUMS); each group's row: (name, requests, errors, tokens, cost, then the CACHE_SUMS)."""
    n, ok, prompt, completion, cost, hits = (v or 0 for v in totals[:6])
    latencies.sort()

    def group(rows: list[tuple[Any, ...]], name: str) -> list[dict[str, Any]]:
        return [
            {
                name: r[0],
                "requests": r[1],
                "errors": r[2],
                "tokens": r[3] or 0,
                "cost_usd": round(r[4] or 0, 6),
                "prompt_cache": prompt_cache(*r[5:8]),
            }
            for r in rows
        ]

    return {
        "requests": n,
        "succeeded": ok,
        "success_rate": round(ok / n, 4) if n else None,
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
        },
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "cost_usd": round(cost, 6),
        "cache_hits": hits,
        "cache_hit_rate": round(hits / n, 4) if n else None,
        "prompt_cache": prompt_cache(*totals[6:9]),
        "by_model": group(by_model, "model"),
        "by_user": group(by_user, "user"),
    }


# what the admin views read back: every column of the usage log but the stored prompt
ROW_FIELDS = tuple(c for c in COLUMNS if c != "prompt")

# columns added after the first release: a table made by an older version gets them on open
ADDED_COLUMNS = (
    ("redactions", "TEXT"),
    ("fallback", "TEXT"),
    ("escalation", "TEXT"),
    ("notebook", "TEXT"),
    ("cell", "TEXT"),
    ("api", "TEXT"),
    ("result_rows", "INTEGER"),
    ("cache_read_tokens", "INTEGER"),
    ("cache_write_tokens", "INTEGER"),
    ("uncached_usd", "DOUBLE PRECISION"),  # a double in SQLite and PostgreSQL alike
    ("audio_input_tokens", "INTEGER"),
    ("audio_output_tokens", "INTEGER"),
)


def as_dicts(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = dict(zip(ROW_FIELDS, r, strict=False))
        d["cache_hit"] = bool(d["cache_hit"])
        # placeholders put in per type, as JSON text in the row: {"email": 2}; {} when none
        try:
            d["redactions"] = json.loads(d["redactions"]) if d.get("redactions") else {}
        except ValueError:
            d["redactions"] = {}
        out.append(d)
    return out


# A request refused by a limit: our 429s (per-user and global windows, upstream accounts all
# spent) and the budget's refusals; everything else at 400 or above is a failure.
REFUSED_SQL = "(status = 429 OR COALESCE(error, '') = 'over_budget')"


def build_series(
    counts: list[tuple[Any, ...]],
    latencies: list[tuple[Any, ...]],
    since: float,
    until: float,
    step: int,
) -> list[dict[str, Any]]:
    """One point per `step` seconds from `since` to `until`, empty buckets included (a chart
    then shows a quiet minute as zero, not as a line drawn across it).

    `counts`: (bucket, answered, refused, failed); `latencies`: (bucket, latency_ms,
    overhead_ms) of answered requests; a bucket is ``floor(ts / step)``.
    """
    by_bucket = {int(b): (a or 0, r or 0, f or 0) for b, a, r, f in counts}
    lat: dict[int, list[float]] = {}
    over: dict[int, list[float]] = {}
    for b, latency, overhead in latencies:
        if latency is not None:
            lat.setdefault(int(b), []).append(float(latency))
        if overhead is not None:
            over.setdefault(int(b), []).append(float(overhead))
    out = []
    for b in range(int(since // step), int(until // step) + 1):
        answered, refused, failed = by_bucket.get(b, (0, 0, 0))
        ls, os_ = sorted(lat.get(b, [])), sorted(over.get(b, []))
        out.append(
            {
                "t": b * step,
                "answered": answered,
                "refused": refused,
                "failed": failed,
                "p50_ms": percentile(ls, 0.50),
                "p95_ms": percentile(ls, 0.95),
                "overhead_p50_ms": percentile(os_, 0.50),
            }
        )
    return out


def user_rows(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """(user, requests, errors, tokens, cost, then the CACHE_SUMS) rows as the admin views show
    them."""
    return [
        {
            "user": r[0],
            "requests": r[1],
            "errors": r[2] or 0,
            "tokens": r[3] or 0,
            "cost_usd": round(r[4] or 0, 6),
            "prompt_cache": prompt_cache(*r[5:8]),
        }
        for r in rows
    ]


TOP_ORDER = {"requests": "COUNT(*) DESC", "cost": "SUM(cost_usd) DESC"}


# -- one row per request ------------------------------------------------------------------------
# A unique index on request_id lets a batch be sent again (after a retry, a crash, or a peer
# taking over a dead process's spool) without a second row. Tables made by older versions get
# it on open; rows they already hold twice are settled first (``dedupe_sql``).


def dedupe_sql(table: str, columns: tuple[str, ...], user: str) -> tuple[str, str]:
    """(delete, rename): delete a row that is an exact copy of an older one with its request_id
    (a retried write), then give a row that shares its request_id with an older, different one
    the id ``<request_id>~dup-<row id>``: nothing but true copies is lost, and the index can be
    made. `user` is how the dialect writes the ``user`` column."""
    same = " AND ".join(
        f"a.{user if c == 'user' else c} IS NOT DISTINCT FROM b.{user if c == 'user' else c}"
        for c in columns
    )
    delete = (
        f"DELETE FROM {table} WHERE id IN (SELECT a.id FROM {table} a JOIN {table} b "
        f"ON a.request_id = b.request_id AND a.id > b.id WHERE {same})"
    )
    rename = (
        f"UPDATE {table} SET request_id = request_id || '~dup-' || id WHERE id IN "
        f"(SELECT a.id FROM {table} a JOIN {table} b ON a.request_id = b.request_id AND a.id > b.id)"
    )
    return delete, rename


def duplicates_sql(table: str) -> str:
    return f"SELECT COUNT(*) FROM (SELECT request_id FROM {table} GROUP BY request_id HAVING COUNT(*) > 1) d"


def deduped_message(table: str, deleted: int, renamed: int) -> str:
    return (
        f"usage table {table}: {deleted} rows were exact copies of an older row with the same "
        f"request_id (a retried write) and were deleted; {renamed} rows shared a request_id with a "
        "different row and were kept with the request_id '<request_id>~dup-<row id>'. A unique "
        "index on request_id now keeps each request to one row"
    )


# -- cost per notebook ------------------------------------------------------------------------
# Both stores run the same statements; `{user}` is how the dialect writes the user column and
# `?` its placeholder, filled in by each store.
NOTEBOOKS_SQL = (
    "SELECT {user}, notebook, COUNT(*), SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(completion_tokens, 0)), "
    "SUM(COALESCE(cost_usd, 0)), COUNT(DISTINCT cell), MAX(ts), " + CACHE_SUMS + " FROM {table} "
    "WHERE ts >= ? AND notebook IS NOT NULL {only_user}GROUP BY {user}, notebook "
    "ORDER BY SUM(COALESCE(cost_usd, 0)) DESC, COUNT(*) DESC LIMIT ?"
)
SPEND_SQL = (
    "SELECT COUNT(*), SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(completion_tokens, 0)), "
    "SUM(COALESCE(cost_usd, 0)), " + CACHE_SUMS + " FROM {table} "
    "WHERE {user} = ? AND notebook = ? AND ts >= ?"
)
# one user's prompt cache by model since a time (GET me)
PROMPT_CACHE_SQL = (
    "SELECT model, COUNT(*), " + CACHE_SUMS + " FROM {table} WHERE {user} = ? AND ts >= ? "
    "GROUP BY model ORDER BY COUNT(*) DESC LIMIT 50"
)
CELLS_SQL = (
    "SELECT cell, COUNT(*), SUM(COALESCE(cost_usd, 0)) FROM {table} WHERE {user} = ? AND notebook = ? "
    "AND ts >= ? AND cell IS NOT NULL GROUP BY cell ORDER BY SUM(COALESCE(cost_usd, 0)) DESC, COUNT(*) DESC LIMIT 20"
)


def notebook_rows(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [
        {
            "user": r[0],
            "notebook": r[1],
            "requests": r[2],
            "prompt_tokens": int(r[3] or 0),
            "completion_tokens": int(r[4] or 0),
            "cost_usd": round(float(r[5] or 0), 6),
            "cells": r[6] or 0,
            "last_ts": r[7],
            "prompt_cache": prompt_cache(*r[8:11]),
        }
        for r in rows
    ]


def spend(row: tuple[Any, ...] | None) -> dict[str, Any]:
    n, prompt, completion, cost, *cache = row or (0, 0, 0, 0, 0, 0, 0)
    return {
        "requests": int(n or 0),
        "prompt_tokens": int(prompt or 0),
        "completion_tokens": int(completion or 0),
        "cost_usd": round(float(cost or 0), 6),
        "prompt_cache": prompt_cache(*cache),
    }


def prompt_cache_rows(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """(model, requests, CACHE_SUMS) rows: one user's prompt cache, in all and by model."""
    models = [{"model": r[0], "requests": r[1], **prompt_cache(*r[2:5])} for r in rows]
    read = sum(m["read_tokens"] for m in models)
    prompt = sum(int(r[3] or 0) for r in rows)
    saved = sum(float(r[4] or 0) for r in rows)
    return {**prompt_cache(read, prompt, saved), "by_model": models}


def cell_rows(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [{"cell": r[0], "requests": r[1], "cost_usd": round(float(r[2] or 0), 6)} for r in rows]
