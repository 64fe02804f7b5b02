"""What certify sees of one run: the replay's clock, the messages on the bus, the adapter's
process (``/proc``) and what it wrote (its probe's lines and its log).

Decisions, and why:

* **One subscription handler for inputs and outputs.** nats-py runs each subscription's handler in
  a task of its own; with two, an output could be stamped before the input that caused it.
* **Only ``/proc``.** Resource figures come from the kernel (``VmHWM``, the peak resident set it
  keeps for the process, and ``utime + stime``), polled; certify runs on Linux, as citybus does.
* **Log lines are placed by their timestamps.** The child's log is JSON with UTC times; they are
  put on the monotonic clock (the offset between the two clocks now) and from there on the replay's.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from adapters.clock import ClockTick
from bus import RawMessage
from bus.subjects import dead_letter_filter, matches
from bus.tracing import trace_id
from sandbox.certify.model import Adapted, Crash, DeadLetterSeen, Handled, Refusal, RunRecord, Seen

__all__ = ["Observer", "ProcessUse", "ReplayClock", "parse_time", "read_child"]

_TICK = msgspec.json.Decoder(ClockTick)


@dataclass
class ReplayClock:
    """The replay's clock as certify's observer follows it: ticks, and the time at any moment."""

    samples: list[tuple[float, ClockTick]] = field(default_factory=list)

    def add(self, tick: ClockTick) -> None:
        """Take a tick, noting when it came."""
        self.samples.append((time.monotonic(), tick))

    @property
    def last(self) -> ClockTick | None:
        """The latest tick (``None`` before the first)."""
        return self.samples[-1][1] if self.samples else None

    def at(self, mono: float) -> datetime | None:
        """The replay's time at monotonic ``mono`` (``None`` before its first tick)."""
        if not self.samples:
            return None
        index = max(bisect_right(self.samples, mono, key=lambda s: s[0]) - 1, 0)
        when, tick = self.samples[index]
        rate = tick.speed if tick.state == "playing" else 0.0
        return tick.time + timedelta(seconds=max(mono - when, 0.0) * rate)


class Observer:
    """What certify sees on the bus, as the sandbox's operator."""

    def __init__(self, adapted: Adapted, clock: ReplayClock, began: float) -> None:
        self.adapted = adapted
        self.clock = clock
        self.began = began
        self.inputs: list[Seen] = []
        self.outputs: list[Seen] = []
        self.dead_letters: list[DeadLetterSeen] = []
        self.last_output = time.monotonic()

    def _seen(self, raw: RawMessage, mono: float) -> Seen:
        headers = raw.headers or {}
        at = self.clock.at(mono) or datetime.now(UTC)
        ce_time = parse_time(headers.get("ce-time", ""))
        return Seen(
            at=at,
            wall=mono - self.began,
            subject=raw.subject,
            entity=raw.subject.rsplit(".", 1)[-1],
            ce_id=headers.get("ce-id", ""),
            ce_time=ce_time,
            ce_source=headers.get("ce-source", ""),
            ce_type=headers.get("ce-type", ""),
            trace=trace_id(headers),
            body=bytes(raw.data),
            content_type=headers.get("content-type", "application/json"),
        )

    async def on_message(self, raw: RawMessage) -> None:
        """An input (not the adapter's, on a subject it consumes), an output or a dead letter of it.

        One handler for both: nats-py runs each subscription's handler in a task of its own, so with
        two an output could be stamped before the input that caused it."""
        mono = time.monotonic()
        headers = raw.headers or {}
        if matches(dead_letter_filter(), raw.subject):  # the adapter's when it is the consumer named
            letter = _dead_letter(raw, self.clock.at(mono) or datetime.now(UTC), mono - self.began)
            if letter is not None and letter[0] == self.adapted.instance:
                self.dead_letters.append(letter[1])
            return
        if headers.get("ce-source") != self.adapted.source:
            if any(matches(p, raw.subject) for p in self.adapted.consumed_subjects):
                self.inputs.append(self._seen(raw, mono))
            return
        self.last_output = mono
        self.outputs.append(self._seen(raw, mono))

    async def on_tick(self, raw: RawMessage) -> None:
        """A tick of the replay's clock (anything else on its subject is passed over)."""
        try:
            self.clock.add(_TICK.decode(raw.data))
        except msgspec.DecodeError:
            return


def _dead_letter(raw: RawMessage, at: datetime, wall: float) -> tuple[str, DeadLetterSeen] | None:
    """The consumer that sent a dead letter (``citybus.dead-letter``), and what certify keeps of it."""
    try:
        letter = _LETTER.decode(raw.data)
    except msgspec.DecodeError:
        return None
    seen = DeadLetterSeen(
        at=at,
        wall=wall,
        reason=letter.reason,
        original_subject=letter.original_subject,
        original_id=letter.original_headers.get("ce-id", ""),
    )
    return letter.consumer, seen


class _Letter(msgspec.Struct):
    """What certify reads of a dead letter (``contracts.DeadLetter``), tolerant of the rest."""

    reason: str = ""
    original_subject: str = ""
    original_headers: dict[str, str] = {}
    consumer: str = ""


_LETTER = msgspec.json.Decoder(_Letter)


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time (``Z`` or an offset), or ``None`` for an empty or unreadable one."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class ProcessUse:
    """The child's resource use from ``/proc``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self.cpu = 0.0
        self._tick = os.sysconf("SC_CLK_TCK")

    def poll(self) -> None:
        """Read the process's peak resident set and CPU time so far (nothing once it is gone)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            self.cpu = max(self.cpu, (int(fields[11]) + int(fields[12])) / self._tick)


def read_child(record: RunRecord, events: Path, log: Path, clock: ReplayClock, began: float) -> None:
    """The probe's lines and the child's log: what it handled, its failures and refusals."""
    origin = record.origin
    if events.exists():
        for line in events.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError):
                event = json.loads(line)
                if "ready" in event:
                    continue
                ended = float(event["wall"]) + float(event["seconds"])
                record.handled.append(
                    Handled(
                        done=clock.at(ended),
                        wall=float(event["wall"]) - began,
                        seconds=float(event["seconds"]),
                        subject=str(event["subject"]),
                        ce_id=str(event["ce_id"]),
                        trace=str(event["trace"]),
                        error=str(event["error"]),
                    )
                )
    if not log.exists():
        return
    offset = time.time() - time.monotonic()  # wall clock - monotonic clock, to place log lines
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    record.log_tail = lines[-20:]
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        stamp = parse_time(str(event.get("timestamp", "")))
        mono = stamp.timestamp() - offset if stamp is not None else time.monotonic()
        at = clock.at(mono) or origin
        if event.get("event") == "adapter failed, restarting":
            record.crashes.append(Crash(at=at, wall=mono - began, error=str(event.get("error", ""))))
        elif event.get("event") == "the broker refused: permissions violation":
            record.refusals.append(
                Refusal(
                    at=at,
                    wall=mono - began,
                    operation=str(event.get("operation", "")),
                    subject=str(event.get("subject", "")),
                )
            )
    record.crashes.sort(key=lambda c: c.at)
