"""The privacy service's Prometheus metrics, registered once per registry (an adapter restarts as a
new object)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

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
        self.exports = Counter(
            "citybus_personal_export", "Exports of a person's data answered (GDPR art. 15)", registry=registry
        )
        self.failures = Counter(
            "citybus_personal_erasure_incomplete",
            "Erasures (or sweeps) in which a place could not erase, by reason",
            ["reason"],
            registry=registry,
        )

    def erasure(self, reason: str, places: Iterable[ErasedPlace], complete: bool) -> None:
        """Record an erasure that finished (``reason``: ``request`` or ``retention``)."""
        for place in places:
            if place.erased:
                self.erased.labels(place.place, reason).inc(place.erased)
        self.last_erasure.labels(reason).set(time.time())
        if not complete:
            self.failures.labels(reason).inc()


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, PrivacyMetrics] = weakref.WeakKeyDictionary()


def privacy_metrics(registry: CollectorRegistry) -> PrivacyMetrics:
    """The privacy service's metric families of ``registry``, registered on first use."""
    families = _FAMILIES.get(registry)
    if families is None:
        families = _FAMILIES[registry] = PrivacyMetrics(registry)
    return families
