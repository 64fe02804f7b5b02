"""The replayer: recorded city data back onto the bus, on time, at any speed, with faults.

How a message is replayed:

* **Reading.** The recordings (several files are merged by time) are read in batches of
  ``read_ahead`` messages, so memory stays flat however large the files are. On a schedule, each
  batch is read in a worker thread while the one before it is published, so the event loop does
  not wait on decompression; as fast as possible, between batches on the loop itself.
* **Scheduling.** Every message has its place on the replay clock: its original time
  (``log_time``). The replay keeps an *anchor* — a position in the recording and the monotonic
  time it was there — and a message is due at ``anchor_mono + (log_time - anchor_position) /
  speed``. It is published at that absolute time (never "sleep the gap since the last one", which
  adds up errors), and how late it went out is measured: ``citybus_replay_lag_seconds`` and the
  ``citybus_replay_schedule_error_seconds`` histogram. ``speed = 0`` replays as fast as possible.
  Pause, resume, a new speed and a seek all just move the anchor.
* **Time shift.** With ``shift_to_now`` the recorded day happens now: every ``ce-time`` and every
  timestamp in a body moves by the same offset (:class:`~sandbox.timeshift.TimeShifter`), so the
  day keeps its inner timing. **Every loop starts now again**: a loop's times are shifted so that
  its window begins at the wall-clock time the loop begins (without ``shift_to_now``: at its
  recorded time), so a replay never stamps a time later than *now + the window's length*, however
  fast and long it loops. (Each loop once continued where the last one ended: at ``speed = 0`` a
  recorded day takes a fraction of a second, and a looping replay stamped 2047 within hours.) At
  real speed the next loop begins where the last ended anyway; faster than real time, a loop's
  times run ahead of the wall clock and the next loop's go back to now — a consumer sees a new day
  begin, as the ``ce-id`` of every loop is new too. A sealed personal message (one recorded with
  its ``citybus-person`` header, :mod:`sandbox.recorder`) is published sealed as it was, header
  included: only its ``ce-time`` moves, the times inside a body nobody here can open stay.
* **Identity.** A replayed message gets a new ``ce-id``, derived from the recording, the message
  and the loop (and pass), so every loop is new events. It carries no ``Nats-Msg-Id``: JetStream's
  deduplication is for a publisher that re-sends after a lost acknowledgement, and the replay never
  re-sends (it publishes once, without acknowledgement, and its ids are unique by construction), so
  the duplicate window could drop nothing — but nats-server would hold every id of the window in
  memory, ~200 bytes each per stream: at 32,000 msg/s and the default 120 s, 4 million ids, ~1.9 GB
  of server RSS once Go's garbage collector doubles it (measured, ``docs/benchmarks.md``). Without
  the header that memory is zero at any speed. Consumers deduplicate on ``ce-id``, as they must
  after a redelivery anyway.
* **Faults.** A :class:`~sandbox.faults.FaultInjector` may drop, duplicate, delay, reorder,
  corrupt, freeze or skew a message before it goes out; delayed messages wait in a heap and are
  published between the others when due. Every loop starts the faults' windows again
  (:meth:`~sandbox.faults.FaultInjector.restart`: a window once counted from the first loop's
  start, so at real speed it never came round again, and faster it came earlier in every loop).

The replay clock (:meth:`Replayer.clock_time`) is the time the replay says it is; the
``sandbox-replay`` adapter publishes it on ``citybus.clock.<instance>``, and an adapter instance
with ``clock = "<instance>"`` runs on it (:class:`adapters.clock.BusClock`).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog

from adapters.clock import ReplayState
from bus.envelope import (
    H_CONTENT_TYPE,
    H_ID,
    H_PERSON,
    H_PROVENANCE,
    H_SOURCE,
    H_TIME,
    H_TYPE,
    JSON,
    Provenance,
    shared_headers,
)
from bus.errors import CityBusError
from bus.subjects import matches
from contracts import Registry, default_registry
from sandbox.contents import recording_extent
from sandbox.faults import FaultInjector, Outgoing
from sandbox.metrics import InstanceMetrics, ReplayMetrics
from sandbox.recording import RecordedMessage, read_messages
from sandbox.timeshift import Shift, TimeShifter

__all__ = [
    "Publish",
    "ReplayStatus",
    "Replayer",
]

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[None]]
"""How the replayer sends a message: subject, body, headers."""

_NS: Final = 1_000_000_000
_SPIN: Final = 0.0015
"""Seconds before a message is due when the replay stops sleeping and yields until it is."""
_SCHEDULED_BATCH: Final = 64
"""Messages read at a time when replaying on a schedule (as fast as possible: ``read_ahead``)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _at(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _ns(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000


_CLOCK: Final = [f"{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60)]
"""``HH:MM:`` of every minute of a day."""


class _TimeFormat:
    """RFC 3339 ``ce-time`` from nanoseconds, as fast as Python does it: the date formatted once a
    day, the time of day once a second (from a table of minutes), the microseconds every time."""

    def __init__(self) -> None:
        self._day: int | None = None
        self._date = ""
        self._second: int | None = None
        self._prefix = ""

    def format(self, ns: int) -> str:
        second, micro = divmod(ns // 1000, 1_000_000)
        if second != self._second:
            self._second = second
            day, minute = divmod(second, 86_400)
            if day != self._day:
                self._day = day
                self._date = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
            minute, second = divmod(minute, 60)
            self._prefix = f"{self._date}{_CLOCK[minute]}{second:02d}."
        return f"{self._prefix}{micro:06d}Z"


@dataclass(frozen=True, slots=True)
class _Channel:
    """What every message of one recorded channel shares, worked out for its first message."""

    headers: dict[str, str]
    """The headers that do not change from message to message (all but ``ce-id`` and ``ce-time``)."""
    shift: Shift | None
    """Moves the body's timestamps (``None``: a raw message, or a type without any)."""
    identity: hashlib.blake2b
    """A blake2b hash fed with ``<file>/<subject>/``, the start of what every ``ce-id`` is made from."""


# -- status ---------------------------------------------------------------------------------------------


class ReplayStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay is doing: the answer to every control request."""

    instance: str
    state: ReplayState
    speed: float
    position_seconds: float
    duration_seconds: float
    progress: float
    clock: datetime | None
    loop: int
    messages: int
    lag_seconds: float
    faults: dict[str, int]
    files: list[str]


# -- the replayer ----------------------------------------------------------------------------------


@dataclass(order=True, slots=True)
class _Pending:
    due: float
    order: int
    message: Outgoing


def _take(iterator: Iterator[tuple[int, RecordedMessage]], count: int) -> list[tuple[int, RecordedMessage]]:
    return list(itertools.islice(iterator, count))


def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None:
        task.cancel()


class Replayer:
    """Replays recordings through ``publish`` until done (or forever, looping); steer it with the
    control methods while :meth:`run` runs."""

    def __init__(
        self,
        files: list[Path],
        publish: Publish,
        *,
        instance: str = "replay",
        speed: float = 1.0,
        loop: bool = False,
        start: float = 0.0,
        duration: float | None = None,
        include: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
        shift_to_now: bool = True,
        read_ahead: int = 512,
        faults: Callable[[datetime], FaultInjector] | None = None,
        registry: Registry | None = None,
        metrics: ReplayMetrics | None = None,
        logger: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_sent: Callable[[Outgoing, float, float], None] | None = None,
        paused: bool = False,
    ) -> None:
        if not files:
            raise CityBusError("nothing to replay: give at least one recording")
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or more, not {speed}")
        self.files = [Path(f) for f in files]
        self.instance = instance
        self._publish = publish
        self.speed = speed
        self.loop = loop
        self._include = include
        self._exclude = exclude
        self._shift_to_now = shift_to_now
        self._read_ahead = max(1, read_ahead)
        self._faults_factory = faults
        self._registry = registry or default_registry()
        self._shifter = TimeShifter(self._registry)
        self._metrics: InstanceMetrics | None = None if metrics is None else metrics.instance(instance)
        self.log = (logger if logger is not None else structlog.get_logger()).bind(
            component="replay", instance=instance
        )
        self._mono = monotonic
        self._wall = wall
        self._on_sent = on_sent  # (message, when it was due, when it went out), monotonic seconds
        self._first, self._last = recording_extent(self.files)
        self.window_start = self._first + int(start * _NS)
        if self.window_start > self._last:
            raise CityBusError(
                f"start {start} s is past the end of the recording "
                f"({(self._last - self._first) / _NS:.0f} s long)"
            )
        self.window_end = self._last + 1 if duration is None else self.window_start + int(duration * _NS)
        self._window = max(self.window_end - self.window_start, 1)
        # the anchor: the recording position (ns) at a monotonic moment
        self._anchor_position = self.window_start
        self._anchor_mono = monotonic()
        self._offset = timedelta(0)
        self._offset_ns = 0
        self._channels: dict[tuple[int, int], _Channel] = {}  # by (file index, MCAP channel id)
        self._wanted_subjects: dict[str, bool] = {}
        self._times = _TimeFormat()
        self._pass = ""  # "<loop>/<generation>", the end of every ce-id's source text
        self.loop_index = 0
        self._generation = 0
        self.state: ReplayState = "starting"
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._changed = asyncio.Event()
        self._seek_to: int | None = None
        self._pending: list[_Pending] = []
        self._order = itertools.count()
        self._start_paused = paused
        self.injector: FaultInjector | None = None
        self._faults_counted: dict[str, int] = {}
        self.published = 0
        self.seeks = 0
        """How often the replay was sought (the clock ticks' ``epoch``)."""
        self.lag = 0.0
        self._position = self.window_start

    # -- the recording ------------------------------------------------------------------------------

    def _wanted(self, subject: str) -> bool:
        found = self._wanted_subjects.get(subject)
        if found is None:
            included = not self._include or any(matches(p, subject) for p in self._include)
            found = included and not any(matches(p, subject) for p in self._exclude)
            self._wanted_subjects[subject] = found
        return found

    def _messages(self, start: int) -> Iterator[tuple[int, RecordedMessage]]:
        """(file index, message) of every wanted message from ``start`` to the window's end, by time."""

        def one(index: int, path: Path) -> Iterator[tuple[int, RecordedMessage]]:
            messages = read_messages(path, start=start, end=self.window_end)
            if not self._include and not self._exclude:
                return zip(itertools.repeat(index), messages)
            wanted = self._wanted
            return ((index, message) for message in messages if wanted(message.subject))

        streams = [one(i, p) for i, p in enumerate(self.files)]
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=lambda item: item[1].log_time)

    # -- time ----------------------------------------------------------------------------------------

    def position(self) -> int:
        """Where the replay is in the recording (ns), now."""
        if self.state != "playing":
            return self._anchor_position
        if self.speed == 0:
            return self._position  # as fast as possible: where the last message was
        return self._anchor_position + int((self._mono() - self._anchor_mono) * self.speed * _NS)

    def clock_time(self) -> datetime:
        """The replay clock: the recording's time now, shifted."""
        return _at(min(self.position(), self.window_end)) + self._offset

    def _reanchor(self, position: int | None = None) -> None:
        self._anchor_position = self.position() if position is None else position
        self._anchor_mono = self._mono()
        self._announce()

    def _announce(self) -> None:
        """Wake everyone waiting in :meth:`wait_change` (and let the next waiters wait afresh)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds, less if the replay is paused, resumed, seeked or re-sped."""
        try:
            await asyncio.wait_for(self._changed.wait(), max(timeout, 0.0))
        except TimeoutError:
            pass

    def _due(self, log_time: int) -> float:
        if self.speed == 0:
            return self._mono()
        return self._anchor_mono + (log_time - self._anchor_position) / self.speed / _NS

    # -- control -------------------------------------------------------------------------------------

    def pause(self) -> ReplayStatus:
        """Stop the replay clock where it is."""
        if self.state == "playing":
            self._reanchor()
            self.state = "paused"
            self._resumed.clear()
            self.log.info("replay paused", position=self._seconds(self._anchor_position))
        return self.status()

    def resume(self) -> ReplayStatus:
        """Start the replay clock again from where it was paused."""
        if self.state == "paused":
            self.state = "playing"
            self._reanchor(self._anchor_position)
            self._resumed.set()
            self.log.info("replay resumed", position=self._seconds(self._anchor_position))
        return self.status()

    def set_speed(self, speed: float) -> ReplayStatus:
        """Replay ``speed`` times faster than real time from now on (0: as fast as possible)."""
        if not 0 <= speed <= 1_000_000:
            raise ValueError(f"speed must be between 0 (as fast as possible) and 1000000, not {speed}")
        position = self.position()
        self.speed = speed
        self._reanchor(position)
        if self._metrics is not None:
            self._metrics.speed.set(speed)
        self.log.info("replay speed set", speed=speed)
        return self.status()

    def seek(self, seconds: float) -> ReplayStatus:
        """Jump to ``seconds`` from the start of the window (what lies between is skipped or replayed)."""
        if not 0 <= seconds * _NS < self._window:
            raise ValueError(f"position must be between 0 and {self._window / _NS:.0f} s, not {seconds}")
        self.seeks += 1
        self._seek_to = self._position = self.window_start + int(seconds * _NS)
        self._reanchor(self._seek_to)
        self.log.info("replay seek", position=seconds)
        return self.status()

    def _seconds(self, position: int) -> float:
        return (position - self.window_start) / _NS

    def status(self) -> ReplayStatus:
        """What the replay is doing now."""
        position = min(max(self.position(), self.window_start), self.window_end)
        return ReplayStatus(
            instance=self.instance,
            state=self.state,
            speed=self.speed,
            position_seconds=round(self._seconds(position), 3),
            duration_seconds=round(self._window / _NS, 3),
            progress=round(min(1.0, (position - self.window_start) / self._window), 6),
            clock=None if self.state == "starting" else self.clock_time(),
            loop=self.loop_index,
            messages=self.published,
            lag_seconds=round(self.lag, 6),
            faults=dict(self.injector.counts) if self.injector is not None else {},
            files=[str(f) for f in self.files],
        )

    # -- running -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Replay the window (again and again when looping) until done or cancelled."""
        self._start_loop()
        if self._faults_factory is not None:
            self.injector = self._faults_factory(_at(self.window_start) + self._offset)
        if self._metrics is not None:
            self._metrics.speed.set(self.speed)
        self.state = "playing"
        self._reanchor(self.window_start)
        if self._start_paused:  # at the window's start, until resumed
            self.pause()
        self.log.info(
            "replay started",
            files=[str(f) for f in self.files],
            speed=self.speed,
            window_seconds=self._window / _NS,
            shift=str(self._offset),
        )
        while True:
            finished = await self._play(self._anchor_position)
            if not finished:
                continue  # a seek: play again from the new position
            await self._drain_pending()
            if not self.loop:
                break
            self.loop_index += 1
            self._start_loop()
            if self.injector is not None:  # fault windows count from each loop's start
                self.injector.restart(_at(self.window_start) + self._offset)
            if self._metrics is not None:
                self._metrics.loops.inc()
            self._reanchor(self.window_start)
            self.log.info("replay looped", loop=self.loop_index)
        self._anchor_position = min(self.position(), self.window_end)  # where it ended, not began
        self.state = "finished"
        self._announce()
        self.log.info("replay finished", messages=self.published)

    def _start_loop(self) -> None:
        """Anchor the times a loop stamps: with ``shift_to_now`` the window starts at the wall-clock
        now, else at its recorded time (see "Time shift" in the module doc)."""
        self._offset = (self._wall() - _at(self.window_start)) if self._shift_to_now else timedelta(0)
        self._offset_ns = _ns(self._offset)

    async def _play(self, start: int) -> bool:
        """Play from ``start`` to the window's end; False when a seek interrupted it."""
        self._seek_to = None
        generation = self._generation = self._generation + 1
        self._pass = f"{self.loop_index}/{generation}"  # a new loop or seek: new ids
        iterator = self._messages(start)
        # On a schedule, small batches: reading holds the GIL, and a message due meanwhile waits.
        size = self._read_ahead if self.speed == 0 else min(self._read_ahead, _SCHEDULED_BATCH)
        batch = await asyncio.to_thread(_take, iterator, size)
        if self._seek_to is not None:
            return False  # a seek came while the first batch was read: play from there instead
        if self.state == "playing":
            self._reanchor(start)  # the clock starts when the first message is at hand, not before
        while batch:
            # On a schedule the next batch is read meanwhile, in a worker thread. As fast as possible
            # it is read here, after this one: there is no schedule to keep, and a worker thread
            # would take the GIL whenever the loop let go of it to write to a socket, and keep it for
            # up to five milliseconds each time (measured: a fifth of the rate into NATS).
            following = asyncio.create_task(asyncio.to_thread(_take, iterator, size)) if self.speed else None
            try:
                for index, message in batch:
                    # as fast as possible, with nothing delayed, paused or sought, a message is due
                    # now: no need to ask _wait_until (a coroutine per message)
                    if self.speed or self._pending or self._seek_to is not None or not self._resumed.is_set():
                        if not await self._wait_until(message.log_time):
                            _cancel(following)
                            return False
                    if self._generation != generation:
                        _cancel(following)
                        return False
                    await self._send(index, message)
            except BaseException:
                _cancel(following)  # a failed publish, a cancellation: the read-ahead goes too
                raise
            if self._seek_to is not None:
                _cancel(following)
                return False
            if following is not None:
                batch = await following
            else:
                await asyncio.sleep(0)  # between batches, the others: control requests, NATS's flusher
                batch = _take(iterator, size)
        return True

    async def _wait_until(self, log_time: int) -> bool:
        """Wait for a message's time, publishing delayed ones on the way; False on a seek."""
        while True:
            await self._resumed.wait()
            if self._seek_to is not None:
                return False
            now = self._mono()
            due = now if self.speed == 0 else self._due(log_time)
            if self._pending and self._pending[0].due <= min(due, now):
                await self._release(heapq.heappop(self._pending))
                continue
            next_due = min(due, self._pending[0].due) if self._pending else due
            if next_due <= now:
                return True
            if next_due - now <= _SPIN:
                # the selector's timeouts are whole milliseconds: the last one is spent yielding
                await asyncio.sleep(0)
                continue
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), next_due - now - _SPIN)
            except TimeoutError:
                pass

    async def _drain_pending(self) -> None:
        if self.injector is not None:
            now = self._mono()
            flushed = self.injector.flush()
            self._count_faults()
            for delay, message in flushed:
                due = now + delay / self.speed if self.speed else now  # as fast as possible: now
                heapq.heappush(self._pending, _Pending(due, next(self._order), message))
        while self._pending:
            await self._resumed.wait()
            head = self._pending[0]
            wait = head.due - self._mono()
            if wait > 0 and self.speed:
                await self.wait_change(wait)
                continue
            await self._release(heapq.heappop(self._pending))

    def _channel(self, index: int, message: RecordedMessage) -> _Channel:
        """What the messages of ``message``'s channel share: made once, kept by file and channel id."""
        headers = message.headers
        ce_type = headers.get(H_TYPE, "")
        content_type = headers.get(H_CONTENT_TYPE, JSON)
        if ce_type:  # the envelope's own writer; ce-id and ce-time are added per message (_send)
            contract = self._registry.by_type(ce_type)
            constant = shared_headers(
                ce_type,
                source=headers.get(H_SOURCE, f"/sandbox/{self.instance}"),
                provenance=headers.get(H_PROVENANCE, Provenance.RECORDED),
                dataschema=None if contract is None else contract.__contract__.dataschema,
                content_type=content_type,
            )
        else:  # a raw message (a device uplink) keeps only what it had
            constant = {H_CONTENT_TYPE: content_type}
        identity = hashlib.blake2b(f"{self.files[index].name}/{message.subject}/".encode(), digest_size=16)
        ref = headers.get(H_PERSON)
        if ref:  # sealed as it travelled: published sealed, its times out of reach (and not shifted)
            constant[H_PERSON] = ref
        shift = self._shifter.shift(ce_type) if ce_type and not ref else None
        found = _Channel(constant, shift, identity)
        self._channels[index, message.channel] = found
        return found

    async def _send(self, index: int, message: RecordedMessage) -> None:
        log_time = message.log_time
        self._position = log_time
        due = self._mono() if self.speed == 0 else self._due(log_time)
        channel = self._channels.get((index, message.channel)) or self._channel(index, message)
        # a new ce-id from the file, subject, sequence, loop and pass (see _play)
        event = channel.identity.copy()
        event.update(f"{message.sequence}/{self._pass}".encode())
        event_id = event.hexdigest()
        headers = channel.headers.copy()
        headers[H_ID] = event_id  # and no Nats-Msg-Id: see "Identity" in the module doc
        shifted = log_time + self._offset_ns
        headers[H_TIME] = self._times.format(shifted)
        data = message.data
        if channel.shift is not None and self._offset_ns:
            data = channel.shift(data, self._offset)
        if self.injector is None:
            await self._publish(message.subject, data, headers)
            self._sent(message.subject, data, headers, due, None, shifted)
        else:
            outgoing = Outgoing(subject=message.subject, data=data, headers=headers, time=_at(shifted))
            planned = self.injector.apply(outgoing)
            self._count_faults()
            for delay, out in planned:
                if delay > 0:
                    wait = delay / self.speed if self.speed else 0.0
                    heapq.heappush(self._pending, _Pending(due + wait, next(self._order), out))
                else:
                    await self._publish(out.subject, out.data, out.headers)
                    self._sent(out.subject, out.data, out.headers, due, out)
        if self._metrics is not None:
            self._metrics.position.set(self._seconds(log_time))
            self._metrics.progress.set(min(1.0, (log_time - self.window_start) / self._window))

    def _count_faults(self) -> None:
        if self.injector is None or self._metrics is None:
            return
        for kind, count in self.injector.counts.items():
            counted = self._faults_counted.get(kind, 0)
            if count > counted:
                self._metrics.faults(kind).inc(count - counted)
                self._faults_counted[kind] = count

    async def _release(self, pending: _Pending) -> None:
        message = pending.message
        await self._publish(message.subject, message.data, message.headers)
        self._sent(message.subject, message.data, message.headers, pending.due, message)

    def _sent(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        due: float,
        message: Outgoing | None,
        shifted: int = 0,
    ) -> None:
        """Account for a message just published. The :class:`Outgoing` that ``on_sent`` gets is made
        here only when there is none yet and someone wants it (``shifted``: its time in ns)."""
        sent = self._mono()
        self.published += 1
        lag = self.lag = max(0.0, sent - due) if self.speed else 0.0
        if self._on_sent is not None:
            if message is None:
                message = Outgoing(subject=subject, data=data, headers=headers, time=_at(shifted))
            self._on_sent(message, due, sent)
        if self._metrics is not None:
            self._metrics.messages.inc()
            if self.speed:
                self._metrics.lag.set(lag)
                self._metrics.schedule_error.observe(lag)
        if lag > 1.0 and self.published % 1000 == 1:
            self.log.warning("replay running late", lag_seconds=round(lag, 3), speed=self.speed)
