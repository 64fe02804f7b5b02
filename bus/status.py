"""``citybus status``: a terminal view of a running citybus, read from its ops endpoint.

The view is built from what any operator's tool sees — ``/readyz`` and the Prometheus text of
``/metrics`` — not from a private API, so it shows exactly what Prometheus would scrape and works
against any instance whose ops port is reachable (``--ops URL``). By default it reads the running
``citybus up`` of this configuration, found through ``instance.json`` like ``tail`` and ``publish``
find its NATS server.

Counters only mean something as rates, so the command scrapes ``/metrics`` twice ``--interval``
seconds apart and shows each counter's total with its per-second rate; ``--once`` scrapes once and
shows totals. Collection (:func:`collect`) and rendering (:func:`render`) are pure functions of
the scraped text, so they are tested without a server; only :func:`fetch` talks HTTP.

Decisions, and why:

* **Each package shows its own metrics.** This module reads the bus's own families (NATS, dead
  letters, invalid messages) and renders generic :class:`Section` tables; the rows of adapters,
  sources and replays come from the packages that export those metrics, through the entry-point
  group ``citybus.status`` (``(Scrape) -> list[Section]``, called in entry-point name order). So
  ``bus`` knows no upper layer's metric names, and a package that adds a metric adds its row
  where the metric is defined. A package that is not installed (or exports nothing yet) simply
  shows nothing.
* **``--json`` keeps one key per section** (``adapters``, ``sources``, ``replays``) beside the
  bus's own fields, so scripts read ``status["adapters"]`` whichever package contributes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from bus.access.login import instance_file, read_instance
from bus.config import Config
from bus.errors import CityBusError

__all__ = [
    "STATUS_GROUP",
    "Count",
    "InvalidRow",
    "Samples",
    "Scrape",
    "Section",
    "SectionsProvider",
    "Status",
    "age_text",
    "collect",
    "count_text",
    "discover_sections",
    "fetch",
    "ops_url_for_client",
    "parse_metrics",
    "render",
    "show_status",
    "yes_no",
]

STATUS_GROUP = "citybus.status"
"""Entry points ``(Scrape) -> list[Section]``: the rows a package adds to ``citybus status``."""

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]
"""Every sample of one scrape: (sample name, sorted labels) -> value."""


class Count(msgspec.Struct, frozen=True, kw_only=True):
    """A counter: its total, and its rate over the interval (``None`` with ``--once``)."""

    total: float
    per_second: float | None = None

    def __add__(self, other: Count) -> Count:
        rate = (
            None
            if self.per_second is None or other.per_second is None
            else self.per_second + other.per_second
        )
        return Count(total=self.total + other.total, per_second=rate)


class Section(msgspec.Struct, frozen=True, kw_only=True):
    """A table a package adds to the view: its title, its columns, one line of cells per row, and the
    rows as data for ``--json`` (under ``key``)."""

    key: str
    """The JSON key of the rows (``adapters``)."""
    title: str
    """The heading (``adapters``), followed by ``:``."""
    columns: tuple[str, ...]
    cells: list[tuple[str, ...]]
    """The rendered rows, one tuple of cells per row, as many cells as ``columns``."""
    rows: Sequence[Any]
    """The same rows as data (msgspec Structs or plain values) for ``--json``."""
    empty: str | None = None
    """What to say when there are no rows (``none``); ``None`` leaves the section out then."""


class InvalidRow(msgspec.Struct, frozen=True, kw_only=True):
    """Messages of one contract rejected for one reason."""

    contract: str
    reason: str
    count: Count


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``citybus status`` shows (``--json`` prints :meth:`document`)."""

    ops_url: str
    ready: bool
    checks: dict[str, bool]
    nats_connected: bool
    nats_disconnects: Count
    nats_reconnects: Count
    nats_slow_consumers: Count
    interval_seconds: float | None
    """The time between the two scrapes that rates are computed over; ``None`` with ``--once``."""
    sections: list[Section]
    """What the installed packages contribute (adapters, sources, replays), in their order."""
    dead_letters: dict[str, Count]
    """Dead letters per reason, all contracts and adapters together."""
    invalid: list[InvalidRow]

    def section(self, key: str) -> Section | None:
        """The contributed section with this JSON key, if any."""
        return next((s for s in self.sections if s.key == key), None)

    def document(self) -> dict[str, Any]:
        """What ``--json`` prints: the bus's own fields, and each section's rows under its key."""
        own = {f: getattr(self, f) for f in self.__struct_fields__ if f != "sections"}
        for section in self.sections:
            own.setdefault(section.key, section.rows)
        document: dict[str, Any] = msgspec.to_builtins(own)
        return document


SectionsProvider = Callable[["Scrape"], list[Section]]


