"""A fault plan checked against the replay it is for, before the replay starts (docs/faults.md).

A plan is valid on its own when :meth:`~sandbox.faults.FaultPlan.load` accepts it; whether it
*does* anything depends on the recordings. :func:`check_plan` finds, from the recordings' channels
(each a subject as one ``ce-source`` publishes it, read from the MCAP summary without reading a
message: 16 ms on the Drammen day, under 2 s for 5000 channels and a million messages):

* **errors**, a fault that can never fire: a ``subjects`` pattern that matches no subject the replay
  publishes (after its ``include``/``exclude``), a skew ``sources`` entry that is no ``ce-source``
  of the subjects the fault hits, a window that starts after the replay's window has ended,
  or a fault whose every message an earlier ``outage`` (or ``drop`` with probability 1) removes
  first. Each is one line naming the plan, ``faults[i] (kind …)``, the key, the value and what the
  recordings hold (the nearest names);
* **warnings**, one fault hiding another's signal. Faults apply in plan order, each to what the
  ones before it let through (:mod:`sandbox.faults.injector`): a message a fault drops meets no
  later fault, so an earlier drop never makes a later fault's ground truth wrong. The other way
  round it does: a later ``drop`` or ``outage`` removes messages an earlier fault has already
  logged as duplicated, delayed, reordered, corrupted, stuck or skewed, so the ground truth names
  messages that never went out; a later ``corrupt`` breaks a stuck reading, so a consumer only
  dead-letters it and never sees the values repeat; a later ``stuck`` writes its reading over a
  body an earlier ``corrupt`` broke, so it goes out intact. A warning names both faults, the
  subjects and the window of replay time where they meet. A ``probability = 0`` is a warning too.

Decisions, and why:

* An idle fault is an error, not a warning: a warning scrolls past at ``citybus up`` and the replay
  runs for hours injecting nothing, which is the silent failure this check exists for. A plan that
  names something the recording lacks is fixed in the plan; there is no switch to run it anyway.
* ``probability = 0`` is only a warning: it is how a fault is switched off while keeping its place
  in the plan, and so the indices, and the random draws, of the faults after it.
* Hidden signals are warnings: a drop after a stuck sensor is a legitimate plan (a flaky radio on a
  flatlined sensor), only its ground truth must be read knowing it.
* Two faults meet on a channel (a subject and source), not just a subject: a skew of the
  lifeguards' clock and a drop at a site where only the sensor publishes never meet.
* Windows compare on the message's own time (its shifted, unskewed ``ce-time``), as the injector
  does, from the start of the replay's window; every loop of a looping replay starts them again
  (:meth:`~sandbox.faults.FaultInjector.restart`), so a window past the end never fires either way.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from bus.errors import ConfigError
from bus.subjects import matches
from sandbox.contents import RecordedChannel, read_channels, recording_extent
from sandbox.faults.plan import DropFault, FaultPlan, FaultSpec, OutageFault, SkewFault

__all__ = ["Finding", "ReplayScope", "check_plan"]

_NS: Final = 1_000_000_000
_REMOVING: Final = frozenset({"drop", "outage"})
"""Kinds after which a message may not go out at all."""
_Key = tuple[str, str]
"""A channel as two faults meet on it: (subject, ce-source)."""
_SHOWN: Final = 3
"""Names listed in a line before "and N more"."""


@dataclass(frozen=True, slots=True)
class ReplayScope:
    """What a replay publishes, as far as a fault plan cares: its channels and its length."""

    files: tuple[str, ...]
    channels: tuple[RecordedChannel, ...]
    """The channels the replay publishes (its ``include``/``exclude`` applied)."""
    left_out: tuple[RecordedChannel, ...]
    """The recordings' channels that ``include``/``exclude`` leave out."""
    length: float
    """Seconds of recording the replay's window covers."""

    @classmethod
    def of(
        cls,
        files: Sequence[str | Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        start: float = 0.0,
        duration: float | None = None,
    ) -> ReplayScope:
        """The scope of a replay of ``files`` with the replay's own options (read from summaries)."""
        paths = [Path(f) for f in files]
        first, last = recording_extent(paths)
        window_start = first + int(start * _NS)
        if window_start > last:  # as the replayer would refuse it
            length = (last - first) / _NS
            raise ConfigError(f"start {start:g} s is past the end of the recording ({length:.0f} s long)")
        window_end = last + 1 if duration is None else window_start + int(duration * _NS)
        kept: list[RecordedChannel] = []
        left_out: list[RecordedChannel] = []
        for path in paths:
            for channel in read_channels(path):
                wanted = not include or any(matches(p, channel.subject) for p in include)
                wanted = wanted and not any(matches(p, channel.subject) for p in exclude)
                (kept if wanted else left_out).append(channel)
        return cls(
            files=tuple(str(p) for p in paths),
            channels=tuple(kept),
            left_out=tuple(left_out),
            length=max(window_end - window_start, 0) / _NS,
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing :func:`check_plan` found: an error (a fault that never fires) or a warning."""

    level: Literal["error", "warning"]
    faults: tuple[int, ...]
    """The plan indices of the faults concerned (the later one last)."""
    key: str
    """The plan key it is about (``subjects``, ``sources``, ``start``, ``probability``), or ``order``
    for two faults that meet."""
    text: str
    """The whole finding in one line, starting with the plan's name."""
    subjects: tuple[str, ...] = ()
    """For two faults that meet: the subjects where they do."""
    window: tuple[float, float] | None = None
    """For two faults that meet: from and to, in seconds of replay time (at most the window's end)."""


def check_plan(plan: FaultPlan, scope: ReplayScope, *, origin: str = "fault plan") -> list[Finding]:
    """Every error and warning of ``plan`` on ``scope``: errors first, each group in plan order."""
    errors: list[Finding] = []
    warnings: list[Finding] = []
    hit = [_channels_hit(spec, scope.channels) for spec in plan.faults]
    keys = [{(c.subject, c.source) for c in channels} for channels in hit]
    for index, spec in enumerate(plan.faults):
        where = f"{origin}: faults[{index}] (kind {_kind(spec)!r})"
        errors.extend(_idle(spec, index, where, scope))
        if not _fires(spec):
            warnings.append(
                Finding("warning", (index,), "probability", f"{where}: probability = 0, so it never fires")
            )
    # Faults that never fire at all (one wrong pattern among right ones still fires) meet nothing.
    idle = {i for i, channels in enumerate(hit) if not channels}
    idle |= {finding.faults[0] for finding in errors if finding.key == "start"}
    for later, spec in enumerate(plan.faults):
        found = [
            finding
            for earlier, first in enumerate(plan.faults[:later])
            if not {earlier, later} & idle
            and _fires(spec)
            and _fires(first)
            and (finding := _order(first, earlier, keys[earlier], spec, later, keys[later], scope, origin))
        ]
        hidden = next((f for f in found if f.level == "error"), None)
        if hidden is not None:  # it never fires: what it would meet does not matter
            errors.append(hidden)
            idle.add(later)
        else:
            warnings.extend(found)
    return errors + warnings


def _kind(spec: FaultSpec) -> str:
    return str(type(spec).__struct_config__.tag)


def _fires(spec: FaultSpec) -> bool:
    return bool(getattr(spec, "probability", 1.0) > 0)


def _by_subject(spec: FaultSpec, channels: Iterable[RecordedChannel]) -> list[RecordedChannel]:
    return [c for c in channels if any(matches(p, c.subject) for p in spec.subjects)]


def _channels_hit(spec: FaultSpec, channels: Iterable[RecordedChannel]) -> list[RecordedChannel]:
    """The channels whose messages ``spec`` may touch: its subjects and, for a skew, its sources."""
    sources = spec.sources if isinstance(spec, SkewFault) else []
    return [c for c in _by_subject(spec, channels) if not sources or c.source in sources]


def _end(spec: FaultSpec) -> float:
    return math.inf if spec.duration is None else spec.start + spec.duration


# -- faults that never fire -----------------------------------------------------------------------


def _idle(spec: FaultSpec, index: int, where: str, scope: ReplayScope) -> Iterator[Finding]:
    """What makes one fault never fire, on its own: its subjects, its sources, its start."""
    subjects = sorted({c.subject for c in scope.channels})
    recordings = ", ".join(scope.files)
    alone = not _channels_hit(spec, scope.channels)
    for pattern in spec.subjects:
        if any(matches(pattern, s) for s in subjects):
            continue
        never = "so it never fires" if alone else "so it adds nothing to the fault's other subjects"
        left_out = sorted({c.subject for c in scope.left_out if matches(pattern, c.subject)})
        if left_out:
            holds = f"matches only subjects the replay's include/exclude leaves out ({_some(left_out)})"
            holds = f"{holds}, {never}"
        else:
            holds = f"matches no subject of {recordings}, {never}; {_nearest(pattern, subjects)}"
        yield Finding("error", (index,), "subjects", f"{where}: subjects = {pattern!r} {holds}")
    matched = _by_subject(spec, scope.channels)
    if isinstance(spec, SkewFault) and spec.sources and matched:
        present = sorted({c.source for c in matched} - {""})
        never = "so it never fires" if alone else "so it adds nothing to the fault's other sources"
        anywhere = {c.source for c in scope.channels}
        for source in spec.sources:
            if source in present:
                continue
            if source in anywhere:
                holds = "publishes only on subjects it does not hit"
            else:
                holds = f"is no ce-source of {recordings}"
            nearest = difflib.get_close_matches(source, present, n=_SHOWN, cutoff=0.0)
            there = "nearest: " + ", ".join(repr(s) for s in nearest) if nearest else "none has a ce-source"
            yield Finding(
                "error",
                (index,),
                "sources",
                f"{where}: sources = {source!r} {holds}, {never}; of the subjects it hits, {there} "
                "(citybus recording info FILE says what a recording holds)",
            )
    if spec.start >= scope.length:
        yield Finding(
            "error",
            (index,),
            "start",
            f"{where}: start = {spec.start:g} is at or after the end of the replay's window "
            f"({scope.length:g} s of {', '.join(scope.files)}), so it never fires; give a start below "
            f"{scope.length:g}",
        )


def _nearest(pattern: str, subjects: Sequence[str]) -> str:
    """The patterns (or subjects) nearest to one that matches nothing: "nearest: '…', '…'".

    The subjects that share the longest prefix with the pattern give the candidates: the pattern
    with its first wrong token replaced by theirs (and ``.>`` added to one that is too short), kept
    when it matches something; difflib ranks them.
    """
    if not subjects:
        return "they hold no subject"
    tokens = pattern.split(".")

    def depth(subject: str) -> int:
        n = 0
        for token, part in zip(tokens, subject.split("."), strict=False):
            if token != "*" and token != part:
                break
            n += 1
        return n

    best = max(depth(s) for s in subjects)
    pool = [s for s in subjects if depth(s) == best]
    candidates: set[str] = set()
    for subject in pool:
        parts = subject.split(".")
        if best < len(tokens) and best < len(parts):
            guess = ".".join([*tokens[:best], parts[best], *tokens[best + 1 :]])
            if any(matches(guess, s) for s in subjects):
                candidates.add(guess)
        elif best == len(tokens) < len(parts):
            candidates.add(f"{pattern}.>")
    nearest = difflib.get_close_matches(pattern, sorted(candidates or pool), n=_SHOWN, cutoff=0.0)
    return "nearest: " + ", ".join(repr(n) for n in nearest)


# -- faults that meet -------------------------------------------------------------------------------

_LOGGED: Final = {
    "duplicate": "duplicated",
    "reorder": "reordered",
    "delay": "delayed",
    "corrupt": "corrupted",
    "stuck": "stuck",
    "skew": "skewed",
}
"""What the ground truth says an earlier fault did to a message."""


def _order(
    first: FaultSpec,
    earlier: int,
    first_hit: set[_Key],
    spec: FaultSpec,
    later: int,
    later_hit: set[_Key],
    scope: ReplayScope,
    origin: str,
) -> Finding | None:
    """What the earlier fault does to the later one's signal, or the later one to the earlier's."""
    meeting = _meeting(first, first_hit, spec, later_hit, scope)
    if meeting is None:
        return None
    subjects, (low, high) = meeting
    kind, first_kind = _kind(spec), _kind(first)
    where = f"{origin}: faults[{later}] (kind {kind!r})"
    place = f"on {_some(subjects)}, {_window(low, high)}"
    removes_all = isinstance(first, OutageFault) or (isinstance(first, DropFault) and first.probability == 1)
    if removes_all and _covers(first, first_hit, spec, later_hit, scope):
        return Finding(
            "error",
            (earlier, later),
            "order",
            f"{where} comes after faults[{earlier}] (kind {first_kind!r}), which drops every message it "
            f"could hit first ({place}), so it never fires; list it before faults[{earlier}] or move its "
            "window",
            tuple(subjects),
            (low, high),
        )
    if first_kind in _REMOVING:
        return None  # a dropped message meets no later fault: nothing later is logged wrongly
    if kind in _REMOVING:
        action = "drops every one of the" if kind == "outage" else "may drop"
        consequence = "so the ground truth can name messages that never went out"
    elif kind == "corrupt" and first_kind == "stuck":
        action = "may break the bodies of"
        consequence = "so a consumer only dead-letters them and never sees the repeated values"
    elif kind == "stuck" and first_kind == "corrupt":
        action = "writes its stuck reading over"
        consequence = "so the ground truth can name corrupted messages that went out intact"
    else:
        return None
    return Finding(
        "warning",
        (earlier, later),
        "order",
        f"{where} comes after faults[{earlier}] (kind {first_kind!r}) and {action} messages "
        f"faults[{earlier}] has already logged as {_LOGGED[first_kind]} ({place}), {consequence}; "
        f"faults apply in plan order: list faults[{later}] before faults[{earlier}], or keep them apart",
        tuple(subjects),
        (low, high),
    )


def _meeting(
    first: FaultSpec,
    first_hit: set[_Key],
    spec: FaultSpec,
    later_hit: set[_Key],
    scope: ReplayScope,
) -> tuple[list[str], tuple[float, float]] | None:
    """The subjects and the window of replay time where two faults may both touch a message."""
    subjects = sorted({subject for subject, _source in later_hit & first_hit})
    low = max(first.start, spec.start)
    # (a replay's window ends 1 ns after its last moment: shown to the microsecond)
    high = min(_end(first), _end(spec), round(scope.length, 6))
    if not subjects or low >= high:
        return None
    return subjects, (low, high)


def _covers(
    first: FaultSpec,
    first_hit: set[_Key],
    spec: FaultSpec,
    later_hit: set[_Key],
    scope: ReplayScope,
) -> bool:
    """Whether every message ``spec`` could hit is one ``first`` could hit too: channels and window."""
    if not later_hit <= first_hit:
        return False
    return first.start <= spec.start and min(_end(spec), scope.length) <= min(_end(first), scope.length)


def _window(low: float, high: float) -> str:
    return f"from {low:g} s to {high:g} s of replay time"


def _some(names: Sequence[str]) -> str:
    """``a, b and c``, or ``a, b, c and 4 more``."""
    if len(names) <= _SHOWN:
        return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]
    return f"{', '.join(names[:_SHOWN])} and {len(names) - _SHOWN} more"
