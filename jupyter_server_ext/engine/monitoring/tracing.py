"""OpenTelemetry tracing of the request path (the optional ``otel`` extra).

One span per request, continuing the caller's W3C ``traceparent``, with child spans for
admission, the cache lookup and each upstream attempt. Attributes are aliases, models,
statuses, token counts and costs: never a provider key, a user's prompt or an answer.

With tracing off (the default, or OpenTelemetry not installed) the engine holds ``None``
instead of a ``Tracing`` and every hook is one ``is None`` test: nothing is imported.
Spans are started with an explicit parent rather than through the current context: a streamed
answer finishes in another task than the one it started in, where an attached context would
leak or be detached twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..interface import Outcome

log = logging.getLogger("rsql.tracing")


class _NoSpan:
    """Stands in for a span when the request is not traced; a shared, stateless singleton."""

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def set_attribute(self, name: str, value: Any) -> None:
        return None


NO_SPAN = _NoSpan()


class _Child:
    """A child span as a context manager: ends it, marking an escaping exception as an error."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def __enter__(self) -> Any:
        return self.span

    def __exit__(self, etype: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self.span.set_attribute("rsql.error", type(exc).__name__)
            status = getattr(exc, "status", None)
            if isinstance(status, int):
                self.span.set_attribute("http.response.status_code", status)
        self.span.end()


class RequestTrace:
    """The spans of one request."""

    __slots__ = ("tracing", "root", "ctx", "attempt")

    def __init__(self, tracing: Tracing, root: Any) -> None:
        from opentelemetry import trace

        self.tracing = tracing
        self.root = root
        self.ctx = trace.set_span_in_context(root)
        self.attempt: Any = None  # the upstream attempt that answered, ended with the request

    def child(self, name: str, **attrs: Any) -> _Child:
        span = self.tracing.tracer.start_span(name, context=self.ctx, attributes=_clean(attrs))
        return _Child(span)

    def start_attempt(self, alias: str, model: str, attempt: int) -> Any:
        return self.tracing.tracer.start_span(
            "rsql.upstream",
            context=self.ctx,
            kind=self.tracing.client_kind,
            attributes={
                "rsql.upstream": alias,
                "gen_ai.request.model": model,
                "rsql.attempt": attempt,
            },
        )

    def end(self, outcome: Outcome) -> None:
        """The request is over (answered, refused or failed): set what it came to, end its spans."""
        attempt = self.attempt
        if attempt is not None:
            attempt.set_attribute("gen_ai.usage.input_tokens", outcome.prompt_tokens)
            attempt.set_attribute("gen_ai.usage.output_tokens", outcome.completion_tokens)
            attempt.set_attribute("rsql.cost_usd", outcome.cost_usd)
            if outcome.status >= 400:  # a stream that broke off after its first event
                attempt.set_attribute("rsql.error", outcome.error or "")
            attempt.end()
            self.attempt = None
        root = self.root
        root.set_attributes(
            _clean(
                {
                    "gen_ai.request.model": outcome.model,
                    "http.response.status_code": outcome.status,
                    "rsql.upstream": outcome.upstream,
                    "rsql.cache_hit": outcome.cache_hit,
                    "rsql.fallback": outcome.fallback,
                    "rsql.attempts": len(outcome.attempts),
                    "gen_ai.usage.input_tokens": outcome.prompt_tokens,
                    "gen_ai.usage.output_tokens": outcome.completion_tokens,
                    "rsql.cost_usd": outcome.cost_usd,
                    "rsql.error": outcome.error,
                    "rsql.limit": outcome.limit,
                }
            )
        )
        if outcome.status >= 500:
            from opentelemetry.trace import Status, StatusCode

            root.set_status(Status(StatusCode.ERROR, outcome.error or ""))
        root.end()


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    # OpenTelemetry refuses None values (and logs a warning for each)
    return {k: v for k, v in attrs.items() if v is not None}


class Tracing:
    """The tracer the engine uses; made by ``Tracing.create`` when ``otel`` is on."""

    def __init__(self, tracer: Any, propagator: Any, owned_provider: Any = None) -> None:
        from opentelemetry.trace import SpanKind

        self.tracer = tracer
        self.propagator = propagator
        self.client_kind = SpanKind.CLIENT
        self.server_kind = SpanKind.SERVER
        self._owned = owned_provider

    @classmethod
    def create(cls) -> Tracing:
        """The application's tracer provider when it set one up (``opentelemetry-instrument``, a
        test), else one of ours exporting as the standard OTEL_* variables say."""
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ConfigError(
                "RSQLProxy.otel is True, but OpenTelemetry is not installed: "
                "pip install 'rsql-assistant[otel]' (opentelemetry-api and opentelemetry-sdk)"
            ) from None
        provider = trace.get_tracer_provider()
        owned = None
        if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
            owned = provider = _sdk_provider()
            trace.set_tracer_provider(provider)
        return cls(provider.get_tracer("rsql-proxy"), TraceContextTextMapPropagator(), owned)

    def begin(
        self, headers: Mapping[str, str] | None, outcome: Outcome, endpoint: str
    ) -> RequestTrace:
        """The request's span, a child of the caller's `traceparent` when it sent one."""
        parent = self.propagator.extract(headers) if headers is not None else None
        root = self.tracer.start_span(
            "rsql.request",
            context=parent,
            kind=self.server_kind,
            attributes={
                "rsql.request_id": outcome.request_id,
                "rsql.endpoint": endpoint,
                "rsql.client": outcome.caller.client,
            },
        )
        return RequestTrace(self, root)

    def shutdown(self) -> None:
        if self._owned is not None:
            self._owned.force_flush()


def _sdk_provider() -> Any:
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            "RSQLProxy.otel is True, but opentelemetry-sdk is not installed (only the API is): "
            "pip install 'rsql-assistant[otel]'"
        ) from None
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "rsql-proxy"}
    provider = TracerProvider(resource=Resource.create(attrs))
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        exporter = _exporter(name.strip().lower())
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str) -> Any:
    """An exporter named as OTEL_TRACES_EXPORTER names them; its own OTEL_EXPORTER_* settings
    (endpoint, headers, protocol options) are read by the exporter itself."""
    if name in ("", "none"):
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        try:
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning(
                "tracing: OTEL_TRACES_EXPORTER is otlp, but no OTLP exporter is installed "
                "(pip install opentelemetry-exporter-otlp); spans are not exported"
            )
            return None
        return OTLPSpanExporter()
    log.warning("tracing: unknown exporter %r in OTEL_TRACES_EXPORTER (otlp, console, none)", name)
    return None
