"""Adapters scaled across processes: one consuming instance run in one process, then in two.

Each measurement starts a fresh nats-server with the streams provisioned as ``citybus up`` has
them and stores ``N`` beach observations in ``CITY_PUBLIC_ENVIRONMENT`` (not timed). Then one or
two processes of the same adapter instance start as an operator starts them, ``citybus adapters
run tally --nats URL`` (:mod:`bench.tally`, installed as a real package), each says it is ready, and
the bench creates the gate file they wait for: from that moment (the start) they bind to the
instance's one durable consumer and drain the stream through it, each message handled, written
down and acknowledged. msg/s = ``N`` / (the last message handled by any process - the start), on
``time.monotonic_ns`` (one clock for every process of the machine). Afterwards every handled
``ce-id`` is counted: a message missing fails the case, and a message handled twice is reported.
Over the same span the CPU time of each consumer process and of the nats-server is read from
``/proc``, in cores (CPU seconds / wall seconds): where the machine's cores went.

Rounds alternate which setup goes first. A figure is the median of its rounds.

Decisions, and why:

* **Two kinds of work per message.** The headline is 0.2 ms of CPU, spun on the thread's CPU clock
  (a service that computes: decoding a vendor's format, a journey query): a Python process runs its
  handlers on one core, so CPU is what a second process adds, and what this case is about. The
  other is an await of 20 ms (a sink writing to a database across a network): the process waits
  rather than computes, so one process with ``max_in_flight`` = 64 handlers tops out at 64 / 20 ms
  = 3,200 msg/s, and a second process doubles the handlers in flight, which a larger
  ``max_in_flight`` in one process would do as well. Both are measured so the report says which
  scale-out helps with which.
* **The machine has two cores, and the broker is on it.** One consumer process keeps one core busy
  and the nats-server takes part of the other; a second process competes with the broker for that
  core. The cores columns show it; on a machine of more cores (or with the broker elsewhere) the
  CPU-bound ratio is what is left of 2x once the broker has its share.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nats.js.errors

from bench.bus import _tail
from bench.common import CASE_LIMIT, BenchError, Options, Spec, child_env, log, nats_server
from bench.consume import store
from bench.consumers import STREAM
from bench.gateway import cpu_seconds
from bench.report import Case, Figure, Row
from bench.stats import median
from bench.tally import ADAPTER, install, read_tallies
from bus import Bus, Metrics, subjects
from contracts import BeachObservation

__all__ = ["CASES", "TITLE"]

TITLE: Final = "Adapters scaled across processes"
INSTANCE: Final = "tally"
DURABLE: Final = subjects.durable_name(INSTANCE, BeachObservation)
READY: Final = '"event": "adapter ready"'
PROCESSES: Final = (1, 2)


@dataclass(frozen=True)
class Work:
    """What each message costs its handler: ``cpu`` (spun) or ``io`` (awaited), ``ms`` each."""

    kind: str
    ms: float
    label: str


WORKS: Final = (
    Work("cpu", 0.2, "0.2 ms of CPU per message"),
    Work("io", 20.0, "an await of 20 ms per message (I/O)"),
)


@dataclass(frozen=True)
class Sizes:
    """How many messages a measurement drains, per kind of work, and how many rounds there are."""

    messages: dict[str, int]
    rounds: int


FULL: Final = Sizes({"cpu": 20_000, "io": 10_000}, 5)
SMOKE: Final = Sizes({"cpu": 300, "io": 300}, 1)


@dataclass(frozen=True)
class Run:
    """One measurement: its rate, each process's share, the repeats, and the cores used."""

    rate: float
    shares: list[int]
    twice: int
    """Messages handled more than once (the steady state: 0 expected)."""
    consumer_cores: float
    consumer_us: float
    """The consumer processes' CPU time per message, µs: what the load of the machine leaves alone."""
    server_cores: float
    machine_cores: float
    """Every process of the machine (other work on it included): how much of it was free."""


def scaleout_case(options: Options) -> Case:
    """One and two processes of one consuming instance, each kind of work, alternating."""
    return asyncio.run(_scaleout(SMOKE if options.smoke else FULL, options))


