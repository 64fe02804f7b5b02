"""Build the recorded Drammen day by running citybus's own source adapters over the day's inputs.

``python -m sandbox.drammen.build -o sandbox/data/drammen-2018-08-28.mcap`` makes the recording
that ships with citybus: Tuesday 2018-08-28 in Drammen, 00:00–24:00 Europe/Oslo. What is in it
is what the project's adapters publish when they read that day's data — nothing is built as a
contract message here, so the recording is exactly what a city running citybus would have seen.

The inputs:

=================  =========================================================  ==============
adapter            reads                                                      provenance
=================  =========================================================  ==============
entur-trains       the real GTFS feed and SIRI-ET snapshot of 2018-08-28      recorded
gbfs-bikes         the real racks (OpenStreetMap) as ``station_information``  recorded
                   generated ``station_status`` every 15 minutes              synthetic
vicotee-beach      generated VicPack uplinks, one unit per site, hourly       synthetic
frost-weather      generated Frost observations, Marienlyst and Gulskogen     synthetic
met-forecast       generated Locationforecast for Bragernes strand, 6-hourly  synthetic
nilu-air-quality   generated ``/aq/utd`` for the three stations, hourly       synthetic
beach-neighbours   what the others publish: each site's nearest stations      synthetic
(volunteers)       generated: opportunities, and sign-ups of generated people synthetic
=================  =========================================================  ==============

The generators are the sibling modules (:mod:`~sandbox.drammen.bikes`, :mod:`~sandbox.drammen.beach`,
:mod:`~sandbox.drammen.frost`, :mod:`~sandbox.drammen.forecast`, :mod:`~sandbox.drammen.air`),
all drawing on one generated weather (:mod:`~sandbox.drammen.weather`); each says how its values
come about. The volunteer platform's messages are the one exception to "what the adapters
publish": :mod:`~sandbox.drammen.volunteers` makes them from the contracts (the platform answers
requests; it has no input to replay), and the builder checks them like the rest.

**Two files.** The day's public data, the volunteer opportunities included, goes into
``drammen-2018-08-28.mcap``; its personal messages (the generated volunteers' sign-ups and
activity) into ``drammen-2018-08-28-volunteers.mcap`` beside it (:func:`personal_recording`).
Apart, because what replays the day by default (``citybus up``'s sandbox, ``citybus replay``, a
pilot's certification) may publish public and internal contracts only (:mod:`sandbox.access`): a
recording with personal messages is replayed by an instance configured for it, whose personal
rights an operator reviews. Both files' metadata say what personal data they hold (``personal_data``):
none, and all synthetic.

How a day runs in seconds — the design, and why:

* **The adapters run as they do in production**, each in an :class:`~adapters.testing.AdapterHarness`
  on one in-memory bus (:class:`bus.MemoryBus`), with their own pollers, parsers and mappings. The
  polled ones read files (``file = …`` in their source tables); the beach adapter gets its uplinks
  on the subject The Things Stack's MQTT topic arrives on, as from a real network server.
* **The builder owns the clock** (:class:`~sandbox.drammen.clock.DayClock`, passed as the
  adapters' ``clock``). Every input is stamped with the moment it appears; for each such moment
  in order, the builder writes the new versions of the files (their modification time set to that
  moment, so the pollers see them change), publishes the uplinks, and moves the clock there. The
  pollers due by then wake, read, publish and sleep again; only then does the builder go on. This
  drives the adapters' own polling loops rather than calling their handlers, so the recording
  tests what runs in production, and it needs no timing: each step waits for the adapters to be
  idle (each declares how many polling loops it runs, below), not for a delay to pass.
* **Recording** is a raw subscription to ``city.>`` on that bus: every message with its subject,
  body and CloudEvents headers, written with :class:`~sandbox.recording.RecordingWriter`
  (``log_time`` = ``publish_time`` = the message's ``ce-time``). Only what the day holds is kept:
  the timetable's calls after midnight (late trains and night trains of the 28th's service day)
  belong to the next day, and are counted in the report as left out.
* **A dead letter fails the build**, as does a message that does not validate against its
  contract: the inputs are ours, and a broken one must be fixed, not shipped.
* **Reproducible to the byte.** Every generator draws from its own seeded random generator, the
  weather is generated once, nothing reads the wall clock, and the messages are written sorted
  (by time, subject, type, provenance, body) whatever order the adapters published them in, with
  the writer's time-based flushing switched off (chunks close by size only). The same seed gives
  the same file (with the same versions of ``mcap`` and ``zstandard``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from adapters.air import NiluAirQuality
from adapters.base import Adapter
from adapters.bikes import GbfsBikes, station_information_from_osm
from adapters.neighbours import BeachNeighboursService
from adapters.testing import AdapterHarness
from adapters.trains import EnturTrains
from adapters.vicotee import VicoteeBeach
from adapters.weather import FrostWeather, MetForecast
from bus import MemoryBus, Metrics, RawMessage
from bus.envelope import H_PROVENANCE, H_TIME, H_TYPE
from bus.errors import CityBusError
from bus.logs import configure_logging
from bus.subjects import classification_filter, contract_filter, matches
from contracts import Classification, DeadLetter, default_registry
from sandbox.drammen import air, beach, bikes, forecast, frost, volunteers
from sandbox.drammen.clock import DayClock
from sandbox.drammen.day import DAY, END, START, FileVersion, UplinkMessage, rng
from sandbox.drammen.volunteers import GeneratedMessage
from sandbox.drammen.weather import DayWeather
from sandbox.recording import RecordingWriter, nanoseconds

__all__ = [
    "ATTRIBUTION",
    "BUILDER_VERSION",
    "BuildError",
    "BuildReport",
    "PERSONAL_DATA",
    "RECORDING",
    "SEED",
    "SOURCES",
    "build_day",
    "main",
    "personal_recording",
]

BUILDER_VERSION: Final = "3"
"""Raised whenever a change makes the builder write a different file from the same seed."""
SEED: Final = 20180828
"""The seed of the shipped recording."""
SOURCES: Final = Path(__file__).resolve().parents[1] / "data" / "sources"
"""The real source files shipped with citybus (``sandbox/data/sources``)."""
RECORDING: Final = SOURCES.parent / f"drammen-{DAY.isoformat()}.mcap"
"""The shipped recording."""
ATTRIBUTION: Final = (
    "Train timetable and real-time data: Entur (NLOD 2.0, https://data.norge.no/nlod/en/2.0). "
    "Bike racks: © OpenStreetMap contributors (ODbL 1.0, https://opendatacommons.org/licenses/odbl/). "
    "Weather and forecast documents follow MET Norway's formats (Frost, Locationforecast; MET Norway). "
    "Bike availability, beach sensor readings, weather observations and forecasts, and air quality "
    "are generated (provenance synthetic), anchored on published facts; they are not measurements. "
    "The volunteer opportunities, organisations and volunteers are generated too (provenance "
    "synthetic): no real person is in the recording."
)
PERSONAL_DATA: Final = (
    "all synthetic: every volunteer is generated (sandbox.people), with a made-up name, an address "
    "under example.invalid (RFC 2606) and a phone number in Ofcom's drama range; none is a real person"
)
"""What the personal recording's metadata says of the personal data it holds."""

