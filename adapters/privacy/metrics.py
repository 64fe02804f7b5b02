"""The privacy service's Prometheus metrics, registered once per registry (an adapter restarts as a
new object)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from bus.metrics import per_registry
from contracts import ErasedPlace

__all__ = ["PrivacyMetrics", "privacy_metrics"]


class PrivacyMetrics:
    """The metric families of the privacy service."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.erased = Counter(
            "citybus_personal_erased",
            "Personal messages (and keys) erased, by place and reason (request: a person asked; "
            "retention: they outlived their contract's retention)",
            ["place", "reason"],
            registry=registry,
        )
        self.last_erasure = Gauge(
            "citybus_personal_erasure_last_timestamp_seconds",
            "When an erasure last finished, by reason (a retention sweep counts when it ran, whether "
            "or not anything had expired)",
            ["reason"],
            registry=registry,
        )
        self._latest: dict[str, float] = {}
        self.exports = Counter(
            "citybus_personal_export", "Exports of a person's data answered (GDPR art. 15)", registry=registry
        )
        self.failures = Counter(
            "citybus_personal_erasure_incomplete",
            "Erasures (or sweeps) in which a place could not erase, by reason",
            ["reason"],
            registry=registry,
        )

    def erasure(self, reason: str, places: Iterable[ErasedPlace], complete: bool, at: float) -> None:
        """Record an erasure (``reason``: ``request`` or ``retention``) that finished at ``at``
        (seconds since the epoch), from its record."""
        for place in places:
            if place.erased:
                self.erased.labels(place.place, reason).inc(place.erased)
        self._last(reason, at)
        if not complete and reason == "request":  # a sweep's failure is counted when it ran
            self.failures.labels(reason).inc()

    def _last(self, reason: str, at: float) -> None:
        if at > self._latest.get(reason, 0.0):
            self._latest[reason] = at
            self.last_erasure.labels(reason).set(at)

    def swept(self, complete: bool) -> None:
        """Record a retention sweep that ran (whether or not it erased anything: its record counts
        what it erased)."""
        self._last("retention", time.time())
        if not complete:
            self.failures.labels("retention").inc()


privacy_metrics = per_registry(PrivacyMetrics)
"""The privacy service's metric families of ``registry``, registered on first use."""
