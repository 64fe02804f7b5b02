"""Per-adapter metrics, registered once per registry beside the bus's own.

Labels are the adapter (its name) and the instance (its ``[adapters.<instance>]`` section), so two
MQTT bridges show up apart.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["AdapterMetrics", "InstanceMetrics"]


class AdapterMetrics:
    """The adapter metric families of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "citybus_adapter_up",
            "1 while the adapter instance runs and has said it is ready, else 0.",
            ["adapter", "instance"],
            registry=registry,
        )
        self.restarts = Counter(
            "citybus_adapter_restarts",
            "Times the adapter instance failed and was restarted.",
            ["adapter", "instance"],
            registry=registry,
        )
        self.published = Counter(
            "citybus_adapter_messages_published",
            "Messages the adapter instance published, per contract.",
            ["adapter", "instance", "contract"],
            registry=registry,
        )
        self.received = Counter(
            "citybus_adapter_messages_received",
            "Messages handed to the adapter instance, per contract.",
            ["adapter", "instance", "contract"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "citybus_adapter_dead_letters",
            "Inputs the adapter instance sent to the dead letters, per reason.",
            ["adapter", "instance", "reason"],
            registry=registry,
        )

    def instance(self, adapter: str, instance: str) -> InstanceMetrics:
        """The metrics of one instance."""
        return InstanceMetrics(self, adapter, instance)


class InstanceMetrics:
    """One adapter instance's metric children."""

    def __init__(self, families: AdapterMetrics, adapter: str, instance: str) -> None:
        self._families = families
        self._labels = (adapter, instance)
        self.up = families.up.labels(adapter, instance)
        self.restarts = families.restarts.labels(adapter, instance)
        self._published: dict[str, Any] = {}
        self._received: dict[str, Any] = {}

    def published(self, contract: str) -> None:
        """Count one published message."""
        child = self._published.get(contract)
        if child is None:
            child = self._published[contract] = self._families.published.labels(*self._labels, contract)
        child.inc()

    def received(self, contract: str) -> None:
        """Count one message handed to the adapter."""
        child = self._received.get(contract)
        if child is None:
            child = self._received[contract] = self._families.received.labels(*self._labels, contract)
        child.inc()

    def dead_lettered(self, reason: str) -> None:
        """Count one input sent to the dead letters."""
        self._families.dead_lettered.labels(*self._labels, reason).inc()