_TRANSPORT: Final = SOURCES / "transport"
_GTFS: Final = _TRANSPORT / "entur_nsb_gtfs_2018.zip"
_SIRI: Final = _TRANSPORT / "siri_et_2018-08-28T0908_drammen.xml"
_RACKS: Final = SOURCES / "bikes" / "drammen_bike_stations_osm.json"
_EVERYTHING: Final = "city.>"
_DEAD_LETTERS: Final = contract_filter(DeadLetter, ">")
_PERSONAL: Final = classification_filter(Classification.PERSONAL)
_STEP_TIMEOUT: Final = 60.0


class BuildError(CityBusError, RuntimeError):
    """The day could not be built: an input the adapters refused, or an adapter that failed."""


@dataclass(frozen=True)
class BuildReport:
    """What a build wrote: messages per contract and provenance, and what was left out."""

    path: Path
    seed: int
    counts: Mapping[tuple[str, str], int]
    """Messages per (``ce-type``, provenance), sorted."""
    left_out: Mapping[str, int]
    """Messages per ``ce-type`` whose time is not on the day (the timetable's calls after midnight)."""
    size: int
    """The file's size in bytes."""
    personal_path: Path
    """The file of the day's personal messages (:func:`personal_recording`)."""
    personal_counts: Mapping[tuple[str, str], int]
    """Its messages per (``ce-type``, provenance), sorted."""

    @property
    def messages(self) -> int:
        """All messages written."""
        return sum(self.counts.values())

    def table(self, counts: Mapping[tuple[str, str], int] | None = None) -> str:
        """The counts as a Markdown table (the ones in ``sandbox/data/README.md``): the day's, or
        ``counts`` (``personal_counts``)."""
        counts = self.counts if counts is None else counts
        lines = ["| contract (ce-type) | provenance | messages |", "|---|---|---:|"]
        lines += [f"| {kind} | {provenance} | {count} |" for (kind, provenance), count in counts.items()]
        lines.append(f"| **all** | | **{sum(counts.values())}** |")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Source:
    adapter: type[Adapter[Any]]
    instance: str
    config: dict[str, Any]
    loops: int
    """Polling loops the adapter runs: how many must be parked on the clock for it to be idle."""


