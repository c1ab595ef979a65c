"""A soak with faults: many simulated notebook users against rsql-proxy replicas on Redis and
PostgreSQL, while a replica is killed, Redis restarts, PostgreSQL stops and keys misbehave.

    .venv/bin/python bench/soak.py [--users 1000] [--replicas 3] [--seconds 300] [--quick] [--write]

Everything runs on loopback and is the soak's own: a redis-server (append-only file, so a
restart keeps the limits), a throw-away PostgreSQL cluster, the fake provider
(tests/helpers/fake_provider.py) and the replicas (``python -m jupyter_server_ext``), each user
with a bearer token of their own (``static_users``, the hub service's token path). Load and time
are bounded. Afterwards it checks, from the usage rows, Redis and what the clients saw:

- every answered request has exactly one usage row, and no request has two;
- no user got more answers than their limit in any window, nor spent past their budget;
- no lease or upstream slot is left held;
- every response is a documented one (200; 429 and 503 with Retry-After; 502 / 504 naming the
  keys' aliases), and connections failed only at the replica that was killed, while it was down;
- no provider key appears in a response, a log line or a usage row;
- each replica's memory is flat after warm-up.

It prints the table, exits 1 if a check failed, and with ``--write`` (the default without
``--quick``) keeps the run in bench/results/soak.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import upstreams_for  # noqa: E402
from tests.helpers.fake_provider import FakeProvider, KeyPolicy  # noqa: E402
from tests.helpers.own_servers import OwnPostgres, OwnRedis  # noqa: E402
from tests.helpers.servers import ProxyService, start_service  # noqa: E402
from tests.helpers.services import leases_held  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "soak.json"
START, END = "<!-- soak -->", "<!-- /soak -->"

# five keys on three accounts; the provider's limits are the proxy's too
KEYS = [
    ("sk-soak-a1-fake0123456789", "a1", "acct-a"),
    ("sk-soak-a2-fake0123456789", "a2", "acct-a"),
    ("sk-soak-b1-fake0123456789", "b1", "acct-b"),
    ("sk-soak-b2-fake0123456789", "b2", "acct-b"),
    ("sk-soak-c1-fake0123456789", "c1", "acct-c"),
]
ACCOUNT_LIMIT = (1200, 60.0)  # requests per seconds, per account
USER_LIMIT = (20, 60.0)  # "20/minute"
USER_CONCURRENCY = 2
USER_BUDGET = 0.10  # USD per day
PRICE = 50.0  # USD per 1M tokens, in and out: a request of ~60 tokens costs about $0.003
MAX_TOKENS = 32
CACHED_QUESTIONS = [f"What does pandas groupby({c!r}) return?" for c in "abcdefgh"]


@dataclass
class Shot:
    """One request as its client saw it."""

    user: int
    replica: int
    kind: str  # json, stream, cached
    t0: float
    t1: float = 0.0
    status: int = 0  # 0: no HTTP answer (connection refused or reset)
    retry_after: bool = False
    request_id: str = ""
    complete: bool = False  # JSON parsed, or a stream read to [DONE]
    error: str = ""  # the error's message, or why the connection failed


@dataclass
class Soak:
    users: int
    replicas: int
    seconds: float
    folder: Path
    pushers: float = 0.03  # the share of users who ask far more than their limit allows
    think: float = 30.0  # mean seconds between a user's questions
    pg_down: float = 30.0
    shots: list[Shot] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    killed: tuple[int, float, float] | None = None  # (replica, killed at, back at)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    leaks: int = 0  # provider keys seen in responses
    t_start: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t_start

    def note(self, what: str) -> None:
        self.events.append((round(self.now(), 1), what))
        print(f"[{self.now():6.1f} s] {what}", flush=True)


# -- the servers ----------------------------------------------------------------------------------


def proxy_config(fp: FakeProvider, redis_url: str, pg_url: str, prefix: str) -> dict[str, Any]:
    limit = f"{ACCOUNT_LIMIT[0]} per {ACCOUNT_LIMIT[1]:g} seconds"
    per_key = {
        alias: {
            "limits": [limit],
            "prices": {m: {"input": PRICE, "output": PRICE} for m in fp.model_ids},
        }
        for _, alias, _ in KEYS
    }
    return {
        "upstreams": upstreams_for(fp, **per_key),
        "default_model": "fake-small",
        "state_url": redis_url + "/0",
        "state_prefix": prefix,
        "fail_open": False,
        "database_url": pg_url,
        "user_limits": [f"{USER_LIMIT[0]}/minute"],
        "user_concurrency": USER_CONCURRENCY,
        "user_daily_budget_usd": USER_BUDGET,
        "upstream_timeout_seconds": 4.0,
        "max_wait_seconds": 3.0,
        "lease_seconds": 30.0,
        "shutdown_grace_seconds": 5.0,
    }


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# -- the users -------------------------------------------------------------------------------------


async def ask(soak: Soak, session: Any, replicas: list[ProxyService], user: int, kind: str) -> Shot:
    import aiohttp

    which = random.randrange(len(replicas))  # a balancer in front of the replicas
    svc = replicas[which]
    shot = Shot(user, which, kind, soak.now())
    question = (
        random.choice(CACHED_QUESTIONS)
        if kind == "cached"
        else f"question {random.random():.12f}: why is my merge slow"
    )
    body = {
        "model": "fake-small",
        "max_tokens": MAX_TOKENS,
        "temperature": 0 if kind == "cached" else 0.7,
        "messages": [{"role": "user", "content": question}],
        "stream": kind == "stream",
    }
    headers = {"Authorization": f"Bearer soak-token-{user}"}
    try:
        async with session.post(
            svc.url + "v1/chat/completions", json=body, headers=headers
        ) as resp:
            shot.status = resp.status
            shot.retry_after = bool(resp.headers.get("Retry-After"))
            shot.request_id = resp.headers.get("x-request-id", "")
            raw = await resp.read()
            text = raw.decode(errors="replace")
            if resp.status == 200 and kind == "stream":
                shot.complete = "data: [DONE]" in text
                if not shot.complete:
                    shot.error = text.rstrip().rsplit("\n", 1)[-1][:300]
            elif resp.status == 200:
                shot.complete = bool(json.loads(raw).get("choices"))
            else:
                shot.error = text[:300]
            soak.leaks += sum(key in text for key, _, _ in KEYS)
    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
        shot.error = f"{type(exc).__name__}: {exc}"[:300]
    shot.t1 = soak.now()
    return shot


async def user_loop(
    soak: Soak, session: Any, replicas: list[ProxyService], user: int, until: float, pusher: bool
) -> None:
    rng = random.Random(user)
    await asyncio.sleep(rng.uniform(0, min(soak.think, until - soak.now())))
    while soak.now() < until:
        r = rng.random()
        kind = "cached" if r < 0.15 else "stream" if r < 0.45 else "json"
        soak.shots.append(await ask(soak, session, replicas, user, kind))
        pause = rng.uniform(0.5, 1.5) if pusher else rng.expovariate(1 / soak.think)
        await asyncio.sleep(min(pause, max(0.0, until - soak.now())))


# -- the faults ------------------------------------------------------------------------------------


async def faults(
    soak: Soak,
    fp: FakeProvider,
    replicas: list[ProxyService],
    redis: OwnRedis,
    pg: OwnPostgres,
    config: dict[str, Any],
) -> None:
    s = soak.seconds
    users = {f"soak-token-{i}": {"name": f"u{i}"} for i in range(soak.users)}

    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, fraction * s - soak.now()))

    for burst in (0.10, 0.30, 0.50):  # a2: 429s in bursts
        await at(burst)
        fp.set_fault("a2", "status", status=429, count=25)
        soak.note("key a2 answers 429 (a burst of 25)")
        if burst == 0.10:
            await at(0.15)
            victim = 1 % len(replicas)
            replicas[victim].proc.send_signal(signal.SIGKILL)
            killed_at = soak.now()
            soak.note(f"replica {victim} killed (SIGKILL)")
            await asyncio.sleep(5)
            svc = await asyncio.to_thread(
                start_service, replicas[victim].cwd, config, static_users=users
            )
            replicas[victim] = svc
            soak.killed = (victim, killed_at, soak.now())
            soak.note(f"replica {victim} restarted (same usage spool folder)")
        if burst == 0.30:
            await at(0.35)
            await asyncio.to_thread(redis.stop)
            soak.note("Redis stopped (SIGTERM)")
            await asyncio.sleep(3)
            await asyncio.to_thread(redis.start)
            soak.note("Redis started again")
        if burst == 0.50:
            await at(0.52)
            await asyncio.to_thread(pg.stop)
            soak.note("PostgreSQL stopped")
            await asyncio.sleep(soak.pg_down)
            await asyncio.to_thread(pg.start)
            soak.note("PostgreSQL started again")
    await at(0.65)
    fp.set_fault("b1", "status", status=401)
    soak.note("key b1 answers 401 from now on")
    await at(0.75)
    fp.set_fault("b2", "status", status=500, count=20)
    soak.note("key b2 answers 500 (20 times)")
    await at(0.82)
    fp.set_fault("b2", "hang", count=8)
    soak.note("key b2 hangs (8 requests)")


async def sample_memory(soak: Soak, replicas: list[ProxyService], until: float) -> None:
    while soak.now() < until:
        for svc in replicas:
            kib = rss_kib(svc.proc.pid)
            if kib is not None:
                soak.rss.setdefault(str(svc.proc.pid), []).append((round(soak.now(), 1), kib))
        await asyncio.sleep(2.0)


async def drive(
    soak: Soak,
    fp: FakeProvider,
    replicas: list[ProxyService],
    redis: OwnRedis,
    pg: OwnPostgres,
    config: dict[str, Any],
) -> None:
    import aiohttp

    until = soak.seconds
    pushers = set(
        random.Random(7).sample(range(soak.users), max(1, round(soak.users * soak.pushers)))
    )
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        tasks = [
            asyncio.ensure_future(user_loop(soak, session, replicas, u, until, u in pushers))
            for u in range(soak.users)
        ]
        tasks.append(asyncio.ensure_future(faults(soak, fp, replicas, redis, pg, config)))
        tasks.append(asyncio.ensure_future(sample_memory(soak, replicas, until + 5)))
        # bounded: every user stops asking at `until`; an answer takes at most the client timeout
        done, pending = await asyncio.wait(tasks, timeout=until + 90)
        for t in pending:
            t.cancel()
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc


# -- the checks --------------------------------------------------------------------------------------


def usage_rows(pg_url: str) -> list[dict[str, Any]]:
    import psycopg

    with psycopg.connect(pg_url) as c:
        cur = c.execute(
            'SELECT request_id, "user", status, cache_hit, cost_usd, upstream, error FROM rsql_usage'
        )
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def wait_for_rows(pg_url: str, answered: set[str], seconds: float) -> list[dict[str, Any]]:
    """The usage rows once every answered request has one, or after `seconds` (spools drain)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            rows = usage_rows(pg_url)
        except Exception:  # the database may still be starting
            rows = []
        if answered <= {r["request_id"] for r in rows} or time.monotonic() > deadline:
            return rows
        time.sleep(2)


