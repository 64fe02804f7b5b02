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

Metric names come from ``bus/metrics.py``, ``adapters/metrics.py`` and ``sandbox/replay.py``; they
are matched by name here rather than imported, because ``bus`` never imports ``adapters`` or
``sandbox``, and a family that is absent (no adapters, no replay) is simply not shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from bus.client import instance_file, read_instance
from bus.config import Config
from bus.errors import CityBusError

__all__ = [
    "AdapterRow",
    "Count",
    "InvalidRow",
    "ReplayRow",
    "Samples",
    "SourceRow",
    "Status",
    "collect",
    "fetch",
    "ops_url_for_client",
    "parse_metrics",
    "render",
    "show_status",
]

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]
"""Every sample of one scrape: (sample name, sorted labels) -> value."""

# Fetch outcomes that mean the source answered (see ``citybus_source_fetches`` in adapters/metrics.py);
# every other outcome is a failure worth showing.
_FETCH_OK = frozenset({"ok", "unchanged", "not-modified"})


class Count(msgspec.Struct, frozen=True, kw_only=True):
    """A counter: its total, and its rate over the interval (``None`` with ``--once``)."""

    total: float
    per_second: float | None = None


class AdapterRow(msgspec.Struct, frozen=True, kw_only=True):
    """One adapter instance (``[adapters.<instance>]``)."""

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
    """One polled source of an adapter instance."""

    adapter: str
    instance: str
    source: str
    up: bool
    last_success_age_seconds: float | None
    """Seconds since the source last answered with a document that parsed; ``None``: never."""
    failed_fetches: Count


class ReplayRow(msgspec.Struct, frozen=True, kw_only=True):
    """One sandbox replay."""

    instance: str
    speed: float
    progress_ratio: float
    position_seconds: float
    lag_seconds: float
    messages: Count


