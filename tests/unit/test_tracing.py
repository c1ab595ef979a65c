"""OpenTelemetry spans of the request path, with the SDK's in-memory exporter. The spans of the
rsql-proxy service, printed by its console exporter: tests/e2e/test_tracing_service.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.tracing import PARENT_ID, PROMPT, TRACE_ID, TRACEPARENT

require("opentelemetry.sdk", reason="the otel extra")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams  # noqa: E402
from jupyter_server_ext.state import MemoryState  # noqa: E402

PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> None:
    # the process's tracer provider can be set once; the engine uses the one the app set up
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        current = trace.get_tracer_provider()
    assert isinstance(current, TracerProvider), "another tracer provider was set in this process"
    current.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _engine(fp: FakeProvider, otel: bool = True, **settings: Any) -> Engine:
    specs = parse_upstreams(upstreams_for(fp, a1=PRICED, a2=PRICED, b1=PRICED))
    return Engine(
        EngineSettings(
            upstreams=specs,
            default_model="fake-small",
            otel=otel,
            health_check_seconds=0,
            **settings,
        ),
        state=MemoryState(),
    )


def _ask(
    engine: Engine, headers: dict[str, str] | None = None, stream: bool = False
) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        await engine.start()
        try:
            body = {
                "model": "fake-small",
                "messages": [{"role": "user", "content": PROMPT}],
                "stream": stream,
                "temperature": 0,
            }
            reply = await engine.chat(body, Caller("alice"), trace_headers=headers)
            data = reply.body
            if reply.events is not None:
                data = b"".join([ev async for ev in reply.events])
            return reply.status, data
        finally:
            await engine.close()

    return asyncio.run(go())


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


def _no_secrets(exporter: InMemorySpanExporter, fp: FakeProvider) -> None:
    for s in exporter.get_finished_spans():
        text = json.dumps({k: str(v) for k, v in (s.attributes or {}).items()}) + s.name
        assert "private words" not in text
        for key in fp.keys:
            assert key not in text


def test_request_spans_continue_the_callers_trace(
    fresh_provider: FakeProvider, spans: InMemorySpanExporter
) -> None:
    status, _ = _ask(_engine(fresh_provider), {"traceparent": TRACEPARENT})
    assert status == 200
    got = _by_name(spans)
    assert set(got) == {"rsql.request", "rsql.admission", "rsql.cache", "rsql.upstream"}
    root = got["rsql.request"][0]
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert format(root.parent.span_id, "016x") == PARENT_ID and root.parent.is_remote
    for name in ("rsql.admission", "rsql.cache", "rsql.upstream"):
        child = got[name][0]
        assert child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    up = got["rsql.upstream"][0].attributes
    assert up["rsql.upstream"] in ("a1", "a2", "b1") and up["gen_ai.request.model"] == "fake-small"
    assert up["http.response.status_code"] == 200 and up["rsql.attempt"] == 1
    assert up["gen_ai.usage.input_tokens"] > 0 and up["gen_ai.usage.output_tokens"] > 0
    assert up["rsql.cost_usd"] == pytest.approx(
        (up["gen_ai.usage.input_tokens"] + up["gen_ai.usage.output_tokens"]) * 0.001
    )
    attrs = root.attributes
    assert (
        attrs["http.response.status_code"] == 200 and attrs["rsql.upstream"] == up["rsql.upstream"]
    )
    assert attrs["rsql.cache_hit"] is False and attrs["rsql.cost_usd"] == up["rsql.cost_usd"]
    assert got["rsql.cache"][0].attributes["rsql.cache_hit"] is False
    _no_secrets(spans, fresh_provider)


def test_without_traceparent_a_new_trace(
    fresh_provider: FakeProvider, spans: InMemorySpanExporter
) -> None:
    assert _ask(_engine(fresh_provider), None)[0] == 200
    root = _by_name(spans)["rsql.request"][0]
    assert root.parent is None and format(root.context.trace_id, "032x") != TRACE_ID


def test_every_upstream_attempt_is_a_span(
    fresh_provider: FakeProvider, spans: InMemorySpanExporter
) -> None:
    fp = fresh_provider
    fp.set_fault("a1", "status", status=500)  # a1 fails; the request fails over to another key
    for _ in range(6):  # until a request's first pick was a1 (a fresh pool starts with it)
        spans.clear()
        assert _ask(_engine(fp), {"traceparent": TRACEPARENT})[0] == 200
        if len(_by_name(spans).get("rsql.upstream", [])) > 1:
            break
    attempts = sorted(_by_name(spans)["rsql.upstream"], key=lambda s: s.attributes["rsql.attempt"])
    assert len(attempts) >= 2
    assert attempts[0].attributes["http.response.status_code"] == 500
    assert attempts[0].attributes["rsql.error"] == "server"
    assert attempts[0].attributes["rsql.upstream"] == "a1"
    assert attempts[-1].attributes["http.response.status_code"] == 200
    assert "rsql.error" not in attempts[-1].attributes
    assert [a.attributes["rsql.attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
    _no_secrets(spans, fp)


def test_streamed_answer_span_ends_with_its_usage(
    fresh_provider: FakeProvider, spans: InMemorySpanExporter
) -> None:
    status, data = _ask(_engine(fresh_provider), {"traceparent": TRACEPARENT}, stream=True)
    assert status == 200 and b"[DONE]" in data
    got = _by_name(spans)
    up = got["rsql.upstream"][0].attributes
    assert up["gen_ai.usage.output_tokens"] > 0 and up["rsql.cost_usd"] > 0
    assert got["rsql.request"][0].end_time >= got["rsql.upstream"][0].end_time


def test_refused_request_is_traced(
    fresh_provider: FakeProvider, spans: InMemorySpanExporter
) -> None:
    from jupyter_server_ext.engine.admission.limiter import LimitSettings, UserRules
    from jupyter_server_ext.engine.upstreams.specs import parse_rates

    engine = _engine(
        fresh_provider,
        limits=LimitSettings(user=UserRules(limits=parse_rates(["1/minute"], where="t"))),
    )

    async def go() -> list[int]:
        await engine.start()
        out = []
        try:
            for _ in range(2):
                try:
                    r = await engine.chat(
                        {"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]},
                        Caller("bob"),
                    )
                    out.append(r.status)
                except Exception as exc:
                    out.append(getattr(exc, "status", 0))
        finally:
            await engine.close()
        return out

    assert asyncio.run(go()) == [200, 429]
    roots = _by_name(spans)["rsql.request"]
    refused = [r for r in roots if r.attributes["http.response.status_code"] == 429]
    assert len(refused) == 1 and refused[0].attributes["rsql.limit"] == "user 1/minute"
    admission = [
        s
        for s in _by_name(spans)["rsql.admission"]
        if s.parent.span_id == refused[0].context.span_id
    ]
    assert admission[0].attributes["rsql.error"] == "RateLimited"


def test_tracing_off_costs_nothing(
    fresh_provider: FakeProvider, spans: InMemorySpanExporter
) -> None:
    engine = _engine(fresh_provider, otel=False)
    assert engine.tracing is None
    assert _ask(engine, {"traceparent": TRACEPARENT})[0] == 200
    assert spans.get_finished_spans() == ()