def discover_sections() -> list[SectionsProvider]:
    """The ``citybus.status`` entry points of the installed packages, in name order."""
    return [ep.load() for ep in sorted(entry_points(group=STATUS_GROUP), key=lambda e: e.name)]


# -- collection -----------------------------------------------------------------------------------


def parse_metrics(text: str) -> Samples:
    """The samples of a Prometheus text exposition; raises :class:`CityBusError` if it is not one."""
    try:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
    except (ValueError, TypeError, IndexError) as exc:
        raise CityBusError(f"the ops endpoint's /metrics is not Prometheus text: {exc}") from None


def _series(samples: Samples, name: str) -> Iterable[tuple[dict[str, str], float]]:
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            yield dict(labels), value


def _sum_by(samples: Samples, name: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """A family's values summed over every label but ``keys``."""
    sums: dict[tuple[str, ...], float] = {}
    for labels, value in _series(samples, name):
        key = tuple(labels.get(k, "") for k in keys)
        sums[key] = sums.get(key, 0.0) + value
    return sums


class Scrape:
    """The latest scrape (and the one before, if any) as contributors read it: gauges as values,
    counters as :class:`Count` (total and rate)."""

    def __init__(self, now: Samples, before: Samples | None, interval: float | None, time: float) -> None:
        self.samples, self.before, self.interval = now, before, interval
        self.time = time
        """The Unix time of the latest scrape (for ages: "last success 90s ago")."""

    def gauges(self, name: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """A gauge family of the latest scrape, summed by the labels ``keys``."""
        return _sum_by(self.samples, name, keys)

    def counters(self, name: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], Count]:
        """A counter family (its sample name, ``…_total``) summed by the labels ``keys``."""
        totals = _sum_by(self.samples, name, keys)
        earlier = _sum_by(self.before, name, keys) if self.before is not None else None
        return {
            key: self._count(total, earlier.get(key, 0.0) if earlier is not None else None)
            for key, total in totals.items()
        }

    @property
    def zero(self) -> Count:
        """A counter no sample was exported for yet: nothing happened."""
        return Count(total=0.0, per_second=0.0 if self.before is not None and self.interval else None)

    def counter(self, name: str) -> Count:
        """An unlabelled counter."""
        return self.counters(name, ()).get((), self.zero)

    def _count(self, total: float, earlier: float | None) -> Count:
        if earlier is None or not self.interval:
            return Count(total=total)
        # A counter that went down was reset (the instance restarted between the scrapes): all of
        # its current value is new.
        delta = total - earlier if total >= earlier else total
        return Count(total=total, per_second=delta / self.interval)


def collect(
    *,
    ops_url: str,
    readiness: dict[str, Any],
    metrics: Samples,
    before: Samples | None = None,
    interval: float | None = None,
    now: float,
    providers: Sequence[SectionsProvider] | None = None,
) -> Status:
    """The status of an instance from its ``/readyz`` answer and one or two ``/metrics`` scrapes.

    ``before`` is the scrape ``interval`` seconds earlier (rates are shown only with it); ``now`` is
    the Unix time of the latest scrape, for the ages contributors show. ``providers`` default to
    the installed ``citybus.status`` entry points.
    """
    scrape = Scrape(metrics, before, interval if before is not None else None, now)
    sections = [
        section
        for provider in (discover_sections() if providers is None else providers)
        for section in provider(scrape)
    ]
    dead_letters = {
        key[0]: count
        for key, count in sorted(scrape.counters("citybus_dead_letters_total", ("reason",)).items())
    }
    invalid = [
        InvalidRow(contract=key[0], reason=key[1], count=count)
        for key, count in sorted(
            scrape.counters("citybus_messages_invalid_total", ("contract", "reason")).items()
        )
    ]
    checks = readiness.get("checks")
    checks = {str(k): bool(v) for k, v in checks.items()} if isinstance(checks, dict) else {}
    connected = metrics.get(("citybus_nats_connected", ()), 0.0) == 1.0
    return Status(
        ops_url=ops_url,
        # /readyz and /metrics are read one after the other: should they disagree, the worse holds.
        ready=readiness.get("status") == "ready" and connected,
        checks=checks,
        nats_connected=connected,
        nats_disconnects=scrape.counter("citybus_nats_disconnects_total"),
        nats_reconnects=scrape.counter("citybus_nats_reconnects_total"),
        nats_slow_consumers=scrape.counter("citybus_nats_slow_consumers_total"),
        interval_seconds=interval if before is not None else None,
        sections=sections,
        dead_letters=dead_letters,
        invalid=invalid,
    )


# -- rendering ------------------------------------------------------------------------------------


def count_text(count: Count) -> str:
    """A counter as a cell: its total, and its rate when there is one (``52 (5.0/s)``)."""
    total = f"{count.total:.0f}"
    return total if count.per_second is None else f"{total} ({count.per_second:.1f}/s)"


def age_text(seconds: float | None) -> str:
    """An age as a cell (``90s ago``, ``never``)."""
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def yes_no(flag: bool) -> str:
    """A flag as a cell; a problem in capitals so it stands out."""
    return "yes" if flag else "NO"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def render(status: Status) -> str:
    """The status as a terminal view (plain text; problems in capitals so they stand out)."""
    lines = [f"citybus at {status.ops_url}: {'ready' if status.ready else 'NOT READY'}"]
    if status.interval_seconds is not None:
        lines[0] += f"  (rates over {status.interval_seconds:g}s)"
    checks = ", ".join(f"{name} {'ok' if ok else 'FAILING'}" for name, ok in status.checks.items())
    lines.append(f"  checks: {checks or 'none reported'}")
    lines.append(
        f"  NATS: {'connected' if status.nats_connected else 'DISCONNECTED'}, "
        f"disconnects {count_text(status.nats_disconnects)}, "
        f"reconnects {count_text(status.nats_reconnects)}, "
        f"slow consumers {count_text(status.nats_slow_consumers)}"
    )
    lines.append("")
    for section in status.sections:
        if section.cells:
            lines.append(f"{section.title}:")
            lines += _table(section.columns, section.cells)
        elif section.empty is not None:
            lines.append(f"{section.title}: {section.empty}")
    if status.dead_letters:
        lines.append("dead letters:")
        lines += _table(
            ("REASON", "COUNT"), [(reason, count_text(c)) for reason, c in status.dead_letters.items()]
        )
    else:
        lines.append("dead letters: none")
    if status.invalid:
        lines.append("invalid messages:")
        lines += _table(
            ("CONTRACT", "REASON", "COUNT"),
            [(i.contract, i.reason, count_text(i.count)) for i in status.invalid],
        )
    else:
        lines.append("invalid messages: none")
    return "\n".join(lines)


# -- fetching -------------------------------------------------------------------------------------


def ops_url_for_client(config: Config, override: str | None = None) -> str:
    """The ops endpoint to read: ``--ops``, else the running ``citybus up`` of this configuration."""
    if override:
        if not override.startswith(("http://", "https://")):
            raise CityBusError(
                f"--ops {override}: give the ops endpoint as a URL, e.g. http://127.0.0.1:9464"
            )
        return override.rstrip("/")
    info = read_instance(config)
    if info is None:
        raise CityBusError(
            f"no running `citybus up` found (looked for {instance_file(config)}): start `citybus up`, "
            "or say which instance to read with --ops URL"
        )
    if not info.ops_url:
        raise CityBusError(
            "the running `citybus up` has no ops endpoint ([ops] enabled = false): enable it, "
            "or say which instance to read with --ops URL"
        )
    return info.ops_url.rstrip("/")


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def fetch(ops_url: str, *, interval: float | None, timeout: float = 10.0) -> Status:
    """Read ``/readyz`` and ``/metrics`` (twice, ``interval`` seconds apart, unless ``None``)."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            before = None
            if interval is not None:
                before = parse_metrics(await _metrics(session, ops_url))
                await asyncio.sleep(interval)
            text = await _metrics(session, ops_url)
            now = time.time()
            code, body = await _get(session, f"{ops_url}/readyz")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CityBusError(
            f"cannot read the ops endpoint at {ops_url}: {exc or type(exc).__name__}"
        ) from None
    try:
        readiness = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise CityBusError(f"{ops_url}/readyz answered {code} with something that is not JSON") from None
    if not isinstance(readiness, dict):
        raise CityBusError(f"{ops_url}/readyz answered {code} with something that is not a readiness report")
    return collect(
        ops_url=ops_url,
        readiness=readiness,
        metrics=parse_metrics(text),
        before=before,
        interval=interval,
        now=now,
    )


async def _metrics(session: aiohttp.ClientSession, ops_url: str) -> str:
    code, text = await _get(session, f"{ops_url}/metrics")
    if code != 200:
        raise CityBusError(f"{ops_url}/metrics answered {code}; is this a citybus ops endpoint?")
    return text


def show_status(
    config: Config,
    *,
    ops: str | None,
    interval: float,
    once: bool,
    as_json: bool,
    write: Callable[[str], None],
) -> int:
    """Run ``citybus status``: find the instance, read it, write the view; returns the exit status."""
    if not once and not interval > 0:
        raise CityBusError(
            f"--interval {interval:g}: the time between the two scrapes must be more than 0 seconds"
        )
    url = ops_url_for_client(config, ops)
    status = asyncio.run(fetch(url, interval=None if once else interval))
    write(msgspec.json.encode(status.document()).decode() if as_json else render(status))
    return 0
