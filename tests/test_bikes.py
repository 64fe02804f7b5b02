"""The gbfs-bikes adapter: GBFS 2.3 and 3.0 served over real HTTP, checked against the real racks.

The racks are Drammen's, from ``sandbox/data/sources/bikes/drammen_bike_stations_osm.json``
(OpenStreetMap), written as GBFS ``station_information`` by :func:`station_information_from_osm`;
every expected rack below is copied by hand from that file. No real source has how many bikes
stood at each rack, so the ``station_status`` documents are written here, with counts chosen for
the tests (marked "test values").

Most tests run the adapter on a :class:`StepClock`: time is real, but every sleep waits until the
test calls ``wake()``, so a test decides when the next poll happens and sees how long each feed
asked to sleep.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adapters.bikes as bikes
from adapters.bikes import (
    GbfsBikes,
    localized,
    parse_discovery,
    parse_station_information,
    parse_station_status,
    parse_system_information,
    station_information_from_osm,
)
from adapters.instances import parse_instance
from adapters.polling import SourceFormatError
from adapters.testing import AdapterHarness
from bus import Bus
from bus.errors import ConfigError
from contracts import BikeStation, BikeStationStatus
from tests.conftest import wait_for
from tests.fuzz import mutated
from tests.http_files import SOURCES, FileServer

OSM = SOURCES / "bikes" / "drammen_bike_stations_osm.json"
CEST = timezone(timedelta(hours=2))

# Every rack in drammen_bike_stations_osm.json's "stations", copied by hand:
# (id, name, capacity, lat, lon). Ids 5 and 16 stand at the same place (59.7433, 10.2046).
RACKS = [
    ("1", "Fylkeshuset", 12, 59.7482, 10.1887),
    ("2", "Sykehuset", 15, 59.7483, 10.1995),
    ("3", "Bragernes Torg Øvre", 24, 59.7446, 10.2046),
    ("4", "Bragernes Torg Midtre", 18, 59.7439, 10.2054),
    ("5", "Bragernes Torg Nedre", 9, 59.7433, 10.2046),
    ("6", "Losjeplassen", 18, 59.7425, 10.2139),
    ("7", "Fayeparken", 12, 59.7437, 10.2277),
    ("8", "Sundland NSB kompetanssesenter", 18, 59.741, 10.1814),
    ("9", "Grønland - Papirbredden", 24, 59.7443, 10.1932),
    ("10", "Strømsø Torg ved Bussstasjonen", 21, 59.7405, 10.1999),
    ("11", "Strømsø Torg ved Jernbanestasjonen", 24, 59.7398, 10.2042),
    ("12", "Marienlyst ved Drammensbadet", 21, 59.7369, 10.2005),
    ("13", "Gyldenløves plass", 18, 59.7369, 10.2112),
    ("14", "Bangeløkka ekspressbussholdeplass", 24, 59.7312, 10.2141),
    ("15", "Rundtom", 18, 59.73, 10.2248),
    ("16", "Bragernes Torg Nedre 2", 9, 59.7433, 10.2046),
]

# Test values: how many bikes and free docks each rack has (bikes + docks = its OSM capacity).
COUNTS = {
    "1": (5, 7),
    "2": (0, 15),
    "3": (7, 17),
    "4": (18, 0),
    "5": (3, 6),
    "6": (9, 9),
    "7": (4, 8),
    "8": (10, 8),
    "9": (12, 12),
    "10": (6, 15),
    "11": (20, 4),
    "12": (1, 20),
    "13": (8, 10),
    "14": (11, 13),
    "15": (2, 16),
    "16": (9, 0),
}

INFO_UPDATED = datetime(2018, 8, 29, 6, 0, tzinfo=CEST)  # the recorded day, 06:00 in Drammen
STATUS_UPDATED = 1535529600  # 2018-08-29T10:00:00+02:00
REPORTED = 1535529540  # 2018-08-29T09:59:00+02:00


def information(version: str = "2.3") -> bytes:
    """The real racks as a GBFS station_information document."""
    return station_information_from_osm(
        OSM.read_bytes(),
        version=version,  # type: ignore[arg-type]
        last_updated=INFO_UPDATED,
    )


def status_23(
    counts: dict[str, tuple[int, int]] = COUNTS,
    *,
    updated: int = STATUS_UPDATED,
    reported: int = REPORTED,
    ttl: int = 0,
    extra: list[Any] | None = None,
) -> bytes:
    """A GBFS 2.3 station_status document with the given (test-value) counts."""
    stations: list[Any] = [
        {
            "station_id": station_id,
            "num_bikes_available": bikes_,
            "num_bikes_disabled": 0,
            "num_docks_available": docks,
            "num_docks_disabled": 0,
            "is_installed": True,
            "is_renting": True,
            "is_returning": True,
            "last_reported": reported,
        }
        for station_id, (bikes_, docks) in counts.items()
    ]
    document = {
        "last_updated": updated,
        "ttl": ttl,
        "version": "2.3",
        "data": {"stations": stations + (extra or [])},
    }
    return json.dumps(document, ensure_ascii=False).encode()


def status_30(counts: dict[str, tuple[int, int]] = COUNTS, *, ttl: int = 0) -> bytes:
    """A GBFS 3.0 station_status document (num_vehicles_available, RFC 3339 times), test values."""
    stations = [
        {
            "station_id": station_id,
            "num_vehicles_available": bikes_,
            "num_docks_available": docks,
            "is_installed": True,
            "is_renting": station_id != "15",  # test value: rack 15 does not rent out bikes
            "is_returning": True,
            "last_reported": "2018-08-29T09:59:00+02:00",
        }
        for station_id, (bikes_, docks) in counts.items()
    ]
    document = {
        "last_updated": "2018-08-29T10:00:00+02:00",
        "ttl": ttl,
        "version": "3.0",
        "data": {"stations": stations},
    }
    return json.dumps(document, ensure_ascii=False).encode()


class StepClock:
    """Real time, but each sleep waits for :meth:`wake`; records which task asked to sleep how long."""

    def __init__(self) -> None:
        self.sleeps: list[tuple[str, float]] = []
        self._wake = asyncio.Event()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        self.sleeps.append((task.get_name() if task else "", seconds))
        await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def slept(self, task: str) -> list[float]:
        return [seconds for name, seconds in self.sleeps if name == task]

    async def until_asleep(self, task: str, times: int) -> None:
        await wait_for(lambda: len(self.slept(task)) >= times)


def explicit(http_files: FileServer, info: bytes, status: bytes) -> dict[str, Any]:
    return {
        "station_information": {"url": http_files.serve("/station_information.json", info)},
        "station_status": {"url": http_files.serve("/station_status.json", status)},
    }


def by_id(events: list[Any]) -> dict[str, Any]:
    return {event.data.station_id: event.data for event in events}


def published_id(events: list[Any], station_id: str) -> str:
    return str(next(e.envelope.id for e in events if e.data.station_id == station_id))


# -- the racks: the OSM file as GBFS --------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.3", "3.0"])
def test_the_osm_racks_become_gbfs_station_information(version: str) -> None:
    document = json.loads(information(version))
    assert document["version"] == version
    if version == "2.3":
        assert document["last_updated"] == 1535515200  # 2018-08-29T06:00:00+02:00 in POSIX seconds
        assert document["data"]["stations"][2]["name"] == "Bragernes Torg Øvre"
    else:
        assert document["last_updated"] == "2018-08-29T06:00:00+02:00"
        assert document["data"]["stations"][2]["name"] == [{"text": "Bragernes Torg Øvre", "language": "nb"}]
    feed = parse_station_information(information(version), system="drammen-bysykkel")
    assert feed.rejected == []
    assert feed.envelope.last_updated == INFO_UPDATED
    assert [
        (s.station_id, s.name, s.capacity, s.location.latitude, s.location.longitude) for s in feed.stations
    ] == RACKS
    assert {(s.address, s.system) for s in feed.stations} == {(None, "drammen-bysykkel")}


def test_a_file_that_is_not_an_osm_export_is_refused() -> None:
    with pytest.raises(SourceFormatError) as info:
        station_information_from_osm(b'{"stations": [{"id": 1}]}', version="2.3", last_updated=INFO_UPDATED)
    assert info.value.reason == "not-osm-racks" and "name" in str(info.value)
    with pytest.raises(ValueError, match="timezone-aware"):
        station_information_from_osm(OSM.read_bytes(), version="3.0", last_updated=datetime(2018, 8, 29))


# -- the adapter over HTTP ------------------------------------------------------------------------


async def test_explicit_feeds_publish_every_rack_and_then_only_what_changed(http_files: FileServer) -> None:
    clock = StepClock()
    config = explicit(http_files, information("2.3"), status_23())
    async with AdapterHarness(GbfsBikes, config, clock=clock) as harness:
        stations = await harness.wait_for(BikeStation, 16)
        statuses = await harness.wait_for(BikeStationStatus, 16)
        await clock.until_asleep("station_status", 1)

        assert [
            (
                e.data.station_id,
                e.data.name,
                e.data.capacity,
                e.data.location.latitude,
                e.data.location.longitude,
            )
            for e in stations
        ] == RACKS
        assert {(e.data.address, e.data.system) for e in stations} == {(None, None)}
        assert {e.provenance for e in stations + statuses} == {"vendor"}
        assert {e.envelope.time for e in stations} == {INFO_UPDATED}
        assert stations[2].subject == "city.public.mobility.bike-station.3"

        published = by_id(statuses)
        assert set(published) == set(COUNTS)
        for station_id, name, capacity, lat, lon in RACKS:
            status = published[station_id]
            assert (status.num_bikes_available, status.num_docks_available) == COUNTS[station_id]
            assert (status.name, status.capacity) == (name, capacity)
            assert (status.location.latitude, status.location.longitude) == (lat, lon)
            assert status.is_installed and status.is_renting and status.is_returning
            assert status.reported_at == datetime(2018, 8, 29, 9, 59, tzinfo=CEST)
        # two racks at one place stay two racks
        assert published["5"].location == published["16"].location
        assert (published["5"].name, published["16"].name) == (
            "Bragernes Torg Nedre",
            "Bragernes Torg Nedre 2",
        )
        assert {e.envelope.time for e in statuses} == {datetime(2018, 8, 29, 9, 59, tzinfo=CEST)}

        # a minute later every rack reported again, and only rack 3 changed (test values)
        later = dict(COUNTS, **{"3": (6, 18)})
        http_files.serve(
            "/station_status.json", status_23(later, updated=STATUS_UPDATED + 60, reported=REPORTED + 60)
        )
        clock.wake()
        await clock.until_asleep("station_status", 2)
        await harness.settle()
        [changed] = harness.published(BikeStationStatus)[16:]
        assert (
            changed.data.station_id,
            changed.data.num_bikes_available,
            changed.data.num_docks_available,
        ) == (
            "3",
            6,
            18,
        )
        assert changed.data.reported_at == datetime(2018, 8, 29, 10, 0, tzinfo=CEST)
        assert changed.envelope.id != published_id(statuses, "3")

        # reported again with the same counts: nothing new; station_information unchanged: no rack again
        http_files.serve(
            "/station_status.json", status_23(later, updated=STATUS_UPDATED + 120, reported=REPORTED + 120)
        )
        clock.wake()
        await clock.until_asleep("station_status", 3)
        await clock.until_asleep("station_information", 2)
        await harness.settle()
        assert len(harness.published(BikeStationStatus)) == 17
        assert len(harness.published(BikeStation)) == 16
        assert harness.dead_letters == []


async def test_recorded_files_are_read_as_recorded(tmp_path: Path) -> None:
    """How the sandbox records a day: the two feeds as files (provenance ``recorded``)."""
    (tmp_path / "station_information.json").write_bytes(information("3.0"))
    (tmp_path / "station_status.json").write_bytes(status_23())
    config = {
        "station_information": {"file": str(tmp_path / "station_information.json")},
        "station_status": {"file": str(tmp_path / "station_status.json")},
        "system": "drammen-bysykkel",
    }
    async with AdapterHarness(GbfsBikes, config, clock=StepClock()) as harness:
        stations = await harness.wait_for(BikeStation, 16)
        statuses = await harness.wait_for(BikeStationStatus, 16)
    assert {e.provenance for e in stations + statuses} == {"recorded"}
    assert {e.data.system for e in stations} == {"drammen-bysykkel"}
    assert by_id(statuses)["14"].name == "Bangeløkka ekspressbussholdeplass"


def discovery_23(http_files: FileServer) -> bytes:
    """A GBFS 2.3 gbfs.json in two languages; the English feeds must never be read."""

    def feeds(language: str) -> dict[str, Any]:
        return {
            "feeds": [
                {"name": name, "url": http_files.url(f"/{language}/{name}.json")}
                for name in (
                    "system_information",
                    "station_information",
                    "station_status",
                    "system_pricing_plans",
                )
            ]
        }

    document = {
        "last_updated": 1535515200,
        "ttl": 0,
        "version": "2.3",
        "data": {"en": feeds("en"), "nb": feeds("nb")},
    }
    return json.dumps(document, ensure_ascii=False).encode()


SYSTEM_23 = json.dumps(
    {
        "last_updated": 1535515200,
        "ttl": 86400,
        "version": "2.3",
        "data": {
            "system_id": "drammen-bysykkel",
            "language": "nb",
            "name": "Drammen Bysykkel",
            "timezone": "Europe/Oslo",
        },
    }
).encode()


async def test_discovery_finds_the_feeds_in_the_language_and_sends_the_operators_headers(
    http_files: FileServer,
) -> None:
    clock = StepClock()
    url = http_files.serve("/gbfs.json", discovery_23(http_files))
    http_files.serve("/nb/system_information.json", SYSTEM_23)
    http_files.serve("/nb/station_information.json", information("2.3"))
    http_files.serve("/nb/station_status.json", status_23())
    config = {
        "discovery": {
            "url": url,
            "headers": {"Client-Identifier": "drammen-citybus"},
            "user_agent": "citybus-test/1 bikes@example.org",
        }
    }
    async with AdapterHarness(GbfsBikes, config, clock=clock) as harness:
        stations = await harness.wait_for(BikeStation, 16)
        await harness.wait_for(BikeStationStatus, 16)
        await clock.until_asleep("station_status", 1)
        assert {e.data.system for e in stations} == {"drammen-bysykkel"}  # system_information's system_id
        assert by_id(stations)["3"].name == "Bragernes Torg Øvre"
        assert clock.slept("gbfs.json") == [86400.0]  # gbfs.json is read again daily
        assert clock.slept("station_information")[0] == pytest.approx(3600.0, abs=1)
    asked = {path for path in http_files.requests}
    assert asked == {
        "/gbfs.json",
        "/nb/system_information.json",
        "/nb/station_information.json",
        "/nb/station_status.json",
    }
    for headers in http_files.request_headers:
        assert headers["Client-Identifier"] == "drammen-citybus"
        assert headers["User-Agent"] == "citybus-test/1 bikes@example.org"


async def test_when_gbfs_json_names_new_feed_urls_they_are_polled_instead(http_files: FileServer) -> None:
    clock = StepClock()
    old = {name: http_files.url(f"/v1/{name}.json") for name in ("station_information", "station_status")}
    new = {name: http_files.url(f"/v2/{name}.json") for name in ("station_information", "station_status")}

    def discovery(feeds: dict[str, str], updated: str) -> bytes:
        entries = [{"name": name, "url": url} for name, url in feeds.items()]
        return json.dumps(
            {"last_updated": updated, "ttl": 0, "version": "3.0", "data": {"feeds": entries}}
        ).encode()

    url = http_files.serve("/gbfs.json", discovery(old, "2018-08-29T06:00:00+02:00"))
    for prefix in ("v1", "v2"):
        http_files.serve(f"/{prefix}/station_information.json", information("3.0"))
    http_files.serve("/v1/station_status.json", status_30())
    http_files.serve("/v2/station_status.json", status_30(dict(COUNTS, **{"7": (0, 12)})))  # test values
    async with AdapterHarness(GbfsBikes, {"discovery": {"url": url}}, clock=clock) as harness:
        await harness.wait_for(BikeStationStatus, 16)
        await clock.until_asleep("gbfs.json", 1)
        http_files.serve("/gbfs.json", discovery(new, "2018-08-30T06:00:00+02:00"))
        clock.wake()
        [moved] = (await harness.wait_for(BikeStationStatus, 17))[16:]
        assert (moved.data.station_id, moved.data.num_bikes_available) == ("7", 0)
        assert moved.data.reported_at == datetime(2018, 8, 29, 9, 59, tzinfo=CEST)  # 3.0: RFC 3339
        await harness.settle()
        assert len(harness.published(BikeStation)) == 16  # the same racks at the new URL: nothing new
    assert http_files.requests["/v2/station_status.json"] == 1
    assert http_files.requests["/v1/station_status.json"] >= 1


def information_30_two_languages() -> bytes:
    """The real racks in GBFS 3.0, with rack 3's name also in English (the English text is ours)."""
    document = json.loads(information("3.0"))
    document["data"]["stations"][2]["name"] = [
        {"text": "Upper Bragernes Square", "language": "en"},
        {"text": "Bragernes Torg Øvre", "language": "nb"},
    ]
    return json.dumps(document, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("language", "name"),
    [
        ("nb", "Bragernes Torg Øvre"),
        ("en", "Upper Bragernes Square"),
        ("nb-NO", "Bragernes Torg Øvre"),
        ("de", "Upper Bragernes Square"),
    ],
    ids=["nb", "en", "primary-subtag", "else-the-first"],
)
async def test_a_3_0_localized_name_is_picked_by_language(
    http_files: FileServer, language: str, name: str
) -> None:
    config = explicit(http_files, information_30_two_languages(), status_30()) | {"language": language}
    async with AdapterHarness(GbfsBikes, config, clock=StepClock()) as harness:
        stations = by_id(await harness.wait_for(BikeStation, 16))
        statuses = by_id(await harness.wait_for(BikeStationStatus, 16))
    assert stations["3"].name == statuses["3"].name == name
    assert stations["9"].name == "Grønland - Papirbredden"  # only one language: that one
    assert (statuses["3"].num_bikes_available, statuses["3"].num_docks_available) == COUNTS["3"]
    assert statuses["15"].is_renting is False and statuses["14"].is_renting is True


