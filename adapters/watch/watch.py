"""What ``sensor-watch`` knows of each sensor, and what it concludes: pure, no bus and no clock.

:class:`Watch` is told each reading with the time it arrived (:meth:`Watch.reading`) and asked,
now and then, whether a sensor has gone quiet (:meth:`Watch.check`); both answer with the
:class:`Finding` s to publish. The adapter (:mod:`~adapters.watch.adapter`) only turns readings
into :class:`Reading` and findings into alerts, so everything here is tested without a bus.

Decisions, and why:

* **Stuck is every measured value equal**, reading after reading: a flatlined sensor repeats its
  whole reading. One quantity alone repeats naturally (UV index 0 all night at every beach; a
  calm river's water temperature to the hundredth twice in a row); all of them together did not
  repeat three times in a row at any sensor on the recorded Drammen day. What counts as measured
  is chosen per contract (:mod:`~adapters.watch.adapter`): battery and depth are left out, as a
  battery's charge and a sensor's depth hold still for days on a sensor that works.
* **A reading with nothing measured is never stuck**: it has no values to repeat.
* **Duplicates and the past do not count**: a ``ce-id`` seen before, or a reading not newer than
  the newest one of its sensor (delayed, reordered, or the same moment again), is passed over, so
  at-least-once delivery and reordering neither make a sensor look stuck nor end its episode.
* **Silent is measured in arrivals, on the watch's clock**, not in the readings' own times: a
  sensor whose clock is wrong (skewed) still speaks, and one whose readings arrive late is late.
  The limit is ``silence`` seconds if configured, else ``silence_factor`` times the sensor's usual
  interval (the median of its last eight), learnt from its readings; a sensor with no interval
  yet is not judged.
* **Silence needs a live bus**: a sensor is called silent only while other sensors' readings
  still arrive (one arrived within ``blind`` seconds), and a stretch of more than ``blind``
  seconds with no reading from any sensor (a broker restart, a cut link) is not counted as any
  sensor's silence: then the watch was blind, not the sensors mute. ``blind`` is configured, or
  learnt as 1.5 times the shortest usual interval of any sensor: when even the most talkative
  sensor misses a reading along with all the others, it is the watch that hears nothing.
* **One alert per episode**: ``stuck`` once when the run reaches ``repeats`` readings, ``silent``
  once when the limit passes, and one ``clear`` when the values change or the sensor speaks again.
* **A clock that jumps back** (a replay sought to an earlier time) makes readings older than what
  was seen: a reading older than its sensor's newest while the clock is before that newest by
  more than the sensor's silence limit (an hour while that is unknown) starts the sensor afresh,
  rather than ignoring it for ever. A clock merely skewed ahead is minutes off, not hours.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

__all__ = ["Finding", "Reading", "Watch"]

_REMEMBERED: Final = 64
"""``ce-id`` s remembered per sensor: far more than a duplicate's copies arrive after it."""
_INTERVALS: Final = 8
"""Intervals a sensor's usual one is the median of."""
_BLIND_FACTOR: Final = 1.5
"""``blind`` when learnt: this many of the shortest usual interval of any sensor."""
_SEEK: Final = 3600.0
"""Seconds the clock must be behind a sensor's newest reading to count as gone back, while the
sensor's silence limit is unknown."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of a sensor, as the watch needs it."""

    sensor: str
    observed: str
    """The contract's name (``environment.beach-observation``)."""
    event_id: str
    time: datetime
    """The reading's own time (``observed_at``)."""
    values: tuple[float | None, ...]
    """Every measured value, in a fixed order."""
    main: float | None
    """The main measurement (a temperature), for the alert."""
    provenance: str


@dataclass(frozen=True, slots=True)
class Finding:
    """Something to publish about a sensor."""

    sensor: str
    observed: str
    problem: Literal["stuck", "silent", "clear"]
    since: datetime
    provenance: str
    cleared: Literal["stuck", "silent"] | None = None
    readings: int | None = None
    value: float | None = None


@dataclass(slots=True)
class _Sensor:
    newest: datetime
    arrived: datetime
    """When its newest reading arrived (the watch's clock)."""
    reference: datetime
    """Where its silence is counted from: ``arrived``, moved on by stretches the watch was blind."""
    values: tuple[float | None, ...]
    main: float | None
    provenance: str
    run: int = 1
    run_since: datetime | None = None
    stuck: bool = False
    silent: bool = False
    ids: deque[str] = field(default_factory=lambda: deque(maxlen=_REMEMBERED))
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=_INTERVALS))


