"""Alerts: tell the admin when something breaks, by a JSON POST to their webhooks.

Conditions are noticed on the request path by cheap synchronous hooks (a key disabled or
re-enabled, a request refused because every key for its model is cooling, an outcome counted
for the error rate, a cost charged against the global budget); everything that can wait (the
cross-replica claim, the budget read, the POST and its retries) runs in one background task, so
an alert never slows or fails a user's request.

An alert carries aliases, models and numbers only: never a provider key, never prompt text.
Each condition alerts once per window: locally first (so a burst of failures queues one alert),
then through a ``Ledger`` claim, which with Redis is shared (SET NX EX), so replicas send one.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rsql_common.settings import setting

from ..errors import ConfigError, HTTP11Error, Problems
from ..interface import Outcome
from ..upstreams.transport.http11 import HTTP11Client

log = logging.getLogger("rsql.alerts")

EVENTS = (
    "key_disabled",
    "key_enabled",
    "capacity_exhausted",
    "budget_80",
    "budget_100",
    "error_rate",
)
FORMATS = ("json", "slack")


@dataclass(frozen=True)
class Webhook:
    url: str = field(repr=False)  # a Slack webhook URL is itself a secret: never in logs
    format: str = "json"

    @property
    def where(self) -> str:
        """What logs may say about the webhook: its host only."""
        return urllib.parse.urlsplit(self.url).hostname or "?"


@dataclass(frozen=True)
class AlertSettings:
    webhooks: tuple[Webhook, ...] = ()
    error_rate: float = setting(
        0.10,
        "Share of requests answered with a 5xx over 5 minutes that raises an error_rate alert.",
        "between 0 and 1",
    )
    min_requests: int = setting(
        20,
        "Fewest requests in the 5 minutes before the error rate can alert (one failure of two is no alert).",
        ">= 1",
    )
    error_window_seconds: float = 300.0
    dedupe_seconds: float = setting(
        900.0,
        "One alert per condition per this many seconds.",
        "> 0",
    )
    retries: int = setting(
        5,
        "Further attempts to deliver an alert a webhook did not take (backoff 1 s, doubling, at most 60 s).",
        "from 0 to 20",
    )
    retry_base_seconds: float = setting(
        1.0,
        "The first backoff before retrying a webhook.",
        "> 0",
    )
    timeout_seconds: float = 10.0
    keep: int = 100  # recent alerts kept for GET admin/alerts


def parse_webhooks(raw: Any) -> tuple[Webhook, ...]:
    """``alert_webhooks``: URLs, or {"url": ..., "format": "json" | "slack"}."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(
            "RSQLProxy.alert_webhooks: expected a list of URLs or {'url': ..., 'format': ...}"
        )
    problems = Problems()  # every webhook's mistake, not the first alone
    out = []
    for i, item in enumerate(raw):
        where = f"RSQLProxy.alert_webhooks[{i}]"
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, Mapping):
            problems.append(f"{where}: expected a URL or a dict, got {type(item).__name__}")
            continue
        for unknown in sorted(set(item) - {"url", "format"}, key=str):
            problems.append(f"{where}: unknown field {unknown!r}; known: url, format")
        url, fmt = item.get("url"), item.get("format", "json")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(f"{where}: 'url' must be an http(s) URL")
        if fmt not in FORMATS:
            problems.append(f"{where}: 'format' must be one of {FORMATS}, got {fmt!r}")
        if isinstance(url, str):
            out.append(Webhook(url, fmt))
    problems.refuse()
    return tuple(out)


class Ledger(Protocol):
    """Where claims and the recent-alerts list live: this process, or Redis for replicas."""

    async def claim(self, name: str, ttl: float) -> bool: ...

    async def record(self, alert: dict[str, Any]) -> None: ...

    async def recent(self, limit: int) -> list[dict[str, Any]]: ...