class InvalidRow(msgspec.Struct, frozen=True, kw_only=True):
    """Messages of one contract rejected for one reason."""

    contract: str
    reason: str
    count: Count


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``citybus status`` shows (and ``--json`` prints)."""

    ops_url: str
    ready: bool
    checks: dict[str, bool]
    nats_connected: bool
    nats_disconnects: Count
    nats_reconnects: Count
    nats_slow_consumers: Count
    interval_seconds: float | None
    """The time between the two scrapes that rates are computed over; ``None`` with ``--once``."""
    adapters: list[AdapterRow]
    sources: list[SourceRow]
    replays: list[ReplayRow]
    dead_letters: dict[str, Count]
    """Dead letters per reason, all contracts and adapters together."""
    invalid: list[InvalidRow]


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


class _Counters:
    """Turns counter sums of the latest scrape (and the one before, if any) into :class:`Count`."""

    def __init__(self, now: Samples, before: Samples | None, interval: float | None) -> None:
        self.now, self.before, self.interval = now, before, interval

    def by(self, name: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], Count]:
        """A counter family summed by ``keys``."""
        totals = _sum_by(self.now, name, keys)
        earlier = _sum_by(self.before, name, keys) if self.before is not None else None
        return {
            key: self._count(total, earlier.get(key, 0.0) if earlier is not None else None)
            for key, total in totals.items()
        }

    @property
    def zero(self) -> Count:
        """A counter no sample was exported for yet: nothing happened."""
        return Count(total=0.0, per_second=0.0 if self.before is not None and self.interval else None)

    def one(self, name: str) -> Count:
        """An unlabelled counter."""
        return self.by(name, ()).get((), self.zero)

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
) -> Status:
    """The status of an instance from its ``/readyz`` answer and one or two ``/metrics`` scrapes.

    ``before`` is the scrape ``interval`` seconds earlier (rates are shown only with it); ``now`` is
    the Unix time of the latest scrape, for the age of each source's last success.
    """
    counters = _Counters(metrics, before, interval if before is not None else None)
    gauges = metrics
    instance_keys = ("adapter", "adapter_instance")

    up = _sum_by(gauges, "citybus_adapter_up", instance_keys)
    finished = _sum_by(gauges, "citybus_adapter_finished", instance_keys)
    restarts = counters.by("citybus_adapter_restarts_total", instance_keys)
    published = counters.by("citybus_adapter_messages_published_total", instance_keys)
    received = counters.by("citybus_adapter_messages_received_total", instance_keys)
    dead = counters.by("citybus_adapter_dead_letters_total", instance_keys)
    zero = counters.zero
    adapters = [
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

    source_keys = (*instance_keys, "source")
    source_up = _sum_by(gauges, "citybus_source_up", source_keys)
    last_success = _sum_by(gauges, "citybus_source_last_success_timestamp_seconds", source_keys)
    fetches = counters.by("citybus_source_fetches_total", (*source_keys, "outcome"))
    failed: dict[tuple[str, ...], Count] = {}
    for (*key, outcome), count in fetches.items():
        if outcome in _FETCH_OK:
            continue
        so_far = failed.get(tuple(key))
        failed[tuple(key)] = count if so_far is None else _add(so_far, count)
    sources = [
        SourceRow(
            adapter=key[0],
            instance=key[1],
            source=key[2],
            up=source_up.get(key, 0.0) == 1.0,
            # A gauge still at 0 means the source never succeeded, not that it did in 1970.
            last_success_age_seconds=max(0.0, now - last_success[key]) if last_success.get(key) else None,
            failed_fetches=failed.get(key, zero),
        )
        for key in sorted(set(source_up) | set(last_success))
    ]

    replay_key = ("adapter_instance",)
    speeds = _sum_by(gauges, "citybus_replay_speed", replay_key)
    messages = counters.by("citybus_replay_messages_total", replay_key)
    progress = _sum_by(gauges, "citybus_replay_progress_ratio", replay_key)
    position = _sum_by(gauges, "citybus_replay_position_seconds", replay_key)
    lag = _sum_by(gauges, "citybus_replay_lag_seconds", replay_key)
    replays = [
        ReplayRow(
            instance=key[0],
            speed=speeds.get(key, 0.0),
            progress_ratio=progress.get(key, 0.0),
            position_seconds=position.get(key, 0.0),
            lag_seconds=lag.get(key, 0.0),
            messages=messages.get(key, zero),
        )
        for key in sorted(set(speeds) | set(messages))
    ]

    dead_letters = {
        key[0]: count for key, count in sorted(counters.by("citybus_dead_letters_total", ("reason",)).items())
    }
    invalid = [
        InvalidRow(contract=key[0], reason=key[1], count=count)
        for key, count in sorted(
            counters.by("citybus_messages_invalid_total", ("contract", "reason")).items()
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
        nats_disconnects=counters.one("citybus_nats_disconnects_total"),
        nats_reconnects=counters.one("citybus_nats_reconnects_total"),
        nats_slow_consumers=counters.one("citybus_nats_slow_consumers_total"),
        interval_seconds=interval if before is not None else None,
        adapters=adapters,
        sources=sources,
        replays=replays,
        dead_letters=dead_letters,
        invalid=invalid,
    )


def _add(a: Count, b: Count) -> Count:
    rate = None if a.per_second is None or b.per_second is None else a.per_second + b.per_second
    return Count(total=a.total + b.total, per_second=rate)


# -- rendering ------------------------------------------------------------------------------------


def _count(count: Count) -> str:
    total = f"{count.total:.0f}"
    return total if count.per_second is None else f"{total} ({count.per_second:.1f}/s)"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def render(status: Status) -> str:
    """The status as a terminal view (plain text; problems in capitals so they stand out)."""
    lines = [f"citybus at {status.ops_url}: {'ready' if status.ready else 'NOT READY'}"]
    if status.interval_seconds is not None:
        lines[0] += f"  (rates over {status.interval_seconds:g}s)"
    checks = ", ".join(f"{name} {'ok' if ok else 'FAILING'}" for name, ok in status.checks.items())
    lines.append(f"  checks: {checks or 'none reported'}")
    lines.append(
        f"  NATS: {'connected' if status.nats_connected else 'DISCONNECTED'}, "
        f"disconnects {_count(status.nats_disconnects)}, reconnects {_count(status.nats_reconnects)}, "
        f"slow consumers {_count(status.nats_slow_consumers)}"
    )
    lines.append("")
    if status.adapters:
        lines.append("adapters:")
        lines += _table(
            ("ADAPTER", "INSTANCE", "UP", "RESTARTS", "PUBLISHED", "RECEIVED", "DEAD LETTERS"),
            [
                (
                    a.adapter,
                    a.instance,
                    "done" if a.finished else _yes(a.up),
                    _count(a.restarts),
                    _count(a.published),
                    _count(a.received),
                    _count(a.dead_letters),
                )
                for a in status.adapters
            ],
        )
    else:
        lines.append("adapters: none")
    if status.sources:
        lines.append("sources:")
        lines += _table(
            ("INSTANCE", "SOURCE", "UP", "LAST SUCCESS", "FAILED FETCHES"),
            [
                (s.instance, s.source, _yes(s.up), _age(s.last_success_age_seconds), _count(s.failed_fetches))
                for s in status.sources
            ],
        )
    if status.replays:
        lines.append("replay:")
        lines += _table(
            ("INSTANCE", "SPEED", "PROGRESS", "POSITION", "LAG", "MESSAGES"),
            [
                (
                    r.instance,
                    "as fast as possible" if r.speed == 0 else f"{r.speed:g}x",
                    f"{r.progress_ratio * 100:.1f}%",
                    f"{r.position_seconds:.0f}s",
                    f"{r.lag_seconds * 1000:.1f}ms",
                    _count(r.messages),
                )
                for r in status.replays
            ],
        )
    if status.dead_letters:
        lines.append("dead letters:")
        lines += _table(
            ("REASON", "COUNT"), [(reason, _count(c)) for reason, c in status.dead_letters.items()]
        )
    else:
        lines.append("dead letters: none")
    if status.invalid:
        lines.append("invalid messages:")
        lines += _table(
            ("CONTRACT", "REASON", "COUNT"), [(i.contract, i.reason, _count(i.count)) for i in status.invalid]
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
    if not info.get("ops_url"):
        raise CityBusError(
            "the running `citybus up` has no ops endpoint ([ops] enabled = false): enable it, "
            "or say which instance to read with --ops URL"
        )
    return str(info["ops_url"]).rstrip("/")


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
    write(msgspec.json.encode(status).decode() if as_json else render(status))
    return 0