async def test_the_feeds_ttl_is_a_lower_bound_for_the_status_interval(http_files: FileServer) -> None:
    clock = StepClock()
    config = explicit(http_files, information("2.3"), status_23(ttl=120))
    async with AdapterHarness(GbfsBikes, config, clock=clock) as harness:
        await harness.wait_for(BikeStationStatus, 16)
        await clock.until_asleep("station_status", 1)
        assert 119 < clock.slept("station_status")[0] <= 120  # ttl 120 s > status_interval 60 s
        assert 3599 < clock.slept("station_information")[0] <= 3600  # ttl 3600 s = information_interval

        http_files.serve("/station_status.json", status_23(updated=STATUS_UPDATED + 120, ttl=15))
        clock.wake()
        await clock.until_asleep("station_status", 2)
        assert clock.slept("station_status")[1] == 60.0  # ttl 15 s < 60 s: the interval

        http_files.serve("/station_status.json", status_23(updated=STATUS_UPDATED + 180, ttl=86400))
        clock.wake()
        await clock.until_asleep("station_status", 3)
        assert 3599 < clock.slept("station_status")[2] <= 3600  # a day's ttl is capped at an hour


# -- bad input ------------------------------------------------------------------------------------


def information_with_bad_records() -> bytes:
    document = json.loads(information("2.3"))
    stations = document["data"]["stations"]
    stations[0]["lat"] = 95.0  # rack 1: latitude beyond the pole
    del stations[1]["name"]  # rack 2: no name
    return json.dumps(document, ensure_ascii=False).encode()