def most_in_a_window(spans: list[tuple[float, float]], seconds: float) -> int:
    """The most answers certainly admitted within one window of `seconds`: those that began at
    or after its start and ended by its end (each was admitted somewhere in between)."""
    best = 0
    for start, _ in spans:
        best = max(best, sum(1 for s, e in spans if s >= start and e <= start + seconds))
    return best


def documented(shot: Shot, killed: tuple[int, float, float] | None) -> bool:
    aliases = [a for _, a, _ in KEYS]
    if shot.status == 0 or (shot.status == 200 and not shot.complete):
        # refused, reset or cut short: only at the killed replica, while it was down
        if killed is None:
            return False
        victim, at, back = killed
        return shot.replica == victim and at - 1 <= shot.t1 <= back + 1
    if shot.status == 200:
        return True
    if shot.status in (429, 503):
        return shot.retry_after
    if shot.status in (502, 504):
        return any(a in shot.error for a in aliases)
    return False


def check(soak: Soak, pg_url: str, redis_url: str, prefix: str, logs: str) -> dict[str, Any]:
    answered = {s.request_id for s in soak.shots if s.status == 200 and s.complete and s.request_id}
    rows = wait_for_rows(pg_url, answered, 120)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_id.setdefault(r["request_id"], []).append(r)
    missing = sorted(answered - set(by_id))
    doubled = sorted(k for k, v in by_id.items() if len(v) > 1)

    per_user: dict[int, list[Shot]] = {}
    for s in soak.shots:
        per_user.setdefault(s.user, []).append(s)
    spent: dict[str, float] = {}
    for r in rows:
        spent[r["user"]] = spent.get(r["user"], 0.0) + float(r["cost_usd"] or 0.0)
    most = {}  # user -> the most answers certainly admitted in one window (cache hits do not count)
    for user, shots in per_user.items():
        counted = [
            (s.t0, s.t1)
            for s in shots
            if s.status == 200
            and s.complete
            and not any(r["cache_hit"] for r in by_id.get(s.request_id, []))
        ]
        most[user] = most_in_a_window(counted, USER_LIMIT[1])
    over_limit = [(u, n) for u, n in most.items() if n > USER_LIMIT[0]]
    over_budget = [(u, round(v, 4)) for u, v in spent.items() if v > USER_BUDGET + 1e-9]

    time.sleep(2)  # the last ends reach Redis; the killed replica's leases expired long ago
    held = sum(len(m) for m in leases_held(redis_url + "/0", prefix).values())
    statuses: dict[str, int] = {}
    for s in soak.shots:
        label = str(s.status) if s.status else "connection failed"
        if s.status == 200 and not s.complete:
            label = "200, stream cut"
        statuses[label] = statuses.get(label, 0) + 1
    odd = [asdict(s) for s in soak.shots if not documented(s, soak.killed)]
    row_leaks = sum(key in json.dumps(r, default=str) for r in rows for key, _, _ in KEYS)
    log_leaks = sum(logs.count(key) for key, _, _ in KEYS)

    memory = {}
    for pid, samples in soak.rss.items():
        first_t = samples[0][0]
        warm = [kib for t, kib in samples if t >= first_t + 0.3 * (soak.seconds - first_t)]
        if len(warm) >= 3:
            memory[pid] = {
                "after_warmup_mib": round(warm[0] / 1024, 1),
                "end_mib": round(warm[-1] / 1024, 1),
                "peak_mib": round(max(warm) / 1024, 1),
            }
    flat = all(m["end_mib"] <= m["after_warmup_mib"] * 1.2 + 10 for m in memory.values())

    checks = [
        (
            "every answered request has a usage row",
            not missing,
            f"{len(answered)} answered, {len(missing)} without a row",
        ),
        (
            "no request has two usage rows",
            not doubled,
            f"{len(rows)} rows, {len(doubled)} request ids twice",
        ),
        (
            "no user over their limit in any window",
            not over_limit,
            f"limit {USER_LIMIT[0]} per {USER_LIMIT[1]:g} s; most answers certainly admitted in one "
            f"window: {max(most.values(), default=0)}",
        ),
        (
            "no user over their budget",
            not over_budget,
            f"budget ${USER_BUDGET}; most spent by one user: ${max(spent.values(), default=0):.4f}",
        ),
        ("no lease or upstream slot left held", held == 0, f"{held} held"),
        ("only documented responses", not odd, f"{len(odd)} other"),
        (
            "no key in a response, log line or usage row",
            soak.leaks + row_leaks + log_leaks == 0,
            f"responses {soak.leaks}, usage rows {row_leaks}, logs {log_leaks}",
        ),
        (
            "memory of each replica flat after warm-up",
            flat and bool(memory),
            "; ".join(
                f"pid {p}: {m['after_warmup_mib']} -> {m['end_mib']} MiB (peak {m['peak_mib']})"
                for p, m in memory.items()
            ),
        ),
    ]
    return {
        "checks": [{"check": c, "ok": ok, "detail": d} for c, ok, d in checks],
        "ok": all(ok for _, ok, _ in checks),
        "requests": len(soak.shots),
        "statuses": dict(sorted(statuses.items())),
        "answer_p50_s": _quantile([s.t1 - s.t0 for s in soak.shots if s.status == 200], 0.5),
        "answer_p99_s": _quantile([s.t1 - s.t0 for s in soak.shots if s.status == 200], 0.99),
        "answered": len(answered),
        "usage_rows": len(rows),
        "cache_hits": sum(1 for r in rows if r["cache_hit"]),
        "events": soak.events,
        "memory": memory,
        "odd": odd[:20],
        "missing": missing[:20],
        "over_limit": over_limit[:20],
        "over_budget": over_budget[:20],
    }


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) if xs else 0.0


