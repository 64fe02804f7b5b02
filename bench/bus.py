"""The bus benchmarks: citybus against raw nats-py and FastStream, side by side in one run.

Every figure is a ratio of two things measured the same way, one right after the other, on the
same machine, with the same message (the example ``environment.beach-observation``: a 271-byte
JSON body and nine CloudEvents headers, :mod:`bench.peers`), each measurement on a fresh
nats-server of its own. Publisher and subscriber are separate processes; rounds alternate between
the implementations, and a figure is the median of its rounds, so a neighbour's burst of work on a
shared machine spoils one round, not a comparison.

1. **Contract publish → typed subscribe, against raw nats-py** (target >= 0.80x). ``Bus.publish``
   of the contract to ``Bus.subscribe`` with a typed handler in another process, against nats-py
   publishing the same bytes to a callback. Throughput is end to end: messages / (the
   subscriber's last arrival - the publisher's first send), both ``time.monotonic_ns()``, which
   on Linux is one clock for every process.
2. **The same, against FastStream** (target citybus >= 12x FastStream), FastStream's NATS broker
   with a typed handler validating with msgspec (the very contract) and with pydantic (a model of
   the same fields). The ratio is taken against the faster of the two.
3. **One-way latency at 5 000 msg/s** (target p99 <= 1.3x raw nats-py). The publisher paces
   messages at 5 000 a second and stamps each just before it publishes; the subscriber stamps each
   as it reaches the handler; latency = arrival - send. The first 10 % of each run is left out
   (connections and allocators warming up).
4. **JetStream durable publish** (target >= 0.90x raw ``publish_async``). ``Bus.publish_durable``
   waits for each message's acknowledgement before it returns, so it is measured both as an
   application calls it (one after the other) and with a window of them in flight (one task per
   message), against nats-py's ``publish_async`` (up to 4 000 unacknowledged) with
   ``publish_async_completed()``; the streams are provisioned as ``citybus up`` has them, and the
   stream is checked to hold every message afterwards.

Where a target is missed (and always in a smoke run, so CI checks that it works), the citybus side
runs once more under cProfile and the top functions go into the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import pstats
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from bench.common import CASE_LIMIT, ROOT, BenchError, Options, Spec, child_env, log, nats_bus, nats_server
from bench.peers import MESSAGE
from bench.report import Case, Figure, Row, Target
from bench.stats import median, percentile, top_functions
from bus import subjects
from bus.codec import encode

__all__ = ["CASES", "Peers", "Run", "citybus_profiles"]

TARGET_RAW: Final = 0.80
TARGET_FASTSTREAM: Final = 12.0
TARGET_LATENCY: Final = 1.3
TARGET_DURABLE: Final = 0.90
RATE: Final = 5_000.0
WINDOW: Final = 1024
_NS: Final = 1e9


@dataclass(frozen=True)
class Sizes:
    """How big each case is: the full run, or a smoke run of a few seconds."""

    pubsub_messages: int
    faststream_messages: int
    latency_seconds: float
    durable_messages: int
    rounds: int
    pubsub_rounds: int
    """The throughput case is short and the machine shared: more rounds for its median."""


FULL: Final = Sizes(100_000, 30_000, 10.0, 20_000, 3, 5)
SMOKE: Final = Sizes(2_000, 1_000, 0.4, 500, 1, 1)


def _sizes(options: Options) -> Sizes:
    return SMOKE if options.smoke else FULL


# -- running the peers -----------------------------------------------------------------------------


@dataclass
class Run:
    """One measurement: what the publisher and the subscriber reported."""

    publisher: dict[str, Any]
    subscriber: dict[str, Any] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return int(self.publisher["sent"])

    @property
    def end_to_end(self) -> float:
        """Messages a second from the first send to the last arrival."""
        return self.sent * _NS / float(self.subscriber["stamps"][-1] - self.publisher["start"])

    @property
    def publishing(self) -> float:
        """Messages a second the publisher got out (until its flush returned)."""
        return self.sent * _NS / float(self.publisher["end"] - self.publisher["start"])


class Peers:
    """Starts the child processes of one case and cleans up after them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.count = 0

    def _path(self, name: str) -> Path:
        self.count += 1
        return self.work / f"{self.count:03d}-{name}"

    async def _spawn(
        self, name: str, *args: str, module: str = "bench.peers"
    ) -> tuple[asyncio.subprocess.Process, Path]:
        stderr = self._path(f"{name}.stderr")
        with stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                cwd=ROOT,
                env=child_env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        return process, stderr

    @staticmethod
    async def _finish(process: asyncio.subprocess.Process, stderr: Path, what: str) -> None:
        try:
            async with asyncio.timeout(CASE_LIMIT):
                await process.wait()
        except TimeoutError:
            raise BenchError(f"{what} ran over {CASE_LIMIT:.0f} s") from None
        if process.returncode != 0:
            raise BenchError(f"{what} failed ({process.returncode}):\n{_tail(stderr)}")

    @contextlib.asynccontextmanager
    async def _reaped(self, processes: list[asyncio.subprocess.Process]) -> AsyncIterator[None]:
        """Kill the processes started in the block that are still running when it ends (an error)."""
        try:
            yield
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def pubsub(
        self,
        impl: str,
        count: int,
        *,
        rate: float | None = None,
        profile: bool = False,
        prepare: Callable[[str], Awaitable[None]] | None = None,
    ) -> tuple[Run, list[Path]]:
        """Publish ``count`` messages from one process to a subscriber in another, on a fresh server;
        with ``profile``, both run under cProfile and the profiles' paths are returned. ``prepare``
        is called with the server's URL before the processes start (to provision it)."""
        async with nats_server(self._path(f"nats-{impl}")) as server:
            if prepare is not None:
                await prepare(server.url)
            results = {side: self._path(f"{impl}-{side}.json") for side in ("subscribe", "publish")}
            profiles = {side: self._path(f"{impl}-{side}.prof") for side in results}
            common = ["--url", server.url, "--count", str(count)]
            if rate is not None:
                common += ["--stamps"]

            def args(side: str) -> list[str]:
                extra = ["--profile", str(profiles[side])] if profile else []
                rated = ["--rate", str(rate)] if side == "publish" and rate is not None else []
                return [side, impl, *common, "--result", str(results[side]), *rated, *extra]

            processes: list[asyncio.subprocess.Process] = []
            async with self._reaped(processes):
                sub, sub_err = await self._spawn(f"{impl}-subscribe", *args("subscribe"))
                processes.append(sub)
                assert sub.stdout is not None
                line = b""
                try:
                    async with asyncio.timeout(60):
                        # FastStream's default logger writes to standard output too: skip its lines.
                        while True:
                            line = await sub.stdout.readline()
                            if line in (b"ready\n", b""):
                                break
                except TimeoutError:
                    line = b""
                if line != b"ready\n":  # it failed, or hangs: the stderr says why
                    raise BenchError(f"the {impl} subscriber did not get ready:\n{_tail(sub_err)}")
                # Keep reading what it writes, or a full pipe would stop it.
                drain = asyncio.create_task(sub.stdout.read())
                pub, pub_err = await self._spawn(f"{impl}-publish", *args("publish"))
                processes.append(pub)
                await self._finish(pub, pub_err, f"the {impl} publisher")
                await self._finish(sub, sub_err, f"the {impl} subscriber")
                await drain
        run = Run(json.loads(results["publish"].read_text()), json.loads(results["subscribe"].read_text()))
        if run.subscriber["received"] != count:
            raise BenchError(
                f"{impl}: the subscriber received {run.subscriber['received']} of {count} messages "
                "(a slow consumer dropped some, or the publisher lost its connection)"
            )
        return run, [profiles["publish"], profiles["subscribe"]] if profile else []

    async def durable(self, impl: str, count: int) -> Run:
        """Publish ``count`` messages to JetStream from a child process and check the stream has them."""
        async with nats_bus(self._path(f"nats-{impl}")) as bus:
            result = self._path(f"{impl}-durable.json")
            args = ["durable", impl, "--url", bus.url, "--count", str(count), "--result", str(result)]
            processes: list[asyncio.subprocess.Process] = []
            async with self._reaped(processes):
                process, stderr = await self._spawn(f"{impl}-durable", *args, "--window", str(WINDOW))
                processes.append(process)
                await self._finish(process, stderr, f"the {impl} durable publisher")
            stream = subjects.stream_name(MESSAGE.__contract__.classification, MESSAGE.__contract__.domain)
            stored = (await bus.js.stream_info(stream)).state.messages
        run = Run(json.loads(result.read_text()))
        if run.publisher["acked"] != count or run.publisher["duplicates"] or stored != count:
            raise BenchError(
                f"{impl}: {run.publisher['acked']} of {count} acknowledged, {run.publisher['duplicates']} "
                f"as duplicates, {stored} stored in {stream}"
            )
        return run


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no output)"


