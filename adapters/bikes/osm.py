"""Drammen's city-bike racks from OpenStreetMap, written as GBFS ``station_information``.

Drammen's former city-bike scheme publishes no GBFS any more; what is left of it is its racks in
OpenStreetMap (``amenity=bicycle_rental``: name, capacity, position), shipped as
``sandbox/data/sources/bikes/drammen_bike_stations_osm.json``::

    {"_source": "…", "_license": "…", "stations": [
        {"id": 3, "name": "Bragernes Torg Øvre", "capacity": 24, "lat": 59.7446, "lon": 10.2046}, …]}

:func:`station_information_from_osm` turns that file into the ``station_information`` document
an operator would publish, in GBFS 2.3 or 3.0, so the sandbox can record a day of the
``gbfs-bikes`` adapter reading real racks. Decisions, and why:

* ``station_id`` is the file's ``id`` as a string (GBFS ids are strings); ``name``,
  ``capacity``, ``lat`` and ``lon`` are copied unchanged. OSM has no street address, so there is
  none (an invented one would look real).
* In 3.0 the name is a localized string in ``language`` (default ``nb``: the names are
  Norwegian); ``last_updated`` is POSIX seconds in 2.3 and RFC 3339 in 3.0, as each version says.
* Two racks may stand at one place (ids 5 and 16 do: a second row of docks mapped as its own
  node); both are kept, as OSM has them.
* No ``station_status`` is made: no real source has the counts of bikes, so whoever needs them
  (tests, the sandbox) chooses them and says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from adapters.polling import SourceFormatError
from bus.codec import decode_bytes
from bus.errors import UndecodableError

__all__ = ["OsmRack", "station_information_from_osm"]


class OsmRack(msgspec.Struct, frozen=True, kw_only=True):
    """One rack in the OpenStreetMap export."""

    id: Annotated[int, Meta(ge=0)]
    name: Annotated[str, Meta(min_length=1)]
    capacity: Annotated[int, Meta(ge=0)] | None = None
    lat: Annotated[float, Meta(ge=-90, le=90)]
    lon: Annotated[float, Meta(ge=-180, le=180)]


class _OsmRacks(msgspec.Struct, frozen=True):
    stations: list[OsmRack]


_RACKS = msgspec.json.Decoder(_OsmRacks)


def station_information_from_osm(
    racks: bytes,
    *,
    version: Literal["2.3", "3.0"],
    last_updated: datetime,
    ttl: int = 3600,
    language: str = "nb",
) -> bytes:
    """The GBFS ``station_information`` document (JSON bytes) of the racks in an OSM export.

    ``racks`` is the export's bytes (``{"stations": [{"id", "name", "capacity", "lat", "lon"}]}``);
    ``last_updated`` (timezone-aware) and ``ttl`` go into the envelope. Raises
    ``SourceFormatError`` (reason ``not-osm-racks``) for a file that is not such an export, and
    ``ValueError`` for a naive ``last_updated``.
    """
    if last_updated.tzinfo is None:
        raise ValueError("last_updated must be timezone-aware (GBFS times are absolute)")
    try:
        parsed = decode_bytes(_RACKS, racks)
    except UndecodableError as exc:
        raise SourceFormatError(f"not an OSM racks export: {exc}", reason="not-osm-racks") from None
    stations: list[dict[str, Any]] = []
    for rack in parsed.stations:
        station: dict[str, Any] = {
            "station_id": str(rack.id),
            "name": rack.name if version == "2.3" else [{"text": rack.name, "language": language}],
            "lat": rack.lat,
            "lon": rack.lon,
        }
        if rack.capacity is not None:
            station["capacity"] = rack.capacity
        stations.append(station)
    stamp: int | str = (
        int(last_updated.timestamp()) if version == "2.3" else last_updated.isoformat(timespec="seconds")
    )
    document = {"last_updated": stamp, "ttl": ttl, "version": version, "data": {"stations": stations}}
    return msgspec.json.encode(document)
