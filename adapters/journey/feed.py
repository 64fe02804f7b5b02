"""A whole GTFS feed, read for routing: every stop place, every trip with its calls, every day.

The journey planner needs the whole network (a journey from Drammen to Trondheim changes at Oslo
S), where the trains adapter keeps the calls of a few stop places; both read the zip's members
with :mod:`adapters.trains.gtfs_members`.

Decisions, and why:

* **Stop places are the places.** A call's ``stop_id`` is a quay (``NSR:Quay:22``); it counts as
  its ``parent_station`` (``NSR:StopPlace:11``), where a traveller changes between platforms. A
  stop with no parent station is a place of its own. Both ids find the place (:meth:`Feed.place`).
* **Times stay GTFS seconds** after the service day's origin (noon minus 12 h, local time, so a
  day with a clock change still counts right), turned into instants only per day
  (:meth:`Feed.origin`); a trip past midnight keeps its 25:10:00.
* **A row that cannot be used is left out and counted**, never guessed: a time like ``7:6O``, a
  call of an unknown trip, a trip of an unknown route or service. A trip whose times go backwards
  is left out whole (routing on it would be wrong). What makes the whole feed unusable (not a zip,
  a missing member or column) raises :class:`~adapters.polling.SourceFormatError`.
"""

from __future__ import annotations

import time as _time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.polling import SourceFormatError
from adapters.records import Rejected
from adapters.trains.gtfs import parse_gtfs_time
from adapters.trains.gtfs_members import Member, cell, open_gtfs, read_agencies, read_calendars
from adapters.trains.timetable import ServiceCalendar, codespace, mode_of_route_type, service_day_start

__all__ = ["Feed", "Place", "Trip", "load_feed", "read_feed"]


@dataclass(frozen=True, slots=True)
class Place:
    """A stop place (or a parentless stop): where a journey can start, end or change."""

    index: int
    id: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Trip:
    """One trip (a GTFS ``trip_id``, Entur's service journey) and its calls, in order."""

    index: int
    id: str
    service: str
    line: str
    mode: str
    operator: str
    headsign: str
    places: tuple[int, ...]
    """The place of each call."""
    quays: tuple[str, ...]
    """The stop (quay) id of each call, as the feed has it."""
    arrivals: tuple[int, ...]
    """Seconds after the service day's origin; the first call's is its departure."""
    departures: tuple[int, ...]
    """Seconds after the service day's origin; the last call's is its arrival."""
    boarding: tuple[bool, ...]
    """Whether travellers may board at each call (``pickup_type`` is not 1)."""
    alighting: tuple[bool, ...]
    """Whether travellers may get off at each call (``drop_off_type`` is not 1)."""


@dataclass(slots=True)
class Feed:
    """A GTFS feed as the planner routes on it."""

    places: list[Place]
    trips: list[Trip]
    calendars: dict[str, ServiceCalendar]
    tz: ZoneInfo
    valid_from: date
    valid_to: date
    ids: dict[str, int] = field(default_factory=dict)
    """Stop place and quay ids → place index."""
    departures_at: list[int] = field(default_factory=list)
    """How many calls each place has (over the whole feed): the busiest place wins a name."""
    rail_calls: list[int] = field(default_factory=list)
    """How many of those are by train: a station wins a name before a replacement-bus stop."""
    rejected: list[Rejected] = field(default_factory=list)
    load_seconds: float = 0.0
    _days: dict[date, tuple[int, ...]] = field(default_factory=dict)
    _origins: dict[date, int] = field(default_factory=dict)

    def place(self, ident: str) -> Place | None:
        """The place of a stop place or quay id, or ``None``."""
        index = self.ids.get(ident)
        return None if index is None else self.places[index]

    def origin(self, day: date) -> int:
        """The service day's origin (noon minus 12 h) as a UNIX time (worked out once per day)."""
        found = self._origins.get(day)
        if found is None:
            found = self._origins[day] = int(service_day_start(day, self.tz).timestamp())
        return found

    def trips_on(self, day: date) -> tuple[int, ...]:
        """The trips whose service runs on ``day``, by index (cached per day)."""
        found = self._days.get(day)
        if found is None:
            running = {s for s, calendar in self.calendars.items() if calendar.runs_on(day)}
            found = self._days[day] = tuple(t.index for t in self.trips if t.service in running)
        return found

    def local_date(self, moment: datetime) -> date:
        """The local calendar date of an instant, in the feed's time zone."""
        return moment.astimezone(self.tz).date()

    def instant(self, seconds: int) -> datetime:
        """A UNIX time as an aware datetime with the feed's UTC offset then (``+02:00`` in summer)."""
        local = datetime.fromtimestamp(seconds, UTC).astimezone(self.tz)
        # a fixed offset, as a message carries it: a zoneinfo time in the hour that repeats in
        # autumn never compares equal to the same instant in another zone (PEP 495)
        offset = local.utcoffset()
        return local if offset is None else local.replace(tzinfo=timezone(offset), fold=0)

    def covers(self, day: date) -> bool:
        """Whether ``day`` lies within the feed's validity."""
        return self.valid_from <= day <= self.valid_to


