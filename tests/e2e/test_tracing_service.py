"""The rsql-proxy service continues a caller's trace: a request carrying a W3C traceparent
gets its request and upstream spans in that trace, printed by the console exporter when the
service stops cleanly, with neither the prompt nor a key in them. The engine's spans with the
SDK's in-memory exporter: tests/unit/test_tracing.py."""

from __future__ import annotations

import re
from typing import Any

from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.tracing import PARENT_ID, PROMPT, TRACE_ID, TRACEPARENT

require("opentelemetry.sdk", reason="the otel extra")


def test_service_continues_traceparent_over_http(
    service_factory: Any, fresh_provider: FakeProvider
) -> None:
    """The real host passes the caller's traceparent on; the console exporter prints the spans."""
    svc = service_factory(
        {"upstreams": upstreams_for(fresh_provider), "default_model": "fake-small", "otel": True},
        static_users={"tok-alice": {"name": "alice"}},
        env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "rsql-test"},
    )
    status, _, _ = svc.request(
        "POST",
        "v1/chat/completions",
        {"model": "fake-small", "messages": [{"role": "user", "content": PROMPT}]},
        token="tok-alice",
        headers={"traceparent": TRACEPARENT},
    )
    assert status == 200
    assert svc.stop(2) == 0  # SIGINT: a clean stop flushes the spans
    log = svc.log()
    assert re.search(r'"name": "rsql.request"', log) and re.search(r'"name": "rsql.upstream"', log)
    assert f'"trace_id": "0x{TRACE_ID}"' in log and f'"parent_id": "0x{PARENT_ID}"' in log
    assert "private words" not in log
    for key in fresh_provider.keys:
        assert key not in log
