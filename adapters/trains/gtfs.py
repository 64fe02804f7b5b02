"""Static GTFS, as Entur publishes it, read into the :class:`~adapters.trains.timetable.Timetable` of a
few stop places.

A GTFS feed is a zip of CSV files. Entur's follow its NeTEx ids: ``stops.txt`` holds the stop
places (``location_type`` 1, ``NSR:StopPlace:11``) and their quays (``location_type`` 0 with a
``parent_station``, ``NSR:Quay:22``, whose ``platform_code`` is the platform travellers see), and a
``vehicle_type`` column of its own; ``routes.txt`` holds the lines (``route_short_name`` R10, L13;
extended ``route_type``\\ s such as 102 long-distance rail and 714 rail replacement bus);
``trips.txt`` the service journeys (``trip_id`` NSB:ServiceJourney:1-1821-311) with their headsign;
``stop_times.txt`` each journey's calls; ``calendar.txt`` (if any) and ``calendar_dates.txt`` the
days; ``agency.txt`` the time zone the times count in (Europe/Oslo).

Decisions, and why:

* **Streamed, filtered early.** Each member is read with :mod:`csv` straight out of
  :mod:`zipfile`, never unpacked whole. ``stops.txt`` is read first, so ``stop_times.txt`` — the
  big one (millions of rows in the national feed) — keeps only the rows at the wanted quays; then
  only their trips, routes and services are kept from the other members. Memory grows with the
  area, not the feed.
* **First and last stop.** A call at a trip's first stop has no arrival and at its last no
  departure (GTFS repeats the time in both columns). That needs each trip's lowest and highest
  ``stop_sequence``, which is known only after all its rows. Feeds list a trip's rows together,
  so the pass tracks the bounds of the current run of rows; if a trip's rows turn out to be
  scattered (a trip id seen again after other trips), a second pass over ``stop_times.txt``
  computes the bounds of the wanted trips, so the result does not depend on the row order.
* **Operator**: the codespace of the ids (``NSB`` in ``NSB:ServiceJourney:…``), Entur's operator
  code and what its SIRI ``OperatorRef`` says; the agency's name when the ids have none.
* **Modes of a stop place**: those of the routes that call at its quays, and of Entur's
  ``vehicle_type`` column where present (so a stop place keeps its mode on a day nothing calls).
* **What fails**: a zip that does not open (``not-zip``), a missing required member
  (``gtfs-missing-member``, naming it) or column (``gtfs-missing-column``), a member that is not
  UTF-8 CSV or does not decompress (``gtfs-unreadable``), no agency or an unknown time zone
  (``gtfs-no-agency``, ``gtfs-bad-timezone``) make the whole document unusable. A bad row at a wanted
  stop place — a time like ``7:6O`` (``bad-stop-time``), a stop time of a trip ``trips.txt`` does not
  have (``unknown-trip``) or of a route ``routes.txt`` does not have (``unknown-route``), a bad stop
  or calendar row (``bad-stop``, ``bad-calendar``), a value the contract does not allow
  (``out-of-range``) — is a :class:`~adapters.records.Rejected` record; the rest is used.
"""

from __future__ import annotations

import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from typing import Final

import msgspec

from adapters.records import Rejected
from adapters.trains.gtfs_members import (
    REQUIRED_MEMBERS,
    Member,
    cell,
    open_gtfs,
    read_agencies,
    read_calendars,
)
from adapters.trains.timetable import PlannedCall, Timetable, codespace, mode_of_route_type
from contracts import StopPlace, validate
from contracts.fields import GeoPoint
from contracts.mobility import Quay, TransportMode

__all__ = ["REQUIRED_MEMBERS", "GtfsResult", "parse_gtfs", "parse_gtfs_time"]

_CHECK_DATE: Final = date(2018, 8, 28)  # any date: a call's constraints do not depend on it