async def test_bad_records_are_dead_lettered_alone_and_the_rest_published(http_files: FileServer) -> None:
    clock = StepClock()
    extra = [
        {"num_bikes_available": 1, "num_docks_available": 1, "is_renting": True, "is_returning": True},
        {
            "station_id": "99",
            "num_bikes_available": 2,
            "num_docks_available": 3,
            "is_renting": True,
            "is_returning": False,
        },
        {
            "station_id": "4",
            "num_bikes_available": 1,
            "num_docks_available": 17,
            "is_renting": True,
            "is_returning": True,
        },
    ]
    counts = dict(COUNTS, **{"6": (-1, 18)})  # test value: a negative count
    config = explicit(http_files, information_with_bad_records(), status_23(counts, extra=extra))
    async with AdapterHarness(GbfsBikes, config, clock=clock) as harness:
        stations = by_id(await harness.wait_for(BikeStation, 14))
        statuses = by_id(await harness.wait_for(BikeStationStatus, 16))
        await clock.until_asleep("station_status", 1)
        await harness.settle()
        letters = {(d.reason, d.detail) for d in harness.dead_letters}
        assert letters == {
            ("out-of-range", "station_information record 0 (station '1'): lat 95.0 is outside -90..90"),
            ("missing-field", "station_information record 1 (station '2'): name is missing"),
            (
                "out-of-range",
                "station_status record 5 (station '6'): "
                "num_bikes_available is -1; a count cannot be negative",
            ),
            ("missing-field", "station_status record 16: station_id is missing"),
            (
                "duplicate-station",
                "station_status record 18 (station '4'): station '4' appeared already as record 3",
            ),
        }
        payloads = {
            json.loads(d.payload).get("station_id"): json.loads(d.payload) for d in harness.dead_letters
        }
        assert payloads["1"]["lat"] == 95.0 and payloads["6"]["num_bikes_available"] == -1
        assert set(stations) == {r[0] for r in RACKS} - {"1", "2"}
        assert set(statuses) == set(COUNTS) - {"6"} | {"99"}
        assert statuses["4"].num_bikes_available == 18  # the first record of rack 4, not the duplicate
        # a status for a rack station_information does not have: published, without name or place
        unknown = statuses["99"]
        assert (unknown.name, unknown.capacity, unknown.location) == (None, None, None)
        assert (unknown.num_bikes_available, unknown.num_docks_available, unknown.is_returning) == (
            2,
            3,
            False,
        )
        assert (statuses["1"].name, statuses["1"].location) == (None, None)  # its information was rejected

        # the same bad records in the next document are not dead-lettered again
        http_files.serve("/station_status.json", status_23(counts, updated=STATUS_UPDATED + 60, extra=extra))
        clock.wake()
        await clock.until_asleep("station_status", 2)
        await harness.settle()
        assert len(harness.dead_letters) == 5


