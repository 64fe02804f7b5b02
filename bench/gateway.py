"""The HTTP gateway (issue 16): the last value of an entity per second, and SSE to 1,000 clients.

Both cases run the real gateway as a user runs it: ``citybus --log-format json up`` (the installed
console script, as :mod:`bench.startup` starts it) in a directory of its own with a
``citybus.toml`` written for the case, its data directory, ``HOME`` and XDG directories inside it,
and no ``CITYBUS_*`` variables. The whole ``citybus up`` (its Python process, with the gateway and,
in the SSE case, the sandbox replay; its embedded nats-server) runs on core 0 (``taskset -c 0``),
the load generator on core 1 (``taskset -c 1``), over loopback. Next to it, on the same core with
the same load, "a plain aiohttp handler doing the same work" (:mod:`bench.gateway_peers`): the floor
of aiohttp itself, which the gateway cannot beat.

**gateway-last-value**: ``GET /api/v1/contracts/environment.beach-observation/entities/{entity}``
(target: >= 5,000 requests/s with p99 <= 10 ms). Debian's ``wrk`` (one thread, ``--latency``: its
p50 and p99) makes the requests with 10 and with 50 connections, each run after a warm-up, two
rounds alternating between the gateway and the plain handler; a ``citybus up`` with only
``[adapters.gateway]`` (no sandbox), into which the bench publishes a few beach observations.
``wrk`` is a system package: when it is missing the case installs it with ``apt-get`` if it runs
as root, and otherwise fails saying so.

**gateway-sse**: 1,000 clients of ``GET /api/v1/stream?subject=city.public.>`` while the sandbox
replays at its default 60x (target: p99 delivery delay <= 100 ms, memory bounded: the RSS of the
``citybus up`` process before the clients connect and with all of them connected after the steady
state, per client). The clients are one process (:mod:`bench.gateway_peers`) of aiohttp connections,
which reports its own CPU and event-loop lag. A smoke run has 20 clients for 5 s, the replay at an
hour a second so that its seconds hold events.

Decisions, and why:

- **Access control off** (``[auth] mode = "off"``) in the bench's ``citybus.toml``. The bench
  measures the HTTP path; access control costs nothing per request, because the gateway serves every
  caller from the feed of its NATS user, which already holds the values (the broker decided when
  the feed read them). Without it the bench can publish its observations without a producer user.
- **The delay is measured against when the message was on NATS, not its ``time`` attribute**. The
  replay stamps ``ce-time`` with the recorded time shifted so that each loop starts now: at 60x the
  recorded day runs ahead of the wall clock, so ``time`` is not when it was published. A subscriber
  of the bench's own (in the parent process, which does nothing else meanwhile) notes when each
  message reached it on ``city.public.>`` by its ``ce-id``; an event's delay is when a client read
  it minus that. The same reference serves the plain handler, which has no stream sequence to
  look up (the gateway's ``sequence`` attribute would give JetStream's stored time, about the same
  moment on loopback).
- **A busy load generator is reported, not hidden**: the clients' process measures its own CPU
  and event-loop lag over the recorded window; when it is near a full core, or wakes up late, the
  delays include its own lag and the report says so.
- **Both SSE servers are sent the same messages**: before each side's recording the bench moves the
  replay to 07:59 of the recorded day (the request ``citybus sandbox seek`` sends). The stream at 60x
  is quiet on average (about 1 message a second over the day) and comes in bursts, the hourly
  readings together; a window that holds 08:00's burst is the one a p99 is about, and without the
  seek the two sides would be measured on different stretches of the day.
- **A full run profiles the gateway under load**: one more ``citybus up`` under cProfile (``-m
  cProfile``, as :mod:`bench.startup` does it), with a few seconds of the same load, its top
  functions in the report. Not in a smoke run (CI), which only checks that the cases complete.
- **A route that is not there is a figure "not measured"**, with the plain handler still measured,
  not a failed case: the routes were written in parallel with this bench.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import nats
from nats.aio.msg import Msg

from bench.common import CASE_LIMIT, ROOT, BenchError, Options, Spec, child_env, log
from bench.report import Case, Figure, Row, Target
from bench.startup import citybus_command, wait_ready
from bench.stats import median, percentile, top_functions
from bus import Bus, Metrics
from bus.subjects import control_subject
from contracts import BeachObservation

__all__ = ["CASES"]

LAST_TITLE: Final = "Last value of one entity over HTTP"
SSE_TITLE: Final = "SSE to 1,000 clients on the public stream"
TARGET_RPS: Final = 5_000.0
TARGET_P99_MS: Final = 10.0
TARGET_DELAY_MS: Final = 100.0
GATEWAY_CORE: Final = 0
LOAD_CORE: Final = 1
CONTRACT: Final = "environment.beach-observation"
ENTITY: Final = "bragernes-strand"
SITES: Final = (ENTITY, "sota-fjordpark", "blektjern", "landfalltjern", "vannverksdammen", "stordammen")
PATTERN: Final = "city.public.>"
BURST: Final = 0.1
"""Seconds within which messages published together count as one burst."""
SETTLE: Final = 3.0
"""Seconds a server is left alone before its RSS is read (after starting, between the two sides), and
before the recording starts once the clients are connected (1 s in a smoke run)."""
SPEED: Final = 60
"""The sandbox's default speed, which the SSE case replays at (in a smoke run, an hour a second, so
its few seconds always hold events)."""
SMOKE_SPEED: Final = 3600
SEEK: Final = 28_740
"""Where each side's recording starts in the replayed day (seconds from its start: 07:59, so the
window holds 08:00, when the hourly readings come together: 29 messages within the same second,
the day's largest burst after the state of its first second). Both sides see the same messages."""
PROFILED: Final = 15.0
"""Seconds the profiled SSE run records (a full run only)."""

