"""The checks every adapter is held to, whatever it does: one :class:`Check` per run (or per suite)
from the :class:`RunRecord` s the engine recorded, against the suite's :class:`Thresholds`.

Pure functions over the model: no bus, no clock, no files, so each rule is tested with records
built by hand (tests/test_certify_score.py). :func:`sandbox.certify.score.score` calls them in
order; the detection scores are :mod:`sandbox.certify.detect`'s.

Decisions, and why:

* **An output fits when the bus would take it from a person**: it decodes against the contract its
  ``ce-type`` names, with no field the contract does not have (what ``citybus publish`` refuses,
  :mod:`bus.strict`), on a subject the adapter declared, with the adapter's own ``ce-source``.
  Consumers are tolerant of unknown fields so that versions can evolve; a product under
  certification publishes what it declared, and an unknown field there is a bug.
* **Cause is the trace id.** The replay stamps a fresh trace id on each message and the adapter's
  bus propagates it, so an output carrying an input's trace id was caused by that input. Latency,
  recovery per entity and amplification use it; where no output carries an input's trace id the
  summary says so, and a check that needs it falls back (recovery: any output; amplification:
  repeats beyond the clean run's) or does not apply (latency).
* **Percentiles are nearest-rank** (the smallest latency with at least p% of them at or below it):
  a latency that was measured, never an interpolation between two.
* **Faulted runs are compared with the clean run**, not with absolutes, where the day itself sets
  the pace: liveness counts the windows in which the clean run had outputs, recovery skips a
  window after which the clean run had no output either (an adapter that publishes on change
  only has nothing to say after most faults). Liveness leaves out the windows a broker restart
  overlaps: nothing flows through a broker that is down, and recovery judges the restart.
* **Amplified means a consumer would see it twice**: two outputs with the same subject and body
  under two event ids. The same event id published again is what an adapter with stable ids does
  after a redelivery, and every consumer deduplicates on it.
* **A handler error is judged in the clean run only**: a corrupt input may make a handler raise
  (and its message be dead-lettered) without the adapter failing; that is the bus doing its job.
  Faulted runs' counts are shown, not judged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import msgspec

from bus.codec import Codec, decode_bytes
from bus.envelope import JSON
from bus.errors import ContractViolation
from bus.strict import unknown_fields
from bus.subjects import matches
from contracts import Contract
from contracts.registry import Registry
from sandbox.certify.model import Adapted, Check, RunRecord, Seen, Thresholds, Verdict
from sandbox.certify.truth import episodes, stamp

__all__ = [
    "ContractFit",
    "EXAMPLES",
    "MIB",
    "access",
    "amplification",
    "cause_of",
    "contract_fit",
    "crashes",
    "deaths",
    "handler_errors",
    "latencies",
    "latency",
    "liveness",
    "percentile",
    "recovery",
    "resources",
]

EXAMPLES = 5
"""Offending cases a check lists, at most."""

MIB = 1024 * 1024

_ANY_JSON: msgspec.json.Decoder[object] = msgspec.json.Decoder()
_ANY_MSGPACK: msgspec.msgpack.Decoder[object] = msgspec.msgpack.Decoder()


def _check(
    check: str,
    run: str,
    value: float | None,
    threshold: float | None,
    unit: str,
    summary: str,
    examples: Iterable[str] = (),
    *,
    verdict: Verdict | None = None,
) -> Check:
    """A check; its verdict, unless given, is whether ``value`` is at most ``threshold``."""
    if verdict is None:
        verdict = "n/a" if value is None or threshold is None else "pass" if value <= threshold else "fail"
    return Check(
        check=check,
        run=run,
        verdict=verdict,
        value=value,
        threshold=threshold,
        unit=unit,
        summary=summary,
        examples=list(examples)[:EXAMPLES],
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# -- contract fit ------------------------------------------------------------------------------------


class ContractFit:
    """Whether an output fits its contract, subjects and source; one decoder per contract, built once."""

    def __init__(self, adapted: Adapted, registry: Registry) -> None:
        self._adapted = adapted
        self._registry = registry
        self._codecs: dict[str, Codec[Contract] | None] = {}

    def problem(self, output: Seen) -> str:
        """'' when the output fits; else what is wrong with it, in a few words."""
        if output.ce_source != self._adapted.source:
            return f"ce-source {output.ce_source!r} is not the adapter's {self._adapted.source!r}"
        if not any(matches(pattern, output.subject) for pattern in self._adapted.produced_subjects):
            declared = ", ".join(self._adapted.produced_subjects) or "none"
            return f"a subject it did not declare (declared: {declared})"
        return self.body_problem(output)

    def body_problem(self, output: Seen) -> str:
        """'' when the body decodes strictly against the contract its ``ce-type`` names."""
        codec = self.codec(output.ce_type)
        if codec is None:
            return f"ce-type {output.ce_type!r} is no known contract"
        try:
            codec.decode(output.body, output.content_type)
            plain = decode_bytes(
                _ANY_JSON if output.content_type.startswith(JSON) else _ANY_MSGPACK, output.body
            )
        except ContractViolation as exc:
            return str(exc)
        unknown = unknown_fields(plain, codec.contract)
        if unknown:
            return f"unknown field {unknown[0].path} (fields are {', '.join(unknown[0].allowed)})"
        return ""

    def codec(self, ce_type: str) -> Codec[Contract] | None:
        """The decoders of the contract whose CloudEvents type is ``ce_type`` (``None``: unknown)."""
        if ce_type not in self._codecs:
            cls = self._registry.by_type(ce_type)
            self._codecs[ce_type] = Codec(cls) if cls is not None else None
        return self._codecs[ce_type]


def contract_fit(run: RunRecord, thresholds: Thresholds, fit: ContractFit) -> Check:
    """Outputs that do not fit their contract, their declared subjects or the adapter's source."""
    bad = [(o, problem) for o in run.outputs if (problem := fit.problem(o))]
    if not run.outputs:
        summary = "published nothing, so nothing could misfit"
    elif not bad:
        summary = f"all {len(run.outputs)} outputs fit their contracts, declared subjects and source"
    else:
        summary = f"{len(bad)} of {len(run.outputs)} outputs do not fit their contract, subjects or source"
    examples = (f"{o.subject} {o.ce_id}: {problem}" for o, problem in bad)
    return _check(
        "contract-fit", run.preset, len(bad), thresholds.contract_violations, "count", summary, examples
    )