def _sources(inputs: Path) -> list[_Source]:
    def synthetic(name: str, interval: float) -> dict[str, Any]:
        return {"file": str(inputs / name), "provenance": "synthetic", "interval": interval}

    place = {"lat": 59.7409, "lon": 10.2138, "name": "Bragernes strand", "file": str(inputs / forecast.FILE)}
    return [
        # a service: no polling, it answers what the others publish; first, so that it is
        # subscribed before any source publishes its first documents
        _Source(BeachNeighboursService, "neighbours", {}, loops=0),
        # the timetable and real-time pollers; no midnight roll-over, the service date is set
        _Source(
            EnturTrains,
            "trains",
            {
                "service_date": DAY.isoformat(),
                "timetable": {"file": str(_GTFS)},
                "realtime": {"file": str(_SIRI)},
            },
            loops=2,
        ),
        # station_information's and station_status's loops
        _Source(
            GbfsBikes,
            "bikes",
            {
                "system": "drammen-bysykkel",
                "station_information": {"file": str(inputs / bikes.INFORMATION_FILE)},
                "station_status": {"file": str(inputs / bikes.STATUS_FILE), "provenance": "synthetic"},
                "status_interval": bikes.STEP.total_seconds(),
            },
            loops=2,
        ),
        # no polling: uplinks arrive on the bus
        _Source(
            VicoteeBeach, "beach", {"devices": beach.device_config(), "provenance": "synthetic"}, loops=0
        ),
        _Source(
            FrostWeather,
            "weather",
            {"source": synthetic(frost.FILE, 3600), "stations": frost.STATIONS},
            loops=1,
        ),
        _Source(
            MetForecast,
            "forecast",
            {
                "source": {"provenance": "synthetic", "interval": 6 * 3600},
                "places": {forecast.PLACE: place},
            },
            loops=1,
        ),
        _Source(
            NiluAirQuality,
            "air",
            {
                "source": synthetic(air.FILE, 3600),
                "components": list(air.COMPONENTS),
                "locations": air.LOCATIONS,
            },
            loops=1,
        ),
    ]


def _inputs(seed: int) -> tuple[list[FileVersion], list[UplinkMessage]]:
    racks = _RACKS.read_bytes()
    weather = DayWeather(rng(seed, "weather"))
    information = station_information_from_osm(racks, version="2.3", last_updated=START)
    files = [
        FileVersion(START, bikes.INFORMATION_FILE, information),
        *bikes.station_status_documents(racks, rng(seed, "bikes")),
        *frost.observation_documents(weather, rng(seed, "frost")),
        *forecast.forecast_documents(weather, rng(seed, "forecast")),
        *air.utd_documents(weather, rng(seed, "air")),
    ]
    return files, beach.uplinks(weather, rng(seed, "beach"))


def _write(folder: Path, version: FileVersion) -> None:
    path = folder / version.name
    path.write_bytes(version.body)
    stamp = nanoseconds(version.at)  # the poller notices a file by its size and modification time
    os.utime(path, ns=(stamp, stamp))


class _Capture:
    """Everything published on ``city.>``, dead letters apart."""

    def __init__(self) -> None:
        self.messages: list[RawMessage] = []
        self.dead_letters: list[RawMessage] = []

    async def __call__(self, raw: RawMessage) -> None:
        # only kept here, read later: a handler that raised would itself make a dead letter
        (self.dead_letters if matches(_DEAD_LETTERS, raw.subject) else self.messages).append(raw)