def load_feed(path: Path | str) -> Feed:
    """Read a GTFS zip from a file; :class:`SourceFormatError` with what to fix if it cannot be used."""
    source = Path(path)
    try:
        body = source.read_bytes()
    except OSError as exc:
        raise SourceFormatError(
            f"cannot read the GTFS feed {source}: {exc.strerror or exc}", reason="gtfs-unreadable"
        ) from None
    return read_feed(body)


def read_feed(body: bytes) -> Feed:
    """Read a GTFS zip's bytes into a :class:`Feed` (pure and blocking: run it in a thread)."""
    started = _time.perf_counter()
    rejected: list[Rejected] = []
    with open_gtfs(body) as archive:
        agencies = read_agencies(archive)
        places, ids = _places(archive)
        routes = _routes(archive)
        trip_rows = _trip_rows(archive)
        calls = _stop_times(archive, set(trip_rows), ids, rejected)
        calendars = read_calendars(archive, {row[1] for row in trip_rows.values()}, rejected)
    tz = next(iter(agencies.values())).timezone
    trips: list[Trip] = []
    busy = [0] * len(places)
    rail = [0] * len(places)
    for trip_id, rows in calls.items():
        route_id, service, headsign = trip_rows[trip_id]
        route = routes.get(route_id)
        if route is None:
            rejected.append(
                Rejected("unknown-route", f"trips.txt: trip {trip_id} has unknown route {route_id}", b"")
            )
            continue
        rows.sort()
        trip = _trip(len(trips), trip_id, service, route, headsign, rows)
        if trip is None:
            rejected.append(
                Rejected("bad-stop-time", f"stop_times.txt: trip {trip_id} goes back in time", b"")
            )
            continue
        trips.append(trip)
        for place in trip.places:
            busy[place] += 1
            if trip.mode == "rail":
                rail[place] += 1
    days = [day for calendar in calendars.values() for day in _bounds(calendar) or ()]
    if not trips or not days:
        raise SourceFormatError(
            "the GTFS feed has no trip that runs on any day: nothing to plan journeys on",
            reason="gtfs-no-service",
        )
    return Feed(
        places=places,
        trips=trips,
        calendars=calendars,
        tz=tz,
        valid_from=min(days),
        valid_to=max(days),
        ids=ids,
        departures_at=busy,
        rail_calls=rail,
        rejected=rejected,
        load_seconds=_time.perf_counter() - started,
    )


@dataclass(frozen=True, slots=True)
class _Route:
    line: str
    mode: str
    operator: str


def _places(archive: zipfile.ZipFile) -> tuple[list[Place], dict[str, int]]:
    member = Member(archive, "stops.txt", ("stop_id", "stop_name", "stop_lat", "stop_lon"))
    i_id, i_name = member.index("stop_id"), member.index("stop_name")
    i_lat, i_lon = member.index("stop_lat"), member.index("stop_lon")
    i_parent, i_type = member.index("parent_station"), member.index("location_type")
    rows: list[tuple[str, str, float, float, str, str]] = []
    for _, row in member.rows():
        try:
            lat, lon = float(cell(row, i_lat)), float(cell(row, i_lon))
        except ValueError:
            lat = lon = float("nan")
        rows.append((cell(row, i_id), cell(row, i_name), lat, lon, cell(row, i_parent), cell(row, i_type)))
    places: list[Place] = []
    ids: dict[str, int] = {}
    stations = {r[0] for r in rows if not r[4] and r[5] in ("", "0", "1")}
    for stop_id, name, lat, lon, parent, kind in rows:
        if (parent and parent in stations) or kind not in ("", "0", "1"):
            continue  # a quay (placed below), an entrance or a node
        # a stop place, a stop without parent, or one whose parent stops.txt lacks: a place of its own
        ids[stop_id] = len(places)
        places.append(Place(len(places), stop_id, name or stop_id, lat, lon))
    for stop_id, _name, _lat, _lon, parent, kind in rows:
        if parent and kind in ("", "0") and parent in ids:
            ids[stop_id] = ids[parent]
    return places, ids