def citybus_profiles(case: Case, paths: list[Path], what: str) -> None:
    """The top of the citybus publisher's and subscriber's profiles, overall and of citybus's own code."""
    for side, path in zip(("publisher", "subscriber"), paths, strict=True):
        stats = pstats.Stats(str(path))
        case.profiles.append(
            (f"the citybus {side} ({what}), top functions by own time", top_functions(stats, 12))
        )
        case.profiles.append(
            (
                f"the citybus {side} ({what}), citybus's own functions by cumulative time",
                top_functions(stats, 8, by="cumulative", where=_citybus_code),
            )
        )
    case.notes.append(
        "Reading the profiles: cProfile, one extra run with both sides profiled (cProfile inflates the "
        "cost of small Python calls: shares are a guide, not a measurement). In the subscriber, "
        "`select.epoll.poll` is time spent waiting for the next message."
    )


def _citybus_code(place: str) -> bool:
    return place.startswith(("bus/", "contracts/")) and "<" not in place.split(" ", 1)[1]


def _faststream_installed() -> bool:
    return (
        importlib.util.find_spec("faststream") is not None
        and importlib.util.find_spec("pydantic") is not None
    )


# -- 1. citybus against raw nats-py ----------------------------------------------------------------

PUBSUB: Final = "Contract publish → typed subscribe, against raw nats-py"