async def test_a_malformed_document_is_dead_lettered_with_its_reason(http_files: FileServer) -> None:
    clock = StepClock()
    truncated = status_23()[:500]
    config = explicit(http_files, information("3.0"), truncated)
    async with AdapterHarness(GbfsBikes, config, clock=clock) as harness:
        await harness.wait_for(BikeStation, 16)
        await clock.until_asleep("station_status", 1)
        await harness.settle()
        [letter] = harness.dead_letters
        assert letter.reason == "not-json"
        assert letter.detail.startswith("station_status is not JSON: ")
        assert letter.payload == truncated
        assert harness.published(BikeStationStatus) == []


@pytest.mark.parametrize(
    ("feeds", "reason", "detail"),
    [
        (
            {"system_information": "/s.json"},
            "no-station-feeds",
            "lists no station_information and no station_status",
        ),
        (
            {"station_information": "ftp://example.org/i.json", "station_status": "/st.json"},
            "bad-feed-url",
            "gbfs.json names station_information at 'ftp://example.org/i.json'",
        ),
    ],
    ids=["no-station-feeds", "bad-feed-url"],
)
async def test_a_gbfs_json_without_usable_station_feeds_is_dead_lettered(
    http_files: FileServer, feeds: dict[str, str], reason: str, detail: str
) -> None:
    entries = [{"name": name, "url": url} for name, url in feeds.items()]
    body = json.dumps(
        {"last_updated": "2018-08-29T06:00:00+02:00", "ttl": 0, "version": "3.0", "data": {"feeds": entries}}
    )
    url = http_files.serve("/gbfs.json", body.encode())
    clock = StepClock()
    async with AdapterHarness(GbfsBikes, {"discovery": {"url": url}}, clock=clock) as harness:
        await clock.until_asleep("gbfs.json", 1)
        await harness.settle()
        [letter] = harness.dead_letters
    assert letter.reason == reason and detail in letter.detail
    assert set(http_files.requests) == {"/gbfs.json"}


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "not-json", "station_status is not JSON"),
        (b'[{"station_id": "3"}]', "not-gbfs", "is a JSON array, not a GBFS document"),
        (b'{"stations": []}', "not-gbfs", "has no last_updated and no data"),
        (b'{"last_updated": 1535529600, "ttl": 0, "data": {}}', "not-gbfs", "has no data.stations"),
        (b'{"last_updated": 1535529600, "data": {"stations": {}}}', "not-gbfs", "data.stations is a object"),
        (
            b'{"last_updated": "yesterday", "data": {"stations": []}}',
            "not-gbfs",
            "last_updated 'yesterday' is not",
        ),
        (
            b'{"last_updated": "2018-08-29T10:00:00", "data": {"stations": []}}',
            "not-gbfs",
            "has no UTC offset",
        ),
        (b'{"last_updated": 1535529600000, "data": {"stations": []}}', "not-gbfs", "(milliseconds?)"),
        (b'{"last_updated": 1535529600, "ttl": -5, "data": {"stations": []}}', "not-gbfs", "ttl must be"),
        (b'{"last_updated": 1, "version": "4.0", "data": {"stations": []}}', "unsupported-version", "'4.0'"),
        (b'{"last_updated": 1, "data": []}', "not-gbfs", "data must be an object"),
    ],
    ids=[
        "html",
        "array",
        "no-envelope",
        "no-stations",
        "stations-object",
        "bad-time",
        "naive-time",
        "millis",
        "ttl",
        "version",
        "data-list",
    ],
)
def test_a_document_that_is_not_gbfs_says_what_is_missing(body: bytes, reason: str, message: str) -> None:
    with pytest.raises(SourceFormatError) as info:
        parse_station_status(body)
    assert info.value.reason == reason
    assert message in str(info.value)


