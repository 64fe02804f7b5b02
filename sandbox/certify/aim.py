"""A certification preset aimed at one adapter: the concrete fault plan its run replays.

A preset of a suite (:mod:`sandbox.certify.suite`) names what it hits by role: ``@consumed`` (every
subject pattern the adapter consumes), ``@one`` (one recorded subject of those), and may give
``hits`` (about how many messages a fault hits) for a ``probability``. :func:`concrete_plan`
expands a preset against what the replay publishes (:class:`Replayed`, read from the recording)
into the TOML text of an ordinary fault plan (docs/faults.md) with its own seed;
:func:`plan_suite` does it for every preset of a suite and checks each plan with the real
:func:`~sandbox.faults.check_plan` against the recording.

Decisions, and why:

* **Not applicable is not a failure.** An adapter that consumes nothing a target can hit (a source
  adapter consumes nothing; a consumer of the morning forecast has nothing in a night outage's
  window) gets :class:`NotApplicable` with the reason, and the report says so; a fault on ordinary
  patterns that has nothing to hit is the suite's mistake, a :class:`~sandbox.certify.suite.SuiteError`.
* **``hits`` over ``probability``.** A probability right for the 600 bike messages of the day does
  nothing to the 48 weather observations; the expansion divides ``hits`` by the messages the fault
  can touch in its window, so a preset fires a few times on any adapter (rounded to 6 decimals).
* **``@one`` is picked among busy subjects.** Only subjects with at least :data:`BUSY` messages in
  the windows of the faults naming it are candidates (else those with one; two for ``stuck``), so
  an outage never lands on a subject recorded once at midnight and injects nothing. Every ``@one``
  of a preset is the same subject (the stuck sensor is one sensor), drawn by
  ``random.Random("<plan seed>:@one")``.
* **Seeds derive, they are not drawn.** A preset's plan seed is :func:`preset_seed` (sha256 of the
  run's seed and the preset's name), so adding or reordering presets changes no other preset's
  plan, and one preset rerun alone (``--only``) gets the same faults.
* **Concrete plans are written by hand** (there is no TOML writer among the dependencies): keys in
  the template's order, numbers as Python writes them, strings as TOML basic strings; the tests
  load the text with the real plan loader. Comments on top say the suite, the preset and what
  certify injects itself (a restart, a slow link), so the report's copy of the plan tells it all.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from bus.errors import ConfigError
from bus.subjects import matches
from sandbox.adapter import DRAMMEN_DAY
from sandbox.certify.model import Adapted
from sandbox.certify.suite import TARGETS, Preset, Restart, Slow, Suite, SuiteError
from sandbox.contents import recording_extent
from sandbox.faults import FaultPlan, FaultPlanError, ReplayScope, check_plan
from sandbox.recording import RecordingError, read_messages

__all__ = [
    "BUSY",
    "ConcretePlan",
    "NotApplicable",
    "Replayed",
    "concrete_plan",
    "plan_suite",
    "preset_seed",
]

BUSY: Final = 3
"""Messages a subject needs in the windows of the faults naming ``@one`` to be picked first."""
_NS: Final = 1_000_000_000
_FEWEST: Final = {"stuck": 2}
"""Messages a kind needs on one subject in its window to do anything (a stuck sensor repeats the
first reading of its window: one message alone is not stuck)."""


class ConcretePlan(msgspec.Struct, frozen=True, kw_only=True):
    """A preset aimed at one adapter with one seed: an ordinary fault plan, and what certify injects."""

    preset: str
    seed: int
    """The plan's seed (:func:`preset_seed` of the run's seed and the preset's name)."""
    text: str
    """The fault plan as TOML, for the replay (``FaultPlan.loads(text)`` is :attr:`plan`)."""
    plan: FaultPlan
    targets: list[str]
    """The recorded subjects the adapter consumes that the plan's faults may hit, sorted."""
    restart: Restart | None = None
    slow: Slow | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    """:func:`~sandbox.faults.check_plan`'s warnings (:func:`plan_suite` fills them)."""


class NotApplicable(msgspec.Struct, frozen=True, kw_only=True):
    """A preset that has nothing to hit in what the adapter consumes; ``reason`` says why."""

    preset: str
    reason: str


