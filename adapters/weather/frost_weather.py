"""The ``frost-weather`` adapter: MET Norway's Frost observations of weather stations, as weather observed.

The adapter polls Frost's ``/observations/v0.jsonld`` for the configured stations, reads each new
response (:mod:`~adapters.weather.frost`) and publishes one :class:`~contracts.WeatherObserved`
per station and reference time.

Configuration::

    [adapters.weather]
    adapter = "frost-weather"
    client_id = "…"          # from frost.met.no/auth/requestCredentials.html; a secret, never logged

    [adapters.weather.stations.SN12345]         # the Frost source id of the station...
    slug = "marienlyst"                         # ...and the slug it is published under
    name = "Marienlyst"
    lat = 59.75                                 # optional, both or neither
    lon = 10.19
    # uncertainty = 500, placement = "…"        # a position not surveyed: published as approximate

    [adapters.weather.source]                   # merged over the default: url and interval are kept
    user_agent = "drammen-citybus/1.0 bytest@drammen.kommune.no"
    # url = "https://frost.met.no/observations/v0.jsonld?referencetime=latest&elements=…"
    # interval = 600

Decisions, and why:

* **Authentication:** Frost takes HTTP basic auth with the client id as user name and an empty
  password. The adapter builds that ``Authorization`` header into the source's headers at start,
  which the poller never logs; the id is not in the config's ``repr``, and no error message
  repeats it. A URL source without ``client_id`` (or an ``Authorization`` header of its own) is a
  configuration error: Frost would answer every poll with 401.
* **Which stations:** the default URL asks for the latest value (``referencetime=latest``) of
  every mapped element, and the adapter adds ``sources=`` with the ids of the ``stations`` table
  unless the URL names its own. There is no default station: Drammen's station ids (Marienlyst,
  Gulskogen) could not be checked, and a wrong id polls another town's weather under Drammen's
  names. Find them with Frost's ``/sources/v0.jsonld?geometry=nearest(POINT(10.2 59.74))``.
* **A station not in the table** is published under ``slug(source id)`` (``sn50540``) without
  name or location, with a warning once to add it. The request named it (the URL's ``sources``),
  so its observations are real ones somebody asked for, and Frost's id is a stable name for it;
  dead-lettering them would lose good data over a missing table entry.
* **Once per station and time:** a reading is published the first time its station and reference
  time are seen (``LastSeen``), with the event id ``stable_id(station, time)`` so that a restart
  does not publish it again inside JetStream's duplicate window, and the event time is the
  reference time. With ``referencetime=latest`` every poll brings back the last readings; only new
  ones go out. What was seen is forgotten two days behind the newest reading, to bound memory.
* **Dead letters:** see :mod:`~adapters.weather.frost` for the reasons, the series chosen, the
  pressure rule and the quality rule (``max_quality_code``).
"""

from __future__ import annotations

import base64
import functools
import heapq
from datetime import datetime, timedelta
from typing import Annotated, Final

import msgspec
from msgspec import Meta
from yarl import URL

from adapters.base import Adapter
from adapters.changes import LastSeen, stable_id
from adapters.context import Context
from adapters.geo import PlaceConfig
from adapters.naming import check_slug, slug
from adapters.polling import Document, Poller, SourceConfig, http_session
from adapters.records import dead_letter_rejected
from adapters.weather.frost import StationReading, parse_observations
from contracts import GeoPoint, WeatherObserved

__all__ = ["FROST_URL", "FrostConfig", "FrostWeather", "StationConfig"]

FROST_URL: Final = (
    "https://frost.met.no/observations/v0.jsonld?referencetime=latest&elements="
    "air_temperature,relative_humidity,wind_speed,wind_from_direction,"
    "sum(precipitation_amount%20PT1H),surface_air_pressure"
)
"""Frost's latest observations of every element the adapter maps; ``sources=`` comes from ``stations``."""

_STATION_ID: Final = msgspec.json.Decoder(Annotated[str, Meta(pattern=r"^SN[0-9]+$")])
_RETENTION: Final = timedelta(days=2)


class StationConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One weather station: ``[adapters.<instance>.stations.<Frost source id>]``."""

    slug: str
    """The station's slug on the bus (its subject token), e.g. ``marienlyst``."""
    name: Annotated[str, Meta(min_length=1)] | None = None
    """The station's name for people (``station_name``)."""
    lat: float | None = None
    """Latitude of the station in degrees (WGS 84), -90 to 90; with ``lon``, the published location."""
    lon: float | None = None
    """Longitude of the station in degrees (WGS 84), -180 to 180."""
    uncertainty: float | None = None
    """For a position that was not surveyed: the radius in metres the station lies within."""
    placement: str | None = None
    """For a position that was not surveyed: how it was placed (published with the point)."""

    def check(self, where: str) -> None:
        """Raise :class:`ValueError` naming ``where`` (the station's key) if the entry is wrong.

        Checked here rather than in ``__post_init__`` or by ``Meta`` constraints so that the
        message can name the station: msgspec's own would say only ``stations[...]``.
        """
        check_slug(self.slug, f"{where}.slug")
        if (self.lat is None) != (self.lon is None):
            raise ValueError(f"{where}: give both lat and lon, or neither")
        if self.lat is None and (self.uncertainty is not None or self.placement is not None):
            raise ValueError(f"{where}: uncertainty and placement describe lat and lon: give those too")
        if self._place is not None:
            self._place.check(where)

    @property
    def _place(self) -> PlaceConfig | None:
        if self.lat is None or self.lon is None:
            return None
        return PlaceConfig(lat=self.lat, lon=self.lon, uncertainty=self.uncertainty, placement=self.placement)

    @property
    def location(self) -> GeoPoint | None:
        """Where the station stands, if configured (marked approximate when it is)."""
        place = self._place
        return None if place is None else place.point


class FrostConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of ``frost-weather`` (see the module doc for an example)."""

    client_id: str | None = None
    """The Frost client id (a secret: never logged). Needed for a URL source."""
    source: SourceConfig = msgspec.field(default_factory=lambda: SourceConfig(url=FROST_URL, interval=600.0))
    """The endpoint (``url``), ``interval`` and the rest; or a recorded response in ``file``."""
    stations: dict[str, StationConfig] = msgspec.field(default_factory=dict)
    """The stations, keyed by Frost source id (``SN50540``)."""
    max_quality_code: Annotated[int, Meta(ge=0, le=7)] = 2
    """Observations with a higher Frost ``qualityCode`` are dead-lettered, not published."""

    def __post_init__(self) -> None:
        slugs: dict[str, str] = {}
        for key, station in self.stations.items():
            try:
                _STATION_ID.decode(msgspec.json.encode(key))
            except msgspec.ValidationError:
                raise ValueError(
                    f"stations: {key!r} is not a Frost station id such as 'SN50540' "
                    "(SN and digits, without the ':0' of the sensor system)"
                ) from None
            station.check(f"stations.{key}")
            if station.slug in slugs:
                raise ValueError(
                    f"stations {slugs[station.slug]} and {key} have the same slug {station.slug!r}"
                )
            slugs[station.slug] = key
        if self.client_id is not None:
            # Never repeat the id itself: an error message may end up in a log.
            if not self.client_id.strip():
                raise ValueError("client_id is empty")
            if ":" in self.client_id or any(c.isspace() or not c.isprintable() for c in self.client_id):
                raise ValueError("client_id may not hold a colon, spaces or control characters")
        if self.source.url is None:
            return
        has_authorization = any(h.lower() == "authorization" for h in self.source.headers)
        if self.client_id is None and not has_authorization:
            raise ValueError(
                "client_id is missing: Frost wants one for every request "
                "(get one at https://frost.met.no/auth/requestCredentials.html)"
            )
        if self.client_id is not None and has_authorization:
            raise ValueError("give client_id or an Authorization header in source.headers, not both")
        if "sources" not in URL(self.source.url).query and not self.stations:
            raise ValueError(
                "no stations: add [stations.SN…] tables (or `sources=` to source.url) "
                "naming the Frost stations to read"
            )

    def __repr__(self) -> str:
        shown = {name: getattr(self, name) for name in self.__struct_fields__}
        if shown["client_id"] is not None:
            shown["client_id"] = "***"
        return f"FrostConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def request_source(self) -> SourceConfig:
        """The source as polled: with the ``Authorization`` header and the stations in ``sources=``."""
        source = self.source
        if source.url is None:
            return source
        url = source.url
        if "sources" not in URL(url).query:
            separator = "" if url.endswith(("?", "&")) else "&" if "?" in url else "?"
            url = f"{url}{separator}sources={','.join(sorted(self.stations))}"
        headers = dict(source.headers)
        if self.client_id is not None:
            token = base64.b64encode(f"{self.client_id}:".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return msgspec.structs.replace(source, url=url, headers=headers)


class FrostWeather(Adapter[FrostConfig]):
    """MET Norway's Frost observations of weather stations in, weather observed out."""

    name = "frost-weather"
    Config = FrostConfig
    produces = (WeatherObserved,)

    def __init__(self, config: FrostConfig) -> None:
        super().__init__(config)
        self._seen = LastSeen()
        self._times: list[tuple[datetime, str]] = []  # a heap of what _seen holds, oldest first
        self._unknown: set[str] = set()
        self._newest: datetime | None = None

    async def run(self, ctx: Context) -> None:
        """Poll Frost until stopped."""
        source = self.config.request_source()
        async with http_session(source) as session:
            handler = functools.partial(self.handle, ctx)
            poller = Poller(ctx, source, handler, name="observations", session=session)
            ctx.ready()
            await poller.run()

    async def handle(self, ctx: Context, document: Document) -> None:
        """Translate one fetched Frost response (the poller's handler).

        Raises :class:`~adapters.polling.SourceFormatError` for a response it cannot read.
        """
        parsed = parse_observations(document.body, max_quality_code=self.config.max_quality_code)
        await dead_letter_rejected(ctx, document, parsed.rejected)
        if parsed.skipped:
            ctx.log.debug("frost observations the contract has no field for", skipped=dict(parsed.skipped))
        for reading in parsed.readings:
            if not self._seen.changed((reading.station, reading.observed_at), True):
                continue
            heapq.heappush(self._times, (reading.observed_at, reading.station))
            if self._newest is None or reading.observed_at > self._newest:
                self._newest = reading.observed_at
            await ctx.publish(
                self._observed(ctx, reading),
                provenance=document.provenance,
                event_id=stable_id(self.name, reading.station, reading.observed_at.isoformat()),
                time=reading.observed_at,
            )
        self._forget_old()

    def _observed(self, ctx: Context, reading: StationReading) -> WeatherObserved:
        station = self.config.stations.get(reading.station)
        if station is None and reading.station not in self._unknown:
            self._unknown.add(reading.station)
            ctx.log.warning(
                "station not in the stations table: published without name or location",
                station=reading.station,
                published_as=slug(reading.station),
                setting=f"[adapters.{ctx.instance}.stations.{reading.station}]",
            )
        values = reading.values
        return WeatherObserved(
            station=station.slug if station is not None else slug(reading.station),
            station_name=station.name if station is not None else None,
            observed_at=reading.observed_at,
            location=station.location if station is not None else None,
            temperature=values.get("temperature"),
            relative_humidity=values.get("relative_humidity"),
            wind_speed=values.get("wind_speed"),
            wind_direction=values.get("wind_direction"),
            precipitation=values.get("precipitation"),
            atmospheric_pressure=values.get("atmospheric_pressure"),
        )

    def _forget_old(self) -> None:
        if self._newest is None:
            return
        while self._times and self._times[0][0] < self._newest - _RETENTION:
            time, station = heapq.heappop(self._times)
            self._seen.forget((station, time))
