"""The ``gbfs-bikes`` adapter: a city-bike system's GBFS feeds in, bike racks and their counts out.

It polls a system's ``station_information`` (hourly) and ``station_status`` (every minute) —
found through the system's ``gbfs.json``, or given directly — and publishes
:class:`~contracts.BikeStation` when a rack appears or its name, place, capacity or address
changes, and :class:`~contracts.BikeStationStatus` when its bikes, free docks or flags change.
Parsing is :mod:`adapters.bikes.gbfs` (GBFS 1.x, 2.x and 3.0).

Configuration, through discovery (the adapter reads ``gbfs.json`` and polls the URLs it names, with
the discovery's ``headers`` and ``user_agent``)::

    [adapters.oslo-bysykkel]
    adapter = "gbfs-bikes"
    language = "nb"                  # picks gbfs.json's language and 3.0's localized names
    # system = "oslobysykkel"        # default: system_information's system_id
    # status_interval = 60           # seconds; information_interval = 3600; discovery_interval = 86400

    [adapters.oslo-bysykkel.discovery]
    url = "https://gbfs.urbansharing.com/oslobysykkel.no/gbfs.json"
    headers = { Client-Identifier = "drammen-citybus" }   # Urban Sharing refuses requests without it

or with the two feeds given directly (each a source table: ``url`` or ``file``, ``headers`` …)::

    [adapters.drammen-bysykkel.station_information]
    file = "recordings/station_information.json"
    [adapters.drammen-bysykkel.station_status]
    file = "recordings/station_status.json"

Dead letters: a whole document the poller drops with ``not-json``, ``not-gbfs`` (the detail says
what is missing), ``unsupported-version``, and for ``gbfs.json`` ``no-station-feeds`` or
``bad-feed-url``; one station record with ``missing-field``, ``bad-field``, ``out-of-range``,
``duplicate-station`` or ``bad-record`` (the rest of the document is published).

Decisions, and why:

* **Intervals are the adapter's, not each source's** (``status_interval``, ``information_interval``,
  ``discovery_interval``): in discovery mode the feeds' sources are made by the adapter, so a
  per-source ``interval`` could not be given there; to keep one way in both modes, a source table
  with ``interval`` is refused with a message saying which key to use.
* **``ttl`` is a lower bound.** GBFS's ``ttl`` says how many seconds the data will not change; a
  feed's next poll waits until its last document's ``ttl`` has run out (from when it was fetched)
  if that is later than the interval, capped at one hour so that a producer's mistake cannot stop
  the feed. It delays a retry after a failure only while the last good document is still fresh.
* **``gbfs.json`` is re-read daily.** When it names other feed URLs, the feeds are polled there
  from then on; when it breaks, the feeds keep running where they were.
* **Information first.** At start the adapter reads ``station_information`` before the first
  ``station_status``, so statuses carry the rack's name, capacity and place. A status for a rack
  ``station_information`` does not (yet) have is still published, without them.
* **What counts as changed**: a status is republished when anything but ``reported_at`` changes
  (a new ``last_reported`` alone is the same news); a rack when anything in it changes. A rack
  whose new record is rejected keeps its last good information. When ``system_information`` could
  not be read at start, it is tried again before each ``station_information`` poll; the racks get
  their ``system`` when that document next changes.
* **A rejected record is dead-lettered once**: the same bytes again in the next document (every
  minute, for status) are not dead-lettered again, as the poller does for whole documents.
* ``ce-id`` is derived from the feed and the message, and ``ce-time`` is ``reported_at`` (status)
  or the document's ``last_updated`` (rack), so a message published again after a restart is
  dropped by JetStream's duplicate window. Provenance follows the source: ``vendor`` for a URL,
  ``recorded`` for a file.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import aiohttp
import msgspec
from msgspec import Meta
from yarl import URL

from adapters.base import Adapter
from adapters.bikes.gbfs import (
    RejectedRecord,
    parse_discovery,
    parse_station_information,
    parse_station_status,
    parse_system_information,
)
from adapters.changes import LastSeen, stable_id
from adapters.context import Context
from adapters.polling import Document, Poller, SourceConfig, SourceFormatError, http_session
from contracts import BikeStation, BikeStationStatus

__all__ = ["LONGEST_TTL", "FeedSource", "GbfsBikes", "GbfsConfig"]

LONGEST_TTL: Final = 3600.0
"""The most seconds a feed's ``ttl`` may delay its next poll."""

_NEVER: Final = datetime(1970, 1, 1, tzinfo=UTC)
_Seconds = Annotated[float, Meta(ge=1, le=7 * 86_400)]


