"""What a recording holds, without replaying it: its channels, subjects, counts and time span.

:mod:`sandbox.recording` writes and reads a recording's messages; this module sums them up for
``citybus recording info``, for the fault plan's check against the recording
(:mod:`sandbox.faults.check`) and for the replay's extent and the contracts it needs.

Decisions, and why:

* **The summary first.** A complete MCAP file ends with a summary: every channel with its metadata
  and message count, the first and last message time. What it holds is read from there in
  milliseconds, whatever the file's size; only a file whose writer never finished is read through.
* **One pass, per channel.** What the summary does not hold (a subject's first and last time, or
  anything of an unfinished file) comes from one read of the messages that tallies count, first and
  last time per MCAP channel; channels, subjects, types and provenance are all derived from that
  tally, so :func:`read_contents` answers ``recording info`` (counts and per-subject spans) with a
  single read, and a message costs one lookup by its channel id.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from mcap.reader import make_reader

from bus.envelope import H_PROVENANCE, H_SOURCE, H_TYPE
from sandbox.recording import (
    RecordingError,
    from_nanoseconds,
    nanoseconds,
    open_recording,
    read_messages,
    read_summary,
)

__all__ = [
    "RecordedChannel",
    "RecordingInfo",
    "SubjectSummary",
    "read_channels",
    "read_contents",
    "read_info",
    "read_subjects",
    "recording_extent",
]


class RecordedChannel(msgspec.Struct, frozen=True, kw_only=True):
    """One channel of a recording: a subject as one source publishes it (see "Channels" in
    :mod:`sandbox.recording`)."""

    subject: str
    source: str
    """Its ``ce-source``; empty for a raw channel that has none."""
    type: str
    """Its CloudEvents type; empty for a raw channel."""
    provenance: str
    messages: int
    """How many messages it holds."""


@dataclass
class RecordingInfo:
    """What a recording holds: ``citybus recording info``."""

    path: str
    messages: int = 0
    start: datetime | None = None
    end: datetime | None = None
    subjects: int = 0
    channels: int = 0
    per_type: Counter[str] = field(default_factory=Counter)
    provenance: Counter[str] = field(default_factory=Counter)
    metadata: dict[str, str] = field(default_factory=dict)
    first_ns: int | None = None
    """The first message's log time in nanoseconds (``start`` keeps only microseconds)."""
    last_ns: int | None = None
    """The last message's log time in nanoseconds."""
    complete: bool = True

    @property
    def duration(self) -> float:
        """Seconds from the first to the last message."""
        if self.start is None or self.end is None:
            return 0.0
        return (self.end - self.start).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``--json``)."""
        return {
            "path": self.path,
            "complete": self.complete,
            "messages": self.messages,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "duration_seconds": self.duration,
            "subjects": self.subjects,
            "channels": self.channels,
            "contracts": dict(sorted(self.per_type.items())),
            "provenance": dict(sorted(self.provenance.items())),
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class SubjectSummary:
    """One subject of a recording: its contract, message count and time span (``recording info``)."""

    subject: str
    type: str
    """The CloudEvents type of its messages (``environment.beach-observation.v1``); empty for raw."""
    messages: int
    first: datetime
    last: datetime

    @property
    def entity(self) -> str:
        """The subject's last token: the entity of a contract's subject."""
        return self.subject.rsplit(".", 1)[-1]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "subject": self.subject,
            "type": self.type or None,
            "entity": self.entity,
            "messages": self.messages,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
        }


def read_channels(path: str | Path) -> list[RecordedChannel]:
    """The channels of a recording, sorted by subject and source: from its summary when it has one
    (no message is read, so it takes milliseconds on a recording of any size), else by reading it."""
    stream = open_recording(path)
    with stream:
        summary = read_summary(stream)
    counts: Counter[tuple[str, str, str, str]] = Counter()
    if summary is not None and summary.statistics is not None:
        per_channel = summary.statistics.channel_message_counts
        for channel_id, channel in summary.channels.items():  # one with no message is listed too
            counts[_channel_key(channel.topic, channel.metadata)] += per_channel.get(channel_id, 0)
    else:
        for tally in _tally(path):
            counts[_channel_key(tally.subject, tally.headers)] += tally.messages
    return [
        RecordedChannel(subject=subject, source=source, type=ce_type, provenance=provenance, messages=n)
        for (subject, source, ce_type, provenance), n in sorted(counts.items())
    ]


def _channel_key(subject: str, metadata: Mapping[str, str]) -> tuple[str, str, str, str]:
    return (subject, metadata.get(H_SOURCE, ""), metadata.get(H_TYPE, ""), metadata.get(H_PROVENANCE, ""))


def read_info(path: str | Path) -> RecordingInfo:
    """Count what a recording holds, from its summary when it has one (fast), else by reading it."""
    info, counted = _summary_info(path)
    if not counted:
        _count(info, _tally(path))
    return info


def read_subjects(path: str | Path) -> list[SubjectSummary]:
    """Every subject of a recording with its type, message count and first and last time, by subject.

    Reads the whole file (a subject's time span is not in the MCAP summary); a subject whose
    channels carry two types (two sources) is listed once per type.
    """
    return _subjects(_tally(path))


def read_contents(path: str | Path) -> tuple[RecordingInfo, list[SubjectSummary]]:
    """:func:`read_info` and :func:`read_subjects` together, reading the messages once
    (``citybus recording info``)."""
    info, counted = _summary_info(path)
    tallies = _tally(path)
    if not counted:
        _count(info, tallies)
    return info, _subjects(tallies)


def recording_extent(files: list[Path]) -> tuple[int, int]:
    """The first and last moment a replay of ``files`` covers (ns): the recordings' declared window
    (metadata ``window_start``/``window_end``: a recorded day is 24 h long) or their first and last
    message. Read from the files' summaries."""
    first: int | None = None
    last: int | None = None
    for path in files:
        info = read_info(path)
        if info.first_ns is None or info.last_ns is None:
            continue
        start, end = info.first_ns, info.last_ns  # nanoseconds: a datetime would lose the last ones
        with contextlib.suppress(KeyError, ValueError):
            start = min(start, nanoseconds(datetime.fromisoformat(info.metadata["window_start"])))
        with contextlib.suppress(KeyError, ValueError):
            end = max(end, nanoseconds(datetime.fromisoformat(info.metadata["window_end"])) - 1)
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
    if first is None or last is None:
        raise RecordingError(f"nothing to replay: {', '.join(map(str, files))} holds no messages")
    return first, last


def _summary_info(path: str | Path) -> tuple[RecordingInfo, bool]:
    """What the file's summary says (its metadata, and its counts when it has statistics), and
    whether the counts are in; without them the info is marked incomplete, to be counted by reading."""
    info = RecordingInfo(path=str(path))
    stream = open_recording(path)
    with stream:
        summary = read_summary(stream)
        if summary is not None:
            for meta in make_reader(stream).iter_metadata():
                if meta.name == "citybus":
                    info.metadata.update(meta.metadata)
    if summary is None or summary.statistics is None:
        info.complete = False
        return info, False
    stats = summary.statistics
    info.messages = stats.message_count
    if stats.message_count:
        info.first_ns, info.last_ns = stats.message_start_time, stats.message_end_time
        info.start, info.end = from_nanoseconds(info.first_ns), from_nanoseconds(info.last_ns)
    info.channels = len(summary.channels)
    info.subjects = len({c.topic for c in summary.channels.values()})
    for channel_id, count in stats.channel_message_counts.items():
        channel = summary.channels[channel_id]
        info.per_type[channel.metadata.get(H_TYPE) or "raw"] += count
        info.provenance[channel.metadata.get(H_PROVENANCE) or "unknown"] += count
    return info, True


@dataclass(slots=True)
class _Tally:
    """One channel's messages as read: how many, and the first and last log time (ns)."""

    subject: str
    headers: Mapping[str, str]
    messages: int
    first: int
    last: int


def _tally(path: str | Path) -> list[_Tally]:
    """Every channel that holds messages, tallied in one read of the file."""
    tallies: dict[int, _Tally] = {}
    for message in read_messages(path):
        log_time = message.log_time
        tally = tallies.get(message.channel)
        if tally is None:
            tallies[message.channel] = _Tally(message.subject, message.headers, 1, log_time, log_time)
            continue
        tally.messages += 1
        if log_time < tally.first:
            tally.first = log_time
        elif log_time > tally.last:
            tally.last = log_time
    return list(tallies.values())


def _count(info: RecordingInfo, tallies: list[_Tally]) -> None:
    """Fill ``info``'s counts and time span from what a read of the file tallied."""
    if tallies:
        info.first_ns = min(t.first for t in tallies)
        info.last_ns = max(t.last for t in tallies)
        info.start, info.end = from_nanoseconds(info.first_ns), from_nanoseconds(info.last_ns)
    info.messages = sum(t.messages for t in tallies)
    info.subjects = len({t.subject for t in tallies})
    info.channels = len({(t.subject, *t.headers.values()) for t in tallies})
    for t in tallies:
        info.per_type[t.headers.get(H_TYPE) or "raw"] += t.messages
        info.provenance[t.headers.get(H_PROVENANCE) or "unknown"] += t.messages


def _subjects(tallies: list[_Tally]) -> list[SubjectSummary]:
    """The tallied channels by subject and type (a subject's sources are one row per type)."""
    spans: dict[tuple[str, str], tuple[int, int, int]] = {}
    for t in tallies:
        key = (t.subject, t.headers.get(H_TYPE, ""))
        count, first, last = spans.get(key, (0, t.first, t.last))
        spans[key] = (count + t.messages, min(first, t.first), max(last, t.last))
    return [
        SubjectSummary(subject, kind, count, from_nanoseconds(first), from_nanoseconds(last))
        for (subject, kind), (count, first, last) in sorted(spans.items())
    ]
