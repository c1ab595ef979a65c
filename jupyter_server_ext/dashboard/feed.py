"""The dashboard's data: one snapshot of the proxy's health, traffic, cost and keys, rebuilt in
the background while an admin watches and shared by every open page.

Why one shared feed: each snapshot reads the usage log (a per-minute series, top users, today's
cost); with several admins watching, each page must not run its own queries every few seconds.
The feed runs only while someone is subscribed, rebuilds at most once a second after requests
finish (the usage log writes in batches, so it waits for the batch first), on every change of an
upstream key's state, and at least every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..engine import Engine, Outcome
from ..engine.info_endpoints import status_view
from ..handlers.base import ProxyContext

log = logging.getLogger("rsql")

DAY = 86400
HOUR = 3600
TOP = 10


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def global_budget(engine: Engine) -> dict[str, Any] | None:
    """The global daily budget and what the state backend says is spent of it today."""
    spend = await engine.global_spend()
    if spend is None:
        return None
    used, limit = spend
    return {
        "daily_usd": limit,
        "spent_usd": round(used, 6),
        "remaining_usd": round(max(0.0, limit - used), 6),
    }


def _upstream_view(entry: dict[str, Any]) -> dict[str, Any]:
    """A key's report as the page shows it (aliases and accounts only: never key material)."""
    keep = (
        "alias",
        "account",
        "provider",
        "models",
        "state",
        "disabled_reason",
        "cooldown_until",
        "breaker",
        "in_flight",
        "limits",
        "account_use",
        "provider_remaining",
        "recent_errors",
    )
    view = {k: entry.get(k) for k in keep}
    view["headroom"] = headroom(entry.get("account_use") or {})
    return view


def headroom(account_use: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Per model and limit of the key's account: used and what is left ("requests 30/minute":
    12 -> 18 left)."""
    out = []
    for model, uses in account_use.items():
        for label, used in uses.items():
            amount = _amount(label)
            out.append(
                {
                    "model": model,
                    "limit": label,
                    "used": used,
                    "left": None if amount is None else max(0, amount - used),
                }
            )
    return out


def _amount(label: str) -> int | None:
    # the labels are "<requests|tokens> <amount>/<period>", from the pool's windows
    head = label.partition(" ")[2].partition("/")[0]
    try:
        return int(head)
    except ValueError:
        return None


async def build_snapshot(engine: Engine, *, step: int = 60) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-able data (escaping is the page's job)."""
    now = time.time()
    midnight = now - (now % DAY)  # budgets reset at midnight UTC
    snap: dict[str, Any] = {"at": iso(now), "now": now}
    try:
        snap["status"] = await status_view(engine)  # the same data as GET status
    except Exception as exc:  # a backend that raises instead of answering False
        log.warning("dashboard: status failed: %s", type(exc).__name__)
        snap["status"] = {"status": "degraded", "error": type(exc).__name__}
    snap["upstreams"] = [_upstream_view(e) for e in engine.upstream_report()]
    try:
        snap["budget"] = await global_budget(engine)
        snap["budget_error"] = None
    except Exception as exc:
        snap["budget"], snap["budget_error"] = (
            None,
            f"state backend unreachable ({type(exc).__name__})",
        )
    try:
        snap["windows"] = await engine.window_listing()
    except Exception as exc:  # the state backend is down: the alert says so already
        log.warning("dashboard: reading the policy windows failed: %s", type(exc).__name__)
        snap["windows"] = None
    snap["timezone"] = engine.window_timezone
    store = engine.usage_store
    snap["usage_log"] = store is not None
    snap["database_error"] = None
    if store is None:
        return snap
    try:
        stats = await store.stats(now - HOUR)
        snap["hour"] = {
            k: stats[k]
            for k in (
                "requests",
                "succeeded",
                "success_rate",
                "latency_ms",
                "cache_hits",
                "cache_hit_rate",
                "cost_usd",
                "prompt_cache",
                "by_model",
            )
        }
        snap["series"] = await store.series(now - HOUR, step, now)
        snap["today"] = await store.totals(midnight)
        snap["top_requests"] = await store.top_users(midnight, "requests", TOP)
        snap["top_cost"] = await store.top_users(midnight, "cost", TOP)
        snap["notebooks"] = await store.notebooks(now - 7 * DAY, None, TOP)
        snap["errors"] = [
            {k: e.get(k) for k in ("ts", "user", "model", "upstream", "status", "error")}
            for e in await store.errors(10)
        ]
    except Exception as exc:
        log.warning("dashboard: reading the usage log failed: %s", type(exc).__name__)
        snap["database_error"] = f"database unreachable ({type(exc).__name__})"
    return snap


class Feed:
    """The latest snapshot, a version number, and a wake-up for whoever waits on a newer one."""

    def __init__(self, engine: Engine, *, interval: float = 2.0, idle_stop: float = 30.0) -> None:
        self.engine = engine
        self.interval = interval
        self.idle_stop = idle_stop
        self.version = 0
        self.latest: dict[str, Any] | None = None
        self.subscribers = 0
        self._tick = asyncio.Event()
        self._dirty = False
        self._task: asyncio.Task | None = None
        engine.on_outcome.append(self._on_outcome)

    def _on_outcome(self, outcome: Outcome) -> None:
        self._dirty = True

    async def current(self) -> dict[str, Any]:
        """The latest snapshot (built now when there is none yet)."""
        if self.latest is None:
            await self._publish()
        assert self.latest is not None
        return self.latest

    async def _publish(self) -> None:
        snap = await build_snapshot(self.engine)
        self.version += 1
        snap["version"] = self.version
        self.latest = snap
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_newer(self, version: int, timeout: float) -> dict[str, Any] | None:
        """A snapshot newer than `version`, or None after `timeout` seconds."""
        self._ensure_running()
        if self.version <= version:
            try:
                await asyncio.wait_for(self._tick.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        return self.latest

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        last = time.monotonic()
        states = self.engine.key_states()
        idle_since: float | None = None
        settle = self.engine.usage_interval + 0.2
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if self.subscribers <= 0:
                idle_since = idle_since or now
                if now - idle_since > self.idle_stop:
                    return  # nobody watches: no queries
                continue
            idle_since = None
            changed = self.engine.key_states() != states
            due = now - last >= self.interval
            if not (changed or due or (self._dirty and now - last >= 1.0)):
                continue
            if self._dirty and not changed:
                await asyncio.sleep(settle)  # let the usage log write the finished requests
            self._dirty = False
            states = self.engine.key_states()
            try:
                await self._publish()
            except Exception:  # one failed build must not end the feed
                log.exception("dashboard: building a snapshot failed")
            last = time.monotonic()


def feed_for(ctx: ProxyContext) -> Feed:
    """The one feed of a proxy context, made on first use."""
    if ctx.dashboard_feed is None:
        ctx.dashboard_feed = Feed(ctx.engine)
    return ctx.dashboard_feed
