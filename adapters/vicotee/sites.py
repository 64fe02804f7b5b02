"""The bathing sites of Drammen kommune's Vicotee pilot, as data.

Drammen kommune piloted automatic bathing-water temperature with Vicotee sensors, reporting
hourly, at six sites: the forest lakes Blektjern, Landfalltjern, Vannverksdammen and Stordammen
(Konnerud), Sota fjordpark on the Drammensfjord, and Bragernes strand on the river Drammenselva,
which has a second sensor out in the river. Each site measures the water temperature, and the air
temperature and UV on land. (Source: Drammen kommune's pages on bathing-water temperature and its
bathing-water samples of 2018; restated in the project's data notes.)

Six sites, seven measuring points: Bragernes strand's second sensor, out in the river, reports as
a site of its own (``drammenselva-bragernes``), so the sites' messages come under seven entities.

Coordinates: only Bragernes strand's (about 59.7409 N, 10.2138 E) is known. No reliable
coordinates were found for the others, so theirs are approximations placed by the name of the lake
or park and the part of town it lies in, and carry ``approximate=True`` with an ``uncertainty``
(the radius in metres the site lies within, as wide as the guess is loose) and the ``note`` that
says how it was placed. The adapter publishes them as approximate points
(:meth:`contracts.GeoPoint.approximately`), so a consumer cannot take one for a survey.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from contracts.fields import GeoPoint, Latitude, Longitude, Slug

__all__ = ["SITES", "Site"]


class Site(msgspec.Struct, frozen=True, kw_only=True):
    """One bathing site of the pilot: where a Vicotee unit measures the water."""

    slug: Annotated[Slug, Meta(description="The site's identifier, the entity of its messages")]
    name: Annotated[str, Meta(description="The site's name, as Drammen kommune writes it")]
    kind: Annotated[Literal["lake", "fjord", "river"], Meta(description="The water the site bathes in")]
    latitude: Latitude
    longitude: Longitude
    approximate: Annotated[bool, Meta(description="True if the coordinates are a guess, not a survey")]
    area: Annotated[str, Meta(description="The part of Drammen the site lies in")]
    note: str = ""
    uncertainty: Annotated[float, Meta(ge=0, description="Radius in metres the site lies within")] = 0.0
    """For an approximate site, how far off its point may be; 0 for a known one."""

    @property
    def location(self) -> GeoPoint:
        """The site's point as the contracts carry it: an approximate site's marked as such, with its
        uncertainty and the note that says how it was placed."""
        if not self.approximate:
            return GeoPoint.at(self.latitude, self.longitude)
        return GeoPoint.approximately(
            self.latitude, self.longitude, uncertainty=self.uncertainty, placement=self.note
        )


_SITES = (
    Site(
        slug="bragernes-strand",
        name="Bragernes strand",
        kind="river",
        latitude=59.7409,
        longitude=10.2138,
        approximate=False,
        area="Bragernes, city centre",
        note="The city beach on the north bank of the Drammenselva; 15.7 °C by hand on 2018-08-29.",
    ),
    Site(
        slug="drammenselva-bragernes",
        name="Drammenselva at Bragernes strand",
        kind="river",
        latitude=59.7406,
        longitude=10.2138,
        approximate=True,
        area="Bragernes, city centre",
        note="Bragernes strand's second sensor, out in the river; placed a few tens of metres off the beach.",
        uncertainty=100.0,
    ),
    Site(
        slug="sota-fjordpark",
        name="Sota fjordpark",
        kind="fjord",
        latitude=59.7350,
        longitude=10.2420,
        approximate=True,
        area="by the Drammensfjord",
        note="Placed where the river meets the fjord, east of the centre; 16.6 °C by hand on 2018-08-29.",
        uncertainty=1500.0,
    ),
    Site(
        slug="blektjern",
        name="Blektjern",
        kind="lake",
        latitude=59.7090,
        longitude=10.1550,
        approximate=True,
        area="Konnerud",
        note="Forest lake; placed in the Konnerud forest.",
        uncertainty=3000.0,
    ),
    Site(
        slug="landfalltjern",
        name="Landfalltjern",
        kind="lake",
        latitude=59.7560,
        longitude=10.1700,
        approximate=True,
        area="Landfall",
        note=(
            "Forest lake. The pilot lists it with the Konnerud lakes; its name points to Landfall, "
            "north-west of the centre, where it is placed: the least certain of the coordinates."
        ),
        uncertainty=5000.0,
    ),
    Site(
        slug="vannverksdammen",
        name="Vannverksdammen",
        kind="lake",
        latitude=59.7180,
        longitude=10.1700,
        approximate=True,
        area="Konnerud",
        note="Forest lake (the name means the waterworks dam); placed in the Konnerud forest.",
        uncertainty=3000.0,
    ),
    Site(
        slug="stordammen",
        name="Stordammen",
        kind="lake",
        latitude=59.7040,
        longitude=10.1720,
        approximate=True,
        area="Konnerud",
        note="Forest lake; placed in the Konnerud forest.",
        uncertainty=3000.0,
    ),
)

SITES: Final[Mapping[str, Site]] = MappingProxyType({s.slug: s for s in _SITES})
"""The pilot's sites by slug, Bragernes strand first."""