def test_gbfs_1_x_is_read_too() -> None:
    """1.0 had no version, 0/1 integers for the flags, and some producers numeric ids."""
    body = b"""{"last_updated": 1535529600, "ttl": 10, "data": {"stations": [
        {"station_id": 3, "num_bikes_available": 7, "num_docks_available": 17,
         "is_installed": 1, "is_renting": 1, "is_returning": 0, "last_reported": 0}]}}"""
    feed = parse_station_status(body)
    [status] = feed.statuses
    assert feed.envelope.version == "1.0" and feed.envelope.ttl == 10
    assert (status.station_id, status.is_renting, status.is_returning) == ("3", True, False)
    assert status.reported_at == datetime(2018, 8, 29, 10, 0, tzinfo=CEST)  # last_reported 0: last_updated
    bad = parse_station_status(body.replace(b'"is_renting": 1', b'"is_renting": 2'))
    assert [(r.reason, r.detail) for r in bad.rejected] == [
        (
            "bad-field",
            "station_status record 0 (station '3'): is_renting must be true or false (or 1/0), got 2",
        )
    ]


def test_discovery_and_system_information_in_both_versions() -> None:
    discovery = parse_discovery(
        b'{"last_updated": 1, "ttl": 0, "version": "2.3", "data": {"en": {"feeds": []}, '
        b'"nb-NO": {"feeds": [{"name": "station_status", "url": "https://x.example/st"}]}}}',
        language="nb",
    )
    assert (discovery.language, discovery.feeds) == ("nb-NO", {"station_status": "https://x.example/st"})
    discovery = parse_discovery(
        b'{"last_updated": "2018-08-29T06:00:00Z", "ttl": 0, "version": "3.0", '
        b'"data": {"feeds": [{"name": "station_information", "url": "https://x.example/si"}]}}'
    )
    assert (discovery.language, discovery.feeds) == (None, {"station_information": "https://x.example/si"})
    with pytest.raises(SourceFormatError, match=r"neither data.feeds \(GBFS 3.0\) nor data.<language>.feeds"):
        parse_discovery(b'{"last_updated": 1, "data": {"nb": {}}}')
    with pytest.raises(SourceFormatError, match=r"data.feeds\[0\] must be an object with a name and a url"):
        parse_discovery(b'{"last_updated": 1, "data": {"feeds": [{"name": "x"}]}}')
    system = parse_system_information(
        b'{"last_updated": "2018-08-29T06:00:00+02:00", "ttl": 0, "version": "3.0", '
        b'"data": {"system_id": "drammen", "name": [{"text": "Drammen City Bike", "language": "en"}, '
        b'{"text": "Drammen Bysykkel", "language": "nb"}]}}'
    )
    assert (system.system_id, system.name) == ("drammen", "Drammen Bysykkel")
    with pytest.raises(SourceFormatError, match="no data.system_id"):
        parse_system_information(SYSTEM_23.replace(b'"system_id"', b'"id"'))


