"""Journey planning through the HTTP gateway: ``/api/v1/journey`` on a real gateway and a real
nats-server, answered by the real journey planner (the shipped NSB timetable), and what the gateway
answers when no planner does.

The gateway's own connections here are the harness's (no access control, see
tests/gateway_support.py); tests/test_gateway_access.py shows the ``public`` user's rights under
``citybus up``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from adapters.gateway.journey import CITY_TIME
from adapters.journey import JourneyPlanner
from adapters.testing import AdapterHarness
from bus import Bus
from bus.envelope import Event
from contracts import Contract, JourneyPlan, JourneyRequest
from tests.gateway_support import RunningGateway, running_gateway

ROUTE = "/api/v1/journey"
PLACES = "name a stop place (drammen, Oslo S, NSR:StopPlace:11) or a point LAT,LON"
PARAMETERS = "from, to, depart, arrive_by, max_walk, bikes, change, max_changes"
FIELDS = "arrive_by, bikes, change, depart, destination, max_changes, max_walk, origin"


@pytest.fixture
async def gateway(quiet_bus: Bus) -> AsyncIterator[RunningGateway]:
    """A gateway, and no journey planner yet."""
    async with running_gateway(quiet_bus, journey_timeout=0.5) as running:
        yield running


async def ask(gateway: RunningGateway, query: str = "", *, body: Any = None) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of ``GET /api/v1/journey?query`` (or a POST of ``body``)."""
    async with aiohttp.ClientSession() as http:
        if body is None:
            async with http.get(f"{gateway.url}{ROUTE}?{query}") as response:
                return response.status, await response.json(content_type=None)
        async with http.post(gateway.url + ROUTE, json=body) as response:
            return response.status, await response.json(content_type=None)


# ---------------------------------------------------------------------------- no planner


async def test_without_a_planner_the_route_says_so_with_a_503(gateway: RunningGateway) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gateway.url}{ROUTE}?from=drammen&to=Oslo%20S&depart=2018-08-28T08:00") as response,
    ):
        assert response.status == 503
        assert response.content_type == "application/problem+json"
        assert response.headers["Retry-After"] == "5"
        problem = await response.json(content_type=None)
    assert problem["status"] == 503
    assert problem["detail"].startswith("no journey planner is running on the bus")


async def test_a_planner_that_does_not_answer_in_time_is_a_503(
    gateway: RunningGateway, quiet_bus: Bus
) -> None:
    asked, late = asyncio.Event(), asyncio.Event()

    async def slow(event: Event[JourneyRequest]) -> JourneyPlan:
        asked.set()
        await late.wait()  # answers only after the gateway gave up
        return JourneyPlan(request_id=event.data.request_id, status="no-route", message="too late")

    await quiet_bus.serve(JourneyRequest, slow)
    await quiet_bus.flush()  # the server knows the responder before the gateway's connection asks
    status, problem = await ask(gateway, "from=drammen&to=asker")
    late.set()
    assert asked.is_set()
    assert status == 503
    assert problem["detail"] == "the journey planner did not answer within 0.5 s: ask again shortly"


async def test_a_planner_that_fails_or_answers_no_plan_is_a_502(
    gateway: RunningGateway, quiet_bus: Bus
) -> None:
    async def answer(event: Event[JourneyRequest]) -> Contract:
        if event.data.origin == "fail":
            raise RuntimeError("the planner broke")
        return event.data  # the request back: no plan

    await quiet_bus.serve(JourneyRequest, answer)
    await quiet_bus.flush()
    status, problem = await ask(gateway, "from=fail&to=asker")
    assert (status, problem["title"]) == (502, "Bad Gateway")
    assert problem["detail"] == "the journey planner failed on this request: its log says why"
    assert "broke" not in problem["detail"]  # what failed inside is for the operator's log
    status, problem = await ask(gateway, "from=drammen&to=asker")
    assert (status, problem["title"]) == (502, "Bad Gateway")
    assert (
        problem["detail"] == "the journey planner answered with no journey plan: the gateway's log says why"
    )


