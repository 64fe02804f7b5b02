"""Drammen's bike racks for the recorded day: the real racks, and generated bike counts every 15 minutes.

The racks are real: the 16 of Drammen's former city-bike scheme in OpenStreetMap
(``sources/bikes/drammen_bike_stations_osm.json``), turned into GBFS ``station_information`` by
the adapter package's own :func:`~adapters.bikes.station_information_from_osm`. How many bikes
stood in them that day no record says, so the GBFS 2.3 ``station_status`` documents are made here,
one every 15 minutes.

How the counts move:

* **Each rack has a role**, from where it stands: *by the station* (Strømsø torg by the railway
  station and by the bus terminal, the Bangeløkka express-bus stop), *at work and in the centre*
  (Bragernes torg, Losjeplassen, Papirbredden, the hospital, Fylkeshuset, Sundland), or *at home
  and leisure* (Fayeparken, Gyldenløves plass, Rundtom, Marienlyst by Drammensbadet).
* **The commute** moves bikes between them: in the morning rush people arriving by train take bikes
  from the station racks to the centre and to work, and ride in from home; in the afternoon rush
  the reverse. Each role has a target fill over the day (a few keyframes, linear in between); every
  15 minutes a rack moves half-way towards its target, plus a few random trips in daytime.
* **Never beyond capacity:** the count stays within 0 and the rack's docks, and the free docks
  are the rest (no dock is out of order that day).
* All racks are installed, renting and returning; ``last_reported`` is the document's time.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Final, Literal

import msgspec

from sandbox.drammen.day import START, FileVersion, every

__all__ = ["INFORMATION_FILE", "ROLES", "Role", "STATUS_FILE", "STEP", "station_status_documents"]

INFORMATION_FILE: Final = "station_information.json"
STATUS_FILE: Final = "station_status.json"
STEP: Final = timedelta(minutes=15)

Role = Literal["station", "work", "home"]

ROLES: Final[dict[int, Role]] = {
    1: "work",  # Fylkeshuset: the county offices
    2: "work",  # Sykehuset: the hospital
    3: "work",  # Bragernes torg
    4: "work",
    5: "work",
    6: "work",  # Losjeplassen
    7: "home",  # Fayeparken
    8: "work",  # Sundland, NSB's training centre
    9: "work",  # Papirbredden: the university college and offices
    10: "station",  # Strømsø torg by the bus terminal
    11: "station",  # Strømsø torg by the railway station
    12: "home",  # Marienlyst by Drammensbadet
    13: "home",  # Gyldenløves plass
    14: "station",  # Bangeløkka express-bus stop
    15: "home",  # Rundtom
    16: "work",  # Bragernes torg, the second row
}
"""Each rack's role (by its OSM id), from where it stands."""

_TARGETS: Final[dict[Role, tuple[tuple[float, float], ...]]] = {
    # (local hour, share of the docks holding a bike)
    "station": ((0, 0.6), (6.5, 0.6), (8.5, 0.12), (12, 0.3), (15, 0.35), (17.5, 0.8), (21, 0.65), (24, 0.6)),
    "work": ((0, 0.35), (6.5, 0.35), (9, 0.88), (12, 0.8), (15, 0.75), (17.5, 0.3), (21, 0.35), (24, 0.35)),
    "home": ((0, 0.65), (6.5, 0.65), (8.5, 0.35), (15, 0.4), (18.5, 0.7), (24, 0.65)),
}


class _Rack(msgspec.Struct, frozen=True):
    id: int
    capacity: int | None = None


class _Racks(msgspec.Struct, frozen=True):
    stations: list[_Rack]


def _target(role: Role, hour: float) -> float:
    frames = _TARGETS[role]
    for (h0, f0), (h1, f1) in zip(frames, frames[1:], strict=False):
        if h0 <= hour <= h1:
            return f0 + (f1 - f0) * (hour - h0) / (h1 - h0)
    return frames[-1][1]


def _status(moment: datetime, bikes: dict[int, int], capacity: dict[int, int]) -> bytes:
    stamp = int(moment.timestamp())
    stations = [
        {
            "station_id": str(rack),
            "num_bikes_available": count,
            "num_bikes_disabled": 0,
            "num_docks_available": capacity[rack] - count,
            "num_docks_disabled": 0,
            "is_installed": True,
            "is_renting": True,
            "is_returning": True,
            "last_reported": stamp,
        }
        for rack, count in sorted(bikes.items())
    ]
    document = {"last_updated": stamp, "ttl": 60, "version": "2.3", "data": {"stations": stations}}
    return json.dumps(document).encode()


def station_status_documents(racks: bytes, rng: random.Random) -> list[FileVersion]:
    """The day's ``station_status`` documents for the racks of the OSM export ``racks``.

    Every rack of the export needs a role in :data:`ROLES` and a capacity: a rack without one
    raises ``ValueError`` (the builder's inputs must be complete).
    """
    capacity: dict[int, int] = {}
    for entry in msgspec.json.decode(racks, type=_Racks).stations:
        if entry.id not in ROLES or entry.capacity is None:
            raise ValueError(f"rack {entry.id} of the OSM export has no role or no capacity: add it to ROLES")
        capacity[entry.id] = entry.capacity
    # the night starts settled: each rack at its role's share, give or take a bike
    bikes = {
        rack: min(docks, max(0, round(_target(ROLES[rack], 0) * docks) + rng.choice((-1, 0, 1))))
        for rack, docks in sorted(capacity.items())
    }
    documents = [FileVersion(START, STATUS_FILE, _status(START, bikes, capacity))]
    for moment in every(STEP, start=START + STEP):
        hour = moment.hour + moment.minute / 60
        busy = 0.05 if hour < 6 or hour >= 23 else 0.35
        for rack, docks in sorted(capacity.items()):
            pull = (_target(ROLES[rack], hour) * docks - bikes[rack]) / 2
            trips = rng.choice((-1, 1)) if rng.random() < busy else 0
            bikes[rack] = min(docks, max(0, bikes[rack] + round(pull) + trips))
        documents.append(FileVersion(moment, STATUS_FILE, _status(moment, bikes, capacity)))
    return documents