async def _scaleout(sizes: Sizes, options: Options) -> Case:
    case = Case(
        TITLE,
        "One adapter instance (`scaleout-tally`, a durable consumer of beach observations) run by "
        "`citybus adapters run tally --nats URL` in 1 and in 2 processes, which share the instance's "
        f"durable consumer `{DURABLE}`. Each measurement: a fresh nats-server whose `{STREAM}` holds "
        "the messages beforehand (not timed); the processes start and say they are ready, then all begin "
        "at once (a gate file); msg/s = messages / (the last one handled by any process - the gate). "
        f"{sizes.rounds} round(s), which setup goes first alternating; default `[consumer]` settings "
        "(64 in flight per process). cores = CPU seconds / wall seconds over the run (from /proc), of "
        "the consumer processes together (median), of the nats-server (median), and of the whole machine "
        "(`/proc/stat`, everything running on it, other work included); consumer CPU µs/msg = the consumer "
        "processes' CPU time / messages (median; how busy the machine is changes it little); the machine "
        f"has {_cores()} logical CPUs, shared by all of them and by this bench.",
    )
    site = install(options.work / "scaleout-site")
    number = 0
    for work in WORKS:
        count = sizes.messages[work.kind]
        runs: dict[int, list[Run]] = {p: [] for p in PROCESSES}
        for round_ in range(1, sizes.rounds + 1):
            for processes in PROCESSES if round_ % 2 else PROCESSES[::-1]:
                number += 1
                log(f"scaleout: {work.kind}, round {round_}, {processes} process(es): {count} messages")
                where = options.work / f"scaleout-{number:02d}-{work.kind}-{processes}"
                runs[processes].append(await measure(where, site, work, processes, count))
        rows, one = [], median([run.rate for run in runs[1]])
        for processes, done in runs.items():
            rate = median([run.rate for run in done])
            middle = sorted(done, key=lambda run: run.rate)[len(done) // 2]
            rows.append(
                Row(
                    {
                        "processes": str(processes),
                        "messages": f"{count:,}",
                        "msg/s, each round": ", ".join(f"{run.rate:,.0f}" for run in done),
                        "msg/s (median)": f"{rate:,.0f}",
                        "ratio to 1 process": f"{rate / one:.2f}x",
                        "share of each process (median round)": " / ".join(f"{s:,}" for s in middle.shares),
                        "consumer cores": f"{median([run.consumer_cores for run in done]):.2f}",
                        "consumer CPU µs/msg": f"{median([run.consumer_us for run in done]):.0f}",
                        "nats-server cores": f"{median([run.server_cores for run in done]):.2f}",
                        "machine cores busy, each round": ", ".join(f"{r.machine_cores:.2f}" for r in done),
                        "handled twice": str(sum(run.twice for run in done)),
                    }
                )
            )
            case.figures.append(Figure(f"{work.kind} {processes} process(es) msg/s", rate, "msg/s"))
        two = median([run.rate for run in runs[2]])
        case.figures.append(Figure(f"{work.kind} 2 / 1 processes", two / one, "x"))
        case.tables.append((f"Handler: {work.label}.", rows))
    return case


async def measure(where: Path, site: Path, work: Work, processes: int, count: int) -> Run:
    """Drain ``count`` stored messages with ``processes`` processes of the instance."""
    record, gate = where / "record", where / "gate"
    toml = _configure(where, work, record, gate)
    env = child_env(CITYBUS_SERVER_DATA_DIR=str(where / "data"))
    env["PYTHONPATH"] = f"{env['PYTHONPATH']}:{site}"
    async with nats_server(where / "nats") as server:
        bus = Bus(metrics=Metrics(), source="/bench")
        await bus.connect(server.url)
        children: list[tuple[asyncio.subprocess.Process, Path]] = []
        try:
            await bus.provision_streams()
            await store(bus.url, count)
            for n in range(processes):
                stderr = where / f"process-{n + 1}.stderr"
                with stderr.open("wb") as err:
                    child = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "bus.cli", "--log-format", "json", "adapters", "run", INSTANCE,
                        "--config", str(toml), "--nats", server.url,
                        cwd=where, env=env, stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.DEVNULL, stderr=err,
                    )  # fmt: skip
                children.append((child, stderr))
            for child, stderr in children:
                await _ready(child, stderr)
            pids = [child.pid for child, _ in children]
            broker = server.pid
            assert broker is not None
            before = {pid: cpu_seconds(pid) for pid in (*pids, broker)}
            busy = machine_busy()
            start = time.monotonic_ns()
            gate.touch()
            await _drained(bus, count, children)
            wall = (time.monotonic_ns() - start) / 1e9
            used = {pid: cpu_seconds(pid) - cpu for pid, cpu in before.items()}
            busy = machine_busy() - busy
        finally:
            await _stop(children)
            await bus.drain()
    tallies = read_tallies(record)
    handled = [event_id for tally in tallies for event_id in tally.ids]
    if len(set(handled)) != count:
        raise BenchError(f"{processes} process(es) handled {len(set(handled))} of {count} messages")
    last = max(max(tally.times) for tally in tallies if tally.times)
    return Run(
        rate=count * 1e9 / (last - start),
        shares=sorted((len(tally.ids) for tally in tallies), reverse=True),
        twice=len(handled) - count,
        consumer_cores=sum(used[pid] for pid in pids) / wall,
        consumer_us=sum(used[pid] for pid in pids) * 1e6 / count,
        server_cores=used[broker] / wall,
        machine_cores=busy / wall,
    )


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far, every CPU (``/proc/stat``: user, nice,
    system, irq and softirq; not idle, I/O wait or time stolen by the hypervisor)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _configure(where: Path, work: Work, record: Path, gate: Path) -> Path:
    """The measurement's directory and the ``citybus.toml`` of its instance; returns the file."""
    where.mkdir(parents=True)
    toml = where / "citybus.toml"
    toml.write_text(
        f'[auth]\nmode = "off"\n\n[adapters.{INSTANCE}]\nadapter = "{ADAPTER}"\nrecord = "{record}"\n'
        f'work = "{work.kind}"\nwork_ms = {work.ms}\ngate = "{gate}"\n'
    )
    return toml


