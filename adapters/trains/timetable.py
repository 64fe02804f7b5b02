"""The timetable the adapter keeps between GTFS documents: the configured stop places, the planned
calls at their quays, and the calendars that say on which days each call is made.

It is what :mod:`adapters.trains.gtfs` reads out of a GTFS zip, reduced to the few stop places the
adapter serves, so that it stays small however large the feed is (Entur's national feed holds
millions of stop times; Drammen's five stations see about 500 calls a day). From it the adapter
takes the scheduled calls of any service date — again at midnight, without reading the zip again —
and the planned call a real-time SIRI call belongs to.

Times are kept as GTFS keeps them, seconds from "noon minus 12 h" of the service date in the
agency's time zone (they pass 24:00:00 for a train that runs past midnight), and are turned into
aware datetimes only for a given date, by :func:`gtfs_moment`. Noon minus 12 h is midnight on every
day but the two a year when the clocks change: on 2018-10-28 it is 01:00 summer time, so the L13
timetabled ``00:05:00`` that day leaves Drammen at 01:05 summer time, and a call at ``02:00:00`` is
at 02:00 winter time. Doing the sum in UTC, as here, follows the GTFS reference on both days;
wall-clock arithmetic on a zoneinfo datetime would not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from typing import Final
from zoneinfo import ZoneInfo

from contracts import StopPlace, TrainCall
from contracts.mobility import TransportMode

__all__ = [
    "PlannedCall",
    "ServiceCalendar",
    "Timetable",
    "codespace",
    "gtfs_moment",
    "mode_of_route_type",
    "service_day_start",
]

_TWELVE_HOURS: Final = timedelta(hours=12)
_CODESPACE: Final = re.compile(r"([A-Z]{3}):")

# GTFS's basic route types, then the hundreds of the extended (HVT) route types Entur publishes.
_BASIC_MODES: Final[dict[int, TransportMode]] = {
    0: "tram",
    1: "metro",
    2: "rail",
    3: "bus",
    4: "water",
    5: "tram",  # cable tram
    6: "cableway",  # aerial lift
    7: "funicular",
    11: "bus",  # trolleybus
    12: "rail",  # monorail
}
_EXTENDED_MODES: Final[dict[int, TransportMode]] = {
    1: "rail",  # 100 railway
    2: "coach",  # 200 coach
    3: "rail",  # 300 suburban railway
    4: "metro",  # 400 urban railway (401 metro, 402 underground)
    5: "metro",  # 500 metro
    6: "metro",  # 600 underground
    7: "bus",  # 700 bus (714 is a rail replacement bus)
    8: "bus",  # 800 trolleybus
    9: "tram",  # 900 tram
    10: "water",  # 1000 water transport
    11: "air",  # 1100 air
    12: "water",  # 1200 ferry
    13: "cableway",  # 1300 aerial lift
    14: "funicular",  # 1400 funicular
}


def codespace(identifier: str | None) -> str | None:
    """The NeTEx codespace an Entur id starts with (``NSB`` in ``NSB:ServiceJourney:1-1821-311``):
    the operator's code. ``None`` for an id without one (``3718:2018-08-28``)."""
    found = _CODESPACE.match(identifier or "")
    return found.group(1) if found else None


