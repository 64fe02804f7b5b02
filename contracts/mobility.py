"""Contracts of the mobility domain: trains calling at Drammen's stations and city-bike racks.

Train calls use Entur's NeTEx/SIRI identifiers (``NSR:StopPlace:11`` is Drammen stasjon) so they
join Entur's national stop register; bike racks mirror GBFS ``station_status`` and FIWARE
BikeHireDockingStation.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Classification, Contract, contract, measure
from contracts.fields import GeoPoint, Timestamp

__all__ = [
    "BikeStation",
    "BikeStationStatus",
    "CallStatus",
    "Quay",
    "StopPlace",
    "TrainCall",
    "TransportMode",
]

CallStatus = Literal["scheduled", "estimated", "actual", "cancelled"]
TransportMode = Literal["rail", "bus", "tram", "metro", "water", "coach", "air", "cableway", "funicular"]

_STOP_PLACE = r"^[A-Z]{3}:StopPlace:[0-9]+$"
_QUAY = r"^[A-Z]{3}:Quay:[0-9]+$"


class Quay(msgspec.Struct, frozen=True, kw_only=True):
    """One side of a platform (or one bus stop pole) at a stop place."""

    id: Annotated[str, Meta(pattern=_QUAY, description="The quay in Entur's stop register, e.g. NSR:Quay:22")]
    public_code: (
        Annotated[str, Meta(description="The platform or stop letter shown to travellers, e.g. 1")] | None
    ) = None
    location: Annotated[GeoPoint | None, Meta(description="Where the quay is")] = None


@contract(
    "mobility.stop-place",
    version=1,
    classification=Classification.PUBLIC,
    key="stop_place",
    example={
        "stop_place": "NSR:StopPlace:11",
        "name": "Drammen stasjon",
        "location": {"type": "Point", "coordinates": [10.205235, 59.740105]},
        "modes": ["rail"],
        "quays": [
            {
                "id": "NSR:Quay:22",
                "public_code": "1",
                "location": {"type": "Point", "coordinates": [10.20495, 59.739967]},
            }
        ],
    },
)
class StopPlace(Contract, frozen=True, kw_only=True):
    """A station or stop where trains or buses call, with its quays: where a journey can begin or end.

    Published by the timetable adapter whenever the timetable it reads changes, so a journey planner
    knows every stop place whose calls it will see as :class:`TrainCall` messages.
    """

    stop_place: Annotated[
        str,
        Meta(pattern=_STOP_PLACE, description="The stop place in Entur's register, e.g. NSR:StopPlace:11"),
    ]
    name: Annotated[str, Meta(min_length=1, description="The stop place's name, e.g. Drammen stasjon")]
    location: Annotated[GeoPoint, Meta(description="Where the stop place is")]
    modes: Annotated[
        list[TransportMode], Meta(description="The kinds of transport that call here, e.g. rail")
    ] = msgspec.field(default_factory=list)
    quays: Annotated[list[Quay], Meta(description="The stop place's quays")] = msgspec.field(
        default_factory=list
    )


@contract(
    "mobility.train-call",
    version=1,
    classification=Classification.PUBLIC,
    key="stop_place",
    example={
        "service_journey": "NSB:ServiceJourney:1-1821-311",
        "line": "R10",
        "operator": "NSB",
        "stop_place": "NSR:StopPlace:11",
        "quay": "NSR:Quay:22",
        "stop_name": "Drammen stasjon",
        "sequence": 0,
        "aimed_departure": "2018-08-28T08:57:00+02:00",
        "actual_departure": "2018-08-28T09:01:00+02:00",
        "platform": "1",
        "delay_seconds": 240,
        "status": "actual",
        "destination": "Lillehammer",
    },
)
class TrainCall(Contract, frozen=True, kw_only=True):
    """A train's stop at a station: when it was timetabled, expected and actually there.

    One message is one call of one service journey at one stop place, republished whenever the
    prognosis changes: ``scheduled`` from the timetable (GTFS), ``estimated`` while the train is on
    its way (SIRI EstimatedCall), ``actual`` once it has called (SIRI RecordedCall), or
    ``cancelled``. A call at the first stop has no arrival, at the last stop no departure.
    """

    service_journey: Annotated[
        str,
        Meta(min_length=1, description="The dated journey, e.g. NSB:ServiceJourney:1-1821-311"),
    ]
    line: Annotated[str, Meta(min_length=1, description="The line's public code, e.g. R10 or L13")]
    operator: Annotated[str, Meta(min_length=1, description="The operator's code, e.g. NSB or FLT")]
    stop_place: Annotated[
        str,
        Meta(
            pattern=_STOP_PLACE,
            description="The station in Entur's stop register, e.g. NSR:StopPlace:11 (Drammen stasjon)",
        ),
    ]
    quay: Annotated[str, Meta(pattern=_QUAY, description="The quay, e.g. NSR:Quay:22")] | None = None
    stop_name: Annotated[str, Meta(description="The station's name, e.g. Drammen stasjon")]
    sequence: Annotated[int, Meta(ge=0, description="Position of this call in the journey, from 0 or 1")]
    aimed_arrival: Annotated[Timestamp, Meta(description="Timetabled arrival")] | None = None
    aimed_departure: Annotated[Timestamp, Meta(description="Timetabled departure")] | None = None
    expected_arrival: Annotated[Timestamp, Meta(description="Predicted arrival")] | None = None
    expected_departure: Annotated[Timestamp, Meta(description="Predicted departure")] | None = None
    actual_arrival: Annotated[Timestamp, Meta(description="Recorded arrival")] | None = None
    actual_departure: Annotated[Timestamp, Meta(description="Recorded departure")] | None = None
    platform: Annotated[str, Meta(description="The platform shown to travellers, e.g. 1")] | None = None
    delay_seconds: (
        Annotated[
            int,
            measure("Actual or expected minus aimed time, negative when early", unit="s"),
        ]
        | None
    ) = None
    status: Annotated[CallStatus, Meta(description="How far the call is from timetable to fact")]
    destination: Annotated[str, Meta(description="Where the train is going, as signposted")] | None = None
    location: Annotated[
        GeoPoint | None, Meta(description="Where the call is: the stop place's point, as in stop-place")
    ] = None


@contract(
    "mobility.bike-station-status",
    version=1,
    classification=Classification.PUBLIC,
    key="station_id",
    example={
        "station_id": "3",
        "name": "Bragernes Torg Øvre",
        "num_bikes_available": 7,
        "num_docks_available": 17,
        "capacity": 24,
        "is_installed": True,
        "is_renting": True,
        "is_returning": True,
        "reported_at": "2018-08-29T10:00:00+02:00",
        "location": {"type": "Point", "coordinates": [10.2046, 59.7446]},
    },
)
class BikeStationStatus(Contract, frozen=True, kw_only=True):
    """How many city bikes and free docks a bike rack in Drammen has right now.

    Mirrors GBFS ``station_status`` (and FIWARE BikeHireDockingStation): one message per rack
    whenever its counts change, so someone looking for a bike, or a free dock to return one,
    can find the nearest rack that has one.
    """

    station_id: Annotated[
        str, Meta(min_length=1, max_length=64, description="The rack's GBFS station_id, e.g. 3")
    ]
    name: Annotated[str, Meta(description="The rack's name, e.g. Bragernes Torg Øvre")] | None = None
    num_bikes_available: Annotated[int, Meta(ge=0, description="Bikes that can be rented now")]
    num_docks_available: Annotated[int, Meta(ge=0, description="Empty docks a bike can be returned to")]
    capacity: Annotated[int, Meta(ge=0, description="Number of docks at the rack")] | None = None
    is_installed: Annotated[bool, Meta(description="The rack is on the street")] = True
    is_renting: Annotated[bool, Meta(description="Bikes can be taken from the rack")]
    is_returning: Annotated[bool, Meta(description="Bikes can be returned to the rack")]
    reported_at: Annotated[Timestamp, Meta(description="When the rack last reported (GBFS last_reported)")]
    location: Annotated[GeoPoint | None, Meta(description="Where the rack stands")] = None


@contract(
    "mobility.bike-station",
    version=1,
    classification=Classification.PUBLIC,
    key="station_id",
    example={
        "station_id": "3",
        "name": "Bragernes Torg Øvre",
        "location": {"type": "Point", "coordinates": [10.2046, 59.7446]},
        "capacity": 24,
        "address": "Bragernes torg",
        "system": "drammen-bysykkel",
    },
)
class BikeStation(Contract, frozen=True, kw_only=True):
    """A city-bike rack in Drammen: where it stands and how many docks it has.

    Mirrors GBFS ``station_information`` (and FIWARE BikeHireDockingStation's static part): one
    message per rack when it appears or changes; how many bikes it has now is
    :class:`BikeStationStatus`, under the same ``station_id``.
    """

    station_id: Annotated[
        str, Meta(min_length=1, max_length=64, description="The rack's GBFS station_id, e.g. 3")
    ]
    name: Annotated[str, Meta(min_length=1, description="The rack's name, e.g. Bragernes Torg Øvre")]
    location: Annotated[GeoPoint, Meta(description="Where the rack stands")]
    capacity: Annotated[int, Meta(ge=0, description="Number of docks at the rack")] | None = None
    address: Annotated[str, Meta(description="The rack's street address")] | None = None
    system: (
        Annotated[str, Meta(min_length=1, description="The bike-share system's GBFS system_id")] | None
    ) = None