CONFIG: Final = """\
# written by bench/gateway.py: access control off (the bench measures the HTTP path)
[auth]
mode = "off"

[ops]
port = 0
"""
GATEWAY_ONLY: Final = (
    CONFIG
    + """
[adapters.gateway]
adapter = "gateway"
port = 0
"""
)
WITH_SANDBOX: Final = (
    CONFIG
    + """
[adapters.sandbox]
adapter = "sandbox-replay"
speed = {speed}

[adapters.gateway]
adapter = "gateway"
account = "sandbox"
clock = "wall"
port = 0
"""
)
"""What a default ``citybus up`` runs (the sandbox at 60x and the gateway in its account), with
access control off and the gateway on a free port."""


# -- processes ---------------------------------------------------------------------------------------


def pinned(core: int) -> list[str]:
    """The command prefix that runs a process (and its children) on ``core`` only."""
    taskset = shutil.which("taskset")
    if taskset is None:
        raise BenchError("taskset is not installed (Debian: util-linux): the gateway cases pin cores with it")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("the gateway cases need two cores: one for the server, one for the load")
    return [taskset, "-c", str(core)]


def wrk_command() -> str:
    """Debian's ``wrk``; installed with ``apt-get`` when missing and this runs as root."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log("gateway: wrk is not installed: installing Debian's wrk with apt-get")
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]):
            subprocess.run(step, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
        found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not installed: install Debian's wrk (`apt-get install wrk`) and run again")
    return found


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid``, in MB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` (every thread), so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Up:
    """A running ``citybus up``: its process, NATS and gateway URLs."""

    process: subprocess.Popen[bytes]
    nats_url: str
    gateway: str


@contextlib.contextmanager
def citybus_up(directory: Path, config: str, *, python_options: tuple[str, ...] = ()) -> Iterator[Up]:
    """``citybus up`` on core 0 in ``directory`` with ``config`` as its ``citybus.toml``, until the
    block ends (then SIGTERM, and SIGKILL if it does not stop); ``python_options`` go in front of the
    script (``-m cProfile -o FILE``)."""
    directory.mkdir(parents=True)
    (directory / "citybus.toml").write_text(config, encoding="utf-8")
    data = directory / "data"
    env = child_env(
        HOME=str(directory),
        XDG_DATA_HOME=str(directory / "xdg"),
        XDG_CONFIG_HOME=str(directory / "xdg"),
    )
    stderr_path = directory / "stderr"
    python, script = citybus_command()
    command = [
        *pinned(GATEWAY_CORE),
        python,
        *python_options,
        script,
        "--log-format",
        "json",
        "up",
        "--data-dir",
        str(data),
    ]
    with stderr_path.open("wb") as stderr:
        began = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_ready(process, data / "instance.json", began, stderr_path)
        instance = json.loads((data / "instance.json").read_text())
        yield Up(process, str(instance["nats_url"]), _gateway_url(stderr_path))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _gateway_url(stderr: Path) -> str:
    for line in stderr.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry = json.loads(line)
            if entry["event"] == "gateway serving":
                return str(entry["url"])
    raise BenchError(f"citybus up is ready but logged no `gateway serving` line:\n{_tail(stderr)}")


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def plain_server(work: Path, name: str, *args: str) -> Iterator[tuple[int, str]]:
    """One of :mod:`bench.gateway_peers`'s plain servers on core 0: its pid and base URL."""
    stderr_path = work / f"{name}.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [*pinned(GATEWAY_CORE), sys.executable, "-m", "bench.gateway_peers", *args],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("port "):
            raise BenchError(f"the plain {name} server did not start:\n{_tail(stderr_path)}")
        yield process.pid, f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- last value --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wrk:
    """One ``wrk`` run: requests a second and latency percentiles (ms)."""

    rps: float
    requests: int
    p50: float
    p90: float
    p99: float
    errors: int
    """Non-2xx answers and socket errors."""


