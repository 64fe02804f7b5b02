"""The replay's peak memory on a large recording (target < 150 MB).

A recording of ``--size-mb`` MB (1024 by default) is replayed with ``speed=0`` into nothing in a
child process, which reports its peak resident set (``VmHWM``) when done; the same child started
without a recording gives the baseline (the interpreter and citybus's imports), so the figure is
honest about what the replay itself adds.

**The large recording is uncompressed** (MCAP chunks without compression, 1 MB each). Its size on
disk is then the size of what is replayed; zstd packs these bodies more than ten to one, so a zstd
file of 1 GB would take a quarter of an hour to replay. Its bodies are ~1 kB (forecasts of the
next four hours, with a train call after every three of them).

The child is this module: ``python -m bench.memory --child [RECORDING] --result FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.common import CASE_LIMIT, ROOT, BenchError, Options, Spec, child_env, log
from bench.recordings import endless, kinds, load_templates, write_recording
from bench.replay import discard, replayer
from bench.report import Case, Figure, Row, Target
from bus.logs import configure_logging

__all__ = ["CASES", "peak_rss"]

TARGET_RSS_MB: Final = 150.0
_MB: Final = 1_000_000  # the report's MB are 10^6 bytes, the stricter reading of "150 MB"
FULL_MB: Final = 1024.0
SMOKE_MB: Final = 4.0
TITLE: Final = "Peak RSS replaying a large recording"


def memory_case(options: Options) -> Case:
    """The peak RSS of a process replaying a large recording, against a process that only imports."""
    size_mb = options.size_mb or (SMOKE_MB if options.smoke else FULL_MB)
    case = Case(
        TITLE,
        "The replay (`speed=0`, no-op publish) runs in a child process that reports its peak RSS "
        "(`VmHWM` of `/proc/self/status`) when done; the baseline is the same child started without a "
        "recording (Python and citybus's imports only).",
    )
    path = options.work / "large.mcap"
    log(f"replay memory: writing a {size_mb:g} MB recording")
    written = write_recording(
        path,
        endless(100.0, ("forecast", "forecast", "forecast", "train")),
        load_templates(),
        compression="none",
        stop_at_bytes=int(size_mb * _MB),
    )
    case.notes.append(
        f"Recording: {written.file_bytes / _MB:,.0f} MB on disk, uncompressed, {written.messages} messages "
        f"({kinds(written)}), mean body {written.mean_body:.0f} B, written in {written.seconds:.1f} s."
    )
    log("replay memory: baseline child")
    baseline, _ = run_child(None, options.work)
    log(f"replay memory: replaying {written.messages} messages in a child process")
    peak, result = run_child(path, options.work)
    if result.get("messages") != written.messages:
        raise BenchError(f"the child replayed {result.get('messages')} of {written.messages} messages")
    seconds = float(result["seconds"])
    met = peak < TARGET_RSS_MB * _MB
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
            met=met,
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
    case.figures.append(Figure("peak RSS MB", peak / _MB, "MB", higher_is_better=False))
    case.targets.append(
        Target(
            f"{TITLE} ({written.file_bytes / _MB:,.0f} MB)",
            f"< {TARGET_RSS_MB:g} MB",
            f"{peak / _MB:.1f} MB",
            met,
        )
    )
    path.unlink()
    return case


def run_child(path: Path | None, work: Path) -> tuple[int, dict[str, Any]]:
    """Run this module as a child (replaying ``path``, or only importing) and return its peak RSS in
    bytes and what it reported."""
    result = work / "memory-child.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.memory", "--child", str(path or ""), "--result", str(result)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=CASE_LIMIT
        )
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


def child(path: str, result: Path) -> None:
    """Replay ``path`` as fast as possible into nothing (or, without a path, do nothing: the
    baseline), and write the peak RSS, how many messages were sent and in how long."""
    report: dict[str, Any] = {"messages": 0, "seconds": 0.0}
    if path:
        replay = replayer(Path(path), discard, speed=0)
        started = time.perf_counter()
        asyncio.run(replay.run())
        report = {"messages": replay.published, "seconds": time.perf_counter() - started}
    report["peak_rss"] = peak_rss()
    result.write_text(json.dumps(report))


CASES: Final = [Spec("replay-memory", TITLE, memory_case)]


def main(argv: Sequence[str] | None = None) -> int:
    """The child process (``--child``): not a command for people; ``python -m bench`` runs the case."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--child", required=True, metavar="RECORDING", help="replay this ('' for none)")
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")
    child(args.child, args.result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
