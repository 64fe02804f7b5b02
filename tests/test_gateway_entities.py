"""The gateway's entity API: last values, history and distance filters.

The query parsers first (pure), then the routes over HTTP against the real gateway on a real
nats-server, with readings published through the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.gateway.query import (
    MAX_LIST,
    BadQuery,
    Near,
    parse_coordinates,
    parse_georel,
    parse_id_pattern,
    parse_list,
    parse_near,
    parse_since,
    sort_by_distance,
)
from bus import Bus, subjects
from bus.envelope import build_headers, new_event_id
from contracts import BeachObservation
from tests.gateway_support import beach, running_gateway

# Bragernes strand, Drammen; Sota fjordpark is about 3.7 km east-north-east of it.
BRAGERNES = (59.7409, 10.2138)
SOTA = (59.7513, 10.2767)


def test_near_and_radius() -> None:
    near = parse_near("59.7409,10.2138", "500")
    assert near == Near(lat=59.7409, lon=10.2138, radius=500.0)
    assert parse_near(None, None) is None
    assert parse_near(" 59.7409 , 10.2138 ", None) == Near(lat=59.7409, lon=10.2138)


@pytest.mark.parametrize(
    ("near", "radius", "said"),
    [
        ("59.74", None, "must be LAT,LON"),
        ("59.74,10.2,3", None, "must be LAT,LON"),
        ("north,10.2", None, "'north' is not a number"),
        ("10.2,200", None, "longitude 200.0 is out of range"),
        ("95,10", None, "latitude 95.0 is out of range"),
        ("nan,10", None, "not a finite number"),
        ("59.74,10.2", "-5", "must be a distance in metres"),
        ("59.74,10.2", "far", "'far' is not a number"),
        (None, "500", "radius needs a point"),
        ("1," * 5000, None, "at most 2048 are read"),
    ],
)
def test_bad_near_says_what_to_fix(near: str | None, radius: str | None, said: str) -> None:
    with pytest.raises(BadQuery, match=said):
        parse_near(near, radius)


def test_since_is_a_moment_or_a_window() -> None:
    now = 1_800_000_000.0
    assert parse_since(None, now) is None
    assert parse_since("600", now) == now - 600
    assert parse_since("2027-01-15T07:00:00Z", now) == now - 3600
    assert parse_since("2027-01-15T08:00:00+01:00", now) == now - 3600
    with pytest.raises(BadQuery, match="no UTC offset"):
        parse_since("2027-01-15T08:00:00", now)
    with pytest.raises(BadQuery, match="neither seconds"):
        parse_since("yesterday", now)
    with pytest.raises(BadQuery, match="0 or more"):
        parse_since("-5", now)


def test_lists() -> None:
    assert parse_list("entity", "a,b") == ["a", "b"]
    with pytest.raises(BadQuery, match="empty item"):
        parse_list("entity", "a,,b")
    with pytest.raises(BadQuery, match=f"at most {MAX_LIST}"):
        parse_list("entity", ",".join(["a"] * (MAX_LIST + 1)))


def test_sorting_by_haversine_distance() -> None:
    places = {"sota": SOTA, "bragernes": BRAGERNES, "nowhere": None}
    near = Near(lat=BRAGERNES[0], lon=BRAGERNES[1])
    ranked = sort_by_distance(near, list(places), places.get)
    assert [name for _, name in ranked] == ["bragernes", "sota"]  # no place, no distance: left out
    assert ranked[0][0] == 0.0
    assert 3600 < ranked[1][0] < 3800
    within = sort_by_distance(Near(lat=BRAGERNES[0], lon=BRAGERNES[1], radius=1000), list(places), places.get)
    assert [name for _, name in within] == ["bragernes"]


@settings(max_examples=300, deadline=None)
@given(
    near=st.text(max_size=80), radius=st.one_of(st.none(), st.text(max_size=20)), since=st.text(max_size=40)
)
def test_any_text_is_a_value_or_a_bad_query(near: str, radius: str | None, since: str) -> None:
    """Whatever a caller sends, the parsers answer with a value or a BadQuery, never anything else."""
    for parse in (
        lambda: parse_near(near, radius),
        lambda: parse_since(since, 1_800_000_000.0),
        lambda: parse_list("entity", near),
        lambda: parse_coordinates(near),
        lambda: parse_georel(since, "Point", near),
        lambda: parse_id_pattern(near),
    ):
        try:
            parse()
        except BadQuery:
            pass


# -- over HTTP, against the real gateway on a real nats-server ----------------------------------------

API = "/api/v1/contracts"
BEACHES = f"{API}/environment.beach-observation"


async def get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, str, Any]:
    """``(status, content type, decoded JSON body)`` of a GET."""
    async with http.get(url, headers=headers) as response:
        body = await response.read()
        return response.status, response.content_type, msgspec.json.decode(body) if body else None


async def settled(http: aiohttp.ClientSession, url: str, done: Callable[[Any], bool]) -> Any:
    """The body of ``url`` once ``done(body)`` holds: a feed reads its streams' recent history
    while it already serves, so what was stored just before the gateway started may take a moment
    (a test failure, not a timing assertion, if it never comes)."""
    async with asyncio.timeout(10):
        while True:
            status, _, body = await get(http, url)
            if status == 200 and done(body):
                return body
            await asyncio.sleep(0.02)


async def forge(bus: Bus, entity: str, body: bytes) -> None:
    """Store a message on ``entity``'s beach subject, with every CloudEvents header, that does not
    fit the contract: the broker lets anyone with the right to the subject store it."""
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/tests/forger",
        time=datetime.now(UTC),
        provenance="manual",
    )
    await bus.js.publish(subjects.contract_filter(BeachObservation, entity), body, headers=headers)


@pytest.mark.slow
async def test_last_values_history_and_filters_over_http(bus: Bus, entity: str) -> None:
    here, there = f"{entity}-here", f"{entity}-there"
    await bus.publish_durable(beach(here, 15.0, lat=BRAGERNES[0], lon=BRAGERNES[1]))
    await bus.publish_durable(beach(there, 12.0, lat=SOTA[0], lon=SOTA[1]))
    async with running_gateway(bus) as gateway, aiohttp.ClientSession(gateway.url) as http:
        for water in (16.0, 17.5):  # stored before it started, and while it runs
            await bus.publish_durable(beach(here, water, lat=BRAGERNES[0], lon=BRAGERNES[1]))
        await settled(
            http, f"{BEACHES}/entities/{here}", lambda body: body["data"]["water_temperature"] == 17.5
        )
        status, kind, listed = await get(http, f"{BEACHES}/entities?entity={here},{there}")
        assert (status, kind) == (200, "application/json")
        assert [(e["entity"], e["data"]["water_temperature"]) for e in listed] == [
            (here, 17.5),
            (there, 12.0),
        ]
        first = listed[0]
        assert first["specversion"] == "1.0" and first["type"] == "environment.beach-observation.v1"
        assert first["subject"] == f"city.public.environment.beach-observation.{here}"
        assert first["contract"] == "environment.beach-observation" and first["classification"] == "public"

        # one entity, by name or name@version; CloudEvents' own media type when asked for
        status, _, one = await get(http, f"{BEACHES}@1/entities/{here}")
        assert status == 200 and one == first
        status, kind, _ = await get(http, f"{BEACHES}/entities/{here}", Accept="application/cloudevents+json")
        assert (status, kind) == (200, "application/cloudevents+json")

        # history, oldest first, and a window
        history = await settled(http, f"{BEACHES}/entities/{here}/history", lambda body: len(body) == 3)
        assert [e["data"]["water_temperature"] for e in history] == [15.0, 16.0, 17.5]
        _, _, recent = await get(http, f"{BEACHES}/entities/{here}/history?since=3600")
        assert len(recent) == 3
        _, _, none = await get(http, f"{BEACHES}/entities/{here}/history?since=2999-01-01T00:00:00Z")
        assert none == []

        # nearest first, each with its distance; a radius cuts
        near = f"near={BRAGERNES[0]},{BRAGERNES[1]}"
        _, _, ranked = await get(http, f"{BEACHES}/entities?entity={there},{here}&{near}")
        assert [e["entity"] for e in ranked] == [here, there]
        assert ranked[0]["distance"] == 0.0 and 3600 < ranked[1]["distance"] < 3800
        assert ranked[0]["data"]["water_temperature"] == 17.5  # the event is whole behind the distance
        _, _, close = await get(http, f"{BEACHES}/entities?entity={there},{here}&{near}&radius=1000")
        assert [e["entity"] for e in close] == [here]

        # what the caller may read, with entity counts
        status, _, contracts = await get(http, API)
        by_name = {c["name"]: c for c in contracts}
        assert by_name["environment.beach-observation"]["entities"] >= 2
        assert by_name["environment.beach-observation"]["href"] == f"{BEACHES}@1/entities"
        assert {c["classification"] for c in contracts} == {"public"}


@pytest.mark.slow
async def test_mistakes_are_answered_with_what_to_fix(bus: Bus, entity: str) -> None:
    await bus.publish_durable(beach(entity, 15.0))
    async with running_gateway(bus) as gateway, aiohttp.ClientSession(gateway.url) as http:
        cases = [
            (f"{BEACHES}/entities?near=59.74", 400, "must be LAT,LON"),
            (f"{BEACHES}/entities?near=59.74,10.2&radius=far", 400, "'far' is not a number"),
            (f"{BEACHES}/entities?radius=100", 400, "radius needs a point"),
            (f"{BEACHES}/entities?near=" + "[" * 2000, 400, "must be LAT,LON"),
            (f"{BEACHES}/entities/{entity}/history?since=yesterday", 400, "neither seconds"),
            (
                f"{API}/environment.beach-observatio/entities",
                404,
                "did you mean environment.beach-observation",
            ),
            (f"{BEACHES}@7/entities", 404, "unknown contract environment.beach-observation v7"),
            (f"{BEACHES}/entities/{entity}x", 404, f"did you mean {entity}"),
            (f"{API}/operations.device-status/entities", 401, "needs a bearer token"),
            (f"{API}/community.volunteer-signup/entities", 403, "never serves personal data"),
        ]
        for url, status, said in cases:
            got, kind, problem = await get(http, url)
            assert (got, kind) == (status, "application/problem+json"), url
            assert said in problem["detail"], (url, problem)
            assert problem["status"] == status
        # a query string far beyond any sensible size is refused before any handler runs
        async with http.get(f"{BEACHES}/entities?entity=" + "a," * 20_000) as response:
            assert response.status in (400, 414)
        status, _, last = await get(http, f"{BEACHES}/entities/{entity}")  # and it still serves
        assert status == 200 and last["data"]["water_temperature"] == 15.0


@pytest.mark.slow
async def test_a_message_that_does_not_fit_its_contract_is_never_served(bus: Bus, entity: str) -> None:
    only_bad = f"{entity}-bad"
    await bus.publish_durable(beach(entity, 14.0))
    await forge(bus, entity, b'{"site": "x", "water_temperature": "warm"}')
    await forge(bus, only_bad, b"[" * 10_000)
    async with running_gateway(bus) as gateway, aiohttp.ClientSession(gateway.url) as http:
        # the subject's last message is the forged one: the entity's last value is the one before
        last = await settled(http, f"{BEACHES}/entities/{entity}", lambda body: "data" in body)
        assert last["data"]["water_temperature"] == 14.0
        history = await settled(http, f"{BEACHES}/entities/{entity}/history", lambda body: len(body) >= 1)
        assert [e["data"]["water_temperature"] for e in history] == [14.0]
        status, _, _ = await get(http, f"{BEACHES}/entities/{only_bad}")
        assert status == 404
        _, _, listed = await get(http, f"{BEACHES}/entities?entity={entity},{only_bad}")
        assert [e["entity"] for e in listed] == [entity]
