"""The recorded Drammen day shipped with citybus, and the builder that makes it.

The shipped file is checked as a user meets it (it opens, every message is a valid contract, it
holds what ``sandbox/data/README.md`` says), and the builder is checked to make that very file
again from the same seed, and to refuse inputs its adapters dead-letter.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
import structlog
from mcap.reader import make_reader
from mcap.records import Chunk, ChunkIndex, Footer, MessageIndex, Schema, SummaryOffset
from mcap.stream_reader import StreamReader

import sandbox.drammen as drammen
from adapters.instances import parse_instance
from adapters.vicotee import SITES, VicoteeBeach
from contracts import default_registry
from sandbox.contents import read_info
from sandbox.drammen import BuildError, build_day, main
from sandbox.drammen import air as air_generator
from sandbox.drammen.beach import UNITS, device_config
from sandbox.drammen.clock import DayClock
from sandbox.recording import read_messages

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "sandbox" / "data" / "drammen-2018-08-28.mcap"
VOLUNTEERS = ROOT / "sandbox" / "data" / "drammen-2018-08-28-volunteers.mcap"
README = ROOT / "sandbox" / "data" / "README.md"
OSLO = ZoneInfo("Europe/Oslo")
DAY_START = datetime(2018, 8, 28, 0, 0, tzinfo=OSLO)
DAY_END = datetime(2018, 8, 29, 0, 0, tzinfo=OSLO)

# What the shipped recording holds, per contract and provenance: mirrors sandbox/data/README.md.
COUNTS = {
    ("community.opportunity.v1", "synthetic"): 18,  # 4 offered, again at each sign-up and withdrawal
    ("environment.air-quality-observed.v1", "synthetic"): 216,  # 3 stations x 3 components x 24 h
    ("environment.beach-neighbours.v1", "synthetic"): 7,  # one per site: its nearest stations
    ("environment.beach-observation.v1", "synthetic"): 168,  # 7 units x 24 h
    ("environment.weather-forecast.v1", "synthetic"): 4,  # 00, 06, 12, 18 h
    ("environment.weather-observed.v1", "synthetic"): 48,  # 2 stations x 24 h
    ("mobility.bike-station-status.v1", "synthetic"): 604,  # only when a rack's count changes
    ("mobility.bike-station.v1", "recorded"): 16,  # the OSM racks
    ("mobility.stop-place.v1", "recorded"): 5,  # the Drammen area's stations
    ("mobility.train-call.v1", "recorded"): 505,  # 443 scheduled, 30 actual, 32 estimated
}


# What the day's personal recording holds, beside it: all of it generated.
PERSONAL_COUNTS = {
    ("community.volunteer-activity.v1", "synthetic"): 8,  # only with consent to statistics
    ("community.volunteer-signup.v1", "synthetic"): 15,  # 13 sign-ups, a change, a withdrawal
}


def joint_counts(path: Path) -> dict[tuple[str, str], int]:
    counts: Counter[tuple[str, str]] = Counter()
    for message in read_messages(path):
        counts[(message.type, message.headers["ce-provenance"])] += 1
    return dict(counts)


def bodies(contract: str) -> list[tuple[datetime, dict[str, Any]]]:
    """(time in Oslo, decoded body) of every message of one contract in the shipped recording."""
    return [
        (m.time.astimezone(OSLO), json.loads(m.data))
        for m in read_messages(SHIPPED)
        if m.type == f"{contract}.v1"
    ]


# -- the shipped file -----------------------------------------------------------------------------


def test_the_shipped_recording_opens_in_citybus_and_in_mcaps_own_reader() -> None:
    info = read_info(SHIPPED)
    assert info.complete
    assert (info.messages, info.subjects) == (1591, 66)
    assert SHIPPED.stat().st_size < 1_000_000  # small enough to ship in the wheel
    meta = info.metadata
    assert meta["seed"] == "20180828"
    assert meta["builder"] == f"sandbox.drammen.build {drammen.BUILDER_VERSION}"
    for credit in ("Entur", "NLOD 2.0", "© OpenStreetMap contributors", "ODbL", "MET Norway", "synthetic"):
        assert credit in meta["attribution"]
    with SHIPPED.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        assert summary.statistics.message_count == 1591
        seen = 0
        for schema, channel, message in reader.iter_messages():
            assert schema is not None and schema.encoding == "jsonschema"
            assert json.loads(schema.data)  # the contract's JSON Schema
            assert channel.message_encoding == "json"
            assert isinstance(json.loads(message.data), dict)
            seen += 1
        assert seen == 1591


def test_every_message_is_a_valid_instance_of_its_contract() -> None:
    registry = default_registry()
    for message in read_messages(SHIPPED):
        contract = registry.by_type(message.type)
        assert contract is not None, message.type
        msgspec.json.decode(message.data, type=contract)  # raises on a value the contract forbids
        assert message.subject.startswith(f"city.public.{contract.__contract__.domain}.")
        assert message.headers["ce-provenance"] in ("recorded", "synthetic")


def test_counts_per_contract_and_provenance_are_the_ones_the_readme_states() -> None:
    assert joint_counts(SHIPPED) == COUNTS
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([a-z][\w.-]+\.v\d+) \| (\w+) \| (\d+) \|$", text, flags=re.MULTILINE)
    assert {(kind, provenance): int(count) for kind, provenance, count in rows} == COUNTS | PERSONAL_COUNTS
    total = sum(COUNTS.values())
    assert f"| **all** | | **{total}** |" in text
    assert f"| **all** | | **{sum(PERSONAL_COUNTS.values())}** |" in text
    assert f"{total} messages on 66 subjects" in text


def test_the_recording_is_the_day_in_oslo() -> None:
    info = read_info(SHIPPED)
    assert info.start is not None and info.end is not None
    assert info.start == DAY_START  # the stop places, racks and first documents, at midnight
    assert DAY_END - timedelta(hours=1) <= info.end < DAY_END
    for message in read_messages(SHIPPED):
        assert message.log_time == message.publish_time  # reproducible: no time of the build in it


def test_the_shipped_day_holds_no_personal_message_and_says_where_its_volunteers_are() -> None:
    assert not [m.subject for m in read_messages(SHIPPED) if not m.subject.startswith("city.public.")]
    meta = read_info(SHIPPED).metadata
    assert meta["personal_data"].startswith("none") and "-volunteers" in meta["personal_data"]


def test_the_volunteers_are_generated_people_and_the_recording_says_so() -> None:
    info = read_info(VOLUNTEERS)
    assert info.complete and joint_counts(VOLUNTEERS) == PERSONAL_COUNTS
    assert info.metadata["personal_data"].startswith("all synthetic")
    assert info.metadata["seed"] == "20180828"
    registry = default_registry()
    opportunities = {body["opportunity_id"]: body for _, body in bodies("community.opportunity")}
    signups, activities = [], []
    for message in read_messages(VOLUNTEERS):
        contract = registry.by_type(message.type)
        assert contract is not None and contract.__contract__.person == "volunteer_id"
        value = msgspec.json.decode(message.data, type=contract)
        body = json.loads(message.data)
        assert message.subject.endswith("." + body["volunteer_id"])  # named by the generated id
        assert re.fullmatch(r"v-[0-9a-f]{12}", body["volunteer_id"])
        assert (body.get("task_id") or body.get("opportunity_id")) in opportunities
        if message.type == "community.volunteer-signup.v1":
            signups.append(value)
            # reserved for documentation (RFC 2606) and for drama (Ofcom): nobody's
            assert body["email"].endswith("@example.invalid")
            assert body["phone"] is None or body["phone"].startswith("+447700900")
            family = body["name"].split()[-1]
            assert family.startswith(("Eksempel", "Prøve", "Fiktiv", "Oppdikt", "Tenkt", "Demo"))
        else:
            assert "name" not in body and "email" not in body
            activities.append(value)
    for activity in activities:  # only for a volunteer who consented to statistics
        consents = [
            s.consent
            for s in signups
            if (s.volunteer_id, s.task_id) == (activity.volunteer_id, activity.opportunity_id)
        ]
        assert consents and all(c is not None and "statistics" in c.purposes for c in consents)
    assert len({s.volunteer_id for s in signups}) > 5
    assert [s.status for s in signups].count("withdrawn") == 1
    # the public opportunities count the places the sign-ups take
    taken = Counter(s.task_id for s in signups if s.status == "confirmed")
    taken.subtract(Counter(s.task_id for s in signups if s.status == "withdrawn"))
    for opportunity_id, body in opportunities.items():
        assert body["places_left"] == body["places"] - taken[opportunity_id]
        assert body["organisation"].startswith("demo-")


def test_the_late_r10_at_drammen_is_in_it() -> None:
    # siri_et_2018-08-28T0908_drammen.xml: NSB:ServiceJourney:1-1821-311 at NSR:Quay:22, aimed
    # 08:57, actual departure 09:01 (the calls CSV beside it: delay 240 s)
    calls = [
        body
        for _, body in bodies("mobility.train-call")
        if body["service_journey"] == "NSB:ServiceJourney:1-1821-311" and body["status"] == "actual"
    ]
    assert len(calls) == 1
    call = calls[0]
    assert call["stop_place"] == "NSR:StopPlace:11" and call["stop_name"] == "Drammen stasjon"
    assert call["line"] == "R10" and call["destination"] == "Lillehammer"
    assert call["aimed_departure"] == "2018-08-28T08:57:00+02:00"
    assert call["actual_departure"] == "2018-08-28T09:01:00+02:00"
    assert call["delay_seconds"] == 240


# -- the generated values are plausible -----------------------------------------------------------


def test_beach_water_air_and_uv_follow_the_readings_and_the_sun() -> None:
    readings = defaultdict(list)
    for moment, body in bodies("environment.beach-observation"):
        readings[body["site"]].append((moment, body))
    assert set(readings) == set(SITES)
    for site, day in readings.items():
        assert len(day) == 24  # hourly
        water = [body["water_temperature"] for _, body in day]
        assert all(14 <= t <= 20 for t in water), site
        assert max(water) - min(water) < 1.5, site  # a small daily curve
        for moment, body in day:
            uv = body.get("uv_index")
            if site == "drammenselva-bragernes":  # the river sensor has no sensors on land
                assert uv is None and body.get("air_temperature") is None
                continue
            assert 5 <= body["air_temperature"] <= 25
            if moment.hour < 6 or moment.hour >= 21:
                assert uv == 0, (site, moment)
        noon = [body["uv_index"] for moment, body in day if 12 <= moment.hour <= 14]
        if site != "drammenselva-bragernes":
            assert 3 <= max(noon) <= 5, site
    # anchored on the manual readings of 2018-08-29
    mean = {site: sum(b["water_temperature"] for _, b in day) / len(day) for site, day in readings.items()}
    assert mean["bragernes-strand"] == pytest.approx(15.7, abs=0.2)
    assert mean["drammenselva-bragernes"] == pytest.approx(16.4, abs=0.2)
    assert mean["sota-fjordpark"] == pytest.approx(16.6, abs=0.2)
    for lake in ("blektjern", "landfalltjern", "vannverksdammen", "stordammen"):
        assert mean["drammenselva-bragernes"] < mean[lake] < 18.5  # a little warmer


def test_bike_counts_stay_within_the_docks_and_follow_the_commute() -> None:
    capacity = {body["station_id"]: body["capacity"] for _, body in bodies("mobility.bike-station")}
    latest: dict[str, int] = {}
    at: dict[str, dict[str, int]] = {}
    for moment, body in bodies("mobility.bike-station-status"):
        bikes = body["num_bikes_available"]
        assert 0 <= bikes <= body["capacity"] == capacity[body["station_id"]]
        assert bikes + body["num_docks_available"] == body["capacity"]
        latest[body["station_id"]] = bikes
        at[moment.strftime("%H:%M")] = dict(latest)
    assert set(latest) == set(capacity)

    def total(time: str, racks: tuple[str, ...]) -> int:
        last = max(t for t in at if t <= time)
        return sum(at[last][rack] for rack in racks)

    station = ("10", "11", "14")  # Strømsø torg by the bus and railway stations, Bangeløkka
    centre = ("3", "4", "5", "16")  # Bragernes torg
    assert total("09:30", station) < total("06:00", station) / 2  # the morning empties them
    assert total("09:30", centre) > total("06:00", centre) * 1.5  # ...and fills the centre
    assert total("18:30", station) > total("09:30", station) * 2  # the evening the reverse
    assert total("18:30", centre) < total("09:30", centre)


def test_weather_and_air_quality_are_late_august_drammen() -> None:
    observed = bodies("environment.weather-observed")
    assert Counter(body["station"] for _, body in observed) == {"marienlyst": 24, "gulskogen": 24}
    for _, body in observed:
        assert 8 <= body["temperature"] <= 24
        assert 40 <= body["relative_humidity"] <= 100
        assert 0 <= body["wind_speed"] <= 10
        assert 990 <= body["atmospheric_pressure"] <= 1030
    assert 0.5 <= sum(b["precipitation"] for _, b in observed if b["station"] == "marienlyst") <= 5
    forecasts = bodies("environment.weather-forecast")
    assert [moment.hour for moment, _ in forecasts] == [0, 6, 12, 18]
    assert all(len(body["steps"]) > 60 for _, body in forecasts)
    # NILU's index over the day's 72 station-hours: the shares of 2019 (86 / 9 / 5 %)
    worst: dict[tuple[str, int], int] = {}
    for moment, body in bodies("environment.air-quality-observed"):
        key = (body["station"], moment.hour)
        worst[key] = max(worst.get(key, 0), body["index"])
        assert body["index"] == air_generator.index_of(body["component"], body["value"])
    assert Counter(worst.values()) == {1: 62, 2: 6, 3: 4}
    stations = {station for station, _ in worst}
    assert stations == {"rosenkrantzgata-ved-varveien", "backeparken", "bangelokka"}


def test_every_pilot_site_has_one_unit_and_the_adapter_takes_their_configuration() -> None:
    assert sorted(unit.site for unit in UNITS) == sorted(SITES)
    config = parse_instance("beach", VicoteeBeach, {"devices": device_config(), "provenance": "synthetic"})
    assert len(config.config.devices) == len(SITES)


# -- the builder ----------------------------------------------------------------------------------


def content(path: Path) -> list[Any]:
    """What a recording says, record by record, without what a library prints for it.

    Chunks are compared by the records inside them (zstandard may compress the same bytes
    differently from one version to the next), indexes and the footer not at all (they locate
    those bytes), and each embedded JSON Schema by what a reader relies on — which contract and
    version it is, its example and its fields — not by msgspec's rendering of the rest.
    """
    out: list[Any] = []
    with path.open("rb") as f:
        for record in StreamReader(f, skip_magic=False).records:
            if isinstance(record, Schema):
                schema = json.loads(record.data)
                what = {key: schema.get(key) for key in ("$id", "title", "x-citybus", "examples", "required")}
                fields = sorted(schema["properties"])
                out.append(("schema", record.id, record.name, record.encoding, what, fields))
            elif not isinstance(record, (Chunk, ChunkIndex, MessageIndex, SummaryOffset, Footer)):
                out.append(record)
    return out


def test_rebuilding_with_the_same_seed_gives_the_shipped_recording(tmp_path: Path) -> None:
    report = build_day(tmp_path / "day.mcap")
    assert report.personal_path == tmp_path / "day-volunteers.mcap"
    for built, ships in ((report.path, SHIPPED), (report.personal_path, VOLUNTEERS)):
        rebuilt, shipped = content(built), content(ships)
        assert len(rebuilt) == len(shipped)
        for ours, theirs in zip(rebuilt, shipped, strict=True):
            assert ours == theirs
    assert dict(report.counts) == COUNTS
    assert dict(report.personal_counts) == PERSONAL_COUNTS
    assert report.table(report.personal_counts) in README.read_text(encoding="utf-8")
    assert report.messages == sum(COUNTS.values())
    assert dict(report.left_out) == {"mobility.train-call.v1": 17}  # calls after midnight
    assert report.table() in README.read_text(encoding="utf-8")
    assert not list(tmp_path.glob("*.partial"))


def test_another_seed_makes_another_day_of_the_same_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.mcap"
    logging = structlog.get_config()
    try:
        assert main(["-o", str(path), "--seed", "1"]) == 0
    finally:  # main configures logging for the process, onto a stream pytest closes
        structlog.configure(**logging)
    assert "| mobility.train-call.v1 | recorded | 505 |" in capsys.readouterr().out
    assert path.read_bytes() != SHIPPED.read_bytes()
    assert (tmp_path / "other-volunteers.mcap").read_bytes() != VOLUNTEERS.read_bytes()
    counts = joint_counts(path)
    # the real data and the generators' cadence are the same; bike counts move differently
    for key, count in COUNTS.items():
        if key[0] not in ("mobility.bike-station-status.v1", "community.opportunity.v1"):
            assert counts[key] == count, key


def test_an_input_the_adapters_dead_letter_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = air_generator.utd_documents

    def broken(*args: Any) -> Any:
        documents = real(*args)
        first = documents[0]
        records = json.loads(first.body)
        records[0]["value"] = None  # NILU's "no value": the adapter dead-letters the record
        documents[0] = type(first)(first.at, first.name, json.dumps(records).encode())
        return documents

    monkeypatch.setattr(air_generator, "utd_documents", broken)
    output = tmp_path / "day.mcap"
    with pytest.raises(BuildError, match="1 dead letter.*no-value"):
        build_day(output)
    assert not output.exists()


@pytest.mark.parametrize(
    "name", sorted(f"sandbox.drammen.{p.stem}" for p in (ROOT / "sandbox" / "drammen").glob("[!_]*.py"))
)
def test_every_module_says_what_it_is_and_exports_sorted_names(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__ and module.__doc__.strip()
    assert module.__all__ == sorted(module.__all__)
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


def test_the_package_exports_the_builder() -> None:
    assert drammen.__all__ == sorted(drammen.__all__)
    assert drammen.build_day is build_day
    assert drammen.RECORDING == SHIPPED
    with pytest.raises(AttributeError):
        drammen.nothing  # noqa: B018


# -- the clock ------------------------------------------------------------------------------------


async def test_the_clock_wakes_due_loops_and_waits_until_they_sleep_again() -> None:
    clock = DayClock(DAY_START)
    polls: list[tuple[str, datetime]] = []

    async def loop(name: str, interval: float) -> None:
        while True:
            polls.append((name, clock.now()))
            await asyncio.sleep(0.01)  # a poll takes a while
            await clock.sleep(interval)

    tasks = [asyncio.create_task(loop("a", 900)), asyncio.create_task(loop("b", 3600))]
    try:
        await clock.wait_parked(2, timeout=5)
        quarter, hour = DAY_START + timedelta(minutes=15), DAY_START + timedelta(hours=1)
        assert clock.advance_to(quarter) == 1
        assert clock.parked == 1  # "a" is polling
        await clock.wait_parked(2, timeout=5)
        assert polls[-1] == ("a", quarter)
        assert clock.advance_to(hour) == 2
        await clock.wait_parked(2, timeout=5)
        assert sorted(polls[-2:]) == [("a", hour), ("b", hour)]
        assert clock.advance_to(hour + timedelta(minutes=5)) == 0  # nothing due
        with pytest.raises(ValueError, match="cannot go back"):
            clock.advance_to(DAY_START)
        tasks[1].cancel()  # a loop that is gone never parks again
        await asyncio.sleep(0)
        clock.advance_to(DAY_START + timedelta(hours=3))
        with pytest.raises(TimeoutError):
            await clock.wait_parked(2, timeout=0.2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _haversine(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Great-circle metres between two GeoJSON points, worked out here, not by the code under test."""
    import math

    (lon1, lat1), (lon2, lat2) = a["coordinates"], b["coordinates"]
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def _last_per_subject(path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    last: dict[str, tuple[str, dict[str, Any]]] = {}
    for message in read_messages(path):
        last[message.subject] = (message.type, json.loads(message.data))
    return last


def test_every_entity_of_the_day_says_where_it_is_and_approximate_places_say_how_and_how_well() -> None:
    last = _last_per_subject(SHIPPED)
    assert len(last) == 66
    for subject, (_kind, body) in last.items():
        location = body.get("location")
        assert location is not None and location["type"] == "Point", subject
        if location.get("approximate"):
            assert location["uncertainty"] > 0 and location["placement"], subject
        else:
            assert "uncertainty" not in location and "placement" not in location, subject
    beach = {
        s.rsplit(".", 1)[1]: b["location"]
        for s, (k, b) in last.items()
        if k.startswith("environment.beach-obs")
    }
    assert len(beach) == 7  # six pilot sites, one with a second sensor in the river
    assert [site for site, loc in beach.items() if not loc.get("approximate")] == ["bragernes-strand"]
    assert {s: loc["uncertainty"] for s, loc in beach.items() if loc.get("approximate")} == {
        s.slug: s.uncertainty for s in SITES.values() if s.approximate
    }
    approximate = {s.rsplit(".", 2)[1] for s, (_k, b) in last.items() if b["location"].get("approximate")}
    # the stations' places are not known: placed near real points of what they are named after
    assert approximate == {
        "air-quality-observed",
        "opportunity",  # at Sota fjordpark, Blektjern and Landfalltjern
        "beach-observation",
        "beach-neighbours",
        "weather-observed",
    }


def test_the_beach_neighbours_are_the_nearest_stations_by_the_locations_on_the_bus() -> None:
    last = _last_per_subject(SHIPPED)
    stations: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for kind, body in last.values():
        if kind in ("environment.weather-observed.v1", "environment.air-quality-observed.v1"):
            stations[kind][body["station"]] = body["location"]
    relations = {b["site"]: b for _s, (k, b) in last.items() if k == "environment.beach-neighbours.v1"}
    sites = {
        b["site"]: b["location"] for _s, (k, b) in last.items() if k == "environment.beach-observation.v1"
    }
    assert set(relations) == set(sites)
    for site, relation in relations.items():
        assert relation["location"] == sites[site]
        for field, kind in (
            ("weather_station", "environment.weather-observed.v1"),
            ("air_quality_station", "environment.air-quality-observed.v1"),
        ):
            distances = {name: _haversine(sites[site], point) for name, point in stations[kind].items()}
            nearest = min(distances, key=lambda name: (distances[name], name))
            neighbour = relation[field]
            assert neighbour["station"] == nearest, (site, field)
            assert neighbour["distance"] == pytest.approx(distances[nearest], abs=0.1)
            margin = sites[site].get("uncertainty", 0) + stations[kind][nearest].get("uncertainty", 0)
            assert neighbour["uncertainty"] == pytest.approx(margin)
