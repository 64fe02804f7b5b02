"""Drammen's districts, as the statistics count them: a place goes to the district whose centre is
nearest.

Volunteer hours are released per district (and activity), and an opportunity says where it is as a
point (:attr:`~contracts.Opportunity.location`). :class:`Districts` turns that point into a
district's slug: the district whose centre is nearest, within :data:`REACH` of it.

Decisions, and why:

* **Approximate centres, not official boundaries.** The municipality's district boundaries
  (grunnkretser, bydeler) are not part of citybus; the centres in :data:`DRAMMEN` were placed by
  hand on the map, at each district's centre of settlement, and are approximate. Nearest-centre
  assignment is good enough for a table by district (a beach at the border may land in the
  neighbour), and says so — in production municipal IT gives its own centres
  (``[adapters.statistics.districts.<slug>] lat, lon, name``), which replace these.
* **Two groups that are not districts**: :data:`UNKNOWN` for an opportunity that gives no place,
  and :data:`ELSEWHERE` for one farther than :data:`REACH` from every centre (an opportunity in
  Oslo is not counted in Svelvik). Neither is ever a configured district's slug.
* **Slugs as groups, names as labels**: the released rows carry the stable slug; the name is the
  row's label for people.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from adapters.geo import distance
from contracts import GeoPoint

__all__ = [
    "DRAMMEN",
    "District",
    "Districts",
    "ELSEWHERE",
    "REACH",
    "UNKNOWN",
]

UNKNOWN: Final = "unknown"
"""The group of an opportunity that says nowhere where it is."""
ELSEWHERE: Final = "elsewhere"
"""The group of an opportunity farther than :data:`REACH` from every district's centre."""
REACH: Final = 12_000.0
"""Metres from its nearest centre within which a place counts in that district."""


@dataclass(frozen=True, slots=True)
class District:
    """One district: its slug (the group value), its name (for people) and its approximate centre."""

    slug: str
    name: str
    lat: float
    lon: float

    @property
    def centre(self) -> GeoPoint:
        """The district's centre as a point."""
        return GeoPoint.at(self.lat, self.lon)


DRAMMEN: Final[tuple[District, ...]] = (
    District("bragernes", "Bragernes", 59.7440, 10.2040),
    District("stromso", "Strømsø", 59.7370, 10.2090),
    District("tangen", "Tangen", 59.7350, 10.2290),
    District("danvik", "Danvik", 59.7360, 10.2520),
    District("brakeroya", "Brakerøya", 59.7520, 10.2300),
    District("aaskollen", "Åskollen", 59.7620, 10.2620),
    District("austad", "Austad", 59.7500, 10.1850),
    District("gulskogen", "Gulskogen", 59.7420, 10.1620),
    District("aassiden", "Åssiden", 59.7550, 10.1500),
    District("fjell", "Fjell", 59.7300, 10.1750),
    District("konnerud", "Konnerud", 59.7130, 10.1600),
    District("skoger", "Skoger", 59.6960, 10.2610),
    District("mjondalen", "Mjøndalen", 59.7530, 10.0200),
    District("svelvik", "Svelvik", 59.6120, 10.4070),
)
"""Drammen's districts, with centres placed by hand (approximate: see the module)."""


class Districts:
    """Assigns places to districts: the nearest centre within :data:`REACH`."""

    def __init__(self, districts: Iterable[District] = DRAMMEN) -> None:
        self.districts = tuple(districts)
        if not self.districts:
            raise ValueError("no districts: give at least one centre")

    def of(self, point: GeoPoint | None) -> str:
        """The slug of the district ``point`` lies in (:data:`UNKNOWN` for no point, :data:`ELSEWHERE`
        for one far from every centre)."""
        if point is None:
            return UNKNOWN
        best, nearest = min((distance(point, d.centre), d.slug) for d in self.districts)
        return nearest if best <= REACH else ELSEWHERE

    @property
    def labels(self) -> Mapping[str, str]:
        """Slug → name, for the districts and the two groups that are not districts."""
        names = {d.slug: d.name for d in self.districts}
        names[UNKNOWN] = "Place not given"
        names[ELSEWHERE] = "Outside the districts"
        return names