def pubsub_case(options: Options) -> Case:
    """citybus publish → typed subscribe across processes, against nats-py with the same bytes."""
    return asyncio.run(_pubsub(_sizes(options), options))


async def _pubsub(sizes: Sizes, options: Options) -> Case:
    count = sizes.pubsub_messages
    case = Case(
        PUBSUB,
        f"{count:,} messages from a publisher process to a subscriber process, "
        f"{sizes.pubsub_rounds} round(s) alternating between the two; msg/s = messages / (last arrival in "
        "the subscriber's handler - first send). `raw nats-py` publishes one prebuilt body with one "
        "prebuilt set of headers; `citybus` is "
        "`Bus.publish(BeachObservation)` (fresh `ce-id` and `ce-time`, subject and body built each time) to "
        "`Bus.subscribe(BeachObservation, handler)` (CloudEvents headers checked, the body decoded and "
        "validated into the contract, metrics counted).",
    )
    peers = Peers(options.work)
    rates: dict[str, list[Run]] = {"raw": [], "citybus": []}
    for number in range(1, sizes.pubsub_rounds + 1):
        for impl, runs in rates.items():
            log(f"pubsub: round {number}, {impl}: {count} messages")
            run, _ = await peers.pubsub(impl, count)
            runs.append(run)
    raw = median([run.end_to_end for run in rates["raw"]])
    for impl, runs in rates.items():
        case.rows.append(_throughput_row(impl, count, runs, raw))
        case.figures.append(Figure(f"{impl} msg/s", median([run.end_to_end for run in runs]), "msg/s"))
    ratio = median([run.end_to_end for run in rates["citybus"]]) / raw
    case.figures.append(Figure("citybus / raw", ratio, "x"))
    met = ratio >= TARGET_RAW
    case.rows[-1].met = met
    case.targets.append(Target(f"{PUBSUB} (throughput)", f">= {TARGET_RAW:.2f}x", f"{ratio:.2f}x", met))
    case.notes.append(
        f"Message: {len(encode(MESSAGE))} B JSON body, 9 CloudEvents headers, core NATS (no stream "
        "covers the subject: the server's work is the same for both)."
    )
    if not met or options.smoke:
        log("pubsub: profiling the citybus publisher and subscriber")
        _, paths = await peers.pubsub("citybus", count, profile=True)
        citybus_profiles(case, paths, f"{count:,} messages")
    return case