_UNIT: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> Wrk:
    """The figures of ``wrk --latency``'s output."""
    points = {
        int(p): float(v) * _UNIT[u]
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    }
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if rate is None or total is None or not {50, 90, 99} <= set(points):
        raise BenchError(f"wrk printed no figures:\n{output[-2000:]}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket is not None:
        errors += sum(int(n) for n in socket.groups())
    return Wrk(float(rate.group(1)), int(total.group(1)), points[50], points[90], points[99], errors)


def run_wrk(wrk: str, url: str, connections: int, seconds: int) -> Wrk:
    """``wrk`` on core 1: one thread, ``connections`` connections, for ``seconds``."""
    command = [*pinned(LOAD_CORE), wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + CASE_LIMIT, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-1000:]}")
    return parse_wrk(done.stdout)


async def _publish_beaches(url: str) -> None:
    bus = Bus(metrics=Metrics(), source="/bench")
    await bus.connect(url)
    try:
        example = BeachObservation.example()
        assert isinstance(example, BeachObservation)
        for number, site in enumerate(SITES):
            await bus.publish_durable(
                BeachObservation(
                    site=site,
                    observed_at=example.observed_at,
                    water_temperature=15.0 + number,
                    uv_index=example.uv_index,
                    location=example.location,
                ),
                provenance="sensor",
            )
    finally:
        await bus.drain()


def _fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read(), answer.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), exc.headers.get_content_type()


def _entity_answer(url: str, seconds: float) -> tuple[bytes, str] | str:
    """The gateway's answer for the entity once it is 200 (its body and media type), or why not."""
    deadline = time.monotonic() + seconds
    while True:
        status, body, media = _fetch(url)
        if status == 200:
            return body, media
        if time.monotonic() > deadline:
            return f"HTTP {status} after {seconds:g} s ({body[:200].decode(errors='replace')})"
        time.sleep(0.1)


@dataclass(frozen=True)
class Served:
    """One ``wrk`` run against one server, and the share of its core the server used meanwhile."""

    server: str
    round: int
    connections: int
    run: Wrk
    cpu: float


def _served(wrk: str, server: str, pid: int, url: str, connections: int, seconds: int, number: int) -> Served:
    """One measured ``wrk`` run against ``url``, served by process ``pid``."""
    before, began = cpu_seconds(pid), time.monotonic()
    run = run_wrk(wrk, url, connections, seconds)
    wall = time.monotonic() - began
    if run.errors:
        raise BenchError(
            f"{server}: {run.errors} of {run.requests} requests failed (non-2xx or socket errors)"
        )
    return Served(server, number, connections, run, (cpu_seconds(pid) - before) / wall)


