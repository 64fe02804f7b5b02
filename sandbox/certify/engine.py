"""One certification run: a private sandbox, the adapter in a process of its own, and what it did.

For each run (the clean one, then one per preset) :func:`certify_run`

1. writes a ``citybus.toml`` of its own into the run's directory
   (:func:`sandbox.certify.runs.private_config`): nothing of a running ``citybus up`` is touched;
2. starts that city in this process (:class:`bus.runtime.Runtime`, as ``citybus up`` does);
3. starts the adapter in a child process that joins the sandbox as a pilot
   (:mod:`sandbox.certify.child`) and waits until it says it is ready;
4. observes, as the sandbox's operator, what the replay sends that the adapter consumes (its
   inputs), whatever the adapter publishes (its outputs, on any subject it can reach) and its dead
   letters, each stamped with the replay's clock when it arrives;
5. resumes the replay, and while it plays polls the child's ``/proc`` (peak RSS, CPU), restarts
   the broker or slows the adapter's link when the preset says so;
6. when the replay is done, waits for the last outputs, stops the child (SIGTERM) and the city, and
   reads back the child's probe lines, its log (failures, refusals) and the ground truth, into a
   :class:`~sandbox.certify.model.RunRecord`.

Decisions, and why:

* **The replay's clock is the run's clock.** Every time recorded is the replay's time when certify
  saw it (from the replay's clock ticks, extrapolated at its speed between them), so thresholds
  are in replayed seconds and mean the same at any ``--speed``.
* **No shift to now.** The recorded day keeps its 2018 times: the same seed gives the same ground
  truth, ``ce-id``s and times, and a report can be compared with the one before.
* **The broker restart is the private server's own.** It is stopped and started on the same port
  (:class:`bus.server.EmbeddedServer` keeps a port it picked), so every client reconnects as it
  would to a production server coming back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from bus import Bus, Metrics
from bus.access.login import client_login
from bus.config import Config, load_config
from bus.errors import CityBusError
from bus.process import parent_death_signal
from bus.runtime import Runtime
from bus.subjects import clock_subject, control_subject
from sandbox.certify.model import BrokerFault, Crash, Resources, RunRecord
from sandbox.certify.observe import Observer, ProcessUse, ReplayClock, read_child
from sandbox.certify.proxy import SlowLink
from sandbox.certify.runs import REPLAY, RunSpec, Scope, Target, write_config
from sandbox.certify.suite import Restart
from sandbox.contents import recording_extent

__all__ = ["READY_TIMEOUT", "certify_run"]

READY_TIMEOUT = 60.0
"""Seconds an adapter has to say it is ready before its run is given up."""
_SETTLE = 1.0  # wall seconds without a new output before a finished run is ended
_SETTLE_MAX = 6.0
_STOP_TIMEOUT = 15.0
_POLL = 0.1


async def certify_run(
    target: Target,
    spec: RunSpec,
    scope: Scope,
    directory: Path,
    *,
    progress: Callable[[str], None] = lambda _line: None,
    ready_timeout: float = READY_TIMEOUT,
) -> RunRecord:
    """Run ``target`` once against the replay as ``spec`` says, and record what it did; a
    :class:`CityBusError` when the adapter is not ready within ``ready_timeout`` seconds."""
    config_file = write_config(target, spec, scope, directory)
    config = load_config(config_file, environ={})  # the user's CITYBUS_* variables are not this city's
    city_log = (directory / "city.log").open("w", encoding="utf-8")
    logger = structlog.wrap_logger(
        structlog.PrintLogger(city_log),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    runtime = Runtime(config, logger=logger, config_file=config_file)
    stop = asyncio.Event()
    city = asyncio.create_task(runtime.run(stop), name="certify city")
    try:
        await _started(runtime, city)
        return await _observe(
            runtime, target, spec, scope, directory, config_file, config, progress, logger, ready_timeout
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(city, 30)
        city_log.close()


async def _started(runtime: Runtime, city: asyncio.Task[None]) -> None:
    ready = asyncio.create_task(runtime.ready.wait())
    await asyncio.wait({ready, city}, return_when=asyncio.FIRST_COMPLETED)
    if city.done():
        ready.cancel()
        city.result()  # the start-up's error
        raise CityBusError("the private sandbox stopped while it started")


async def _observe(
    runtime: Runtime,
    target: Target,
    spec: RunSpec,
    scope: Scope,
    directory: Path,
    config_file: Path,
    config: Config,
    progress: Callable[[str], None],
    logger: Any,
    ready_timeout: float,
) -> RunRecord:
    began = time.monotonic()
    clock = ReplayClock()
    observer = Observer(target.adapted, clock, began)
    bus = Bus(metrics=Metrics(), logger=logger, name="citybus-certify")
    await client_login(config, default_user="operator", default_account="SANDBOX").connect(bus, config)
    link: SlowLink | None = None
    child: asyncio.subprocess.Process | None = None
    events = directory / "adapter-events.jsonl"
    stderr = (directory / "adapter.log").open("wb")
    try:
        await bus.subscribe_raw(clock_subject(REPLAY), observer.on_tick)
        for pattern in ("city.public.>", "city.internal.>"):  # a pilot reads and writes no personal data
            await bus.subscribe_raw(pattern, observer.on_message)
        await bus.flush()
        url = None
        if spec.slow is not None:
            assert runtime.server is not None
            link = SlowLink("127.0.0.1", runtime.server.port)
            await link.start()
            url = link.url
        argv = [sys.executable, "-m", "sandbox.certify.child", "--config", str(config_file)]
        argv += ["--instance", target.instance, "--events", str(events)]
        if url is not None:
            argv += ["--url", url]
        # SIGTERM to the adapter when certify dies (a CI job's timeout): no process left behind
        child = await asyncio.create_subprocess_exec(
            *argv, stdout=stderr, stderr=stderr, preexec_fn=parent_death_signal()
        )
        proc = ProcessUse(child.pid)
        await _ready(child, events, directory, ready_timeout)
        progress("adapter ready, replay playing")
        await bus.request_raw(control_subject("replay", REPLAY, "resume"), b"{}", timeout=10)
        record = RunRecord(preset=spec.name, seed=spec.seed, origin=_origin(clock), end=_origin(clock))
        await _play(runtime, spec, scope, clock, observer, child, proc, link, record, progress)
        settle_until = time.monotonic() + _SETTLE_MAX
        observer.last_output = max(observer.last_output, time.monotonic())  # wait _SETTLE at least
        # the last outputs: until none came for a moment (an adapter may answer its last input late)
        while time.monotonic() < settle_until and time.monotonic() - observer.last_output < _SETTLE:  # noqa: ASYNC110
            await asyncio.sleep(_POLL)
        proc.poll()
        record.end = clock.at(time.monotonic()) or record.origin
        record.exit_code = child.returncode
        await _stop(child)
        record.resources = Resources(peak_rss_bytes=proc.peak_rss, cpu_seconds=proc.cpu)
    finally:
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
        stderr.close()
        if link is not None:
            await link.close()
        with contextlib.suppress(Exception):
            await bus.drain()
    record.wall_seconds = time.monotonic() - began
    record.inputs = observer.inputs
    record.outputs = observer.outputs
    record.dead_letters = observer.dead_letters
    read_child(record, events, directory / "adapter.log", clock, began)
    truth = directory / "truth.jsonl"
    if truth.exists():
        record.truth = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines() if line]
    return record


def _origin(clock: ReplayClock) -> datetime:
    """The replay's time when it started: its first tick's, paused at the window's start."""
    return clock.samples[0][1].time if clock.samples else datetime.now(UTC)


