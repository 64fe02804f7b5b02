"""The gateway's read-only NGSI-LD view: the mapping of contracts to Smart Data Models entities.

The HTTP half (further down) runs the real gateway on a real nats-server and reads it with
``ngsildclient``, an NGSI-LD client library from the FIWARE ecosystem, as well as with plain
requests for what the library does not ask.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from asyncio.subprocess import PIPE
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from adapters.gateway.ngsild_entity import Reading, entity_id, split_entity_id, to_entity, utc
from adapters.gateway.query import BadQuery, parse_coordinates, parse_georel, parse_id_pattern
from adapters.gateway.sdm import CORE_CONTEXT, Vocabulary, camel, context_document
from bus import Bus
from contracts import (
    AirQualityObserved,
    BeachObservation,
    BikeStationStatus,
    Classification,
    TrainCall,
    WeatherObserved,
    default_registry,
)
from tests.conftest import require_service
from tests.gateway_support import beach, running_gateway

TIME = "2018-08-29T10:00:00+02:00"


def json_of(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity as a client receives it (JSON has arrays, not tuples)."""
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(entity))
    return decoded


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary(
        c for c in default_registry() if c.__contract__.classification != Classification.PERSONAL
    )


def test_contracts_map_to_their_smart_data_models_types(vocabulary: Vocabulary) -> None:
    assert vocabulary.type_of("environment.beach-observation") == "WaterQualityObserved"
    assert vocabulary.type_of("environment.air-quality-observed") == "AirQualityObserved"
    assert vocabulary.type_of("environment.weather-observed") == "WeatherObserved"
    assert vocabulary.type_of("mobility.bike-station-status") == "BikeHireDockingStation"
    # a contract no model fits keeps a citybus type named after its event
    assert vocabulary.type_of("mobility.train-call") == "TrainCall"
    assert vocabulary.contract_of("BikeHireDockingStation") == "mobility.bike-station-status"
    iri = "https://smartdatamodels.org/dataModel.Environment/WaterQualityObserved"
    assert vocabulary.contract_of(iri) == "environment.beach-observation"
    assert vocabulary.contract_of("NoSuchType") is None
    assert "VolunteerSignup" not in vocabulary.types()  # personal contracts have no NGSI-LD face


def test_the_context_gives_full_iris_scoped_per_type(vocabulary: Vocabulary) -> None:
    document = context_document(vocabulary)
    terms, core = document["@context"]
    assert core == CORE_CONTEXT
    water = terms["WaterQualityObserved"]
    assert water["@id"] == "https://smartdatamodels.org/dataModel.Environment/WaterQualityObserved"
    assert water["@context"]["temperature"] == "https://smartdatamodels.org/dataModel.Environment/temperature"
    weather = terms["WeatherObserved"]["@context"]
    assert weather["dateObserved"] == "https://smartdatamodels.org/dataModel.Weather/dateObserved"
    assert (
        terms["TrainCall"]["@context"]["delaySeconds"]
        == "urn:citybus:contract:mobility.train-call#delaySeconds"
    )
    assert "location" not in water["@context"]  # the core context's GeoProperty, never redefined
    msgspec.json.encode(document)  # plain JSON all the way down


def test_a_beach_observation_is_a_normalized_water_quality_entity(vocabulary: Vocabulary) -> None:
    entity = json_of(to_entity(vocabulary, [Reading(data=BeachObservation.example(), time=TIME)]))
    assert entity["id"] == "urn:ngsi-ld:WaterQualityObserved:bragernes-strand"
    assert entity["type"] == "WaterQualityObserved"
    assert entity["temperature"] == {
        "type": "Property",
        "value": 15.7,
        "unitCode": "CEL",
        "observedAt": "2018-08-29T08:00:00Z",
    }
    assert entity["uvIndex"]["unitCode"] == "C62"
    assert entity["battery"]["unitCode"] == "P1"
    assert entity["dateObserved"]["value"] == {"@type": "DateTime", "@value": "2018-08-29T08:00:00Z"}
    assert entity["location"] == {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [10.2138, 59.7409]},
    }
    assert "site" not in entity  # the key is the id
    assert "source" not in entity  # absent stays absent, never null


def test_key_values_and_concise_shapes(vocabulary: Vocabulary) -> None:
    reading = Reading(data=BikeStationStatus.example(), time=TIME)
    simple = json_of(to_entity(vocabulary, [reading], fmt="keyValues"))
    assert simple["availableBikeNumber"] == 7
    assert simple["freeSlotNumber"] == 17
    assert simple["totalSlotNumber"] == 24
    assert simple["location"] == {"type": "Point", "coordinates": [10.2046, 59.7446]}
    assert simple["observationDate"] == "2018-08-29T08:00:00Z"
    concise = json_of(to_entity(vocabulary, [reading], fmt="concise"))
    assert concise["availableBikeNumber"] == {"value": 7, "observedAt": "2018-08-29T08:00:00Z"}
    assert concise["location"] == {"value": {"type": "Point", "coordinates": [10.2046, 59.7446]}}