# ---------------------------------------------------------------------------- what the gateway refuses


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        (
            "to=asker",
            f"from is missing: {PLACES}",
        ),
        (
            "from=drammen",
            f"to is missing: {PLACES}",
        ),
        (
            "from=a&to=b&depart=tomorrow",
            "depart='tomorrow' is not an ISO 8601 time: send e.g. depart=2018-08-28T08:00 (Drammen's time) "
            "or 2018-08-28T08:00:00+02:00",
        ),
        (
            "from=a&to=b&depart=2018-08-28T08:00&arrive_by=2018-08-28T10:00",
            "give depart or arrive_by, not both",
        ),
        ("from=a&to=b&max_walk=far", "max_walk='far' must be a whole number of metres, e.g. max_walk=0"),
        ("from=a&to=b&max_walk=6000", "max_walk: Expected `int` <= 5000"),
        ("from=a&to=b&max_changes=11", "max_changes: Expected `int` <= 10"),
        ("from=a&to=b&change=-1", "change='-1' must be a whole number of seconds, e.g. change=0"),
        ("from=a&to=b&bikes=no", "bikes='no' must be true or false"),
        ("from=a&to=b&change=%D9%A3", "change='٣' must be a whole number of seconds, e.g. change=0"),
        (
            "from=a&to=b&arriveBy=2018-08-28T10:00",
            f"unknown parameter arriveBy: the journey route reads {PARAMETERS}",
        ),
        ("from=a&from=b&to=c", "from given more than once: give each parameter once"),
        ("from=" + "x" * 201 + "&to=b", "from: Expected `str` of length <= 200"),
    ],
)
async def test_a_bad_parameter_gets_one_line_saying_what_to_send(
    gateway: RunningGateway, query: str, detail: str
) -> None:
    status, problem = await ask(gateway, query)
    assert (status, problem["title"], problem["detail"]) == (400, "Bad Request", detail)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"origin": "a", "destination": "b", "request_id": "x"},
            "leave request_id out: the gateway gives each request its own",
        ),
        (
            {"origin": "a", "to": "b"},
            f"unknown field to: a journey request has {FIELDS}",
        ),
        ({"origin": "a", "destination": "b", "bikes": "yes"}, "bikes: Expected `bool`, got `str`"),
        ({"origin": "", "destination": "b"}, f"origin is missing: {PLACES}"),
        ({"origin": "a", "destination": "b", "max_walk": 6000}, "max_walk: Expected `int` <= 5000"),
        (
            ["drammen"],
            'the body must be a JSON object, e.g. {"origin": "drammen", "destination": "Oslo S", '
            '"depart": "2018-08-28T08:00"}',
        ),
    ],
)
async def test_a_bad_body_gets_one_line_too(gateway: RunningGateway, body: Any, detail: str) -> None:
    status, problem = await ask(gateway, body=body)
    assert (status, problem["detail"]) == (400, detail)


# ---------------------------------------------------------------------------- the real planner

FEED = Path(__file__).resolve().parents[1] / "sandbox/data/sources/transport/entur_nsb_gtfs_2018.zip"
DRAMMEN_OSLO = "from=drammen&to=Oslo%20S&depart=2018-08-28T08:00"


@pytest.fixture
async def planner(quiet_bus: Bus) -> AsyncIterator[AdapterHarness]:
    """The journey planner on the shipped NSB timetable, answering on the gateway's server."""
    async with AdapterHarness(
        JourneyPlanner, {"timetable": {"file": str(FEED)}}, bus=quiet_bus, instance="journey-planner"
    ) as running:
        # Ready means subscribed on its connection; the flush makes sure the server knows it before
        # the gateway's own connection asks (a request in between would find no responder).
        await quiet_bus.flush()
        yield running


