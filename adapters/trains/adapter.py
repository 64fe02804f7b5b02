"""The ``entur-trains`` adapter: Entur's GTFS timetable and SIRI real-time data in, the stop places and
train calls of Drammen's stations out.

Two polled sources, one HTTP session. The **timetable** is Entur's national GTFS zip, fetched daily
(:mod:`~adapters.trains.gtfs`, read in a worker thread: the national feed takes a while). From each
new one the adapter publishes a :class:`~contracts.StopPlace` per configured stop place, and the
``scheduled`` :class:`~contracts.TrainCall`\\ s of the service date; at midnight (Europe/Oslo, on
``ctx.clock``) it publishes the new day's from the timetable it holds. The **real-time** source is
Entur's SIRI EstimatedTimetable for Bane NOR's trains, polled every 30 s
(:mod:`~adapters.trains.siri`): each call at a quay of a configured stop place becomes a TrainCall —
``actual``, ``estimated`` or ``cancelled`` — joined with its planned call (:mod:`~adapters.trains.join`).

Configuration::

    [adapters.trains]
    adapter = "entur-trains"
    stop_places = ["NSR:StopPlace:11", "NSR:StopPlace:536"]   # default: the Drammen area (below)
    # service_date = "2018-08-28"        # replay a recorded day; default: today in Europe/Oslo

    [adapters.trains.timetable]
    url = "https://storage.googleapis.com/marduk-production/outbound/gtfs/rb_norway-aggregated-gtfs.zip"
    headers = { ET-Client-Name = "drammen-kommune-citybus" }
    # or: file = "sandbox/data/sources/transport/entur_nsb_gtfs_2018.zip"

    [adapters.trains.realtime]
    url = "https://api.entur.io/realtime/v1/rest/et?datasetId=BNR"
    headers = { ET-Client-Name = "drammen-kommune-citybus" }

Entur asks every client to name itself in an ``ET-Client-Name`` header, ``<organisation>-<application>``,
and may throttle clients that do not; the defaults send ``citybus-entur-trains``, so set your own
(in both tables: a table given replaces the default, headers included). The real-time URL is polled
without ``requestorId``, so each response is the dataset's whole state, not the changes since a
previous request: a restarted adapter has nothing to catch up on.

Decisions, and why:

* **The Drammen area** is Drammen stasjon (NSR:StopPlace:11), Brakerøya (536), Gulskogen (18),
  Mjøndalen (187) and Lier (426): the railway stations of Drammen and its neighbours on the lines
  through it.
* **Real time waits for the timetable.** Which stop place a quay belongs to — and so whether a call
  is in the area at all — is in the timetable. A SIRI document that comes first is checked (a bad
  one is dead-lettered at once) and held; the latest one held is used when the timetable arrives.
* **Calls at quays outside the area are skipped**, not dead-lettered: a national document is about
  the whole country, and only the area is this adapter's business.
* **Freight trains are skipped** unless ``freight = true``: Bane NOR's feed has them (operator CN,
  line ``-``), but a train call is a stop where someone can board, and a journey planner must not
  offer a freight train.
* **Only what changed is published** (:class:`~adapters.polling.LastSeen`, per service journey, stop
  place and sequence, scheduled and real-time kept apart so a new timetable does not undo a
  prognosis), with an event id made from the document and the message, so a document handled
  again after a restart is dropped by JetStream's duplicate window, while a prognosis that goes
  back to an earlier value in a new document is not.
* **A call carries its stop place's point** (``location``, from the timetable's ``stops.txt``), so
  a consumer that reads only calls knows where they are without joining the stop places.
* **Dead letters**: a document that does not parse goes whole (GTFS ``not-zip``,
  ``gtfs-missing-member`` …; SIRI ``not-xml``, ``xml-doctype``, ``not-siri-et``); a bad record alone,
  with its CSV row or XML element (``bad-stop-time``, ``unknown-trip``, ``no-stop-point``,
  ``bad-time``, ``no-journey-ref``, ``out-of-range`` …; see the parsers).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Hashable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Final
from zoneinfo import ZoneInfo

import msgspec
from msgspec import Meta

from adapters.base import Adapter
from adapters.changes import LastSeen, stable_id
from adapters.context import Context
from adapters.polling import Document, Poller, SourceConfig, SourceFormatError, http_session
from adapters.records import Rejected, dead_letter_rejected
from adapters.trains.gtfs import parse_gtfs
from adapters.trains.join import join_call, relevant_time
from adapters.trains.siri import parse_estimated_timetable
from adapters.trains.timetable import Timetable
from bus import Provenance
from contracts import StopPlace, TrainCall, validate

__all__ = [
    "DRAMMEN_AREA",
    "ENTUR_CLIENT_NAME",
    "ENTUR_GTFS_URL",
    "ENTUR_SIRI_ET_URL",
    "EnturTrains",
    "TrainsConfig",
]

ENTUR_GTFS_URL: Final = (
    "https://storage.googleapis.com/marduk-production/outbound/gtfs/rb_norway-aggregated-gtfs.zip"
)
"""Entur's national GTFS feed, every operator's timetable, rebuilt daily."""
ENTUR_SIRI_ET_URL: Final = "https://api.entur.io/realtime/v1/rest/et?datasetId=BNR"
"""Entur's SIRI EstimatedTimetable of Bane NOR's data set: every train's real-time calls."""
ENTUR_CLIENT_NAME: Final = "citybus-entur-trains"
"""The default ``ET-Client-Name`` header; set your own, ``<organisation>-<application>``."""
DRAMMEN_AREA: Final = (
    "NSR:StopPlace:11",  # Drammen stasjon
    "NSR:StopPlace:536",  # Brakerøya
    "NSR:StopPlace:18",  # Gulskogen
    "NSR:StopPlace:187",  # Mjøndalen
    "NSR:StopPlace:426",  # Lier
)
"""The railway stations the adapter serves unless configured otherwise."""