@dataclass(frozen=True)
class Replayed:
    """What a suite's replay publishes, by subject: each message's time in replay seconds."""

    times: Mapping[str, Sequence[float]]
    """Subject → sorted seconds from the start of the replay."""
    length: float
    """Seconds the replay's window lasts."""
    files: tuple[str, ...] = field(default=())

    @classmethod
    def of(
        cls, files: Sequence[str | Path], *, start: float = 0.0, duration: float | None = None
    ) -> Replayed:
        """Read ``files`` as a replay from ``start`` for ``duration`` seconds publishes them."""
        paths = [Path(f) for f in files]
        first, last = recording_extent(paths)
        begin = first + int(start * _NS)
        end = last + 1 if duration is None else begin + int(duration * _NS)
        times: dict[str, list[float]] = {}
        for path in paths:
            for message in read_messages(path, start=begin, end=end):
                times.setdefault(message.subject, []).append((message.log_time - begin) / _NS)
        return cls(
            times={s: sorted(t) for s, t in sorted(times.items())},
            length=max(end - begin, 0) / _NS,
            files=tuple(str(p) for p in paths),
        )

    def count(self, patterns: Iterable[str], start: float = 0.0, duration: float | None = None) -> int:
        """Messages on subjects matching ``patterns`` from ``start`` for ``duration`` replay seconds."""
        subjects = [s for s in self.times if any(matches(p, s) for p in patterns)]
        end = float("inf") if duration is None else start + duration
        return sum(
            bisect.bisect_left(self.times[s], end) - bisect.bisect_left(self.times[s], start)
            for s in subjects
        )


