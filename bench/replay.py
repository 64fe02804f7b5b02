"""The sandbox replay benchmarks: throughput as fast as possible and schedule error at 1x.

(The third replay figure, peak RSS on a large recording, is :mod:`bench.memory`.)

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

Decisions, and why:

* **Real messages** (:mod:`bench.recordings`), zstd-compressed as the recorder writes them.
* **Profiles where a target is missed** (and always in a smoke run, so CI checks that they work):
  cProfile of the replay's event loop thread and, separately, of the reader (which runs in a worker
  thread that the first profile cannot see); the top functions by own time go into the report.
  cProfile inflates the cost of small Python calls, so the shares are a guide, not a measurement.

``python -m bench.replay`` still runs these three replay cases alone (``python -m bench --only
replay-throughput,replay-schedule,replay-memory``).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import itertools
import pstats
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog

from bench.common import CASE_LIMIT, BenchError, Options, Spec, log, nats_bus
from bench.recordings import T0, city_traffic, kinds, load_templates, spread, write_recording
from bench.report import Case, Figure, Row, Target
from bench.stats import percentile, top_functions
from bus import Bus
from bus.envelope import H_ID, H_MSG_ID, H_PROVENANCE, H_SOURCE, build_headers
from contracts import BeachObservation, BikeStationStatus, TrainCall
from sandbox.faults import Outgoing
from sandbox.recording import read_messages
from sandbox.replay import Publish, Replayer

__all__ = ["CASES", "READ_AHEAD", "discard", "main", "replayer"]

TARGET_RATE: Final = 60_000.0
TARGET_P99_MS: Final = 2.0
READ_AHEAD: Final = 512  # the replay adapter's default
_NS: Final = 1_000_000_000
_BURST: Final = 10  # messages due at the same instant from this many on are a burst
_MB: Final = 1_000_000


@dataclass(frozen=True)
class Sizes:
    """How big each case is: the full run, or a smoke run of a few seconds."""

    throughput_messages: int
    schedule_seconds: float
    schedule_rate: float
    burst_every: float
    burst_size: int
    profile_messages: int
    rounds: int
    """Replays of each throughput measurement: the median counts (the machine is shared)."""


FULL: Final = Sizes(300_000, 25.0, 500.0, 5.0, 50, 40_000, 3)
SMOKE: Final = Sizes(3_000, 2.0, 500.0, 1.0, 50, 1_000, 1)


# -- running a replay ------------------------------------------------------------------------------


async def discard(subject: str, data: bytes, headers: dict[str, str]) -> None:
    """A publish function that does nothing: what is measured is the replayer alone."""


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


_INFO: Final = {c.__contract__.type: c.__contract__ for c in (BeachObservation, TrainCall, BikeStationStatus)}


async def timed_nats_py(path: Path, bus: Bus, count: int) -> float:
    """Seconds for nats-py alone to publish ``count`` messages of the recording, each with the nine
    headers a replayed message has (built beforehand but for a fresh id): the nats path's ceiling."""
    prepared = []
    for message in itertools.islice(read_messages(path), 20_000):
        info = _INFO[message.type]
        source, provenance = message.headers[H_SOURCE], message.headers[H_PROVENANCE]
        headers = build_headers(info, event_id="", source=source, time=T0, provenance=provenance)
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
    """Why a message went out late (see the note the report prints under the schedule case)."""
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


# -- throughput ------------------------------------------------------------------------------------

THROUGHPUT: Final = "Replay throughput, as fast as possible"


def throughput_case(options: Options) -> Case:
    """Messages per second with ``speed=0``, into nothing and into a real nats-server."""
    return asyncio.run(_throughput(FULL if not options.smoke else SMOKE, options))


async def _throughput(sizes: Sizes, options: Options) -> Case:
    case = Case(
        THROUGHPUT,
        "`speed=0`, `shift_to_now=True`; msg/s = messages / wall time from `run()` to its end "
        "(for nats-server, until `flush()` returned: the server has every message); the median of "
        f"{sizes.rounds} round(s), each into a fresh nats-server.",
    )
    templates, work = load_templates(), options.work
    path = work / "throughput.mcap"
    written = write_recording(
        path, spread(sizes.throughput_messages, 86_400, ("beach", "train", "bike")), templates
    )
    n = written.messages
    case.notes.append(
        f"Recording: {n} messages over 24 h ({kinds(written)}), mean body {written.mean_body:.0f} B, "
        f"zstd, {written.file_bytes / _MB:.1f} MB, written in {written.seconds:.1f} s."
    )
    log(f"replay throughput: {n} messages written; reading")
    started = time.perf_counter()
    read = sum(1 for _ in read_messages(path))
    reading = time.perf_counter() - started
    if read != n:
        raise BenchError(f"read {read} of {n} messages back")
    case.rows.append(_rate_row("the reader alone (`read_messages`, no replay)", n, [reading], target=False))
    noop: list[float] = []
    into_nats: list[float] = []
    alone: list[float] = []
    for number in range(1, sizes.rounds + 1):
        log(f"replay throughput: round {number}, replaying into a no-op publish")
        noop.append(await timed_replay(path, discard, n))
        log(f"replay throughput: round {number}, replaying into nats-server")
        async with nats_bus(work / f"nats-throughput-{number}") as bus:  # a fresh server each round
            into_nats.append(await timed_replay(path, bus.publish_raw, n, bus))
            log(f"replay throughput: round {number}, nats-py alone into nats-server")
            alone.append(await timed_nats_py(path, bus, n))
    case.rows.append(_rate_row("a no-op publish (the replayer's ceiling)", n, noop))
    case.rows.append(_rate_row("nats-server (`Bus.publish_raw`, streams provisioned)", n, into_nats))
    case.rows.append(
        _rate_row(
            "nats-server, nats-py alone (no replay: `nc.publish` with 9 headers)", n, alone, target=False
        )
    )
    for name, rounds in (("no-op publish", noop), ("into nats-server", into_nats), ("nats-py alone", alone)):
        case.figures.append(Figure(f"{name} msg/s", n / statistics.median(rounds), "msg/s"))
    for row in case.rows:
        if row.met is not None:
            into = row.cells["replayed into"]
            case.targets.append(
                Target(f"{THROUGHPUT}: {into}", f">= {TARGET_RATE:,.0f} msg/s", row.cells["msg/s"], row.met)
            )
    if case.missed or options.smoke:
        log("replay throughput: profiling")
        await profile_throughput(case, work, min(sizes.profile_messages, n))
    return case


