"""The ``c.RSQLProxy`` settings of monitoring: the alert webhooks and OpenTelemetry tracing.

A base class of ``config.RSQLProxy``, as ``config.inline``'s is, so admins write them as
every other proxy setting; kept apart because they are one concern's, the engine's
``monitoring`` room: telling admins when something breaks (docs/admins/alerts.md) and tracing
each request (docs/admins/tracing.md).
"""

from __future__ import annotations

from typing import Any

from traitlets import List
from traitlets.config import Configurable

from ..engine import EngineSettings
from ..engine.monitoring.alerts import AlertSettings, parse_webhooks
from .declared import trait

# each number's type, default, help and range is declared once, in the engine's settings
# (``AlertSettings``, ``EngineSettings``); the traits below are made from them


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
    alert_error_rate = trait(AlertSettings, "error_rate")
    alert_min_requests = trait(AlertSettings, "min_requests")
    alert_dedupe_seconds = trait(AlertSettings, "dedupe_seconds")
    alert_retries = trait(AlertSettings, "retries")
    alert_retry_seconds = trait(AlertSettings, "retry_base_seconds")
    otel = trait(EngineSettings, "otel", engine=True)

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