def last_value_case(options: Options) -> Case:
    """Requests a second and latency of one entity's last value: the gateway and a plain handler."""
    wrk = wrk_command()
    smoke = options.smoke
    levels = (10,) if smoke else (10, 50)
    rounds = 1 if smoke else 2
    warm, seconds = (0, 1) if smoke else (2, 10)
    path = f"/api/v1/contracts/{CONTRACT}/entities/{ENTITY}"
    case = Case(
        LAST_TITLE,
        f"`GET {path}` with Debian's `wrk -t1 -cC -d{seconds}s --latency` (one thread, C connections kept "
        f"open, each sending its next request when the last is answered; {warm} s of warm-up first, not "
        "counted) on core 1; the server on core 0: a `citybus up` (the installed console script; "
        '`[auth] mode = "off"`, only `[adapters.gateway]`, no sandbox) into which the bench published '
        f"{len(SITES)} beach observations, against a plain aiohttp application answering the same path with "
        "the gateway's own response bytes from a dictionary (`bench/gateway_peers.py`, the floor of "
        f"aiohttp). {rounds} round(s), the two servers alternating. Target: >= 5,000 requests/s with p99 "
        "<= 10 ms.",
    )
    work = options.work / "gateway-last-value"
    with citybus_up(work / "up", GATEWAY_ONLY) as up:
        asyncio.run(_publish_beaches(up.nats_url))
        url = f"{up.gateway}{path}"
        answer = _entity_answer(url, 3.0 if smoke else 10.0)
        if isinstance(answer, str):
            body, media = json.dumps({"id": "x", "data": {}}).encode(), "application/json"
            missing: str | None = f"the gateway did not serve `{path}`: {answer}"
            log(f"gateway-last-value: {missing}; measuring the plain handler only")
        else:
            (body, media), missing = answer, None
        (work / "body").write_bytes(body)
        rss_before = rss_mb(up.process.pid)
        args = ("last-value", "--body", str(work / "body"), "--content-type", media)
        served: list[Served] = []
        with plain_server(work, "last-value", *args) as (pid, plain):
            sides = {"plain aiohttp": (pid, f"{plain}{path}")}
            if missing is None:
                sides = {"citybus gateway": (up.process.pid, url), **sides}
            for number in range(1, rounds + 1):
                order = list(sides.items()) if number % 2 else list(reversed(sides.items()))
                for connections in levels:
                    for side, (server, target) in order:
                        log(f"gateway-last-value: round {number}, {side}, {connections} connections")
                        if warm:
                            run_wrk(wrk, target, connections, warm)
                        served.append(_served(wrk, side, server, target, connections, seconds, number))
        rss_after = rss_mb(up.process.pid)
    _last_value_rows(case, served, levels)
    if missing is None and not smoke:
        log("gateway-last-value: profiling the gateway (cProfile)")
        _profile_last_value(case, work, wrk, path, levels[0])
    what = f"{LAST_TITLE}: requests/s with p99"
    target = f">= {TARGET_RPS:,.0f}/s with p99 <= {TARGET_P99_MS:g} ms"
    gateway = [s for s in served if s.server == "citybus gateway"]
    if missing is not None:
        case.targets.append(Target(what, target, f"not measured: {missing}", None))
        case.notes.append(f"Not measured on the gateway: {missing}.")
    else:
        met = [s for s in gateway if _met(s.run)]
        best = max(met or gateway, key=lambda s: s.run.rps)
        plain_run = _plain_of(served, best).run
        result = (
            f"met in {len(met)} of {len(gateway)} runs; "
            if met
            else f"missed in all {len(gateway)} runs; the fastest: "
        ) + (
            f"{best.run.rps:,.0f}/s, p99 {best.run.p99:.2f} ms at {best.connections} connections, the "
            f"gateway using {best.cpu:.0%} of its core (plain aiohttp in the same round: "
            f"{plain_run.rps:,.0f}/s, p99 {plain_run.p99:.2f} ms; {best.run.rps / plain_run.rps:.2f}x)"
        )
        case.targets.append(Target(what, target, result, bool(met)))
    case.notes += [
        f"The response: {len(body):,} bytes of `{media}`"
        + (
            " (a stand-in: the gateway served none)"
            if missing is not None
            else " (one CloudEvent, as the gateway serves it); the plain handler answers the same bytes with "
            "the same media type"
        )
        + ".",
        "wrk is closed-loop: with C connections, latency is about C / throughput, so a higher concurrency "
        "trades latency for throughput; the target is judged on every run.",
        "Server CPU: the share of core 0 the server's process used during the run. Below 100 %, something "
        "else ran on core 0 (the machine's other processes are not pinned away from it): requests per "
        "CPU second is then the figure that does not depend on them.",
        f"RSS of the `citybus up` process: {rss_before:.1f} MB before the requests, {rss_after:.1f} MB "
        "after.",
    ]
    return case


def _profiled(case: Case, title: str, profile: Path) -> None:
    """The top of a ``citybus up`` profile into the report."""
    if not profile.exists():
        raise BenchError("cProfile wrote no profile: citybus up did not exit normally after SIGTERM")
    stats = pstats.Stats(str(profile))
    case.profiles.append(
        (
            f"{title}: citybus's own functions by cumulative time",
            top_functions(stats, 12, by="cumulative", where=_own),
        )
    )
    case.profiles.append((f"{title}: top functions by own time", top_functions(stats, 15)))