@dataclass(frozen=True, slots=True)
class GtfsResult:
    """What a GTFS document gave: the timetable, the records it could not use, and which configured
    stop places ``stops.txt`` does not have."""

    timetable: Timetable
    rejected: list[Rejected] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Configured stop places that are not in ``stops.txt`` (a typo, or a feed of other operators)."""


def parse_gtfs_time(text: str) -> int | None:
    """Seconds of a GTFS time ``H:MM:SS`` (hours may pass 24); ``None`` if empty; ``ValueError`` if bad."""
    text = text.strip()
    if not text:
        return None
    parts = text.split(":")
    if (
        len(parts) != 3
        or not all(p.isascii() and p.isdigit() for p in parts)
        or len(parts[1]) != 2
        or len(parts[2]) != 2
        or len(parts[0]) > 3
    ):
        raise ValueError(f"{text!r} is not a GTFS time H:MM:SS")
    hours, minutes, seconds = (int(p) for p in parts)
    if minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} is not a GTFS time: minutes and seconds go to 59")
    return hours * 3600 + minutes * 60 + seconds


def _whole(text: str) -> int | None:
    """A non-negative whole number of at most nine digits, else ``None`` (no 5 000-digit ints)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


# -- the members, one by one ----------------------------------------------------------------------


@dataclass
class _Stops:
    names: dict[str, str] = field(default_factory=dict)
    """Stop place id → name."""
    locations: dict[str, GeoPoint] = field(default_factory=dict)
    modes: dict[str, set[TransportMode]] = field(default_factory=dict)
    quays: dict[str, str] = field(default_factory=dict)
    """Quay id → stop place id."""
    quay_rows: dict[str, Quay] = field(default_factory=dict)


def _stops(archive: zipfile.ZipFile, wanted: Collection[str], rejected: list[Rejected]) -> _Stops:
    member = Member(archive, "stops.txt", ("stop_id",))
    i_id, i_name, i_lat, i_lon = (member.index(c) for c in ("stop_id", "stop_name", "stop_lat", "stop_lon"))
    i_type, i_parent = member.index("location_type"), member.index("parent_station")
    i_platform, i_vehicle = member.index("platform_code"), member.index("vehicle_type")
    stops = _Stops()
    for line, row in member.rows():
        stop_id, parent = cell(row, i_id), cell(row, i_parent)
        kind = cell(row, i_type) or "0"
        is_place = stop_id in wanted and kind == "1"
        is_quay = parent in wanted and kind == "0"
        if not (is_place or is_quay):
            continue
        try:
            location = GeoPoint.at(float(cell(row, i_lat)), float(cell(row, i_lon)))
        except ValueError:
            lat, lon = cell(row, i_lat), cell(row, i_lon)
            problem = f"stop {stop_id}: stop_lat {lat!r} and stop_lon {lon!r} must be numbers"
            rejected.append(member.reject("bad-stop", line, row, problem))
            continue
        if is_place:
            stops.names[stop_id] = cell(row, i_name)
            stops.locations[stop_id] = location
            modes = stops.modes.setdefault(stop_id, set())
            vehicle = cell(row, i_vehicle)
            vehicle_type = _whole(vehicle)
            mode = mode_of_route_type(vehicle_type) if vehicle_type is not None else None
            if mode is not None:
                modes.add(mode)
            continue
        quay = Quay(id=stop_id, public_code=cell(row, i_platform) or None, location=location)
        try:
            stops.quay_rows[stop_id] = validate(quay)
        except msgspec.ValidationError as exc:
            rejected.append(member.reject("out-of-range", line, row, f"quay {stop_id}: {exc}"))
            continue
        stops.quays[stop_id] = parent
    return stops


@dataclass(slots=True)
class _StopTime:
    line: int
    row: list[str]
    trip: str
    quay: str
    sequence: int
    arrival: int | None
    departure: int | None
    headsign: str


