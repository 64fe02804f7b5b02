"""An independent brute-force journey search over a GTFS zip: the yardstick of the planner's reference mode.

Written for the tests of issue 17 and deliberately simple: it reads the zip itself with ``zipfile`` and
``csv`` (nothing from ``adapters/``), and finds earliest arrivals by repeated passes over every trip of the
day, relaxing each stop place's earliest arrival until a whole pass changes nothing (label-correcting, in
the manner of Bellman-Ford). No RAPTOR, no rounds, no pruning: a pass can only lower an arrival, arrivals
are bounded below, so the passes end, and at the end no trip can improve any stop place, which is exactly
"earliest arrival". :meth:`ReferenceFeed.fewest_trips` finds the Pareto set of (trips, arrival) by
rounds instead (round *k* boards only from round *k − 1*'s arrivals), and so the earliest arrival a
second way.

The rules are those of the reference mode (``--max-walk 0 --no-bikes --change 120``), as the design note
states them:

- places are stop places; a quay (a ``stop_times`` stop) counts as its parent stop place;
- a departure time T whose local date (Europe/Oslo) is D uses the trips of the services active on D,
  on D-1 and on D+1, each timed from its own service day's origin, local noon minus 12 h (so a
  journey at 23:55 can take the 00:05 train, and one arriving by 00:08 the 23:53);
- a service is active on a day by ``calendar.txt`` (weekday flag, within start and end date) and
  ``calendar_dates.txt`` (1 adds the day, 2 removes it);
- a trip is boarded at a call's departure time unless its ``pickup_type`` is 1, left at a call's arrival
  time unless its ``drop_off_type`` is 1;
- at the origin any trip departing at or after T may be boarded; elsewhere a trip may be boarded if the
  stop place was reached by another trip at least 120 s before (staying on a trip needs nothing); no
  walking;
- a journey arrives less than 24 h after T (OpenTripPlanner's longest journey too), or there is none.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")
"""The time zone of the feed's times (its agency's)."""

CHANGE_SECONDS = 120
LONGEST_SECONDS = 24 * 3600
"""A journey arrives less than a day after its departure time, or there is none."""
"""The least time between arriving at a stop place on one trip and departing on another."""

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Trip:
    """One trip's calls in order: stop places, times in seconds from the service day's origin, flags."""

    trip_id: str
    service_id: str
    places: tuple[str, ...]
    arrivals: tuple[int, ...]
    departures: tuple[int, ...]
    pickup: tuple[bool, ...]
    drop_off: tuple[bool, ...]


@dataclass(frozen=True)
class DayTrip:
    """A trip on one service day: its times as Unix seconds."""

    trip: Trip
    places: tuple[str, ...]
    arrivals: tuple[int, ...]
    departures: tuple[int, ...]
    pickup: tuple[bool, ...]
    drop_off: tuple[bool, ...]


@dataclass(frozen=True)
class Reached:
    """The earliest arrival at the destination and the number of trips of one journey that makes it.

    ``arrival`` is in UTC: an Oslo time in the hour repeated when summer time ends never compares equal
    to a time of another zone (PEP 495), so compare instants, e.g. by ``timestamp()``.
    """

    arrival: datetime
    trips: int


def service_day_origin(day: date) -> datetime:
    """The instant a service day's GTFS times count from: local noon minus 12 h (not local midnight)."""
    noon = datetime.combine(day, time(12), tzinfo=OSLO)
    return noon.astimezone(UTC) - timedelta(hours=12)


def _seconds(text: str) -> int:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


def _rows(archive: zipfile.ZipFile, name: str) -> Iterator[dict[str, str]]:
    with archive.open(name) as raw:
        yield from csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig"))