def _throughput_row(impl: str, count: int, runs: list[Run], reference: float) -> Row:
    rates = [run.end_to_end for run in runs]
    return Row(
        {
            "implementation": impl,
            "messages": f"{count:,}",
            "msg/s, each round": ", ".join(f"{rate:,.0f}" for rate in rates),
            "msg/s (median)": f"{median(rates):,.0f}",
            "publisher alone msg/s (median)": f"{median([run.publishing for run in runs]):,.0f}",
            "ratio": f"{median(rates) / reference:.2f}x",
        }
    )


# -- 2. citybus against FastStream -----------------------------------------------------------------

FASTSTREAM: Final = "Contract publish → typed subscribe, against FastStream"


def faststream_case(options: Options) -> Case:
    """citybus against FastStream's NATS broker, the same message and validation."""
    return asyncio.run(_faststream(_sizes(options), options))


async def _faststream(sizes: Sizes, options: Options) -> Case:
    count = sizes.faststream_messages
    case = Case(
        FASTSTREAM,
        f"{count:,} messages from a publisher process to a subscriber process, {sizes.rounds} round(s) "
        "alternating between the three, measured as in the case before. FastStream's publisher sends the "
        "contract with the same nine CloudEvents headers (fresh id and time each); its subscriber is a typed "
        "handler, validating with msgspec into the very contract (`MsgSpecSerializer`, the same constraints "
        "checked by the same code: the fairest comparison) or with pydantic into a model of the same fields "
        "and bounds (FastStream's default). Both brokers run with `logger=None`: FastStream's default logs "
        "two lines per message, citybus none. The target's ratio is taken against the faster FastStream.",
    )
    if not _faststream_installed():
        case.notes.append(
            "Not measured: FastStream is not installed in this environment. Install the pinned version with "
            "`pip install -e '.[bench]'` (the `bench` extra of pyproject.toml)."
        )
        case.targets.append(
            Target(
                f"{FASTSTREAM} (throughput)", f">= {TARGET_FASTSTREAM:g}x", "FastStream not installed", None
            )
        )
        return case
    peers = Peers(options.work)
    impls = ("citybus", "faststream-msgspec", "faststream-pydantic", "faststream-defaults", "raw")
    runs: dict[str, list[Run]] = {impl: [] for impl in impls}
    for number in range(1, sizes.rounds + 1):
        for impl in impls:
            log(f"faststream: round {number}, {impl}: {count} messages")
            run, _ = await peers.pubsub(impl, count)
            runs[impl].append(run)
    citybus = median([run.end_to_end for run in runs["citybus"]])
    # Judged against the faster of FastStream run as a service would (no log line per message).
    fastest = max(median([run.end_to_end for run in runs[impl]]) for impl in impls[1:3])
    for impl in impls:
        row = _throughput_row(impl, count, runs[impl], fastest)
        row.cells["ratio"] = f"citybus is {citybus / median([run.end_to_end for run in runs[impl]]):.2f}x"
        case.rows.append(row)
        case.figures.append(Figure(f"{impl} msg/s", median([run.end_to_end for run in runs[impl]]), "msg/s"))
    ratio = citybus / fastest
    raw = median([run.end_to_end for run in runs["raw"]])
    case.notes.append(
        f"Raw nats-py (the same bytes, no validation) is {raw / fastest:.2f}x the faster FastStream here: "
        "the ceiling of any library on nats-py, citybus included. `faststream-defaults` is FastStream with "
        "its default logger (two lines per message), for reference; the target is judged against the "
        "faster of the two run without it."
    )
    met = ratio >= TARGET_FASTSTREAM
    case.targets.append(
        Target(f"{FASTSTREAM} (throughput)", f">= {TARGET_FASTSTREAM:g}x", f"{ratio:.2f}x", met)
    )
    case.notes.append(
        f"FastStream {metadata.version('faststream')} with pydantic {metadata.version('pydantic')}, pinned "
        "by the `bench` extra. FastStream checks neither the CloudEvents headers nor `ce-type` "
        "(citybus does), and both of its serializers convert the JSON it has already parsed in lax mode, "
        "where citybus decodes strictly: the comparison leans, if anything, to FastStream."
    )
    return case