def _stop_times(
    archive: zipfile.ZipFile, quays: Collection[str], rejected: list[Rejected]
) -> tuple[list[_StopTime], dict[str, tuple[int, int]], Member]:
    """The rows at ``quays``, and the lowest and highest ``stop_sequence`` of their trips."""
    columns = ("trip_id", "stop_id", "stop_sequence", "arrival_time", "departure_time")
    member = Member(archive, "stop_times.txt", columns)
    i_trip, i_stop, i_seq, i_arr, i_dep = (member.index(c) for c in columns)
    i_headsign = member.index("stop_headsign")
    found: list[_StopTime] = []
    bounds: dict[str, tuple[int, int]] = {}
    finished: set[int] = set()  # hashes of trips whose run of rows ended; a collision costs a pass
    scattered = False
    run_trip: str | None = None
    run: tuple[int, int] | None = None  # the lowest and highest stop_sequence of the current run
    run_wanted = False
    for line, row in member.rows():
        trip = cell(row, i_trip)
        sequence_text = cell(row, i_seq)
        sequence = _whole(sequence_text)
        if trip != run_trip:
            if run_trip is not None:
                if run_wanted and run is not None:
                    bounds[run_trip] = _widen(bounds.get(run_trip), run)
                finished.add(hash(run_trip))
            if hash(trip) in finished:
                scattered = True
            run_trip, run_wanted, run = trip, False, None
        if sequence is not None:
            run = _widen(run, (sequence, sequence))
        quay = cell(row, i_stop)
        if quay not in quays:
            continue
        if sequence is None:
            problem = f"trip {trip} at {quay}: stop_sequence {sequence_text!r} is not a whole number"
            rejected.append(member.reject("bad-stop-time", line, row, problem))
            continue
        try:
            arrival = parse_gtfs_time(cell(row, i_arr))
            departure = parse_gtfs_time(cell(row, i_dep))
        except ValueError as exc:
            rejected.append(member.reject("bad-stop-time", line, row, f"trip {trip} at {quay}: {exc}"))
            continue
        run_wanted = True
        found.append(_StopTime(line, row, trip, quay, sequence, arrival, departure, cell(row, i_headsign)))
    if run_trip is not None and run_wanted and run is not None:
        bounds[run_trip] = _widen(bounds.get(run_trip), run)
    if scattered:
        bounds = _bounds(archive, {s.trip for s in found})
    return found, bounds, member


def _widen(bounds: tuple[int, int] | None, more: tuple[int, int]) -> tuple[int, int]:
    return more if bounds is None else (min(bounds[0], more[0]), max(bounds[1], more[1]))


def _bounds(archive: zipfile.ZipFile, trips: set[str]) -> dict[str, tuple[int, int]]:
    """The second pass, for a feed whose trips' rows are scattered: the bounds of ``trips`` only."""
    member = Member(archive, "stop_times.txt", ("trip_id", "stop_sequence"))
    i_trip, i_seq = member.index("trip_id"), member.index("stop_sequence")
    bounds: dict[str, tuple[int, int]] = {}
    for _, row in member.rows():
        trip, text = cell(row, i_trip), cell(row, i_seq)
        sequence = _whole(text)
        if trip in trips and sequence is not None:
            bounds[trip] = _widen(bounds.get(trip), (sequence, sequence))
    return bounds


@dataclass(slots=True)
class _Trip:
    route: str
    service: str
    headsign: str


def _trips(archive: zipfile.ZipFile, wanted: Collection[str]) -> dict[str, _Trip]:
    member = Member(archive, "trips.txt", ("route_id", "service_id", "trip_id"))
    i_route, i_service, i_trip = member.index("route_id"), member.index("service_id"), member.index("trip_id")
    i_headsign = member.index("trip_headsign")
    trips: dict[str, _Trip] = {}
    for _, row in member.rows():
        trip = cell(row, i_trip)
        if trip in wanted:
            trips[trip] = _Trip(cell(row, i_route), cell(row, i_service), cell(row, i_headsign))
    return trips


@dataclass(slots=True)
class _Route:
    line: str
    mode: TransportMode | None
    agency: str


def _routes(archive: zipfile.ZipFile, wanted: Collection[str]) -> dict[str, _Route]:
    member = Member(archive, "routes.txt", ("route_id", "route_type"))
    i_id, i_type, i_agency = member.index("route_id"), member.index("route_type"), member.index("agency_id")
    i_short, i_long = member.index("route_short_name"), member.index("route_long_name")
    routes: dict[str, _Route] = {}
    for _, row in member.rows():
        route = cell(row, i_id)
        if route not in wanted:
            continue
        kind = cell(row, i_type)
        route_type = _whole(kind)
        mode = mode_of_route_type(route_type) if route_type is not None else None
        line = cell(row, i_short) or cell(row, i_long) or route.rpartition(":")[2]
        routes[route] = _Route(line, mode, cell(row, i_agency))
    return routes


