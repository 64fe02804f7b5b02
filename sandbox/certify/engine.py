"""One certification run: a private sandbox, the adapter in a process of its own, and what it did.

For each run (the clean one, then one per preset) :func:`certify_run`

1. writes a ``citybus.toml`` of its own into the run's directory: an embedded nats-server with
   access control in a data directory of its own (nothing of a running ``citybus up`` is
   touched), no ops port, JSON logs, ``[tracing] export = false`` (the trace context is carried,
   nothing recorded), a ``sandbox-replay`` named ``replay`` that starts **paused**, does not loop
   or shift times, leaves out what the adapter itself produces (the recorded day holds the city's
   own outputs of a built-in service) and applies the preset's fault plan with a ground truth file;
   and the adapter's own section, from the user's configuration;
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
* **Only ``/proc``.** Resource figures come from the kernel (``VmHWM``, the peak resident set it
  keeps for the process, and ``utime + stime``), polled; certify runs on Linux, as citybus does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import structlog

from adapters.clock import ClockTick
from bus import Bus, Metrics, RawMessage
from bus.access.login import client_login
from bus.config import Config, load_config
from bus.errors import CityBusError
from bus.runtime import Runtime
from bus.subjects import clock_subject, control_subject, dead_letter_filter, matches
from bus.tracing import trace_id
from sandbox.certify.model import (
    Adapted,
    BrokerFault,
    Crash,
    DeadLetterSeen,
    DetectionSpec,
    Handled,
    Refusal,
    Resources,
    RunRecord,
    Seen,
)
from sandbox.certify.proxy import SlowLink
from sandbox.certify.suite import Restart, Slow
from sandbox.contents import recording_extent

__all__ = [
    "READY_TIMEOUT",
    "REPLAY",
    "RunSpec",
    "Scope",
    "Target",
    "certify_run",
    "private_config",
    "target_of",
]

REPLAY = "replay"
"""The name of the private sandbox's replay instance (its clock is the adapter's)."""

_TICK = msgspec.json.Decoder(ClockTick)
READY_TIMEOUT = 60.0
"""Seconds an adapter has to say it is ready before its run is given up."""
_SETTLE = 1.0  # wall seconds without a new output before a finished run is ended
_SETTLE_MAX = 6.0
_STOP_TIMEOUT = 15.0
_POLL = 0.1


@dataclass(frozen=True, slots=True)
class Scope:
    """What every run of a suite replays, and how fast."""

    recording: Path
    speed: float
    start: float = 0.0
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run: the clean one (no plan, no restart, no slow link) or one preset."""

    name: str
    seed: int
    plan: str = ""
    """A fault plan's TOML text (docs/faults.md); empty: none."""
    restart: Restart | None = None
    slow: Slow | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """The adapter under certification: its instance name, its configuration section, what it is."""

    instance: str
    section: Mapping[str, Any]
    adapted: Adapted


@dataclass
class _Clock:
    """The replay's clock as certify's observer follows it: ticks, and the time at any moment."""

    samples: list[tuple[float, ClockTick]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, tick: ClockTick) -> None:
        self.samples.append((time.monotonic(), tick))
        self.changed.set()
        self.changed = asyncio.Event()

    @property
    def last(self) -> ClockTick | None:
        return self.samples[-1][1] if self.samples else None

    def at(self, mono: float) -> datetime | None:
        """The replay's time at monotonic ``mono`` (``None`` before its first tick)."""
        if not self.samples:
            return None
        index = max(bisect_right(self.samples, mono, key=lambda s: s[0]) - 1, 0)
        when, tick = self.samples[index]
        rate = tick.speed if tick.state == "playing" else 0.0
        return tick.time + timedelta(seconds=max(mono - when, 0.0) * rate)


