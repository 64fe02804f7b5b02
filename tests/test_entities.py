"""What flows is visible: ``citybus entities``, ``GET /entities`` and ``recording info``, end to end.

One real ``citybus up`` (a child process, access control on) replays the shipped Drammen day as
fast as it can, once, into JetStream. Then the real commands and the ops endpoint list every
contract's entities with their locations, read from the streams; ``recording info`` lists the same
entities from the file; and the relation contract's content is what the locations on the bus say
(the nearest stations, worked out here again).
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.adapter import DRAMMEN_DAY
from sandbox.contents import read_subjects
from tests.test_cli import Background, Up, assert_one_line_error, citybus_env, run_citybus

pytestmark = pytest.mark.slow

CONFIG = """\
[adapters.sandbox]
adapter = "sandbox-replay"
speed = 0
loop = false
"""


def recorded() -> dict[str, dict[str, int]]:
    """The shipped day's entities per contract name, with their message counts."""
    found: dict[str, dict[str, int]] = defaultdict(dict)
    for summary in read_subjects(DRAMMEN_DAY):
        found[summary.type.rsplit(".v", 1)[0]][summary.entity] = summary.messages
    return dict(found)


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    base = tmp_path_factory.mktemp("entities")
    data_dir, cwd = base / "data", base / "cwd"
    cwd.mkdir()
    (cwd / "citybus.toml").write_text(CONFIG)
    env = citybus_env(data_dir)
    process = await Background.start("up", cwd=cwd, env=env)
    try:
        nats_url = (await process.wait_said(r"^citybus is up: NATS at (nats://\S+)$")).group(1)
        ops_url = (await process.wait_said(r"^\s+metrics\s+(http://\S+)/metrics$")).group(1)
        instance = json.loads((data_dir / "instance.json").read_text())
        running = Up(process, data_dir, cwd, env, nats_url, ops_url, instance)
        total = sum(sum(e.values()) for e in recorded().values())
        async with asyncio.timeout(120):  # the whole day, stored
            while True:
                status, body = await get(f"{ops_url}/entities")
                stored = sum(e["messages"] for c in body.get("contracts", {}).values() for e in c["entities"])
                if status == 200 and stored >= total:
                    break
                await asyncio.sleep(0.5)
        yield running
    finally:
        try:
            await process.stop(signal.SIGINT)
        finally:
            await process.kill()


def assert_every_entity_located(contracts: dict[str, Any]) -> None:
    assert {name: {e["entity"]: e["messages"] for e in c["entities"]} for name, c in contracts.items()} == (
        recorded()
    )
    for name, listing in contracts.items():
        for entity in listing["entities"]:
            location = entity["location"]
            assert location is not None and location["type"] == "Point", (name, entity["entity"])
            if location.get("approximate"):
                assert location["uncertainty"] > 0 and location["placement"], (name, entity["entity"])
            assert entity["rate_per_hour"] > 0
            assert entity["value"] is not None and entity["last_time"]


async def test_citybus_entities_lists_every_contracts_entities_with_locations(up: Up) -> None:
    result = await run_citybus("entities", "--json", cwd=up.cwd, env=up.env)
    assert result.returncode == 0, result
    listing = json.loads(result.stdout)
    assert listing["unreadable"] == {}
    assert_every_entity_located(listing["contracts"])
    beaches = listing["contracts"]["environment.beach-observation"]
    assert beaches["classification"] == "public"
    assert len(beaches["entities"]) == 7

    text = await run_citybus("entities", "environment.beach-neighbours", cwd=up.cwd, env=up.env)
    assert text.returncode == 0, text
    lines = text.stdout.splitlines()
    assert lines[0] == "environment.beach-neighbours (public): 7 entities"
    assert any(line.split()[0] == "bragernes-strand" for line in lines[1:])


async def test_an_unknown_contract_is_one_line_naming_the_nearest(up: Up) -> None:
    result = await run_citybus("entities", "environment.beach-observatio", cwd=up.cwd, env=up.env)
    assert_one_line_error(result, 1, "environment.beach-observation")


async def test_the_ops_endpoint_lists_the_same_and_never_a_personal_contract(up: Up) -> None:
    status, body = await get(f"{up.ops_url}/entities")
    assert status == 200
    assert body["account"] == "SANDBOX"
    assert_every_entity_located(body["contracts"])
    assert all(c["classification"] != "personal" for c in body["contracts"].values())
    status, one = await get(f"{up.ops_url}/entities/mobility.stop-place")
    assert status == 200 and list(one["contracts"]) == ["mobility.stop-place"]
    assert len(one["contracts"]["mobility.stop-place"]["entities"]) == 5
    status, refused = await get(f"{up.ops_url}/entities/community.volunteer-signup")
    assert status == 403 and "personal" in refused["error"]
    status, unknown = await get(f"{up.ops_url}/entities/no.such-contract")
    assert status == 404
    status, city = await get(f"{up.ops_url}/entities?account=city")
    assert status == 200 and city["account"] == "CITY" and city["contracts"] == {}


def haversine(a: list[float], b: list[float]) -> float:
    (lon1, lat1), (lon2, lat2) = a, b
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


async def test_the_relation_on_the_bus_is_the_nearest_station_by_the_locations_on_the_bus(up: Up) -> None:
    status, body = await get(f"{up.ops_url}/entities")
    assert status == 200
    contracts = body["contracts"]

    def points(name: str) -> dict[str, list[float]]:
        return {e["entity"]: e["location"]["coordinates"] for e in contracts[name]["entities"]}

    sites = points("environment.beach-observation")
    weather = points("environment.weather-observed")
    air = points("environment.air-quality-observed")
    relations = {e["entity"]: e["value"] for e in contracts["environment.beach-neighbours"]["entities"]}
    assert set(relations) == set(sites)
    for site, relation in relations.items():
        for field, stations in (("weather_station", weather), ("air_quality_station", air)):
            distances = {name: haversine(sites[site], point) for name, point in stations.items()}
            nearest = min(distances, key=lambda name: (distances[name], name))
            assert relation[field]["station"] == nearest, (site, field)
            assert relation[field]["distance"] == pytest.approx(distances[nearest], abs=0.1)


async def test_recording_info_lists_subjects_and_entities(tmp_path: Path) -> None:
    env = citybus_env(tmp_path / "data")
    result = await run_citybus("recording", "info", str(DRAMMEN_DAY), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result
    info = json.loads(result.stdout)
    assert len(info["by_subject"]) == info["subjects"] == 66
    entities = {
        kind.rsplit(".v", 1)[0]: {e["entity"]: e["messages"] for e in rows}
        for kind, rows in info["entities"].items()
    }
    assert entities == recorded()
    assert {s["subject"] for s in info["by_subject"]} == {s.subject for s in read_subjects(DRAMMEN_DAY)}
    first = info["entities"]["environment.beach-neighbours.v1"][0]
    assert first["first"] <= first["last"]
    text = await run_citybus("recording", "info", str(DRAMMEN_DAY), cwd=tmp_path, env=env)
    assert "  entities (messages, first .. last)" in text.stdout
    assert "    environment.beach-neighbours.v1: 7" in text.stdout