class FeedSource(SourceConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A GBFS document's source: a :class:`~adapters.polling.SourceConfig` whose ``interval`` the
    adapter sets (``status_interval``, ``information_interval``, ``discovery_interval``)."""

    interval: Annotated[float, Meta(ge=0.01, le=7 * 86_400)] | None = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.interval is not None:
            raise ValueError(
                "the gbfs-bikes adapter sets each feed's interval: remove `interval` here and set "
                "status_interval, information_interval or discovery_interval on the adapter"
            )


def _source(feed: SourceConfig, **changes: Any) -> SourceConfig:
    """A plain source like ``feed`` with ``changes`` (a :class:`FeedSource` has no interval)."""
    return SourceConfig(**{**msgspec.structs.asdict(feed), **changes})


class GbfsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of the ``gbfs-bikes`` adapter (see the module doc for examples).

    Give ``discovery`` (the system's ``gbfs.json``) or both ``station_information`` and
    ``station_status``.
    """

    discovery: FeedSource | None = None
    """The system's ``gbfs.json``; the feeds it names are polled with its headers and user agent."""
    station_information: FeedSource | None = None
    """The ``station_information`` document, when not found through ``discovery``."""
    station_status: FeedSource | None = None
    """The ``station_status`` document, when not found through ``discovery``."""
    language: Annotated[str, Meta(pattern=r"^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*$")] = "nb"
    """The language (BCP 47) of names and of ``gbfs.json``'s feeds; else the producer's first."""
    system: Annotated[str, Meta(min_length=1)] | None = None
    """The GBFS ``system_id`` put in each rack's ``system``; default: ``system_information``'s."""
    status_interval: _Seconds = 60.0
    """Seconds between polls of ``station_status`` (longer when the feed's ``ttl`` says so)."""
    information_interval: _Seconds = 3600.0
    """Seconds between polls of ``station_information``."""
    discovery_interval: _Seconds = 86_400.0
    """Seconds between reads of ``gbfs.json``."""

    def __post_init__(self) -> None:
        explicit = [
            name for name in ("station_information", "station_status") if getattr(self, name) is not None
        ]
        if self.discovery is not None and explicit:
            raise ValueError(
                f"give either `discovery` or both `station_information` and `station_status`, not both "
                f"ways (`discovery` and `{explicit[0]}` are given)"
            )
        if self.discovery is None and len(explicit) == 1:
            other = "station_status" if explicit[0] == "station_information" else "station_information"
            raise ValueError(
                f"`{explicit[0]}` is given but `{other}` is not: give both, or `discovery` instead"
            )
        if self.discovery is None and not explicit:
            raise ValueError(
                "give `discovery` (the system's gbfs.json, e.g. url = "
                '"https://gbfs.urbansharing.com/oslobysykkel.no/gbfs.json") '
                "or both `station_information` and `station_status`"
            )


@dataclass(frozen=True, eq=True)
class _Sources:
    information: SourceConfig
    status: SourceConfig
    system: SourceConfig | None = None


class _Feed:
    """One GBFS document polled on its interval, or later when its ``ttl`` says the data is fresh."""

    def __init__(
        self,
        ctx: Context,
        config: SourceConfig,
        handle: Callable[[Document], Awaitable[int]],
        *,
        name: str,
        session: aiohttp.ClientSession,
    ) -> None:
        self._ctx = ctx
        self._handle = handle
        self._fresh_until: datetime | None = None
        self.poller = Poller(ctx, config, self._on_document, name=name, session=session)

    async def _on_document(self, document: Document) -> None:
        ttl = await self._handle(document)
        self._fresh_until = document.fetched_at + timedelta(seconds=min(ttl, LONGEST_TTL))

    async def poll(self) -> float:
        """Fetch and handle once; the seconds to wait before the next poll."""
        delay = await self.poller.poll()
        if self._fresh_until is not None:
            delay = max(delay, (self._fresh_until - self._ctx.clock.now()).total_seconds())
        return delay


class GbfsBikes(Adapter[GbfsConfig]):
    """City-bike racks from a GBFS system: where they are and how many bikes and docks they have."""

    name = "gbfs-bikes"
    Config = GbfsConfig
    produces = (BikeStation, BikeStationStatus)

    def __init__(self, config: GbfsConfig) -> None:
        super().__init__(config)
        self._stations: dict[str, BikeStation] = {}
        self._station_seen = LastSeen()
        self._status_seen = LastSeen()
        self._system: str | None = None
        self._wanted: _Sources | None = None
        self._rejected: dict[str, set[bytes]] = {}

    async def run(self, ctx: Context) -> None:
        """Poll the feeds (found through ``gbfs.json``, or configured) and publish until stopped."""
        config = self.config
        given = [
            s for s in (config.discovery, config.station_information, config.station_status) if s is not None
        ]
        async with http_session(*given) as session:
            ctx.ready()
            if config.discovery is None:
                assert config.station_information is not None and config.station_status is not None
                sources = _Sources(
                    information=_source(config.station_information, interval=config.information_interval),
                    status=_source(config.station_status, interval=config.status_interval),
                )
                await self._run_feeds(ctx, session, sources)
            else:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._discover(ctx, session, group, config.discovery), name="gbfs.json")

    # -- discovery ------------------------------------------------------------------------------

    async def _discover(
        self, ctx: Context, session: aiohttp.ClientSession, group: asyncio.TaskGroup, discovery: SourceConfig
    ) -> None:
        handle = functools.partial(self._on_discovery, discovery)
        source = _source(discovery, interval=self.config.discovery_interval)
        feed = _Feed(ctx, source, handle, name="discovery", session=session)
        running: _Sources | None = None
        task: asyncio.Task[None] | None = None
        while True:
            delay = await feed.poll()
            wanted = self._wanted
            if wanted is not None and wanted != running:
                if task is not None:
                    ctx.log.info("gbfs.json names other feeds: polling them from now on")
                    task.cancel()
                    await asyncio.wait({task})
                running = wanted
                task = group.create_task(self._run_feeds(ctx, session, wanted), name="gbfs feeds")
            await ctx.clock.sleep(delay)

    async def _on_discovery(self, discovery: SourceConfig, document: Document) -> int:
        feed = parse_discovery(document.body, language=self.config.language)
        missing = [name for name in ("station_information", "station_status") if name not in feed.feeds]
        if missing:
            raise SourceFormatError(
                f"gbfs.json lists no {' and no '.join(missing)} feed "
                f"(it lists {', '.join(feed.feeds) or 'none'}): a system without docks has no racks",
                reason="no-station-feeds",
            )

        def derived(name: str, interval: float) -> SourceConfig:
            url = feed.feeds[name]
            if discovery.url is not None:  # a relative URL is relative to gbfs.json
                url = str(URL(discovery.url).join(URL(url)))
            try:
                return _source(discovery, url=url, file=None, interval=interval)
            except ValueError as exc:
                raise SourceFormatError(
                    f"gbfs.json names {name} at {url!r}: {exc}", reason="bad-feed-url"
                ) from None

        self._wanted = _Sources(
            information=derived("station_information", self.config.information_interval),
            status=derived("station_status", self.config.status_interval),
            system=derived("system_information", self.config.information_interval)
            if "system_information" in feed.feeds
            else None,
        )
        return feed.envelope.ttl

    # -- the station feeds ----------------------------------------------------------------------

    async def _run_feeds(self, ctx: Context, session: aiohttp.ClientSession, sources: _Sources) -> None:
        system = None
        if sources.system is not None and self.config.system is None:
            system = _Feed(ctx, sources.system, self._on_system, name="system_information", session=session)
            await system.poll()
        information = _Feed(
            ctx,
            sources.information,
            functools.partial(self._on_information, ctx),
            name="station_information",
            session=session,
        )
        status = _Feed(
            ctx,
            sources.status,
            functools.partial(self._on_status, ctx),
            name="station_status",
            session=session,
        )
        first = await information.poll()  # names and places before the first statuses
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every(ctx, information, first, system), name="station_information")
            group.create_task(self._every(ctx, status, await status.poll()), name="station_status")

    async def _every(self, ctx: Context, feed: _Feed, delay: float, system: _Feed | None = None) -> None:
        while True:
            await ctx.clock.sleep(delay)
            if system is not None and self._system is None:  # it failed before: try again
                await system.poll()
            delay = await feed.poll()

    async def _on_system(self, document: Document) -> int:
        information = parse_system_information(document.body, language=self.config.language)
        self._system = information.system_id
        return information.envelope.ttl

    async def _on_information(self, ctx: Context, document: Document) -> int:
        feed = parse_station_information(
            document.body, language=self.config.language, system=self.config.system or self._system
        )
        await self._dead_letter(ctx, document, "station_information", feed.rejected)
        stations = {station.station_id: station for station in feed.stations}
        for rejected in feed.rejected:  # a rack whose record broke keeps its last good information
            known = self._stations.get(rejected.station_id or "")
            if known is not None and known.station_id not in stations:
                stations[known.station_id] = known
        for gone in self._stations.keys() - stations.keys():
            self._station_seen.forget(gone)
            ctx.log.info("bike rack no longer in station_information", station_id=gone)
        self._stations = stations
        for station in feed.stations:
            if self._station_seen.changed(station.station_id, station):
                content = msgspec.json.encode(station).decode()
                await ctx.publish(
                    station,
                    provenance=document.provenance,
                    event_id=stable_id(self.name, document.location, content),
                    time=feed.envelope.last_updated,
                )
        return feed.envelope.ttl

    async def _on_status(self, ctx: Context, document: Document) -> int:
        feed = parse_station_status(document.body)
        await self._dead_letter(ctx, document, "station_status", feed.rejected)
        for status in feed.statuses:
            station = self._stations.get(status.station_id)
            if station is not None:
                status = msgspec.structs.replace(
                    status, name=station.name, capacity=station.capacity, location=station.location
                )
            if self._status_seen.changed(
                status.station_id, msgspec.structs.replace(status, reported_at=_NEVER)
            ):
                content = msgspec.json.encode(status).decode()
                await ctx.publish(
                    status,
                    provenance=document.provenance,
                    event_id=stable_id(self.name, document.location, content),
                    time=status.reported_at,
                )
        return feed.envelope.ttl

    async def _dead_letter(
        self, ctx: Context, document: Document, feed: str, rejected: list[RejectedRecord]
    ) -> None:
        before = self._rejected.get(feed, set())
        for record in rejected:
            if record.raw not in before:
                await ctx.dead_letter(document.raw(record.raw), reason=record.reason, detail=record.detail)
        self._rejected[feed] = {record.raw for record in rejected}