async def _ready(child: asyncio.subprocess.Process, stderr: Path) -> None:
    """Wait until the process says its instance is ready; fail if it exits or takes too long."""
    try:
        async with asyncio.timeout(CASE_LIMIT):
            while READY not in _tail(stderr):
                if child.returncode is not None:
                    raise BenchError(f"citybus adapters run exited with {child.returncode}:\n{_tail(stderr)}")
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise BenchError(f"citybus adapters run was not ready within {CASE_LIMIT:.0f} s") from None


async def _drained(bus: Bus, count: int, children: list[tuple[asyncio.subprocess.Process, Path]]) -> None:
    """Wait until the server counts all ``count`` messages acknowledged by the instance's consumer."""
    try:
        async with asyncio.timeout(CASE_LIMIT):
            while True:
                try:
                    info = await bus.js.consumer_info(STREAM, DURABLE)
                except nats.js.errors.NotFoundError:  # not bound yet
                    info = None
                if info is not None and info.ack_floor is not None and info.ack_floor.stream_seq >= count:
                    return
                for child, stderr in children:
                    if child.returncode is not None:
                        what = f"a consumer process exited with {child.returncode}"
                        raise BenchError(f"{what}:\n{_tail(stderr)}")
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise BenchError(f"the {count} messages were not all acknowledged in {CASE_LIMIT:.0f} s") from None


async def _stop(children: list[tuple[asyncio.subprocess.Process, Path]]) -> None:
    """Ctrl-C every process, as an operator stops one; kill what has not stopped in 30 s."""
    for child, _ in children:
        if child.returncode is None:
            child.send_signal(signal.SIGINT)
    for child, _ in children:
        try:
            async with asyncio.timeout(30):
                await child.wait()
        except TimeoutError:
            child.kill()
            await child.wait()


def _cores() -> int:
    return os.cpu_count() or 1


CASES: Final = [Spec("scaleout", TITLE, scaleout_case)]