# -- keeping running ---------------------------------------------------------------------------------


def access(run: RunRecord, thresholds: Thresholds) -> Check:
    """What the broker refused the adapter (a publish or subscription it has no permission for)."""
    refused = run.refusals
    summary = (
        "the broker refused nothing"
        if not refused
        else f"the broker refused {_plural(len(refused), 'operation')} it has no permission for"
    )
    examples = (f"{r.operation} {r.subject} at {stamp(r.at)}" for r in refused)
    return _check("access", run.preset, len(refused), thresholds.access_refusals, "count", summary, examples)


def deaths(run: RunRecord) -> int:
    """Failures of the adapter in a run: supervisor restarts and process deaths (an exit status
    that no recorded crash accounts for counts as one)."""
    died = run.exit_code is not None and not any(c.process_died for c in run.crashes)
    return len(run.crashes) + int(died)


def crashes(run: RunRecord, thresholds: Thresholds) -> Check:
    """The adapter failing: restarted by its supervisor, or its process dying."""
    count = deaths(run)
    examples = [f"{stamp(c.at)}: {'process died: ' if c.process_died else ''}{c.error}" for c in run.crashes]
    if run.exit_code is not None and not any(c.process_died for c in run.crashes):
        last = f"; last log line: {run.log_tail[-1]}" if run.log_tail else ""
        examples.insert(0, f"the process exited with status {run.exit_code}{last}")
    summary = "kept running" if not count else f"failed {_plural(count, 'time')}"
    if examples:
        summary += f" (first: {examples[0]})"
    return _check("crashes", run.preset, count, thresholds.crashes, "count", summary, examples)


