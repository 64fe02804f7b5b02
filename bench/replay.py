"""The sandbox replay benchmark: throughput, schedule error at 1x, and peak memory on a large recording.

Run it from the repository root; it writes its report (machine, date, one table per case, the
targets of issue 7 and whether they were met) to ``docs/benchmarks.md``::

    python -m bench.replay                      # the full run, a few minutes on 2 cores
    python -m bench.replay --smoke              # seconds (report in the temp dir): what CI runs

The cases:

1. **Throughput, as fast as possible** (target >= 60 000 msg/s). A recording of 300 000 messages
   is replayed with ``speed=0`` into a publish function that does nothing (the replayer's own
   ceiling: reading, scheduling, new ids, the time shift of headers and bodies) and into a real
   nats-server with the streams provisioned, as ``citybus up`` runs it. Two diagnostics show
   where the ceilings come from: the reader alone (:func:`~sandbox.recording.read_messages`), and
   nats-py alone publishing the same messages with the same nine headers.
2. **Schedule error at 1x** (target p99 <= 2 ms). 25 s of traffic at about 500 msg/s (random
   gaps, seeded) with a burst of 50 messages at the same instant every 5 s (a GBFS or SIRI-ET
   document published at once) is replayed at ``speed=1``; the error of a message is ``sent - due``
   as the replayer itself reports it (``on_sent``, its monotonic clock). Each message over the
   target is given a cause (startup, garbage collection, the reader thread, queueing), and the
   event loop alone keeping the same schedule (``asyncio.sleep`` until each due time) gives the
   floor no replay on this loop can go under.
3. **Peak RSS on a large recording** (target < 150 MB). A recording of ``--size-mb`` MB (1024 by
   default) is replayed with ``speed=0`` in a child process, which reports its peak resident set
   (``VmHWM``) when done; the same child started without a recording gives the baseline (the
   interpreter and citybus's imports), so the figure is honest about what the replay itself adds.

Decisions, and why:

* **Real messages.** The templates are the beach observations, train calls, bike statuses and
  forecasts of the shipped Drammen day, decoded with their contracts; each generated message is a
  template with every timestamp moved to its own time and encoded by msgspec. So subjects,
  channels, body sizes and the time shift of every timestamp cost what they cost in a real replay.
* **The large recording is uncompressed** (MCAP chunks without compression, 1 MB each). Its size
  on disk is then the size of what is replayed; zstd packs these bodies more than ten to one, so
  a zstd file of 1 GB would take a quarter of an hour to replay at today's speed. Its bodies are
  ~1 kB (forecasts of the next four hours, with a train call after every three of them).
  Cases 1 and 2 use zstd, the recorder's default.
* **Bounded.** Every step of a case (writing a recording, a replay, a child process) stops with an
  error after :data:`CASE_LIMIT` seconds rather than hang CI, and the report says how long each
  case took.
* **Profiles where a target is missed** (and always in a smoke run, so CI checks that they work):
  cProfile of the replay's event loop thread and, separately, of the reader (which runs in a worker
  thread that the first profile cannot see); the top functions by own time go into the report.
  cProfile inflates the cost of small Python calls, so the shares are a guide, not a measurement.
* Nothing here asserts a number: a run that misses a target still writes its report and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import itertools
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import structlog

from bus import Bus, Metrics
from bus.envelope import H_ID, H_MSG_ID, H_PROVENANCE, H_SOURCE, build_headers
from bus.logs import configure_logging
from bus.server import EmbeddedServer, find_nats_server
from bus.subjects import contract_subject
from contracts import BeachObservation, BikeStationStatus, Contract, TrainCall, WeatherForecast
from sandbox.adapter import DRAMMEN_DAY
from sandbox.faults import Outgoing
from sandbox.recording import RecordingWriter, read_messages
from sandbox.replay import Publish, Replayer

__all__ = ["CASE_LIMIT", "main"]

ROOT: Final = Path(__file__).resolve().parent.parent
CASE_LIMIT: Final = 120.0
"""Seconds a case may take before the run fails (a bound against hangs, not a performance goal)."""

TARGET_RATE: Final = 60_000.0
TARGET_P99_MS: Final = 2.0
TARGET_RSS_MB: Final = 150.0
_MB: Final = 1_000_000  # the report's MB are 10^6 bytes, the stricter reading of "150 MB"
_T0: Final = datetime(2018, 8, 27, 22, 0, tzinfo=UTC)  # 2018-08-28 00:00 in Drammen, as the shipped day
_NS: Final = 1_000_000_000
_BURST: Final = 10  # messages due at the same instant from this many on are a burst


class BenchError(RuntimeError):
    """A benchmark that could not run to the end (a hang, a lost message, a failed child)."""


@dataclass(frozen=True)
class Sizes:
    """How big each case is: the full run, or a smoke run of a few seconds."""

    throughput_messages: int
    schedule_seconds: float
    schedule_rate: float
    burst_every: float
    burst_size: int
    large_mb: float
    profile_messages: int


FULL: Final = Sizes(300_000, 25.0, 500.0, 5.0, 50, 1024.0, 40_000)
SMOKE: Final = Sizes(3_000, 2.0, 500.0, 1.0, 50, 4.0, 1_000)


# -- messages --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A real message of the shipped day: its contract instance, subject and headers."""

    instance: Contract
    time: datetime
    """The message's own time: a generated message moves every timestamp by its distance to this."""
    subject: str
    headers: dict[str, str]
    """Its CloudEvents headers; a recording keeps type, source, provenance and content type of them."""
    move: Callable[[timedelta], Contract]

    @classmethod
    def of(cls, instance: Contract, moment: datetime, source: str, provenance: str) -> Template:
        """The template of ``instance``, which happened at ``moment``."""
        headers = build_headers(
            instance.__contract__, event_id="bench", source=source, time=moment, provenance=provenance
        )
        return cls(instance, moment, contract_subject(instance), headers, _mover(instance))

    def at(self, moment: datetime) -> Contract:
        """The template's message as if it happened at ``moment`` (every timestamp in it moved)."""
        return self.move(moment - self.time)


