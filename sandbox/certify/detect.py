"""Detections scored against the ground truth: precision and recall per fault kind, false alarms
included.

An adapter that says what it detects (:class:`adapters.Detection`, here a
:class:`~sandbox.certify.model.DetectionSpec`) publishes outputs of a contract whose field names a
fault kind; each such output is a *detection* of that kind, about an entity, at a time. The ground
truth's episodes (:func:`sandbox.certify.truth.episodes`) are what there was to detect.

Decisions, and why:

* **Every detection counts, in every run.** Precision is matched detections over all detections,
  the clean run's included: a detector that cries "stuck" on a healthy sensor has raised a false
  alarm, whether or not a fault was injected elsewhere. (The scorer that gave "5 of 5" counted
  only the hits, never the 4 false alarms: 5 true and 4 false is a precision of 5/9.)
* **A match is same kind, same entity, inside the episode or soon after.** A detection's time must
  fall in ``[episode start, episode end + detection_tolerance]``: a detector needs a while to be
  sure (a stuck value is only stuck after it repeats), but one that fires before the fault began
  guessed. A broker fault is about every entity.
* **Only declared kinds are scored**, and only from the contract and field declared: a kind the
  adapter never claimed to detect is not held against it, and one it claims but never raises has a
  recall of 0.
* **A body that does not decode is no detection**: contract-fit already fails it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime

import msgspec

from contracts.registry import Registry
from sandbox.certify.checks import EXAMPLES, ContractFit
from sandbox.certify.model import (
    Adapted,
    Check,
    DetectionScore,
    DetectionSpec,
    RunRecord,
    Seen,
    Thresholds,
    Verdict,
)
from sandbox.certify.truth import ANY_ENTITY, Episode, episodes, parse_time, stamp

__all__ = ["Detected", "detections", "score_detections"]


class Detected(msgspec.Struct, frozen=True, kw_only=True):
    """One detection an adapter published: a fault of ``kind`` on ``entity`` at ``time``."""

    run: str
    kind: str
    entity: str
    time: datetime
    value: str
    """The field's value that said it (``stuck``, ``silent``, …)."""
    ce_id: str

    def describe(self) -> str:
        """How a report names it: run, entity, time, value."""
        return f"{self.run}: {self.entity} at {stamp(self.time)} ({self.value})"


def _same_contract(declared: str, ce_type: str) -> bool:
    """Whether ``ce_type`` is of the declared contract (named by type, or by name for any version)."""
    return ce_type == declared or ce_type.rpartition(".")[0] == declared


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def _detection(run: RunRecord, output: Seen, spec: DetectionSpec, fit: ContractFit) -> Detected | None:
    codec = fit.codec(output.ce_type)
    if codec is None or fit.body_problem(output):
        return None
    body = codec.decode(output.body, output.content_type)
    value = _plain(getattr(body, spec.field, None))
    if not isinstance(value, str | int | bool) or str(value) not in spec.kinds:
        return None  # an "all clear", or a field the contract does not have
    about = _plain(getattr(body, spec.entity, None)) if spec.entity else None
    entity = str(about) if about is not None else output.entity
    when = parse_time(getattr(body, spec.time, None)) if spec.time else None
    when = when or output.ce_time or output.at
    return Detected(
        run=run.preset,
        kind=spec.kinds[str(value)],
        entity=entity,
        time=when,
        value=str(value),
        ce_id=output.ce_id,
    )


def detections(adapted: Adapted, run: RunRecord, fit: ContractFit) -> list[Detected]:
    """The detections among a run's outputs, in the order they were published."""
    found = []
    for output in run.outputs:
        for spec in adapted.detections:
            if _same_contract(spec.contract, output.ce_type) and (hit := _detection(run, output, spec, fit)):
                found.append(hit)
    return found


def _matches(detected: Detected, episode: Episode, tolerance: float) -> bool:
    if detected.run != episode.run or detected.kind != episode.kind:
        return False
    if episode.entity not in (ANY_ENTITY, detected.entity):
        return False
    return 0 <= (detected.time - episode.start).total_seconds() and (
        (detected.time - episode.end).total_seconds() <= tolerance
    )


def score_detections(
    adapted: Adapted, runs: Sequence[RunRecord], thresholds: Thresholds, registry: Registry
) -> tuple[list[Check], list[DetectionScore]]:
    """Per declared kind: detections matched against the ground truth over every run, and the
    ``precision:<kind>`` and ``recall:<kind>`` checks."""
    kinds = sorted({kind for spec in adapted.detections for kind in spec.kinds.values()})
    if not kinds:
        return [], []
    fit = ContractFit(adapted, registry)
    found = [d for run in runs for d in detections(adapted, run, fit)]
    truth = [e for run in runs for e in episodes(run) if e.kind in kinds]
    tolerance = thresholds.detection_tolerance
    checks: list[Check] = []
    scores: list[DetectionScore] = []
    for kind in kinds:
        mine = [d for d in found if d.kind == kind]
        eps = [e for e in truth if e.kind == kind]
        matched = [any(_matches(d, e, tolerance) for e in eps) for d in mine]
        hits = [d for d, ok in zip(mine, matched, strict=True) if ok]
        false = [d for d, ok in zip(mine, matched, strict=True) if not ok]
        detected = [e for e in eps if any(_matches(d, e, tolerance) for d in mine)]
        score = DetectionScore(
            kind=kind,
            detections=len(mine),
            true_positives=len(hits),
            false_alarms=len(false),
            episodes=len(eps),
            detected=len(detected),
            precision=len(hits) / len(mine) if mine else None,
            recall=len(detected) / len(eps) if eps else None,
            false_alarm_examples=[d.describe() for d in false[:EXAMPLES]],
        )
        scores.append(score)
        checks.append(_precision(score, thresholds))
        missed = [e for e in eps if e not in detected]
        checks.append(_recall(score, thresholds, missed))
    return checks, scores


def _precision(score: DetectionScore, thresholds: Thresholds) -> Check:
    kind = score.kind
    verdict: Verdict
    if score.precision is None:
        verdict, summary = "n/a", f"does not apply: it raised no {kind} detection in any run"
    else:
        verdict = "pass" if score.precision >= thresholds.precision else "fail"
        summary = (
            f"{score.true_positives} of {score.detections} {kind} detections match an injected {kind} fault; "
            f"{score.false_alarms} false alarms"
        )
        if not score.episodes:
            summary += f" (no {kind} fault was injected in the suite)"
    return Check(
        check=f"precision:{kind}",
        run="all",
        verdict=verdict,
        value=score.precision,
        threshold=thresholds.precision,
        unit="ratio",
        summary=summary,
        examples=[f"false alarm: {line}" for line in score.false_alarm_examples],
    )


def _recall(score: DetectionScore, thresholds: Thresholds, missed: list[Episode]) -> Check:
    kind = score.kind
    verdict: Verdict
    if score.recall is None:
        verdict, summary = "n/a", f"does not apply: the suite injected no {kind} fault"
    else:
        verdict = "pass" if score.recall >= thresholds.recall else "fail"
        summary = f"detected {score.detected} of {score.episodes} injected {kind} faults"
    return Check(
        check=f"recall:{kind}",
        run="all",
        verdict=verdict,
        value=score.recall,
        threshold=thresholds.recall,
        unit="ratio",
        summary=summary,
        examples=[
            f"missed: {e.run}: {e.entity} {stamp(e.start)}..{stamp(e.end)} ({e.hits} hits)"
            for e in missed[:EXAMPLES]
        ],
    )
