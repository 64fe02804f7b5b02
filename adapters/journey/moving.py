"""Walking and cycling between places: the model, stated once.

* **Distance** is the great-circle distance times a **detour factor** of 1.3 (streets are not
  straight lines; 1.2–1.4 is what studies of European cities measure).
* **Walking** goes at 1.3 m/s (4.7 km/h). ``max_walk`` limits each walk, in those detoured metres;
  0 means no walking at all.
* **A city bike** goes at 4.5 m/s (16 km/h) over the same detoured distance, plus 60 s to take a
  bike and 60 s to dock it. A ride starts at a rack that has a bike to take and is renting, and ends
  at another that has a free dock and is returning, by their latest status; the walks to and from
  the racks obey ``max_walk``.
* **Changing** trips needs the request's ``change`` seconds at least; a change that walks to another
  stop place takes the walk's time, and never less than ``change``.

Every time computed here is marked *estimated* in a plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "BIKE_SPEED",
    "DETOUR",
    "DOCK_SECONDS",
    "TAKE_SECONDS",
    "WALK_SPEED",
    "Point",
    "bike_seconds",
    "distance",
    "walk_seconds",
]

DETOUR = 1.3
WALK_SPEED = 1.3
"""Metres per second on foot."""
BIKE_SPEED = 4.5
"""Metres per second on a city bike."""
TAKE_SECONDS = 60
"""Time to take a bike from a rack."""
DOCK_SECONDS = 60
"""Time to dock a bike at a rack."""
_EARTH = 6_371_000.0


@dataclass(frozen=True, slots=True)
class Point:
    """A coordinate (WGS 84)."""

    lat: float
    lon: float


def distance(a: Point, b: Point) -> float:
    """Metres between two points as travelled: great-circle distance times :data:`DETOUR`."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH * math.asin(min(1.0, math.sqrt(h))) * DETOUR


def walk_seconds(metres: float) -> int:
    """Seconds to walk ``metres``, rounded up."""
    return math.ceil(metres / WALK_SPEED)


def bike_seconds(metres: float) -> int:
    """Seconds to ride ``metres`` on a city bike, with taking and docking it, rounded up."""
    return TAKE_SECONDS + math.ceil(metres / BIKE_SPEED) + DOCK_SECONDS