# -- putting it together --------------------------------------------------------------------------


def parse_gtfs(body: bytes, stop_places: Collection[str]) -> GtfsResult:
    """Read a GTFS zip into the timetable of ``stop_places`` (``NSR:StopPlace:…`` ids).

    Pure and blocking (run it in a thread for a large feed). Raises
    :class:`~adapters.polling.SourceFormatError` for a document that cannot be used at all.
    """
    wanted = frozenset(stop_places)
    rejected: list[Rejected] = []
    with open_gtfs(body) as archive:
        agencies = read_agencies(archive)
        stops = _stops(archive, wanted, rejected)
        stop_times, bounds, times_member = _stop_times(archive, stops.quays.keys(), rejected)
        trips = _trips(archive, {s.trip for s in stop_times})
        routes = _routes(archive, {t.route for t in trips.values()})
        calendars = read_calendars(archive, {t.service for t in trips.values()}, rejected)
    default_agency = next(iter(agencies.values()))
    calls: list[PlannedCall] = []
    for stop_time in stop_times:
        where = f"trip {stop_time.trip} at {stop_time.quay}"
        trip = trips.get(stop_time.trip)
        if trip is None:
            problem = f"{where}: trips.txt has no trip {stop_time.trip}"
            rejected.append(times_member.reject("unknown-trip", stop_time.line, stop_time.row, problem))
            continue
        route = routes.get(trip.route)
        if route is None:
            problem = f"{where}: routes.txt has no route {trip.route}"
            rejected.append(times_member.reject("unknown-route", stop_time.line, stop_time.row, problem))
            continue
        agency = agencies.get(route.agency, default_agency)
        stop_place = stops.quays[stop_time.quay]
        # every trip of a wanted row has bounds; the default makes a call neither first nor last
        low, high = bounds.get(stop_time.trip, (stop_time.sequence - 1, stop_time.sequence + 1))
        call = PlannedCall(
            service_journey=stop_time.trip,
            service_id=trip.service,
            line=route.line,
            operator=codespace(stop_time.trip) or agency.name or route.agency,
            stop_place=stop_place,
            quay=stop_time.quay,
            stop_name=stops.names.get(stop_place, ""),
            sequence=stop_time.sequence,
            arrival=None if stop_time.sequence <= low else stop_time.arrival,
            departure=None if stop_time.sequence >= high else stop_time.departure,
            platform=stops.quay_rows[stop_time.quay].public_code,
            destination=stop_time.headsign or trip.headsign or None,
            timezone=agency.timezone,
        )
        try:
            validate(call.on(_CHECK_DATE))
        except msgspec.ValidationError as exc:
            problem = f"{where}: a value the contract does not allow: {exc}"
            rejected.append(times_member.reject("out-of-range", stop_time.line, stop_time.row, problem))
            continue
        calls.append(call)
        if route.mode is not None:
            stops.modes.setdefault(stop_place, set()).add(route.mode)
    places = _stop_places(stops, rejected)
    timetable = Timetable(stop_places=places, quays=dict(stops.quays), calls=tuple(calls), services=calendars)
    missing = sorted(w for w in wanted if w not in stops.names)
    return GtfsResult(timetable=timetable, rejected=rejected, missing=missing)


def _stop_places(stops: _Stops, rejected: list[Rejected]) -> dict[str, StopPlace]:
    places: dict[str, StopPlace] = {}
    for stop_id, name in stops.names.items():
        quays = sorted(
            (q for q_id, q in stops.quay_rows.items() if stops.quays.get(q_id) == stop_id),
            key=lambda q: (q.public_code or "", q.id),
        )
        place = StopPlace(
            stop_place=stop_id,
            name=name,
            location=stops.locations[stop_id],
            modes=sorted(stops.modes.get(stop_id, ())),
            quays=quays,
        )
        try:
            places[stop_id] = validate(place)
        except msgspec.ValidationError as exc:
            payload = msgspec.json.encode(place)
            rejected.append(Rejected("out-of-range", f"stops.txt: stop place {stop_id}: {exc}", payload))
    return places
