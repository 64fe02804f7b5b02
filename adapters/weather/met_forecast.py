"""The ``met-forecast`` adapter: MET Norway's Locationforecast for Drammen's places, as weather forecasts.

For every configured place the adapter polls Locationforecast 2.0 ``compact`` with the place's
``lat``/``lon`` (and ``altitude``) — one :class:`~adapters.polling.Poller` per place, named after
it, all sharing one HTTP session — reads each new document
(:mod:`~adapters.weather.locationforecast`) and publishes one :class:`~contracts.WeatherForecast`.
A place may instead read a recorded response from a ``file``.

Configuration::

    [adapters.forecast]
    adapter = "met-forecast"

    [adapters.forecast.source]                 # merged over the default: url and interval are kept
    user_agent = "drammen-citybus/1.0 bytest@drammen.kommune.no"   # MET's terms: who you are
    # url = "https://api.met.no/weatherapi/locationforecast/2.0/compact"
    # interval = 1800

    [adapters.forecast.places.bragernes-strand]
    lat = 59.7409
    lon = 10.2138
    name = "Bragernes strand"
    # altitude = 2                             # whole metres; default: MET's elevation model
    # file = "recordings/bragernes.json"       # read a recorded response instead of polling

Decisions, and why:

* **MET's terms of service** (api.met.no/doc/TermsOfService) and Locationforecast's documentation
  ask for an identifying ``User-Agent`` with contact details, at most 4 decimals in coordinates,
  and that ``Expires`` and ``If-Modified-Since`` are honoured. The adapter logs a warning at
  start while ``user_agent`` is left at citybus's default; it **rounds** ``lat`` and ``lon`` to 4
  decimals (about 11 m) in the request and in the published location; and the poller already
  honours the two headers.
* **Default place: Bragernes strand only** (59.7409 N, 10.2138 E, from the sources' README). The
  weather stations Marienlyst and Gulskogen are not defaults: no coordinates for them could be
  checked, and a forecast for a guessed point would look like one for the real place.
* **location** is the configured place's point (rounded), not the document's geometry: the
  forecast is for the place the city named, and its message must carry that place whichever
  recording is read. **elevation** is the document's altitude, the height MET forecast for.
* **One message per forecast run:** published only when ``meta.updated_at`` is newer than the
  last one published for the place — a cache answering with an older run must not replace a newer
  one for readers of the latest message. The event id is ``stable_id(place, updated_at)``, so a
  run published again after a restart is dropped by JetStream's duplicate window; the event time
  is ``updated_at``.
* **Dead letters:** see :mod:`~adapters.weather.locationforecast` for the reasons; a bad step is
  dead-lettered alone and the forecast published without it.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from adapters.base import Adapter
from adapters.changes import stable_id
from adapters.context import Context
from adapters.naming import check_slug
from adapters.polling import DEFAULT_USER_AGENT, Document, Poller, SourceConfig, http_session
from adapters.records import dead_letter_rejected
from adapters.weather.locationforecast import forecast_for, parse_compact
from contracts import GeoPoint, WeatherForecast

__all__ = ["DEFAULT_PLACES", "LOCATIONFORECAST_URL", "ForecastConfig", "MetForecast", "PlaceConfig"]

LOCATIONFORECAST_URL: Final = "https://api.met.no/weatherapi/locationforecast/2.0/compact"
"""MET Norway's Locationforecast 2.0, compact variant; the adapter adds ``lat``, ``lon``, ``altitude``."""

_QUERY_KEYS: Final = ("lat", "lon", "altitude")


def _four_decimals(value: float) -> str:
    text = f"{round(value, 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


class PlaceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One place to forecast for: ``[adapters.<instance>.places.<slug>]``."""

    lat: float
    """Latitude in degrees (WGS 84), -90 to 90; rounded to 4 decimals, as MET's terms ask."""
    lon: float
    """Longitude in degrees (WGS 84), -180 to 180; rounded to 4 decimals, as MET's terms ask."""
    altitude: int | None = None
    """Height above sea level in whole metres, -500 to 9000; absent: MET takes it from its elevation
    model."""
    name: Annotated[str, Meta(min_length=1)] | None = None
    """The place's name for people (``place_name``)."""
    file: Annotated[str, Meta(min_length=1)] | None = None
    """A recorded Locationforecast response to read instead of polling (provenance ``recorded``)."""

    def check(self, where: str) -> None:
        """Raise :class:`ValueError` naming ``where`` (the place's key) if a value is out of range.

        The ranges are checked here rather than by ``Meta`` constraints so that the message can
        name the place: msgspec's own would say only ``places[...]``.
        """
        for name, value, low, high in (
            ("lat", self.lat, -90, 90),
            ("lon", self.lon, -180, 180),
            ("altitude", self.altitude, -500, 9000),
        ):
            if value is not None and not low <= value <= high:
                raise ValueError(f"{where}.{name} = {value} is out of range: it must be from {low} to {high}")

    @property
    def location(self) -> GeoPoint:
        """The point forecast for, rounded to 4 decimals."""
        return GeoPoint.at(round(self.lat, 4), round(self.lon, 4))

    def query(self) -> str:
        """The ``lat``/``lon``/``altitude`` query string MET is asked with."""
        query = f"lat={_four_decimals(self.lat)}&lon={_four_decimals(self.lon)}"
        return query if self.altitude is None else f"{query}&altitude={self.altitude}"


