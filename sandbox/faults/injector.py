"""The fault injector: a plan applied to the replay's messages, one by one, seeded, with its ground truth
(reference: docs/faults.md)."""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import IO, Any, Final, NamedTuple

import msgspec

from bus.codec import decode_bytes
from bus.envelope import H_ID, H_MSG_ID, H_SOURCE, H_TYPE, format_time
from bus.errors import UndecodableError
from bus.subjects import matches
from contracts import Registry, default_registry
from sandbox.faults.plan import (
    CorruptFault,
    DelayFault,
    DropFault,
    DuplicateFault,
    FaultPlan,
    FaultSpec,
    OutageFault,
    ReorderFault,
    SkewFault,
    StuckFault,
    _Fault,
)
from sandbox.timeshift import TimeShifter

__all__ = [
    "FaultInjector",
    "Outgoing",
    "REORDER_STEP",
]


REORDER_STEP: Final = 0.001
"""Replay seconds between the messages a reorder releases: enough to keep their order on any
scheduler with microsecond timestamps, too little for anyone to see as a delay."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message about to be published by the replayer."""

    subject: str
    data: bytes
    headers: dict[str, str]
    """CloudEvents headers as they will be published (``ce-time`` already shifted to replay time)."""
    time: datetime
    """When it happens on the replay clock (its ``ce-time``), timezone-aware."""


# --- the injector --------------------------------------------------------------------------------


class _Pending(NamedTuple):
    """A message on its way out and when it is due, in replay seconds from the origin."""

    at: float
    message: Outgoing


