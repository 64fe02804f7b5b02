"""The checks every adapter is held to, whatever it does: one :class:`Check` per run from the
:class:`RunRecord` s the engine recorded, against the suite's :class:`Thresholds`: contract fit,
access, crashes, handler errors, amplification and resources here; recovery, liveness and latency
(does it keep flowing) in :mod:`sandbox.certify.flow`.

Pure functions over the model: no bus, no clock, no files, so each rule is tested with records
built by hand (tests/test_certify_score.py). :func:`sandbox.certify.score.score` calls them in
order; the detection scores are :mod:`sandbox.certify.detect`'s.

Decisions, and why:

* **An output fits when the bus would take it from a person**: it decodes against the contract its
  ``ce-type`` names, with no field the contract does not have (what ``citybus publish`` refuses,
  :mod:`bus.strict`), on a subject the adapter declared, with the adapter's own ``ce-source``.
  Consumers are tolerant of unknown fields so that versions can evolve; a product under
  certification publishes what it declared, and an unknown field there is a bug.
* **Cause is the trace id.** The replay stamps a fresh trace id on each message (a duplicate's
  copies too) and the adapter's bus propagates it, so an output carrying an input's trace id was
  caused by that input. Where no output carries an input's trace id, amplification falls back to
  repeats beyond the clean run's, and says so.
* **Amplified means a consumer would see it twice**: two outputs with the same subject and body
  under two event ids. The same event id published again is what an adapter with stable ids does
  after a redelivery, and every consumer deduplicates on it.
* **A handler error is judged in the clean run only**: a corrupt input may make a handler raise
  (and its message be dead-lettered) without the adapter failing; that is the bus doing its job.
  Faulted runs' counts are shown, not judged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from bus.codec import Codec, decode_bytes
from bus.envelope import JSON
from bus.errors import ContractViolation
from bus.strict import unknown_fields
from bus.subjects import matches
from contracts import Contract
from contracts.registry import Registry
from sandbox.certify.model import Adapted, Check, RunRecord, Seen, Thresholds, Verdict
from sandbox.certify.truth import stamp

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
    "make_check",
    "plural",
    "resources",
    "traced_outputs",
]

EXAMPLES = 5
"""Offending cases a check lists, at most."""

MIB = 1024 * 1024

_ANY_JSON: msgspec.json.Decoder[object] = msgspec.json.Decoder()
_ANY_MSGPACK: msgspec.msgpack.Decoder[object] = msgspec.msgpack.Decoder()


def make_check(
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


def plural(count: int, noun: str) -> str:
    """``1 output``, ``2 outputs``."""
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
    return make_check(
        "contract-fit", run.preset, len(bad), thresholds.contract_violations, "count", summary, examples
    )


# -- keeping running ---------------------------------------------------------------------------------


def access(run: RunRecord, thresholds: Thresholds) -> Check:
    """What the broker refused the adapter (a publish or subscription it has no permission for)."""
    refused = run.refusals
    summary = (
        "the broker refused nothing"
        if not refused
        else f"the broker refused {plural(len(refused), 'operation')} it has no permission for"
    )
    examples = (f"{r.operation} {r.subject} at {stamp(r.at)}" for r in refused)
    return make_check(
        "access", run.preset, len(refused), thresholds.access_refusals, "count", summary, examples
    )


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
    summary = "kept running" if not count else f"failed {plural(count, 'time')}"
    if examples:
        summary += f" (first: {examples[0]})"
    return make_check("crashes", run.preset, count, thresholds.crashes, "count", summary, examples)


def handler_errors(run: RunRecord, thresholds: Thresholds, *, clean: bool) -> Check:
    """Handler exceptions: judged in the clean run; in a faulted run counted and shown only."""
    failed = [h for h in run.handled if h.error]
    examples = (f"{h.subject} {h.ce_id}: {h.error}" for h in failed)
    count = f"{len(failed)} of {plural(len(run.handled), 'handled message')} raised"
    if clean:
        return make_check(
            "handler-errors", run.preset, len(failed), thresholds.handler_errors, "count", count, examples
        )
    summary = f"{count} (not judged: a corrupt or odd input may fail a handler and be dead-lettered)"
    return make_check(
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


def traced_outputs(run: RunRecord) -> list[tuple[Seen, Seen]]:
    """Each output that carries an input's trace id, with that input (its cause)."""
    causes = cause_of(run)
    return [(o, causes[o.trace]) for o in run.outputs if o.trace in causes]