def _routes(archive: zipfile.ZipFile) -> dict[str, _Route]:
    member = Member(archive, "routes.txt", ("route_id", "route_type"))
    i_id, i_type, i_agency = member.index("route_id"), member.index("route_type"), member.index("agency_id")
    i_short, i_long = member.index("route_short_name"), member.index("route_long_name")
    routes: dict[str, _Route] = {}
    for _, row in member.rows():
        route = cell(row, i_id)
        kind = cell(row, i_type)
        mode = mode_of_route_type(int(kind)) if kind.isdigit() and len(kind) < 6 else None
        line = cell(row, i_short) or cell(row, i_long) or route.rpartition(":")[2]
        routes[route] = _Route(line, mode or "rail", codespace(route) or cell(row, i_agency))
    return routes


def _trip_rows(archive: zipfile.ZipFile) -> dict[str, tuple[str, str, str]]:
    member = Member(archive, "trips.txt", ("route_id", "service_id", "trip_id"))
    i_route, i_service, i_trip = member.index("route_id"), member.index("service_id"), member.index("trip_id")
    i_headsign = member.index("trip_headsign")
    return {
        cell(row, i_trip): (cell(row, i_route), cell(row, i_service), cell(row, i_headsign))
        for _, row in member.rows()
    }


_Call = tuple[int, int, int, int, str, bool, bool]
"""sequence, place, arrival, departure, quay, boarding, alighting"""


def _stop_times(
    archive: zipfile.ZipFile, known: set[str], ids: dict[str, int], rejected: list[Rejected]
) -> dict[str, list[_Call]]:
    member = Member(
        archive, "stop_times.txt", ("trip_id", "stop_id", "stop_sequence", "arrival_time", "departure_time")
    )
    i_trip, i_stop, i_seq = member.index("trip_id"), member.index("stop_id"), member.index("stop_sequence")
    i_arr, i_dep = member.index("arrival_time"), member.index("departure_time")
    i_pick, i_drop = member.index("pickup_type"), member.index("drop_off_type")
    calls: dict[str, list[_Call]] = {}
    for line, row in member.rows():
        trip, stop = cell(row, i_trip), cell(row, i_stop)
        if trip not in known:
            rejected.append(member.reject("unknown-trip", line, row, f"trips.txt has no trip {trip}"))
            continue
        place = ids.get(stop)
        if place is None:
            rejected.append(member.reject("bad-stop", line, row, f"stops.txt has no stop {stop}"))
            continue
        try:
            sequence = int(cell(row, i_seq))
            arrival = parse_gtfs_time(cell(row, i_arr))
            departure = parse_gtfs_time(cell(row, i_dep))
        except ValueError as exc:
            rejected.append(member.reject("bad-stop-time", line, row, str(exc)))
            continue
        times = [t for t in (arrival, departure) if t is not None]
        if not times:
            problem = "no time (interpolated stops are not read)"
            rejected.append(member.reject("bad-stop-time", line, row, problem))
            continue
        boarding, alighting = cell(row, i_pick) != "1", cell(row, i_drop) != "1"
        calls.setdefault(trip, []).append((sequence, place, times[0], times[-1], stop, boarding, alighting))
    return calls


def _trip(
    index: int, trip_id: str, service: str, route: _Route, headsign: str, rows: list[_Call]
) -> Trip | None:
    previous = -1
    for _, _, arrival, departure, _, _, _ in rows:
        if arrival < previous or departure < arrival:
            return None
        previous = departure
    return Trip(
        index=index,
        id=trip_id,
        service=service,
        line=route.line,
        mode=route.mode,
        operator=codespace(trip_id) or route.operator,
        headsign=headsign,
        places=tuple(r[1] for r in rows),
        quays=tuple(r[4] for r in rows),
        arrivals=tuple(r[2] for r in rows),
        departures=tuple(r[3] for r in rows),
        boarding=tuple(r[5] for r in rows),
        alighting=tuple(r[6] for r in rows),
    )


def _bounds(calendar: ServiceCalendar) -> tuple[date, date] | None:
    """The first and the last day a service runs, or ``None``: found from the ends of its weekly
    pattern inwards, never by walking every day between (a feed may run it to 9999-12-31)."""
    days = {day for day in calendar.added if calendar.runs_on(day)}
    start, end = calendar.start, calendar.end
    if start is not None and end is not None and calendar.weekdays:
        days.update(d for d in (_running(calendar, start, end, 1), _running(calendar, end, start, -1)) if d)
    return (min(days), max(days)) if days else None


def _running(calendar: ServiceCalendar, day: date, last: date, step: int) -> date | None:
    """The first day from ``day`` towards ``last`` (``step`` 1 or -1) that the weekly pattern runs:
    a few steps, but for the days its exceptions remove."""
    while True:
        if calendar.runs_on(day):
            return day
        if day == last:
            return None
        day += timedelta(days=step)
