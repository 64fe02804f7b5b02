"""Whether an adapter keeps flowing: recovery after an outage or a broker restart, liveness
through the faults, and reaction latency from input to output, all on the replay's clock.

Pure functions over the model, like :mod:`sandbox.certify.checks` (whose rules of cause, the trace
id, they use).

Decisions, and why:

* **Faulted runs are compared with the clean run**, not with absolutes, where the day itself sets
  the pace: liveness counts the windows in which the clean run had outputs, recovery skips a
  window after which the clean run had no output either (an adapter that publishes on change
  only has nothing to say after most faults). Liveness leaves out the windows a broker restart
  overlaps: nothing flows through a broker that is down, and recovery judges the restart.
* **Recovery is the delay beyond the clean run's**: from the moment a fault ends, the clean run
  too may take hours to publish (the next reading is due in an hour, or the adapter publishes on
  change only); what the fault costs is how much later than that the faulted run publishes again.
  An adapter that never publishes again, when the clean run did, fails whatever the threshold.
* **Recovery after an outage waits for that entity**, when the clean run shows that the entity's
  inputs cause outputs: another sensor's outputs say nothing about the silent one's.
* **Percentiles are nearest-rank** (the smallest latency with at least p% of them at or below it):
  a latency that was measured, never an interpolation between two.
* **A sink's latency** (an adapter that publishes nothing: an archive) runs from the input to the
  end of its handling, the probe's ``done``; where outputs exist but none carries an input's trace
  id, latency does not apply and says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sandbox.certify.checks import cause_of, make_check, plural, traced_outputs
from sandbox.certify.model import Check, RunRecord, Seen, Thresholds, Verdict
from sandbox.certify.truth import episodes, stamp

__all__ = ["latencies", "latency", "liveness", "percentile", "recovery"]


# -- recovery ----------------------------------------------------------------------------------------


def _first_output_after(
    run: RunRecord, after: datetime, entity: str | None, *, handled: bool = False
) -> datetime | None:
    """When the first output at or after ``after`` left (caused by an input of ``entity``, if given);
    with ``handled``, when the adapter first finished handling a message (of ``entity``) then."""
    if handled:
        times = [
            h.done
            for h in run.handled
            if h.done is not None and not h.error and h.done >= after
            and (entity is None or h.subject.rsplit(".", 1)[-1] == entity)
        ]  # fmt: skip
    elif entity is None:
        times = [o.at for o in run.outputs if o.at >= after]
    else:
        times = [o.at for o, cause in traced_outputs(run) if cause.entity == entity and o.at >= after]
    return min(times, default=None)


def recovery(run: RunRecord, clean: RunRecord, thresholds: Thresholds) -> Check | None:
    """How much later than in the clean run outputs flow again after each outage and broker
    restart ends (replay seconds; the worst of them).

    ``None`` when the run has no such fault. An outage of an entity whose inputs caused outputs in
    the clean run waits for an output caused by that entity's inputs again; otherwise any output.
    When the clean run had no output after the fault's end (an adapter that publishes rarely or
    never: a sink, a detector on a quiet day), the adapter's handling is what must resume: the
    first message it finished handling (of the outage's entity) after the end, against the clean run's.
    """
    ends = [(e.kind, e.entity, e.end) for e in episodes(run) if e.kind in ("outage", "restart")]
    if not ends:
        return None
    traced_in_clean = {cause.entity for _, cause in traced_outputs(clean)}
    worst = 0.0
    stuck: list[str] = []
    cases: list[tuple[bool, float, str]] = []  # (recovered, seconds, what happened)
    measured = 0
    for kind, entity, end in ends:
        wanted = entity if kind == "outage" and entity in traced_in_clean else None
        what = f"{kind} of {entity}" if kind == "outage" else kind
        handled = False
        baseline = _first_output_after(clean, end, wanted)
        if baseline is None:  # no output after it in the clean run: its handling must resume
            handled, wanted = True, entity if kind == "outage" else None
            baseline = _first_output_after(clean, end, wanted, handled=True)
        if baseline is None:
            continue  # the clean run had nothing after it either: nothing to recover to
        measured += 1
        first = _first_output_after(run, end, wanted, handled=handled)
        if first is None:
            waited = (run.end - end).total_seconds()
            stuck.append(what)
            none = "nothing handled" if handled else "no output"
            cases.append(
                (False, waited, f"{what} ended {stamp(end)}: {none} after it (the clean run had some)")
            )
        else:
            took = (first - end).total_seconds()
            again = "handling" if handled else "outputs"
            waited = max(0.0, took - (baseline - end).total_seconds())
            line = f"{what} ended {stamp(end)}: {again} again after {took:g} s, {waited:g} s later than clean"
            cases.append((True, waited, line))
        worst = max(worst, waited)
    if not measured:
        return make_check(
            "recovery", run.preset, None, thresholds.recovery_seconds, "seconds",
            "does not apply: the clean run had no output and handled nothing after any fault ended",
        )  # fmt: skip
    examples = [line for _, _, line in sorted(cases, key=lambda c: (c[0], -c[1]))]  # the worst first
    if stuck:
        summary = f"never resumed after {', '.join(stuck)} (waited {worst:g} s to the run's end)"
        verdict: Verdict = "fail"
    else:
        after = plural(measured, "fault")
        summary = f"flowed again at most {worst:g} replay seconds later than clean after {after} ended"
        verdict = "pass" if worst <= thresholds.recovery_seconds else "fail"
    return make_check(
        "recovery",
        run.preset,
        worst,
        thresholds.recovery_seconds,
        "seconds",
        summary,
        examples,
        verdict=verdict,
    )


# -- liveness ----------------------------------------------------------------------------------------


def _windows(run: RunRecord, width: float, *, handled: bool = False) -> set[int]:
    """The windows of ``width`` replay seconds, counted from the run's origin, with an output (with
    ``handled``: with a message the adapter finished handling)."""
    if handled:
        times = [h.done for h in run.handled if h.done is not None and not h.error]
    else:
        times = [o.at for o in run.outputs]
    return {int((t - run.origin).total_seconds() // width) for t in times if run.origin <= t <= run.end}


def _broker_down(run: RunRecord, width: float) -> set[int]:
    """The windows a broker restart overlaps: nothing can flow through a broker that is down."""
    down: set[int] = set()
    for fault in run.broker_faults:
        if fault.kind == "restart":
            first = int((fault.start - run.origin).total_seconds() // width)
            last = int((fault.end - run.origin).total_seconds() // width)
            down.update(range(first, last + 1))
    return down


def liveness(run: RunRecord, clean: RunRecord, thresholds: Thresholds) -> Check:
    """The share of the clean run's active windows in which this run had outputs too, and whether
    the last of them had any (outputs flow again after the faults). Windows a broker restart
    overlaps are left out: no adapter can publish through a broker that is down (``recovery``
    judges how soon it publishes again)."""
    width = thresholds.liveness_window
    everything = _windows(clean, width)
    # An adapter that publishes nothing on the bus (a sink; a detector on a quiet day) is live
    # when it keeps handling what it consumes.
    handled = not everything
    what = "messages handled" if handled else "outputs"
    if handled:
        everything = _windows(clean, width, handled=True)
    if not everything:
        return make_check(
            "liveness", run.preset, None, thresholds.liveness, "ratio",
            "does not apply: the adapter neither published nor handled anything in the clean run",
        )  # fmt: skip
    down = _broker_down(run, width) & everything
    active = everything - down
    if not active:
        return make_check(
            "liveness", run.preset, None, thresholds.liveness, "ratio",
            "does not apply: the broker was down in every window in which the clean run had outputs",
        )  # fmt: skip
    live = _windows(run, width, handled=handled) & active
    share = len(live) / len(active)
    last_ok = max(active) in live
    silent = sorted(active - live)
    none = "nothing handled" if handled else "no output"
    examples = [f"{none} in {_window(run, i, width)} (the clean run had some)" for i in silent]
    windows = f"{len(active)} active {width:g}-second windows"
    summary = f"{what} in {len(live)} of the clean run's {windows} ({share:.0%})"
    summary += (
        f"; {what} in the last of them" if last_ok else f"; none in the last of them: {what} did not resume"
    )
    if handled:
        summary += " (it published nothing on the bus in the clean run: its handling is its flow)"
    if down:
        summary += f" ({plural(len(down), 'window')} with the broker down left out)"
    verdict: Verdict = "pass" if share >= thresholds.liveness and last_ok else "fail"
    if not last_ok:
        examples.insert(0, examples.pop())
    return make_check(
        "liveness", run.preset, share, thresholds.liveness, "ratio", summary, examples, verdict=verdict
    )


def handling(run: RunRecord, thresholds: Thresholds) -> Check:
    """Whether the adapter keeps up with its own inputs, in every run, the clean one too: the share
    of the windows in which inputs arrived in which it also finished handling one. An adapter that
    hangs, or stops reading, after its first messages fails here even when its clean run is the
    baseline of every other check."""
    width = thresholds.liveness_window
    arrived = {
        int((i.at - run.origin).total_seconds() // width) for i in run.inputs if run.origin <= i.at <= run.end
    }
    if not arrived:
        return make_check(
            "handling", run.preset, None, thresholds.liveness, "ratio", "does not apply: no input arrived"
        )
    done = _windows(run, width, handled=True) & arrived
    share = len(done) / len(arrived)
    idle = sorted(arrived - done)
    examples = [f"inputs but nothing handled in {_window(run, i, width)}" for i in idle]
    handled = sum(1 for h in run.handled if not h.error)
    summary = (
        f"handled messages in {len(done)} of the {len(arrived)} {width:g}-second windows with inputs "
        f"({share:.0%}); {handled} handled of {len(run.inputs)} inputs"
    )
    verdict: Verdict = "pass" if share >= thresholds.liveness else "fail"
    return make_check(
        "handling", run.preset, share, thresholds.liveness, "ratio", summary, examples, verdict=verdict
    )


def _window(run: RunRecord, index: int, width: float) -> str:
    start = run.origin + timedelta(seconds=index * width)
    return f"{stamp(start)}..{stamp(start + timedelta(seconds=width))}"


# -- latency ---


def _reactions(run: RunRecord) -> list[tuple[float, str, Seen]]:
    """(latency, what reacted, its cause) slowest first: each traced output or, for an adapter
    that publishes nothing (a sink), each message it finished handling (stored, say)."""
    if run.outputs:
        reacted = [(o.at, f"{o.subject} {o.ce_id}", cause) for o, cause in traced_outputs(run)]
    else:
        reacted = _handled(run)
    found = [(max(0.0, (when - cause.at).total_seconds()), what, cause) for when, what, cause in reacted]
    return sorted(found, key=lambda r: -r[0])


def _handled(run: RunRecord) -> list[tuple[datetime, str, Seen]]:
    by_trace = cause_of(run)
    by_id: dict[str, Seen] = {}
    for seen in sorted(run.inputs, key=lambda s: s.at):
        by_id.setdefault(seen.ce_id, seen)
    found = []
    for handled in run.handled:
        cause = by_trace.get(handled.trace) or by_id.get(handled.ce_id)
        if handled.done is not None and not handled.error and cause is not None:
            found.append((handled.done, f"{handled.subject} {handled.ce_id} handled", cause))
    return found


def latencies(run: RunRecord) -> list[float]:
    """Replay seconds from each input to the output it caused (its trace id; for a sink, to the
    end of its handling), sorted. A clock tick's granularity can put a reaction a hair before its
    input: that is 0."""
    return sorted(seconds for seconds, _, _ in _reactions(run))


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of sorted ``values`` (``None`` for none): the smallest
    value with at least ``p`` % of them at or below it."""
    if not values:
        return None
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[rank - 1]


