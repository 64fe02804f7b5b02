"""Contracts of journey planning: a traveller asks the best way from A to B, the planner answers.

Both are public and travel by request/reply (``city.public.rpc.mobility.journey-request.<id>``):
a request names two places as a traveller would type them, the answer carries every leg with how
each time is known (from the timetable, live from the trains, or estimated: walking and cycling).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Classification, Contract, contract, measure
from contracts.fields import GeoPoint, Timestamp

__all__ = [
    "Journey",
    "JourneyLeg",
    "JourneyPlan",
    "JourneyRequest",
    "JourneyStatus",
    "LegMode",
    "PlaceRef",
    "TimeKnown",
]

JourneyStatus = Literal["ok", "no-route", "unknown-place", "outside-validity", "bad-request"]
LegMode = Literal[
    "walk", "bike", "rail", "bus", "tram", "metro", "water", "coach", "air", "cableway", "funicular"
]
TimeKnown = Literal["timetable", "live", "estimated"]

_REQUEST_ID = r"^[A-Za-z0-9_-]{1,64}$"


@contract(
    "mobility.journey-request",
    version=1,
    classification=Classification.PUBLIC,
    key="request_id",
    reply="mobility.journey-plan",
    example={
        "request_id": "3f9c2a7e51d04b1c",
        "origin": "drammen",
        "destination": "Oslo S",
        "depart": "2018-08-28T08:00:00+02:00",
    },
)
class JourneyRequest(Contract, frozen=True, kw_only=True):
    """A traveller asks the best way from one place to another, leaving at or arriving by a time.

    Places are given as a traveller types them: a stop place id (``NSR:StopPlace:11``), a stop name
    matched forgivingly (``drammen``, ``Oslo S``) or a coordinate ``LAT,LON``. With neither
    ``depart`` nor ``arrive_by`` the journey leaves now.
    """

    request_id: Annotated[
        str, Meta(pattern=_REQUEST_ID, description="The requester's id for this request, echoed in the plan")
    ]
    origin: Annotated[str, Meta(min_length=1, max_length=200, description="Where the journey starts")]
    destination: Annotated[str, Meta(min_length=1, max_length=200, description="Where the journey ends")]
    depart: Annotated[Timestamp, Meta(description="Leave at or after this time")] | None = None
    arrive_by: Annotated[Timestamp, Meta(description="Arrive at or before this time")] | None = None
    max_walk: Annotated[
        int,
        measure(
            "Longest walk of any one leg, as the crow flies times the detour factor", unit="m", ge=0, le=5000
        ),
    ] = 1000
    bikes: Annotated[bool, Meta(description="Whether city bikes may be used")] = True
    change: Annotated[
        int, measure("Least time between arriving and departing when changing trips", unit="s", ge=0, le=3600)
    ] = 120
    max_changes: Annotated[
        int, Meta(ge=0, le=10, description="Most changes of vehicle a journey may have")
    ] = 6


class PlaceRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A place a journey or a leg starts or ends at: a stop place, a bike rack or a coordinate."""

    name: Annotated[str, Meta(description="What the place is called, e.g. Drammen stasjon")]
    stop_place: (
        Annotated[str, Meta(pattern=r"^[A-Z]{3}:StopPlace:[0-9]+$", description="The stop place, if one")]
        | None
    ) = None
    bike_station: Annotated[str, Meta(description="The city-bike rack's station_id, if one")] | None = None
    location: Annotated[GeoPoint, Meta(description="Where the place is")] | None = None


