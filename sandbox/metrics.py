"""The replay's Prometheus metrics: how far, how fast and how late a replay is, and what it injected.

Labelled by the replaying adapter instance (``adapter_instance``), registered once per registry
beside the bus's and the adapters' own. :func:`status_sections` is the ``citybus.status`` entry
point: the replay table of ``citybus status``, read from these families.
"""

from __future__ import annotations

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bus.status import Count, Scrape, Section, count_text

__all__ = ["InstanceMetrics", "ReplayMetrics", "ReplayRow", "replay_metrics", "status_sections"]


class ReplayMetrics:
    """The replay metric families of one registry (labelled by the replaying instance)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "citybus_replay_messages",
            "Messages the replay published (faults included: a duplicate counts twice, a drop not).",
            ["adapter_instance"],
            registry=registry,
        )
        self.lag = Gauge(
            "citybus_replay_lag_seconds",
            "How late the replay published its last message, against its schedule.",
            ["adapter_instance"],
            registry=registry,
        )
        self.schedule_error = Histogram(
            "citybus_replay_schedule_error_seconds",
            "How late each replayed message went out, against its schedule.",
            ["adapter_instance"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=registry,
        )
        self.position = Gauge(
            "citybus_replay_position_seconds",
            "Where the replay is, in seconds of recording from the start of its window.",
            ["adapter_instance"],
            registry=registry,
        )
        self.progress = Gauge(
            "citybus_replay_progress_ratio",
            "How far through its window the replay is, from 0 to 1 (per loop).",
            ["adapter_instance"],
            registry=registry,
        )
        self.speed = Gauge(
            "citybus_replay_speed",
            "The replay's speed factor (0: as fast as possible; while paused, the speed it resumes at).",
            ["adapter_instance"],
            registry=registry,
        )
        self.loops = Counter(
            "citybus_replay_loops",
            "Times the replay started its window again.",
            ["adapter_instance"],
            registry=registry,
        )
        self.faults = Counter(
            "citybus_replay_faults",
            "Faults the replay injected, per kind.",
            ["adapter_instance", "kind"],
            registry=registry,
        )

    def instance(self, instance: str) -> InstanceMetrics:
        """The metrics of one replaying instance, its labelled children looked up once."""
        return InstanceMetrics(self, instance)


class InstanceMetrics:
    """One replaying instance's metrics: the families' children for its label, looked up once.

    A replay updates several of them for every message it publishes; looking a labelled child up
    (``family.labels(instance)``) each time would cost more than the update itself.
    """

    def __init__(self, families: ReplayMetrics, instance: str) -> None:
        self.messages = families.messages.labels(instance)
        self.lag = families.lag.labels(instance)
        self.schedule_error = families.schedule_error.labels(instance)
        self.position = families.position.labels(instance)
        self.progress = families.progress.labels(instance)
        self.speed = families.speed.labels(instance)
        self.loops = families.loops.labels(instance)
        self._faults = families.faults
        self._instance = instance

    def faults(self, kind: str) -> Counter:
        """The counter of one kind of fault."""
        return self._faults.labels(self._instance, kind)


_FAMILIES: dict[CollectorRegistry, ReplayMetrics] = {}


def replay_metrics(registry: CollectorRegistry) -> ReplayMetrics:
    """The replay metric families of a registry, registered on first use."""
    families = _FAMILIES.get(registry)
    if families is None:
        families = _FAMILIES[registry] = ReplayMetrics(registry)
    return families


class ReplayRow(msgspec.Struct, frozen=True, kw_only=True):
    """One sandbox replay in ``citybus status``."""

    instance: str
    speed: float
    progress_ratio: float
    position_seconds: float
    lag_seconds: float
    messages: Count


def status_sections(scrape: Scrape) -> list[Section]:
    """The ``citybus.status`` entry point: the replays, how fast, how far and how late."""
    key = ("adapter_instance",)
    speeds = scrape.gauges("citybus_replay_speed", key)
    messages = scrape.counters("citybus_replay_messages_total", key)
    progress = scrape.gauges("citybus_replay_progress_ratio", key)
    position = scrape.gauges("citybus_replay_position_seconds", key)
    lag = scrape.gauges("citybus_replay_lag_seconds", key)
    rows = [
        ReplayRow(
            instance=k[0],
            speed=speeds.get(k, 0.0),
            progress_ratio=progress.get(k, 0.0),
            position_seconds=position.get(k, 0.0),
            lag_seconds=lag.get(k, 0.0),
            messages=messages.get(k, scrape.zero),
        )
        for k in sorted(set(speeds) | set(messages))
    ]
    cells: list[tuple[str, ...]] = [
        (
            r.instance,
            "as fast as possible" if r.speed == 0 else f"{r.speed:g}x",
            f"{r.progress_ratio * 100:.1f}%",
            f"{r.position_seconds:.0f}s",
            f"{r.lag_seconds * 1000:.1f}ms",
            count_text(r.messages),
        )
        for r in rows
    ]
    columns = ("INSTANCE", "SPEED", "PROGRESS", "POSITION", "LAG", "MESSAGES")
    return [Section(key="replays", title="replay", columns=columns, cells=cells, rows=rows)]