async def _idle(clock: DayClock, moment: datetime, loops: int, harnesses: Sequence[AdapterHarness]) -> None:
    """Move the clock to ``moment`` and wait until every polling loop has polled and parked again;
    an adapter that fails (or never parks) fails the build."""
    clock.advance_to(moment)
    deadline = asyncio.get_running_loop().time() + _STEP_TIMEOUT
    while True:
        try:
            await clock.wait_parked(loops, timeout=0.05)
        except TimeoutError:
            pass
        failed = [f"{h.adapter_class.name}: {h.error!r}" for h in harnesses if h.error is not None]
        if failed:
            raise BuildError(f"at {moment.isoformat()}, adapter {'; '.join(failed)}")
        if clock.parked >= loops:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise BuildError(
                f"the adapters did not go idle at {moment.isoformat()} within {_STEP_TIMEOUT} s "
                f"({clock.parked} of {loops} polling loops parked)"
            )


async def _run_day(inputs: Path, seed: int) -> _Capture:
    files, uplinks = _inputs(seed)
    moments = sorted({f.at for f in files} | {u.at for u in uplinks})
    for version in files:
        if version.at == START:
            _write(inputs, version)
    clock = DayClock(START)
    bus = MemoryBus(metrics=Metrics(), source="/sandbox/drammen")
    await bus.connect()
    capture = _Capture()
    try:
        await bus.subscribe_raw(_EVERYTHING, capture)
        sources = _sources(inputs)
        loops = sum(source.loops for source in sources)
        async with AsyncExitStack() as stack:
            harnesses = [
                await stack.enter_async_context(
                    AdapterHarness(
                        source.adapter, source.config, instance=source.instance, bus=bus, clock=clock
                    )
                )
                for source in sources
            ]
            await _idle(clock, START, loops, harnesses)  # the first polls, at 00:00
            await bus.flush()
            for moment in moments:
                if moment == START:
                    continue
                for version in files:
                    if version.at == moment:
                        _write(inputs, version)
                for uplink in uplinks:
                    if uplink.at == moment:
                        await bus.publish_raw(uplink.subject, uplink.body)
                await _idle(clock, moment, loops, harnesses)
                await bus.flush()
    finally:
        await bus.drain()
    return capture


def _check(capture: _Capture, generated: Sequence[GeneratedMessage]) -> None:
    if capture.dead_letters:
        shown = []
        for raw in capture.dead_letters[:5]:
            try:
                letter = msgspec.json.decode(raw.data, type=DeadLetter)
            except msgspec.DecodeError:
                shown.append(f"{raw.subject}: {raw.data[:200]!r}")
                continue
            shown.append(f"{letter.reason} on {letter.original_subject}: {letter.detail}")
        count = len(capture.dead_letters)
        raise BuildError(f"{count} dead letter(s): the inputs must be fixed. {'; '.join(shown)}")
    registry = default_registry()
    everything = [(raw.subject, raw.data, raw.headers or {}) for raw in capture.messages]
    everything += [(m.subject, m.body, m.headers) for m in generated]
    for subject, data, headers in everything:
        kind = headers.get(H_TYPE, "")
        contract = registry.by_type(kind)
        if contract is None:
            raise BuildError(f"{subject}: a message of unknown type {kind!r}")
        try:
            msgspec.json.decode(data, type=contract)
        except msgspec.ValidationError as exc:
            raise BuildError(f"{subject}: does not validate against {kind}: {exc}") from None


_Row = tuple[int, str, str, str, bytes, Mapping[str, str]]
"""A message to write: (time in ns, subject, ce-type, provenance, body, headers)."""


def _rows(capture: _Capture, generated: Sequence[GeneratedMessage]) -> tuple[list[_Row], Counter[str]]:
    """What the day keeps, sorted (so the file is the same whatever order things were published
    in), and what was left out by type: the messages whose time is not on the day."""
    start, end = nanoseconds(START), nanoseconds(END)
    kept: list[_Row] = []
    left_out: Counter[str] = Counter()
    everything = [(raw.subject, raw.data, raw.headers or {}) for raw in capture.messages]
    everything += [(m.subject, m.body, m.headers) for m in generated]
    for subject, data, headers in everything:
        moment = nanoseconds(datetime.fromisoformat(headers[H_TIME]))
        if start <= moment < end:
            kept.append((moment, subject, headers[H_TYPE], headers[H_PROVENANCE], data, headers))
        else:
            left_out[headers[H_TYPE]] += 1
    kept.sort(key=lambda m: m[:5])
    return kept, left_out


