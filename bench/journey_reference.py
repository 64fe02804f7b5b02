"""A brute-force earliest-arrival search over a GTFS zip, independent of the journey planner.

The yardstick the ``journey`` case (:mod:`bench.journey`) times the planner against, in the same
run, on the same queries, and checks the planner's reference-mode answers with. It reads the zip
itself with :mod:`zipfile` and :mod:`csv` (nothing from ``adapters/``) and applies the rules of
the planner's reference mode (``max_walk=0, bikes=False, change=120``) as issue 17's design note
states them:

- places are stop places; a quay (a ``stop_times`` stop) counts as its parent station;
- a search leaving at T, local date D (Europe/Oslo), may use the trips of the services active on
  D, on D-1 and on D+1 (``calendar.txt`` weekday flags within the start and end dates, then
  ``calendar_dates.txt``: 1 adds the day, 2 removes it), each timed from its own service day's
  origin, local noon minus 12 h;
- a trip is boarded at a call's departure unless its ``pickup_type`` is 1 and left at a call's
  arrival unless its ``drop_off_type`` is 1; at the origin any trip departing at or after T may be
  boarded, elsewhere only 120 s after arriving there on another trip; no walking;
- a journey arrives less than 24 h after T, or there is none.

The search is Bellman-Ford by rounds: round *k* passes over every trip of the day (no patterns, no
pruning, no binary search) and boards it wherever the arrivals of rounds before *k* allow, so after
round *k* each stop place holds its earliest arrival with at most *k* trips. It stops when a round
changes nothing, or after ``trips`` rounds (the planner's ``max_changes + 1``).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

__all__ = ["CHANGE", "BruteForce", "DayTrip"]

OSLO: Final = ZoneInfo("Europe/Oslo")
CHANGE: Final = 120
"""Seconds between arriving at a stop place on one trip and departing on another."""
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

DayTrip = tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...], tuple[bool, ...], tuple[bool, ...]]
"""A trip on one service day: its stop places, arrivals and departures (UNIX seconds), and where one
may board and get off."""

_Trip = tuple[str, tuple[str, ...], tuple[int, ...], tuple[int, ...], tuple[bool, ...], tuple[bool, ...]]
"""service_id, stop places, arrivals and departures (GTFS seconds), boarding, alighting."""


def _seconds(text: str) -> int:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


def _rows(archive: zipfile.ZipFile, name: str) -> Iterator[dict[str, str]]:
    if name not in archive.namelist():
        return
    with archive.open(name) as raw:
        yield from csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig"))


def origin_of(day: date) -> int:
    """The UNIX time a service day's GTFS times count from: local noon minus 12 h."""
    noon = datetime.combine(day, time(12), tzinfo=OSLO)
    return int((noon.astimezone(UTC) - timedelta(hours=12)).timestamp())


class BruteForce:
    """A GTFS zip read plainly, and the brute-force search over one day's trips."""

    def __init__(self, path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            parent = {
                row["stop_id"]: row.get("parent_station") or row["stop_id"]
                for row in _rows(archive, "stops.txt")
            }
            service_of = {row["trip_id"]: row["service_id"] for row in _rows(archive, "trips.txt")}
            calls: dict[str, list[tuple[int, str, int, int, bool, bool]]] = {}
            for row in _rows(archive, "stop_times.txt"):
                calls.setdefault(row["trip_id"], []).append(
                    (
                        int(row["stop_sequence"]),
                        parent[row["stop_id"]],
                        _seconds(row["arrival_time"]),
                        _seconds(row["departure_time"]),
                        row.get("pickup_type", "") != "1",
                        row.get("drop_off_type", "") != "1",
                    )
                )
            self.calendar = {row["service_id"]: row for row in _rows(archive, "calendar.txt")}
            self.exceptions = {
                (row["service_id"], row["date"]): row["exception_type"]
                for row in _rows(archive, "calendar_dates.txt")
            }
        self.trips: list[_Trip] = []
        for trip_id, rows in calls.items():
            rows.sort()
            self.trips.append(
                (
                    service_of[trip_id],
                    tuple(r[1] for r in rows),
                    tuple(r[2] for r in rows),
                    tuple(r[3] for r in rows),
                    tuple(r[4] for r in rows),
                    tuple(r[5] for r in rows),
                )
            )
        self._days: dict[date, list[DayTrip]] = {}

    def active(self, service: str, day: date) -> bool:
        """Whether ``service`` runs on ``day``: calendar.txt, then calendar_dates.txt's exceptions."""
        stamp = day.strftime("%Y%m%d")
        exception = self.exceptions.get((service, stamp))
        if exception is not None:
            return exception == "1"
        row = self.calendar.get(service)
        return (
            row is not None
            and row["start_date"] <= stamp <= row["end_date"]
            and row[_WEEKDAYS[day.weekday()]] == "1"
        )

    def places_on(self, day: date) -> list[str]:
        """The stop places the trips of ``day``'s own services call at, sorted."""
        return sorted({place for trip in self.trips if self.active(trip[0], day) for place in trip[1]})

    def day_trips(self, day: date) -> list[DayTrip]:
        """The trips a search on local date ``day`` may use (its own, the day before's and after's), in
        UNIX time."""
        found = self._days.get(day)
        if found is None:
            found = []
            for service_day in (day - timedelta(days=1), day, day + timedelta(days=1)):
                base = origin_of(service_day)
                running = {s for s in {t[0] for t in self.trips} if self.active(s, service_day)}
                found.extend(
                    (
                        places,
                        tuple(base + a for a in arrivals),
                        tuple(base + d for d in departures),
                        boarding,
                        alighting,
                    )
                    for service, places, arrivals, departures, boarding, alighting in self.trips
                    if service in running
                )
            found.sort(key=lambda trip: trip[2][0])
            self._days[day] = found
        return found

    def earliest_arrival(self, origin: str, destination: str, start: int, trips: int) -> int | None:
        """The earliest arrival (UNIX seconds) at ``destination`` leaving ``origin`` at or after
        ``start`` with at most ``trips`` trips, or ``None`` if there is none."""
        day = datetime.fromtimestamp(start, OSLO).date()
        usable = [trip for trip in self.day_trips(day) if trip[1][-1] >= start]
        best: dict[str, int] = {}
        """Stop place → its earliest arrival by trip so far (the origin is never arrived at)."""
        for _ in range(trips):
            ready = {place: arrival + CHANGE for place, arrival in best.items()}
            ready[origin] = start
            improved = False
            for places, arrivals, departures, boarding, alighting in usable:
                aboard = False
                for i, place in enumerate(places):
                    if aboard and alighting[i] and place != origin:
                        known = best.get(place)
                        if known is None or arrivals[i] < known:
                            best[place] = arrivals[i]
                            improved = True
                    if not aboard and boarding[i]:
                        when = ready.get(place)
                        aboard = when is not None and when <= departures[i]
            if not improved:
                break
        arrival = best.get(destination)
        # a journey arrives less than a day after it leaves (the planner's longest journey)
        return None if arrival is None or arrival >= start + 24 * 3600 else arrival
