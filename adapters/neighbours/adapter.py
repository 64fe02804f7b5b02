"""The ``beach-neighbours`` service: which weather and air-quality station is nearest each beach.

A product about a beach day needs, next to a site's water, the weather and the air around it.
Which stations those are follows from where everything stands, and every location is on the bus
already: this service reads the beach, weather and air-quality observations, keeps the last point
each site and station gave, and publishes an :class:`~contracts.BeachNeighbours` per site — the
nearest station of each kind and its great-circle distance (:func:`~adapters.geo.distance`) —
whenever that answer changes. Nobody types the relation in, and a moved or new station changes it
for every product at once.

Configuration: none (``[adapters.neighbours]`` with ``adapter = "beach-neighbours"``).

Decisions, and why:

* **Answered when a site reports, published on change only.** A station's message only updates
  where the station stands; a site's own observation (hourly) is when its answer is worked out,
  and published only if it differs from the last one, with an event id made from the answer (so
  a restarted service's first answers are dropped by JetStream's duplicate window). Answering at
  every station message instead would publish passing answers while a document's stations arrive
  one by one; the cost is that a moved station reaches a site's answer at its next report. A
  product reads a site's latest relation from the stream (the last message of its subject).
* **A message without a location is passed over**: it says nothing about where its entity is, and
  a station that never says where it stands cannot be nearest to anything.
* **Ties** (two stations at the same distance) go to the station whose identifier sorts first,
  so the answer does not depend on the order messages arrived in.
* **Uncertainty**: a neighbour's distance carries the sum of the two points' uncertainties, so an
  approximate site or station gives an honest margin rather than a false precision.
* **Provenance** is the least real of the three points' sources (``synthetic`` over ``recorded``
  over a real reading), since the answer is no more real than what it is computed from.
* **Time**: ``updated_at`` and the event time are the time of the newest observation used, not
  the clock's now, so a replayed day's relations sit where that day's observations are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import msgspec

from adapters.base import Adapter
from adapters.changes import stable_id
from adapters.context import Context
from adapters.geo import distance
from bus import Event
from contracts import (
    AirQualityObserved,
    BeachNeighbours,
    BeachObservation,
    GeoPoint,
    Neighbour,
    WeatherObserved,
)

__all__ = ["BeachNeighboursService", "NeighboursConfig", "nearest"]

_REALNESS: Final = {"synthetic": 0, "recorded": 1}
"""How real a provenance is, least first; every other kind (sensor, vendor, manual) is a reading."""


class NeighboursConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of ``beach-neighbours``: nothing to configure."""


@dataclass(frozen=True, slots=True)
class _Seen:
    location: GeoPoint
    name: str | None
    time: datetime
    provenance: str


def nearest(site: GeoPoint, stations: Mapping[str, tuple[GeoPoint, str | None]]) -> Neighbour | None:
    """The station nearest ``site`` (ties to the identifier that sorts first), or ``None``."""
    best: Neighbour | None = None
    for slug in sorted(stations):
        point, name = stations[slug]
        metres = round(distance(site, point), 1)
        if best is None or metres < best.distance:
            margin = (site.uncertainty or 0.0) + (point.uncertainty or 0.0)
            best = Neighbour(
                station=slug, station_name=name, location=point, distance=metres, uncertainty=margin
            )
    return best


class BeachNeighboursService(Adapter[NeighboursConfig]):
    """Beach, weather and air-quality observations in; each site's nearest stations out."""

    name = "beach-neighbours"
    Config = NeighboursConfig
    consumes = (BeachObservation, WeatherObserved, AirQualityObserved)
    produces = (BeachNeighbours,)

    def __init__(self, config: NeighboursConfig) -> None:
        super().__init__(config)
        self._sites: dict[str, _Seen] = {}
        self._weather: dict[str, _Seen] = {}
        self._air: dict[str, _Seen] = {}
        self._published: dict[str, BeachNeighbours] = {}

    async def run(self, ctx: Context) -> None:
        """Follow the three contracts and publish each site's neighbours when they change."""

        async def on_site(event: Event[BeachObservation]) -> None:
            data = event.data
            self._saw(self._sites, data.site, data.location, None, data.observed_at, event.provenance)
            if data.location is not None:
                await self._answer(ctx, data.site)

        async def on_weather(event: Event[WeatherObserved]) -> None:
            data = event.data
            self._saw(
                self._weather,
                data.station,
                data.location,
                data.station_name,
                data.observed_at,
                event.provenance,
            )

        async def on_air(event: Event[AirQualityObserved]) -> None:
            data = event.data
            self._saw(
                self._air, data.station, data.location, data.station_name, data.observed_at, event.provenance
            )

        await ctx.subscribe(BeachObservation, on_site)
        await ctx.subscribe(WeatherObserved, on_weather)
        await ctx.subscribe(AirQualityObserved, on_air)
        ctx.ready()
        await ctx.wait_stopped()

    @staticmethod
    def _saw(
        seen: dict[str, _Seen],
        key: str,
        location: GeoPoint | None,
        name: str | None,
        time: datetime,
        provenance: str,
    ) -> None:
        """Keep an entity's point (the first time it gave this one, with its name)."""
        if location is None:
            return
        before = seen.get(key)
        if before is None or before.location != location or before.name != name:
            seen[key] = _Seen(location, name, time, provenance)

    async def _answer(self, ctx: Context, slug: str) -> None:
        """Publish ``slug``'s neighbours if they are not what was last published for it."""
        site = self._sites[slug]
        near_weather = nearest(site.location, {k: (v.location, v.name) for k, v in self._weather.items()})
        near_air = nearest(site.location, {k: (v.location, v.name) for k, v in self._air.items()})
        used = [site]
        used += [self._weather[near_weather.station]] if near_weather is not None else []
        used += [self._air[near_air.station]] if near_air is not None else []
        answer = BeachNeighbours(
            site=slug,
            location=site.location,
            weather_station=near_weather,
            air_quality_station=near_air,
            updated_at=max(s.time for s in used),
        )
        before = self._published.get(slug)
        if before is not None and msgspec.structs.replace(before, updated_at=answer.updated_at) == answer:
            return  # the same answer: nothing to say
        self._published[slug] = answer
        provenance = min((s.provenance for s in used), key=lambda p: _REALNESS.get(p, 2))
        # the answer without its time: the same answer after a restart has the same id
        content = msgspec.json.encode((answer.location, answer.weather_station, answer.air_quality_station))
        await ctx.publish(
            answer,
            provenance=provenance,
            event_id=stable_id(self.name, slug, content.decode()),
            time=answer.updated_at,
        )
