"""GTFS feeds other than the shipped NSB one, with the problems real feeds have: a calendar that
runs "for ever", a quay whose stop place stops.txt lacks, plain GTFS stop ids and stops without a
coordinate. The planner loads them and its plans still fit their contract."""

from __future__ import annotations

import io
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.journey import JourneyPlanner, Planner, read_feed
from adapters.testing import AdapterHarness
from bus.server import EmbeddedServer
from contracts import JourneyPlan, JourneyRequest
from tests.conftest import open_bus

CEST = timezone(timedelta(hours=2))
MORNING = datetime(2018, 8, 28, 7, 0, tzinfo=CEST)
WEEKLY = "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
STOP_TIMES = "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"


def gtfs(**members: str) -> bytes:
    """A one-trip feed (A 08:00 → B 08:30 every day of the NSB feed's validity), members replaced."""
    files = {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nNSB,NSB,https://nsb.no,Europe/Oslo\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon,parent_station,location_type\n"
        "NSR:StopPlace:1,A,59.7,10.2,,1\nNSR:Quay:1,A,59.7,10.2,NSR:StopPlace:1,0\n"
        "NSR:StopPlace:2,B,59.9,10.7,,1\nNSR:Quay:2,B,59.9,10.7,NSR:StopPlace:2,0\n",
        "routes.txt": "route_id,agency_id,route_short_name,route_type\nNSB:Line:1,NSB,L1,2\n",
        "trips.txt": "route_id,service_id,trip_id\nNSB:Line:1,S1,T1\n",
        "stop_times.txt": f"{STOP_TIMES}T1,08:00:00,08:00:00,NSR:Quay:1,1\n"
        "T1,08:30:00,08:30:00,NSR:Quay:2,2\n",
        "calendar.txt": f"{WEEKLY}S1,1,1,1,1,1,1,1,20180818,20181208\n",
    }
    files.update(members)
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return body.getvalue()


def plan(planner: Planner, origin: str, destination: str) -> JourneyPlan:
    request = JourneyRequest(request_id="f", origin=origin, destination=destination, depart=MORNING)
    answer = planner.answer(request, MORNING)
    # what the requester reads: the plan as its contract decodes it
    return msgspec.json.decode(msgspec.json.encode(answer), type=JourneyPlan)


def test_a_calendar_that_runs_to_9999_loads() -> None:
    feed = read_feed(gtfs(**{"calendar.txt": f"{WEEKLY}S1,1,1,1,1,1,0,0,20180818,99991231\n"}))
    assert (feed.valid_from.isoformat(), feed.valid_to.isoformat()) == ("2018-08-20", "9999-12-31")
    assert plan(Planner(feed), "A", "B").status == "ok"


def test_a_quay_whose_stop_place_is_missing_is_a_place_of_its_own() -> None:
    stops = "stop_id,stop_name,stop_lat,stop_lon,parent_station\nNSR:Quay:1,A,59.7,10.2,NSR:StopPlace:1\n"
    feed = read_feed(
        gtfs(
            **{"stops.txt": stops + "NSR:StopPlace:2,B,59.9,10.7,\nNSR:Quay:2,B,59.9,10.7,NSR:StopPlace:2\n"}
        )
    )
    assert not feed.rejected, feed.rejected
    assert feed.place("NSR:Quay:1") is not None
    assert plan(Planner(feed), "A", "B").status == "ok"


def test_plain_gtfs_ids_and_stops_without_a_coordinate_still_fit_the_plan_contract() -> None:
    feed = read_feed(
        gtfs(
            **{
                "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n1001,A,,\n1002,B,59.9,10.7\n",
                "stop_times.txt": f"{STOP_TIMES}T1,08:00:00,08:00:00,1001,1\nT1,08:30:00,08:30:00,1002,2\n",
            }
        )
    )
    answer = plan(Planner(feed), "A", "B")
    assert answer.status == "ok", answer.message
    assert answer.origin is not None and answer.origin.name == "A"


async def test_the_timetable_runs_out_at_the_end_of_its_last_day_in_its_own_zone(
    nats_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = tmp_path / "feed.zip"
    feed.write_bytes(gtfs())
    monkeypatch.setenv("TZ", "America/New_York")  # the host's zone must not matter
    time.tzset()
    bus = await open_bus(nats_server)
    try:
        async with AdapterHarness(
            JourneyPlanner, {"timetable": {"file": str(feed)}}, bus=bus, instance="jp-tz"
        ):
            value = bus.metrics.registry.get_sample_value(
                "citybus_journey_timetable_valid_to_timestamp_seconds"
            )
    finally:
        await bus.drain()
        monkeypatch.undo()
        time.tzset()
    assert value == datetime(2018, 12, 8, 23, 59, 59, tzinfo=ZoneInfo("Europe/Oslo")).timestamp()