def test_localized_texts() -> None:
    names = [{"text": "Upper", "language": "en"}, {"text": "Øvre", "language": "nb"}]
    assert [localized(names, tag) for tag in ("nb", "NB", "en-GB", "fr")] == [
        "Øvre",
        "Øvre",
        "Upper",
        "Upper",
    ]
    assert localized("Øvre", "en") == "Øvre"
    assert localized([{"text": " ", "language": "nb"}], "nb") is None
    assert localized(7, "nb") is None


# -- configuration --------------------------------------------------------------------------------


def config_error(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_instance("bikes", GbfsBikes, table)
    return str(info.value)


URL = {"url": "https://gbfs.example/x.json"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "give `discovery` (the system's gbfs.json"),
        ({"station_status": URL}, "`station_status` is given but `station_information` is not"),
        ({"station_information": URL}, "`station_information` is given but `station_status` is not"),
        ({"discovery": URL, "station_status": URL}, "not both ways"),
        (
            {"discovery": URL | {"interval": 30}},
            "key discovery: the gbfs-bikes adapter sets each feed's interval",
        ),
        ({"discovery": URL, "status_interval": 0.5}, "key status_interval: Expected `float` >= 1"),
        ({"discovery": URL, "language": "norsk bokmål"}, "key language"),
        ({"discovery": URL, "system": ""}, "key system"),
        ({"discovery": {"url": "ftp://gbfs.example/gbfs.json"}}, "http:// or https://"),
        ({"discovery": URL, "languages": "nb"}, "unknown key 'languages'"),
    ],
    ids=[
        "nothing",
        "status-only",
        "information-only",
        "both-ways",
        "interval",
        "status-interval",
        "language",
        "system",
        "url",
        "unknown-key",
    ],
)
def test_config_errors_say_what_to_fix(table: dict[str, Any], message: str) -> None:
    error = config_error(table)
    assert "[adapters.bikes] (gbfs-bikes)" in error
    assert message in error