class _Truth:
    """The ground-truth log and the counts that match it."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream
        self.counts: collections.Counter[str] = collections.Counter()

    def record(self, kind: str, index: int, message: Outgoing, **detail: Any) -> None:
        self.counts[kind] += 1
        if self.stream is None:
            return
        line = {
            "kind": kind,
            "fault": index,
            "subject": message.subject,
            "ce_id": message.headers.get(H_ID, ""),
            "time": format_time(message.time),
            **detail,
        }
        self.stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.stream.flush()


class _Stage:
    """One fault of the plan at work: its spec, its own random generator and its state."""

    def __init__(self, spec: FaultSpec, index: int, seed: int, injector: FaultInjector) -> None:
        self.spec = spec
        self.index = index
        self.kind: str = type(spec).__struct_config__.tag  # type: ignore[assignment]
        self.rng = random.Random(f"{seed}:{index}")
        self.injector = injector
        self._begin = spec.start
        self._end = float("inf") if spec.duration is None else spec.start + spec.duration

    def hits(self, message: Outgoing) -> bool:
        """Whether the message is one this fault may touch: subject and time window."""
        if not self._begin <= self.injector.seconds(message.time) < self._end:
            return False
        return any(matches(pattern, message.subject) for pattern in self.spec.subjects)

    def chance(self) -> bool:
        """One draw: is this message hit?"""
        probability: float = getattr(self.spec, "probability", 1.0)
        return self.rng.random() < probability

    def record(self, message: Outgoing, **detail: Any) -> None:
        """Write the fault to the ground truth."""
        self.injector.truth.record(self.kind, self.index, message, **detail)

    def process(self, item: _Pending) -> list[_Pending]:
        """What becomes of one message that reached this fault."""
        raise NotImplementedError

    def flush(self) -> list[_Pending]:
        """What this fault still holds at the end."""
        return []

    def restart(self) -> None:
        """A new loop of the replay begins: forget what belongs to the last one."""


class _Drop(_Stage):
    spec: DropFault

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.position = 0  # position in the current burst, 0 when none runs

    def process(self, item: _Pending) -> list[_Pending]:
        if not self.hits(item.message):
            return [item]
        if self.position == 0 and not self.chance():
            return [item]
        self.position += 1
        self.record(item.message, burst=self.spec.burst, position=self.position)
        if self.position == self.spec.burst:
            self.position = 0
        return []

    def restart(self) -> None:
        self.position = 0  # a burst does not run on into the next loop


class _Duplicate(_Stage):
    spec: DuplicateFault

    def process(self, item: _Pending) -> list[_Pending]:
        if not self.hits(item.message) or not self.chance():
            return [item]
        self.record(item.message, copies=self.spec.copies, gap=self.spec.gap)
        # JetStream would drop a copy with the original's Nats-Msg-Id within its duplicate window,
        # so no consumer would ever see the fault; the ce-id, what consumers dedupe on, stays.
        headers = {k: v for k, v in item.message.headers.items() if k != H_MSG_ID}
        copy = replace(item.message, headers=headers)
        return [item, *(_Pending(item.at + n * self.spec.gap, copy) for n in range(1, self.spec.copies + 1))]


class _Reorder(_Stage):
    spec: ReorderFault

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.held: list[_Pending] = []

    def process(self, item: _Pending) -> list[_Pending]:
        if self.held and self.injector.seconds(item.message.time) >= self._end:
            # The window closed on a run: let it out now, not at the end of the replay.
            return [*self._release(), item]
        if not self.hits(item.message):
            return [item]
        if not self.held and not self.chance():
            return [item]
        self.held.append(item)
        return self._release() if len(self.held) == self.spec.window else []

    def flush(self) -> list[_Pending]:
        return self._release()

    def _release(self) -> list[_Pending]:
        held, self.held = self.held, []
        if not held:
            return []
        order = list(range(len(held)))
        while len(held) > 1 and order == sorted(order):  # a "reorder" that keeps the order is none
            self.rng.shuffle(order)
        # Out after every held message is due (one may carry an earlier fault's delay), in order.
        base = max(self.injector.now, *(p.at for p in held))
        released = []
        for position, arrived in enumerate(order):
            message = held[arrived].message
            self.record(message, window=len(held), arrived=arrived, released=position)
            released.append(_Pending(base + position * REORDER_STEP, message))
        return released


class _Delay(_Stage):
    spec: DelayFault

    def process(self, item: _Pending) -> list[_Pending]:
        if not self.hits(item.message) or not self.chance():
            return [item]
        jitter = self.spec.jitter
        delay = self.spec.delay + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)
        delay = max(0.0, round(delay, 6))
        self.record(item.message, delay=delay)
        return [_Pending(item.at + delay, item.message)]


class _Corrupt(_Stage):
    spec: CorruptFault

    def process(self, item: _Pending) -> list[_Pending]:
        if not self.hits(item.message) or not self.chance():
            return [item]
        message = item.message
        decoder = self.injector.decoder(message.headers.get(H_TYPE, ""))
        mode: str = self.spec.mode
        detail: dict[str, Any] = {}
        if mode == "retype":
            retyped = _retype(message.data, decoder, self.rng)
            if retyped is None:  # not a JSON object, or no field the contract types strictly
                mode = "truncate"
            else:
                data, detail["field"] = retyped
        if mode == "garble":
            data, detail["flipped"] = _garble(message.data, decoder, self.rng)
        elif mode == "truncate":
            data = message.data[: len(message.data) // 2]
        self.record(message, mode=mode, **detail)
        return [_Pending(item.at, replace(message, data=data))]


class _Outage(_Stage):
    spec: OutageFault

    def process(self, item: _Pending) -> list[_Pending]:
        if not self.hits(item.message):
            return [item]
        self.record(item.message, until=format_time(self.injector.origin + timedelta(seconds=self._end)))
        return []


class _Stuck(_Stage):
    spec: StuckFault

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.first: dict[tuple[str, str], Outgoing] = {}

    def process(self, item: _Pending) -> list[_Pending]:
        message = item.message
        if not self.hits(message):
            return [item]
        # Per subject and source: a manual reading on a sensor's subject is not the sensor's.
        key = (message.subject, message.headers.get(H_SOURCE, ""))
        first = self.first.setdefault(key, message)
        if first is message:
            return [item]
        paths = self.injector.shifter.paths(message.headers.get(H_TYPE, ""))
        data = _with_times(first.data, message.data, paths)
        self.record(message, stuck_to=first.headers.get(H_ID, ""))
        return [_Pending(item.at, replace(message, data=data))]

    def restart(self) -> None:
        self.first.clear()  # each loop's window sticks to its own first reading


class _Skew(_Stage):
    spec: SkewFault

    def hits(self, message: Outgoing) -> bool:
        sources = self.spec.sources
        return super().hits(message) and (not sources or message.headers.get(H_SOURCE) in sources)

    def process(self, item: _Pending) -> list[_Pending]:
        message = item.message
        if not self.hits(message):
            return [item]
        delta = timedelta(seconds=self.spec.skew)
        shifter = self.injector.shifter
        skewed = replace(
            message,
            headers=shifter.headers(message.headers, delta),
            data=shifter.body(message.data, message.headers.get(H_TYPE, ""), delta),
        )
        self.record(message, skew=self.spec.skew)
        return [_Pending(item.at, skewed)]


_STAGES: Final[dict[type[_Fault], type[_Stage]]] = {
    DropFault: _Drop,
    DuplicateFault: _Duplicate,
    ReorderFault: _Reorder,
    DelayFault: _Delay,
    CorruptFault: _Corrupt,
    OutageFault: _Outage,
    StuckFault: _Stuck,
    SkewFault: _Skew,
}


class FaultInjector:
    """Applies a :class:`FaultPlan` to a replay, message by message (docs/faults.md).

    ``origin`` is the replay clock's time when the replay started (plan times count from it);
    ``truth`` receives the ground-truth log; ``shifter`` and ``registry`` tell which body fields
    are timestamps and how each contract decodes (the default registry when absent).
    """

    def __init__(
        self,
        plan: FaultPlan,
        *,
        origin: datetime,
        truth: IO[str] | None = None,
        shifter: TimeShifter | None = None,
        registry: Registry | None = None,
    ) -> None:
        if origin.tzinfo is None:
            raise ValueError("the fault injector's origin must be a timezone-aware datetime")
        # A plan built in code has not been through the checks of one read from a file.
        plan = FaultPlan.from_dict(msgspec.to_builtins(plan))
        self.plan = plan
        self.origin = origin
        self._registry = registry or default_registry()
        self.shifter = shifter or TimeShifter(self._registry)
        self.truth = _Truth(truth)
        self.now = 0.0
        """The due time of the last message applied, in replay seconds from ``origin``."""
        self._decoders: dict[str, msgspec.json.Decoder[Any] | None] = {}
        self._stages = [_STAGES[type(spec)](spec, i, plan.seed, self) for i, spec in enumerate(plan.faults)]

    @property
    def counts(self) -> collections.Counter[str]:
        """Faults injected so far, per kind: the ground-truth log's lines counted."""
        return self.truth.counts

    def restart(self, origin: datetime) -> None:
        """A new loop of the replay begins at ``origin`` (the replay clock's time at its start): plan
        times count from it again, so a window covers the same stretch of every loop. Each fault
        keeps drawing from its generator; a drop's burst and a stuck fault's reading end with the
        loop (call :meth:`flush` first: what a reorder holds belongs to the loop that ends)."""
        if origin.tzinfo is None:
            raise ValueError("the fault injector's origin must be a timezone-aware datetime")
        self.origin = origin
        self.now = 0.0
        for stage in self._stages:
            stage.restart()

    def seconds(self, moment: datetime) -> float:
        """Replay seconds from the origin to ``moment``."""
        if moment.tzinfo is None:
            raise ValueError(f"message time {moment.isoformat()} has no timezone")
        return (moment - self.origin).total_seconds()

    def decoder(self, ce_type: str) -> msgspec.json.Decoder[Any] | None:
        """The JSON decoder of a contract type, built once; ``None`` for a type the registry lacks."""
        if ce_type not in self._decoders:
            contract = self._registry.by_type(ce_type)
            self._decoders[ce_type] = None if contract is None else msgspec.json.Decoder(contract)
        return self._decoders[ce_type]

    def apply(self, message: Outgoing) -> list[tuple[float, Outgoing]]:
        """What to publish for ``message``: ``(delay after its due time, message)`` pairs, in order."""
        self.now = self.seconds(message.time)
        items = [_Pending(self.now, message)]
        for stage in self._stages:
            items = [out for item in items for out in stage.process(item)]
        return self._scheduled(items)

    def flush(self) -> list[tuple[float, Outgoing]]:
        """What reorder windows still hold (end of replay, before a seek), timed from the last message.

        Released messages go through the faults after the one that held them, as in :meth:`apply`.
        """
        items: list[_Pending] = []
        for stage in self._stages:
            items = [out for item in items for out in stage.process(item)]
            items.extend(stage.flush())
        return self._scheduled(items)

    def _scheduled(self, items: Iterable[_Pending]) -> list[tuple[float, Outgoing]]:
        out = [(max(0.0, round(item.at - self.now, 6)), item.message) for item in items]
        out.sort(key=lambda pair: pair[0])  # stable: equal delays keep the order they were made in
        return out