def preset_seed(seed: int, name: str) -> int:
    """The seed of a preset's plan: the first 4 bytes of sha256("<seed>:<name>"), big-endian."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "big")


def concrete_plan(
    preset: Preset, adapted: Adapted, replayed: Replayed, seed: int, *, suite: Suite | None = None
) -> ConcretePlan | NotApplicable:
    """``preset`` aimed at what ``adapted`` consumes of ``replayed``, with the run's ``seed``.

    Targets become the adapter's consumed patterns (``@consumed``) or one recorded subject of them
    (``@one``, picked by the preset's seed among the busy ones), ``hits`` a probability; the result
    is the TOML text of an ordinary fault plan and the subjects it aims at, or :class:`NotApplicable`
    when the adapter consumes nothing a target can hit in the fault's window. A fault on ordinary
    patterns that has no message in its window, or a restart or slowdown after the replay's end, is a
    :class:`SuiteError`; ``suite`` (the preset's) names itself in errors and in the plan's first line.
    """
    where = f"{_origin(suite)}: preset {preset.name}"
    plan_seed = preset_seed(seed, preset.name)
    consumed = [s for s in replayed.times if any(matches(p, s) for p in adapted.consumed_subjects)]
    patterns = [p for p in dict.fromkeys(adapted.consumed_subjects) if any(matches(p, s) for s in consumed)]
    named = {t for fault in preset.faults for t in fault.get("subjects", ()) if t in TARGETS}
    if named and not consumed:
        what = (
            "consumes nothing" if not adapted.consumed_subjects else "consumes nothing the replay publishes"
        )
        return NotApplicable(preset=preset.name, reason=f"{adapted.instance} ({adapted.adapter}) {what}")
    one = ""
    if "@one" in named:
        aiming = [f for f in preset.faults if "@one" in f.get("subjects", ())]
        fewest = max(_FEWEST.get(f["kind"], 1) for f in aiming)
        ranked = [
            [s for s in consumed if all(replayed.count([s], *_window(f)) >= least for f in aiming)]
            for least in (max(BUSY, fewest), fewest)
        ]
        candidates = ranked[0] or ranked[1]
        if not candidates:
            some = "a message" if fewest == 1 else f"{fewest} messages"
            return NotApplicable(
                preset=preset.name,
                reason=f"no subject {adapted.instance} consumes has {some} in {_span(_window(aiming[0]))}",
            )
        one = random.Random(f"{plan_seed}:@one").choice(candidates)
    tables: list[dict[str, Any]] = []
    for index, template in enumerate(preset.faults):
        subjects = list(dict.fromkeys(_expand(template.get("subjects", ["city.>"]), patterns, one)))
        table: dict[str, Any] = {"kind": template["kind"], "subjects": subjects}
        aimed = any(s in TARGETS for s in template.get("subjects", ()))
        reach = replayed.count(subjects, *_window(template))
        recorded = any(matches(p, s) for p in subjects for s in replayed.times)
        if reach == 0 and (recorded or aimed):  # no recorded subject at all: check_plan says which
            if aimed:
                return NotApplicable(
                    preset=preset.name,
                    reason=f"nothing {adapted.instance} consumes has a message in {_span(_window(template))}",
                )
            raise SuiteError(
                f"{where}: faults[{index}] (kind {template['kind']!r}): subjects {subjects} have no message "
                f"in {_span(_window(template))}, so it never fires"
            )
        for key, value in template.items():
            if key == "hits":
                table["probability"] = max(round(min(1.0, value / max(reach, 1)), 6), 1e-6)
            elif key not in ("kind", "subjects"):
                table[key] = value
        tables.append(table)
    moments = {"restart": preset.restart.at if preset.restart else None}
    moments["slow"] = preset.slow.start if preset.slow else None
    for key, at in moments.items():
        if at is not None and at >= replayed.length:
            raise SuiteError(
                f"{where}: {key} at {at:g} s is at or after the end of the replay's window "
                f"({replayed.length:g} s), so it never happens"
            )
    named_suite = f"suite {suite.name} v{suite.version}, " if suite else ""
    text = _plan_text(preset, plan_seed, tables, named_suite)
    try:
        plan = FaultPlan.loads(text, origin=where)
    except FaultPlanError as exc:  # an adapter's consumed pattern the plan loader refuses
        raise SuiteError(str(exc)) from None
    hit = {s for t in tables for s in consumed if any(matches(p, s) for p in t["subjects"])}
    return ConcretePlan(
        preset=preset.name,
        seed=plan_seed,
        text=text,
        plan=plan,
        targets=sorted(hit),
        restart=preset.restart,
        slow=preset.slow,
    )


def plan_suite(
    suite: Suite,
    adapted: Adapted,
    *,
    seed: int | None = None,
    files: Sequence[str | Path] = (DRAMMEN_DAY,),
    only: Sequence[str] = (),
) -> dict[str, ConcretePlan | NotApplicable]:
    """Every preset of ``suite`` (or those named in ``only``) aimed at ``adapted`` and checked with
    :func:`~sandbox.faults.check_plan` against ``files`` as the suite replays them: an error (a fault
    that never fires) is a :class:`SuiteError` naming the preset, warnings go with the plan.
    ``seed`` overrides the suite's."""
    presets = [suite.preset(name) for name in only] if only else suite.presets
    where = _origin(suite)
    try:
        scope = ReplayScope.of(files, start=suite.start, duration=suite.duration)
        replayed = Replayed.of(files, start=suite.start, duration=suite.duration)
    except (ConfigError, RecordingError) as exc:
        raise SuiteError(f"{where}: {exc}") from None
    run_seed = suite.seed if seed is None else seed
    plans: dict[str, ConcretePlan | NotApplicable] = {}
    for preset in presets:
        aimed = concrete_plan(preset, adapted, replayed, run_seed, suite=suite)
        if isinstance(aimed, ConcretePlan):
            findings = check_plan(aimed.plan, scope, origin=f"{where}: preset {preset.name}")
            errors = [f.text for f in findings if f.level == "error"]
            if errors:
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                raise SuiteError(errors[0] + more)
            aimed = msgspec.structs.replace(aimed, warnings=[f.text for f in findings])
        plans[preset.name] = aimed
    return plans


def _origin(suite: Suite | None) -> str:
    """How errors name the suite: by its file."""
    return f"suite {suite.path or suite.name}" if suite else "suite"


def _window(fault: Mapping[str, Any]) -> tuple[float, float | None]:
    return float(fault.get("start", 0.0)), fault.get("duration")


def _span(window: tuple[float, float | None]) -> str:
    start, duration = window
    end = "the end" if duration is None else f"{start + duration:g} s"
    return f"its window ({start:g} s to {end} of replay time)"


def _expand(subjects: Iterable[str], patterns: Sequence[str], one: str) -> Iterable[str]:
    for subject in subjects:
        if subject == "@consumed":
            yield from patterns
        elif subject == "@one":
            yield one
        else:
            yield subject


def _plan_text(preset: Preset, seed: int, tables: Sequence[Mapping[str, Any]], suite: str) -> str:
    """The fault plan as TOML: a header of comments, the seed, each fault's keys in template order."""
    lines = [f"# citybus certify: {suite}preset {preset.name}"]
    if preset.description:
        lines.append(f"# {' '.join(preset.description.split())}")
    if preset.restart is not None:
        lines.append(
            f"# certify stops the broker at {preset.restart.at:g} s for {preset.restart.down:g} wall s"
        )
    if preset.slow is not None:
        slow = preset.slow
        until = "the end" if slow.duration is None else f"{slow.start + slow.duration:g} s"
        lines.append(
            f"# certify delays the adapter's link by {slow.latency:g} wall s from {slow.start:g} s to {until}"
        )
    lines.append(f"seed = {seed}")
    for table in tables:
        lines.append("")
        lines.append("[[faults]]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A TOML value: a boolean, an integer, a float, a basic string or an array of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # inf, -inf and nan are TOML's words too
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _quote(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'
