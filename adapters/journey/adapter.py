"""The ``journey-planner`` adapter: plans journeys on the bus, by request/reply.

``citybus up`` runs it by default next to the sandbox (instance ``journey-planner``, in the
``SANDBOX`` account), on the NSB timetable the sandbox ships; in production municipal IT names its
timetable::

    [adapters.journey-planner]
    adapter = "journey-planner"

    [adapters.journey-planner.timetable]
    url = "https://storage.googleapis.com/marduk-production/outbound/gtfs/rb_nsb-aggregated-gtfs.zip"
    interval = 86400                       # or: file = "timetables/nsb.zip"

It answers :class:`~contracts.JourneyRequest` on ``city.public.rpc.mobility.journey-request.*``
with a :class:`~contracts.JourneyPlan`; it follows :class:`~contracts.TrainCall` (live times,
cancellations) and the bike racks (:class:`~contracts.BikeStation`,
:class:`~contracts.BikeStationStatus`).

Decisions, and why:

* **The timetable is a polled source** (:mod:`adapters.polling`): a URL or a file, fetched again
  when it changes; a feed that cannot be used is dead-lettered with its reason and the planner
  keeps answering on the last good one.
* **Ready once the first timetable is loaded**, so the first request of a fresh ``citybus up``
  gets an answer, not a refusal. Loading runs in a thread: the bus keeps moving meanwhile.
* **Live calls heard before the feed (or a new feed) are kept** and applied to it, the newest per
  call, so a timetable reload does not forget that a train is late.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import msgspec

from adapters.base import Adapter
from adapters.context import Context
from adapters.journey.feed import read_feed
from adapters.journey.metrics import journey_metrics
from adapters.journey.planner import Planner
from adapters.journey.racks import Racks
from adapters.polling import Document, Poller, SourceConfig, http_session
from bus import Event
from contracts import BikeStation, BikeStationStatus, JourneyPlan, JourneyRequest, TrainCall

__all__ = ["JourneyConfig", "JourneyPlanner"]

_KEPT_CALLS = 50_000


class JourneyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of ``journey-planner``."""

    timetable: SourceConfig
    """The GTFS feed to plan on: ``url`` or ``file`` (``citybus up``'s default: the sandbox's)."""
    live: bool = True
    """Follow live train calls (expected and actual times, cancellations)."""
    bikes: bool = True
    """Follow the city-bike racks, for bike legs."""


class JourneyPlanner(Adapter[JourneyConfig]):
    """Journey requests in, journey plans out: RAPTOR on a GTFS timetable, with live train calls,
    walking and city bikes."""

    name = "journey-planner"
    Config = JourneyConfig
    consumes = (TrainCall, BikeStation, BikeStationStatus)
    produces = (JourneyPlan,)
    answers = (JourneyRequest,)
    default_instance = "journey-planner"
    default_section: ClassVar[dict[str, Any]] = {"account": "sandbox", "clock": "wall"}

    def __init__(self, config: JourneyConfig) -> None:
        super().__init__(config)
        self.planner: Planner | None = None
        """The planner on the latest good timetable, once loaded (tests and benchmarks look inside)."""
        self.racks = Racks()
        self._calls: dict[tuple[str, str, int], TrainCall] = {}

    async def run(self, ctx: Context) -> None:
        """Load the timetable, follow the live data, answer requests, until stopped."""
        source = self.config.timetable
        metrics = journey_metrics(ctx.registry)
        serving = False

        async def on_timetable(document: Document) -> None:
            nonlocal serving
            started = time.perf_counter()
            # parsing raises SourceFormatError for a feed that cannot be used: the poller dead-letters it
            planner = await asyncio.to_thread(self._build, document.body)
            self.planner = planner
            for call in list(self._calls.values()):
                planner.take_call(call)
            feed = planner.feed
            metrics.loaded(
                len(feed.trips), len(feed.places), time.perf_counter() - started, feed.valid_to, feed.tz
            )
            ctx.log.info(
                "timetable loaded",
                location=document.location,
                trips=len(feed.trips),
                stop_places=len(feed.places),
                valid_from=feed.valid_from.isoformat(),
                valid_to=feed.valid_to.isoformat(),
                rejected=len(feed.rejected),
                seconds=round(time.perf_counter() - started, 3),
            )
            if not serving:
                serving = True
                await ctx.serve(JourneyRequest, respond)
                ctx.ready()

        async def respond(event: Event[JourneyRequest]) -> JourneyPlan:
            planner = self.planner
            assert planner is not None  # requests are served only once a timetable is loaded
            started = time.perf_counter()
            plan = planner.answer(event.data, ctx.clock.now())
            metrics.answered(plan.status, time.perf_counter() - started)
            return plan

        async def on_call(event: Event[TrainCall]) -> None:
            call = event.data
            key = (call.service_journey, call.stop_place, call.sequence)
            self._calls.pop(key, None)
            self._calls[key] = call
            if len(self._calls) > _KEPT_CALLS:
                del self._calls[next(iter(self._calls))]
            if self.planner is not None:
                metrics.live(self.planner.take_call(call))

        async def on_station(event: Event[BikeStation]) -> None:
            self.racks.station(event.data)

        async def on_status(event: Event[BikeStationStatus]) -> None:
            self.racks.status(event.data)

        if self.config.live:
            await ctx.subscribe(TrainCall, on_call)
        if self.config.bikes:
            await ctx.subscribe(BikeStation, on_station)
            await ctx.subscribe(BikeStationStatus, on_status)
        async with http_session(source) as session:
            await Poller(ctx, source, on_timetable, name="timetable", session=session).run()

    def _build(self, body: bytes) -> Planner:
        return Planner(read_feed(body), racks=self.racks)
