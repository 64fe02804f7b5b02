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


class GeoPoint(msgspec.Struct, frozen=True, kw_only=True, tag="Point", tag_field="type"):
    """A place on the map as a GeoJSON Point, the ``location`` of FIWARE Smart Data Models.

    GeoJSON puts the longitude first: ``{"type": "Point", "coordinates": [10.2138, 59.7409]}``.
    """

    coordinates: Annotated[
        tuple[Longitude, Latitude],
        Meta(description="Longitude and latitude (WGS 84), in GeoJSON order"),
    ]

    @classmethod
    def at(cls, latitude: float, longitude: float) -> GeoPoint:
        """The point at a latitude and longitude, given in the order people say them."""
        return cls(coordinates=(longitude, latitude))

    @property
    def latitude(self) -> float:
        """The point's latitude in degrees."""
        return self.coordinates[1]

    @property
    def longitude(self) -> float:
        """The point's longitude in degrees."""
        return self.coordinates[0]