async def _ready(child: asyncio.subprocess.Process, events: Path, directory: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.returncode is not None:
            raise CityBusError(
                f"the adapter's process ended (exit status {child.returncode}) before it was ready: "
                + _tail(directory / "adapter.log")
            )
        if _said_ready(events):
            return
        await asyncio.sleep(0.05)
    raise CityBusError(
        f"the adapter was not ready within {timeout:.0f} s (it never called ctx.ready()): "
        + _tail(directory / "adapter.log")
    )


def _said_ready(events: Path) -> bool:
    return events.exists() and '"ready"' in events.read_text(encoding="utf-8")


def _tail(log: Path, lines: int = 3) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(text[-lines:]) or "it wrote nothing"


async def _play(
    runtime: Runtime,
    spec: RunSpec,
    scope: Scope,
    clock: ReplayClock,
    observer: Observer,
    child: asyncio.subprocess.Process,
    proc: ProcessUse,
    link: SlowLink | None,
    record: RunRecord,
    progress: Callable[[str], None],
) -> None:
    """Poll while the replay plays: resources, the broker restart, the slow link, the end."""
    length = _length(scope)
    limit = time.monotonic() + (length / scope.speed if scope.speed else 60.0) * 3 + 60.0
    restarted = spec.restart is None
    slow_started: datetime | None = None
    reported = -1
    while time.monotonic() < limit:
        proc.poll()
        tick = clock.last
        now = clock.at(time.monotonic())
        if tick is not None and tick.state == "finished":
            break
        if now is not None:
            elapsed = (now - record.origin).total_seconds()
            quarter = int(elapsed / length * 4) if length else 0
            if quarter != reported and 1 <= quarter <= 3:
                reported = quarter
                seen = f"{len(observer.inputs)} inputs, {len(observer.outputs)} outputs"
                progress(f"{quarter * 25}% of the replay: {seen}")
            if not restarted and spec.restart is not None and elapsed >= spec.restart.at:
                restarted = True
                await _restart_broker(runtime, spec.restart, clock, record, progress)
            if link is not None and spec.slow is not None:
                until = spec.slow.start + (
                    spec.slow.duration if spec.slow.duration is not None else float("inf")
                )
                slow = spec.slow.start <= elapsed < until
                if slow and slow_started is None:
                    slow_started = now
                    link.latency = spec.slow.latency
                elif not slow and slow_started is not None and link.latency:
                    link.latency = 0.0
                    record.broker_faults.append(
                        BrokerFault(
                            kind="slow", start=slow_started, end=now, detail={"latency": spec.slow.latency}
                        )
                    )
        if child.returncode is not None and not any(c.process_died for c in record.crashes):
            at = clock.at(time.monotonic()) or record.origin
            record.crashes.append(
                Crash(
                    at=at,
                    wall=0.0,
                    error=f"the process exited with status {child.returncode}",
                    process_died=True,
                )
            )
        await asyncio.sleep(_POLL)
    else:
        raise CityBusError(f"run {spec.name}: the replay did not finish in time (stuck at {clock.last})")
    if link is not None and spec.slow is not None and slow_started is not None and link.latency:
        link.latency = 0.0
        end = clock.at(time.monotonic()) or slow_started
        record.broker_faults.append(
            BrokerFault(kind="slow", start=slow_started, end=end, detail={"latency": spec.slow.latency})
        )


def _length(scope: Scope) -> float:
    if scope.duration is not None:
        return scope.duration
    first, last = recording_extent([scope.recording])
    return max((last - first) / 1e9 - scope.start, 1.0)


async def _restart_broker(
    runtime: Runtime, restart: Restart, clock: ReplayClock, record: RunRecord, progress: Callable[[str], None]
) -> None:
    server = runtime.server
    assert server is not None
    start = clock.at(time.monotonic()) or record.origin
    progress(f"stopping the broker for {restart.down:g} s")
    await server.stop()
    await asyncio.sleep(restart.down)
    await server.start()
    end = clock.at(time.monotonic()) or start  # back once it listens again, however long that took
    record.broker_faults.append(
        BrokerFault(kind="restart", start=start, end=end, detail={"down": restart.down})
    )
    progress("broker back")


async def _stop(child: asyncio.subprocess.Process) -> None:
    if child.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(child.wait(), _STOP_TIMEOUT)
    except TimeoutError:
        child.kill()
        await child.wait()