def handler_errors(run: RunRecord, thresholds: Thresholds, *, clean: bool) -> Check:
    """Handler exceptions: judged in the clean run; in a faulted run counted and shown only."""
    failed = [h for h in run.handled if h.error]
    examples = (f"{h.subject} {h.ce_id}: {h.error}" for h in failed)
    count = f"{len(failed)} of {_plural(len(run.handled), 'handled message')} raised"
    if clean:
        return _check(
            "handler-errors", run.preset, len(failed), thresholds.handler_errors, "count", count, examples
        )
    summary = f"{count} (not judged: a corrupt or odd input may fail a handler and be dead-lettered)"
    return _check(
        "handler-errors",
        run.preset,
        len(failed),
        thresholds.handler_errors,
        "count",
        summary,
        examples,
        verdict="n/a",
    )


# -- causes: which input an output answers -----------------------------------------------------------


def cause_of(run: RunRecord) -> dict[str, Seen]:
    """Each trace id → the first input that carried it (what caused the outputs with that id)."""
    causes: dict[str, Seen] = {}
    for seen in sorted(run.inputs, key=lambda s: s.at):
        if seen.trace:
            causes.setdefault(seen.trace, seen)
    return causes


def _traced_outputs(run: RunRecord) -> list[tuple[Seen, Seen]]:
    causes = cause_of(run)
    return [(o, causes[o.trace]) for o in run.outputs if o.trace in causes]


# -- recovery ----------------------------------------------------------------------------------------


def _first_output_after(run: RunRecord, after: datetime, entity: str | None) -> datetime | None:
    """When the first output at or after ``after`` left (caused by an input of ``entity``, if given)."""
    if entity is None:
        times = [o.at for o in run.outputs if o.at >= after]
    else:
        times = [o.at for o, cause in _traced_outputs(run) if cause.entity == entity and o.at >= after]
    return min(times, default=None)


def recovery(run: RunRecord, clean: RunRecord, thresholds: Thresholds) -> Check | None:
    """Replay seconds from the end of each outage and broker restart until outputs flow again.

    ``None`` when the run has no such fault. An outage of an entity whose inputs caused outputs in
    the clean run waits for an output caused by that entity's inputs again; otherwise any output.
    """
    ends = [(e.kind, e.entity, e.end) for e in episodes(run) if e.kind in ("outage", "restart")]
    if not ends:
        return None
    if not clean.outputs:
        return _check(
            "recovery", run.preset, None, thresholds.recovery_seconds, "seconds",
            "does not apply: the adapter published nothing on the bus in the clean run",
        )  # fmt: skip
    traced_in_clean = {cause.entity for _, cause in _traced_outputs(clean)}
    worst = 0.0
    stuck: list[str] = []
    examples: list[str] = []
    measured = 0
    for kind, entity, end in ends:
        wanted = entity if kind == "outage" and entity in traced_in_clean else None
        what = f"{kind} of {entity}" if kind == "outage" else kind
        baseline = _first_output_after(clean, end, wanted)
        if baseline is None:
            continue  # the clean run had nothing after it either: nothing to recover to
        measured += 1
        first = _first_output_after(run, end, wanted)
        if first is None:
            waited = (run.end - end).total_seconds()
            stuck.append(what)
            examples.append(f"{what} ended {stamp(end)}: no output after it (the clean run had one)")
        else:
            waited = (first - end).total_seconds()
            examples.append(
                f"{what} ended {stamp(end)}: outputs again after {waited:g} s "
                f"(clean run: {(baseline - end).total_seconds():g} s)"
            )
        worst = max(worst, waited)
    if not measured:
        return _check(
            "recovery", run.preset, None, thresholds.recovery_seconds, "seconds",
            "does not apply: the clean run had no output after any outage or restart ended either",
        )  # fmt: skip
    examples.sort(key=lambda line: "no output" not in line)  # the unrecovered first
    if stuck:
        summary = f"never published again after {', '.join(stuck)} (waited {worst:g} s to the run's end)"
        verdict: Verdict = "fail"
    else:
        summary = (
            f"outputs flowed again at most {worst:g} replay seconds after {_plural(measured, 'fault')} ended"
        )
        verdict = "pass" if worst <= thresholds.recovery_seconds else "fail"
    return _check(
        "recovery",
        run.preset,
        worst,
        thresholds.recovery_seconds,
        "seconds",
        summary,
        examples,
        verdict=verdict,
    )


