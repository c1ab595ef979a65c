"""A caller's W3C trace context and a prompt whose words must not reach a span: shared by
tests/unit/test_tracing.py (the engine's spans) and tests/e2e/test_tracing_service.py (the
service's)."""

from __future__ import annotations

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
# words that must never reach a span or a log line
PROMPT = "what is a left join? private words 7731"