def test_config_defaults() -> None:
    config = parse_instance("bikes", GbfsBikes, {"discovery": URL}).config
    assert isinstance(config, bikes.GbfsConfig)
    assert (config.language, config.system) == ("nb", None)
    assert (config.status_interval, config.information_interval, config.discovery_interval) == (
        60,
        3600,
        86400,
    )
    assert GbfsBikes.kind() == "source"


def test_package_all_is_sorted_and_complete() -> None:
    assert bikes.__all__ == sorted(bikes.__all__)
    assert [name for name in bikes.__all__ if not hasattr(bikes, name)] == []


# -- fuzzing the parsers --------------------------------------------------------------------------

DISCOVERY_30 = json.dumps(
    {
        "last_updated": "2018-08-29T06:00:00+02:00",
        "ttl": 0,
        "version": "3.0",
        "data": {"feeds": [{"name": "station_status", "url": "https://gbfs.example/station_status.json"}]},
    }
).encode()


def first_racks(body: bytes, count: int = 3) -> bytes:
    """The document with only its first racks: small enough to try many prefixes quickly."""
    document = json.loads(body)
    document["data"]["stations"] = document["data"]["stations"][:count]
    return json.dumps(document, ensure_ascii=False).encode()


SMALL_COUNTS = {key: COUNTS[key] for key in ("3", "5", "16")}
PARSERS: list[tuple[Callable[[bytes], object], bytes]] = [
    (parse_station_information, first_racks(information("2.3"))),
    (parse_station_information, first_racks(information_30_two_languages())),
    (parse_station_status, status_23(SMALL_COUNTS)),
    (parse_station_status, status_30(SMALL_COUNTS)),
    (parse_system_information, SYSTEM_23),
    (lambda body: parse_discovery(body, language="nb"), discovery_23(FileServer())),
    (lambda body: parse_discovery(body, language="nb"), DISCOVERY_30),
]