def test_air_quality_spreads_each_pollutant_into_its_own_attribute(vocabulary: Vocabulary) -> None:
    pm10 = AirQualityObserved.example()
    earlier = datetime(2018, 8, 29, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    no2 = msgspec.structs.replace(pm10, component="NO2", value=31.5, observed_at=earlier)
    newer_pm10 = msgspec.structs.replace(pm10, value=20.0)
    readings = [
        Reading(data=pm10, time="2018-08-29T09:00:00+02:00"),
        Reading(data=no2, time="2018-08-29T09:00:00+02:00"),
        Reading(data=newer_pm10, time=TIME),
    ]
    entity = to_entity(vocabulary, readings)
    assert entity["pm10"]["value"] == 20.0
    assert entity["pm10"]["unitCode"] == "GQ"
    assert entity["no2"] == {
        "type": "Property",
        "value": 31.5,
        "unitCode": "GQ",
        "observedAt": "2018-08-29T07:00:00Z",
    }
    assert "component" not in entity and "value" not in entity


def test_projection_keeps_only_the_attributes_asked_for(vocabulary: Vocabulary) -> None:
    entity = to_entity(
        vocabulary,
        [Reading(data=WeatherObserved.example(), time=TIME)],
        attrs=frozenset({"temperature"}),
    )
    assert set(entity) == {"id", "type", "temperature"}


def test_ids_round_trip_even_with_colons_in_the_entity() -> None:
    call = TrainCall.example()
    identifier = entity_id("TrainCall", call.entity())
    assert identifier == "urn:ngsi-ld:TrainCall:NSR:StopPlace:11"
    assert split_entity_id(identifier) == ("TrainCall", "NSR:StopPlace:11")
    assert split_entity_id("urn:other:TrainCall:x") is None
    assert split_entity_id("urn:ngsi-ld:TrainCall") is None


def test_times_become_utc() -> None:
    assert utc("2018-08-29T10:00:00+02:00") == "2018-08-29T08:00:00Z"
    assert utc("2018-08-29T08:00:00Z") == "2018-08-29T08:00:00Z"


def test_camel_case() -> None:
    assert camel("uv_index") == "uvIndex"
    assert camel("station") == "station"


def test_geo_queries_parse_strictly() -> None:
    query = parse_georel("near;maxDistance==500", "Point", "[10.2046,59.7446]")
    assert query is not None
    assert (query.near.lat, query.near.lon, query.near.radius) == (59.7446, 10.2046, 500.0)
    assert parse_georel(None, None, None) is None
    for georel, geometry, coordinates, said in [
        ("within", "Polygon", "[[1,2]]", "geometry='Polygon' is not supported"),
        ("near;maxDistance==x", "Point", "[10,59]", "is not supported"),
        ("near;maxDistance==500", "Point", "[59.7,100.2]", "latitude 100.2 is out of range"),
        ("near;maxDistance==500", None, "[10,59]", "together"),
    ]:
        with pytest.raises(BadQuery, match=said):
            parse_georel(georel, geometry, coordinates)


def test_coordinates_refuse_nesting_and_size_in_constant_work() -> None:
    with pytest.raises(BadQuery, match="far too long"):
        parse_coordinates("[" * 100_000)
    with pytest.raises(BadQuery, match=r"must be a Point's \[lon,lat\]"):
        parse_coordinates("[[[[[[1]]]]]]")


def test_id_patterns_refuse_catastrophic_backtracking() -> None:
    assert parse_id_pattern("urn:ngsi-ld:TrainCall:.*").fullmatch("urn:ngsi-ld:TrainCall:NSR:StopPlace:11")
    assert parse_id_pattern("urn:ngsi-ld:(?:TrainCall|StopPlace):.*").fullmatch("urn:ngsi-ld:StopPlace:x")
    assert parse_id_pattern("urn:ngsi-ld:X:(?:ab)*")
    for risky in ("(a+)+$", "(a|a)*b", "((a)+)*", "(a{2,})+", "(?:a?)*"):
        with pytest.raises(BadQuery, match="nesting quantifiers"):
            parse_id_pattern(risky)
    with pytest.raises(BadQuery, match="not a regular expression"):
        parse_id_pattern("urn:(")


# -- over HTTP: the real gateway on a real nats-server, read by an NGSI-LD client library -------------

NGSI = "/ngsi-ld/v1"
# Bragernes strand, and Sota fjordpark about 3.7 km east-north-east of it.
BRAGERNES = (59.7409, 10.2138)
SOTA = (59.7513, 10.2767)


NGSILDCLIENT = "ngsildclient==0.5.2"
CLIENT_ENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "citybus-tests" / "ngsildclient"
SCRIPT = Path(__file__).resolve().parent / "ngsi" / "read_with_ngsildclient.py"


@pytest.fixture(scope="module")
def ngsildclient_python() -> Path:
    """A Python with ngsildclient, in a virtual environment of its own (created once, from PyPI):
    its old pins (rich, httpx, networkx) stay out of citybus's environment."""
    python = CLIENT_ENV / "bin" / "python"
    if not (CLIENT_ENV / "installed").is_file():
        made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(CLIENT_ENV)], capture_output=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", NGSILDCLIENT]
        installed = (
            made.returncode == 0 and subprocess.run(pip, capture_output=True, timeout=600).returncode == 0
        )
        if not installed:
            require_service(
                "ngsildclient", f"{NGSILDCLIENT} could not be installed from PyPI into {CLIENT_ENV}"
            )
        (CLIENT_ENV / "installed").write_text(NGSILDCLIENT)
    return python


