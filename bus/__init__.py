"""citybus's bus: NATS connection, subjects, CloudEvents envelope, JetStream, dead letters and ops.

The public API::

    bus = Bus()
    await bus.connect("nats://127.0.0.1:4222")
    await bus.publish(BeachObservation(...), provenance=Provenance.SENSOR)
    await bus.subscribe(BeachObservation, handler, queue="statistics")

Every received message takes one pipeline (:mod:`bus.pipeline`); a :data:`Middleware` — a function
of the :class:`Route` and the handling :data:`Step` — wraps it for every kind of delivery, and
:class:`Tracing` (OpenTelemetry, :mod:`bus.tracing`) is one::

    bus = Bus(middleware=[timed], tracing=Tracing(provider))

``Tracing`` is imported when first asked for, so a process that does not trace never loads the
OpenTelemetry API.
"""

import typing

from bus.bus import Bus, Handler, PublishAck, RawHandler, RawMessage, Responder, Subscription
from bus.envelope import Envelope, Event, Provenance
from bus.errors import (
    CityBusError,
    ConfigError,
    ContractViolation,
    EmbeddedServerError,
    JetStreamUnavailableError,
    MissingHeaderError,
    NoRespondersError,
    NotConnectedError,
    PermissionDeniedError,
    PublishTimeoutError,
    RequestRefusedError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from bus.jetstream import ConsumerSettings, DurableConsumer, StreamSettings
from bus.memory import MemoryBus
from bus.metrics import Metrics
from bus.pipeline import Middleware, Route, Step

if typing.TYPE_CHECKING:
    from bus.tracing import Tracing

__all__ = [
    "Bus",
    "CityBusError",
    "ConfigError",
    "ConsumerSettings",
    "ContractViolation",
    "DurableConsumer",
    "EmbeddedServerError",
    "Envelope",
    "Event",
    "Handler",
    "JetStreamUnavailableError",
    "MemoryBus",
    "Metrics",
    "Middleware",
    "MissingHeaderError",
    "NoRespondersError",
    "NotConnectedError",
    "PermissionDeniedError",
    "Provenance",
    "PublishAck",
    "PublishTimeoutError",
    "RawHandler",
    "RawMessage",
    "RequestRefusedError",
    "RequestTimeoutError",
    "Responder",
    "Route",
    "ServerUnavailableError",
    "Step",
    "StreamSettings",
    "Subscription",
    "Tracing",
]


def __getattr__(name: str) -> object:
    """``Tracing``, imported on first use (the OpenTelemetry API only where tracing is used)."""
    if name == "Tracing":
        from bus.tracing import Tracing

        return Tracing
    raise AttributeError(f"module 'bus' has no attribute {name!r}")
