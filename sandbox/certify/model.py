"""What one certification run saw, and what a suite demands: the values the engine
(:mod:`sandbox.certify.engine`) records, the scorer (:mod:`sandbox.certify.score`) judges and the
report (:mod:`sandbox.certify.report`) shows.

Times: every ``at`` is the **replay's clock** (the recorded day's time, ``shift_to_now`` off, so the
same seed gives the same times), as certify's own observer reads it from the replay's clock ticks
when the message arrives; ``wall`` is monotonic seconds since the run began. Latencies, windows and
recovery times are seconds of replay time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = [
    "Adapted",
    "BrokerFault",
    "Crash",
    "DeadLetterSeen",
    "DetectionSpec",
    "Handled",
    "Refusal",
    "Resources",
    "RunRecord",
    "Seen",
    "Thresholds",
]


class Seen(msgspec.Struct, frozen=True, kw_only=True):
    """One message certify's observer received: an input the replay published on a subject the
    adapter consumes, or an output the adapter published."""

    at: datetime
    """The replay's clock when the observer received it."""
    wall: float
    subject: str
    entity: str
    """The subject's last token."""
    ce_id: str
    ce_time: datetime | None
    ce_source: str
    ce_type: str
    """The contract's name as the message says (``ce-type``)."""
    trace: str
    """The W3C trace id of its ``traceparent`` ('' when none): an output carries its input's."""
    body: bytes
    content_type: str = "application/json"
    """Its ``content-type`` header (how ``body`` is encoded: JSON or msgpack)."""