def _holds_time(value: Any) -> bool:
    if isinstance(value, datetime):
        return True
    if isinstance(value, msgspec.Struct):
        return any(_holds_time(getattr(value, name)) for name in value.__struct_fields__)
    return isinstance(value, list) and any(_holds_time(item) for item in value)


def _mover(value: Any) -> Callable[[timedelta], Any]:
    """A function moving every timestamp in ``value`` (nested Structs and lists too) by a delta,
    planned once: moving a template is the hot path of writing a 1 GB recording."""
    if isinstance(value, datetime):
        return lambda delta: value + delta
    if isinstance(value, list):
        items = [_mover(item) for item in value]
        return lambda delta: [move(delta) for move in items]
    if isinstance(value, msgspec.Struct):
        movers = {
            name: _mover(getattr(value, name))
            for name in value.__struct_fields__
            if _holds_time(getattr(value, name))
        }
        return lambda delta: msgspec.structs.replace(value, **{n: move(delta) for n, move in movers.items()})
    return lambda delta: value


_DECODERS: Final[dict[str, tuple[str, msgspec.json.Decoder[Any]]]] = {
    BeachObservation.__contract__.type: ("beach", msgspec.json.Decoder(BeachObservation)),
    TrainCall.__contract__.type: ("train", msgspec.json.Decoder(TrainCall)),
    BikeStationStatus.__contract__.type: ("bike", msgspec.json.Decoder(BikeStationStatus)),
    WeatherForecast.__contract__.type: ("forecast", msgspec.json.Decoder(WeatherForecast)),
}
_FORECAST_STEPS: Final = 4  # the next four hours: a ~1 kB body


def load_templates(path: Path = DRAMMEN_DAY) -> dict[str, list[Template]]:
    """The templates per kind (beach, train, bike, forecast), from the shipped recording."""
    templates: dict[str, list[Template]] = {kind: [] for kind, _ in _DECODERS.values()}
    for message in read_messages(path):
        found = _DECODERS.get(message.type)
        if found is None:
            continue
        kind, decoder = found
        instance = decoder.decode(message.data)
        source, provenance = message.headers.get(H_SOURCE, "/bench"), message.headers.get(H_PROVENANCE, "")
        if isinstance(instance, WeatherForecast):
            # a forecast of the next four hours from each hour of the day: ~1 kB, five timestamps
            for first in range(0, len(instance.steps) - _FORECAST_STEPS + 1, _FORECAST_STEPS):
                steps = instance.steps[first : first + _FORECAST_STEPS]
                short = msgspec.structs.replace(instance, steps=steps, updated_at=steps[0].time)
                templates[kind].append(Template.of(short, steps[0].time, source, provenance))
        else:
            templates[kind].append(Template.of(instance, message.time, source, provenance))
    empty = [kind for kind, found in templates.items() if not found]
    if empty:
        raise BenchError(f"{path} holds no {', '.join(empty)} messages to use as templates")
    return templates


@dataclass
class Written:
    """What :func:`write_recording` wrote."""

    path: Path
    messages: int = 0
    body_bytes: int = 0
    file_bytes: int = 0
    seconds: float = 0.0
    per_kind: Counter[str] = field(default_factory=Counter)

    @property
    def mean_body(self) -> float:
        """The mean body size in bytes."""
        return self.body_bytes / max(self.messages, 1)


