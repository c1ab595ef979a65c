"""Completions at class scale: N editors through rsql-proxy's ``{proxy}inline`` (#58, item 4;
#76: more than one core).

Each deployment (``DEPLOYMENTS``): one process at every class size; ``--workers 2`` and two
replicas, both on Redis state (which keeps the per-user limits exact across them), at 500.
For each class size N (50, 200, 500; ``--quick``: 20 and 50) a fresh rsql-proxy (memory state,
SQLite usage log, the product's default completion limits, ``completion_user_limits`` and
``completion_user_concurrency``, read from the product) in front of ``bench/upstream.py`` as a
200 ms model (every answer's first byte and end at 200 ms). ``bench/editors.py`` (its own process) runs N
editors, each a user of their own typing at the pace the debounce allows (250 ms, then the
completion streamed to its end, then the next keystroke), and max(2, N/50) pushers (debounce 0,
a key every 50 ms, each keystroke aborting the completion before it). Measured: the editors'
completion time minus the model's own (its p50, straight to the upstream, sequential, in the
same run), the proxy's CPU per completion (from /proc), and from the usage log the pushers'
admitted completions per minute and in flight at once against their limits.

Run by ``bench/bench_forwarder.py --only class``, which keeps the results and writes the page.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from common import (
    BENCH,
    MODEL,
    PY,
    Procs,
    loadavg,
    log,
    start_service,
    start_upstream,
    tree_cpu_seconds,
    upstream_configs,
    upstream_stats,
    workdir,
)
from proxy_runs import pct, ttfb

from jupyter_server_ext.config.inline import InlineCompletionSettings
from jupyter_server_ext.engine.upstreams.specs import parse_rates

MODEL_SECONDS = 0.2
# the product's defaults, which this run keeps
_DEFAULTS = InlineCompletionSettings.class_traits()
LIMIT_PER_MINUTE = next(
    r.amount
    for r in parse_rates(_DEFAULTS["completion_user_limits"].default(), where="default")
    if r.seconds == 60
)
LIMIT_CONCURRENCY = _DEFAULTS["completion_user_concurrency"].default()
SIZES, QUICK_SIZES = (50, 200, 500), (20, 50)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # the editors' process, once waited for
    return ru.ru_utime + ru.ru_stime


def run_editors(urls: list[str], users_file: Path, seconds: float) -> dict[str, Any]:
    argv = [PY, str(BENCH / "editors.py"), *(a for u in urls for a in ("--url", u))]
    argv += ["--users", str(users_file)]
    res = subprocess.run(
        [*argv, "--seconds", str(seconds)], capture_output=True, text=True, timeout=seconds + 90
    )
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("LOADJSON ")), None)
    if line is None:
        raise RuntimeError(f"editors.py failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return json.loads(line[9:])


Row = tuple[str, float, float, int, float, bool]


def usage_rows(db: Path) -> list[Row]:
    """(user, start, latency s, status, overhead ms, sent to the model) of a stopped proxy's
    inline usage rows. A row whose request reached the model was admitted; its latency runs to
    the model's answer read, when its lease comes back, even when the client left before."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT user, ts, latency_ms, status, overhead_ms, upstream IS NOT NULL FROM usage "
            "WHERE api = 'inline'"
        ).fetchall()
    return [
        (
            u,
            float(ts),
            (lat or 0.0) / 1000,
            int(st or 0),
            float("nan" if o is None else o),
            bool(up),
        )
        for u, ts, lat, st, o, up in rows
    ]