class JourneyLeg(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One part of a journey: a ride on one trip, a walk, or a ride on a city bike."""

    mode: Annotated[LegMode, Meta(description="How this leg travels")]
    origin: Annotated[PlaceRef, Meta(description="Where the leg starts")]
    destination: Annotated[PlaceRef, Meta(description="Where the leg ends")]
    departure: Annotated[Timestamp, Meta(description="When the leg starts (expected, if live)")]
    arrival: Annotated[Timestamp, Meta(description="When the leg ends (expected, if live)")]
    known: Annotated[
        TimeKnown,
        Meta(
            description="How the times are known: timetable, live (from the trains), estimated (walk, bike)"
        ),
    ]
    aimed_departure: Annotated[Timestamp, Meta(description="Timetabled departure (rides)")] | None = None
    aimed_arrival: Annotated[Timestamp, Meta(description="Timetabled arrival (rides)")] | None = None
    delay_seconds: Annotated[int, measure("Expected minus timetabled arrival", unit="s")] | None = None
    line: Annotated[str, Meta(description="The line's public code, e.g. R10 (rides)")] | None = None
    service_journey: (
        Annotated[str, Meta(description="The trip, e.g. NSB:ServiceJourney:1-1821-311")] | None
    ) = None
    headsign: Annotated[str, Meta(description="Where the trip is going, as signposted")] | None = None
    operator: Annotated[str, Meta(description="The operator's code, e.g. NSB (rides)")] | None = None
    stops: Annotated[int, Meta(ge=0, description="Stops passed without getting off (rides)")] | None = None
    distance: Annotated[float, measure("Length of a walk or a bike ride", unit="m", ge=0)] | None = None


class Journey(msgspec.Struct, frozen=True, kw_only=True):
    """One way from origin to destination: its legs in order, and when it leaves and arrives."""

    departure: Annotated[Timestamp, Meta(description="When the journey leaves its origin")]
    arrival: Annotated[Timestamp, Meta(description="When the journey reaches its destination")]
    changes: Annotated[int, Meta(ge=0, description="Changes of vehicle (a trip, a bike)")]
    duration: Annotated[int, measure("Arrival minus departure", unit="s", ge=0)]
    legs: Annotated[list[JourneyLeg], Meta(description="The legs, in the order travelled")]


@contract(
    "mobility.journey-plan",
    version=1,
    classification=Classification.PUBLIC,
    key="request_id",
    answers="mobility.journey-request",
    example={
        "request_id": "3f9c2a7e51d04b1c",
        "status": "ok",
        "message": "Drammen stasjon 08:04 → Oslo S 08:40, no changes",
        "origin": {"name": "Drammen stasjon", "stop_place": "NSR:StopPlace:11"},
        "destination": {"name": "Oslo S", "stop_place": "NSR:StopPlace:337"},
        "departure": "2018-08-28T08:04:00+02:00",
        "arrival": "2018-08-28T08:40:00+02:00",
        "journeys": [
            {
                "departure": "2018-08-28T08:04:00+02:00",
                "arrival": "2018-08-28T08:40:00+02:00",
                "changes": 0,
                "duration": 2160,
                "legs": [
                    {
                        "mode": "rail",
                        "origin": {"name": "Drammen stasjon", "stop_place": "NSR:StopPlace:11"},
                        "destination": {"name": "Oslo S", "stop_place": "NSR:StopPlace:337"},
                        "departure": "2018-08-28T08:04:00+02:00",
                        "arrival": "2018-08-28T08:40:00+02:00",
                        "known": "timetable",
                        "line": "R10",
                        "service_journey": "NSB:ServiceJourney:1-1821-311",
                        "headsign": "Lillehammer",
                        "stops": 3,
                    }
                ],
            }
        ],
    },
)
class JourneyPlan(Contract, frozen=True, kw_only=True):
    """The planner's answer to a journey request: the best journeys, or one line saying why none.

    ``journeys`` is the Pareto set of earliest arrival and fewest changes (for ``arrive_by``: of
    latest departure and fewest changes); ``departure`` and ``arrival`` are those of the first,
    the fastest. A request that cannot be planned has another ``status`` and a ``message`` that says
    what to change: the nearest names for an unknown place, the timetable's dates for a time outside
    them, the latest departure that would have worked when no route is found.
    """

    request_id: Annotated[str, Meta(pattern=_REQUEST_ID, description="The request's id")]
    status: Annotated[JourneyStatus, Meta(description="ok, or why there is no journey")]
    message: Annotated[str, Meta(description="One line for a person: the best journey, or what to change")]
    origin: Annotated[
        PlaceRef | None, Meta(description="The origin the request's text was taken to mean")
    ] = None
    destination: Annotated[PlaceRef | None, Meta(description="The destination it was taken to mean")] = None
    departure: Annotated[Timestamp, Meta(description="When the first journey leaves")] | None = None
    arrival: Annotated[Timestamp, Meta(description="When the first journey arrives")] | None = None
    journeys: Annotated[list[Journey], Meta(description="The journeys, fastest first")] = msgspec.field(
        default_factory=list
    )
    suggestions: Annotated[
        list[str], Meta(description="For an unknown place: the nearest names the planner knows")
    ] = msgspec.field(default_factory=list)
    latest_departure: (
        Annotated[Timestamp, Meta(description="For no route: the latest departure that would have worked")]
        | None
    ) = None
    valid_from: Annotated[str, Meta(description="First day of the timetable, YYYY-MM-DD")] | None = None
    valid_to: Annotated[str, Meta(description="Last day of the timetable, YYYY-MM-DD")] | None = None