async def settled_entity(http: aiohttp.ClientSession, identifier: str, done: Callable[[Any], bool]) -> Any:
    """The entity once ``done(entity)`` holds (the feed reads what is stored while it serves)."""
    async with asyncio.timeout(10):
        while True:
            async with http.get(f"{NGSI}/entities/{identifier}?options=keyValues") as response:
                if response.status == 200:
                    body = await response.json()
                    if done(body):
                        return body
            await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_ngsildclient_reads_entities_by_id_type_and_place(
    bus: Bus, entity: str, ngsildclient_python: Path
) -> None:
    here, there = f"{entity}-here", f"{entity}-there"
    await bus.publish_durable(beach(here, 15.5, lat=BRAGERNES[0], lon=BRAGERNES[1]))
    await bus.publish_durable(beach(there, 12.25, lat=SOTA[0], lon=SOTA[1]))
    water = "urn:ngsi-ld:WaterQualityObserved:"
    async with running_gateway(bus) as gateway, aiohttp.ClientSession(gateway.url) as http:
        await settled_entity(http, water + there, lambda e: e["temperature"] == 12.25)
        pattern = f"{water}{entity}-.*"
        args = (water + here, water + there, pattern, str(BRAGERNES[1]), str(BRAGERNES[0]))
        process = await asyncio.create_subprocess_exec(
            str(ngsildclient_python), str(SCRIPT), gateway.url, *args, stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        got = json.loads(out)
        by_id = got["by_id"]
        assert by_id["id"] == water + here and by_id["type"] == "WaterQualityObserved"
        assert by_id["temperature"] == 15.5 and by_id["unit"] == "CEL"
        assert by_id["coordinates"] == [BRAGERNES[1], BRAGERNES[0]]
        assert by_id["context"] == [f"{gateway.url}/ngsi-ld/v1/context.jsonld"]
        assert got["by_type"][water + here] == 15.5 and got["by_type"][water + there] == 12.25
        assert got["near"] == [[water + here, 15.5]]
        assert got["both"] == [water + here, water + there]  # nearest first
        assert "WaterQualityObserved" in got["types"]


@pytest.mark.slow
async def test_content_negotiation_formats_and_paging(bus: Bus, entity: str) -> None:
    await bus.publish_durable(beach(entity, 18.0, lat=BRAGERNES[0], lon=BRAGERNES[1]))
    identifier = f"urn:ngsi-ld:WaterQualityObserved:{entity}"
    async with running_gateway(bus) as gateway, aiohttp.ClientSession(gateway.url) as http:
        await settled_entity(http, identifier, lambda e: e["temperature"] == 18.0)
        context = f"{gateway.url}{NGSI}/context.jsonld"

        async with http.get(f"{NGSI}/entities/{identifier}", headers={"Accept": "application/json"}) as r:
            assert r.status == 200 and r.content_type == "application/json"
            assert r.headers["Link"] == (
                f'<{context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
            )
            plain = await r.json()
            assert "@context" not in plain and plain["temperature"]["type"] == "Property"
        async with http.get(f"{NGSI}/entities/{identifier}", headers={"Accept": "application/ld+json"}) as r:
            assert r.content_type == "application/ld+json" and "Link" not in r.headers
            assert (await r.json(content_type=None))["@context"] == [context]

        url = f"{NGSI}/entities?type=WaterQualityObserved&id={identifier}&options=concise&attrs=temperature"
        async with http.get(url) as r:
            [concise] = await r.json()
            assert concise == {
                "id": identifier,
                "type": "WaterQualityObserved",
                "temperature": {"value": 18.0, "unitCode": "CEL", "observedAt": "2018-08-28T12:00:00Z"},
            }
        # attrs selects too: an entity with none of the attributes asked for is no match
        async with http.get(
            f"{NGSI}/entities?type=WaterQualityObserved&id={identifier}&attrs=nonexistent"
        ) as r:
            assert r.status == 200 and await r.json() == []

        url = f"{NGSI}/entities?type=WaterQualityObserved&idPattern=urn:ngsi-ld:WaterQualityObserved:t-.*"
        async with http.get(f"{url}&count=true&limit=1&offset=0") as r:
            total = int(r.headers["NGSILD-Results-Count"])
            assert total >= 1 and len(await r.json()) == 1

        async with http.get(f"{NGSI}/context.jsonld") as r:
            document = await r.json(content_type=None)
            assert document["@context"][0]["WaterQualityObserved"]["@id"].startswith(
                "https://smartdatamodels.org/"
            )

        async with http.get(f"{NGSI}/types?details=true") as r:
            details = {t["typeName"]: t for t in await r.json()}
            assert "temperature" in details["WaterQualityObserved"]["attributeNames"]


@pytest.mark.slow
async def test_errors_are_ngsi_ld_problem_details(bus: Bus, entity: str) -> None:
    await bus.publish_durable(beach(entity, 18.0))
    errors = "https://uri.etsi.org/ngsi-ld/errors/"
    async with running_gateway(bus) as gateway, aiohttp.ClientSession(gateway.url) as http:
        cases: list[tuple[str, int, str, str]] = [
            (
                f"{NGSI}/entities/urn:ngsi-ld:WaterQualityObserved:{entity}-gone",
                404,
                "ResourceNotFound",
                "no entity",
            ),
            (f"{NGSI}/entities/urn:ngsi-ld:NoSuchType:x", 404, "ResourceNotFound", "urn:ngsi-ld:<Type>"),
            (f"{NGSI}/entities", 400, "BadRequestData", "say what to read"),
            (
                f"{NGSI}/entities?type=WaterQualityObserved&q=temperature>20",
                400,
                "BadRequestData",
                "q is not",
            ),
            (
                f"{NGSI}/entities?type=WaterQualityObserved&georel=near;maxDistance==10&geometry=Point"
                "&coordinates=" + "[" * 2000,
                400,
                "BadRequestData",
                "far too long",
            ),
            (
                f"{NGSI}/entities?type=WaterQualityObserved&georel=within&geometry=Polygon&coordinates=[[1,2]]",
                400,
                "BadRequestData",
                "not supported",
            ),
            (
                f"{NGSI}/entities?type=WaterQualityObserved&idPattern=(a%2B)%2B$",
                400,
                "BadRequestData",
                "nesting",
            ),
            (f"{NGSI}/entities?type=WaterQualityObserved&limit=5000", 400, "BadRequestData", "at most 1000"),
            (f"{NGSI}/entities?type=WaterQualityObserved&options=fancy", 400, "BadRequestData", "keyValues"),
        ]
        for url, status, kind, said in cases:
            async with http.get(url) as r:
                problem = await r.json(content_type=None)
                assert (r.status, problem["type"]) == (status, errors + kind), (url, problem)
                assert said in problem["detail"], (url, problem)
        async with http.get(
            f"{NGSI}/entities?type=WaterQualityObserved", headers={"Accept": "text/html"}
        ) as r:
            assert r.status == 406
        async with http.get(f"{NGSI}/entities?type=DeviceStatus") as r:
            assert r.status == 401  # internal data needs a token, as in the entity API
        async with http.get(f"{NGSI}/entities?type=NoSuchType") as r:
            assert (r.status, await r.json()) == (200, [])  # NGSI-LD: an unknown type has no entities
        async with http.post(
            f"{NGSI}/entityOperations/query", data=b'{"type": "Query", "entities": ' + b"[" * 5000
        ) as r:
            problem = await r.json(content_type=None)
            assert (r.status, problem["type"]) == (400, errors + "InvalidRequest")
        async with http.post(f"{NGSI}/entities", json={"id": "urn:ngsi-ld:X:y", "type": "X"}) as r:
            assert r.status == 405  # read-only: the bus is the only way in


@pytest.mark.slow
async def test_air_quality_stations_show_every_pollutant(bus: Bus, entity: str) -> None:
    base = msgspec.structs.replace(AirQualityObserved.example(), station=entity)
    await bus.publish_durable(msgspec.structs.replace(base, component="PM10", value=14.0))
    identifier = f"urn:ngsi-ld:AirQualityObserved:{entity}"
    async with running_gateway(bus) as gateway, aiohttp.ClientSession(gateway.url) as http:
        for component, value in (("NO2", 31.5), ("PM2.5", 7.0)):  # one message per pollutant
            await bus.publish_durable(msgspec.structs.replace(base, component=component, value=value))
        station = await settled_entity(http, identifier, lambda e: "pm25" in e)
        assert (station["pm10"], station["no2"], station["pm25"]) == (14.0, 31.5, 7.0)
        assert "component" not in station and "value" not in station
