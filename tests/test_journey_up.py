"""``citybus up`` as a newcomer runs it plans journeys: ``citybus journey drammen "Oslo S" --depart
2018-08-28T08:00`` answers with real trains, over the bus, as the ``public`` user; bad requests get
one line and exit 1; with no planner running the command says what to start."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.test_cli import Up, run_citybus, start_up

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    running = await start_up(tmp_path_factory.mktemp("journey-up"), sandbox=True)
    try:
        yield running
    finally:
        await running.stop()


async def test_citybus_journey_answers_with_real_trains(up: Up) -> None:
    result = await run_citybus(
        "journey", "drammen", "Oslo S", "--depart", "2018-08-28T08:00", cwd=up.cwd, env=up.env
    )
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    # NSB:ServiceJourney L13 leaves Drammen stasjon at 08:05 and is at Oslo S at 08:41 (stop_times.txt)
    assert lines[0] == "Drammen stasjon 08:05 → Oslo S 08:41, no changes (L13)"
    assert any(
        "rail L13" in line and "Drammen stasjon → Oslo S" in line and "(timetable)" in line for line in lines
    )


async def test_citybus_journey_json_carries_every_leg_and_iso_times(up: Up) -> None:
    result = await run_citybus(
        "journey",
        "NSR:StopPlace:11",
        "Trondheim S",
        "--depart",
        "2018-08-28T08:00",
        "--json",
        cwd=up.cwd,
        env=up.env,
    )
    assert result.returncode == 0, result
    plan = json.loads(result.stdout)
    assert plan["status"] == "ok"
    assert plan["departure"].endswith("+02:00") and plan["arrival"].endswith("+02:00")
    first = plan["journeys"][0]
    assert first["departure"] == plan["departure"] and first["arrival"] == plan["arrival"]
    assert first["legs"][0]["origin"]["stop_place"] == "NSR:StopPlace:11"
    assert first["legs"][-1]["destination"]["name"] == "Trondheim S"
    assert all(
        leg["known"] in ("timetable", "live", "estimated") for j in plan["journeys"] for leg in j["legs"]
    )
    # the Pareto set: each later journey has fewer changes
    changes = [j["changes"] for j in plan["journeys"]]
    assert changes == sorted(changes, reverse=True) and len(set(changes)) == len(changes)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("drammen", "Osloo", "--depart", "2018-08-28T08:00"),
            "no stop place is called 'Osloo': did you mean Oslo S",
        ),
        (
            ("drammen", "Oslo S", "--depart", "2019-03-01T08:00"),
            "the timetable runs 2018-08-18 to 2018-12-08",
        ),
        (("drammen", "Oslo S"), "is outside it"),
        (("drammen", "drammen stasjon", "--depart", "2018-08-28T08:00"), "are both Drammen stasjon"),
        (("drammen", "Oslo S", "--depart", "28.08.2018"), "is not a time: write 2018-08-28T08:00"),
        (("drammen", "Oslo S", "--depart", "2018-08-28T08:00", "--max-walk", "9000"), "max_walk"),
        (("drammen", "Oslo S", "--depart", "2018-08-28T08:00", "--change", "-1"), "change"),
    ],
)
async def test_a_bad_request_gets_one_line(up: Up, args: tuple[str, ...], says: str) -> None:
    result = await run_citybus("journey", *args, cwd=up.cwd, env=up.env)
    assert result.returncode in (1, 2), result
    assert says in result.stderr, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result


async def test_no_route_says_the_latest_departure_that_works(up: Up) -> None:
    result = await run_citybus(
        "journey",
        "drammen",
        "Halden",
        "--depart",
        "2018-12-08T23:30",
        "--max-walk",
        "0",
        cwd=up.cwd,
        env=up.env,
    )
    assert result.returncode == 1, result
    # the timetable's last evening: no later train, and no next morning's either
    assert "no route from Drammen stasjon to Halden stasjon leaving at or after 23:30" in result.stderr
    assert "the latest departure that works is 21:17" in result.stderr


async def test_without_a_planner_the_command_says_what_to_start(tmp_path: Path) -> None:
    # a configuration that names an adapter section runs no defaults: no journey planner
    running = await start_up(tmp_path, sandbox=False)
    try:
        result = await run_citybus(
            "journey", "drammen", "Oslo S", "--depart", "2018-08-28T08:00", cwd=running.cwd, env=running.env
        )
        assert result.returncode == 1, result
        assert "no journey planner answers on this bus: start `citybus up`" in result.stderr
    finally:
        await running.stop()