DEFAULT_PLACES: Final = {
    "bragernes-strand": PlaceConfig(lat=59.7409, lon=10.2138, name="Bragernes strand"),
}
"""Bragernes strand, at the coordinates given in ``sandbox/data/sources/README.md``."""


class ForecastConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of ``met-forecast`` (see the module doc for an example)."""

    places: dict[str, PlaceConfig] = msgspec.field(default_factory=lambda: dict(DEFAULT_PLACES))
    """The places to forecast for, keyed by the place's slug (its subject token)."""
    source: SourceConfig = msgspec.field(
        default_factory=lambda: SourceConfig(url=LOCATIONFORECAST_URL, interval=1800.0)
    )
    """The endpoint (``url``), ``user_agent``, ``interval`` and the rest, shared by every place."""

    def __post_init__(self) -> None:
        if not self.places:
            raise ValueError("places is empty: configure at least one place to forecast for")
        for key, place in self.places.items():
            check_slug(key, "place")
            place.check(f"places.{key}")
        if self.source.url is None:
            raise ValueError("source.file: give each place its own `file` instead (places.<slug>.file)")
        present = [k for k in _QUERY_KEYS if f"?{k}=" in self.source.url or f"&{k}=" in self.source.url]
        if present:
            raise ValueError(
                f"source.url has {', '.join(present)}: leave them out, they come from each place"
            )

    def place_source(self, place: str) -> SourceConfig:
        """The source one place is polled from: the endpoint with its coordinates, or its ``file``."""
        config = self.places[place]
        if config.file is not None:
            return msgspec.structs.replace(self.source, url=None, file=config.file)
        url = str(self.source.url)
        separator = "" if url.endswith(("?", "&")) else "&" if "?" in url else "?"
        return msgspec.structs.replace(self.source, url=f"{url}{separator}{config.query()}")


class MetForecast(Adapter[ForecastConfig]):
    """MET Norway's Locationforecast for configured places in, weather forecasts out."""

    name = "met-forecast"
    Config = ForecastConfig
    produces = (WeatherForecast,)

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__(config)
        self._published: dict[str, datetime] = {}

    async def run(self, ctx: Context) -> None:
        """Poll every place until stopped."""
        config = self.config
        sources = {place: config.place_source(place) for place in config.places}
        polled = any(source.url is not None for source in sources.values())
        if polled and config.source.user_agent in (None, DEFAULT_USER_AGENT):
            ctx.log.warning(
                "user_agent is citybus's default: MET Norway's terms ask for one that names you and "
                "how to reach you, or it may block the requests",
                setting=f"[adapters.{ctx.instance}.source] user_agent",
                example="drammen-citybus/1.0 bytest@drammen.kommune.no",
            )
        async with http_session(*sources.values()) as session:
            pollers = [
                Poller(ctx, source, functools.partial(self.handle, ctx, place), name=place, session=session)
                for place, source in sources.items()
            ]
            ctx.ready()
            async with asyncio.TaskGroup() as group:
                for poller in pollers:
                    group.create_task(poller.run(), name=f"{ctx.instance} {poller.name}")

    async def handle(self, ctx: Context, place: str, document: Document) -> None:
        """Translate one fetched document of ``place`` (the handler of the place's poller).

        Raises :class:`~adapters.polling.SourceFormatError` for a document that makes no forecast.
        """
        config = self.config.places[place]
        parsed = parse_compact(document.body)
        forecast = forecast_for(parsed, place=place, location=config.location, place_name=config.name)
        await dead_letter_rejected(ctx, document, parsed.rejected, prefix=f"place {place}: ")
        last = self._published.get(place)
        if last is not None and forecast.updated_at <= last:
            ctx.log.debug(
                "forecast not newer than the one published; not published",
                place=place,
                updated_at=forecast.updated_at.isoformat(),
                published=last.isoformat(),
            )
            return
        await ctx.publish(
            forecast,
            provenance=document.provenance,
            event_id=stable_id(self.name, place, forecast.updated_at.isoformat()),
            time=forecast.updated_at,
        )
        self._published[place] = forecast.updated_at
        ctx.log.debug("weather forecast", place=place, updated_at=forecast.updated_at.isoformat())