# -- the run ----------------------------------------------------------------------------------------


def run_soak(
    users: int = 1000,
    replicas: int = 3,
    seconds: float = 300.0,
    *,
    pg_down: float = 30.0,
    think: float = 30.0,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Run the soak; returns the results (``results["ok"]``: every check passed)."""
    folder = folder or Path(tempfile.mkdtemp(prefix="rsql-soak-"))
    soak = Soak(users, replicas, seconds, folder, think=think, pg_down=pg_down)
    fp = FakeProvider(
        {
            k: KeyPolicy(a, account=acc, limit=ACCOUNT_LIMIT[0], window=ACCOUNT_LIMIT[1])
            for k, a, acc in KEYS
        },
        latency=0.25,
    ).start()
    redis = OwnRedis(folder, "--appendonly", "yes", "--appendfsync", "always")
    pg = OwnPostgres()
    started: list[ProxyService] = []
    prefix = "soak:"
    try:
        redis.start()
        pg.start()
        config = proxy_config(fp, redis.url, pg.url, prefix)
        tokens = {f"soak-token-{i}": {"name": f"u{i}"} for i in range(users)}
        for i in range(replicas):
            started.append(start_service(folder / f"replica-{i}", config, static_users=tokens))
        live = list(started)
        soak.t_start = time.monotonic()
        soak.note(f"{users} users, {replicas} replicas, {seconds:g} s")
        asyncio.run(drive(soak, fp, live, redis, pg, config))
        soak.note("load done")
        started += [s for s in live if s not in started]
        logs = "\n".join(s.log() for s in started)
        results = check(soak, pg.url, redis.url, prefix, logs)
        results.update(
            users=users, replicas=replicas, seconds=seconds, pg_down=pg_down, think=think
        )
        for s in started:
            s.stop(signal.SIGTERM)
        return results
    finally:
        for s in started:
            s.stop(signal.SIGKILL)
        fp.stop()
        redis.stop(signal.SIGKILL)
        pg.remove()


def table(res: dict[str, Any]) -> str:
    lines = ["| check | | measured |", "|---|---|---|"]
    for c in res["checks"]:
        lines.append(f"| {c['check']} | {'pass' if c['ok'] else '**FAIL**'} | {c['detail']} |")
    return "\n".join(lines)


def write_doc(res: dict[str, Any]) -> None:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    text = "\n".join(
        [
            START,
            "## Soak with faults (`bench/soak.py`)",
            "",
            f"Run {when}: {res['users']} users (each with a token of their own; 3% push far past their "
            f"limits), {res['replicas']} rsql-proxy replicas on one Redis (append-only file) and one "
            f"PostgreSQL, {res['seconds']:g} s on loopback; 1-minute load average at the end "
            f"{load[0]:.2f} on {os.cpu_count()} cores. Per user: {USER_LIMIT[0]} requests a minute, "
            f"{USER_CONCURRENCY} at once, ${USER_BUDGET} a day. The mix: 55% JSON questions, 30% streams, "
            "15% repeated questions (cache hits on the replica that saw them). Faults, in order: "
            + "; ".join(f"{t:g} s {w}" for t, w in res["events"])
            + ".",
            "",
            table(res),
            "",
            f"{res['requests']} requests; answers {res['answered']}, usage rows {res['usage_rows']} "
            f"({res['cache_hits']} cache hits); answers took {res['answer_p50_s']:g} s at the median, "
            f"{res['answer_p99_s']:g} s at the 99th percentile. Statuses as the clients saw them: "
            + ", ".join(f"{k}: {v}" for k, v in res["statuses"].items())
            + ".",
            "",
            END,
        ]
    )
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        doc = head + text + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    DOC.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--quick", action="store_true", help="150 users for 75 s, PostgreSQL down 10 s")
    ap.add_argument("--write", action="store_true", help="keep the results even with --quick")
    args = ap.parse_args(argv)
    if args.users < 1 or args.replicas < 2 or not 30 <= args.seconds <= 1800:
        ap.error("need --users >= 1, --replicas >= 2 (one is killed) and 30 <= --seconds <= 1800")
    if args.quick:
        res = run_soak(150, args.replicas, 75.0, pg_down=10.0, think=10.0)
    else:
        res = run_soak(args.users, args.replicas, args.seconds)
    print()
    print(table(res))
    print(f"\n{res['requests']} requests, statuses {res['statuses']}")
    if res["odd"]:
        print("undocumented responses (first 20):", json.dumps(res["odd"], indent=1)[:4000])
    if args.write or not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=1, default=str))
        write_doc(res)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
