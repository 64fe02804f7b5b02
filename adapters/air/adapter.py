"""The ``nilu-air-quality`` adapter: NILU's hourly air-quality values in, air quality observations out.

NILU (the Norwegian Institute for Air Research) publishes the latest hourly mean of every
component at every measuring station in Norway at ``https://api.nilu.no/aq/utd``; ``?areas=Drammen``
narrows it to Drammen's stations (Rosenkrantzgata by Vårveien, Backeparken, Bangeløkka). The adapter
polls that document (:mod:`adapters.polling`), reads it (:mod:`~adapters.air.utd`), maps each record
(:mod:`~adapters.air.observation`) and publishes one :class:`~contracts.AirQualityObserved` per
station, component and hour.

Configuration::

    [adapters.air]
    adapter = "nilu-air-quality"
    components = ["PM10", "PM2.5", "NO2"]            # optional: only these (default: all)
    stations = { NO0071A = "manglerud", "Rosenkrantzgata ved Vårveien" = "varveien" }   # optional
    locations.bangelokka = { lat = 59.7309, lon = 10.2165, uncertainty = 300, placement = "…" }  # optional

    [adapters.air.source]                            # optional; this is the default
    url = "https://api.nilu.no/aq/utd?areas=Drammen"
    interval = 900                                   # the default; the table is merged over it
    headers = { "<header NILU names>" = "<your key>" }

**The API key.** api.nilu.no was long documented as open, but became key-gated in 2025/26: put the
key in ``source.headers`` under the header name NILU gives with it. Headers are sent with every
request and never logged (the config's ``repr`` masks them too). Without a key NILU answers 401 or
403, which the poller reports (``citybus_source_fetches_total{outcome="http-401"}``) and retries.

Decisions, and why:

* **Each (station, component, hour) is published once.** The document is the latest value per
  station and component, polled every 15 minutes while it changes hourly, so most polls repeat
  what was published: :class:`~adapters.polling.LastSeen` keeps the last ``toTime`` per station and
  component, and the CloudEvents id is :func:`~adapters.polling.stable_id` of the three, so a
  restarted adapter's repeat is dropped by JetStream's duplicate window. NILU correcting a value
  within the same hour is therefore not re-published: a consumer must never see two different
  values with the same identity.
* **A rejected record is dead-lettered once** per station, component, hour and reason, not at
  every poll that still carries it.
* **``components`` filters, it does not validate the source**: a record outside the list is
  skipped (counted in a debug log), even one the contract could not carry, because the operator
  said it is not wanted. Without a filter an unknown component is dead-lettered, so a new NILU
  component shows up in the dead letters instead of vanishing.
* **Locations** come from the record (NILU's ``latitude``/``longitude``); ``locations`` fills in
  a station whose records have none, marked approximate when its table says how it was placed
  (:class:`~adapters.geo.PlaceConfig`).
* **Provenance** is the document's: ``vendor`` from the API, ``recorded`` from a file.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Final

import msgspec

from adapters.air.observation import COMPONENTS, component_code, observation_from
from adapters.air.utd import RecordError, decode_record, split_records
from adapters.base import Adapter
from adapters.changes import LastSeen, stable_id
from adapters.context import Context
from adapters.geo import PlaceConfig
from adapters.naming import check_slug
from adapters.polling import Document, Poller, SourceConfig, http_session
from contracts import AirQualityObserved

__all__ = ["AirConfig", "NILU_URL", "NiluAirQuality"]

NILU_URL: Final = "https://api.nilu.no/aq/utd?areas=Drammen"
"""The latest hourly values at Drammen's stations."""


def _default_source() -> SourceConfig:
    return SourceConfig(url=NILU_URL, interval=900.0)


class AirConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of the NILU air-quality adapter (see the module doc for an example)."""

    source: SourceConfig = msgspec.field(default_factory=_default_source)
    """Where the ``/aq/utd`` document comes from; default :data:`NILU_URL` every 900 s."""
    stations: dict[str, str] = msgspec.field(default_factory=dict)
    """Station slugs by NILU station name or EoI code; a station not named here is ``slug(name)``."""
    components: list[str] | None = None
    """Only these component codes (``PM10``, ``PM2.5``, ``NO2`` …); absent: every component."""
    locations: dict[str, PlaceConfig] = msgspec.field(default_factory=dict)
    """Where stations stand, by station slug, for records without coordinates (NILU's own
    ``latitude``/``longitude`` win); ``uncertainty`` and ``placement`` mark an approximate one."""

    def __post_init__(self) -> None:
        for key, value in self.stations.items():
            check_slug(value, f"stations: {key!r} =")
        for key, place in self.locations.items():
            check_slug(key, "locations: the key")
            place.check(f"locations.{key}")
        for code in self.components or ():
            if code not in COMPONENTS:
                raise ValueError(f"components: unknown component {code!r}; known: {', '.join(COMPONENTS)}")
        if self.components is not None and not self.components:
            raise ValueError(
                "components: an empty list would publish nothing; leave it out for every component"
            )


class NiluAirQuality(Adapter[AirConfig]):
    """NILU's hourly air quality values (api.nilu.no /aq/utd) in, air quality observations out."""

    name = "nilu-air-quality"
    Config = AirConfig
    produces = (AirQualityObserved,)

    def __init__(self, config: AirConfig) -> None:
        super().__init__(config)
        self._components = None if config.components is None else frozenset(config.components)
        self._published = LastSeen()
        self._rejected = LastSeen()
        self._unknown_types: set[str] = set()

    async def run(self, ctx: Context) -> None:
        """Poll the source and publish what is new, until stopped."""
        source = self.config.source
        async with http_session(source) as session:
            poller = Poller(
                ctx, source, functools.partial(self._on_document, ctx), name="utd", session=session
            )
            ctx.ready()
            await poller.run()

    async def _on_document(self, ctx: Context, document: Document) -> None:
        outcomes: Counter[str] = Counter()
        for index, data in enumerate(split_records(document.body)):
            outcomes[await self._on_record(ctx, document, index, data)] += 1
        ctx.log.debug("air quality document handled", location=document.location, **outcomes)

    async def _on_record(self, ctx: Context, document: Document, index: int, data: bytes) -> str:
        try:
            record = decode_record(data, index)
        except RecordError as exc:
            await ctx.dead_letter(document.raw(data), reason=exc.reason, detail=str(exc))
            return "rejected"
        if self._components is not None and component_code(record.component) not in self._components:
            return "skipped"
        try:
            observation = observation_from(record, stations=self.config.stations)
            place = self.config.locations.get(observation.station)
            if observation.location is None and place is not None:
                observation = msgspec.structs.replace(observation, location=place.point)
        except RecordError as exc:
            if not self._rejected.changed((record.station, record.component), (record.to_time, exc.reason)):
                return "unchanged"
            await ctx.dead_letter(document.raw(data), reason=exc.reason, detail=str(exc))
            return "rejected"
        if record.type and observation.station_type is None and record.type not in self._unknown_types:
            self._unknown_types.add(record.type)
            ctx.log.info("unknown NILU station type: station_type left out", type=record.type)
        key = (observation.station, observation.component)
        if not self._published.changed(key, observation.observed_at):
            return "unchanged"
        event_id = stable_id(self.name, *key, observation.observed_at.isoformat())
        await ctx.publish(
            observation, provenance=document.provenance, event_id=event_id, time=observation.observed_at
        )
        return "published"