# -- amplification -----------------------------------------------------------------------------------


def _identical(outputs: Iterable[Seen]) -> dict[tuple[str, bytes], set[str]]:
    """The event ids of the outputs of each subject and body. One id published twice is one
    message (consumers deduplicate on ``ce-id``, as after any redelivery); two ids are two."""
    ids: dict[tuple[str, bytes], set[str]] = {}
    for output in outputs:
        ids.setdefault((output.subject, output.body), set()).add(output.ce_id)
    return ids


def _repeats(outputs: Iterable[Seen]) -> int:
    """Outputs that repeat an earlier one's subject and body exactly, under an id of their own."""
    return sum(len(ids) - 1 for ids in _identical(outputs).values())


def _caused_by(run: RunRecord, kind: str) -> dict[str, list[Seen]]:
    """For each input the truth says a fault of ``kind`` hit (by ce-id): the outputs it caused."""
    hit = {line.get("ce_id") for line in run.truth if line.get("kind") == kind}
    traces: dict[str, set[str]] = {}
    for seen in run.inputs:  # a duplicate's copies may carry one trace id or one each
        if seen.ce_id in hit and seen.trace:
            traces.setdefault(seen.ce_id, set()).add(seen.trace)
    return {ce_id: [o for o in run.outputs if o.trace in ids] for ce_id, ids in sorted(traces.items())}


def amplification(run: RunRecord, clean: RunRecord, thresholds: Thresholds, fit: ContractFit) -> Check:
    """Faults the adapter passes on: an input duplicate that becomes repeated outputs (same subject
    and body), and a corrupt input that becomes an output that does not fit its contract."""
    examples: list[str] = []
    duplicated = 0
    for ce_id, outputs in _caused_by(run, "duplicate").items():
        for (subject, _), ids in _identical(outputs).items():
            if len(ids) > 1:
                duplicated += len(ids) - 1
                examples.append(f"duplicated input {ce_id} became {len(ids)} identical outputs on {subject}")
    corrupted = 0
    for ce_id, outputs in _caused_by(run, "corrupt").items():
        for output in outputs:
            if problem := fit.body_problem(output):
                corrupted += 1
                examples.append(f"corrupt input {ce_id} became invalid output {output.ce_id}: {problem}")
    excess = max(0, _repeats(run.outputs) - _repeats(clean.outputs))
    notes = []
    has_duplicates = any(line.get("kind") == "duplicate" for line in run.truth)
    if has_duplicates and run.outputs and not _traced_outputs(run):
        duplicated = excess  # no output carries an input's trace id: repeats beyond the clean run's
        notes.append("outputs carry no input's trace id, so repeats beyond the clean run's count")
        if excess:
            examples.append(
                f"{excess} more outputs repeat an earlier one's subject and body than in the clean run"
            )
    elif excess:
        notes.append(f"{excess} more repeated outputs than the clean run, none caused by a duplicated input")
    total = duplicated + corrupted
    summary = (
        "passed on no fault"
        if not total
        else f"passed faults on: {_plural(duplicated, 'repeated output')} from duplicated inputs, "
        f"{_plural(corrupted, 'invalid output')} from corrupt inputs"
    )
    if notes:
        summary += f" ({'; '.join(notes)})"
    return _check("amplification", run.preset, total, thresholds.amplified, "count", summary, examples)


