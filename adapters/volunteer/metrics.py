"""The volunteer platform's Prometheus metrics, registered once per registry (an adapter restarts as
a new object).

Labels stay bounded and impersonal: a status, an action, an opportunity id — never a volunteer's
id, name or contact.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from bus.metrics import per_registry

__all__ = ["VolunteerMetrics", "volunteer_metrics"]


class VolunteerMetrics:
    """The metric families of the volunteer platform."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.signups = Counter(
            "citybus_volunteer_signups",
            "Sign-up requests answered, by action (signup, change, withdraw) and the receipt's status "
            "(confirmed, changed, withdrawn, full, refused)",
            ["action", "status"],
            registry=registry,
        )
        self.offers = Counter(
            "citybus_volunteer_offers",
            "Opportunity offers answered, by outcome (accepted, refused)",
            ["outcome"],
            registry=registry,
        )
        self.rosters = Counter(
            "citybus_volunteer_rosters", "Rosters sent to organisations", registry=registry
        )
        self.places_left = Gauge(
            "citybus_volunteer_places_left",
            "Places left on each open or full opportunity (a cancelled one is dropped)",
            ["opportunity"],
            registry=registry,
        )
        self.conflicts = Counter(
            "citybus_volunteer_place_conflicts",
            "Compare-and-sets on the ledger of places lost to another platform process (then retried)",
            registry=registry,
        )
        self.erased_places = Counter(
            "citybus_volunteer_erased_places",
            "Places freed because the volunteer holding them was erased (their key destroyed)",
            registry=registry,
        )
        self.volunteers = Gauge(
            "citybus_volunteer_signed_up",
            "Sign-ups the platform holds (one per volunteer and opportunity)",
            registry=registry,
        )

    def signed(self, action: str, status: str) -> None:
        """Count a sign-up request answered."""
        self.signups.labels(action, status).inc()

    def places(self, opportunity_id: str, left: int, status: str) -> None:
        """Record an opportunity's places left (dropping a cancelled one)."""
        if status == "cancelled":
            try:
                self.places_left.remove(opportunity_id)
            except KeyError:
                pass
        else:
            self.places_left.labels(opportunity_id).set(left)


volunteer_metrics = per_registry(VolunteerMetrics)
"""The volunteer platform's metric families of ``registry``, registered on first use."""
