"""A journey request sent raw over NATS by a client that is not citybus: one that does not fit the
contract is refused with the reason (not left to time out) and dead-lettered, and the planner goes
on answering the next."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from adapters.journey import JourneyPlanner
from adapters.testing import AdapterHarness
from bus import Bus
from bus.control import BAD_REQUEST, ERROR_CODE_HEADER, ERROR_HEADER
from bus.envelope import build_headers, new_event_id
from bus.server import EmbeddedServer
from bus.subjects import request_filter
from contracts import JourneyPlan, JourneyRequest
from tests.conftest import open_bus
from tests.http_files import SOURCES
from tests.waiting import eventually

GTFS = SOURCES / "transport" / "entur_nsb_gtfs_2018.zip"
CEST = timezone(timedelta(hours=2))


@pytest.fixture
async def raw_bus(nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    b = await open_bus(nats_server)
    yield b
    await b.drain()


@pytest.mark.parametrize(
    "body",
    [
        b'{"request_id": "r1", "origin": "drammen"}',
        b'{"request_id": "r1", "origin": "drammen", "destination": "Oslo S", "max_walk": 1e9}',
        b'{"request_id": "../..", "origin": "drammen", "destination": "Oslo S"}',
        b'{"request_id": "r1", "origin": "", "destination": "Oslo S", "depart": "2018-08-28T08:00"}',
        b"\xff\xfe not json",
    ],
)
async def test_a_malformed_raw_request_is_refused_and_dead_lettered(raw_bus: Bus, body: bytes) -> None:
    async with AdapterHarness(
        JourneyPlanner, {"timetable": {"file": str(GTFS)}}, bus=raw_bus, instance="jp-raw"
    ) as planner:
        headers = build_headers(
            JourneyRequest.__contract__,
            event_id=new_event_id(),
            source="/t",
            time=datetime(2018, 8, 28, 8, 0, tzinfo=CEST),
            provenance="manual",
        )
        subject = request_filter(JourneyRequest).replace("*", "r1")
        reply = await raw_bus.nc.request(subject, body, headers=headers, timeout=5)
        assert reply.data == b"" and reply.headers is not None
        assert reply.headers[ERROR_CODE_HEADER] == BAD_REQUEST
        assert reply.headers[ERROR_HEADER].startswith("invalid-body")
        await eventually(lambda: len(planner.dead_letters) == 1)
        # and the next request is answered
        request = JourneyRequest(
            request_id=secrets.token_hex(8),
            origin="drammen",
            destination="Oslo S",
            depart=datetime(2018, 8, 28, 8, 0, tzinfo=CEST),
        )
        plan = (await raw_bus.request(request, JourneyPlan, timeout=10)).data
        assert plan.status == "ok", plan.message
