"""Prometheus metrics of the bus, in a registry of their own that is handed to components.

Names follow Prometheus conventions: a ``citybus_`` prefix, ``_total`` on counters, base units
in the name (``_seconds``). Labels are low-cardinality: the contract's CloudEvents type and, for
rejections, a short reason token — never a subject, an entity or an event id.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ContractMetrics", "Metrics", "per_registry"]

F = TypeVar("F")


def per_registry(families: Callable[[CollectorRegistry], F]) -> Callable[[CollectorRegistry], F]:
    """A function giving the metric families ``families(registry)`` builds, registered once per
    registry: a component that restarts as a new object finds the families it registered before
    (prometheus-client refuses to register a name twice), and a registry that is gone frees them."""
    made: weakref.WeakKeyDictionary[CollectorRegistry, F] = weakref.WeakKeyDictionary()

    def of(registry: CollectorRegistry) -> F:
        found = made.get(registry)
        if found is None:
            found = made[registry] = families(registry)
        return found

    return of


# Handlers of city data are mostly sub-millisecond; sinks writing to a database take longer.
_HANDLER_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)
# End-to-end latency spans loopback microseconds to replayed/retried messages minutes old.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


class Metrics:
    """Every metric the bus exports; one instance per process, with its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.published = Counter(
            "citybus_messages_published", "Messages published, per contract.", ["contract"], registry=r
        )
        self.received = Counter(
            "citybus_messages_received",
            "Messages received and decoded, per contract.",
            ["contract"],
            registry=r,
        )
        self.invalid = Counter(
            "citybus_messages_invalid",
            "Messages that failed to decode or validate, per expected contract and reason.",
            ["contract", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "citybus_dead_letters",
            "Dead letters stored by JetStream (each once, however often its original was redelivered), "
            "per contract and reason.",
            ["contract", "reason"],
            registry=r,
        )
        self.dead_letters_unstored = Counter(
            "citybus_dead_letters_unstored",
            "Dead letters JetStream did not store (published plainly and logged instead), per contract "
            "and reason: a durable consumer keeps such an original and tries again.",
            ["contract", "reason"],
            registry=r,
        )
        self.personal_unreadable = Counter(
            "citybus_personal_unreadable",
            "Sealed personal messages received whose person's key was destroyed (erased): acknowledged "
            "and never handed to a handler, per contract.",
            ["contract"],
            registry=r,
        )
        self.handler_errors = Counter(
            "citybus_handler_errors",
            "Handler invocations that raised, per contract.",
            ["contract"],
            registry=r,
        )
        self.handler_duration = Histogram(
            "citybus_handler_duration_seconds",
            "Time a handler took for one message, per contract.",
            ["contract"],
            buckets=_HANDLER_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "citybus_end_to_end_latency_seconds",
            "Time from a message's ce-time to its receipt, per contract.",
            ["contract"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.connected = Gauge(
            "citybus_nats_connected",
            "1 while connected to NATS (every connection of the process, one per adapter user), else 0.",
            registry=r,
        )
        self._links: dict[int, bool] = {}
        self.permission_denials = Counter(
            "citybus_nats_permission_denials",
            "Publishes and subscriptions the broker refused: a user did what its rights do not allow.",
            ["operation"],
            registry=r,
        )
        self.consumer_pending = Gauge(
            "citybus_consumer_pending",
            "Messages of its stream a durable consumer has yet to be delivered (JetStream's num_pending): "
            "its backlog.",
            ["consumer", "stream"],
            registry=r,
        )
        self.disconnects = Counter(
            "citybus_nats_disconnects", "Times the NATS connection was lost.", registry=r
        )
        self.reconnects = Counter(
            "citybus_nats_reconnects", "Times the NATS connection was re-established.", registry=r
        )
        self.slow_consumers = Counter(
            "citybus_nats_slow_consumers",
            "Messages dropped by the client because a subscription could not keep up.",
            registry=r,
        )
        self.stalls = Counter(
            "citybus_nats_stalls",
            "Times a NATS connection stopped reading (its reader ended or a ping went unanswered) while "
            "it seemed connected; each is then reconnected.",
            registry=r,
        )
        self.nats_errors = Counter(
            "citybus_nats_errors", "Asynchronous errors reported by the NATS client.", registry=r
        )
        self.stream_setting_kept = Gauge(
            "citybus_stream_setting_kept",
            "1 for each setting of a stream that the configuration asks to lower and provisioning kept at "
            "the stream's larger value (replicas, max_bytes, …; see bus/provision.py).",
            ["stream", "setting"],
            registry=r,
        )
        self.publish_retries = Counter(
            "citybus_publish_retries",
            "Durable publishes retried because JetStream did not acknowledge in time.",
            ["contract"],
            registry=r,
        )

    def link(self, connection: int, up: bool | None) -> None:
        """Record one connection's state (``None``: closed for good, forgotten).

        ``citybus_nats_connected`` is 1 while every open connection is up: with access control
        each adapter connects as its own user, and one lost connection is an outage of its own.
        """
        if up is None:
            self._links.pop(connection, None)
        else:
            self._links[connection] = up
        self.connected.set(1 if self.links_up else 0)

    @property
    def links_up(self) -> bool:
        """Whether there is an open connection and every one is up: what ``citybus_nats_connected``
        says, for a readiness check of the whole process."""
        return bool(self._links) and all(self._links.values())

    def contract(self, ce_type: str) -> ContractMetrics:
        """The label children for one contract, resolved once (label lookups are not free)."""
        return ContractMetrics(self, ce_type)


class ContractMetrics:
    """One contract's metric children, bound once per publisher or subscription."""

    __slots__ = (
        "_metrics",
        "contract",
        "published",
        "received",
        "handler_errors",
        "handler_duration",
        "latency",
    )

    def __init__(self, metrics: Metrics, ce_type: str) -> None:
        self._metrics = metrics
        self.contract = ce_type
        self.published = metrics.published.labels(ce_type)
        self.received = metrics.received.labels(ce_type)
        self.handler_errors = metrics.handler_errors.labels(ce_type)
        self.handler_duration = metrics.handler_duration.labels(ce_type)
        self.latency = metrics.latency.labels(ce_type)

    def invalid(self, reason: str) -> None:
        """Count a message of this contract that failed to decode or validate."""
        self._metrics.invalid.labels(self.contract, reason).inc()