# -- 3. latency ------------------------------------------------------------------------------------

LATENCY: Final = "One-way latency at 5,000 msg/s"


def latency_case(options: Options) -> Case:
    """Arrival - send of each message at a steady 5 000 msg/s, citybus against raw nats-py."""
    return asyncio.run(_latency(_sizes(options), options))


async def _latency(sizes: Sizes, options: Options) -> Case:
    count = int(sizes.latency_seconds * RATE)
    warmup = count // 10
    case = Case(
        LATENCY,
        f"The publisher paces {count:,} messages ({sizes.latency_seconds:g} s) at {RATE:,.0f} msg/s against "
        "absolute due times and stamps each with `time.monotonic_ns()` just before it calls publish; the "
        "subscriber, another process, stamps each as its handler (callback, for nats-py) starts; latency = "
        f"arrival - send. The first {warmup:,} messages of each run (10 %) are left out; percentiles are of "
        f"the rest of all {sizes.rounds} round(s) together.",
    )
    peers = Peers(options.work)
    latencies: dict[str, list[float]] = {"raw": [], "citybus": []}
    paced: dict[str, list[float]] = {"raw": [], "citybus": []}
    for number in range(1, sizes.rounds + 1):
        for impl, values in latencies.items():
            log(f"latency: round {number}, {impl}: {count} messages at {RATE:,.0f} msg/s")
            run, _ = await peers.pubsub(impl, count, rate=RATE)
            sent, arrived = run.publisher["stamps"], run.subscriber["stamps"]
            values += [(a - s) / 1e6 for s, a in zip(sent[warmup:], arrived[warmup:], strict=True)]
            paced[impl].append((len(sent) - 1) * _NS / (sent[-1] - sent[0]))
    raw99 = percentile(latencies["raw"], 99)
    for impl, values in latencies.items():
        case.rows.append(
            Row(
                {
                    "implementation": impl,
                    "messages measured": f"{len(values):,}",
                    "rate achieved msg/s": ", ".join(f"{rate:,.0f}" for rate in paced[impl]),
                    "p50 ms": f"{percentile(values, 50):.3f}",
                    "p90 ms": f"{percentile(values, 90):.3f}",
                    "p99 ms": f"{percentile(values, 99):.3f}",
                    "p99.9 ms": f"{percentile(values, 99.9):.3f}",
                    "max ms": f"{max(values):.3f}",
                    "p99 ratio": f"{percentile(values, 99) / raw99:.2f}x",
                }
            )
        )
    ratio = percentile(latencies["citybus"], 99) / raw99
    for impl, values in latencies.items():
        case.figures.append(Figure(f"{impl} p99 ms", percentile(values, 99), "ms", higher_is_better=False))
    case.figures.append(Figure("citybus / raw p99", ratio, "x", higher_is_better=False))
    met = ratio <= TARGET_LATENCY
    case.rows[-1].met = met
    case.targets.append(
        Target(
            f"{LATENCY}: p99 against raw nats-py",
            f"<= {TARGET_LATENCY:g}x",
            f"{ratio:.2f}x ({percentile(latencies['citybus'], 99):.3f} ms against {raw99:.3f} ms)",
            met,
        )
    )
    case.notes.append(
        "asyncio sleeps at least 1 ms, so at 5,000 msg/s the publisher sends about five messages per "
        "wake-up: the same for both. Both processes and the server share the machine's cores, as they "
        "would on one host."
    )
    if not met or options.smoke:
        log("latency: profiling the citybus publisher and subscriber")
        _, paths = await peers.pubsub("citybus", count, rate=RATE, profile=True)
        citybus_profiles(case, paths, f"{count:,} messages at {RATE:,.0f} msg/s")
    return case