_ADAPTER: Final = "entur-trains"
_OSLO: Final = ZoneInfo("Europe/Oslo")  # Entur's feeds are Norway's: their service dates are Oslo's
_STOP_PLACE_ID: Final = re.compile(r"[A-Z]{3}:StopPlace:[0-9]+")  # the contract's pattern
_LONGEST_SLEEP: Final = 3600.0  # wake at least hourly, so a clock that jumps is noticed


def _timetable_source() -> SourceConfig:
    # the national zip is a few hundred MB and slow to serve; it changes once a day
    return SourceConfig(
        url=ENTUR_GTFS_URL,
        interval=86_400,
        timeout=900,
        max_bytes=2 * 1024**3,
        headers={"ET-Client-Name": ENTUR_CLIENT_NAME},
    )


def _realtime_source() -> SourceConfig:
    return SourceConfig(
        url=ENTUR_SIRI_ET_URL,
        interval=30,
        timeout=60,
        max_bytes=512 * 1024**2,
        headers={"ET-Client-Name": ENTUR_CLIENT_NAME},
    )


class TrainsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of the Entur trains adapter (see the module doc for an example)."""

    stop_places: Annotated[list[str], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: list(DRAMMEN_AREA)
    )
    """The stop places whose calls are published, as ids in Entur's register (``NSR:StopPlace:11``)."""
    timetable: SourceConfig = msgspec.field(default_factory=_timetable_source)
    """The GTFS zip: Entur's national feed by default."""
    realtime: SourceConfig | None = msgspec.field(default_factory=_realtime_source)
    """The SIRI ET document: Entur's Bane NOR data set by default; ``None`` for timetables only."""
    realtime_enabled: bool = True
    """``false`` publishes the timetable only (TOML cannot write ``realtime = None``)."""
    service_date: date | None = None
    """The service date whose scheduled calls are published; default today in Europe/Oslo, rolling
    over at midnight. Set it to replay a recorded day, such as 2018-08-28."""
    freight: bool = False
    """Also publish freight trains' calls (skipped by default: no one can board them)."""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for place in self.stop_places:
            if not _STOP_PLACE_ID.fullmatch(place):
                raise ValueError(
                    f"stop_places: {place!r} is not a stop place id of Entur's register, such as "
                    "NSR:StopPlace:11 (Drammen stasjon); look ids up at https://stoppested.entur.org"
                )
            if place in seen:
                raise ValueError(f"stop_places lists {place} twice")
            seen.add(place)
        if self.service_date is not None and not 1970 <= self.service_date.year < 9999:
            raise ValueError(f"service_date {self.service_date} is not a date a timetable can have")


