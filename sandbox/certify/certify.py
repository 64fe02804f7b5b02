"""A whole certification: the clean run, one run per preset of the suite, the score, the report.

:func:`certify` is what ``citybus certify`` runs (:mod:`sandbox.certify.cli` only parses the
command line and prints). Runs are one after another, never side by side: each has the machine's
cores to itself, so its latency and CPU figures are its own, not the neighbour's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bus.errors import CityBusError
from contracts import default_registry
from sandbox.certify.aim import NotApplicable, plan_suite
from sandbox.certify.engine import certify_run
from sandbox.certify.model import Crash, Report, RunRecord
from sandbox.certify.report import ReportFiles, write_report
from sandbox.certify.runs import RunSpec, Scope, Target
from sandbox.certify.score import build_report, score
from sandbox.certify.suite import Suite
from sandbox.contents import recording_extent

__all__ = ["Certified", "certify"]

CLEAN = "clean"
"""The name of the run without faults, the baseline every preset is compared with."""


@dataclass(frozen=True, slots=True)
class Certified:
    """What :func:`certify` made: the report, where it is written, and the presets left out."""

    report: Report
    files: ReportFiles
    skipped: dict[str, str]
    """Preset → why it does not apply to this adapter."""


async def certify(
    target: Target,
    suite: Suite,
    *,
    recording: Path,
    seed: int,
    speed: float,
    only: Sequence[str] = (),
    report_dir: Path,
    command: str,
    progress: Callable[[str], None] = lambda _line: None,
) -> Certified:
    """Certify ``target`` with ``suite``: run it clean and under each preset, score, write the report."""
    started = datetime.now(UTC)
    scope = Scope(recording=recording, speed=speed, start=suite.start, duration=suite.duration)
    specs = [RunSpec(name=CLEAN, seed=seed)]
    plans: dict[str, str] = {CLEAN: ""}
    descriptions: dict[str, str] = {CLEAN: "the recorded day as it was, without faults"}
    skipped: dict[str, str] = {}
    for name, plan in plan_suite(suite, target.adapted, seed=seed, files=[recording], only=only).items():
        if isinstance(plan, NotApplicable):
            skipped[name] = plan.reason
            continue
        text = plan.text if plan.plan.faults else ""  # a restart or a slow link alone: no plan for the replay
        specs.append(RunSpec(name=name, seed=plan.seed, plan=text, restart=plan.restart, slow=plan.slow))
        plans[name] = plan.text
        descriptions[name] = suite.preset(name).description
    runs_dir = report_dir / "runs"
    records: list[RunRecord] = []
    for number, spec in enumerate(specs, 1):
        label = f"[{number}/{len(specs)}] {spec.name}"
        progress(f"{label}: starting")
        records.append(await _one(target, spec, scope, runs_dir / spec.name, _prefixed(progress, label)))
        last = records[-1]
        progress(
            f"{label}: done in {last.wall_seconds:.0f} s: {len(last.inputs)} inputs, "
            f"{len(last.outputs)} outputs, {len(last.crashes)} failures"
        )
    checks, detection = score(target.adapted, records, suite.thresholds, default_registry())
    report = build_report(
        adapted=target.adapted,
        runs=records,
        thresholds=suite.thresholds,
        checks=checks,
        detection=detection,
        suite_name=suite.name,
        suite_version=suite.version,
        suite_description=suite.description,
        seed=seed,
        speed=speed,
        recording=str(recording),
        command=command,
        started=started,
        finished=datetime.now(UTC),
        plans=plans,
        descriptions=descriptions,
        citybus=_version(),
    )
    files = write_report(report, report_dir)
    return Certified(report=report, files=files, skipped=skipped)


async def _one(
    target: Target, spec: RunSpec, scope: Scope, directory: Path, progress: Callable[[str], None]
) -> RunRecord:
    """One run; one that could not run at all (the adapter never got ready) is a failure of it."""
    shutil.rmtree(directory, ignore_errors=True)  # a run before this one's files
    try:
        return await certify_run(target, spec, scope, directory, progress=progress)
    except CityBusError as exc:
        first, _last = recording_extent([scope.recording])
        origin = datetime.fromtimestamp(first / 1e9 + scope.start, UTC)
        return RunRecord(
            preset=spec.name,
            seed=spec.seed,
            origin=origin,
            end=origin,
            crashes=[Crash(at=origin, wall=0.0, error=str(exc), process_died=True)],
            exit_code=-1,
        )
    finally:
        shutil.rmtree(directory / "data", ignore_errors=True)  # the private server's store: nothing to read


def _prefixed(progress: Callable[[str], None], label: str) -> Callable[[str], None]:
    return lambda line: progress(f"{label}: {line}")


def _version() -> str:
    try:
        return version("citybus")
    except PackageNotFoundError:
        return "unknown"
