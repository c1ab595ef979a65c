"""Prometheus metrics, one registry per engine (so two engines in one process never clash).

Labels are aliases, models, statuses and limit names: never keys, never user names (a label
per user would grow without bound). Callers choose model names and client kinds, so those labels
take only configured values; anything else is counted under "other".

With several worker processes (``rsql-proxy --workers N``) the counters and histograms live in
prometheus_client's multiprocess files (:func:`enable_multiprocess`, called by the supervisor
before it forks), so any worker's scrape shows the sum of all workers; the upstream states are
the answering worker's view (they come from the shared state on Redis).

One process serving alone adds its own figures, as Prometheus's client libraries name them:
``process_cpu_seconds_total``, ``process_resident_memory_bytes`` and the rest (read from /proc,
so on Linux), and ``python_gc_collections_total`` by generation. With several workers these are
left out: they would be whichever worker answered the scrape, read as the whole service's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from ..interface import Outcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable_multiprocess(path: str) -> None:
    """Count in files under `path` (empty, one per run) from now on; call before any metric
    exists and before forking the processes that will count."""
    os.environ[MULTIPROC_ENV] = path
    # prometheus_client picks its value class when first imported, long before a supervisor
    # knows it will fork: pick again
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # prometheus_client is untyped here


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
CLIENT_KINDS = frozenset({"magic", "chat", "sql", "agent", "inline", "api"})
OTHER = "other"


class _UpstreamStates:
    def __init__(self, states: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self.states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = GaugeMetricFamily(
            "rsql_upstream_state",
            "1 for the state each upstream key is in",
            labels=["upstream", "state"],
        )
        for alias, state in self.states():
            for s in ("healthy", "cooling", "disabled", "breaker-open", "breaker-half-open"):
                fam.add_metric([alias, s], 1.0 if s == state else 0.0)
        yield fam


class Metrics:
    def __init__(
        self,
        upstream_states: Callable[[], Iterable[tuple[str, str]]],
        models: Collection[str] | None = None,
    ) -> None:
        """`models`: the configured model ids, the only model labels (None: any, for tools)."""
        self.models = None if models is None else frozenset(models)
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "rsql_requests",
            "Requests answered",
            ["status", "model", "upstream", "client"],
            registry=r,
        )
        self.latency = Histogram(
            "rsql_request_latency_seconds",
            "Time from request to answer (streams: to the last byte)",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "rsql_proxy_overhead_seconds",
            "Latency minus time spent waiting on upstreams",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("rsql_tokens", "Tokens used", ["model", "kind"], registry=r)
        self.cost = Counter("rsql_cost_usd", "Cost in USD", ["model"], registry=r)
        self.cache = Counter("rsql_cache_lookups", "Cache lookups", ["result"], registry=r)
        self.rejections = Counter(
            "rsql_limiter_rejections", "Requests refused by a limit", ["limit"], registry=r
        )
        self.attempts = Counter(
            "rsql_upstream_attempts",
            "Upstream calls by outcome",
            ["upstream", "result"],
            registry=r,
        )
        # types are the configured pattern names (RSQLProxy.redact_patterns): a bounded set
        self.redactions = Counter(
            "rsql_redactions",
            "Values replaced by placeholders before a request went upstream",
            ["type"],
            registry=r,
        )
        self.fallbacks = Counter(
            "rsql_fallbacks",
            "Requests answered by the fallback model",
            ["upstream", "reason"],
            registry=r,
        )
        # tools and outcomes are the endpoint's own bounded sets (jupyter_server_ext.mcp)
        self.mcp_calls = Counter(
            "rsql_mcp_tool_calls",
            "Tool calls at the MCP endpoint, by tool and outcome",
            ["tool", "outcome"],
            registry=r,
        )
        self._states = _UpstreamStates(upstream_states)
        r.register(self._states)
        self._multiproc = multiprocess_dir() if values.ValueClass is not values.MutexValue else None
        if self._multiproc is None:  # read at a scrape only: nothing on the request path
            ProcessCollector(registry=r)
            GCCollector(registry=r)
        # labels() validates and looks its child up under a lock on every call (about 3 us, four
        # calls a request, profiled under wrk); keep each child: prometheus_client holds it anyway
        self._children: dict[tuple[Any, ...], object] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered (same object prometheus_client would return)."""
        key = (id(metric), values)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*values)
        return c

    def model_label(self, model: str) -> str:
        if not model:
            return "-"
        if self.models is None or model in self.models:
            return model
        return OTHER

    def observe(self, o: Outcome) -> None:
        model = self.model_label(o.model)
        client = o.caller.client if o.caller.client in CLIENT_KINDS else OTHER
        self.child(self.requests, str(o.status), model, o.upstream or "-", client).inc()
        for kind, n in (o.redactions or {}).items():
            self.child(self.redactions, kind).inc(n)
        if o.limit:
            # limit labels come from the configuration ("user 10/minute", "upstream capacity"),
            # never from user names: a bounded set
            self.child(self.rejections, o.limit).inc()
        if o.status < 400:
            self.child(self.latency, model).observe(o.latency_s)
            self.overhead.observe(max(0.0, o.latency_s - o.upstream_s))
            if o.prompt_tokens:
                self.child(self.tokens, model, "prompt").inc(o.prompt_tokens)
            if o.completion_tokens:
                self.child(self.tokens, model, "completion").inc(o.completion_tokens)
            if o.cost_usd:
                self.child(self.cost, model).inc(o.cost_usd)

    def render(self) -> bytes:
        if self._multiproc is None:
            return generate_latest(self.registry)
        # every worker's counters, summed from their files (a restarted worker's too: counters
        # never go back), and this worker's view of the upstreams
        registry = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(registry, path=self._multiproc)  # type: ignore[no-untyped-call]  # untyped upstream
        registry.register(self._states)
        return generate_latest(registry)