Schedule = Iterable[tuple[int, str]]
"""(log time in ns since the epoch, template kind) of every message, in time order."""


def write_recording(
    path: Path,
    schedule: Schedule,
    templates: dict[str, list[Template]],
    *,
    compression: Literal["zstd", "lz4", "none"] = "zstd",
    stop_at_bytes: int | None = None,
) -> Written:
    """Write a recording of real-looking messages, one per schedule entry (or until the file is
    ``stop_at_bytes`` large)."""
    started = time.perf_counter()
    written = Written(path)
    cycles = {kind: itertools.cycle(found) for kind, found in templates.items()}
    encode = msgspec.json.Encoder().encode
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with RecordingWriter(path, compression=compression) as writer:
        for log_time, kind in schedule:
            template = next(cycles[kind])
            body = encode(template.at(epoch + timedelta(microseconds=log_time // 1000)))
            writer.add(template.subject, body, template.headers, log_time=log_time, publish_time=log_time)
            written.messages += 1
            written.body_bytes += len(body)
            written.per_kind[kind] += 1
            if stop_at_bytes is not None and written.messages % 512 == 0:
                if path.stat().st_size >= stop_at_bytes:
                    break
            if written.messages % 4096 == 0 and time.perf_counter() - started > CASE_LIMIT:
                raise BenchError(f"writing {path.name} took over {CASE_LIMIT:.0f} s")
    written.file_bytes = path.stat().st_size
    written.seconds = time.perf_counter() - started
    return written


def _log_time(seconds: float) -> int:
    """The log time ``seconds`` after the start of the day, in whole microseconds as a ``ce-time`` has."""
    return (int(_T0.timestamp()) * 1_000_000 + round(seconds * 1_000_000)) * 1000


def spread(count: int, seconds: float, kinds: Sequence[str]) -> Schedule:
    """``count`` messages evenly over ``seconds`` from the start of the day, kinds in turn."""
    return ((_log_time(i * seconds / count), kinds[i % len(kinds)]) for i in range(count))


def endless(rate: float, kinds: Sequence[str]) -> Schedule:
    """Messages at ``rate`` per second, kinds in turn, for as long as they are taken."""
    return ((_log_time(i / rate), kinds[i % len(kinds)]) for i in itertools.count())


def city_traffic(
    seconds: float, rate: float, burst_every: float, burst_size: int, seed: int = 2018
) -> list[tuple[int, str]]:
    """About ``rate`` messages a second with random gaps (a Poisson stream of beach, train and bike
    messages), and every ``burst_every`` seconds ``burst_size`` messages at the same instant, by
    turns bike statuses (a GBFS poll) and train calls (a SIRI-ET document)."""
    rng = random.Random(seed)
    messages: list[tuple[int, str]] = []
    moment, kinds = 0.0, itertools.cycle(("beach", "train", "bike"))
    while (moment := moment + rng.expovariate(rate)) < seconds:
        messages.append((_log_time(moment), next(kinds)))
    bursts = itertools.takewhile(lambda at: at < seconds, itertools.count(burst_every / 2, burst_every))
    for n, at in enumerate(bursts):
        messages += [(_log_time(at), "bike" if n % 2 == 0 else "train")] * burst_size
    messages.sort(key=lambda item: item[0])  # stable: a burst stays together
    return messages


# -- running a replay ------------------------------------------------------------------------------


async def discard(subject: str, data: bytes, headers: dict[str, str]) -> None:
    """A publish function that does nothing: what is measured is the replayer alone."""


@contextlib.asynccontextmanager
async def nats_bus(data_dir: Path) -> AsyncIterator[Bus]:
    """A bus on a nats-server of its own (JetStream, streams provisioned, as ``citybus up`` has it)."""
    server = EmbeddedServer(data_dir=data_dir)
    await server.start()
    try:
        bus = Bus(metrics=Metrics(), source="/bench")
        await bus.connect(server.url)
        try:
            await bus.provision_streams()
            yield bus
        finally:
            await bus.drain()
    finally:
        await server.stop()


READ_AHEAD: Final = 512  # the replay adapter's default


def replayer(
    path: Path,
    publish: Publish,
    *,
    speed: float,
    on_sent: Callable[[Outgoing, float, float], None] | None = None,
) -> Replayer:
    """A replayer of one recording, shifted to now (the default path), with the bench's quiet logger."""
    return Replayer(
        [path],
        publish,
        speed=speed,
        shift_to_now=True,
        read_ahead=READ_AHEAD,
        on_sent=on_sent,
        logger=structlog.get_logger(),
    )


async def timed_replay(path: Path, publish: Publish, expected: int, bus: Bus | None = None) -> float:
    """Seconds to replay ``path`` as fast as possible (until a bus has sent everything)."""
    replay = replayer(path, publish, speed=0)
    before = bus.nc.stats["out_msgs"] if bus is not None else 0
    started = time.perf_counter()
    async with asyncio.timeout(CASE_LIMIT):
        await replay.run()
        if bus is not None:
            await bus.nc.flush(timeout=30)
    elapsed = time.perf_counter() - started
    sent = bus.nc.stats["out_msgs"] - before if bus is not None else replay.published
    if replay.published != expected or sent != expected:
        raise BenchError(f"{path.name}: replayed {replay.published} and sent {sent} of {expected} messages")
    return elapsed


async def timed_nats_py(path: Path, bus: Bus, count: int) -> float:
    """Seconds for nats-py alone to publish ``count`` messages of the recording, each with the nine
    headers a replayed message has (built beforehand but for a fresh id): the nats path's ceiling."""
    prepared = []
    for message in itertools.islice(read_messages(path), 20_000):
        info = _INFO[message.type]
        source, provenance = message.headers[H_SOURCE], message.headers[H_PROVENANCE]
        headers = build_headers(info, event_id="", source=source, time=_T0, provenance=provenance)
        prepared.append((message.subject, message.data, headers))
    nc, before = bus.nc, bus.nc.stats["out_msgs"]
    started = time.perf_counter()
    async with asyncio.timeout(CASE_LIMIT):
        for n, (subject, data, headers) in zip(range(count), itertools.cycle(prepared), strict=False):
            event_id = f"{n:032x}"  # a fresh id, or JetStream would drop the repeats as duplicates
            await nc.publish(subject, data, headers={**headers, H_ID: event_id, H_MSG_ID: event_id})
        await nc.flush(timeout=30)
    elapsed = time.perf_counter() - started
    if nc.stats["out_msgs"] - before != count:
        raise BenchError(f"nats-py sent {nc.stats['out_msgs'] - before} of {count} messages")
    return elapsed


_INFO: Final = {c.__contract__.type: c.__contract__ for c in (BeachObservation, TrainCall, BikeStationStatus)}


@dataclass
class Lateness:
    """How late each message of a replay at 1x went out (ms), and why the late ones were late."""

    steady: list[float] = field(default_factory=list)
    bursts: list[float] = field(default_factory=list)
    causes: Counter[str] = field(default_factory=Counter)
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)
    """(generation, ms) of every garbage collection during the replay."""


def _cause(
    index: int,
    due: float,
    at: float,
    first: float,
    previous: float,
    collections: list[tuple[int, float, float]],
) -> str:
    """Why a message went out late (see the note the report prints under case 2)."""
    if due < first:
        return "due before the first message went out (the first batch was still being read)"
    if any(start < at and end > due for _, start, end in collections):
        return "a garbage collection ran"
    if index >= READ_AHEAD and index % READ_AHEAD < 32:
        return "the reader thread had just started on the next batch"
    if due < previous:
        return "queued behind the message before it (a burst, or messages closer than one send)"
    return "other"


async def schedule_errors(path: Path, publish: Publish, expected: int) -> Lateness:
    """Replay at 1x; how late each message went out, with a cause for each one over the target."""
    sent: list[tuple[float, float]] = []
    collections: list[tuple[int, float, float]] = []
    began: list[float] = []

    def collecting(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began.append(time.monotonic())
        else:
            collections.append((info["generation"], began.pop(), time.monotonic()))

    replay = replayer(path, publish, speed=1.0, on_sent=lambda _m, due, at: sent.append((due, at)))
    gc.callbacks.append(collecting)
    try:
        async with asyncio.timeout(CASE_LIMIT):
            await replay.run()
    finally:
        gc.callbacks.remove(collecting)
    if len(sent) != expected:
        raise BenchError(f"{path.name}: replayed {len(sent)} of {expected} messages")
    together = Counter(due for due, _ in sent)
    result = Lateness(
        gc_pauses=[(generation, (end - start) * 1000) for generation, start, end in collections]
    )
    first_sent, previous_sent = sent[0][1], float("-inf")
    for index, (due, at) in enumerate(sent):
        error = (at - due) * 1000
        (result.bursts if together[due] >= _BURST else result.steady).append(error)
        if error > TARGET_P99_MS:
            result.causes[_cause(index, due, at, first_sent, previous_sent, collections)] += 1
        previous_sent = at
    return result


# -- the cases -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a case's table."""

    cells: dict[str, str]
    met: bool | None = None


@dataclass
class Case:
    """One benchmark case: what was measured, its table, and notes."""

    title: str
    what: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: list[tuple[str, list[tuple[str, float, int]]]] = field(default_factory=list)
    seconds: float = 0.0
    """How long the case took, writing its recordings included."""

    @property
    def missed(self) -> bool:
        """Some row missed its target."""
        return any(row.met is False for row in self.rows)


def _log(text: str) -> None:
    sys.stderr.write(f"bench.replay: {text}\n")
    sys.stderr.flush()


def _kinds(written: Written) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(written.per_kind.items()))


async def throughput_case(
    sizes: Sizes, templates: dict[str, list[Template]], work: Path, smoke: bool
) -> Case:
    """Case 1: messages per second with ``speed=0``, into nothing and into a real nats-server."""
    case = Case(
        "1. Replay throughput, as fast as possible",
        "`speed=0`, `shift_to_now=True`; msg/s = messages / wall time from `run()` to its end "
        "(for nats-server, until `flush()` returned: the server has every message).",
    )
    path = work / "throughput.mcap"
    written = write_recording(
        path, spread(sizes.throughput_messages, 86_400, ("beach", "train", "bike")), templates
    )
    n = written.messages
    case.notes.append(
        f"Recording: {n} messages over 24 h ({_kinds(written)}), mean body {written.mean_body:.0f} B, "
        f"zstd, {written.file_bytes / _MB:.1f} MB, written in {written.seconds:.1f} s."
    )
    _log(f"case 1: {n} messages written; reading")
    started = time.perf_counter()
    read = sum(1 for _ in read_messages(path))
    reading = time.perf_counter() - started
    if read != n:
        raise BenchError(f"read {read} of {n} messages back")
    case.rows.append(_rate_row("the reader alone (`read_messages`, no replay)", n, reading, target=False))
    _log("case 1: replaying into a no-op publish")
    case.rows.append(
        _rate_row("a no-op publish (the replayer's ceiling)", n, await timed_replay(path, discard, n))
    )
    _log("case 1: replaying into nats-server")
    async with nats_bus(work / "nats-throughput") as bus:
        elapsed = await timed_replay(path, bus.publish_raw, n, bus)
        _log("case 1: nats-py alone into nats-server")
        alone = await timed_nats_py(path, bus, n)
    case.rows.append(_rate_row("nats-server (`Bus.publish_raw`, streams provisioned)", n, elapsed))
    case.rows.append(
        _rate_row(
            "nats-server, nats-py alone (no replay: `nc.publish` with 9 headers)", n, alone, target=False
        )
    )
    if case.missed or smoke:
        _log("case 1: profiling")
        await profile_throughput(case, templates, work, min(sizes.profile_messages, n))
    return case


def _rate_row(into: str, messages: int, seconds: float, *, target: bool = True) -> Row:
    rate = messages / seconds
    return Row(
        {
            "replayed into": into,
            "messages": f"{messages}",
            "seconds": f"{seconds:.2f}",
            "msg/s": f"{rate:,.0f}",
            "target": f">= {TARGET_RATE:,.0f}" if target else "(diagnostic)",
        },
        met=rate >= TARGET_RATE if target else None,
    )


async def schedule_case(sizes: Sizes, templates: dict[str, list[Template]], work: Path) -> Case:
    """Case 2: how late messages go out at 1x (p50/p99/max of sent - due)."""
    case = Case(
        "2. Schedule error at 1x",
        "`speed=1`; error = sent - due per message, from the replayer's `on_sent` (monotonic clock). "
        f"A burst is {sizes.burst_size} messages due at the same instant: the last of them cannot go out "
        "before the others, so bursts are shown apart as well as in the total.",
    )
    path = work / "schedule.mcap"
    schedule = city_traffic(sizes.schedule_seconds, sizes.schedule_rate, sizes.burst_every, sizes.burst_size)
    written = write_recording(path, schedule, templates)
    case.notes.append(
        f"Recording: {sizes.schedule_seconds:.0f} s, {written.messages} messages ({_kinds(written)}): "
        f"about {sizes.schedule_rate:.0f} msg/s with random (exponential) gaps, and a burst every "
        f"{sizes.burst_every:.0f} s; zstd."
    )
    _log(f"case 2: the event loop alone keeping the schedule of {written.messages} messages")
    floor = await timer_floor([log_time for log_time, _ in schedule])
    runs: list[tuple[str, Lateness]] = []
    _log(f"case 2: replaying {written.messages} messages at 1x into a no-op publish")
    runs.append(("a no-op publish", await schedule_errors(path, discard, written.messages)))
    _log("case 2: replaying at 1x into nats-server")
    async with nats_bus(work / "nats-schedule") as bus:
        runs.append(("nats-server", await schedule_errors(path, bus.publish_raw, written.messages)))
    for into, lateness in runs:
        for which, errors in (
            ("all", lateness.steady + lateness.bursts),
            ("steady only", lateness.steady),
            ("bursts only", lateness.bursts),
        ):
            case.rows.append(_error_row(into, which, errors))
    floor_row = _error_row(
        "the event loop alone (`asyncio.sleep` until each due time, no replay)", "all", floor
    )
    floor_row.cells["target"], floor_row.met = "(diagnostic)", None
    case.rows.append(floor_row)
    for into, lateness in runs:
        late = sum(lateness.causes.values())
        causes = "; ".join(f"{count}: {cause}" for cause, count in lateness.causes.most_common()) or "none"
        pauses = Counter(generation for generation, _ in lateness.gc_pauses)
        collected = ", ".join(f"{pauses[g]} of generation {g}" for g in sorted(pauses)) or "none"
        longest = max((ms for _, ms in lateness.gc_pauses), default=0.0)
        case.notes.append(
            f"Into {into}: {late} messages went out more than {TARGET_P99_MS:g} ms late. Why: {causes}. "
            f"Garbage collections during the replay: {collected}, the longest {longest:.1f} ms."
        )
    case.notes.append(
        "A late message's cause is the first of these that holds: it was due before the replay's first "
        "message went out; a garbage collection ran between its due and sent times; it is among the 32 "
        f"messages after the replayer handed the reading of its next batch ({READ_AHEAD} messages) to a "
        "worker thread; it was due before the message ahead of it had gone out."
    )
    return case


async def timer_floor(log_times: list[int]) -> list[float]:
    """How late (ms) the event loop alone wakes up for a schedule: ``asyncio.sleep`` until each due
    time and nothing else. The replay cannot keep its schedule better than this."""
    errors: list[float] = []
    start = time.monotonic()
    async with asyncio.timeout(CASE_LIMIT):
        for log_time in log_times:
            due = start + (log_time - log_times[0]) / _NS
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            errors.append((time.monotonic() - due) * 1000)
    return errors


def _error_row(into: str, which: str, errors: list[float]) -> Row:
    p50, p99 = statistics.median(errors), _percentile(errors, 99)
    target = which == "all"
    return Row(
        {
            "replayed into": into,
            "messages": f"{which}: {len(errors)}",
            "p50 ms": f"{p50:.3f}",
            "p99 ms": f"{p99:.3f}",
            "max ms": f"{max(errors):.3f}",
            "target": f"p99 <= {TARGET_P99_MS:g} ms" if target else "",
        },
        met=p99 <= TARGET_P99_MS if target else None,
    )


def _percentile(values: list[float], percent: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def memory_case(templates: dict[str, list[Template]], work: Path, size_mb: float) -> Case:
    """Case 3: the peak RSS of a process replaying a large recording, against a process that only imports."""
    case = Case(
        "3. Peak RSS replaying a large recording",
        "The replay (`speed=0`, no-op publish) runs in a child process that reports its peak RSS "
        "(`VmHWM` of `/proc/self/status`) when done; the baseline is the same child started without a "
        "recording (Python and citybus's imports only).",
    )
    path = work / "large.mcap"
    _log(f"case 3: writing a {size_mb:g} MB recording")
    kinds = ("forecast", "forecast", "forecast", "train")
    written = write_recording(
        path, endless(100.0, kinds), templates, compression="none", stop_at_bytes=int(size_mb * _MB)
    )
    case.notes.append(
        f"Recording: {written.file_bytes / _MB:,.0f} MB on disk, uncompressed, {written.messages} messages "
        f"({_kinds(written)}), mean body {written.mean_body:.0f} B, written in {written.seconds:.1f} s."
    )
    _log("case 3: baseline child")
    baseline, _ = run_child(None, work)
    _log(f"case 3: replaying {written.messages} messages in a child process")
    peak, result = run_child(path, work)
    if result.get("messages") != written.messages:
        raise BenchError(f"the child replayed {result.get('messages')} of {written.messages} messages")
    seconds = float(result["seconds"])
    case.rows.append(
        Row(
            {
                "process": "replaying the recording",
                "peak RSS MB": f"{peak / _MB:.1f}",
                "over baseline MB": f"{(peak - baseline) / _MB:.1f}",
                "replay": f"{seconds:.1f} s, {written.messages / seconds:,.0f} msg/s, "
                f"{written.file_bytes / _MB / seconds:.1f} MB/s",
                "target": f"< {TARGET_RSS_MB:g} MB",
            },
            met=peak < TARGET_RSS_MB * _MB,
        )
    )
    case.rows.append(
        Row(
            {
                "process": "baseline: imports only",
                "peak RSS MB": f"{baseline / _MB:.1f}",
                "over baseline MB": "",
                "replay": "",
                "target": "",
            }
        )
    )
    path.unlink()
    return case


def run_child(path: Path | None, work: Path) -> tuple[int, dict[str, Any]]:
    """Run ``python -m bench.replay --rss-child`` (replaying ``path``, or only importing) and return
    its peak RSS in bytes and what it reported."""
    result = work / "child.json"
    result.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "bench.replay",
        "--rss-child",
        str(path or ""),
        "--child-result",
        str(result),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CASE_LIMIT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the replay child ran over {CASE_LIMIT:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"the replay child failed ({done.returncode}):\n{done.stderr[-2000:]}")
    report = json.loads(result.read_text())
    return int(report["peak_rss"]), report


def peak_rss() -> int:
    """This process's peak resident set so far, in bytes (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the parent's peak into a child's across ``exec``, so a small
    child of a large parent would report the parent's figure.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError("/proc/self/status has no VmHWM: peak RSS is measured on Linux only")


def rss_child(path: str, result: Path) -> None:
    """The child of case 3: replay ``path`` as fast as possible into nothing (or, without a path,
    do nothing: the baseline), and write its peak RSS, how many messages it sent and in how long."""
    report: dict[str, Any] = {"messages": 0, "seconds": 0.0}
    if path:
        replay = replayer(Path(path), discard, speed=0)
        started = time.perf_counter()
        asyncio.run(replay.run())
        report = {"messages": replay.published, "seconds": time.perf_counter() - started}
    report["peak_rss"] = peak_rss()
    result.write_text(json.dumps(report))


# -- profiles --------------------------------------------------------------------------------------


async def profile_throughput(
    case: Case, templates: dict[str, list[Template]], work: Path, count: int
) -> None:
    """Profile the replay's event loop into nothing and into nats-server, and the reader alone, on a
    recording like case 1's but of ``count`` messages (cProfile slows everything down)."""
    short = work / "profile.mcap"
    write_recording(short, spread(count, 86_400, ("beach", "train", "bike")), templates)

    async def replay_into(publish: Publish) -> None:
        await replayer(short, publish, speed=0).run()

    profiler = cProfile.Profile()
    profiler.enable()
    await replay_into(discard)
    profiler.disable()
    case.profiles.append(
        (f"replay into a no-op publish, event loop thread ({count} messages)", _top(profiler))
    )
    async with nats_bus(work / "nats-profile") as bus:
        profiler = cProfile.Profile()
        profiler.enable()
        await replay_into(bus.publish_raw)
        await bus.nc.flush(timeout=30)
        profiler.disable()
    case.profiles.append((f"replay into nats-server, event loop thread ({count} messages)", _top(profiler)))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in read_messages(short):
        pass
    profiler.disable()
    case.profiles.append(
        (f"the reader alone (`read_messages`, the worker thread's work, {count} messages)", _top(profiler))
    )
    case.notes.append(
        "Reading the profiles: with `speed=0` the event loop never sleeps, so its time in "
        "`select.epoll.poll` is time spent waiting, for the reader thread's next batch or for the socket; "
        "the reader's own work (decompressing and parsing MCAP, putting messages in time order) shows "
        "only in the third profile, since it runs in a worker thread that shares the GIL with the loop."
    )


def _top(profiler: cProfile.Profile, count: int = 10) -> list[tuple[str, float, int]]:
    """(function, share of the profile's own time, calls) of the ``count`` functions with most own time."""
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(own for _cc, _nc, own, _cum, _callers in stats.values()) or 1.0
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return [(_where(*key), own / total, calls) for key, (_cc, calls, own, _cum, _callers) in ranked]


def _where(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function  # a built-in: "<method 'poll' of 'select.epoll' objects>"
    path = Path(filename)
    if path.is_relative_to(ROOT):
        return f"{path.relative_to(ROOT)}:{line} {function}"
    parts = path.parts
    # a library: its path inside site-packages, or the standard library module's name
    start = parts.index("site-packages") + 1 if "site-packages" in parts else len(parts) - 1
    return f"{'/'.join(parts[start:])}:{line} {function}"


# -- the report ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the benchmark ran on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    system = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    try:
        server = subprocess.run(
            [str(find_nats_server()), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except Exception as exc:  # the report says why rather than failing the run
        server = f"unknown ({exc})"
    libraries = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("nats-py", "msgspec", "mcap", "zstandard", "lz4")
    )
    return {
        "CPU": f"{cpu}, {os.cpu_count()} logical CPUs",
        "memory": memory,
        "OS": system,
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "nats-server": server,
        "libraries": libraries,
        "commit": _commit(),
    }


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def render(cases: list[Case], *, smoke: bool, started: datetime, seconds: float, size_mb: float) -> str:
    """The report, in Markdown."""
    lines = [
        "# Benchmarks: the sandbox replay",
        "",
        "Written by `python -m bench.replay` (see `bench/replay.py` for what each case does and why). "
        "Issue 7's targets; a missed target is reported, never asserted.",
        "",
    ]
    if smoke:
        lines += ["**Smoke run** (`--smoke`): tiny recordings, the figures mean nothing.", ""]
    lines += [
        "## How to run",
        "",
        "From the repository root, with citybus installed (`pip install -e '.[dev]'`):",
        "",
        "```",
        "python -m bench.replay                       # the full run: writes docs/benchmarks.md",
        "python -m bench.replay --size-mb 256         # a smaller large recording for case 3",
        "python -m bench.replay --smoke               # seconds; what CI runs (report in the temp dir)",
        "```",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| date | {started:%Y-%m-%d %H:%M} UTC |",
        *(f"| {key} | {value} |" for key, value in machine().items()),
        f"| run | {seconds:.0f} s in all{', smoke' if smoke else ''}; large recording {size_mb:g} MB |",
        "",
        "## Summary",
        "",
        "| case | target | result |",
        "|---|---|---|",
    ]
    for case in cases:
        for row in case.rows:
            if row.met is not None:
                figure = row.cells.get("msg/s") or row.cells.get("p99 ms") or row.cells.get("peak RSS MB", "")
                unit = "msg/s" if "msg/s" in row.cells else "ms p99" if "p99 ms" in row.cells else "MB"
                into = row.cells.get("replayed into") or row.cells.get("process", "")
                verdict = "met" if row.met else "**missed**"
                lines.append(
                    f"| {case.title[3:]}: {into} | {row.cells['target']} | {figure} {unit}: {verdict} |"
                )
    for case in cases:
        lines += ["", f"## {case.title}", "", case.what, ""]
        headers = [*case.rows[0].cells, "met"]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for row in case.rows:
            met = "" if row.met is None else "yes" if row.met else "**no**"
            lines.append("| " + " | ".join([*row.cells.values(), met]) + " |")
        lines += ["", *(f"- {note}" for note in case.notes), f"- The case took {case.seconds:.0f} s."]
        for title, top in case.profiles:
            lines += ["", f"Profile: {title}. Top functions by own time (cProfile):", ""]
            lines += ["| function | own time | calls |", "|---|---|---|"]
            lines += [f"| `{where}` | {share:.0%} | {calls} |" for where, share, calls in top]
    return "\n".join(lines) + "\n"


async def _timed(running: Awaitable[Case]) -> Case:
    started = time.perf_counter()
    case = await running
    case.seconds = time.perf_counter() - started
    return case


# -- the command -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.replay``: run every case and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny recordings: check that every case completes"
    )
    parser.add_argument(
        "--size-mb", type=float, default=None, help="size of case 3's recording (default 1024)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the report (default: docs/benchmarks.md; with --smoke, a file in the temp "
        "directory, so a smoke run never replaces the real figures)",
    )
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_logging("console", "warning")
    if args.rss_child is not None:
        rss_child(args.rss_child, args.child_result)
        return 0
    sizes = SMOKE if args.smoke else FULL
    size_mb = args.size_mb if args.size_mb is not None else sizes.large_mb
    if size_mb <= 0:
        parser.error(f"--size-mb must be more than 0, not {size_mb:g}")
    started, clock = datetime.now(UTC), time.perf_counter()
    templates = load_templates()
    with tempfile.TemporaryDirectory(prefix="citybus-bench-") as temp:
        work = Path(temp)

        async def timed_cases() -> list[Case]:
            return [
                await _timed(throughput_case(sizes, templates, work, args.smoke)),
                await _timed(schedule_case(sizes, templates, work)),
            ]

        cases = asyncio.run(timed_cases())
        started_case = time.perf_counter()
        cases.append(memory_case(templates, work, size_mb))
        cases[-1].seconds = time.perf_counter() - started_case
    report = render(
        cases, smoke=args.smoke, started=started, seconds=time.perf_counter() - clock, size_mb=size_mb
    )
    output: Path = args.output or (
        Path(tempfile.gettempdir()) / "citybus-benchmarks-smoke.md"
        if args.smoke
        else ROOT / "docs" / "benchmarks.md"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report, encoding="utf-8")
    _log(f"report written to {output} in {time.perf_counter() - clock:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