class ReferenceFeed:
    """A GTFS zip read plainly, with the brute-force earliest-arrival search over it."""

    def __init__(self, path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            stops = list(_rows(archive, "stops.txt"))
            self.names: dict[str, str] = {s["stop_id"]: s["stop_name"] for s in stops}
            parent = {s["stop_id"]: s["parent_station"] or s["stop_id"] for s in stops}
            service_of = {t["trip_id"]: t["service_id"] for t in _rows(archive, "trips.txt")}
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
            calendar = list(_rows(archive, "calendar.txt")) if "calendar.txt" in names else []
            exceptions = list(_rows(archive, "calendar_dates.txt")) if "calendar_dates.txt" in names else []
        self.calendar: dict[str, dict[str, str]] = {row["service_id"]: row for row in calendar}
        """calendar.txt's row of each service that has one."""
        self.exceptions: dict[tuple[str, str], str] = {
            (row["service_id"], row["date"]): row["exception_type"] for row in exceptions
        }
        """calendar_dates.txt: (service, YYYYMMDD) -> exception type, 1 adds the day and 2 removes it."""
        self.trips: list[Trip] = []
        for trip_id, rows in calls.items():
            rows.sort()
            self.trips.append(
                Trip(
                    trip_id=trip_id,
                    service_id=service_of[trip_id],
                    places=tuple(r[1] for r in rows),
                    arrivals=tuple(r[2] for r in rows),
                    departures=tuple(r[3] for r in rows),
                    pickup=tuple(r[4] for r in rows),
                    drop_off=tuple(r[5] for r in rows),
                )
            )
        self.places: frozenset[str] = frozenset(p for t in self.trips for p in t.places)
        """The stop places some trip calls at."""
        self._days: dict[date, list[DayTrip]] = {}
        self._by_id: dict[date, dict[str, list[DayTrip]]] = {}

    def active(self, service_id: str, day: date) -> bool:
        """Whether a service runs on ``day``, by calendar.txt and then calendar_dates.txt."""
        stamp = day.strftime("%Y%m%d")
        if (service_id, stamp) in self.exceptions:
            return self.exceptions[service_id, stamp] == "1"
        row = self.calendar.get(service_id)
        return (
            row is not None
            and row["start_date"] <= stamp <= row["end_date"]
            and row[_WEEKDAYS[day.weekday()]] == "1"
        )

    def day_trips(self, day: date) -> list[DayTrip]:
        """The trips a search on local date ``day`` may use, its own, the day before's and the day after's,
        in Unix seconds."""
        if day not in self._days:
            services = {t.service_id for t in self.trips}
            found: list[DayTrip] = []
            for service_day in (day - timedelta(days=1), day, day + timedelta(days=1)):
                active = {s for s in services if self.active(s, service_day)}
                base = int(service_day_origin(service_day).timestamp())
                found.extend(
                    DayTrip(
                        trip=t,
                        places=t.places,
                        arrivals=tuple(base + a for a in t.arrivals),
                        departures=tuple(base + d for d in t.departures),
                        pickup=t.pickup,
                        drop_off=t.drop_off,
                    )
                    for t in self.trips
                    if t.service_id in active
                )
            # Any order gives the same answer; this one needs fewer passes.
            found.sort(key=lambda t: t.departures[0])
            self._days[day] = found
        return self._days[day]

    def day_trip(self, day: date, trip_id: str) -> list[DayTrip]:
        """The trip of that id among :meth:`day_trips`: none, once, or twice (running on both days)."""
        if day not in self._by_id:
            index: dict[str, list[DayTrip]] = {}
            for trip in self.day_trips(day):
                index.setdefault(trip.trip.trip_id, []).append(trip)
            self._by_id[day] = index
        return self._by_id[day].get(trip_id, [])

    def earliest_arrival(self, origin: str, destination: str, depart: datetime) -> Reached | None:
        """The earliest arrival at ``destination`` leaving ``origin`` at or after ``depart``; None if none."""
        start = int(depart.timestamp())
        trips = [t for t in self.day_trips(depart.astimezone(OSLO).date()) if t.arrivals[-1] >= start]
        best: dict[str, tuple[int, int]] = {}  # stop place -> (earliest arrival, trips of one such journey)
        changed = True
        while changed:
            changed = False
            for trip in trips:
                aboard: int | None = None  # trips taken so far by whoever boarded this one, if anyone could
                for i, place in enumerate(trip.places):
                    if aboard is not None and trip.drop_off[i] and place != origin:
                        here = best.get(place)
                        if here is None or trip.arrivals[i] < here[0]:
                            best[place] = (trip.arrivals[i], aboard)
                            changed = True
                    if trip.pickup[i]:
                        if place == origin:
                            ready, taken = start, 0
                        elif place in best:
                            ready, taken = best[place][0] + CHANGE_SECONDS, best[place][1]
                        else:
                            continue
                        if ready <= trip.departures[i] and (aboard is None or taken + 1 < aboard):
                            aboard = taken + 1
        if destination not in best or best[destination][0] >= start + LONGEST_SECONDS:
            return None
        arrival, taken = best[destination]
        return Reached(arrival=datetime.fromtimestamp(arrival, UTC), trips=taken)

    def fewest_trips(
        self, origin: str, destination: str, depart: datetime, most: int
    ) -> list[tuple[int, datetime]]:
        """The Pareto set of (trips, arrival): for each number of trips up to ``most``, the earliest
        arrival with no more trips, where it is earlier than with fewer; fewest trips first.

        Rounds, in the manner of Bellman-Ford: round *k*'s arrivals are round *k − 1*'s, improved by
        one more trip boarded from round *k − 1*'s arrivals. An arrival no earlier than the best at the
        destination so far is dropped, as no journey through it can arrive earlier.
        """
        start = int(depart.timestamp())
        trips = [t for t in self.day_trips(depart.astimezone(OSLO).date()) if t.arrivals[-1] >= start]
        never = 1 << 62
        before: dict[str, int] = {}  # stop place -> earliest arrival with at most k - 1 trips
        found: list[tuple[int, datetime]] = []
        for k in range(1, most + 1):
            now = dict(before)
            bound = before.get(destination, never)
            for trip in trips:
                aboard = False
                for i, place in enumerate(trip.places):
                    arrival = trip.arrivals[i]
                    if (
                        aboard
                        and trip.drop_off[i]
                        and place != origin
                        and arrival < min(bound, now.get(place, never))
                    ):
                        now[place] = arrival
                    if not aboard and trip.pickup[i]:
                        ready = start if place == origin else before.get(place, never) + CHANGE_SECONDS
                        aboard = ready <= trip.departures[i]
            if now.get(destination, never) < min(bound, start + LONGEST_SECONDS):
                found.append((k, datetime.fromtimestamp(now[destination], UTC)))
            if now == before:
                break
            before = now
        return found


def ride_fault(
    reference: ReferenceFeed, day: date, ride: tuple[str, str, str, datetime, datetime]
) -> str | None:
    """Why a ride (trip id, from stop place, to stop place, departure, arrival) cannot be made on a search
    of local date ``day``, or None if it can: the trip must run on ``day``, the day before or after, take up
    passengers at the first place at that departure and set down at the second, later, at that arrival."""
    trip_id, start, end, departure, arrival = ride
    for trip in reference.day_trip(day, trip_id):
        if start not in trip.places or end not in trip.places:
            continue
        i, j = trip.places.index(start), trip.places.index(end)
        times = (trip.departures[i], trip.arrivals[j])
        if (
            i < j
            and trip.pickup[i]
            and trip.drop_off[j]
            and times == (departure.timestamp(), arrival.timestamp())
        ):
            return None
    return (
        f"no trip {trip_id} of {day} or the days around it takes up at {start} at {departure.isoformat()} "
        f"and sets down at {end} at {arrival.isoformat()}"
    )