class _Observer:
    """What certify sees on the bus, as the sandbox's operator."""

    def __init__(self, adapted: Adapted, clock: _Clock, began: float) -> None:
        self.adapted = adapted
        self.clock = clock
        self.began = began
        self.inputs: list[Seen] = []
        self.outputs: list[Seen] = []
        self.dead_letters: list[DeadLetterSeen] = []
        self.last_output = time.monotonic()

    def _seen(self, raw: RawMessage, mono: float) -> Seen:
        headers = raw.headers or {}
        at = self.clock.at(mono) or datetime.now(UTC)
        ce_time = _parse_time(headers.get("ce-time", ""))
        return Seen(
            at=at,
            wall=mono - self.began,
            subject=raw.subject,
            entity=raw.subject.rsplit(".", 1)[-1],
            ce_id=headers.get("ce-id", ""),
            ce_time=ce_time,
            ce_source=headers.get("ce-source", ""),
            ce_type=headers.get("ce-type", ""),
            trace=trace_id(headers),
            body=bytes(raw.data),
            content_type=headers.get("content-type", "application/json"),
        )

    async def on_message(self, raw: RawMessage) -> None:
        """An input (not the adapter's, on a subject it consumes), an output or a dead letter of it.

        One handler for both: nats-py runs each subscription's handler in a task of its own, so with
        two an output could be stamped before the input that caused it."""
        mono = time.monotonic()
        headers = raw.headers or {}
        if headers.get("ce-source") != self.adapted.source:
            if any(matches(p, raw.subject) for p in self.adapted.consumed_subjects):
                self.inputs.append(self._seen(raw, mono))
            return
        if matches(dead_letter_filter(), raw.subject):
            at = self.clock.at(mono) or datetime.now(UTC)
            self.dead_letters.append(_dead_letter(raw, at, mono - self.began))
            return
        self.last_output = mono
        self.outputs.append(self._seen(raw, mono))

    async def on_tick(self, raw: RawMessage) -> None:
        try:
            self.clock.add(_TICK.decode(raw.data))
        except msgspec.DecodeError:
            return


def _dead_letter(raw: RawMessage, at: datetime, wall: float) -> DeadLetterSeen:
    try:
        body = json.loads(raw.data)
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    return DeadLetterSeen(
        at=at,
        wall=wall,
        reason=str(body.get("reason", raw.subject.rsplit(".", 1)[-1])),
        original_subject=str(body.get("subject", "")),
        original_id=str((body.get("headers") or {}).get("ce-id", ""))
        if isinstance(body.get("headers"), dict)
        else "",
    )


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def private_config(target: Target, spec: RunSpec, scope: Scope, directory: Path) -> dict[str, Any]:
    """The run's ``citybus.toml`` as data (written next to its files for whoever looks)."""
    replay: dict[str, Any] = {
        "adapter": "sandbox-replay",
        "files": [str(scope.recording)],
        "speed": scope.speed,
        "loop": False,
        "start": scope.start,
        "shift_to_now": False,
        "paused": True,
        "clock_interval": 0.25,
        "exclude": list(target.adapted.produced_subjects),
    }
    if scope.duration is not None:
        replay["duration"] = scope.duration
    if spec.plan:
        plan = directory / "plan.toml"
        plan.write_text(spec.plan, encoding="utf-8")
        replay["faults"] = str(plan)
        replay["truth"] = str(directory / "truth.jsonl")
    section = {k: v for k, v in target.section.items() if k not in ("enabled", "clock", "account")}
    section["enabled"] = False  # the runtime does not run it: the child joins as a pilot
    return {
        "server": {"data_dir": str(directory / "data")},
        "ops": {"enabled": False},
        "log": {"format": "json", "level": "info"},
        "auth": {"mode": "on"},
        "tracing": {"enabled": True, "export": False},
        "adapters": {REPLAY: replay, target.instance: section},
    }


