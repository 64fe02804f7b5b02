"""Places in adapter configurations, and distances between them.

An adapter whose source does not say where its entities are (Frost's observations, a NILU
document without coordinates, a beach unit) is told in its configuration. :class:`PlaceConfig`
is that table's shape, shared so that every adapter marks an approximate place the same way:

.. code-block:: toml

    [adapters.air.locations.bangelokka]
    lat = 59.7309
    lon = 10.2165
    uncertainty = 300          # metres: the point is approximate, within this radius
    placement = "at the Bangeløkka express-bus stop, on the road the station stands by"

Decisions, and why: a place with ``uncertainty`` or ``placement`` is published as an approximate
:class:`~contracts.GeoPoint` (``approximate``, ``uncertainty``, ``placement``), never as a plain
point, so that a consumer cannot take a guess for a survey; and giving one of the two without the
other is refused, because an approximate point must say both how far off it may be and why.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec

from contracts import GeoPoint

__all__ = ["EARTH_RADIUS", "PlaceConfig", "distance"]

EARTH_RADIUS: Final = 6_371_008.8
"""The Earth's mean radius in metres (IUGG), the radius of the haversine distance."""


class PlaceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where an entity is: ``lat``/``lon`` in degrees (WGS 84); with ``uncertainty`` (metres) and
    ``placement`` (how it was placed) for a point that was not surveyed."""

    lat: float
    """Latitude in degrees, -90 to 90."""
    lon: float
    """Longitude in degrees, -180 to 180."""
    uncertainty: float | None = None
    """Radius in metres the true place lies within; set only for an approximate place."""
    placement: str | None = None
    """How an approximate place was placed, for people."""

    def check(self, where: str) -> None:
        """Raise :class:`ValueError` naming ``where`` (the table's key) if the entry is wrong."""
        for name, value, limit in (("lat", self.lat, 90), ("lon", self.lon, 180)):
            if not -limit <= value <= limit:
                raise ValueError(
                    f"{where}.{name} = {value} is out of range: it must be from {-limit} to {limit}"
                )
        if (self.uncertainty is None) != (self.placement is None):
            raise ValueError(
                f"{where}: an approximate place needs both uncertainty (metres) and placement (how it "
                "was placed); a surveyed one neither"
            )
        if self.uncertainty is not None and not 0 <= self.uncertainty <= 100_000:
            raise ValueError(f"{where}.uncertainty = {self.uncertainty} must be from 0 to 100000 metres")
        if self.placement is not None and not self.placement.strip():
            raise ValueError(f"{where}.placement is empty: say how the place was chosen")

    @property
    def point(self) -> GeoPoint:
        """The place as the contracts' point, marked approximate when it is."""
        if self.uncertainty is None or self.placement is None:
            return GeoPoint.at(self.lat, self.lon)
        return GeoPoint.approximately(
            self.lat, self.lon, uncertainty=self.uncertainty, placement=self.placement
        )


def distance(a: GeoPoint, b: GeoPoint) -> float:
    """The great-circle (haversine) distance between two points, in metres.

    Good to a few metres over a town (the Earth taken as a sphere of :data:`EARTH_RADIUS`), far
    below the uncertainty of any approximate point.
    """
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(h)))