def latency(run: RunRecord, thresholds: Thresholds) -> list[Check]:
    """Reaction latency p50 and p99 (nearest rank) from input to output, on the replay's clock."""
    reactions = _reactions(run)
    values = sorted(seconds for seconds, _, _ in reactions)
    limits = {50: thresholds.latency_p50, 99: thresholds.latency_p99}
    if not values:
        why = (
            "does not apply: the adapter published nothing on the bus, and no handled message was timed"
            if not run.outputs
            else f"does not apply: none of its {len(run.outputs)} outputs carries the trace id of an input "
            "(outputs not caused by a message, or the trace context was not propagated)"
        )
        return [
            make_check(f"latency-p{p}", run.preset, None, limit, "seconds", why)
            for p, limit in limits.items()
        ]
    over = (
        plural(len(values), "traced output")
        if run.outputs
        else f"{plural(len(values), 'handled message')} (it publishes nothing: input to handled)"
    )
    checks = []
    for p, limit in limits.items():
        value = percentile(values, p)
        summary = f"p{p} {value:g} replay seconds from input to output, over {over}"
        slowest = (
            f"{what}: {seconds:g} s after input {cause.ce_id}"
            for seconds, what, cause in reactions
            if seconds > limit
        )
        checks.append(make_check(f"latency-p{p}", run.preset, value, limit, "seconds", summary, slowest))
    return checks
