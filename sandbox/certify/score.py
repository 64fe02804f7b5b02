"""Certification runs → verdicts: :func:`score` judges the runs the engine recorded against a
suite's thresholds, and :func:`build_report` gathers the verdicts, each run's figures and its
timeline into the report's document (:class:`~sandbox.certify.model.Report`).

The rules are :mod:`sandbox.certify.checks` (every adapter) and :mod:`sandbox.certify.detect`
(an adapter that declares detections); the ground truth is read by :mod:`sandbox.certify.truth`.

Decisions, and why:

* **One check per run where a run can fail alone**, so the report says *which* fault an adapter
  did not cope with (``crashes`` in ``corrupt-bodies``), and detection per kind over the whole
  suite, where episodes are few per run.
* **The total verdict is ``pass`` only when no check fails**; a check that does not apply
  (``n/a``: latency of an adapter that publishes nothing) does not fail it.
* **The timeline keeps a plot readable**: at most :data:`MAX_LANES` entities per run, those a fault
  hit first, then the busiest; ``omitted_lanes`` says how many were left out, and the run's
  ``injected`` counts still cover them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from bus.errors import ConfigError
from contracts.registry import Registry, default_registry
from sandbox.certify import checks as rules
from sandbox.certify import flow
from sandbox.certify.detect import score_detections
from sandbox.certify.model import (
    Adapted,
    Check,
    DetectionScore,
    FaultWindow,
    Lane,
    Report,
    RunRecord,
    RunSummary,
    Thresholds,
    Timeline,
    Verdict,
)
from sandbox.certify.truth import ANY_ENTITY, episodes

__all__ = ["MAX_LANES", "build_report", "score", "timeline", "verdict_of"]

MAX_LANES = 24
"""Entities per run's timeline, at most."""


def score(
    adapted: Adapted,
    runs: Sequence[RunRecord],
    thresholds: Thresholds,
    registry: Registry | None = None,
) -> tuple[list[Check], list[DetectionScore]]:
    """Every check of every run, then the detection checks; ``runs[0]`` is the clean run.

    ``registry`` is where outputs' contracts are looked up by ``ce-type`` (the default registry,
    with the installed packages' contracts, unless given).
    """
    if not runs:
        raise ValueError("no runs to score: the clean run comes first")
    window = thresholds.liveness_window
    if window <= 0:  # a suite's own thresholds, read from its file
        raise ConfigError(f"the suite's liveness_window must be more than 0 replay seconds, not {window:g}")
    registry = registry if registry is not None else default_registry()
    clean, faulted = runs[0], list(runs[1:])
    fit = rules.ContractFit(adapted, registry)
    found: list[Check] = []
    found += [rules.contract_fit(run, thresholds, fit) for run in runs]
    found += [rules.access(run, thresholds) for run in runs]
    found += [rules.crashes(run, thresholds) for run in runs]
    found += [rules.handler_errors(run, thresholds, clean=run is clean) for run in runs]
    found += _recovery(clean, faulted, thresholds)
    found += [rules.amplification(run, clean, thresholds, fit) for run in faulted]
    found += [flow.liveness(run, clean, thresholds) for run in faulted]
    found += [flow.handling(run, thresholds) for run in runs]
    for run in runs:
        found += rules.resources(run, thresholds)
    found += flow.latency(clean, thresholds)
    detection_checks, detection = score_detections(adapted, runs, thresholds, registry)
    return found + detection_checks, detection


def _recovery(clean: RunRecord, faulted: Sequence[RunRecord], thresholds: Thresholds) -> list[Check]:
    found = [c for run in faulted if (c := flow.recovery(run, clean, thresholds)) is not None]
    if found:
        return found
    return [
        Check(
            check="recovery",
            run="all",
            verdict="n/a",
            value=None,
            threshold=thresholds.recovery_seconds,
            unit="seconds",
            summary="does not apply: no run had an outage or a broker restart",
        )
    ]