class MemoryLedger:
    def __init__(self, keep: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._claims: dict[str, float] = {}
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    async def claim(self, name: str, ttl: float) -> bool:
        now = self.clock()
        if self._claims.get(name, 0.0) > now:
            return False
        if len(self._claims) > 1000:  # expired claims are dropped now and then
            self._claims = {k: v for k, v in self._claims.items() if v > now}
        self._claims[name] = now + ttl
        return True

    async def record(self, alert: dict[str, Any]) -> None:
        self._recent.appendleft(alert)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        return list(self._recent)[:limit]


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def slack_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """Slack (and Mattermost, Rocket.Chat) incoming webhooks show `text`."""
    details = ", ".join(
        f"{k}={v}" for k, v in alert["details"].items() if not isinstance(v, (list, dict))
    )
    text = f"*rsql-proxy* `{alert['event']}`: {alert['message']}"
    return {"text": text + (f"\n{details}" if details else "")}


class Alerts:
    """The hooks the engine calls, and the task that delivers what they raise."""

    def __init__(
        self,
        settings: AlertSettings,
        *,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget_reader: Callable[[], Awaitable[tuple[float, float] | None]] | None = None,
        describe_model: Callable[[str], list[dict[str, Any]]] | None = None,
    ) -> None:
        """`budget_reader`: the global budget's (spent, limit), None without one;
        `describe_model`: the state of every key serving a model, for capacity alerts."""
        self.settings = settings
        self.clock = clock
        self.ledger: Ledger = ledger or MemoryLedger(settings.keep, clock)
        self.budget_reader = budget_reader
        self.describe_model = describe_model
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1000)
        self._local: dict[str, float] = {}  # condition -> until when it is not raised again
        # [second, total, errors]
        self._buckets: collections.deque[list[float]] = collections.deque()
        self._total = 0
        self._errors = 0
        self._budget_pending = False
        self._budget_refused = False  # a refusal by the global budget since the last look
        self._task: asyncio.Task[Any] | None = None
        self._deliveries: set[asyncio.Task[Any]] = set()
        self._http = HTTP11Client(connect_timeout=settings.timeout_seconds, max_idle=4)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._deliveries) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        await self._http.close()

    # -- hooks: synchronous, cheap, never raise -----------------------------------------

    def key_changed(self, alias: str, why: str | None) -> None:
        """What the key pool tells (``Pool.on_key_change``): `alias` disabled for `why`, or
        re-enabled (None)."""
        if why is None:
            self.key_enabled(alias)
        else:
            self.key_disabled(alias, why)

    def key_disabled(self, alias: str, why: str) -> None:
        self.raise_alert(
            "key_disabled",
            f"upstream key {alias} was disabled ({why}); it is probed by the health "
            "check and re-enabled when the provider accepts it again",
            {"alias": alias, "reason": why},
            condition=alias,
        )

    def key_enabled(self, alias: str) -> None:
        self.raise_alert(
            "key_enabled",
            f"upstream key {alias} was re-enabled: the provider accepts it again",
            {"alias": alias},
            condition=alias,
        )

    def observe(self, outcome: Outcome) -> None:
        """An ``Outcome`` hook: the error rate, capacity refusals, budget checks."""
        try:
            self._count(outcome.status)
            if outcome.status == 429 and outcome.limit == "upstream capacity":
                self._capacity(outcome.model)
            limit = outcome.limit or ""
            if outcome.cost_usd > 0 or limit.startswith("global daily budget"):
                self._check_budget(refused=limit.startswith("global daily budget"))
        except Exception:  # an alert hook must never fail a request
            log.exception("alert hook failed")

    def _count(self, status: int) -> None:
        now = self.clock()
        sec = math.floor(now)
        b = self._buckets
        if b and b[-1][0] == sec:
            bucket = b[-1]
        else:
            bucket = [sec, 0, 0]
            b.append(bucket)
        is_error = status >= 500
        bucket[1] += 1
        bucket[2] += is_error
        self._total += 1
        self._errors += is_error
        horizon = now - self.settings.error_window_seconds
        while b and b[0][0] < horizon:
            old = b.popleft()
            self._total -= int(old[1])
            self._errors -= int(old[2])
        s = self.settings
        if is_error and self._total >= s.min_requests and self._errors / self._total > s.error_rate:
            rate = self._errors / self._total
            self.raise_alert(
                "error_rate",
                f"{rate:.0%} of requests failed over the last {s.error_window_seconds / 60:g} minutes "
                f"({self._errors} of {self._total}; threshold {s.error_rate:.0%})",
                {
                    "error_rate": round(rate, 4),
                    "errors": self._errors,
                    "requests": self._total,
                    "window_seconds": s.error_window_seconds,
                    "threshold": s.error_rate,
                },
            )

    def _capacity(self, model: str) -> None:
        keys = self.describe_model(model) if self.describe_model is not None else []
        self.raise_alert(
            "capacity_exhausted",
            f"no upstream key serving {model} has capacity left (cooling, at the provider's limits, "
            "disabled or failing): users are refused for capacity (429)",
            {"model": model, "keys": keys},
            condition=model,
        )

    def _check_budget(self, refused: bool) -> None:
        # one read at a time, in the background: a burst of answers needs one look at the budget
        if self.budget_reader is None:
            return
        self._budget_refused = self._budget_refused or refused
        if self._budget_pending:
            return
        self._budget_pending = True
        self._put(("budget", None))

    # -- raising -------------------------------------------------------------------------

    def raise_alert(
        self,
        event: str,
        message: str,
        details: dict[str, Any],
        *,
        condition: str = "",
        ttl: float | None = None,
    ) -> None:
        """Queue an alert unless this condition alerted within its window (on this replica)."""
        name = f"{event}:{condition}" if condition else event
        ttl = self.settings.dedupe_seconds if ttl is None else ttl
        now = self.clock()
        if self._local.get(name, 0.0) > now:
            return
        if len(self._local) > 1000:
            self._local = {k: v for k, v in self._local.items() if v > now}
        self._local[name] = now + ttl
        alert = {"event": event, "message": message, "time": _iso(time.time()), "details": details}
        self._put(("alert", (name, ttl, alert)))

    def _put(self, job: tuple[str, Any]) -> None:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            log.warning("alert queue full: %s dropped", job[0])

    # -- the background task ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            kind, arg = await self._queue.get()
            try:
                if kind == "budget":
                    refused, self._budget_refused, self._budget_pending = (
                        self._budget_refused,
                        False,
                        False,
                    )
                    await self._budget(refused)
                else:
                    await self._send(*arg)
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed job must not end the loop
                log.exception("alert job %s failed", kind)

    async def _budget(self, refused: bool) -> None:
        assert self.budget_reader is not None
        try:
            got = await self.budget_reader()
        except Exception as exc:  # the state backend is down: it reports that itself
            log.debug("budget check skipped: %s", type(exc).__name__)
            return
        if got is None:
            return
        spent, limit = got
        if limit <= 0:
            return
        share = spent / limit
        day = time.strftime("%Y-%m-%d", time.gmtime())
        details = {
            "spent_usd": round(spent, 6),
            "budget_usd": limit,
            "percent": round(100 * share, 1),
            "day": day,
        }
        # the budget resets at midnight UTC: one alert of each kind per UTC day
        ttl = 86400.0 - time.time() % 86400.0 + 60
        if share >= 1.0 or refused:
            self.raise_alert(
                "budget_100",
                f"the global daily budget of ${limit:g} is spent (${spent:.4f}, "
                f"{100 * share:.0f}% incl. requests in flight): requests that cost money are refused "
                "until midnight UTC",
                {**details, "refusing": True},
                condition=day,
                ttl=ttl,
            )
        if share >= 0.8:
            self.raise_alert(
                "budget_80",
                f"{100 * share:.0f}% of the global daily budget of ${limit:g} is spent "
                f"(${spent:.4f})",
                details,
                condition=day,
                ttl=ttl,
            )

    async def _send(self, name: str, ttl: float, alert: dict[str, Any]) -> None:
        if not await self.ledger.claim(name, ttl):
            log.info("alert %s: already sent by another replica", name)
            return
        alert["delivery"] = {w.where: "pending" for w in self.settings.webhooks}
        await self.ledger.record(alert)
        log.warning("alert %s: %s", alert["event"], alert["message"])
        for hook in self.settings.webhooks:
            # each webhook on its own: a slow or failing one does not hold up the others
            task = asyncio.ensure_future(self._deliver(hook, alert))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, hook: Webhook, alert: dict[str, Any]) -> None:
        s = self.settings
        public = {k: v for k, v in alert.items() if k != "delivery"}
        body = json.dumps(
            slack_payload(public) if hook.format == "slack" else {"source": "rsql-proxy", **public}
        ).encode()
        what = "failed"
        for attempt in range(s.retries + 1):
            if attempt:
                await asyncio.sleep(min(60.0, s.retry_base_seconds * 2 ** (attempt - 1)))
            try:
                resp = await self._http.request(
                    "POST",
                    hook.url,
                    headers={"Content-Type": "application/json", "User-Agent": "rsql-proxy"},
                    body=body,
                    timeout=s.timeout_seconds,
                )
                await resp.read(s.timeout_seconds)
                if 200 <= resp.status < 300:
                    alert["delivery"][hook.where] = "sent"
                    return
                what = f"HTTP {resp.status}"
                if 400 <= resp.status < 500 and resp.status not in (408, 429):
                    break  # the receiver refuses this alert: sending it again will not help
            except (HTTP11Error, OSError, asyncio.TimeoutError) as exc:
                what = type(exc).__name__
            log.warning(
                "alert %s to %s: attempt %d failed (%s)",
                alert["event"],
                hook.where,
                attempt + 1,
                what,
            )
        alert["delivery"][hook.where] = f"failed: {what}"
        log.error("alert %s to %s: given up (%s)", alert["event"], hook.where, what)

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return await self.ledger.recent(limit)
