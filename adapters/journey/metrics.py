"""The journey planner's Prometheus metrics, registered once per registry (an adapter restarts as a
new object)."""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bus.metrics import per_registry

__all__ = ["JourneyMetrics", "journey_metrics"]


class JourneyMetrics:
    """The metric families of the journey planner."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "citybus_journey_requests",
            "Journey requests answered, by the plan's status (ok, no-route, unknown-place, …)",
            ["status"],
            registry=registry,
        )
        self.plan_seconds = Histogram(
            "citybus_journey_plan_seconds",
            "Time to plan one request, in the planner (the bus's round trip not included)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self.live_calls = Counter(
            "citybus_journey_live_calls",
            "Live train calls taken, by outcome: applied, unchanged, unmatched (not in the timetable)",
            ["outcome"],
            registry=registry,
        )
        self.trips = Gauge(
            "citybus_journey_timetable_trips", "Trips in the loaded timetable", registry=registry
        )
        self.stop_places = Gauge(
            "citybus_journey_timetable_stop_places", "Stop places in the loaded timetable", registry=registry
        )
        self.load_seconds = Gauge(
            "citybus_journey_timetable_load_seconds",
            "Time the last timetable took to load",
            registry=registry,
        )
        self.valid_to = Gauge(
            "citybus_journey_timetable_valid_to_timestamp_seconds",
            "End of the last day the loaded timetable covers (alert before it runs out)",
            registry=registry,
        )

    def loaded(self, trips: int, places: int, seconds: float, valid_to: date, tz: tzinfo) -> None:
        """Record a timetable loaded; its last day ends at midnight in the timetable's zone ``tz``."""
        self.trips.set(trips)
        self.stop_places.set(places)
        self.load_seconds.set(seconds)
        self.valid_to.set(datetime.combine(valid_to, time(23, 59, 59), tzinfo=tz).timestamp())

    def answered(self, status: str, seconds: float) -> None:
        """Record a request answered."""
        self.requests.labels(status).inc()
        self.plan_seconds.observe(seconds)

    def live(self, outcome: str) -> None:
        """Record a live call taken."""
        self.live_calls.labels(outcome).inc()


journey_metrics = per_registry(JourneyMetrics)
"""The journey planner's metric families of ``registry``, registered on first use."""