def _own(place: str) -> bool:
    return place.startswith(("adapters/", "bus/")) and " <module>" not in place


def _profile_last_value(case: Case, work: Path, wrk: str, path: str, connections: int) -> None:
    """One more ``citybus up``, under cProfile, under ``wrk`` for a few seconds."""
    profile = work / "gateway.prof"
    seconds = 5
    options = ("-m", "cProfile", "-o", str(profile))
    with citybus_up(work / "up-profiled", GATEWAY_ONLY, python_options=options) as up:
        asyncio.run(_publish_beaches(up.nats_url))
        url = f"{up.gateway}{path}"
        if isinstance(_entity_answer(url, 10.0), str):
            return
        run = run_wrk(wrk, url, connections, seconds)
    title = (
        f"`citybus up` under cProfile, from spawning to stopped, with {seconds} s of wrk at {connections} "
        f"connections ({run.rps:,.0f} requests/s: cProfile slows every call down)"
    )
    _profiled(case, title, profile)


def _met(run: Wrk) -> bool:
    return run.rps >= TARGET_RPS and run.p99 <= TARGET_P99_MS


def _plain_of(served: list[Served], run: Served) -> Served:
    return next(
        s
        for s in served
        if s.server == "plain aiohttp" and s.round == run.round and s.connections == run.connections
    )


def _last_value_rows(case: Case, served: list[Served], levels: tuple[int, ...]) -> None:
    for connections in levels:
        for one in sorted(
            (s for s in served if s.connections == connections), key=lambda s: (s.round, s.server)
        ):
            run, gateway = one.run, one.server == "citybus gateway"
            plain = _plain_of(served, one).run
            case.rows.append(
                Row(
                    {
                        "server": one.server,
                        "connections": f"{connections}",
                        "round": f"{one.round}",
                        "requests": f"{run.requests:,}",
                        "requests/s": f"{run.rps:,.0f}",
                        "p50 ms": f"{run.p50:.2f}",
                        "p90 ms": f"{run.p90:.2f}",
                        "p99 ms": f"{run.p99:.2f}",
                        "server CPU": f"{one.cpu:.0%}",
                        "requests per CPU second": f"{run.rps / one.cpu:,.0f}" if one.cpu > 0 else "",
                        "requests/s ratio to plain": f"{run.rps / plain.rps:.2f}x",
                        "target": ">= 5,000/s, p99 <= 10 ms" if gateway else "",
                    },
                    met=_met(run) if gateway else None,
                )
            )
        for server, name in (("citybus gateway", "gateway"), ("plain aiohttp", "plain")):
            runs = [s.run for s in served if s.server == server and s.connections == connections]
            if runs:
                rps = median([r.rps for r in runs])
                p99 = median([r.p99 for r in runs])
                case.figures.append(Figure(f"{name} requests/s at {connections}", rps, "requests/s"))
                case.figures.append(
                    Figure(f"{name} p99 ms at {connections}", p99, "ms", higher_is_better=False)
                )


# -- SSE -------------------------------------------------------------------------------------------


@dataclass
class Witness:
    """When each message of the pattern reached a subscriber of the bench's own, by ``ce-id``."""

    seen: dict[str, float] = field(default_factory=dict)

    async def received(self, msg: Msg) -> None:
        """Note ``msg``'s arrival."""
        event_id = (msg.headers or {}).get("ce-id")
        if event_id:
            self.seen.setdefault(event_id, time.time())


@dataclass
class Side:
    """What one server did with the clients: delays, memory, CPU, and the load generator's state."""

    server: str
    connected: int
    failed: dict[str, int]
    connect_seconds: float
    window: float
    events: int
    """Messages on the pattern during the recorded window (the witness's)."""
    delivered: float
    """Of those, the share every client received."""
    delays: list[float]
    """Seconds, one per (client, event)."""
    first: list[float]
    """Seconds, per event: the delay of the first client to read it."""
    last: list[float]
    """Seconds, per event: the delay of the last client to read it (the fan-out's length)."""
    rss_before: float
    rss_after: float
    server_cpu: float
    """Share of a core the server's process used over the window."""
    received: int
    """(client, event) pairs read while recording."""
    burst: int
    """The most messages on the pattern within any 100 ms of the window."""
    client_cpu: float
    client_lag_p99: float
    """Seconds."""
    dropped: dict[str, int]
    ended: int