def verdict_of(checks: Sequence[Check]) -> Verdict:
    """``fail`` when any check fails, else ``pass``."""
    return "fail" if any(c.verdict == "fail" for c in checks) else "pass"


def timeline(run: RunRecord, max_lanes: int = MAX_LANES) -> Timeline:
    """The run's inputs, outputs, faults and crashes per entity, at most ``max_lanes`` lanes."""
    faults = episodes(run)
    hit = {e.entity for e in faults if e.entity != ANY_ENTITY}
    traffic = Counter(s.entity for s in (*run.inputs, *run.outputs))
    entities = hit | set(traffic)
    ranked = sorted(entities, key=lambda e: (e not in hit, -traffic[e], e))
    shown = ranked[:max_lanes]
    lanes = [
        Lane(
            entity=entity,
            inputs=sorted(s.at for s in run.inputs if s.entity == entity),
            outputs=sorted(s.at for s in run.outputs if s.entity == entity),
        )
        for entity in shown
    ]
    windows = [
        FaultWindow(kind=e.kind, entity=e.entity, start=e.start, end=e.end, hits=e.hits)
        for e in faults
        if e.entity == ANY_ENTITY or e.entity in shown
    ]
    return Timeline(
        start=run.origin,
        end=run.end,
        lanes=lanes,
        faults=windows,
        crashes=sorted(c.at for c in run.crashes),
        omitted_lanes=len(ranked) - len(shown),
    )


def _summary(
    run: RunRecord, checks: Sequence[Check], plans: Mapping[str, str], descriptions: Mapping[str, str]
) -> RunSummary:
    injected = Counter(str(line.get("kind", "?")) for line in run.truth)
    injected.update(f.kind for f in run.broker_faults)
    latencies = flow.latencies(run)
    return RunSummary(
        run=run.preset,
        description=descriptions.get(run.preset, ""),
        seed=run.seed,
        plan=plans.get(run.preset, ""),
        injected=dict(sorted(injected.items())),
        inputs=len(run.inputs),
        outputs=len(run.outputs),
        handled=len(run.handled),
        dead_letters=len(run.dead_letters),
        crashes=rules.deaths(run),
        refusals=len(run.refusals),
        latency_p50=flow.percentile(latencies, 50),
        latency_p99=flow.percentile(latencies, 99),
        peak_rss_mib=round(run.resources.peak_rss_bytes / rules.MIB, 1),
        cpu_seconds=run.resources.cpu_seconds,
        wall_seconds=run.wall_seconds,
        verdict=verdict_of([c for c in checks if c.run == run.preset]),
        timeline=timeline(run),
    )


def build_report(
    *,
    adapted: Adapted,
    runs: Sequence[RunRecord],
    thresholds: Thresholds,
    checks: Sequence[Check],
    detection: Sequence[DetectionScore],
    suite_name: str,
    suite_version: int,
    suite_description: str,
    seed: int,
    speed: float,
    recording: str,
    command: str,
    started: datetime,
    finished: datetime,
    plans: Mapping[str, str],
    descriptions: Mapping[str, str],
    citybus: str | None = None,
) -> Report:
    """The report's document: what was run, each check's verdict, each run in figures and on a
    timeline, and the verdict in total. ``plans`` and ``descriptions`` are per preset name;
    ``citybus`` is citybus's version (the installed one's unless given)."""
    return Report(
        citybus=citybus if citybus is not None else _citybus_version(),
        adapter=adapted,
        suite=suite_name,
        suite_version=suite_version,
        suite_description=suite_description,
        seed=seed,
        speed=speed,
        recording=recording,
        command=command,
        started=started,
        finished=finished,
        verdict=verdict_of(checks),
        thresholds=thresholds,
        checks=list(checks),
        detection=list(detection),
        runs=[_summary(run, checks, plans, descriptions) for run in runs],
    )


def _citybus_version() -> str:
    try:
        return version("citybus")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"