# --- corrupting and sticking bodies --------------------------------------------------------------

# Any JSON: a recorded body may be any bytes a publisher sent, nested thousands of levels deep too.
_ANY: Final = msgspec.json.Decoder()


def _decodes(data: bytes, decoder: msgspec.json.Decoder[Any] | None) -> bool:
    """Whether ``data`` is still JSON, or still decodes as the contract."""
    try:
        decode_bytes(_ANY, data)
    except UndecodableError:
        pass
    else:
        return True
    if decoder is None:
        return False
    try:
        decode_bytes(decoder, data)
    except UndecodableError:
        return False
    return True


def _garble(data: bytes, decoder: msgspec.json.Decoder[Any] | None, rng: random.Random) -> tuple[bytes, int]:
    """``data`` with random ASCII bytes flipped until it is no longer JSON; and how many were flipped.

    Only ASCII bytes are flipped, and only to other ASCII bytes: the body stays valid UTF-8, so it
    fails as JSON (a ``DecodeError``), the error every consumer dead-letters.
    """
    garbled = bytearray(data)
    untouched = [i for i, byte in enumerate(garbled) if byte < 0x80]
    rng.shuffle(untouched)
    flipped = 0
    minimum = max(1, len(garbled) // 64)  # noise, not one surgical flip
    while untouched and (flipped < minimum or _decodes(bytes(garbled), decoder)):
        garbled[untouched.pop()] ^= rng.randrange(1, 0x80)
        flipped += 1
    if _decodes(bytes(garbled), decoder):  # every byte flipped and still JSON: a leading NUL never is
        garbled[:0] = b"\x00"
    return bytes(garbled), flipped


def _retype(
    data: bytes, decoder: msgspec.json.Decoder[Any] | None, rng: random.Random
) -> tuple[bytes, str] | None:
    """``data`` with its first strictly typed field given the wrong type, and the field's name."""
    try:
        body = decode_bytes(_ANY, data)
    except UndecodableError:
        return None
    if not isinstance(body, dict):
        return None
    for name, value in body.items():
        if isinstance(value, str):
            wrong: Any = rng.randrange(1000)
        elif isinstance(value, bool | int | float):
            wrong = json.dumps(value)
        else:
            continue  # null, lists and objects: no single obvious wrong type
        candidate = msgspec.json.encode({**body, name: wrong})
        if decoder is None:
            return candidate, name
        try:
            decode_bytes(decoder, candidate)
        except UndecodableError:
            return candidate, name
    return None


def _with_times(stuck: bytes, fresh: bytes, paths: list[tuple[str, ...]]) -> bytes:
    """The ``stuck`` body with the timestamps (at ``paths``) of the ``fresh`` one."""
    if not paths:
        return stuck  # nothing known to be a timestamp: the reading repeats as it was
    try:
        stuck_body, fresh_body = decode_bytes(_ANY, stuck), decode_bytes(_ANY, fresh)
    except UndecodableError:
        return stuck
    for path in paths:
        stuck_body = _copy_path(stuck_body, fresh_body, path)
    return msgspec.json.encode(stuck_body)


def _copy_path(target: Any, source: Any, path: tuple[str, ...]) -> Any:
    if not path:
        return source
    head, rest = path[0], path[1:]
    if head == "*":  # TimeShifter's "every item of this list"
        if isinstance(target, list) and isinstance(source, list):
            return [_copy_path(t, s, rest) for t, s in zip(target, source, strict=False)] + target[
                len(source) :
            ]
        return target
    if isinstance(target, dict) and isinstance(source, dict) and head in source:
        target[head] = _copy_path(target.get(head), source[head], rest)
    return target