def _write_config(target: Target, spec: RunSpec, scope: Scope, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "citybus.toml"
    config_file.write_text(_toml(private_config(target, spec, scope, directory)), encoding="utf-8")
    return config_file


def _toml(data: Mapping[str, Any]) -> str:
    """``data`` as TOML (tables of scalars and lists, as :func:`private_config` makes)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise CityBusError(f"cannot write {v!r} into the run's citybus.toml")

    def table(prefix: str, items: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in items.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in items.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in tables.items():
            table(f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k), v)

    table("", data)
    return "\n".join(lines) + "\n"


class _Proc:
    """The child's resource use from ``/proc``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self.cpu = 0.0
        self._tick = os.sysconf("SC_CLK_TCK")

    def poll(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            self.cpu = max(self.cpu, (int(fields[11]) + int(fields[12])) / self._tick)


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
    config_file = _write_config(target, spec, scope, directory)
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
    clock = _Clock()
    observer = _Observer(target.adapted, clock, began)
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
        child = await asyncio.create_subprocess_exec(*argv, stdout=stderr, stderr=stderr)
        proc = _Proc(child.pid)
        await _ready(child, events, directory, ready_timeout)
        progress("adapter ready, replay playing")
        await bus.request_raw(control_subject("replay", REPLAY, "resume"), b"{}", timeout=10)
        record = RunRecord(preset=spec.name, seed=spec.seed, origin=_origin(clock), end=_origin(clock))
        await _play(runtime, spec, scope, clock, observer, child, proc, link, record, progress)
        settle_until = time.monotonic() + _SETTLE_MAX
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
    _read_child(record, events, directory / "adapter.log", clock, began)
    truth = directory / "truth.jsonl"
    if truth.exists():
        record.truth = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines() if line]
    return record


def _origin(clock: _Clock) -> datetime:
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
    clock: _Clock,
    observer: _Observer,
    child: asyncio.subprocess.Process,
    proc: _Proc,
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
    runtime: Runtime, restart: Restart, clock: _Clock, record: RunRecord, progress: Callable[[str], None]
) -> None:
    server = runtime.server
    assert server is not None
    start = clock.at(time.monotonic()) or record.origin
    progress(f"stopping the broker for {restart.down:g} s")
    await server.stop()
    await asyncio.sleep(restart.down)
    await server.start()
    end = start + timedelta(seconds=restart.down * (clock.last.speed if clock.last else 0.0))
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


def _read_child(record: RunRecord, events: Path, log: Path, clock: _Clock, began: float) -> None:
    """The probe's lines and the child's log: what it handled, its failures and refusals."""
    origin = record.origin
    if events.exists():
        for line in events.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError):
                event = json.loads(line)
                if "ready" in event:
                    continue
                ended = float(event["wall"]) + float(event["seconds"])
                record.handled.append(
                    Handled(
                        done=clock.at(ended),
                        wall=float(event["wall"]) - began,
                        seconds=float(event["seconds"]),
                        subject=str(event["subject"]),
                        ce_id=str(event["ce_id"]),
                        trace=str(event["trace"]),
                        error=str(event["error"]),
                    )
                )
    if not log.exists():
        return
    offset = time.time() - time.monotonic()  # wall clock - monotonic clock, to place log lines
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    record.log_tail = lines[-20:]
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        stamp = _parse_time(str(event.get("timestamp", "")))
        mono = stamp.timestamp() - offset if stamp is not None else time.monotonic()
        at = clock.at(mono) or origin
        if event.get("event") == "adapter failed, restarting":
            record.crashes.append(Crash(at=at, wall=mono - began, error=str(event.get("error", ""))))
        elif event.get("event") == "the broker refused: permissions violation":
            record.refusals.append(
                Refusal(
                    at=at,
                    wall=mono - began,
                    operation=str(event.get("operation", "")),
                    subject=str(event.get("subject", "")),
                )
            )
    record.crashes.sort(key=lambda c: c.at)


def target_of(name: str, config: Config) -> Target:
    """The adapter ``name`` (an installed adapter or a configured instance of ``config``) as certify
    runs it: its section, what it consumes and produces, and what it says it detects."""
    from adapters.cli import find_instance  # the command line's own lookup, with its errors
    from bus.subjects import contract_filter

    instance = find_instance(name, config)
    adapter = instance.create()
    section = dict(config.adapters.get(instance.name) or {"adapter": instance.adapter.name})
    consumed = adapter.consumed()
    produced = adapter.produced()
    detections = [
        DetectionSpec(
            contract=d.contract.__contract__.name,
            field=d.field,
            kinds=dict(d.kinds),
            entity=d.entity or d.contract.__contract__.key,
            time=d.time or "",
        )
        for d in instance.adapter.detects
    ]
    adapted = Adapted(
        adapter=instance.adapter.name,
        instance=instance.name,
        source=f"/adapters/{instance.name}",
        consumes=[c.__contract__.name for c in consumed],
        produces=[c.__contract__.name for c in produced],
        consumed_subjects=[contract_filter(c) for c in consumed],
        produced_subjects=[contract_filter(c) for c in produced],
        detections=detections,
    )
    return Target(instance=instance.name, section=section, adapted=adapted)
