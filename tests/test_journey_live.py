"""Live train calls change the journey planner's answers: the real SIRI-ET snapshot of 2018-08-28
09:08, read by the ``entur-trains`` adapter and published on a real nats-server, reaches the
``journey-planner`` adapter, and a request over the bus gets the changed plan.

The snapshot's facts used here: R10 ``NSB:ServiceJourney:1-1821-311`` was timetabled out of
Drammen at 08:57 and left at 09:01 (4 minutes late); ``NSB:ServiceJourney:1-2288-807``'s departure
from Sandefjord at 09:18 is cancelled.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from adapters.journey import JourneyPlanner, Planner
from adapters.testing import AdapterHarness
from adapters.trains import EnturTrains
from bus import Bus
from bus.server import EmbeddedServer
from contracts import JourneyPlan, JourneyRequest, TrainCall
from tests.conftest import open_bus
from tests.http_files import SOURCES
from tests.waiting import eventually

GTFS = SOURCES / "transport" / "entur_nsb_gtfs_2018.zip"
SIRI = SOURCES / "transport" / "siri_et_2018-08-28T0908_drammen.xml"
CEST = timezone(timedelta(hours=2))
R10 = "NSB:ServiceJourney:1-1821-311"
SHORT_TURNED = "NSB:ServiceJourney:1-2288-807"
DRAMMEN, SANDEFJORD, HAMAR = ("NSR:StopPlace:11", "NSR:StopPlace:108", "NSR:StopPlace:219")


@pytest.fixture
async def live_bus(nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    b = await open_bus(nats_server)
    yield b
    await b.drain()


async def ask(bus: Bus, origin: str, destination: str, depart: datetime, **options: Any) -> JourneyPlan:
    request = JourneyRequest(
        request_id=secrets.token_hex(8),
        origin=origin,
        destination=destination,
        depart=depart,
        max_walk=0,
        bikes=False,
        **options,
    )
    return (await bus.request(request, JourneyPlan, timeout=10)).data


def trains_config(stop_places: list[str]) -> dict[str, Any]:
    return {
        "stop_places": stop_places,
        "service_date": "2018-08-28",
        "timetable": {"file": str(GTFS)},
        "realtime": {"file": str(SIRI)},
    }


def planned(harness: AdapterHarness) -> Planner:
    """The planner inside a running journey-planner harness."""
    adapter = harness.adapter
    assert isinstance(adapter, JourneyPlanner) and adapter.planner is not None
    return adapter.planner


async def wait_live(planner: AdapterHarness, trains: AdapterHarness, journey: str, status: str) -> None:
    """Until the trains adapter has published ``journey``'s live call and the planner applied it."""
    await eventually(
        lambda: any(
            e.data.service_journey == journey and e.data.status == status for e in trains.published(TrainCall)
        )
    )
    await planner.settle()
    assert planned(planner).live.applied > 0


async def test_a_late_r10_moves_the_plan_and_can_still_be_caught(live_bus: Bus) -> None:
    async with AdapterHarness(
        JourneyPlanner, {"timetable": {"file": str(GTFS)}}, bus=live_bus, instance="jp-live"
    ) as planner:
        # by the timetable, leaving Drammen at 08:50 for Hamar takes the R10 at 08:57
        before = await ask(live_bus, DRAMMEN, HAMAR, datetime(2018, 8, 28, 8, 50, tzinfo=CEST))
        assert before.status == "ok", before.message
        first = before.journeys[0].legs[0]
        assert (first.service_journey, first.known) == (R10, "timetable")
        assert first.departure == datetime(2018, 8, 28, 8, 57, tzinfo=CEST)
        # by the timetable, at 08:58 that train is gone
        missed = await ask(live_bus, DRAMMEN, HAMAR, datetime(2018, 8, 28, 8, 58, tzinfo=CEST))
        assert missed.journeys[0].legs[0].service_journey != R10

        async with AdapterHarness(
            EnturTrains, trains_config([DRAMMEN]), bus=live_bus, instance="trains-live"
        ) as trains:
            await wait_live(planner, trains, R10, "actual")
            after = await ask(live_bus, DRAMMEN, HAMAR, datetime(2018, 8, 28, 8, 50, tzinfo=CEST))
            leg = after.journeys[0].legs[0]
            assert (leg.service_journey, leg.known) == (R10, "live")
            assert leg.departure == datetime(2018, 8, 28, 9, 1, tzinfo=CEST)
            assert leg.aimed_departure == datetime(2018, 8, 28, 8, 57, tzinfo=CEST)
            # the delay is carried on to Hamar: the plan arrives 4 minutes later than timetabled
            assert after.arrival is not None and before.arrival is not None
            assert after.arrival - before.arrival == timedelta(minutes=4)
            assert leg.delay_seconds == 240
            # and at 08:58 the late train can still be caught
            caught = await ask(live_bus, DRAMMEN, HAMAR, datetime(2018, 8, 28, 8, 58, tzinfo=CEST))
            assert caught.journeys[0].legs[0].service_journey == R10
            assert missed.arrival is not None and caught.arrival is not None
            assert caught.arrival < missed.arrival


async def test_a_cancelled_call_is_never_boarded(live_bus: Bus) -> None:
    async with AdapterHarness(
        JourneyPlanner, {"timetable": {"file": str(GTFS)}}, bus=live_bus, instance="jp-cancel"
    ) as planner:
        leave = datetime(2018, 8, 28, 8, 50, tzinfo=CEST)
        before = await ask(live_bus, DRAMMEN, HAMAR, leave)
        assert before.journeys[0].legs[0].service_journey == R10
        # the R10's call at Drammen, as the trains adapter publishes a cancellation
        cancelled = TrainCall(
            service_journey=R10,
            line="R10",
            operator="NSB",
            stop_place=DRAMMEN,
            quay="NSR:Quay:22",
            stop_name="Drammen stasjon",
            sequence=10,
            aimed_departure=datetime(2018, 8, 28, 8, 57, tzinfo=CEST),
            status="cancelled",
        )
        await live_bus.publish(cancelled, provenance="vendor")
        await eventually(lambda: planned(planner).live.applied > 0)
        after = await ask(live_bus, DRAMMEN, HAMAR, leave)
        assert after.status == "ok", after.message
        ridden = {leg.service_journey for journey in after.journeys for leg in journey.legs}
        assert R10 not in ridden
        assert after.arrival is not None and before.arrival is not None
        assert after.arrival > before.arrival


async def test_a_train_whose_last_departure_is_cancelled_still_lets_travellers_off(live_bus: Bus) -> None:
    """The snapshot marks 1-2288-807's departure from Sandefjord, where it ends, cancelled while it
    arrives on time: a journey to Sandefjord on it stays."""
    async with AdapterHarness(
        JourneyPlanner, {"timetable": {"file": str(GTFS)}}, bus=live_bus, instance="jp-terminus"
    ) as planner:
        leave = datetime(2018, 8, 28, 8, 10, tzinfo=CEST)
        before = await ask(live_bus, DRAMMEN, SANDEFJORD, leave)
        assert before.journeys[0].legs[-1].service_journey == SHORT_TURNED
        async with AdapterHarness(
            EnturTrains, trains_config([SANDEFJORD]), bus=live_bus, instance="trains-terminus"
        ) as trains:
            await wait_live(planner, trains, SHORT_TURNED, "cancelled")
            after = await ask(live_bus, DRAMMEN, SANDEFJORD, leave)
            assert after.journeys[0].legs[-1].service_journey == SHORT_TURNED
            assert after.arrival == before.arrival