async def _read_line(stream: asyncio.StreamReader, what: str) -> bytes:
    try:
        async with asyncio.timeout(CASE_LIMIT):
            return await stream.readline()
    except TimeoutError:
        raise BenchError(f"{what}: nothing within {CASE_LIMIT:.0f} s") from None


Seek = Callable[[], Awaitable[None]]
"""Moves the replay to where a side's recording starts."""


@dataclass(frozen=True)
class Load:
    """How many clients, for how long, and the seconds left to settle."""

    clients: int
    steady: float
    settle: float


async def _measure(
    server: str, pid: int, url: str, load: Load, witness: Witness, work: Path, seek: Seek
) -> Side:
    """Connect the clients to ``url``, record the steady seconds, and work out the figures."""
    clients, steady = load.clients, load.steady
    await asyncio.sleep(load.settle)
    rss_before = rss_mb(pid)
    result = work / f"{server.replace(' ', '-')}-clients.json"
    stderr_path = work / f"{server.replace(' ', '-')}-clients.stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *pinned(LOAD_CORE),
            sys.executable,
            "-m",
            "bench.gateway_peers",
            "clients",
            "--url",
            url,
            "--clients",
            str(clients),
            "--result",
            str(result),
            cwd=ROOT,
            env=child_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = await _read_line(process.stdout, f"the clients of the {server}")
        if not line:
            raise BenchError(f"the clients of the {server} failed:\n{_tail(stderr_path)}")
        opened = json.loads(line)
        if opened["connected"] == 0:
            raise BenchError(f"no client could connect to the {server}: {opened['failed']}")
        await asyncio.sleep(load.settle)
        await seek()
        cpu, began = cpu_seconds(pid), time.time()
        process.stdin.write(b"mark\n")
        await process.stdin.drain()
        await asyncio.sleep(steady)
        rss_after, cpu, ended = rss_mb(pid), cpu_seconds(pid) - cpu, time.time()
        process.stdin.write(b"stop\n")
        await process.stdin.drain()
        if await _read_line(process.stdout, f"the clients of the {server}") != b"done\n":
            raise BenchError(f"the clients of the {server} failed:\n{_tail(stderr_path)}")
        async with asyncio.timeout(CASE_LIMIT):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    got: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    arrivals: dict[str, list[float]] = got["arrivals"]
    delays = [t - witness.seen[i] for i, times in arrivals.items() if i in witness.seen for t in times]
    spans = [
        (min(times) - witness.seen[i], max(times) - witness.seen[i])
        for i, times in arrivals.items()
        if i in witness.seen and times
    ]
    # what was published well inside the window, so every client had time to read it while recording
    expected = [i for i, at in witness.seen.items() if began + 1.0 <= at <= ended - 1.0]
    connected = int(opened["connected"])
    delivered = sum(min(len(arrivals.get(i, ())), connected) for i in expected)
    lags: list[float] = got["lags"]
    published = sorted(at for at in witness.seen.values() if began <= at <= ended)
    return Side(
        server=server,
        connected=connected,
        failed=dict(opened["failed"]),
        connect_seconds=float(opened["seconds"]),
        window=ended - began,
        events=len([i for i, at in witness.seen.items() if began <= at <= ended]),
        delivered=delivered / (len(expected) * connected) if expected else float("nan"),
        delays=delays,
        first=[first for first, _ in spans],
        last=[last for _, last in spans],
        rss_before=rss_before,
        rss_after=rss_after,
        server_cpu=cpu / (ended - began),
        received=sum(len(times) for times in arrivals.values()),
        burst=max(
            (bisect.bisect_right(published, at + BURST) - n for n, at in enumerate(published)), default=0
        ),
        client_cpu=float(got["cpu_seconds"]) / float(got["wall_seconds"]),
        client_lag_p99=percentile(lags, 99) if lags else 0.0,
        dropped=dict(got["dropped"]),
        ended=int(got["ended"]),
    )


async def _stream_missing(url: str) -> str | None:
    """Why the gateway has no SSE stream at ``url``, or ``None`` when it answers 200."""
    status, body, _ = await asyncio.to_thread(_head_of_stream, url)
    return None if status == 200 else f"HTTP {status} ({body[:200].decode(errors='replace')})"


def _head_of_stream(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, b"", answer.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), exc.headers.get_content_type()


