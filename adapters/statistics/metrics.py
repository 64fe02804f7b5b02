"""The statistics service's Prometheus metrics, registered once per registry (an adapter restarts as
a new object).

Labels stay bounded and impersonal: a data set (the configured few), an outcome, a reason, an
action — never a person's id or ref, never a group of a table (a group with one person in it is
what the service exists not to tell).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from bus.metrics import per_registry

__all__ = ["StatisticsMetrics", "statistics_metrics"]


class StatisticsMetrics:
    """The metric families of the statistics service."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.releases = Counter(
            "citybus_statistics_releases",
            "Releases of a data set, by outcome: released (published), refused (it would exceed the "
            "privacy budget), failed (computing or publishing it failed after the budget was spent)",
            ["dataset", "outcome"],
            registry=registry,
        )
        self.spent = Gauge(
            "citybus_statistics_budget_spent",
            "Epsilon spent on a data set in the current period (differential privacy; 0 for others)",
            ["dataset"],
            registry=registry,
        )
        self.remaining = Gauge(
            "citybus_statistics_budget_remaining",
            "Epsilon a data set may still spend in the current period (its budget minus what is spent)",
            ["dataset"],
            registry=registry,
        )
        self.suppressed = Counter(
            "citybus_statistics_suppressed_cells",
            "Cells published as suppressed, by data set and reason (too-few, complementary, threshold)",
            ["dataset", "reason"],
            registry=registry,
        )
        self.last_release = Gauge(
            "citybus_statistics_last_release_timestamp_seconds",
            "When a data set was last released (Unix time, on the service's clock)",
            ["dataset"],
            registry=registry,
        )
        self.comparisons = Counter(
            "citybus_statistics_comparisons",
            "Comparisons answered (a person's own figures beside the released ones), by data set",
            ["dataset"],
            registry=registry,
        )
        self.contributions = Counter(
            "citybus_statistics_contributions",
            "Volunteer activities applied to the contributions, by action (counted, withdrawn, "
            "unchanged: a repeat or an older message), and records forgotten (erased, or expired "
            "a year after their period)",
            ["action"],
            registry=registry,
        )
        self.observations = Counter(
            "citybus_statistics_observations",
            "Public observations taken into a data set (a repeated one is counted once per message)",
            ["dataset"],
            registry=registry,
        )
        self.conflicts = Counter(
            "citybus_statistics_store_conflicts",
            "Compare-and-sets on the budget or the contributions lost to another service process "
            "(then retried)",
            registry=registry,
        )

    def budget(self, dataset: str, spent: float, budget: float) -> None:
        """Record what a data set spent of its budget in the current period."""
        self.spent.labels(dataset).set(spent)
        self.remaining.labels(dataset).set(max(budget - spent, 0.0))


statistics_metrics = per_registry(StatisticsMetrics)
"""The statistics service's metric families of ``registry``, registered on first use."""