def mode_of_route_type(route_type: int) -> TransportMode | None:
    """The transport mode of a GTFS ``route_type``, basic (0–12) or extended (100–1499); ``None`` for
    taxis, self drive and other types a traveller does not board at a stop place."""
    if route_type < 100:
        return _BASIC_MODES.get(route_type)
    return _EXTENDED_MODES.get(route_type // 100)


def service_day_start(service_date: date, timezone: ZoneInfo) -> datetime:
    """The instant GTFS counts a service date's times from: noon minus 12 h, in ``timezone``."""
    noon = datetime.combine(service_date, time(12), tzinfo=timezone)
    return (noon.astimezone(UTC) - _TWELVE_HOURS).astimezone(timezone)


def gtfs_moment(service_date: date, seconds: int, timezone: ZoneInfo) -> datetime:
    """The aware datetime of a GTFS time (``seconds`` after noon minus 12 h) on a service date, with
    the UTC offset in force then (``+02:00`` in summer).

    The offset is fixed rather than the zone, as a message on the bus carries it: a zoneinfo
    datetime in the hour that repeats when the clocks go back never compares equal to one of
    another zone (PEP 495), so 02:00 CET would not equal the same instant decoded from a message.
    """
    start = service_day_start(service_date, timezone).astimezone(UTC)
    local = (start + timedelta(seconds=seconds)).astimezone(timezone)
    offset = local.utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return local.replace(tzinfo=dt_timezone(offset), fold=0)


@dataclass(frozen=True, slots=True)
class ServiceCalendar:
    """The days a GTFS ``service_id`` runs: ``calendar.txt``'s weekly pattern, then
    ``calendar_dates.txt``'s exceptions (1 adds a date, 2 removes one)."""

    weekdays: frozenset[int] = frozenset()
    """The days of the week of the weekly pattern, Monday = 0."""
    start: date | None = None
    """The first day of the weekly pattern (``None``: the service has no ``calendar.txt`` row)."""
    end: date | None = None
    """The last day of the weekly pattern."""
    added: frozenset[date] = frozenset()
    """Dates added by ``exception_type`` 1."""
    removed: frozenset[date] = frozenset()
    """Dates removed by ``exception_type`` 2."""

    def runs_on(self, day: date) -> bool:
        """Whether the service runs on the service date ``day``."""
        if day in self.removed:
            return False
        if day in self.added:
            return True
        if self.start is None or self.end is None:
            return False
        return self.start <= day <= self.end and day.weekday() in self.weekdays


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One ``stop_times.txt`` row at a configured stop place, with what its trip and route say."""

    service_journey: str
    """The GTFS ``trip_id``; Entur's are NeTEx service journeys, e.g. NSB:ServiceJourney:1-1821-311."""
    service_id: str
    """The trip's ``service_id``: the days it runs (see :class:`ServiceCalendar`)."""
    line: str
    """The route's public code (``route_short_name``, e.g. R10)."""
    operator: str
    """The operator's code (the ids' codespace, e.g. NSB) or the agency's name."""
    stop_place: str
    """The quay's parent stop place, e.g. NSR:StopPlace:11."""
    quay: str
    """The ``stop_id``, e.g. NSR:Quay:22."""
    stop_name: str
    """The stop place's name, e.g. Drammen stasjon."""
    sequence: int
    """The ``stop_sequence``."""
    arrival: int | None
    """Seconds after noon minus 12 h; ``None`` at the trip's first stop (or when not timetabled)."""
    departure: int | None
    """Seconds after noon minus 12 h; ``None`` at the trip's last stop (or when not timetabled)."""
    platform: str | None
    """The quay's ``platform_code``."""
    destination: str | None
    """The ``stop_headsign``, else the ``trip_headsign``."""
    timezone: ZoneInfo
    """The agency's time zone, which the times count in."""

    def on(self, service_date: date) -> TrainCall:
        """The scheduled call this row makes on ``service_date`` (whether the trip runs that day is
        :meth:`Timetable.calls_on`'s business)."""
        return TrainCall(
            service_journey=self.service_journey,
            line=self.line,
            operator=self.operator,
            stop_place=self.stop_place,
            quay=self.quay,
            stop_name=self.stop_name,
            sequence=self.sequence,
            aimed_arrival=self._at(service_date, self.arrival),
            aimed_departure=self._at(service_date, self.departure),
            platform=self.platform,
            status="scheduled",
            destination=self.destination,
        )

    def _at(self, service_date: date, seconds: int | None) -> datetime | None:
        return None if seconds is None else gtfs_moment(service_date, seconds, self.timezone)


@dataclass(frozen=True, slots=True)
class Timetable:
    """The configured stop places and their planned calls, as read from one GTFS document."""

    stop_places: Mapping[str, StopPlace]
    """The configured stop places found in ``stops.txt``, by id, with their quays and modes."""
    quays: Mapping[str, str]
    """Each quay of those stop places → its stop place: the area a SIRI call must be in."""
    calls: tuple[PlannedCall, ...]
    """The planned calls at those quays, on any day."""
    services: Mapping[str, ServiceCalendar]
    """The calendars of the calls' services."""
    _by_journey: dict[str, list[PlannedCall]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_journey: dict[str, list[PlannedCall]] = {}
        for call in self.calls:
            by_journey.setdefault(call.service_journey, []).append(call)
        object.__setattr__(self, "_by_journey", by_journey)

    def runs_on(self, service_id: str, day: date) -> bool:
        """Whether ``service_id`` runs on the service date ``day`` (an unknown service never runs)."""
        calendar = self.services.get(service_id)
        return calendar is not None and calendar.runs_on(day)

    def calls_on(self, service_date: date) -> list[TrainCall]:
        """The scheduled calls of ``service_date`` at the configured stop places, in time order."""
        calls = [c.on(service_date) for c in self.calls if self.runs_on(c.service_id, service_date)]
        calls.sort(key=lambda c: (_when(c), c.stop_place, c.service_journey, c.sequence))
        return calls

    def planned(
        self,
        service_journey: str,
        stop_place: str,
        *,
        aimed: Iterable[datetime | None] = (),
        order: int | None = None,
    ) -> TrainCall | None:
        """The scheduled call that a real-time call of ``service_journey`` at ``stop_place`` stands
        for, on the service date it runs, or ``None`` if the timetable has none.

        A trip id names a trip on every day it runs, and a trip may call at one stop place twice
        (a loop), so the real-time call's ``aimed`` times pick the day and the call: the service
        date is the day of an aimed time or the day before (a train past midnight), and the
        candidate whose aimed times are closest wins; ``order`` (SIRI's position in the journey)
        breaks a tie against ``stop_sequence``.
        """
        candidates = [c for c in self._by_journey.get(service_journey, ()) if c.stop_place == stop_place]
        times = [t for t in aimed if t is not None]
        if not candidates or not times:
            return None
        best: tuple[float, int, TrainCall] | None = None
        for call in candidates:
            for scheduled in _around(call, times[0], self.services.get(call.service_id)):
                planned_times = [
                    t for t in (scheduled.aimed_arrival, scheduled.aimed_departure) if t is not None
                ]
                if not planned_times:
                    continue
                distance = min(abs((p - t).total_seconds()) for p in planned_times for t in times)
                tie = 0 if order is None or order in (call.sequence, call.sequence + 1) else 1
                if best is None or (distance, tie) < (best[0], best[1]):
                    best = (distance, tie, scheduled)
        # a planned call more than half a day away from the real-time one is another day's train
        return best[2] if best is not None and best[0] < _TWELVE_HOURS.total_seconds() else None


def _around(call: PlannedCall, moment: datetime, calendar: ServiceCalendar | None) -> list[TrainCall]:
    """The scheduled calls ``call`` makes on the days around ``moment`` that its service runs."""
    if calendar is None:
        return []
    try:
        local = moment.astimezone(call.timezone).date()
        days = [local + timedelta(days=n) for n in (-1, 0, 1)]
        return [call.on(day) for day in days if calendar.runs_on(day)]
    except (OverflowError, ValueError):  # a time at the very edge of the calendar: no train then
        return []


def _when(call: TrainCall) -> datetime:
    moment = call.aimed_departure or call.aimed_arrival
    return moment if moment is not None else datetime.max.replace(tzinfo=UTC)
