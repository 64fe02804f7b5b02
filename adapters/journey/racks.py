"""City-bike racks as the planner knows them: where they stand, and their latest status.

Racks come from :class:`~contracts.BikeStation` (where, what name) and
:class:`~contracts.BikeStationStatus` (bikes and docks now; it carries a location too, so a
status alone makes a rack known). A rack lends a bike when it is installed, renting and has one;
takes one back when it is installed, returning and has a free dock.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.journey.moving import Point
from contracts import BikeStation, BikeStationStatus

__all__ = ["Rack", "Racks"]


@dataclass(slots=True)
class Rack:
    """One rack: its place and what it can do now."""

    id: str
    name: str
    point: Point
    lends: bool = False
    takes: bool = False


class Racks:
    """Every rack heard of; :attr:`version` changes whenever what a rack can do changes."""

    def __init__(self) -> None:
        self.racks: dict[str, Rack] = {}
        self.version = 0

    def station(self, station: BikeStation) -> None:
        """Take a rack's static description."""
        lon, lat = station.location.coordinates
        rack = self.racks.get(station.station_id)
        if rack is None:
            self.racks[station.station_id] = Rack(station.station_id, station.name, Point(lat, lon))
            self.version += 1
        elif rack.point != Point(lat, lon) or rack.name != station.name:
            rack.point, rack.name = Point(lat, lon), station.name
            self.version += 1

    def status(self, status: BikeStationStatus) -> None:
        """Take a rack's latest status."""
        rack = self.racks.get(status.station_id)
        if rack is None:
            if status.location is None:
                return  # nowhere to put it until its station arrives
            lon, lat = status.location.coordinates
            rack = self.racks[status.station_id] = Rack(
                status.station_id, status.name or status.station_id, Point(lat, lon)
            )
            self.version += 1
        lends = status.is_installed and status.is_renting and status.num_bikes_available > 0
        takes = status.is_installed and status.is_returning and status.num_docks_available > 0
        if (lends, takes) != (rack.lends, rack.takes):
            rack.lends, rack.takes = lends, takes
            self.version += 1

    def lending(self) -> list[Rack]:
        """Racks with a bike to take now."""
        return [r for r in self.racks.values() if r.lends]

    def taking(self) -> list[Rack]:
        """Racks with a free dock now."""
        return [r for r in self.racks.values() if r.takes]