class DeadLetterSeen(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter the adapter published (``ce-source`` its own), with why."""

    at: datetime
    wall: float
    reason: str
    original_subject: str
    original_id: str


class Handled(msgspec.Struct, frozen=True, kw_only=True):
    """One message the adapter's process handled, as the probe in its bus pipeline saw it."""

    wall: float
    """When the handler began (seconds since the run began, on the engine's clock)."""
    seconds: float
    """How long the handler took (wall seconds)."""
    subject: str
    ce_id: str
    trace: str
    error: str
    """'' when the handler returned; else the exception's repr."""
    done: datetime | None = None
    """The replay's clock when the handler returned (a sink's "output": the message is stored)."""


class Crash(msgspec.Struct, frozen=True, kw_only=True):
    """The adapter failing: its ``run`` raised and the supervisor restarted it, or its process died."""

    at: datetime
    wall: float
    error: str
    process_died: bool = False


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """The broker refusing the adapter something (a permissions violation)."""

    at: datetime
    wall: float
    operation: str
    """``publish`` or ``subscription``."""
    subject: str


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """The adapter process's resource use over the run (from ``/proc``)."""

    peak_rss_bytes: int
    cpu_seconds: float


class BrokerFault(msgspec.Struct, frozen=True, kw_only=True):
    """A fault certify injects itself, outside the replay: the broker restarted, or the adapter's
    link to it slowed down. Written to the run's ground truth like the replay's faults."""

    kind: Literal["restart", "slow"]
    start: datetime
    end: datetime
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class DetectionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What an adapter says it detects (:class:`adapters.Detection`), as plain names."""

    contract: str
    field: str
    kinds: dict[str, str]
    """A value of ``field`` → the fault kind it reports (``"stuck"``, ``"outage"``, …)."""
    entity: str
    """The field naming the entity the detection is about."""
    time: str
    """The field with the time the detection is about ('' : the output's ``ce-time``)."""


class Adapted(msgspec.Struct, frozen=True, kw_only=True):
    """The adapter under certification, as certify sees it."""

    adapter: str
    instance: str
    source: str
    """Its ``ce-source`` (``/adapters/<instance>``)."""
    consumes: list[str]
    """The contracts it consumes."""
    produces: list[str]
    consumed_subjects: list[str]
    """The subject patterns of what it consumes (the inputs)."""
    produced_subjects: list[str]
    """The subject patterns it may publish (its outputs)."""
    detections: list[DetectionSpec] = msgspec.field(default_factory=list)


class RunRecord(msgspec.Struct, kw_only=True):
    """Everything one run (the clean one, or one preset) produced."""

    preset: str
    """``clean`` or the preset's name."""
    seed: int
    origin: datetime
    """The replay's time when it started."""
    end: datetime
    """The replay's time when it ended."""
    inputs: list[Seen] = msgspec.field(default_factory=list)
    outputs: list[Seen] = msgspec.field(default_factory=list)
    dead_letters: list[DeadLetterSeen] = msgspec.field(default_factory=list)
    handled: list[Handled] = msgspec.field(default_factory=list)
    crashes: list[Crash] = msgspec.field(default_factory=list)
    refusals: list[Refusal] = msgspec.field(default_factory=list)
    truth: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """The replay's ground-truth lines (docs/faults.md), as read back."""
    broker_faults: list[BrokerFault] = msgspec.field(default_factory=list)
    resources: Resources = msgspec.field(default_factory=lambda: Resources(peak_rss_bytes=0, cpu_seconds=0.0))
    exit_code: int | None = None
    """The adapter process's exit status (``None``: it ran until certify stopped it, as it should)."""
    wall_seconds: float = 0.0
    log_tail: list[str] = msgspec.field(default_factory=list)
    """The last lines the adapter process wrote on stderr (for a crash's report)."""


class Thresholds(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a suite demands; part of the suite's definition, never of the adapter."""

    contract_violations: int = 0
    """Outputs that do not fit their contract, or are on a subject or source it did not declare."""
    access_refusals: int = 0
    crashes: int = 0
    """Adapter failures (restarts by the supervisor, and process deaths) in one run."""
    handler_errors: int = 0
    """Handler exceptions in the clean run (in a faulted run a corrupt input may fail a handler)."""
    recovery_seconds: float = 7200.0
    """Replay seconds that outputs take to flow again after an outage or a broker restart ends,
    beyond what the clean run took from the same moment."""
    amplified: int = 0
    """Outputs that repeat a fault: two outputs with the same subject and body caused by one
    duplicated input, or an invalid output caused by a corrupt input."""
    liveness: float = 0.8
    """The share of the clean run's active windows in which a faulted run has outputs too."""
    liveness_window: float = 3600.0
    """Replay seconds per liveness window."""
    peak_rss_mib: float = 512.0
    cpu_seconds: float = 120.0
    """In one run."""
    latency_p50: float = 600.0
    latency_p99: float = 3600.0
    """Replay seconds from an input to the output it caused (the clean run)."""
    precision: float = 0.9
    recall: float = 0.8
    detection_tolerance: float = 3600.0
    """Replay seconds after a fault's last hit in which a detection of it still counts."""


# -- what certify concludes: the report's JSON document (docs/certify.md has its schema) ----------

Verdict = Literal["pass", "fail", "n/a"]
"""A check's verdict; ``n/a`` when it does not apply (latency of an adapter that publishes nothing)."""


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One check's verdict over one run (``run`` = the preset, ``clean``) or all of them (``all``)."""

    check: str
    """``contract-fit``, ``access``, ``crashes``, ``handler-errors``, ``recovery``, ``amplification``,
    ``liveness``, ``peak-rss``, ``cpu``, ``latency-p50``, ``latency-p99``, ``precision:<kind>``,
    ``recall:<kind>``."""
    run: str
    verdict: Verdict
    value: float | None
    """What was measured (``None`` when nothing could be)."""
    threshold: float | None
    unit: str
    """``count``, ``ratio``, ``seconds`` (replay), ``MiB``, ``cpu-seconds``."""
    summary: str
    """One line saying what was found, for a person."""
    examples: list[str] = msgspec.field(default_factory=list)
    """Up to a few offending cases (a subject and ce-id, an exception, a false alarm)."""


class DetectionScore(msgspec.Struct, frozen=True, kw_only=True):
    """Detections of one fault kind matched against the ground truth, over every run."""

    kind: str
    detections: int
    true_positives: int
    false_alarms: int
    episodes: int
    """Ground-truth episodes of this kind (one per fault and entity, a stretch of hits)."""
    detected: int
    precision: float | None
    recall: float | None
    false_alarm_examples: list[str] = msgspec.field(default_factory=list)


class FaultWindow(msgspec.Struct, frozen=True, kw_only=True):
    """A fault on the timeline: a kind on an entity from ``start`` to ``end`` (replay time)."""

    kind: str
    entity: str
    start: datetime
    end: datetime
    hits: int


class Lane(msgspec.Struct, frozen=True, kw_only=True):
    """One entity's row of a run's timeline: when inputs arrived and outputs left (replay time)."""

    entity: str
    inputs: list[datetime]
    outputs: list[datetime]


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    lanes: list[Lane]
    faults: list[FaultWindow]
    crashes: list[datetime]
    omitted_lanes: int = 0
    """Entities left out to keep the plot readable."""


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One run, in figures."""

    run: str
    description: str
    seed: int
    plan: str
    """The fault plan as TOML (empty for the clean run), exactly as the replay read it."""
    injected: dict[str, int]
    """Faults injected per kind (the ground truth)."""
    inputs: int
    outputs: int
    handled: int
    dead_letters: int
    crashes: int
    refusals: int
    latency_p50: float | None
    latency_p99: float | None
    peak_rss_mib: float
    cpu_seconds: float
    wall_seconds: float
    verdict: Verdict
    timeline: Timeline


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """The whole certification: what was run, each check's verdict, and the verdict in total."""

    schema: str = "citybus.certify/1"
    citybus: str
    """citybus's version."""
    adapter: Adapted
    suite: str
    suite_version: int
    suite_description: str
    seed: int
    speed: float
    recording: str
    command: str
    """The exact command that reproduces this report."""
    started: datetime
    finished: datetime
    verdict: Verdict
    """``pass`` only when every check passes (or does not apply)."""
    thresholds: Thresholds
    checks: list[Check]
    detection: list[DetectionScore]
    runs: list[RunSummary]
