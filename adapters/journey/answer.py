"""Journeys found, written as the :class:`~contracts.JourneyPlan` a traveller reads.

Every leg says how its times are known: a ride's from the ``timetable``, or ``live`` where a live
call (or a delay carried from one) moved them; walks and bike rides are ``estimated``
(:mod:`adapters.journey.moving`). A bike ride is three legs: the walk to the rack, the ride, the
walk from the rack (walks shorter than a metre are left out).
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from adapters.journey.feed import Feed
from adapters.journey.moving import walk_seconds
from adapters.journey.places import Endpoint
from adapters.journey.racks import Racks
from adapters.journey.raptor import Found, Move, Ride
from contracts import GeoPoint, Journey, JourneyLeg, JourneyPlan, JourneyRequest, JourneyStatus, PlaceRef

__all__ = ["plan_of", "refusal"]


_STOP_PLACE = re.compile(r"^[A-Z]{3}:StopPlace:[0-9]+$")
"""What :attr:`PlaceRef.stop_place` may hold: a NeTEx stop place id (a feed's other ids are left out)."""


def _point(lat: float, lon: float) -> GeoPoint | None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None  # stops.txt had no usable coordinate for it
    return GeoPoint(coordinates=(round(lon, 6), round(lat, 6)))


def _ref(feed: Feed, place: int | None, endpoint: Endpoint) -> PlaceRef:
    if place is None:
        return PlaceRef(name=endpoint.name, location=_point(endpoint.point.lat, endpoint.point.lon))
    where = feed.places[place]
    ident = where.id if _STOP_PLACE.match(where.id) else None
    return PlaceRef(name=where.name, stop_place=ident, location=_point(where.lat, where.lon))


def _endpoint_ref(feed: Feed, endpoint: Endpoint) -> PlaceRef:
    return _ref(feed, endpoint.place, endpoint)


class _Writer:
    def __init__(self, feed: Feed, origin: Endpoint, destination: Endpoint, racks: Racks) -> None:
        self.feed, self.origin, self.destination, self.racks = feed, origin, destination, racks

    def place(self, place: int | None, start: bool) -> PlaceRef:
        return _ref(self.feed, place, self.origin if start else self.destination)

    def rack(self, rack_id: str) -> PlaceRef:
        rack = self.racks.racks.get(rack_id)
        if rack is None:
            return PlaceRef(name=f"bike rack {rack_id}", bike_station=rack_id)
        return PlaceRef(name=rack.name, bike_station=rack.id, location=_point(rack.point.lat, rack.point.lon))

    def ride(self, ride: Ride) -> JourneyLeg:
        run, feed = ride.run, self.feed
        trip = run.trip
        origin = feed.origin(run.service_date)
        aimed_departure = origin + trip.departures[ride.board]
        aimed_arrival = origin + trip.arrivals[ride.alight]
        live = run.live[ride.board] or run.live[ride.alight]
        departure, arrival = run.departures[ride.board], run.arrivals[ride.alight]
        return JourneyLeg(
            mode=trip.mode,  # type: ignore[arg-type]  # a TransportMode from mode_of_route_type
            origin=_ref(feed, trip.places[ride.board], self.origin),
            destination=_ref(feed, trip.places[ride.alight], self.destination),
            departure=feed.instant(departure),
            arrival=feed.instant(arrival),
            known="live" if live else "timetable",
            aimed_departure=feed.instant(aimed_departure),
            aimed_arrival=feed.instant(aimed_arrival),
            delay_seconds=arrival - aimed_arrival if live else None,
            line=trip.line,
            service_journey=trip.id,
            headsign=trip.headsign or None,
            operator=trip.operator or None,
            stops=ride.alight - ride.board - 1,
        )

    def move(self, move: Move, start: int) -> list[JourneyLeg]:
        # a move from no place starts at the request's origin, one to no place ends at its destination
        source, target = self.place(move.source, True), self.place(move.target, False)
        if move.kind == "walk" or move.via is None:
            return [self._leg("walk", source, target, start, start + move.seconds, move.metres)]
        lend, take = self.rack(move.via[0]), self.rack(move.via[1])
        legs: list[JourneyLeg] = []
        t = start
        if move.walk_before >= 1:
            legs.append(
                self._leg("walk", source, lend, t, t + walk_seconds(move.walk_before), move.walk_before)
            )
            t += walk_seconds(move.walk_before)
        ride_end = start + move.seconds - walk_seconds(move.walk_after)
        legs.append(self._leg("bike", lend, take, t, ride_end, move.metres))
        if move.walk_after >= 1:
            legs.append(self._leg("walk", take, target, ride_end, start + move.seconds, move.walk_after))
        return legs

    def _leg(
        self, mode: str, source: PlaceRef, target: PlaceRef, start: int, end: int, metres: float
    ) -> JourneyLeg:
        return JourneyLeg(
            mode=mode,  # type: ignore[arg-type]  # walk or bike
            origin=source,
            destination=target,
            departure=self.feed.instant(start),
            arrival=self.feed.instant(end),
            known="estimated",
            distance=round(metres, 1),
        )

    def journey(self, found: Found) -> Journey:
        legs: list[JourneyLeg] = []
        t = found.start
        for leg in found.legs:
            if isinstance(leg, Ride):
                legs.append(self.ride(leg))
                t = leg.run.arrivals[leg.alight]
            else:
                legs.extend(self.move(leg, t))
                t += leg.seconds
        return Journey(
            departure=self.feed.instant(found.start),
            arrival=self.feed.instant(found.arrival),
            changes=found.changes,
            duration=found.arrival - found.start,
            legs=legs,
        )


def _summary(feed: Feed, journey: Journey, origin: Endpoint, destination: Endpoint) -> str:
    def clock(moment: datetime) -> str:
        return moment.astimezone(feed.tz).strftime("%H:%M")

    changes = {0: "no changes", 1: "1 change"}.get(journey.changes, f"{journey.changes} changes")
    lines = [leg.line for leg in journey.legs if leg.line]
    via = f" ({', '.join(lines)})" if lines else ""
    return (
        f"{origin.name} {clock(journey.departure)} → {destination.name} {clock(journey.arrival)}, "
        f"{changes}{via}"
    )


def plan_of(
    request: JourneyRequest,
    feed: Feed,
    origin: Endpoint,
    destination: Endpoint,
    found: list[Found],
    racks: Racks,
) -> JourneyPlan:
    """The plan of the journeys found (fastest first)."""
    writer = _Writer(feed, origin, destination, racks)
    journeys = [writer.journey(f) for f in found]
    first = journeys[0]
    return JourneyPlan(
        request_id=request.request_id,
        status="ok",
        message=_summary(feed, first, origin, destination),
        origin=_endpoint_ref(feed, origin),
        destination=_endpoint_ref(feed, destination),
        departure=first.departure,
        arrival=first.arrival,
        journeys=journeys,
        valid_from=feed.valid_from.isoformat(),
        valid_to=feed.valid_to.isoformat(),
    )


def refusal(
    request: JourneyRequest,
    feed: Feed,
    status: JourneyStatus,
    message: str,
    *,
    suggestions: list[str] | None = None,
    origin: Endpoint | None = None,
    destination: Endpoint | None = None,
    latest: datetime | None = None,
) -> JourneyPlan:
    """A plan with no journey: its status and the one line that says what to change."""
    return JourneyPlan(
        request_id=request.request_id,
        status=status,
        message=message,
        origin=None if origin is None else _endpoint_ref(feed, origin),
        destination=None if destination is None else _endpoint_ref(feed, destination),
        suggestions=suggestions or [],
        latest_departure=latest,
        valid_from=feed.valid_from.isoformat(),
        valid_to=feed.valid_to.isoformat(),
    )