# -- amplification -----------------------------------------------------------------------------------


def _identical(outputs: Iterable[Seen]) -> dict[tuple[str, bytes], set[str]]:
    """The event ids of the outputs of each subject and content. One id published twice is one
    message (consumers deduplicate on ``ce-id``, as after any redelivery); two ids are two."""
    ids: dict[tuple[str, bytes], set[str]] = {}
    for output in outputs:
        ids.setdefault((output.subject, _content(output)), set()).add(output.ce_id)
    return ids


def _content(output: Seen) -> bytes:
    """What an output says, its timestamps aside: the top-level fields of a JSON body that are not
    times, in key order. Two pieces of advice from one reading stamped when each was made say the
    same thing; a body that is not a JSON object is compared as it is."""
    if output.content_type != JSON:
        return output.body
    try:
        body = msgspec.json.decode(output.body)
    except msgspec.DecodeError:
        return output.body
    if not isinstance(body, dict):
        return output.body
    kept = {k: v for k, v in body.items() if not (isinstance(v, str) and _is_time(v))}
    return msgspec.json.encode(dict(sorted(kept.items())))


def _is_time(text: str) -> bool:
    if len(text) < 19 or text[10:11] not in ("T", "t", " "):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _repeats(outputs: Iterable[Seen]) -> int:
    """Outputs that repeat an earlier one's subject and content, under an id of their own."""
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
    and content, timestamps aside), and a corrupt input that becomes an output that does not fit
    its contract."""
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
    if has_duplicates and run.outputs and not traced_outputs(run):
        duplicated = excess  # no output carries an input's trace id: repeats beyond the clean run's
        notes.append("outputs carry no input's trace id, so repeats beyond the clean run's count")
        if excess:
            examples.append(
                f"{excess} more outputs repeat an earlier one's subject and body than in the clean run"
            )
    elif excess > duplicated:  # shown, not judged: a fault other than a duplicate may repeat outputs
        unexplained = plural(excess - duplicated, "more repeated output")
        notes.append(f"{unexplained} than in the clean run that no duplicated input caused")
    total = duplicated + corrupted
    summary = (
        "passed on no fault"
        if not total
        else f"passed faults on: {plural(duplicated, 'repeated output')} from duplicated inputs, "
        f"{plural(corrupted, 'invalid output')} from corrupt inputs"
    )
    if notes:
        summary += f" ({'; '.join(notes)})"
    return make_check("amplification", run.preset, total, thresholds.amplified, "count", summary, examples)


# -- resources ---------------------------------------------------------------------------------


def resources(run: RunRecord, thresholds: Thresholds) -> list[Check]:
    """Peak resident memory (MiB) and CPU seconds of the adapter's process in the run."""
    used = run.resources
    if used.peak_rss_bytes <= 0:  # a live process never has none: /proc was not read
        why = "does not apply: the process's resource use was not measured"
        return [
            make_check("peak-rss", run.preset, None, thresholds.peak_rss_mib, "MiB", why),
            make_check("cpu", run.preset, None, thresholds.cpu_seconds, "cpu-seconds", why),
        ]
    mib = round(used.peak_rss_bytes / MIB, 2)
    cpu = round(used.cpu_seconds, 2)
    memory = f"peak resident memory {mib:.1f} MiB"
    return [
        make_check("peak-rss", run.preset, mib, thresholds.peak_rss_mib, "MiB", memory),
        make_check(
            "cpu", run.preset, cpu, thresholds.cpu_seconds, "cpu-seconds", f"used {cpu:.2f} CPU seconds"
        ),
    ]
