"""The journey planner as a user runs it, and requests to it over the bus: for :mod:`bench.journey`.

:func:`planner_up` starts ``citybus --log-format json up`` (the installed console script, as
:mod:`bench.startup` starts it) in a directory of its own, with a ``citybus.toml`` that runs only
the ``journey-planner`` adapter on the shipped NSB feed, access control as it is by default (on,
for the embedded nats-server), its data, ``HOME`` and XDG directories inside that directory and no
``CITYBUS_*`` variables; or the default ``citybus up`` (the sandbox and the planner), as a user
runs it. :func:`ask_all` connects as ``citybus journey`` does (the ``public`` user,
found through the running instance's ``instance.json``) and sends the requests one after another
with ``bus.request(JourneyRequest(...), JourneyPlan)``, timing each round trip.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.common import child_env
from bench.startup import citybus_command, wait_ready
from bus import Bus, Metrics
from bus.access.login import client_login
from bus.config import load_config
from contracts import JourneyPlan, JourneyRequest

__all__ = [
    "SETUPS",
    "Answered",
    "Batch",
    "Up",
    "ask_all",
    "cpu_seconds",
    "journey_metrics",
    "loaded_seconds",
    "planner_up",
    "rss_mb",
]

TIMEOUT: Final = 30.0
"""Seconds a request may wait for its answer (a bound against hangs: the first of a day builds its
network)."""


@dataclass(frozen=True)
class Up:
    """A running ``citybus up``: its process, seconds from spawning to ready, its directory and
    environment (where a client finds it), and its log."""

    process: subprocess.Popen[bytes]
    ready: float
    directory: Path
    env: dict[str, str]
    stderr: Path


@dataclass(frozen=True)
class Answered:
    """One request's round trip over the bus: seconds from sending to the decoded answer, and it."""

    seconds: float
    plan: JourneyPlan


@dataclass(frozen=True)
class Batch:
    """Requests sent one after another: each round trip, and the CPU seconds ``citybus up`` used
    meanwhile (every thread of its process; its nats-server not counted)."""

    answered: list[Answered]
    cpu: float


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` (every thread), so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid``, in MB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


SETUPS: Final = ("planner only", "default", "baseline")
"""What a :func:`planner_up` runs: only the journey planner; the default ``citybus up`` (the sandbox
replaying the Drammen day at 60x and the journey planner on the sandbox's feed, following its live
train calls and bike racks); or the planner's configuration with the planner disabled."""


def _config(data: Path, feed: Path, setup: str) -> str:
    head = f'# written by bench/journey.py: {setup}\n[server]\ndata_dir = "{data}"\n\n[ops]\nport = 0\n'
    if setup == "default":
        return head
    enabled = "enabled = false\n" if setup == "baseline" else ""
    return (
        f'{head}\n[adapters.journey-planner]\nadapter = "journey-planner"\naccount = "sandbox"\n'
        f'clock = "wall"\n{enabled}\n[adapters.journey-planner.timetable]\nfile = "{feed}"\n'
    )


@contextlib.contextmanager
def planner_up(
    directory: Path, feed: Path, setup: str, *, python_options: tuple[str, ...] = ()
) -> Iterator[Up]:
    """``citybus up`` running ``setup`` (one of :data:`SETUPS`) until the block ends; ``python_options``
    go in front of the script (``-m cProfile -o FILE``)."""
    directory.mkdir(parents=True)
    data = directory / "data"
    (directory / "citybus.toml").write_text(_config(data, feed, setup), encoding="utf-8")
    env = child_env(
        HOME=str(directory), XDG_DATA_HOME=str(directory / "xdg"), XDG_CONFIG_HOME=str(directory / "xdg")
    )
    stderr_path = directory / "stderr"
    python, script = citybus_command()
    with stderr_path.open("wb") as stderr:
        began = time.monotonic()
        process = subprocess.Popen(
            [python, *python_options, script, "--log-format", "json", "up"],
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        ready = wait_ready(process, data / "instance.json", began, stderr_path) - began
        yield Up(process, ready, directory, env, stderr_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def loaded_seconds(up: Up) -> float | None:
    """The seconds the adapter's ``timetable loaded`` log line says loading took, if it logged one."""
    for line in up.stderr.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry = json.loads(line)
            if entry["event"] == "timetable loaded":
                return float(entry["seconds"])
    return None


def journey_metrics(up: Up) -> dict[str, float]:
    """The journey planner's samples on the ops port's ``/metrics`` (``name{labels}`` → value)."""
    url = json.loads((up.directory / "data" / "instance.json").read_text())["ops_url"]
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:  # noqa: S310 (loopback, ours)
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("citybus_journey_"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                samples[name] = float(value)
    return samples


async def ask_all(up: Up, batches: Sequence[Sequence[JourneyRequest]]) -> list[Batch]:
    """Each batch's requests, one after another, as the ``public`` user: their round trips."""
    config = load_config(up.directory / "citybus.toml", environ=up.env)
    login = client_login(config, default_user="public")
    bus = Bus(metrics=Metrics(), source="/bench", request_timeout=TIMEOUT)
    await login.connect(bus, config)
    try:
        done: list[Batch] = []
        for batch in batches:
            times: list[Answered] = []
            cpu = cpu_seconds(up.process.pid)
            for request in batch:
                started = time.perf_counter()
                event = await bus.request(request, JourneyPlan)
                times.append(Answered(time.perf_counter() - started, event.data))
            done.append(Batch(times, cpu_seconds(up.process.pid) - cpu))
        return done
    finally:
        await bus.drain()