async def _sse(
    up: Up, load: Load, work: Path, *, with_plain: bool = True
) -> tuple[dict[str, Side], str | None]:
    witness = Witness()
    nc = await nats.connect(up.nats_url)

    async def seek() -> None:
        request = json.dumps({"position": SEEK}).encode()
        answer = await nc.request(control_subject("replay", "sandbox", "seek"), request, timeout=10)
        if b'"error"' in answer.data:
            raise BenchError(f"the replay refused to seek: {answer.data.decode(errors='replace')}")

    try:
        await nc.subscribe(PATTERN, cb=witness.received)
        query = f"subject={quote(PATTERN, safe='')}"
        sides: dict[str, Side] = {}
        url = f"{up.gateway}/api/v1/stream?{query}"
        missing = await _stream_missing(url)
        if not with_plain:  # the gateway alone (profiled)
            if missing is None:
                sides["citybus gateway"] = await _measure(
                    "citybus gateway", up.process.pid, url, load, witness, work, seek
                )
            return sides, missing
        if missing is None:
            log(f"gateway-sse: {load.clients} clients of the citybus gateway")
            sides["citybus gateway"] = await _measure(
                "citybus gateway", up.process.pid, url, load, witness, work, seek
            )
        else:
            missing = f"the gateway did not serve `/api/v1/stream`: {missing}"
            log(f"gateway-sse: {missing}; measuring the plain handler only")
        log(f"gateway-sse: {load.clients} clients of the plain aiohttp handler")
        args = ("sse", "--nats", up.nats_url, "--subject", PATTERN)
        with plain_server(work, "sse", *args) as (pid, plain):
            sides["plain aiohttp"] = await _measure(
                "plain aiohttp", pid, f"{plain}/api/v1/stream?{query}", load, witness, work, seek
            )
        return sides, missing
    finally:
        await nc.close()