def parses_or_says_why(parse: Callable[[bytes], object], body: bytes) -> None:
    try:
        parse(body)
    except SourceFormatError as exc:
        assert exc.reason and str(exc)


def test_the_fuzzed_documents_are_good_ones() -> None:
    for parse, body in PARSERS:
        result = parse(body)
        assert getattr(result, "rejected", []) == []


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(range(len(PARSERS))), st.floats(0, 1, exclude_max=True))
def test_a_truncated_document_parses_or_says_why(which: int, cut: float) -> None:
    parse, body = PARSERS[which]
    parses_or_says_why(parse, body[: int(len(body) * cut)])


@st.composite
def mutations(draw: st.DrawFn) -> tuple[int, bytes]:
    which = draw(st.sampled_from(range(len(PARSERS))))
    return which, draw(mutated(PARSERS[which][1]))


@settings(max_examples=300, deadline=None)
@given(mutations())
def test_a_mutated_document_parses_or_says_why(mutation: tuple[int, bytes]) -> None:
    which, body = mutation
    parses_or_says_why(PARSERS[which][0], body)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = ["station_id", "name", "lat", "lon", "capacity", "address", "num_bikes_available",
           "num_vehicles_available", "num_docks_available", "is_installed", "is_renting", "is_returning",
           "last_reported"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(4)), st.sampled_from(_FIELDS), _json)
def test_any_value_in_any_station_field_is_a_record_or_a_rejected_record(
    which: int, name: str, value: Any
) -> None:
    parse, body = PARSERS[which]
    document = json.loads(body)
    document["data"]["stations"][0][name] = value
    result: Any = parse(json.dumps(document, ensure_ascii=False).encode())
    records = result.stations if hasattr(result, "stations") else result.statuses
    assert len(records) + len(result.rejected) == len(document["data"]["stations"])
    for rejected in result.rejected:
        assert rejected.reason and rejected.detail
        assert msgspec.json.decode(rejected.raw) == document["data"]["stations"][rejected.index]


# -- over a real nats-server ----------------------------------------------------------------------


async def test_the_adapter_publishes_over_a_real_nats_server(bus: Bus, http_files: FileServer) -> None:
    config = explicit(http_files, information("3.0"), status_30())
    async with AdapterHarness(GbfsBikes, config, bus=bus, clock=StepClock()) as harness:
        stations = await harness.wait_for(BikeStation, 16, timeout=10)
        statuses = await harness.wait_for(BikeStationStatus, 16, timeout=10)
    assert sorted(e.data.name for e in stations) == sorted(r[1] for r in RACKS)
    assert sum(e.data.num_bikes_available for e in statuses) == sum(b for b, _ in COUNTS.values())
    assert {e.provenance for e in stations + statuses} == {"vendor"}
