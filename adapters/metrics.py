"""Per-adapter metrics, registered once per registry beside the bus's own.

Labels are the adapter (its name) and the instance (its ``[adapters.<instance>]`` section), so two
MQTT bridges show up apart.

:func:`status_sections` is the ``citybus.status`` entry point: the adapters' and the polled
sources' tables of ``citybus status``, read from these families, here where they are defined
(``bus`` knows no adapter metric names).
"""

from __future__ import annotations

from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from bus.status import Count, Scrape, Section, age_text, count_text, yes_no

__all__ = ["AdapterMetrics", "AdapterRow", "InstanceMetrics", "SourceMetrics", "SourceRow", "status_sections"]


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


# -- citybus status -------------------------------------------------------------------------------

# Fetch outcomes that mean the source answered (see ``citybus_source_fetches`` above); every other
# outcome is a failure worth showing.
_FETCH_OK = frozenset({"ok", "unchanged", "not-modified"})
_INSTANCE = ("adapter", "adapter_instance")


class AdapterRow(msgspec.Struct, frozen=True, kw_only=True):
    """One adapter instance (``[adapters.<instance>]``) in ``citybus status``."""

    adapter: str
    instance: str
    up: bool
    restarts: Count
    published: Count
    received: Count
    dead_letters: Count
    finished: bool = False
    """It finished its work (a replay that does not loop): not running, and not down either."""


class SourceRow(msgspec.Struct, frozen=True, kw_only=True):
    """One polled source of an adapter instance in ``citybus status``."""

    adapter: str
    instance: str
    source: str
    up: bool
    last_success_age_seconds: float | None
    """Seconds since the source last answered with a document that parsed; ``None``: never."""
    failed_fetches: Count


def status_sections(scrape: Scrape) -> list[Section]:
    """The ``citybus.status`` entry point: the adapter instances and their polled sources."""
    return [_adapters(scrape), _sources(scrape)]


def _adapters(scrape: Scrape) -> Section:
    up = scrape.gauges("citybus_adapter_up", _INSTANCE)
    finished = scrape.gauges("citybus_adapter_finished", _INSTANCE)
    restarts = scrape.counters("citybus_adapter_restarts_total", _INSTANCE)
    published = scrape.counters("citybus_adapter_messages_published_total", _INSTANCE)
    received = scrape.counters("citybus_adapter_messages_received_total", _INSTANCE)
    dead = scrape.counters("citybus_adapter_dead_letters_total", _INSTANCE)
    zero = scrape.zero
    rows = [
        AdapterRow(
            adapter=key[0],
            instance=key[1],
            up=up.get(key, 0.0) == 1.0,
            restarts=restarts.get(key, zero),
            published=published.get(key, zero),
            received=received.get(key, zero),
            dead_letters=dead.get(key, zero),
            finished=finished.get(key, 0.0) == 1.0,
        )
        for key in sorted(set(up) | set(restarts) | set(published) | set(received) | set(dead))
    ]
    return Section(
        key="adapters",
        title="adapters",
        columns=("ADAPTER", "INSTANCE", "UP", "RESTARTS", "PUBLISHED", "RECEIVED", "DEAD LETTERS"),
        cells=[
            (
                a.adapter,
                a.instance,
                "done" if a.finished else yes_no(a.up),
                count_text(a.restarts),
                count_text(a.published),
                count_text(a.received),
                count_text(a.dead_letters),
            )
            for a in rows
        ],
        rows=rows,
        empty="none",
    )


def _sources(scrape: Scrape) -> Section:
    keys = (*_INSTANCE, "source")
    source_up = scrape.gauges("citybus_source_up", keys)
    last_success = scrape.gauges("citybus_source_last_success_timestamp_seconds", keys)
    fetches = scrape.counters("citybus_source_fetches_total", (*keys, "outcome"))
    failed: dict[tuple[str, ...], Count] = {}
    for (*key, outcome), count in fetches.items():
        if outcome in _FETCH_OK:
            continue
        so_far = failed.get(tuple(key))
        failed[tuple(key)] = count if so_far is None else so_far + count
    zero = scrape.zero
    rows = [
        SourceRow(
            adapter=key[0],
            instance=key[1],
            source=key[2],
            up=source_up.get(key, 0.0) == 1.0,
            # A gauge still at 0 means the source never succeeded, not that it did in 1970.
            last_success_age_seconds=max(0.0, scrape.time - last_success[key])
            if last_success.get(key)
            else None,
            failed_fetches=failed.get(key, zero),
        )
        for key in sorted(set(source_up) | set(last_success))
    ]
    return Section(
        key="sources",
        title="sources",
        columns=("INSTANCE", "SOURCE", "UP", "LAST SUCCESS", "FAILED FETCHES"),
        cells=[
            (
                s.instance,
                s.source,
                yes_no(s.up),
                age_text(s.last_success_age_seconds),
                count_text(s.failed_fetches),
            )
            for s in rows
        ],
        rows=rows,
    )
