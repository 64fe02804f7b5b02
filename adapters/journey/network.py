"""One day's network as RAPTOR scans it: the trips that run, grouped into patterns.

A *pattern* is a list of trips that call at the same places in the same order, with the same
boarding and alighting rules, and that never overtake one another: then the first trip one can
catch at a stop is also the first to arrive at every later stop, and a scan along the pattern can
take, at each stop, the earliest catchable trip by a binary search on that stop's departures.

Decisions, and why:

* **Instants, not service-day seconds.** A day's network holds the trips of the services of the
  day, the day before and the day after (the night's trains, the first ones after midnight), each
  time as a UNIX time, so the three days' trips mix in one scan.
* **Overtaking splits a pattern.** Trips with the same calls are sorted by their first departure
  and put into the first pattern they do not overtake (at any stop, an earlier arrival or departure
  than the pattern's last trip), else into a new one. The timetable rarely overtakes; live delays
  do (a late train overtaken by the next), and a delayed trip simply lands in a pattern of its own.
* **Live times are part of the network.** A day's network is built with the live overlay
  (:mod:`adapters.journey.live`) applied; a live change splits again the patterns of the changed
  trip's calls only (:meth:`Network.replace_run`), not the day's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from adapters.journey.feed import Feed, Trip

__all__ = ["Network", "Pattern", "Run"]

_Key = tuple[tuple[int, ...], tuple[bool, ...], tuple[bool, ...]]
"""A pattern's places, boarding and alighting: what its trips share."""


@dataclass(frozen=True, slots=True)
class Run:
    """One trip on one service date, with its times as UNIX times (live where known)."""

    trip: Trip
    service_date: date
    arrivals: tuple[int, ...]
    departures: tuple[int, ...]
    boarding: tuple[bool, ...]
    alighting: tuple[bool, ...]
    live: tuple[bool, ...]
    """Whether each call's times come from a live call (or a delay carried from one)."""

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[bool, ...], tuple[bool, ...]]:
        """What a pattern's trips share: their places and where one may board and get off."""
        return (self.trip.places, self.boarding, self.alighting)


@dataclass(slots=True)
class Pattern:
    """Trips with the same calls that never overtake: scanned as one RAPTOR route."""

    places: tuple[int, ...]
    boarding: tuple[bool, ...]
    alighting: tuple[bool, ...]
    runs: list[Run] = field(default_factory=list)
    columns: list[list[int]] = field(default_factory=list)
    """Per call, the departures of the runs in order (sorted: the runs do not overtake)."""

    def fits(self, run: Run) -> bool:
        """Whether ``run`` can follow the pattern's last run without overtaking it."""
        if not self.runs:
            return True
        last = self.runs[-1]
        return all(a >= b for a, b in zip(run.arrivals, last.arrivals, strict=True)) and all(
            a >= b for a, b in zip(run.departures, last.departures, strict=True)
        )

    def add(self, run: Run) -> None:
        """Append a run that :meth:`fits`."""
        self.runs.append(run)
        if not self.columns:
            self.columns = [[] for _ in self.places]
        for column, departure in zip(self.columns, run.departures, strict=True):
            column.append(departure)

    def first_catchable(self, position: int, ready: int) -> int:
        """The index of the first run departing ``position`` at or after ``ready`` (``len`` if none)."""
        return bisect_left(self.columns[position], ready)


class Network:
    """The patterns of one day (its services, the day before's and the day after's), and for each
    place the patterns calling there."""

    def __init__(self, feed: Feed, day: date, runs: Iterable[Run]) -> None:
        self.feed = feed
        self.day = day
        self.groups: dict[_Key, list[Run]] = {}
        self.by_trip: dict[tuple[str, date], Run] = {}
        for run in runs:
            self.groups.setdefault(run.key, []).append(run)
            self.by_trip[(run.trip.id, run.service_date)] = run
        self.patterns: list[Pattern] = []
        self.at: list[list[tuple[int, int]]] = [[] for _ in feed.places]
        """Place index → (pattern index, position) of every pattern call there."""
        self._patterns_of = {key: _split(key, runs) for key, runs in self.groups.items()}
        self._rebuild()

    def _rebuild(self) -> None:
        self.patterns = [pattern for patterns in self._patterns_of.values() for pattern in patterns]
        self.at = [[] for _ in self.feed.places]
        self._pattern_of: dict[int, Pattern] = {}
        for index, pattern in enumerate(self.patterns):
            for position, place in enumerate(pattern.places):
                self.at[place].append((index, position))
            for run in pattern.runs:
                self._pattern_of[id(run)] = pattern

    def pattern_of(self, run: Run) -> Pattern:
        """The pattern a run of this network is in."""
        return self._pattern_of[id(run)]

    def replace_run(self, trip: Trip, service_date: date, run: Run | None) -> None:
        """Put a trip's changed run (a live update; ``None``: nothing left to board) in place of its
        old one, and regroup."""
        old = self.by_trip.pop((trip.id, service_date), None)
        changed: set[_Key] = set()
        if old is not None:
            group = self.groups.get(old.key, [])
            if old in group:
                group.remove(old)
                changed.add(old.key)
                if not group:
                    del self.groups[old.key]
        # a day's network holds the runs of the day before, the day and the day after
        if run is not None and abs((service_date - self.day).days) <= 1:
            self.by_trip[(trip.id, service_date)] = run
            self.groups.setdefault(run.key, []).append(run)
            changed.add(run.key)
        # only the changed trip's groups are split again; the day's other patterns stay as they are
        for key in changed:
            runs = self.groups.get(key)
            if runs:
                self._patterns_of[key] = _split(key, runs)
            else:
                self._patterns_of.pop(key, None)
        self._rebuild()

    @property
    def size(self) -> tuple[int, int]:
        """(runs, patterns): what a day holds."""
        return len(self.by_trip), len(self.patterns)


def _split(key: _Key, runs: list[Run]) -> list[Pattern]:
    places, boarding, alighting = key
    patterns: list[Pattern] = []
    for run in sorted(runs, key=lambda r: (r.departures[0], r.arrivals[-1])):
        for pattern in patterns:
            if pattern.fits(run):
                pattern.add(run)
                break
        else:
            pattern = Pattern(places, boarding, alighting)
            pattern.add(run)
            patterns.append(pattern)
    return patterns
