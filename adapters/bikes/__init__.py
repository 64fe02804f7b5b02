"""City bikes on the bus: GBFS feeds read into bike racks and their counts.

:mod:`adapters.bikes.gbfs` reads GBFS 1.x, 2.x and 3.0 documents (``gbfs.json``,
``system_information``, ``station_information``, ``station_status``) into
:class:`~contracts.BikeStation` and :class:`~contracts.BikeStationStatus`, with no I/O;
:mod:`~adapters.bikes.adapter` is :class:`GbfsBikes`, the ``gbfs-bikes`` adapter that polls them;
:mod:`~adapters.bikes.osm` writes Drammen's racks from OpenStreetMap as GBFS
``station_information``, for the sandbox's recorded day.
"""

from adapters.bikes.adapter import LONGEST_TTL, FeedSource, GbfsBikes, GbfsConfig
from adapters.bikes.gbfs import (
    DiscoveryFeed,
    Envelope,
    RecordReason,
    RejectedRecord,
    StationInformationFeed,
    StationStatusFeed,
    SystemInformation,
    localized,
    parse_discovery,
    parse_station_information,
    parse_station_status,
    parse_system_information,
)
from adapters.bikes.osm import OsmRack, station_information_from_osm

__all__ = [
    "DiscoveryFeed",
    "Envelope",
    "FeedSource",
    "GbfsBikes",
    "GbfsConfig",
    "LONGEST_TTL",
    "OsmRack",
    "RecordReason",
    "RejectedRecord",
    "StationInformationFeed",
    "StationStatusFeed",
    "SystemInformation",
    "localized",
    "parse_discovery",
    "parse_station_information",
    "parse_station_status",
    "parse_system_information",
    "station_information_from_osm",
]