class _Run:
    """The state of one run of the adapter: the timetable held, what was published, the SIRI
    document waiting for a timetable."""

    def __init__(self, config: TrainsConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.timetable: Timetable | None = None
        self.timetable_provenance: Provenance = Provenance.RECORDED
        self.timetable_digest = ""
        self.service_date: date | None = None
        self.held: Document | None = None
        self.seen = LastSeen()
        self.lock = asyncio.Lock()

    def today(self) -> date:
        """The service date to publish: the configured one, else today in Europe/Oslo."""
        if self.config.service_date is not None:
            return self.config.service_date
        return self.ctx.clock.now().astimezone(_OSLO).date()

    async def _reject(self, document: Document, rejected: list[Rejected]) -> None:
        await dead_letter_rejected(self.ctx, document, rejected)

    async def _publish(
        self,
        message: StopPlace | TrainCall,
        key: tuple[Hashable, ...],
        *,
        digest: str,
        provenance: Provenance,
        at: datetime | None,
    ) -> bool:
        if isinstance(message, TrainCall) and message.location is None and self.timetable is not None:
            place = self.timetable.stop_places.get(message.stop_place)
            if place is not None:  # where the call is: its stop place's point, from stops.txt
                message = msgspec.structs.replace(message, location=place.location)
        if not self.seen.changed(key, message):
            return False
        content = msgspec.json.encode(message).decode()
        event_id = stable_id(_ADAPTER, digest, *key, content)
        await self.ctx.publish(message, provenance=provenance, event_id=event_id, time=at)
        return True

    # -- the timetable ----------------------------------------------------------------------------

    async def on_timetable(self, document: Document) -> None:
        """A new GTFS document: publish the stop places and the service date's scheduled calls."""
        result = await asyncio.to_thread(parse_gtfs, document.body, self.config.stop_places)
        await self._reject(document, result.rejected)
        if result.missing:
            self.ctx.log.warning(
                "configured stop places are not in the timetable",
                missing=result.missing,
                location=document.location,
            )
        async with self.lock:
            self.timetable = result.timetable
            self.timetable_provenance = document.provenance
            self.timetable_digest = hashlib.sha256(document.body).hexdigest()[:16]
            for place_id in self.config.stop_places:
                place = result.timetable.stop_places.get(place_id)
                if place is not None:
                    await self._publish(
                        place,
                        ("stop-place", place_id),
                        digest=self.timetable_digest,
                        provenance=document.provenance,
                        at=document.fetched_at,
                    )
            self.service_date = self.today()
            published = await self._publish_scheduled(self.service_date)
            self.ctx.log.info(
                "timetable loaded",
                stop_places=len(result.timetable.stop_places),
                planned_calls=len(result.timetable.calls),
                service_date=self.service_date.isoformat(),
                published=published,
                rejected=len(result.rejected),
            )
            held, self.held = self.held, None
            if held is not None:
                try:
                    await self._realtime(held)
                except SourceFormatError as exc:  # checked when it came; kept for safety's sake
                    await self.ctx.dead_letter(held.raw(), reason=exc.reason, detail=str(exc))

    async def _publish_scheduled(self, service_date: date) -> int:
        assert self.timetable is not None
        published = 0
        for call in self.timetable.calls_on(service_date):
            key = ("scheduled", call.service_journey, call.stop_place, call.sequence)
            published += await self._publish(
                call,
                key,
                digest=self.timetable_digest,
                provenance=self.timetable_provenance,
                at=relevant_time(call),
            )
        return published

    async def roll_over(self) -> None:
        """At each midnight in Europe/Oslo, publish the new service date's scheduled calls."""
        while True:
            now = self.ctx.clock.now()
            tomorrow = now.astimezone(_OSLO).date() + timedelta(days=1)
            midnight = datetime.combine(tomorrow, time(0), tzinfo=_OSLO).astimezone(UTC)
            await self.ctx.clock.sleep(min(max((midnight - now).total_seconds(), 0.0), _LONGEST_SLEEP))
            async with self.lock:
                today = self.today()
                if self.timetable is None or today == self.service_date:
                    continue
                self.service_date = today
                published = await self._publish_scheduled(today)
                self.ctx.log.info(
                    "service date rolled over", service_date=today.isoformat(), published=published
                )

    # -- real time --------------------------------------------------------------------------------

    async def on_realtime(self, document: Document) -> None:
        """A new SIRI ET document: publish the calls in the area that changed."""
        async with self.lock:
            if self.timetable is None:
                # a malformed document raises here, so the poller dead-letters it now
                await asyncio.to_thread(parse_estimated_timetable, document.body, lambda _: False)
                self.held = document
                self.ctx.log.info("real-time document held until the timetable is loaded")
                return
            await self._realtime(document)

    async def _realtime(self, document: Document) -> None:
        timetable = self.timetable
        assert timetable is not None
        parsed = await asyncio.to_thread(
            parse_estimated_timetable, document.body, timetable.quays.__contains__
        )
        await self._reject(document, parsed.rejected)
        digest = hashlib.sha256(document.body).hexdigest()[:16]
        published = calls = freight = 0
        for journey in parsed.journeys:
            if journey.freight and not self.config.freight:
                freight += len(journey.calls)
                continue
            for call in journey.calls:
                calls += 1
                joined = join_call(timetable, journey, call)
                try:
                    valid = validate(joined)
                except msgspec.ValidationError as exc:
                    detail = (
                        f"journey {journey.journey_ref} at {call.stop_point}: "
                        f"a value the contract does not allow: {exc}"
                    )
                    await self.ctx.dead_letter(document.raw(call.xml), reason="out-of-range", detail=detail)
                    continue
                key = ("realtime", valid.service_journey, valid.stop_place, valid.sequence)
                published += await self._publish(
                    valid, key, digest=digest, provenance=document.provenance, at=relevant_time(valid)
                )
        self.ctx.log.debug(
            "real-time document",
            journeys=parsed.journeys_read,
            calls_in_area=calls,
            freight_calls_skipped=freight,
            published=published,
            rejected=len(parsed.rejected),
        )


class EnturTrains(Adapter[TrainsConfig]):
    """Trains at Drammen's stations: Entur's GTFS timetable and SIRI real-time data in, stop places and
    scheduled, estimated, actual and cancelled train calls out."""

    name = "entur-trains"
    Config = TrainsConfig
    produces = (StopPlace, TrainCall)

    async def run(self, ctx: Context) -> None:
        """Poll the timetable and the real-time source, and roll the service date over, until stopped."""
        config = self.config
        run = _Run(config, ctx)
        live = config.realtime if config.realtime_enabled else None
        sources = [config.timetable] if live is None else [config.timetable, live]
        async with http_session(*sources) as session, asyncio.TaskGroup() as tasks:
            timetable = Poller(ctx, config.timetable, run.on_timetable, name="timetable", session=session)
            tasks.create_task(timetable.run(), name="timetable")
            if live is not None:
                realtime = Poller(ctx, live, run.on_realtime, name="realtime", session=session)
                tasks.create_task(realtime.run(), name="realtime")
            if config.service_date is None:
                tasks.create_task(run.roll_over(), name="service-date")
            ctx.ready()
