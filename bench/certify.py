"""`citybus certify` on a shipped adapter, the whole default suite (target: under 5 minutes on two cores).

Issue 15 asks that "the whole default suite finishes in under 5 minutes on two cores for one of the
shipped adapters, with progress shown while it runs". The case runs the real command as a user
would: ``citybus certify ADAPTER --report DIR`` (the installed console script, the default suite:
the clean run and nine presets at the suite's speed), in an empty working directory of its own
with no ``citybus.toml`` and no ``CITYBUS_*`` variables, and times it from spawning to exit.

Decisions, and why:

- **The target is on ``sensor-watch``**, the shipped adapter that declares detections, so its
  suite scores everything (precision and recall included). ``beach-neighbours``, a service that
  detects nothing, runs the same suite after it as a second figure without a target of its own.
- **The figures come from the command's own ``report.json``**: each run's wall seconds, and the
  adapter process's peak RSS and CPU seconds as certify read them from ``/proc``; the bench adds
  the total wall time, the CPU of the command and everything it waited for (``RUSAGE_CHILDREN``),
  and how long the command went without a line of progress (the issue asks for progress shown).
- **A failed verdict is a missed target, not a failed case**: exit status 1 is certify's "the
  suite failed", recorded with the checks that failed; any other status, or no report, fails the
  case with the command's last lines.
- **Smoke** (``--smoke``): ``beach-neighbours`` with ``--suite quick --only outage`` (the quick
  suite is the one the project's adapters without detections pass; a few seconds), so CI runs the
  whole mechanism; its figures mean nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.common import CASE_LIMIT, BenchError, Options, Spec, child_env, log
from bench.report import Case, Figure, Row, Target
from bench.startup import citybus_command

__all__ = ["CASES"]

TITLE: Final = "`citybus certify` on a shipped adapter"
TARGET_SECONDS: Final = 300.0
FULL_LIMIT: Final = 900.0
"""Seconds one full certify command may take before the case fails (a bound against hangs, three
times the target; the target itself is a figure)."""


@dataclass(frozen=True)
class Certification:
    """One certify command the case runs: which adapter, suite and presets, and whether the issue's
    target applies to it."""

    adapter: str
    suite: str
    only: tuple[str, ...] = ()
    targeted: bool = False


FULL: Final = (
    Certification("sensor-watch", "default", targeted=True),
    Certification("beach-neighbours", "default"),
)
SMOKE: Final = (Certification("beach-neighbours", "quick", ("outage",), targeted=True),)


@dataclass
class Certified:
    """What one certify command did: its exit status, wall and CPU seconds, its progress, its report."""

    status: int
    wall: float
    cpu: float
    """User and system CPU seconds of the command and of every process it waited for."""
    progress_lines: int
    longest_silence: float
    """The longest wall time without a line on standard error, from spawning to exit."""
    report: dict[str, Any] = field(default_factory=dict)


def certify_once(which: Certification, directory: Path, limit: float) -> Certified:
    """Run ``citybus certify`` for ``which`` in ``directory`` and read its report."""
    directory.mkdir(parents=True)
    report_dir = directory / "report"
    command = [*citybus_command(), "certify", which.adapter, "--suite", which.suite]
    for preset in which.only:
        command += ["--only", preset]
    command += ["--report", str(report_dir)]
    env = child_env(XDG_DATA_HOME=str(directory / "xdg"), XDG_CONFIG_HOME=str(directory / "xdg"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a hang is ended with its servers and adapter
    )
    timed_out = threading.Event()

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop() -> None:
        timed_out.set()
        kill()

    timer = threading.Timer(limit, stop)
    timer.start()
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.extend(process.stdout or ()), daemon=True)
    reader.start()
    lines: list[str] = []
    last, silence = began, 0.0
    try:
        for line in process.stderr or ():
            now = time.monotonic()
            silence, last = max(silence, now - last), now
            lines.append(line.rstrip("\n"))
            if ": done in " in line or not line.startswith(" "):
                log(f"certify {which.adapter}: {line.strip()}")
        status = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:  # interrupted: its servers and adapter go with it
            kill()
            process.wait()
    wall = time.monotonic() - began
    reader.join(timeout=10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    silence = max(silence, time.monotonic() - last)
    tail = "\n".join([*lines[-20:], *stdout[-10:]])
    if timed_out.is_set():
        raise BenchError(f"citybus certify {which.adapter} ran over {limit:.0f} s:\n{tail}")
    if status not in (0, 1):
        raise BenchError(f"citybus certify {which.adapter} failed ({status}):\n{tail}")
    try:
        report: dict[str, Any] = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        why = f"citybus certify {which.adapter} wrote no readable report.json ({exc})"
        raise BenchError(f"{why}:\n{tail}") from None
    if (report.get("verdict") == "fail") != (status == 1):
        verdict = report.get("verdict")
        raise BenchError(f"citybus certify {which.adapter} exited {status} with the verdict {verdict}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Certified(status, wall, cpu, len(lines), silence, report)


def certify_case(options: Options) -> Case:
    """The wall time of ``citybus certify`` with the default suite, its runs, and the adapter's use."""
    plan = SMOKE if options.smoke else FULL
    limit = CASE_LIMIT if options.smoke else FULL_LIMIT
    case = Case(
        TITLE,
        "`citybus certify ADAPTER --suite SUITE --report DIR` (the installed console script; the suite's "
        "seed and speed), each in an empty working directory of its own with no configuration file and no "
        "`CITYBUS_*` variables; wall = spawned → exited. Per run (the clean one and each preset), the wall "
        "seconds and the adapter process's peak RSS and CPU seconds are the command's own `report.json`'s "
        "(`runs[]`); CPU of the command = user + system seconds of certify and every process it waited for "
        "(`RUSAGE_CHILDREN`: the embedded nats-server and the adapter's processes).",
    )
    per_run: list[tuple[str, list[Row]]] = []
    for number, which in enumerate(plan, 1):
        name = f"{which.adapter} --suite {which.suite}" + "".join(f" --only {p}" for p in which.only)
        log(f"certify: {name} ({number} of {len(plan)})")
        done = certify_once(which, options.work / f"certify-{number}", limit)
        runs: list[dict[str, Any]] = list(done.report.get("runs", []))
        verdict = str(done.report.get("verdict", ""))
        met = done.wall < TARGET_SECONDS and verdict == "pass"
        case.rows.append(
            Row(
                {
                    "adapter": f"`{which.adapter}`",
                    "suite": f"{done.report.get('suite')} v{done.report.get('suite_version')}"
                    + "".join(f", only {p}" for p in which.only),
                    "runs": f"{len(runs)}",
                    "wall s": f"{done.wall:.1f}",
                    "runs' wall s (sum)": f"{sum(float(r['wall_seconds']) for r in runs):.1f}",
                    "CPU s of the command": f"{done.cpu:.1f}",
                    "progress lines": f"{done.progress_lines}",
                    "longest silence s": f"{done.longest_silence:.1f}",
                    "verdict": verdict,
                    "target": f"< {TARGET_SECONDS:g} s, pass" if which.targeted else "",
                },
                met=met if which.targeted else None,
            )
        )
        per_run.append((_caption(which, done), [_run_row(run) for run in runs]))
        failed = [c for c in done.report.get("checks", []) if c.get("verdict") == "fail"]
        if failed:
            case.notes.append(
                f"`{which.adapter}` failed {len(failed)} check(s): "
                + "; ".join(f"{c.get('check')} ({c.get('run')}): {c.get('summary')}" for c in failed)
            )
        case.figures.append(Figure(f"{which.adapter} wall s", done.wall, "s", higher_is_better=False))
        if which.targeted:
            what = f"{TITLE}: `{name}`"
            fast = done.wall < TARGET_SECONDS
            result = f"{done.wall:.1f} s"
            case.targets.append(Target(f"{what}, wall", f"< {TARGET_SECONDS:g} s", result, fast))
            case.targets.append(Target(f"{what}, verdict", "pass", verdict, verdict == "pass"))
    case.tables += per_run
    case.notes.append(
        "Progress: certify writes a line when each run starts, when its adapter is ready, at every quarter "
        'of the replay and when it is done; "longest silence" is the longest wall time the command went '
        "without one (its start included: imports and the first server)."
    )
    return case


def _caption(which: Certification, done: Certified) -> str:
    report = done.report
    return (
        f"`{which.adapter}`, each run of `{report.get('command')}` (speed {report.get('speed'):g}x; "
        "wall, inputs and outputs as certify counted them; peak RSS and CPU of the adapter's process):"
    )


def _run_row(run: dict[str, Any]) -> Row:
    return Row(
        {
            "run": str(run.get("run")),
            "wall s": f"{float(run['wall_seconds']):.1f}",
            "inputs": f"{run.get('inputs')}",
            "outputs": f"{run.get('outputs')}",
            "adapter peak RSS MiB": f"{float(run['peak_rss_mib']):.1f}",
            "adapter CPU s": f"{float(run['cpu_seconds']):.2f}",
            "verdict": str(run.get("verdict")),
        }
    )


CASES: Final = [Spec("certify", TITLE, certify_case)]
