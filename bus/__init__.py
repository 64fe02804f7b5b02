"""citybus's bus: NATS connection, subjects, CloudEvents envelope, JetStream, dead letters and ops.

The public API::

    bus = Bus()
    await bus.connect("nats://127.0.0.1:4222")
    await bus.publish(BeachObservation(...), provenance=Provenance.SENSOR)
    await bus.subscribe(BeachObservation, handler, queue="statistics")
"""

from bus.bus import Bus, Handler, PublishAck, RawHandler, RawMessage, Responder, Subscription
from bus.envelope import Envelope, Event, Provenance
from bus.errors import (
    CityBusError,
    ConfigError,
    ContractViolation,
    EmbeddedServerError,
    MissingHeaderError,
    NoRespondersError,
    NotConnectedError,
    PermissionDeniedError,
    PublishTimeoutError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from bus.jetstream import ConsumerSettings, DurableConsumer, StreamSettings
from bus.memory import MemoryBus
from bus.metrics import Metrics

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
    "MemoryBus",
    "Metrics",
    "MissingHeaderError",
    "NoRespondersError",
    "NotConnectedError",
    "PermissionDeniedError",
    "Provenance",
    "PublishAck",
    "PublishTimeoutError",
    "RawHandler",
    "RawMessage",
    "RequestTimeoutError",
    "Responder",
    "ServerUnavailableError",
    "StreamSettings",
    "Subscription",
]
