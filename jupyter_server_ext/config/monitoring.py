"""The ``c.RSQLProxy`` settings of monitoring: the alert webhooks and OpenTelemetry tracing.

A base class of ``config.RSQLProxy``, as ``config.inline``'s is, so admins write them as
every other proxy setting; kept apart because they are one concern's, the engine's
``monitoring`` room: telling admins when something breaks (docs/admins/alerts.md) and tracing
each request (docs/admins/tracing.md).
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Float, Integer, List
from traitlets.config import Configurable

from ..engine import EngineSettings
from ..engine.monitoring.alerts import AlertSettings, parse_webhooks

# the defaults are written once, in the engine's settings; the traits below read them there
ALERTS = AlertSettings()
ENGINE = EngineSettings(upstreams=())


class MonitoringSettings(Configurable):
    """Alerts to webhooks when something breaks, and tracing spans per request."""

    alert_webhooks: List[Any] = List(
        help="""Webhooks told when something breaks, each a URL (a JSON POST) or {"url": ...,
        "format": "slack"} (Slack-compatible {"text": ...}): a key disabled by a 401/403 or
        re-enabled, every key of a model cooling (users refused for capacity), the global budget
        past 80% and 100%, the error rate over 5 minutes past alert_error_rate. Alerts name
        aliases and models, never keys or prompts; each condition alerts once per
        alert_dedupe_seconds (once per UTC day for budgets), once for all replicas on Redis.""",
    ).tag(config=True)
    alert_error_rate = Float(
        ALERTS.error_rate,
        help="Share of requests answered with a 5xx over 5 minutes that raises an error_rate alert.",
    ).tag(config=True, bound="between 0 and 1")
    alert_min_requests = Integer(
        ALERTS.min_requests,
        help="Fewest requests in the 5 minutes before the error rate can alert (one failure of two is no alert).",
    ).tag(config=True, bound=">= 1")
    alert_dedupe_seconds = Float(
        ALERTS.dedupe_seconds, help="One alert per condition per this many seconds."
    ).tag(config=True, bound="> 0")
    alert_retries = Integer(
        ALERTS.retries,
        help="Further attempts to deliver an alert a webhook did not take (backoff 1 s, doubling, at most 60 s).",
    ).tag(config=True, bound="from 0 to 20")
    alert_retry_seconds = Float(
        ALERTS.retry_base_seconds, help="The first backoff before retrying a webhook."
    ).tag(config=True, bound="> 0")
    otel = Bool(
        ENGINE.otel,
        help="""OpenTelemetry spans per request (admission, cache, each upstream attempt), continuing
        the caller's traceparent; needs the `otel` extra. Exporter settings come from the standard
        OTEL_* environment variables (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, ...).""",
    ).tag(config=True, engine=True)

    def alert_settings(self) -> AlertSettings:
        """The alerts' settings; raises ConfigProblems naming every wrong webhook (the numbers'
        ranges are declared on their traits and checked by ``RSQLProxy.range_problems``)."""
        return AlertSettings(
            webhooks=parse_webhooks(list(self.alert_webhooks)),
            error_rate=self.alert_error_rate,
            min_requests=self.alert_min_requests,
            dedupe_seconds=self.alert_dedupe_seconds,
            retries=self.alert_retries,
            retry_base_seconds=self.alert_retry_seconds,
        )