class Watch:
    """The state of every sensor watched, and the rules that turn it into findings."""

    def __init__(
        self,
        *,
        repeats: int = 3,
        silence: float | None = None,
        silence_factor: float = 3.5,
        blind: float | None = None,
    ) -> None:
        self.repeats = repeats
        self.silence = silence
        self.silence_factor = silence_factor
        self._blind = None if blind is None else timedelta(seconds=blind)
        self._sensors: dict[tuple[str, str], _Sensor] = {}
        self._last_arrival: datetime | None = None

    @property
    def sensors(self) -> list[tuple[str, str]]:
        """Every sensor watched so far, as ``(contract, sensor)``, sorted."""
        return sorted(self._sensors)

    def limit(self, sensor: str, observed: str) -> float | None:
        """Seconds of silence after which ``sensor`` is silent; ``None`` while that is unknown."""
        state = self._sensors.get((observed, sensor))
        return None if state is None else self._limit(state, observed)

    def _limit(self, state: _Sensor, observed: str) -> float | None:
        if self.silence is not None:
            return self.silence
        if state.intervals:
            return self.silence_factor * statistics.median(state.intervals)
        # Not learnt yet (one reading so far): sensors of one kind report alike, so the others' usual
        # interval stands in until it has its own.
        others = [
            statistics.median(other.intervals)
            for (kind, _sensor), other in self._sensors.items()
            if kind == observed and other.intervals and other is not state
        ]
        return self.silence_factor * statistics.median(others) if others else None

    def blind(self) -> timedelta | None:
        """How long no reading from any sensor means the watch hears nothing; ``None`` while unknown."""
        if self._blind is not None:
            return self._blind
        usual = [statistics.median(s.intervals) for s in self._sensors.values() if s.intervals]
        return timedelta(seconds=_BLIND_FACTOR * min(usual)) if usual else None

    def reading(self, reading: Reading, now: datetime) -> list[Finding]:
        """Take one reading that arrived at ``now``; return what it concludes."""
        key = (reading.observed, reading.sensor)
        state = self._sensors.get(key)
        if state is not None and reading.event_id in state.ids:
            return []  # a duplicate: seen already
        if state is not None and reading.time <= state.newest:
            back = timedelta(seconds=self._limit(state, reading.observed) or _SEEK)
            if now >= state.newest - back:
                return []  # delayed or reordered: older than what its sensor said since
            state = None  # the clock went back (a seek): start the sensor afresh
        self._unblind(now)
        if state is None:
            self._sensors[key] = fresh = _Sensor(
                newest=reading.time,
                arrived=now,
                reference=now,
                values=reading.values,
                main=reading.main,
                provenance=reading.provenance,
            )
            fresh.ids.append(reading.event_id)
            return []
        found: list[Finding] = []
        state.ids.append(reading.event_id)
        state.intervals.append((reading.time - state.newest).total_seconds())
        state.newest, state.arrived, state.reference = reading.time, now, now
        state.provenance = reading.provenance
        if state.silent:
            state.silent = False
            found.append(self._clear(reading, "silent"))
        found += self._repeats(state, reading)
        return found

    def _unblind(self, now: datetime) -> None:
        """After a stretch with no reading at all, count it as nobody's silence."""
        last, self._last_arrival = self._last_arrival, now
        blind = self.blind()
        if last is None or blind is None or now - last <= blind:
            return
        gap = now - last
        for state in self._sensors.values():
            state.reference = min(state.reference + gap, now)

    def _repeats(self, state: _Sensor, reading: Reading) -> list[Finding]:
        measured = any(v is not None for v in reading.values)
        if measured and reading.values == state.values:
            state.run += 1
            if state.run == 2:
                state.run_since = reading.time
            if state.run >= self.repeats and not state.stuck:
                state.stuck = True
                since = state.run_since or reading.time
                return [
                    Finding(
                        sensor=reading.sensor,
                        observed=reading.observed,
                        problem="stuck",
                        since=since,
                        provenance=reading.provenance,
                        readings=state.run,
                        value=reading.main,
                    )
                ]
            return []
        state.values, state.main, state.run, state.run_since = reading.values, reading.main, 1, None
        if state.stuck:
            state.stuck = False
            return [self._clear(reading, "stuck")]
        return []

    @staticmethod
    def _clear(reading: Reading, problem: Literal["stuck", "silent"]) -> Finding:
        return Finding(
            sensor=reading.sensor,
            observed=reading.observed,
            problem="clear",
            cleared=problem,
            since=reading.time,
            provenance=reading.provenance,
        )

    def check(self, now: datetime) -> list[Finding]:
        """The sensors that have gone silent by ``now`` (each once per episode)."""
        found: list[Finding] = []
        for (observed, sensor), state in self._sensors.items():
            limit = self._limit(state, observed)
            if state.silent or limit is None:
                continue
            if (now - state.reference).total_seconds() < limit or not self._others_speak(state, now):
                continue
            state.silent = True
            found.append(
                Finding(
                    sensor=sensor,
                    observed=observed,
                    problem="silent",
                    since=state.newest,
                    provenance=state.provenance,
                )
            )
        return found

    def _others_speak(self, silent: _Sensor, now: datetime) -> bool:
        """Whether the bus is alive around ``silent``: another sensor spoke within ``blind``."""
        others = [s.arrived for s in self._sensors.values() if s is not silent]
        blind = self.blind()
        if not others or blind is None:
            return True  # a sensor watched alone: nothing to compare it with
        return now - max(others) <= blind