def most_in_window(starts: list[float], seconds: float) -> int:
    """The most of `starts` in any window of `seconds` (a moving window, as the limit counts)."""
    xs, best, j = sorted(starts), 0, 0
    for i, t in enumerate(xs):
        while xs[j] <= t - seconds:
            j += 1
        best = max(best, i - j + 1)
    return best


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans [start, end) open at one moment."""
    marks = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = best = 0
    for _, d in marks:
        now += d
        best = max(best, now)
    return best


def class_summary(n: int, pushers: int, load: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    res = load["results"]  # [user index, start, end, status, first, retry-after, RateLimit label]
    ed = [r for r in res if r[0] < n]
    pu = [r for r in res if r[0] >= n]
    done = [r for r in ed if r[3] == 200]
    took = [r[2] - r[1] for r in done]
    refused = [r for r in res if r[3] == 429]
    labels: dict[str, int] = {}
    for r in refused:
        labels[r[6] or "?"] = labels.get(r[6] or "?", 0) + 1
    admitted: dict[str, list[tuple[float, float]]] = {}
    overhead = [r[4] for r in rows if r[0].startswith("editor") and r[3] == 200 and r[4] == r[4]]
    for user, ts, lat, _, _, sent in rows:
        if sent:  # certainly admitted: counted in the window, held a lease to the answer's end
            admitted.setdefault(user, []).append((ts, ts + lat))
    # the client left before the request reached the model: maybe before admission, maybe not
    unsent = [r for r in rows if r[0].startswith("pusher") and r[3] != 429 and not r[5]]
    pusher_users = [u for u in admitted if u.startswith("pusher")]
    return {
        "editors": n,
        "pushers": pushers,
        "seconds": load["seconds"],
        "completions": len(done),
        "per_editor_per_s": len(done) / n / load["seconds"],
        "editor_statuses": {str(s): sum(1 for r in ed if r[3] == s) for s in {r[3] for r in ed}},
        "editor_429": sum(1 for r in ed if r[3] == 429),
        "took_p50_ms": 1000 * pct(took, 0.5) if took else float("nan"),
        "took_p99_ms": 1000 * pct(took, 0.99) if took else float("nan"),
        "pusher_sent": len(pu),
        "pusher_statuses": {str(s): sum(1 for r in pu if r[3] == s) for s in {r[3] for r in pu}},
        "refused_429": len(refused),
        "refused_with_retry_after": sum(1 for r in refused if r[5]),
        "refusal_labels": labels,
        "log_rows": len(rows),
        "pusher_dropped_before_model": len(unsent),
        "pusher_admitted_max_per_minute": max(
            (most_in_window([a for a, _ in admitted[u]], 60.0) for u in pusher_users), default=0
        ),
        "pusher_admitted_max_at_once": max(
            (most_at_once(admitted[u]) for u in pusher_users), default=0
        ),
        "editor_admitted_max_at_once": max(
            (most_at_once(v) for u, v in admitted.items() if u.startswith("editor")), default=0
        ),
        "log_overhead_p50_ms": pct(overhead, 0.5) if overhead else float("nan"),
        "log_overhead_p99_ms": pct(overhead, 0.99) if overhead else float("nan"),
    }


# the class sizes each deployment runs: one process (memory state) at every size; the ways to
# more cores (workers on one port, replicas; both need Redis, which makes the limits exact
# across them) at the sizes one process cannot carry
DEPLOYMENTS: tuple[tuple[str, int, int, tuple[int, ...]], ...] = (
    # (name, workers, replicas, sizes)
    ("one process", 1, 1, SIZES),
    ("--workers 2, Redis", 2, 1, (500,)),
    ("2 replicas, Redis", 1, 2, (500,)),
)
REDIS = "redis://127.0.0.1:6379/0"


def bench_class(quick: bool) -> dict[str, Any]:
    seconds = 6.0 if quick else 20.0
    out: dict[str, Any] = {
        "seconds": seconds,
        "model_seconds": MODEL_SECONDS,
        "limits": [LIMIT_PER_MINUTE, LIMIT_CONCURRENCY],
        "runs": [],
    }
    with workdir("class") as d, Procs(d) as procs:
        up = start_upstream(procs, latency=MODEL_SECONDS, name="model", spans=True)
        model = ttfb(None, up + "/chat/completions", "Bearer x", 20 if quick else 50)
        out["model_p50_ms"] = 1000 * statistics.median(model["total"])
        log(f"class: the model straight, p50 {out['model_p50_ms']:.1f} ms")
        for deployment, workers, replicas, sizes in DEPLOYMENTS:
            for n in QUICK_SIZES if quick and workers == replicas == 1 else sizes:
                run = _one_class(procs, d, up, n, seconds, deployment, workers, replicas)
                run.update(
                    added_p50_ms=run["took_p50_ms"] - out["model_p50_ms"],
                    added_p99_ms=run["took_p99_ms"] - out["model_p50_ms"],
                )
                log("   ", {k: v for k, v in run.items() if not isinstance(v, dict)})
                out["runs"].append(run)
    return out


def _one_class(
    procs: Procs,
    d: Path,
    up: str,
    n: int,
    seconds: float,
    deployment: str,
    workers: int,
    replicas: int,
) -> dict[str, Any]:
    """N editors and their pushers through a fresh deployment of rsql-proxy: its measures."""
    pushers = max(2, n // 50)
    people = [("editor", i) for i in range(n)] + [("pusher", i) for i in range(pushers)]
    tokens = [f"class{n}-{kind}-{i:04d}-" + "0" * 16 for kind, i in people]
    users = {t: {"name": f"{kind}{i:04d}"} for t, (kind, i) in zip(tokens, people, strict=True)}
    cfg: dict[str, Any] = {
        "upstreams": upstream_configs(up),
        "default_model": MODEL,
        "completion_model": MODEL,
    }
    shared = workers > 1 or replicas > 1
    if shared:
        cfg.update(state_url=REDIS, state_prefix=f"rsqlbench-class-{time.time_ns()}:")
        # one database for every replica, as the docs' replicas share PostgreSQL: the rows
        cfg["database_url"] = f"sqlite:///{d / f'class-{n}-{workers}-{replicas}.sqlite'}"
    names, urls, started = [], [], []
    for i in range(replicas):
        name = f"svc-{n}-{workers}w-{i}"
        args = ["--workers", str(workers)] if workers > 1 else []
        url, _auth = start_service(procs, cfg, name=name, users=users, args=args)
        names.append(name)
        started.append(procs.items[-1][1])
        urls.append(url.removesuffix("v1/chat/completions") + "inline")
    spec = [
        {"token": t, "name": users[t]["name"], "kind": kind}
        for t, (kind, _) in zip(tokens, people, strict=True)
    ]
    users_file = d / f"users-{n}-{workers}-{replicas}.json"
    users_file.write_text(json.dumps(spec))
    log(f"class: {n} editors and {pushers} pushers for {seconds:g} s, {deployment}")
    upstream_stats(None, up, reset=True)
    c0 = sum(tree_cpu_seconds(p.pid) for p in started)
    k0, load0 = _children_cpu(), loadavg()
    load = run_editors(urls, users_file, seconds)
    cpu = sum(tree_cpu_seconds(p.pid) for p in started) - c0
    client_cpu = _children_cpu() - k0
    model_spans = upstream_stats(None, up).get("spans", {})
    for proc in started:
        procs.stop(proc)  # its usage log is flushed on the way out
    db = cfg.get("database_url", "").removeprefix("sqlite:///")
    rows = usage_rows(Path(db)) if db else usage_rows(d / names[0] / "usage.sqlite")
    if shared:
        _forget(cfg["state_prefix"])
    run = class_summary(n, pushers, load, rows)
    at_model = [
        most_at_once([(a, b) for a, b in v if b >= a])
        for u, v in model_spans.items()
        if u.startswith("pusher")
    ]
    run["pusher_at_model_max_at_once"] = max(at_model, default=0)
    sent = len(load["results"])
    run.update(
        deployment=deployment,
        cpu_s=cpu,
        cpu_cores=cpu / seconds,
        cpu_us_per_completion=1e6 * cpu / max(1, run["completions"]),
        cpu_us_per_request=1e6 * cpu / max(1, sent),
        requests=sent,
        client_cpu_s=client_cpu,
        load=f"{load0.split()[0]} to {loadavg().split()[0]}",
    )
    return run


def _forget(prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(REDIS)
    for key in r.scan_iter(match=prefix + "*"):
        r.delete(key)
    r.close()