# -- 4. JetStream ----------------------------------------------------------------------------------

DURABLE: Final = "JetStream durable publish"


def durable_case(options: Options) -> Case:
    """``Bus.publish_durable`` against nats-py's ``publish_async``."""
    return asyncio.run(_durable(_sizes(options), options))


async def _durable(sizes: Sizes, options: Options) -> Case:
    count = sizes.durable_messages
    case = Case(
        DURABLE,
        f"{count:,} messages published to JetStream by one process, each acknowledged by the stream "
        "(`CITY_PUBLIC_ENVIRONMENT`, file storage, provisioned as `citybus up` does), "
        f"{sizes.rounds} round(s) alternating; msg/s = messages / (the last acknowledgement - the first "
        "publish). Every message has a fresh `ce-id`/`Nats-Msg-Id`; the stream is checked to hold all of "
        "them afterwards.",
    )
    peers = Peers(options.work)
    labels = {
        "raw-async": "raw nats-py `js.publish_async` + `publish_async_completed()` (up to 4,000 in flight)",
        "citybus-many": f"citybus `await bus.publish_durable_many(...)`, window {WINDOW}",
        "raw-sync": "raw nats-py `await js.publish(...)`, one after the other (diagnostic)",
        "citybus": "citybus `await bus.publish_durable(...)`, one after the other (diagnostic)",
    }
    runs: dict[str, list[Run]] = {impl: [] for impl in labels}
    for number in range(1, sizes.rounds + 1):
        for impl in labels:
            log(f"durable: round {number}, {impl}: {count} messages")
            runs[impl].append(await peers.durable(impl, count))
    reference = median([run.publishing for run in runs["raw-async"]])
    for impl, label in labels.items():
        rates = [run.publishing for run in runs[impl]]
        ratio = median(rates) / reference
        targeted = impl == "citybus-many"
        case.figures.append(Figure(f"{impl} msg/s", median(rates), "msg/s"))
        met = ratio >= TARGET_DURABLE if targeted else None
        case.rows.append(
            Row(
                {
                    "publisher": label,
                    "msg/s, each round": ", ".join(f"{rate:,.0f}" for rate in rates),
                    "msg/s (median)": f"{median(rates):,.0f}",
                    "ratio to `publish_async`": f"{ratio:.2f}x",
                },
                met=met,
            )
        )
        if met is not None:
            case.targets.append(
                Target(f"{DURABLE}: {label}", f">= {TARGET_DURABLE:.2f}x", f"{ratio:.2f}x", met)
            )
    case.notes.append(
        "`Bus.publish_durable_many` publishes with a reply subject in an acknowledgement inbox of the bus's "
        "own and awaits up to the window's acknowledgements at once, retrying what is not acknowledged under "
        "the same `ce-id`; "
        "`Bus.publish_durable` waits for each acknowledgement (one round trip per message), and compares "
        "with raw `js.publish` one after the other."
    )
    return case


CASES: Final = [
    Spec("pubsub", PUBSUB, pubsub_case),
    Spec("faststream", FASTSTREAM, faststream_case),
    Spec("latency", LATENCY, latency_case),
    Spec("durable", DURABLE, durable_case),
]