async def test_a_journey_from_drammen_to_oslo_s_goes_by_train(
    gateway: RunningGateway, planner: AdapterHarness
) -> None:
    status, plan = await ask(gateway, DRAMMEN_OSLO)
    assert (status, plan["status"]) == (200, "ok"), plan
    first = plan["journeys"][0]
    assert {leg["mode"] for leg in first["legs"]} >= {"rail"}
    departure = datetime.fromisoformat(plan["departure"])
    assert departure >= datetime(2018, 8, 28, 8, 0, tzinfo=CITY_TIME)
    assert departure.utcoffset() == timedelta(hours=2)  # an ISO time with its offset
    assert plan["arrival"] == first["arrival"] and plan["departure"] == first["departure"]
    assert plan["destination"]["stop_place"] == "NSR:StopPlace:337"  # Oslo S


async def test_the_gateway_answers_what_the_planner_answers_on_the_bus(
    gateway: RunningGateway, planner: AdapterHarness, quiet_bus: Bus
) -> None:
    status, through_gateway = await ask(gateway, DRAMMEN_OSLO + "&max_walk=0&bikes=false")
    request = JourneyRequest(
        request_id="direct",
        origin="drammen",
        destination="Oslo S",
        depart=datetime(2018, 8, 28, 8, 0, tzinfo=CITY_TIME),
        max_walk=0,
        bikes=False,
    )
    direct = msgspec.json.decode(msgspec.json.encode((await quiet_bus.request(request, JourneyPlan)).data))
    assert status == 200
    assert {**through_gateway, "request_id": "direct"} == direct


async def test_an_unknown_place_is_a_404_naming_the_nearest_names(
    gateway: RunningGateway, planner: AdapterHarness
) -> None:
    status, plan = await ask(gateway, "from=drammen&to=Oslo%20Sentralstasjonen%20X&depart=2018-08-28T08:00")
    assert (status, plan["status"]) == (404, "unknown-place"), plan
    assert plan["suggestions"] and plan["message"]


async def test_a_time_outside_the_timetable_is_a_422_with_its_dates(
    gateway: RunningGateway, planner: AdapterHarness
) -> None:
    status, plan = await ask(gateway, "from=drammen&to=Oslo%20S&depart=2026-12-07T08:00")
    assert (status, plan["status"]) == (422, "outside-validity"), plan
    assert (plan["valid_from"], plan["valid_to"]) == ("2018-08-18", "2018-12-08")


async def test_a_posted_request_arriving_by_a_time(gateway: RunningGateway, planner: AdapterHarness) -> None:
    body = {"origin": "drammen", "destination": "Oslo S", "arrive_by": "2018-08-28T09:00", "max_walk": 0}
    status, plan = await ask(gateway, body=body)
    assert (status, plan["status"]) == (200, "ok"), plan
    assert datetime.fromisoformat(plan["arrival"]) <= datetime(2018, 8, 28, 9, 0, tzinfo=CITY_TIME)


async def test_the_same_place_twice_is_the_planner_s_bad_request_a_400_with_the_plan(
    gateway: RunningGateway, planner: AdapterHarness
) -> None:
    status, plan = await ask(gateway, "from=drammen&to=NSR:StopPlace:11&depart=2018-08-28T08:00")
    assert (status, plan["status"]) == (400, "bad-request"), plan
    assert plan["message"] == "the origin and the destination are both Drammen stasjon"


async def test_no_route_is_an_answer_a_200(gateway: RunningGateway, planner: AdapterHarness) -> None:
    status, plan = await ask(gateway, "from=drammen&to=Bod%C3%B8&depart=2018-08-28T08:00&max_changes=0")
    assert (status, plan["status"], plan["journeys"]) == (200, "no-route", []), plan
    assert plan["message"].startswith("no route from Drammen stasjon to Bodø stasjon on 2018-08-28")
