"""``scaleout-tally``: a consuming adapter that writes down every message it handled, in each process.

The adapter of the scale-out test (``tests/test_scaleout.py``) and benchmark
(:mod:`bench.scaleout`): one instance run in several processes with ``citybus adapters run``, each
process appending one line per message it handled (the ``ce-id`` and ``time.monotonic_ns()``) to a
file of its own, ``<record>/<pid>.tally``. Reading the files afterwards says whether every message
was handled, whether one was handled twice, and how the processes shared the work.

``scaleout-feed`` does nothing but run: under access control its user is a producer of beach
observations, which the test logs in as to publish them.

:func:`install` makes it an installed adapter (a ``*.dist-info`` with the ``citybus.adapters``
entry point, in a directory put on ``PYTHONPATH``), so ``citybus adapters run`` finds it as it finds
a company's pip-installed package.

Decisions, and why:

* **A file per process, a line per message, written before the handler returns**: the line is
  down before the message is acknowledged, so a message acknowledged is a message recorded. The
  file is line-buffered (a ``write`` a message, a few µs, the same in every run it is compared in)
  so a test can watch the work being shared while the processes run.
* **CPU work is spun on the thread's CPU clock** (``time.thread_time_ns``), not the wall clock: a
  process the scheduler sets aside on a busy machine does not count that wait as work, so each
  message costs the same CPU however many processes share the cores.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import msgspec

from adapters import Adapter, Context
from bus import Event
from contracts import BeachObservation

__all__ = ["ADAPTER", "FEED", "Feed", "Tallied", "Tally", "TallyConfig", "install", "read_tallies"]

ADAPTER = "scaleout-tally"
FEED = "scaleout-feed"


class TallyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where each process writes down what it handled, how it receives, and the work per message."""

    record: str
    """The directory of the ``<pid>.tally`` files."""
    mode: Literal["durable", "core"] = "durable"
    """``durable``: ``ctx.consume`` (the instance's durable consumer, shared by its processes);
    ``core``: ``ctx.subscribe`` (core NATS, the instance's queue group)."""
    work: Literal["none", "cpu", "io"] = "none"
    """Per message: nothing, ``work_ms`` of CPU, or an await of ``work_ms`` (a write to a database)."""
    work_ms: float = 0.0
    gate: str = ""
    """A file to wait for before receiving (once ready): the benchmark starts every process's work at
    once by creating it. Empty: receive at once."""


class Tally(Adapter[TallyConfig]):
    """Writes down each beach observation it handles (its ``ce-id``), one file per process."""

    name = ADAPTER
    Config = TallyConfig
    consumes = (BeachObservation,)
    durable = True

    async def run(self, ctx: Context) -> None:
        """Receive beach observations until stopped, a line each in this process's file."""
        config = self.config
        spin_ns = int(config.work_ms * 1e6)
        pause = config.work_ms / 1000
        with _tally_file(Path(config.record)) as file:

            async def handle(event: Event[BeachObservation]) -> None:
                if config.work == "cpu":
                    until = time.thread_time_ns() + spin_ns
                    while time.thread_time_ns() < until:
                        pass
                elif config.work == "io":
                    await asyncio.sleep(pause)
                file.write(f"{event.id} {time.monotonic_ns()}\n")

            if config.mode == "core":
                await ctx.subscribe(BeachObservation, handle)
                ctx.ready()
                await ctx.wait_stopped()
                return
            ctx.ready()
            while config.gate and not _exists(config.gate):  # noqa: ASYNC110 - a file, not an event
                await asyncio.sleep(0.005)
            await ctx.consume(BeachObservation, handle)


class Feed(Adapter):  # type: ignore[type-arg]
    """Publishes nothing itself: under access control its user is the one a test publishes beach
    observations as (a producer's, as the broker grants them)."""

    name = FEED
    produces = (BeachObservation,)

    async def run(self, ctx: Context) -> None:
        """Ready, and idle until stopped."""
        ctx.ready()
        await ctx.wait_stopped()


def _tally_file(directory: Path) -> TextIO:
    """This process's file, line-buffered (a local file: opened at start, not on a message's path)."""
    directory.mkdir(parents=True, exist_ok=True)
    return (directory / f"{os.getpid()}.tally").open("a", buffering=1, encoding="utf-8")


def _exists(path: str) -> bool:
    return os.path.exists(path)


@dataclass(frozen=True)
class Tallied:
    """What one process handled: its pid, the ``ce-id`` of each message, and when (monotonic ns)."""

    pid: int
    ids: list[str]
    times: list[int]


def read_tallies(record: Path) -> list[Tallied]:
    """Every process's file in ``record`` (a line being written is left out)."""
    return [_read(path) for path in sorted(record.glob("*.tally"))]


def _read(path: Path) -> Tallied:
    ids, times = [], []
    for line in _complete_lines(path):
        event_id, stamp = line.split(" ")
        ids.append(event_id)
        times.append(int(stamp))
    return Tallied(int(path.stem), ids, times)


def _complete_lines(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8")
    yield from text[: text.rfind("\n") + 1].splitlines()


def install(where: Path) -> Path:
    """Install the adapters into ``where`` (a ``PYTHONPATH`` directory, ``bench`` importable beside
    it): ``citybus adapters list`` then shows ``scaleout-tally`` and ``scaleout-feed``. Returns ``where``."""
    info = where / "citybus_scaleout_tally-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: citybus-scaleout-tally\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[citybus.adapters]\n{ADAPTER} = bench.tally:Tally\n{FEED} = bench.tally:Feed\n"
    )
    return where
