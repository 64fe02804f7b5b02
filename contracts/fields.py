"""Field types shared by the domain contracts: timestamps, slugs and places on the map."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from contracts.base import measure

__all__ = ["GeoPoint", "Latitude", "Longitude", "Slug", "Timestamp"]

Timestamp = Annotated[datetime, Meta(tz=True)]
"""A moment in time with its UTC offset; a naive time would be ambiguous across DST and devices."""

Slug = Annotated[
    str,
    Meta(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", min_length=1, max_length=64),
]
"""A stable lower-case kebab-case identifier (``bragernes-strand``), safe as a subject token."""

Latitude = Annotated[float, measure("WGS 84 latitude", unit="deg", ge=-90, le=90)]
Longitude = Annotated[float, measure("WGS 84 longitude", unit="deg", ge=-180, le=180)]


class GeoPoint(msgspec.Struct, frozen=True, kw_only=True, tag="Point", tag_field="type", omit_defaults=True):
    """A place on the map as a GeoJSON Point, the ``location`` of FIWARE Smart Data Models.

    GeoJSON puts the longitude first: ``{"type": "Point", "coordinates": [10.2138, 59.7409]}``.

    A point that was not surveyed but placed by a rule (by the name of a lake, by the stop next to
    a station) says so: ``"approximate": true``, the radius in metres the true place lies within
    (``uncertainty``) and how it was placed (``placement``). These are GeoJSON *foreign members*,
    which GeoJSON readers ignore; a surveyed point carries none of them (they are left out when
    unset), so its JSON is plain GeoJSON.

    Decisions, and why: the mark travels with the point, in every message, rather than in a
    separate catalogue, because a consumer that reads one message must not take a guess for the
    truth; and it lives in the shared point type, not in a field per contract, so every contract
    with a location can mark it the same way (new optional members: a compatible change).
    """

    coordinates: Annotated[
        tuple[Longitude, Latitude],
        Meta(description="Longitude and latitude (WGS 84), in GeoJSON order"),
    ]
    approximate: Annotated[
        bool, Meta(description="True when the point was placed by a rule, not surveyed: see placement")
    ] = False
    uncertainty: (
        Annotated[
            float,
            measure(
                "Radius around the point the true place lies within (approximate points)",
                unit="m",
                ge=0,
                le=100000,
            ),
        ]
        | None
    ) = None
    placement: (
        Annotated[str, Meta(min_length=1, description="How an approximate point was placed, for people")]
        | None
    ) = None

    @classmethod
    def at(cls, latitude: float, longitude: float) -> GeoPoint:
        """The point at a latitude and longitude, given in the order people say them."""
        return cls(coordinates=(longitude, latitude))

    @classmethod
    def approximately(
        cls, latitude: float, longitude: float, *, uncertainty: float, placement: str
    ) -> GeoPoint:
        """An approximate point: placed by ``placement``, within ``uncertainty`` metres of the truth."""
        return cls(
            coordinates=(longitude, latitude), approximate=True, uncertainty=uncertainty, placement=placement
        )

    @property
    def latitude(self) -> float:
        """The point's latitude in degrees."""
        return self.coordinates[1]

    @property
    def longitude(self) -> float:
        """The point's longitude in degrees."""
        return self.coordinates[0]
