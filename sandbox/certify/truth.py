"""The ground truth of a certification run, read as episodes: which fault hit which entity when.

The replay writes one line per message a fault touched (docs/faults.md, "The ground truth");
certify writes its own faults (a broker restart, a slow link) as :class:`~sandbox.certify.model.BrokerFault`.
The scorer (:mod:`sandbox.certify.checks`, :mod:`sandbox.certify.detect`) and the report's timeline
(:mod:`sandbox.certify.score`) need them as stretches of time instead: an *episode*.

Decisions, and why:

* **An episode is one fault on one entity, as long as the fault is one thing.** A fault with a
  window (``outage``, ``stuck``, ``skew``): the lines of one fault (its index in the plan) on one
  entity (the subject's last token) are one stretch, from the first hit to the last. A stuck
  sensor is one problem to notice, not one per repeated reading; two outages of one sensor in one
  plan are two. A fault drawn message by message (``duplicate``, ``delay``, ``corrupt``) hits
  instants hours apart: each hit is an episode of its own (an instant), not one stretch over the
  day that any detection would fall into. A ``drop`` burst is one episode (``position`` 1 starts
  one), and so is one entity's share of a ``reorder`` run (``released`` 0 starts one).
* **An outage lasts until its ``until``**, not its last dropped message: the sensor is silent up to
  the window's end, and a detector that says so late in the window is right.
* **Certify's own faults are about every entity** (``"*"``): a broker restart cuts every message.
* **Times without a zone are UTC**, and a line without a readable time is skipped rather than
  failing the whole report: the truth file is written by the replay, but read back from disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from sandbox.certify.model import RunRecord

__all__ = ["ANY_ENTITY", "Episode", "POINT", "WINDOWED", "entity_of", "episodes", "parse_time", "stamp"]

ANY_ENTITY = "*"
"""The entity of a fault that hits every entity (a broker restart)."""


class Episode(msgspec.Struct, frozen=True, kw_only=True):
    """One fault on one entity in one run, from its first hit to its end (replay time)."""

    run: str
    fault: int
    """The fault's index in the plan; ``-1`` for certify's own faults (:class:`BrokerFault`)."""
    kind: str
    entity: str
    start: datetime
    end: datetime
    hits: int
    """Ground-truth lines (messages touched); 1 for a broker fault."""


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 string (or a datetime) as an aware datetime; ``None`` when it is neither."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def stamp(when: datetime) -> str:
    """A time as people read it in a report: ``2018-08-28T03:00:00Z`` (fractions of a second kept)."""
    utc = when.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def entity_of(subject: str) -> str:
    """The entity a subject is about: its last token."""
    return subject.rpartition(".")[2]


def episodes(run: RunRecord) -> list[Episode]:
    """The run's ground truth as episodes, sorted by start, kind and entity."""
    found = list(_replay_episodes(run.preset, run.truth))
    for fault in run.broker_faults:
        found.append(
            Episode(
                run=run.preset,
                fault=-1,
                kind=fault.kind,
                entity=ANY_ENTITY,
                start=_aware(fault.start),
                end=_aware(fault.end),
                hits=1,
            )
        )
    return sorted(found, key=lambda e: (e.start, e.kind, e.entity, e.fault))


WINDOWED = frozenset({"outage", "stuck", "skew"})
"""Fault kinds with a window in the plan: one episode per fault and entity."""
POINT = frozenset({"duplicate", "delay", "corrupt"})
"""Fault kinds drawn message by message: one episode per hit."""


def _replay_episodes(run: str, truth: Iterable[Mapping[str, Any]]) -> Iterable[Episode]:
    groups: dict[tuple[int, str, str, int], list[tuple[datetime, datetime]]] = {}
    bursts: dict[tuple[int, str], int] = {}  # (fault, entity) → its drop bursts so far
    runs: dict[int, int] = {}  # fault → its reorder runs so far
    for number, line in enumerate(truth):
        time = parse_time(line.get("time"))
        kind = line.get("kind")
        subject = line.get("subject")
        if time is None or not isinstance(kind, str) or not isinstance(subject, str):
            continue
        fault = line.get("fault")
        index = fault if isinstance(fault, int) else -1
        entity = entity_of(subject)
        if kind == "drop":
            if line.get("position") in (None, 1) or (index, entity) not in bursts:
                bursts[index, entity] = bursts.get((index, entity), 0) + 1
            part = bursts[index, entity]
        elif kind == "reorder":
            if line.get("released") in (None, 0) or index not in runs:
                runs[index] = runs.get(index, 0) + 1
            part = runs[index]
        elif kind in POINT:
            part = number
        else:  # a window, or a kind this certify does not know: one stretch
            part = 0
        end = parse_time(line.get("until")) if kind == "outage" else None
        groups.setdefault((index, kind, entity, part), []).append((time, max(time, end or time)))
    for (fault, kind, entity, _), hits in groups.items():
        yield Episode(
            run=run,
            fault=fault,
            kind=kind,
            entity=entity,
            start=min(start for start, _ in hits),
            end=max(end for _, end in hits),
            hits=len(hits),
        )


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