def _rate_row(into: str, messages: int, rounds: list[float], *, target: bool = True) -> Row:
    """A row of the median of ``rounds`` (seconds each), with every round's rate."""
    seconds = statistics.median(rounds)
    rate = messages / seconds
    return Row(
        {
            "replayed into": into,
            "messages": f"{messages}",
            "seconds": f"{seconds:.2f}",
            "msg/s": f"{rate:,.0f}",
            "target": f">= {TARGET_RATE:,.0f}" if target else "(diagnostic)",
            "msg/s, each round": ", ".join(f"{messages / r:,.0f}" for r in rounds),
        },
        met=rate >= TARGET_RATE if target else None,
    )


async def profile_throughput(case: Case, work: Path, count: int) -> None:
    """Profile the replay's event loop into nothing and into nats-server, and the reader alone, on a
    recording like the throughput case's but of ``count`` messages (cProfile slows everything down)."""
    short = work / "profile.mcap"
    write_recording(short, spread(count, 86_400, ("beach", "train", "bike")), load_templates())

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
        "Reading the profiles (cProfile, top functions by own time): with `speed=0` the event loop never "
        "sleeps, so its time in `select.epoll.poll` is time spent waiting, for the reader thread's next "
        "batch or for the socket; the reader's own work (decompressing and parsing MCAP, putting messages "
        "in time order) shows only in the third profile, since it runs in a worker thread that shares "
        "the GIL with the loop."
    )


def _top(profiler: cProfile.Profile) -> list[tuple[str, float, float, int]]:
    return top_functions(pstats.Stats(profiler), 10)


# -- schedule error --------------------------------------------------------------------------------

SCHEDULE: Final = "Schedule error at 1x"


def schedule_case(options: Options) -> Case:
    """How late messages go out at 1x (p50/p99/max of sent - due)."""
    return asyncio.run(_schedule(FULL if not options.smoke else SMOKE, options))


async def _schedule(sizes: Sizes, options: Options) -> Case:
    case = Case(
        SCHEDULE,
        "`speed=1`; error = sent - due per message, from the replayer's `on_sent` (monotonic clock). "
        f"A burst is {sizes.burst_size} messages due at the same instant: the last of them cannot go out "
        "before the others, so bursts are shown apart as well as in the total.",
    )
    path = options.work / "schedule.mcap"
    schedule = city_traffic(sizes.schedule_seconds, sizes.schedule_rate, sizes.burst_every, sizes.burst_size)
    written = write_recording(path, schedule, load_templates())
    case.notes.append(
        f"Recording: {sizes.schedule_seconds:.0f} s, {written.messages} messages ({kinds(written)}): "
        f"about {sizes.schedule_rate:.0f} msg/s with random (exponential) gaps, and a burst every "
        f"{sizes.burst_every:.0f} s; zstd."
    )
    log(f"replay schedule: the event loop alone keeping the schedule of {written.messages} messages")
    floor = await timer_floor([log_time for log_time, _ in schedule])
    runs: list[tuple[str, Lateness]] = []
    log(f"replay schedule: replaying {written.messages} messages at 1x into a no-op publish")
    runs.append(("a no-op publish", await schedule_errors(path, discard, written.messages)))
    log("replay schedule: replaying at 1x into nats-server")
    async with nats_bus(options.work / "nats-schedule") as bus:
        runs.append(("nats-server", await schedule_errors(path, bus.publish_raw, written.messages)))
    for into, lateness in runs:
        for which, errors in (
            ("all", lateness.steady + lateness.bursts),
            ("steady only", lateness.steady),
            ("bursts only", lateness.bursts),
        ):
            row = _error_row(into, which, errors)
            case.rows.append(row)
            if which == "all":
                case.figures.append(
                    Figure(f"{into}: p99 ms", float(row.cells["p99 ms"]), "ms", higher_is_better=False)
                )
            if row.met is not None:
                case.targets.append(
                    Target(
                        f"{SCHEDULE}: {into}",
                        f"p99 <= {TARGET_P99_MS:g} ms",
                        f"{row.cells['p99 ms']} ms p99",
                        row.met,
                    )
                )
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
    p50, p99 = statistics.median(errors), percentile(errors, 99)
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


CASES: Final = [
    Spec("replay-throughput", THROUGHPUT, throughput_case),
    Spec("replay-schedule", SCHEDULE, schedule_case),
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.replay``: the three replay cases (``python -m bench`` with ``--only``)."""
    from bench.suite import main as suite_main  # the suite imports this module

    return suite_main(
        argv, prog="python -m bench.replay", only=("replay-throughput", "replay-schedule", "replay-memory")
    )


if __name__ == "__main__":
    raise SystemExit(main())
