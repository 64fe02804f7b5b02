"""Per-adapter metrics, registered once per registry beside the bus's own.

Labels are the adapter (its name) and the instance (its ``[adapters.<instance>]`` section), so two
MQTT bridges show up apart.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["AdapterMetrics", "InstanceMetrics", "SourceMetrics"]


class AdapterMetrics:
    """The adapter metric families of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "citybus_adapter_up",
            "1 while the adapter instance runs and has said it is ready, else 0.",
            ["adapter", "adapter_instance"],
            registry=registry,
        )
        self.finished = Gauge(
            "citybus_adapter_finished",
            "1 once the adapter instance has finished its work (its run returned: a replay that does "
            "not loop, a one-shot import): not running then, but not down either. 0 while it runs.",
            ["adapter", "adapter_instance"],
            registry=registry,
        )
        self.restarts = Counter(
            "citybus_adapter_restarts",
            "Times the adapter instance failed and was restarted.",
            ["adapter", "adapter_instance"],
            registry=registry,
        )
        self.published = Counter(
            "citybus_adapter_messages_published",
            "Messages the adapter instance published, per contract.",
            ["adapter", "adapter_instance", "contract"],
            registry=registry,
        )
        self.received = Counter(
            "citybus_adapter_messages_received",
            "Messages handed to the adapter instance, per contract.",
            ["adapter", "adapter_instance", "contract"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "citybus_adapter_dead_letters",
            "Inputs the adapter instance sent to the dead letters, per reason.",
            ["adapter", "adapter_instance", "reason"],
            registry=registry,
        )

        self.source_fetches = Counter(
            "citybus_source_fetches",
            "Fetches of a polled source (an HTTP endpoint or a file) by outcome: ok, unchanged, "
            "not-modified, malformed, or the failure (unreachable, timeout, http-<status>, too-large, "
            "missing-file, unreadable).",
            ["adapter", "adapter_instance", "source", "outcome"],
            registry=registry,
        )
        self.source_up = Gauge(
            "citybus_source_up",
            "1 while the polled source's last fetch succeeded and parsed, else 0.",
            ["adapter", "adapter_instance", "source"],
            registry=registry,
        )
        self.source_last_success = Gauge(
            "citybus_source_last_success_timestamp_seconds",
            "When the polled source last answered with a document that parsed (Unix time).",
            ["adapter", "adapter_instance", "source"],
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
        self.finished = families.finished.labels(adapter, instance)
        self.restarts = families.restarts.labels(adapter, instance)
        self._published: dict[str, Any] = {}
        self._received: dict[str, Any] = {}

    def published(self, contract: str, count: int = 1) -> None:
        """Count published messages (one, or a batch's ``count``)."""
        child = self._published.get(contract)
        if child is None:
            child = self._published[contract] = self._families.published.labels(*self._labels, contract)
        child.inc(count)

    def received(self, contract: str) -> None:
        """Count one message handed to the adapter."""
        child = self._received.get(contract)
        if child is None:
            child = self._received[contract] = self._families.received.labels(*self._labels, contract)
        child.inc()

    def dead_lettered(self, reason: str) -> None:
        """Count one input sent to the dead letters."""
        self._families.dead_lettered.labels(*self._labels, reason).inc()

    def source(self, name: str) -> SourceMetrics:
        """The metrics of one polled source of this instance (``name`` as the adapter calls it)."""
        return SourceMetrics(self._families, (*self._labels, name))


class SourceMetrics:
    """One polled source's metric children."""

    def __init__(self, families: AdapterMetrics, labels: tuple[str, str, str]) -> None:
        self._families = families
        self._labels = labels
        self.up = families.source_up.labels(*labels)
        self.last_success = families.source_last_success.labels(*labels)

    def fetched(self, outcome: str) -> None:
        """Count one fetch with its outcome."""
        self._families.source_fetches.labels(*self._labels, outcome).inc()
