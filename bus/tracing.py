"""OpenTelemetry tracing: one trace follows a message from its producer through every consumer.

The W3C trace context travels in the message's headers as the CloudEvents distributed-tracing
extension (``traceparent``, ``tracestate``). With tracing on (:class:`Tracing` given to the
:class:`~bus.Bus`):

- every message the bus sends gets a ``create`` span (a PRODUCER, a child of whatever span is
  current — the handler's, when a service publishes its output) whose context it carries; a raw
  CloudEvent that carries none yet (the replay's) gets one too, so a replayed reading starts a trace;
- every message received is handled inside a ``process`` span (a CONSUMER), a child of the context
  it carried: it is the outermost middleware of the one pipeline (:mod:`bus.pipeline`), so core and
  raw subscriptions, requests and durable consumers all show alike;
- every dead letter is sent inside a ``dead-letter`` span linked to its original's context.

Decisions, and why:

- Only the OpenTelemetry *API* is a dependency; the SDK and the OTLP exporter are the ``tracing``
  extra, loaded by :func:`from_config` when ``[tracing] enabled = true`` in citybus.toml. Without an
  SDK, tracing can still be given a provider in code (tests use the SDK's in-memory exporter).
- Off costs nothing per message: no middleware is installed and the bus checks one attribute on
  publish (``bus.tracing is None``); the API is not even imported by the bus until tracing is on.
- A ``create`` span is ended as soon as the context is in the headers: it marks the message's
  creation (OpenTelemetry's messaging conventions), not the time the network took.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bus.errors import ConfigError
from bus.pipeline import Route, Step

__all__ = ["TRACEPARENT", "TRACESTATE", "Tracing", "from_config", "propagating", "trace_id"]

TRACEPARENT = "traceparent"
"""The CloudEvents distributed-tracing extension's header for the W3C trace parent."""
TRACESTATE = "tracestate"
"""Its header for the W3C trace state."""

_PROPAGATOR = TraceContextTextMapPropagator()  # exactly traceparent and tracestate


class Tracing:
    """Spans for what one bus sends, handles and dead-letters.

    :param provider: an OpenTelemetry ``TracerProvider``; the global one by default.
    """

    def __init__(self, provider: Any = None) -> None:
        self.tracer = trace.get_tracer("citybus", tracer_provider=provider)

    def stamp(self, subject: str, headers: dict[str, str], contract: str = "") -> None:
        """Add a ``create`` span's trace context to ``headers`` of a message about to be sent."""
        attributes = {"messaging.system": "nats", "messaging.destination.name": subject}
        if contract:
            attributes["cloudevents.event_type"] = contract
        if "ce-id" in headers:
            attributes["cloudevents.event_id"] = headers["ce-id"]
        span = self.tracer.start_span(
            f"create {contract or subject}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        try:
            _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
        finally:
            span.end()

    def stamped(self, subject: str, headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
        """Headers of a raw message with a trace context: a CloudEvent (``ce-id``) without one gets
        a copy with a new ``create`` span's; anything else is sent as it is."""
        if not headers or TRACEPARENT in headers or "ce-id" not in headers:
            return headers
        copy = dict(headers)
        self.stamp(subject, copy, headers.get("ce-type", ""))
        return copy

    def middleware(self, route: Route, step: Step) -> Step:
        """The pipeline middleware: the handling of each message in a ``process`` span."""
        name = f"process {route.contract or route.subject}"
        tracer = self.tracer
        base = {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "citybus.delivery": route.kind,
        }
        if route.consumer:
            base["messaging.consumer.group.name"] = route.consumer

        async def traced(item: Any, msg: Any) -> Any:
            headers = msg.headers or {}
            attributes = {**base, "messaging.destination.name": msg.subject}
            if "ce-id" in headers:
                attributes["cloudevents.event_id"] = headers["ce-id"]
            with tracer.start_as_current_span(
                name, context=_PROPAGATOR.extract(headers), kind=SpanKind.CONSUMER, attributes=attributes
            ):
                return await step(item, msg)

        return traced

    @contextmanager
    def dead_letter(self, msg: Any, reason: str, consumer: str) -> Iterator[None]:
        """A ``dead-letter`` span around sending ``msg``'s dead letter, linked to ``msg``'s trace."""
        original = trace.get_current_span(_PROPAGATOR.extract(msg.headers or {})).get_span_context()
        links = [Link(original)] if original.is_valid else []
        attributes = {
            "messaging.system": "nats",
            "citybus.dead_letter.reason": reason,
            "messaging.destination.name": msg.subject,
        }
        if consumer:
            attributes["messaging.consumer.group.name"] = consumer
        with self.tracer.start_as_current_span(f"dead-letter {reason}", links=links, attributes=attributes):
            yield


def from_config(enabled: bool, endpoint: str, service_name: str, *, export: bool = True) -> Tracing | None:
    """The tracing of ``[tracing]`` in citybus.toml: ``None`` when off; with ``export`` off, the
    propagating tracer (:func:`propagating`); else an SDK provider exporting over OTLP/HTTP to
    ``endpoint`` (the exporter's own default, or its environment variables, when empty). Raises
    :class:`~bus.errors.ConfigError` when the extra is missing."""
    if not enabled:
        return None
    if not export:
        return propagating()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "[tracing] enabled = true needs the OpenTelemetry SDK and OTLP exporter: "
            "pip install 'citybus[tracing]' (or set enabled = false)"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider)


class _PropagatingTracer(trace.NoOpTracer):
    """A tracer that records nothing and carries the trace context: a span started under a valid
    parent is that parent (the API's no-op behaviour), and a span with none starts a new trace (a
    random trace and span id, sampled), which the no-op tracer would not."""

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            return trace.NonRecordingSpan(parent)
        return trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=secrets.randbits(128) or 1,
                span_id=secrets.randbits(64) or 1,
                is_remote=False,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )

    @contextmanager  # the API's own decorator differs between its versions: a plain context manager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[trace.Span]:
        """:meth:`start_span`'s span, current while the block runs (older versions of the API's no-op
        tracer, 1.20 among them, yield an invalid span here whatever the parent: the trace was lost)."""
        with trace.use_span(self.start_span(name, context), end_on_exit=False) as span:
            yield span


class _PropagatingProvider(trace.NoOpTracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _PropagatingTracer()


def propagating() -> Tracing:
    """Tracing that only propagates: every message sent carries a ``traceparent``, a handler's
    output the one of the message it handled (``[tracing] export = false``; no SDK needed)."""
    return Tracing(_PropagatingProvider())


def trace_id(headers: Mapping[str, str] | None) -> str:
    """The trace id (32 hex digits) of a message's ``traceparent`` header, or '' when it has none."""
    parent = (headers or {}).get(TRACEPARENT, "")
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""