# -- liveness ----------------------------------------------------------------------------------------


def _windows(run: RunRecord, width: float) -> set[int]:
    """The windows of ``width`` replay seconds, counted from the run's origin, with an output."""
    return {
        int((o.at - run.origin).total_seconds() // width) for o in run.outputs if run.origin <= o.at < run.end
    }


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
    if not everything:
        return _check(
            "liveness", run.preset, None, thresholds.liveness, "ratio",
            "does not apply: the adapter published nothing on the bus in the clean run",
        )  # fmt: skip
    down = _broker_down(run, width) & everything
    active = everything - down
    if not active:
        return _check(
            "liveness", run.preset, None, thresholds.liveness, "ratio",
            "does not apply: the broker was down in every window in which the clean run had outputs",
        )  # fmt: skip
    live = _windows(run, width) & active
    share = len(live) / len(active)
    last_ok = max(active) in live
    silent = sorted(active - live)
    examples = [f"no output in {_window(run, i, width)} (the clean run had some)" for i in silent]
    windows = f"{len(active)} active {width:g}-second windows"
    summary = f"outputs in {len(live)} of the clean run's {windows} ({share:.0%})"
    summary += (
        "; outputs in the last of them" if last_ok else "; none in the last of them: outputs did not resume"
    )
    if down:
        summary += f" ({_plural(len(down), 'window')} with the broker down left out)"
    verdict: Verdict = "pass" if share >= thresholds.liveness and last_ok else "fail"
    if not last_ok:
        examples.insert(0, examples.pop())
    return _check(
        "liveness", run.preset, share, thresholds.liveness, "ratio", summary, examples, verdict=verdict
    )


def _window(run: RunRecord, index: int, width: float) -> str:
    start = run.origin + timedelta(seconds=index * width)
    return f"{stamp(start)}..{stamp(start + timedelta(seconds=width))}"


# -- resources and latency ---------------------------------------------------------------------------


def resources(run: RunRecord, thresholds: Thresholds) -> list[Check]:
    """Peak resident memory (MiB) and CPU seconds of the adapter's process in the run."""
    used = run.resources
    if used.peak_rss_bytes <= 0:  # a live process never has none: /proc was not read
        why = "does not apply: the process's resource use was not measured"
        return [
            _check("peak-rss", run.preset, None, thresholds.peak_rss_mib, "MiB", why),
            _check("cpu", run.preset, None, thresholds.cpu_seconds, "cpu-seconds", why),
        ]
    mib = round(used.peak_rss_bytes / MIB, 2)
    cpu = round(used.cpu_seconds, 2)
    memory = f"peak resident memory {mib:.1f} MiB"
    return [
        _check("peak-rss", run.preset, mib, thresholds.peak_rss_mib, "MiB", memory),
        _check("cpu", run.preset, cpu, thresholds.cpu_seconds, "cpu-seconds", f"used {cpu:.2f} CPU seconds"),
    ]


def _reactions(run: RunRecord) -> list[tuple[float, str, Seen]]:
    """(latency, what reacted, its cause) slowest first: each traced output or, for an adapter
    that publishes nothing (a sink), each message it finished handling (stored, say)."""
    if run.outputs:
        reacted = [(o.at, f"{o.subject} {o.ce_id}", cause) for o, cause in _traced_outputs(run)]
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
            _check(f"latency-p{p}", run.preset, None, limit, "seconds", why) for p, limit in limits.items()
        ]
    over = (
        _plural(len(values), "traced output")
        if run.outputs
        else f"{_plural(len(values), 'handled message')} (it publishes nothing: input to handled)"
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
        checks.append(_check(f"latency-p{p}", run.preset, value, limit, "seconds", summary, slowest))
    return checks