def sse_case(options: Options) -> Case:
    """Delivery delay and memory of SSE to many clients: the gateway and a plain handler."""
    load = Load(20, 5.0, 1.0) if options.smoke else Load(1_000, 35.0, SETTLE)
    clients, steady, speed = load.clients, load.steady, SMOKE_SPEED if options.smoke else SPEED
    case = Case(
        SSE_TITLE,
        f"{clients:,} clients of `GET /api/v1/stream?subject={PATTERN}` (one process of aiohttp connections "
        f"on core 1, `bench/gateway_peers.py`), recorded for {steady:g} s after all are connected and "
        f"{load.settle:g} s more, from the moment the replay is moved to 07:59 of the recorded day (`citybus "
        "sandbox seek`'s request: both servers are sent the same messages, 08:00's hourly readings among "
        "them); the server on core 0: a `citybus up` (the installed console script; the "
        f"sandbox replaying the Drammen day at {speed}x and the gateway in its account, as a default "
        "`citybus "
        'up` runs them; `[auth] mode = "off"`), then, with the same `citybus up` still replaying, a plain '
        "aiohttp SSE handler subscribing the pattern with nats-py and writing each message, framed once, to "
        "every client through a bounded queue per client (`bench/gateway_peers.py`). Delay = when a client "
        "read the event − when a nats-py subscriber of the bench (in the otherwise idle parent process) "
        "received the message (see the module doc: the replay's `time` is not the publish time). RSS: the "
        "server process's (`citybus up`: the gateway with the replay in it; the plain handler's own), "
        f"{load.settle:g} s before the clients connect and at the end of the recorded window.",
    )
    work = options.work / "gateway-sse"
    with citybus_up(work / "up", WITH_SANDBOX.format(speed=speed)) as up:
        sides, missing = asyncio.run(_sse(up, load, work))
    if missing is None and not options.smoke:
        log("gateway-sse: profiling the gateway (cProfile)")
        _profile_sse(case, work / "profiled", Load(load.clients, PROFILED, load.settle), speed)
    for side in sides.values():
        per_client = (side.rss_after - side.rss_before) / side.connected
        gateway = side.server == "citybus gateway"
        p99 = percentile(side.delays, 99) * 1000 if side.delays else float("nan")
        met = p99 <= TARGET_DELAY_MS and side.connected == clients and not side.dropped
        case.rows.append(
            Row(
                {
                    "server": side.server,
                    "clients": f"{side.connected:,} of {clients:,}",
                    "events/s": f"{side.events / side.window:.1f}",
                    "delivered": f"{side.delivered:.1%}",
                    "p50 ms": _ms(side.delays, 50),
                    "p99 ms": _ms(side.delays, 99),
                    "max ms": _ms(side.delays, 100),
                    "first client ms (median)": _ms(side.first, 50),
                    "last client ms (median)": _ms(side.last, 50),
                    "RSS before MB": f"{side.rss_before:.1f}",
                    "RSS with clients MB": f"{side.rss_after:.1f}",
                    "MB per client": f"{per_client:.3f}",
                    "server CPU": f"{side.server_cpu:.0%}",
                    "server CPU µs per delivered event": (
                        f"{side.server_cpu * side.window / side.received * 1e6:.0f}" if side.received else ""
                    ),
                    "largest burst": f"{side.burst}",
                    "clients' CPU": f"{side.client_cpu:.0%}",
                    "clients' loop lag p99 ms": f"{side.client_lag_p99 * 1000:.1f}",
                    "target": "p99 <= 100 ms" if gateway else "",
                },
                met=met if gateway else None,
            )
        )
        name = "gateway" if gateway else "plain"
        if side.delays:
            case.figures.append(Figure(f"{name} p99 delay ms", p99, "ms", higher_is_better=False))
        case.figures.append(Figure(f"{name} MB per client", per_client, "MB", higher_is_better=False))
        if side.failed:
            case.notes.append(f"{side.server}: clients that could not connect: {side.failed}.")
        if side.dropped:
            case.notes.append(f"{side.server}: clients dropped: {side.dropped}.")
        if side.client_cpu > 0.85 or side.client_lag_p99 > 0.02:
            case.notes.append(
                f"{side.server}: the load generator was busy ({side.client_cpu:.0%} of its core, its "
                f"event loop up to {side.client_lag_p99 * 1000:.0f} ms late at p99): the delays include "
                "its own lag."
            )
        if not side.events:
            case.notes.append(f"{side.server}: nothing was published on {PATTERN} during the window.")
    what = f"{SSE_TITLE}: p99 delivery delay"
    target = f"p99 <= {TARGET_DELAY_MS:g} ms, memory bounded"
    gateway_side = sides.get("citybus gateway")
    if gateway_side is None:
        case.targets.append(Target(what, target, f"not measured: {missing}", None))
        case.notes.append(f"Not measured on the gateway: {missing}.")
    else:
        plain_side = sides["plain aiohttp"]
        p99 = percentile(gateway_side.delays, 99) * 1000 if gateway_side.delays else float("nan")
        per_client = (gateway_side.rss_after - gateway_side.rss_before) / gateway_side.connected
        result = (
            f"{_ms(gateway_side.delays, 99)} ms p99 to {gateway_side.connected:,} clients "
            f"(plain aiohttp {_ms(plain_side.delays, 99)} ms); RSS {per_client * 1000:.0f} kB per client"
        )
        met = p99 <= TARGET_DELAY_MS and gateway_side.connected == clients and not gateway_side.dropped
        case.targets.append(Target(what, target, result, met))
    case.notes += [
        "events/s: messages on the pattern per second during the recorded window (the replay's rate, "
        "as the bench's own subscriber saw it); first and last client: per event, the delay of the first "
        "and of the last client to read it, the median over the events (last − first is the fan-out); "
        "delivered: of the messages published between 1 s after the window opened and 1 s before it "
        "closed, the share that every client received.",
        "Server CPU: the share of its core the server's process used over the window (for `citybus up`, "
        "the replay's share too). The clients' CPU and event-loop lag say whether the load generator kept "
        "up: when it is near a full core, the delays are its own as much as the server's.",
    ]
    return case


def _profile_sse(case: Case, work: Path, load: Load, speed: int) -> None:
    """One more ``citybus up``, under cProfile, with the clients connected for a while."""
    work.mkdir(parents=True)
    profile = work / "gateway.prof"
    options = ("-m", "cProfile", "-o", str(profile))
    with citybus_up(work / "up", WITH_SANDBOX.format(speed=speed), python_options=options) as up:
        sides, _ = asyncio.run(_sse(up, load, work, with_plain=False))
    side = sides.get("citybus gateway")
    if side is None:
        return
    title = (
        f"`citybus up` under cProfile, from spawning to stopped, with {side.connected:,} clients recorded "
        f"for {load.steady:g} s (p99 delay {_ms(side.delays, 99)} ms: cProfile slows every call down)"
    )
    _profiled(case, title, profile)


def _ms(values: list[float], point: float) -> str:
    return f"{percentile(values, point) * 1000:.1f}" if values else "no events"


CASES: Final = [
    Spec("gateway-last-value", LAST_TITLE, last_value_case),
    Spec("gateway-sse", SSE_TITLE, sse_case),
]