def _write_file(output: Path, rows: Sequence[_Row], metadata: Mapping[str, str]) -> Counter[tuple[str, str]]:
    partial = output.with_name(output.name + ".partial")
    counts: Counter[tuple[str, str]] = Counter()
    with RecordingWriter(partial, metadata=metadata, flush_interval=float("inf")) as writer:
        for moment, subject, kind, provenance, data, headers in rows:
            writer.add(subject, data, headers, log_time=moment, publish_time=moment)
            counts[(kind, provenance)] += 1
    partial.replace(output)
    return counts


def personal_recording(output: Path) -> Path:
    """Where the day's personal messages go beside ``output``: ``<name>-volunteers.mcap``."""
    return output.with_name(f"{output.stem}-volunteers{output.suffix}")


def _write_recording(
    output: Path, capture: _Capture, generated: Sequence[GeneratedMessage], seed: int
) -> BuildReport:
    kept, left_out = _rows(capture, generated)
    personal = personal_recording(output)
    metadata = {
        "title": f"Drammen, {DAY:%A} {DAY.isoformat()}, 00:00-24:00 Europe/Oslo",
        "window_start": START.isoformat(),  # a replay loops whole days: 24 h, not first to last message
        "window_end": END.isoformat(),
        "builder": f"sandbox.drammen.build {BUILDER_VERSION}",
        "seed": str(seed),
        "attribution": ATTRIBUTION,
        "recorded": "stop places and train calls (Entur), bike racks (OpenStreetMap)",
        "synthetic": "bike availability, beach observations, weather observations and forecasts, air "
        "quality, the beaches' nearest stations, the volunteer opportunities",
        "personal_data": "none; the day's volunteers (all synthetic) are in the recording beside it "
        "named like it with -volunteers",
    }
    public = [row for row in kept if not matches(_PERSONAL, row[1])]
    counts = _write_file(output, public, metadata)
    personal_metadata = {
        "title": f"Drammen, {DAY:%A} {DAY.isoformat()}: the volunteer platform's personal messages",
        "window_start": START.isoformat(),
        "window_end": END.isoformat(),
        "builder": metadata["builder"],
        "seed": metadata["seed"],
        "attribution": "Generated by citybus's builder of the Drammen day (provenance synthetic); "
        "it holds no third party's data and no real person.",
        "synthetic": "every message: the generated volunteers' sign-ups and activity",
        "personal_data": PERSONAL_DATA,
        "companion": "the rest of the day: the recording beside it named like it without -volunteers",
    }
    personal_counts = _write_file(
        personal, [row for row in kept if matches(_PERSONAL, row[1])], personal_metadata
    )
    return BuildReport(
        path=output,
        seed=seed,
        counts=dict(sorted(counts.items())),
        left_out=dict(sorted(left_out.items())),
        size=output.stat().st_size,
        personal_path=personal,
        personal_counts=dict(sorted(personal_counts.items())),
    )


def build_day(output: Path, *, seed: int = SEED) -> BuildReport:
    """Build the recorded day into ``output`` (an MCAP file) and its volunteers' personal messages
    beside it (:func:`personal_recording`); raises :class:`BuildError`.

    Runs its own event loop: call it from synchronous code.
    """
    with tempfile.TemporaryDirectory(prefix="citybus-drammen-day-") as folder:
        capture = asyncio.run(_run_day(Path(folder), seed))
    generated = volunteers.volunteer_messages(rng(seed, "volunteers"))
    _check(capture, generated)
    return _write_recording(Path(output), capture, generated, seed)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sandbox.drammen.build -o FILE [--seed N]``: build the day, print what it holds."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.drammen.build",
        description="Build the recorded Drammen day (2018-08-28) by running citybus's source adapters.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the MCAP file to write")
    parser.add_argument("--seed", type=int, default=SEED, help=f"the generators' seed (default {SEED})")
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    try:
        report = build_day(args.output, seed=args.seed)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - a command's output
        return 1
    print(f"{report.path}: {report.messages} messages, {report.size} bytes, seed {report.seed}")  # noqa: T201
    print(report.table())  # noqa: T201
    personal = sum(report.personal_counts.values())
    print(f"{report.personal_path}: {personal} personal messages, all synthetic")  # noqa: T201
    print(report.table(report.personal_counts))  # noqa: T201
    for kind, count in report.left_out.items():
        print(f"left out, not on {DAY.isoformat()}: {count} {kind}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
