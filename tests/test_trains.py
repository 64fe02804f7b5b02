"""The Entur trains adapter against Entur's real formats: NSB's GTFS feed of 2018 and Bane NOR's SIRI ET
snapshot of 2018-08-28 09:08, served over HTTP by the local file server.

Expected values are read by hand from the files under ``sandbox/data/sources/transport/``; each
literal says where it comes from. The derived table ``drammen_area_train_calls_2018-08-28.csv``
(383 rows) lists the scheduled calls at Drammen, Brakerøya, Gulskogen and Mjøndalen on Tuesday
2018-08-28, so the tests use those four stop places (:data:`AREA`) wherever they compare with it;
Lier, in the adapter's default area, is not in the table.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import struct
import zipfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.instances import parse_instance
from adapters.polling import SourceFormatError
from adapters.testing import AdapterHarness
from adapters.trains import (
    DRAMMEN_AREA,
    ENTUR_CLIENT_NAME,
    ENTUR_GTFS_URL,
    ENTUR_SIRI_ET_URL,
    EnturTrains,
    GtfsResult,
    TrainsConfig,
    codespace,
    gtfs_moment,
    join_call,
    line_code,
    mode_of_route_type,
    parse_estimated_timetable,
    parse_gtfs,
    parse_gtfs_time,
)
from bus import Bus
from bus.errors import ConfigError
from contracts import StopPlace, TrainCall
from contracts.fields import GeoPoint
from contracts.mobility import Quay
from tests.conftest import wait_for
from tests.fuzz import Edit, apply_edits, edits
from tests.http_files import SOURCES, FileServer

TRANSPORT = SOURCES / "transport"
GTFS = TRANSPORT / "entur_nsb_gtfs_2018.zip"
SIRI = TRANSPORT / "siri_et_2018-08-28T0908_drammen.xml"
TABLE = TRANSPORT / "drammen_area_train_calls_2018-08-28.csv"

DRAMMEN, BRAKEROYA, GULSKOGEN, MJONDALEN, LIER = DRAMMEN_AREA
AREA = [DRAMMEN, BRAKEROYA, GULSKOGEN, MJONDALEN]
"""The stop places of the derived table (and of the 57 calls in the SIRI table)."""
CEST = timezone(timedelta(hours=2))
CET = timezone(timedelta(hours=1))
SCHEDULED = 383  # rows of drammen_area_train_calls_2018-08-28.csv
REALTIME = 55  # the 57 calls of siri_et_2018-08-28T0908_drammen_calls.csv, less CargoNet's 2 freight calls
REASON = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def at(hour: int, minute: int, second: int = 0, *, day: int = 28, tz: timezone = CEST) -> datetime:
    """A time in August 2018 (or another month's day, with ``tz``), Norwegian summer time by default."""
    return datetime(2018, 8, day, hour, minute, second, tzinfo=tz)


@cache
def gtfs_members() -> dict[str, bytes]:
    with zipfile.ZipFile(GTFS) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def with_member(name: str, data: bytes | None) -> bytes:
    """The real feed with one member replaced (or, for ``None``, left out)."""
    members = {k: v for k, v in gtfs_members().items() if k != name}
    if data is not None:
        members[name] = data
    return rezip(members)


@cache
def timetable_result() -> GtfsResult:
    return parse_gtfs(GTFS.read_bytes(), AREA)


def config(http_files: FileServer, **overrides: Any) -> dict[str, Any]:
    """The adapter's configuration with both sources served by ``http_files``."""
    values: dict[str, Any] = {
        "stop_places": AREA,
        "service_date": "2018-08-28",
        "timetable": {"url": http_files.serve("/gtfs.zip", GTFS, content_type="application/zip")},
        "realtime": {
            "url": http_files.serve("/et", SIRI, content_type="application/xml"),
            "headers": {"ET-Client-Name": "drammen-citybus-tests"},
        },
    }
    values.update(overrides)
    return values


def by_call(events: list[Any]) -> dict[tuple[str, str, str | None], TrainCall]:
    """Published calls by (status kind, service journey, quay)."""
    calls: dict[tuple[str, str, str | None], TrainCall] = {}
    for event in events:
        call = event.data
        kind = "scheduled" if call.status == "scheduled" else "realtime"
        calls[(kind, call.service_journey, call.quay)] = call
    return calls


def fetches(harness: AdapterHarness, source: str, outcome: str) -> float:
    labels = {"adapter": "entur-trains", "adapter_instance": "test", "source": source, "outcome": outcome}
    return harness.bus.metrics.registry.get_sample_value("citybus_source_fetches_total", labels) or 0.0


# -- the timetable ----------------------------------------------------------------------------------


async def test_the_scheduled_calls_of_2018_08_28_are_those_of_the_derived_table(
    http_files: FileServer,
) -> None:
    async with AdapterHarness(EnturTrains, config(http_files, realtime_enabled=False)) as harness:
        await harness.wait_for(TrainCall, SCHEDULED)
        await harness.settle()
        calls = [e.data for e in harness.published(TrainCall)]
    assert len(calls) == SCHEDULED
    assert http_files.requests["/et"] == 0  # realtime_enabled = false: the timetable only
    # the derived table's rows per station: 222 Drammen, 77 Brakerøya, 42 Gulskogen, 42 Mjøndalen
    assert Counter(c.stop_place for c in calls) == {DRAMMEN: 222, BRAKEROYA: 77, GULSKOGEN: 42, MJONDALEN: 42}
    with TABLE.open(encoding="utf-8") as table:
        rows = {(r["trip_id"], r["quay_id"]): r for r in csv.DictReader(table)}
    assert {(c.service_journey, c.quay) for c in calls} == set(rows)
    midnight = at(0, 0)
    for call in calls:
        row = rows[(call.service_journey, call.quay)]
        assert (call.line, call.destination, call.platform) == (
            row["route_short_name"],
            row["trip_headsign"],
            row["platform"],
        )
        assert (call.sequence, call.stop_name, call.status) == (
            int(row["stop_sequence"]),
            row["stop_name"],
            "scheduled",
        )
        # the table repeats the time at a journey's first and last stop; a call has no arrival at the
        # first (stop_sequence 0 in this feed) and no departure at the last (trains ending at Drammen)
        first = call.sequence == 0
        last = row["stop_name"] == "Drammen stasjon" and row["trip_headsign"] == "Drammen"
        for value, text, absent in (
            (call.aimed_arrival, row["arrival_time"], first),
            (call.aimed_departure, row["departure_time"], last),
        ):
            hours, minutes, seconds = (int(p) for p in text.split(":"))
            expected = midnight + timedelta(hours=hours, minutes=minutes, seconds=seconds)
            assert value == (None if absent else expected), (call.service_journey, call.quay)


async def test_an_l13_departure_from_brakeroya_field_by_field(http_files: FileServer) -> None:
    async with AdapterHarness(EnturTrains, config(http_files, realtime=None)) as harness:
        events = await harness.wait_for(TrainCall, SCHEDULED)
    [event] = [
        e
        for e in events
        if e.data.service_journey == "NSB:ServiceJourney:1-738-1631" and e.data.quay == "NSR:Quay:879"
    ]
    # stop_times.txt line 37853: NSB:ServiceJourney:1-738-1631,NSR:Quay:879,1,12:07:00,12:08:00;
    # trips.txt line 4347: route NSB:Line:L13, headsign Dal; stops.txt: NSR:Quay:879 platform 2
    assert event.data == TrainCall(
        service_journey="NSB:ServiceJourney:1-738-1631",
        line="L13",
        operator="NSB",
        stop_place=BRAKEROYA,
        quay="NSR:Quay:879",
        stop_name="Brakerøya stasjon",
        sequence=1,
        aimed_arrival=at(12, 7),
        aimed_departure=at(12, 8),
        platform="2",
        status="scheduled",
        destination="Dal",
        location=GeoPoint.at(59.74379, 10.232988),  # stops.txt: Brakerøya stasjon
    )
    assert event.data.aimed_departure is not None
    assert event.data.aimed_departure.utcoffset() == timedelta(hours=2)
    assert event.envelope.provenance == "vendor"  # served over HTTP
    assert event.envelope.time == at(12, 8)
    assert event.subject == "city.public.mobility.train-call.NSR:StopPlace:536"


async def test_a_call_past_midnight_and_a_journeys_last_call(http_files: FileServer) -> None:
    async with AdapterHarness(EnturTrains, config(http_files, realtime=None)) as harness:
        calls = by_call(await harness.wait_for(TrainCall, SCHEDULED))
    # stop_times.txt line 23300: the Bergen train 1-2198-606 at NSR:Quay:101598, 29:33:00 and 29:38:00
    night = calls[("scheduled", "NSB:ServiceJourney:1-2198-606", "NSR:Quay:101598")]
    assert (night.aimed_arrival, night.aimed_departure) == (at(5, 33, day=29), at(5, 38, day=29))
    assert (night.line, night.destination, night.platform, night.sequence) == ("41", "Oslo S", "5", 16)
    # the derived table: L13 1-821-1674 ends at Drammen (Quay 18, sequence 17) at 24:24:00
    end = calls[("scheduled", "NSB:ServiceJourney:1-821-1674", "NSR:Quay:18")]
    assert (end.aimed_arrival, end.aimed_departure, end.sequence) == (at(0, 24, day=29), None, 17)


async def test_stop_place_drammen_stasjon_with_its_quays(http_files: FileServer) -> None:
    async with AdapterHarness(EnturTrains, config(http_files, realtime=None)) as harness:
        places = {e.data.stop_place: e for e in await harness.wait_for(StopPlace, len(AREA))}
    assert set(places) == set(AREA)
    drammen = places[DRAMMEN]
    # stops.txt line 377 and the quays of parent NSR:StopPlace:11 (lines 1553, 1562, 1555, 1549, 757)
    assert drammen.data == StopPlace(
        stop_place=DRAMMEN,
        name="Drammen stasjon",
        location=GeoPoint.at(59.740105, 10.205235),
        # route_type 714 (rail replacement bus) calls here as well as the trains
        modes=["bus", "rail"],
        quays=[
            Quay(id="NSR:Quay:22", public_code="1", location=GeoPoint.at(59.739967, 10.20495)),
            Quay(id="NSR:Quay:18", public_code="2", location=GeoPoint.at(59.740025, 10.205036)),
            Quay(id="NSR:Quay:20", public_code="3", location=GeoPoint.at(59.740093, 10.205119)),
            Quay(id="NSR:Quay:26", public_code="4", location=GeoPoint.at(59.74016, 10.205207)),
            Quay(id="NSR:Quay:101598", public_code="5", location=GeoPoint.at(59.740227, 10.205282)),
        ],
    )
    assert drammen.envelope.provenance == "vendor"
    assert drammen.subject == "city.public.mobility.stop-place.NSR:StopPlace:11"
    # Mjøndalen (stops.txt): quays 306 (platform 2) and 308 (platform 1)
    assert [(q.id, q.public_code) for q in places[MJONDALEN].data.quays] == [
        ("NSR:Quay:308", "1"),
        ("NSR:Quay:306", "2"),
    ]


def test_gtfs_times_count_from_noon_minus_twelve_hours_across_the_dst_change() -> None:
    # On 2018-10-28 the clocks went back at 03:00 CEST; noon (CET) minus 12 h is 01:00 CEST.
    timetable = timetable_result().timetable
    calls = {(c.service_journey, c.quay): c for c in timetable.calls_on(date(2018, 10, 28))}
    # stop_times.txt line 38436: 1-830-1679 leaves Drammen (Quay 26) at 00:05:00 -> 01:05 CEST
    first = calls[("NSB:ServiceJourney:1-830-1679", "NSR:Quay:26")]
    assert first.aimed_departure == datetime(2018, 10, 28, 1, 5, tzinfo=CEST)
    # stop_times.txt line 30081: 1-1361-2281 ends at Drammen (Quay 26) at 02:00:00 -> 02:00 CET
    last = calls[("NSB:ServiceJourney:1-1361-2281", "NSR:Quay:26")]
    assert (last.aimed_arrival, last.aimed_departure) == (datetime(2018, 10, 28, 2, 0, tzinfo=CET), None)
    # spring forward on 2018-03-25: noon (CEST) minus 12 h is 23:00 CET the day before
    oslo = ZoneInfo("Europe/Oslo")
    assert gtfs_moment(date(2018, 3, 25), 30 * 60, oslo) == datetime(2018, 3, 24, 23, 30, tzinfo=CET)


def test_gtfs_time_parsing_and_route_types() -> None:
    assert parse_gtfs_time("29:38:00") == 29 * 3600 + 38 * 60
    assert parse_gtfs_time("7:05:00") == 7 * 3600 + 5 * 60
    assert parse_gtfs_time(" ") is None
    for bad in ("12:O7:00", "12:07", "12:60:00", "1:2:3", "-1:00:00"):
        with pytest.raises(ValueError, match="GTFS time"):
            parse_gtfs_time(bad)
    modes = {t: mode_of_route_type(t) for t in (2, 3, 100, 102, 106, 200, 401, 700, 714, 900, 1000, 1500)}
    assert modes == {
        2: "rail",
        3: "bus",
        100: "rail",
        102: "rail",
        106: "rail",
        200: "coach",
        401: "metro",
        700: "bus",
        714: "bus",
        900: "tram",
        1000: "water",
        1500: None,
    }
    assert (codespace("NSB:ServiceJourney:1-1821-311"), codespace("3718:2018-08-28")) == ("NSB", None)
    assert (line_code("FLT:Line:F2$FLT:Line:F2"), line_code("NSB:Line:-$NSB:Line:-")) == ("F2", None)


# -- real time ------------------------------------------------------------------------------------


async def test_the_siri_snapshot_joins_the_planned_calls(http_files: FileServer) -> None:
    async with AdapterHarness(EnturTrains, config(http_files)) as harness:
        events = await harness.wait_for(TrainCall, SCHEDULED + REALTIME)
        await harness.settle()
        assert len(harness.published(TrainCall)) == SCHEDULED + REALTIME
        assert harness.dead_letters == []
    scheduled = {
        (e.data.service_journey, e.data.stop_place, e.data.sequence)
        for e in events
        if e.data.status == "scheduled"
    }
    realtime = [e.data for e in events if e.data.status != "scheduled"]
    assert Counter(c.status for c in realtime) == {"actual": 27, "estimated": 28}
    # 48 of the 57 calls join a planned call; Flytoget's 7 (ids such as 3718:2018-08-28) are not in NSB's
    # GTFS, and CargoNet's 2 freight calls are not published at all
    joined = [c for c in realtime if (c.service_journey, c.stop_place, c.sequence) in scheduled]
    assert len(joined) == 48
    unjoined = {c.service_journey.split(":")[0] for c in realtime if c not in joined}
    assert unjoined == {"3718", "3720", "3722", "3724", "3727", "3729", "3731"}
    assert all(c.destination for c in realtime)  # from the timetable where SIRI has no DestinationName
    assert any(h.get("ET-Client-Name") == "drammen-citybus-tests" for h in http_files.request_headers)


async def test_the_late_r10_at_drammen(http_files: FileServer) -> None:
    async with AdapterHarness(EnturTrains, config(http_files)) as harness:
        events = await harness.wait_for(TrainCall, SCHEDULED + REALTIME)
    [event] = [
        e
        for e in events
        if e.data.service_journey == "NSB:ServiceJourney:1-1821-311" and e.data.status != "scheduled"
    ]
    # the SIRI file, lines 408-428: RecordedCall at NSR:Quay:22, Order 1, aimed departure 08:57,
    # actual 09:01, platform 1, no DestinationName; trips.txt: R10 to Lillehammer; stop_sequence 0
    assert event.data == TrainCall(
        service_journey="NSB:ServiceJourney:1-1821-311",
        line="R10",
        operator="NSB",
        stop_place=DRAMMEN,
        quay="NSR:Quay:22",
        stop_name="Drammen stasjon",
        sequence=0,
        aimed_departure=at(8, 57),
        expected_departure=at(9, 1),
        actual_departure=at(9, 1),
        platform="1",
        delay_seconds=240,
        status="actual",
        destination="Lillehammer",
        location=GeoPoint.at(59.740105, 10.205235),  # stops.txt: Drammen stasjon
    )
    assert event.envelope.time == at(9, 1)
    assert event.envelope.provenance == "vendor"


async def test_an_estimated_flytoget_arrival_without_a_planned_call(http_files: FileServer) -> None:
    async with AdapterHarness(EnturTrains, config(http_files)) as harness:
        events = await harness.wait_for(TrainCall, SCHEDULED + REALTIME)
    [call] = [e.data for e in events if e.data.service_journey == "3718:2018-08-28"]
    # the SIRI file, lines 285-320: F2 to Drammen, operator FLY, its 9th call (no Order) an
    # EstimatedCall at NSR:Quay:20, aimed arrival 09:08, expected 09:10:03, platform 3
    assert call == TrainCall(
        service_journey="3718:2018-08-28",
        line="F2",
        operator="FLY",
        stop_place=DRAMMEN,
        quay="NSR:Quay:20",
        stop_name="Drammen stasjon",
        sequence=9,
        aimed_arrival=at(9, 8),
        expected_arrival=at(9, 10, 3),
        platform="3",
        delay_seconds=123,
        status="estimated",
        destination="Drammen",
        location=GeoPoint.at(59.740105, 10.205235),
    )


async def test_freight_trains_are_published_only_when_asked_for(http_files: FileServer) -> None:
    async with AdapterHarness(EnturTrains, config(http_files, freight=True)) as harness:
        events = await harness.wait_for(TrainCall, SCHEDULED + REALTIME + 2)
    freight = sorted((e.data for e in events if e.data.operator == "CN"), key=lambda c: c.service_journey)
    # the SIRI file: CargoNet 5301 to Sundland at NSR:Quay:26 (aimed 09:38:30/09:39) and 5806 to
    # Alnabru at NSR:Quay:36 (Gulskogen, aimed 10:56/11:00), line NSB's placeholder "-"
    assert [(c.service_journey, c.quay, c.line, c.destination, c.aimed_departure) for c in freight] == [
        ("5301:2018-08-28", "NSR:Quay:26", "-", "Sundland", at(9, 39)),
        ("5806:2018-08-28", "NSR:Quay:36", "-", "Alnabru", at(11, 0)),
    ]


async def test_a_second_poll_publishes_only_what_changed(http_files: FileServer) -> None:
    values = config(http_files)
    values["realtime"]["interval"] = 0.05
    text = SIRI.read_text(encoding="utf-8")
    async with AdapterHarness(EnturTrains, values) as harness:
        await harness.wait_for(TrainCall, SCHEDULED + REALTIME)
        # the same calls in a new document (only the response time differs): nothing new
        again = text.replace("09:08:35.867", "09:09:05.120")
        http_files.serve("/et", again.encode(), content_type="application/xml")
        await wait_for(lambda: fetches(harness, "realtime", "ok") >= 2)
        await harness.settle()
        assert len(harness.published(TrainCall)) == SCHEDULED + REALTIME
        # the R10 leaves Drammen 20 s later than first recorded: that call, and only it, again
        later = again.replace(
            "<ActualDepartureTime>2018-08-28T09:01:00+02:00</ActualDepartureTime>",
            "<ActualDepartureTime>2018-08-28T09:01:20+02:00</ActualDepartureTime>",
        )
        http_files.serve("/et", later.encode(), content_type="application/xml")
        await wait_for(lambda: fetches(harness, "realtime", "ok") >= 3)
        unchanged = fetches(harness, "realtime", "not-modified")
        await wait_for(lambda: fetches(harness, "realtime", "not-modified") >= unchanged + 2)
        await harness.settle()
        events = harness.published(TrainCall)
    assert len(events) == SCHEDULED + REALTIME + 1
    latest = events[-1].data
    assert (latest.service_journey, latest.actual_departure) == (
        "NSB:ServiceJourney:1-1821-311",
        at(9, 1, 20),
    )
    assert latest.delay_seconds == 260


async def test_real_time_waits_for_the_timetable(http_files: FileServer) -> None:
    values = config(http_files)
    values["timetable"] = {"url": http_files.url("/later.zip"), "backoff_initial": 0.05, "backoff_max": 0.1}
    async with AdapterHarness(EnturTrains, values) as harness:
        await wait_for(
            lambda: fetches(harness, "realtime", "ok") >= 1 and fetches(harness, "timetable", "http-404") >= 1
        )
        await harness.settle()
        assert harness.published(TrainCall) == []  # held: which quay is in the area is in the timetable
        http_files.serve("/later.zip", GTFS, content_type="application/zip")
        events = await harness.wait_for(TrainCall, SCHEDULED + REALTIME)
    assert sum(e.data.status != "scheduled" for e in events) == REALTIME


# -- what is dead-lettered ------------------------------------------------------------------------


def truncated_siri() -> bytes:
    return SIRI.read_bytes()[:200_000]


def crc_broken_gtfs() -> bytes:
    """The real zip with one byte of stop_times.txt's compressed data flipped."""
    body = bytearray(GTFS.read_bytes())
    info = zipfile.ZipFile(GTFS).getinfo("stop_times.txt")
    name_length, extra_length = struct.unpack("<HH", body[info.header_offset + 26 : info.header_offset + 30])
    data = info.header_offset + 30 + name_length + extra_length
    body[data + info.compress_size // 2] ^= 0x55
    return bytes(body)


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE Siri [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    b'<Siri xmlns="http://www.siri.org.uk/siri">&lol2;</Siri>'
)
VEHICLE_MONITORING = (
    b'<Siri xmlns="http://www.siri.org.uk/siri" version="2.0"><ServiceDelivery>'
    b"<VehicleMonitoringDelivery/></ServiceDelivery></Siri>"
)


@pytest.mark.parametrize(
    ("source", "body", "reason", "named"),
    [
        ("realtime", truncated_siri, "not-xml", "line"),
        ("realtime", lambda: BILLION_LAUGHS, "xml-doctype", "DOCTYPE"),
        ("realtime", lambda: VEHICLE_MONITORING, "not-siri-et", "EstimatedTimetableDelivery"),
        ("realtime", lambda: b'{"Siri": {}}', "not-xml", "not well-formed"),
        ("timetable", lambda: GTFS.read_bytes()[:300_000], "not-zip", "zip"),
        ("timetable", crc_broken_gtfs, "gtfs-unreadable", "stop_times.txt"),
        ("timetable", lambda: with_member("trips.txt", None), "gtfs-missing-member", "trips.txt"),
    ],
    ids=["truncated-xml", "doctype", "vehicle-monitoring", "json", "truncated-zip", "bad-crc", "no-trips"],
)
async def test_a_document_that_does_not_parse_is_dead_lettered_whole(
    http_files: FileServer, source: str, body: Callable[[], bytes], reason: str, named: str
) -> None:
    data = body()
    values = config(http_files)
    path = "/gtfs.zip" if source == "timetable" else "/et"
    http_files.serve(path, data, content_type="application/octet-stream")
    async with AdapterHarness(EnturTrains, values) as harness:
        await wait_for(lambda: fetches(harness, source, "malformed") >= 1)
        await harness.settle()
        [letter] = harness.dead_letters
    assert letter.reason == reason
    assert named in letter.detail
    assert letter.payload == data
    if source == "timetable":
        assert harness.published(TrainCall) == []


async def test_a_bad_stop_time_is_dead_lettered_alone(http_files: FileServer) -> None:
    text = gtfs_members()["stop_times.txt"].decode()
    row = "NSB:ServiceJourney:1-738-1631,NSR:Quay:879,1,12:07:00,12:08:00,0,0,,"  # line 37853
    assert row in text
    broken = with_member("stop_times.txt", text.replace(row, row.replace("12:07:00", "12:O7:00")).encode())
    values = config(http_files, realtime=None)
    values["timetable"]["url"] = http_files.serve("/gtfs.zip", broken, content_type="application/zip")
    async with AdapterHarness(EnturTrains, values) as harness:
        await harness.wait_for(TrainCall, SCHEDULED - 1)
        await harness.settle()
        assert len(harness.published(TrainCall)) == SCHEDULED - 1
        [letter] = harness.dead_letters
    assert letter.reason == "bad-stop-time"
    assert "stop_times.txt line 37853" in letter.detail and "'12:O7:00'" in letter.detail
    header = "trip_id,stop_id,stop_sequence,arrival_time,departure_time,pickup_type,drop_off_type"
    assert letter.payload.decode().startswith(header)
    assert "NSB:ServiceJourney:1-738-1631,NSR:Quay:879,1,12:O7:00,12:08:00" in letter.payload.decode()


async def test_bad_calls_are_dead_lettered_alone_with_their_xml(http_files: FileServer) -> None:
    text = SIRI.read_text(encoding="utf-8")
    # Flytoget 3718: its expected arrival at Drammen without a UTC offset
    text = text.replace("2018-08-28T09:10:03+02:00", "2018-08-28T09:10:03", 1)
    # the late R10: its call at Drammen loses its StopPointRef
    r10 = text.index("NSB:ServiceJourney:1-1821-311")
    text = text[:r10] + text[r10:].replace("<StopPointRef>NSR:Quay:22</StopPointRef>", "", 1)
    # Flytoget 3731 loses its LineRef: no line at all, which the contract does not allow
    f2 = text.index("<DatedVehicleJourneyRef>3731:2018-08-28")
    line_ref = text.rindex("<LineRef>FLT:Line:F2$FLT:Line:F2</LineRef>", 0, f2)
    text = text[:line_ref] + text[line_ref:].replace("<LineRef>FLT:Line:F2$FLT:Line:F2</LineRef>", "", 1)
    values = config(http_files)
    values["realtime"]["url"] = http_files.serve("/et", text.encode(), content_type="application/xml")
    async with AdapterHarness(EnturTrains, values) as harness:
        await harness.wait_for(TrainCall, SCHEDULED + REALTIME - 3)
        await wait_for(lambda: len(harness.dead_letters) >= 3)
        await harness.settle()
        assert len(harness.published(TrainCall)) == SCHEDULED + REALTIME - 3
        letters = {letter.reason: letter for letter in harness.dead_letters}
    assert set(letters) == {"bad-time", "no-stop-point", "out-of-range"}
    assert "3718:2018-08-28" in letters["bad-time"].detail
    assert "ExpectedArrivalTime '2018-08-28T09:10:03' has no UTC offset" in letters["bad-time"].detail
    assert letters["bad-time"].payload.startswith(b'<EstimatedCall xmlns="http://www.siri.org.uk/siri">')
    assert (
        "NSB:ServiceJourney:1-1821-311, call 1 (RecordedCall): no StopPointRef"
        in letters["no-stop-point"].detail
    )
    assert (
        b"<ActualDepartureTime>2018-08-28T09:01:00+02:00</ActualDepartureTime>"
        in letters["no-stop-point"].payload
    )
    assert "3731:2018-08-28" in letters["out-of-range"].detail and "line" in letters["out-of-range"].detail
    assert b"<StopPointRef>NSR:Quay:20</StopPointRef>" in letters["out-of-range"].payload


def test_a_zip_without_a_required_member_names_it() -> None:
    for member in ("stops.txt", "stop_times.txt", "agency.txt"):
        with pytest.raises(SourceFormatError, match=f"the GTFS zip has no {member}") as info:
            parse_gtfs(with_member(member, None), AREA)
        assert info.value.reason == "gtfs-missing-member"
    calendars = {k: v for k, v in gtfs_members().items() if k != "calendar_dates.txt"}
    with pytest.raises(SourceFormatError, match="neither calendar.txt nor calendar_dates.txt"):
        parse_gtfs(rezip(calendars), AREA)
    no_column = gtfs_members()["stop_times.txt"].replace(b"stop_sequence", b"stop_order", 1)
    with pytest.raises(SourceFormatError, match="stop_times.txt has no column stop_sequence") as info:
        parse_gtfs(with_member("stop_times.txt", no_column), AREA)
    assert info.value.reason == "gtfs-missing-column"


# -- the service date -----------------------------------------------------------------------------


class FakeClock:
    """A clock the test moves: ``sleep`` returns once the test has moved it past the deadline."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + timedelta(seconds=seconds)
        while self._now < deadline:
            await self._moved.wait()

    def move_to(self, moment: datetime) -> None:
        self._now = moment
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()


async def test_at_midnight_the_new_service_dates_calls_are_published(http_files: FileServer) -> None:
    clock = FakeClock(at(23, 59, 30).astimezone(UTC))
    values = config(http_files, realtime=None)
    del values["service_date"]  # today in Europe/Oslo, by the clock
    async with AdapterHarness(EnturTrains, values, clock=clock) as harness:
        first = by_call(await harness.wait_for(TrainCall, SCHEDULED))
        await harness.settle()
        l13 = first[("scheduled", "NSB:ServiceJourney:1-738-1631", "NSR:Quay:879")]
        assert l13.aimed_departure == at(12, 8)  # Tuesday's, as the clock says it is still Tuesday
        clock.move_to(at(0, 0, 5, day=29))
        # Wednesday 2018-08-29 has 383 calls in the area as well (the same weekday timetable)
        events = await harness.wait_for(TrainCall, 2 * SCHEDULED)
        await harness.settle()
        assert len(harness.published(TrainCall)) == 2 * SCHEDULED
    new = by_call(events[SCHEDULED:])
    l13 = new[("scheduled", "NSB:ServiceJourney:1-738-1631", "NSR:Quay:879")]
    assert (l13.aimed_arrival, l13.aimed_departure) == (at(12, 7, day=29), at(12, 8, day=29))


# -- configuration --------------------------------------------------------------------------------


def test_the_default_configuration_polls_entur_as_a_named_client() -> None:
    defaults = TrainsConfig()
    assert (
        defaults.stop_places
        == list(DRAMMEN_AREA)
        == [
            "NSR:StopPlace:11",
            "NSR:StopPlace:536",
            "NSR:StopPlace:18",
            "NSR:StopPlace:187",
            "NSR:StopPlace:426",
        ]
    )
    assert (defaults.timetable.url, defaults.timetable.interval) == (ENTUR_GTFS_URL, 86_400)
    assert defaults.realtime is not None
    assert (defaults.realtime.url, defaults.realtime.interval) == (ENTUR_SIRI_ET_URL, 30)
    assert defaults.realtime.headers == defaults.timetable.headers == {"ET-Client-Name": ENTUR_CLIENT_NAME}
    assert defaults.timetable.max_bytes > 1024**3  # the national zip is far beyond the usual 64 MiB
    assert defaults.service_date is None and defaults.freight is False
    replay = parse_instance("trains", EnturTrains, {"service_date": "2018-08-28"}).config
    assert replay.service_date == date(2018, 8, 28)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"stop_places": ["Drammen stasjon"]}, "'Drammen stasjon' is not a stop place id"),
        ({"stop_places": ["NSR:Quay:22"]}, "such as NSR:StopPlace:11"),
        ({"stop_places": [DRAMMEN, DRAMMEN]}, "lists NSR:StopPlace:11 twice"),
        ({"stop_places": []}, "key stop_places"),
        ({"service_date": "28.08.2018"}, "key service_date"),
        ({"timetable": {"url": "ftp://example.org/gtfs.zip"}}, "must be an http:// or https:// URL"),
        ({"stations": [DRAMMEN]}, "unknown key 'stations'"),
    ],
    ids=["a-name", "a-quay", "twice", "none", "date-format", "ftp", "unknown-key"],
)
def test_configuration_errors_say_what_is_wrong(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        parse_instance("trains", EnturTrains, table)
    assert "[adapters.trains] (entur-trains)" in str(info.value)


# -- the parsers, fuzzed --------------------------------------------------------------------------

EXCERPT_TRIPS = (
    "NSB:ServiceJourney:1-738-1631",
    "NSB:ServiceJourney:1-1821-311",
    "NSB:ServiceJourney:1-821-1674",
)


def _csv_rows(data: bytes, keep: Callable[[dict[str, str]], bool], first: int = 5) -> bytes:
    lines = data.decode("utf-8").splitlines()
    reader = csv.DictReader(lines)
    kept = [
        line for n, (line, row) in enumerate(zip(lines[1:], reader, strict=True)) if n < first or keep(row)
    ]
    return ("\n".join([lines[0], *kept]) + "\n").encode()


@cache
def excerpt_members() -> dict[str, bytes]:
    """A small real feed: the first rows of each member, plus the rows of three journeys through the area."""
    members = gtfs_members()
    area = set(AREA)
    trips = set(EXCERPT_TRIPS)
    trip_rows = [
        r for r in csv.DictReader(members["trips.txt"].decode().splitlines()) if r["trip_id"] in trips
    ]
    routes = {r["route_id"] for r in trip_rows}
    services = {r["service_id"] for r in trip_rows}
    return {
        "agency.txt": members["agency.txt"],
        "stops.txt": _csv_rows(
            members["stops.txt"], lambda r: r["stop_id"] in area or r["parent_station"] in area
        ),
        "routes.txt": _csv_rows(members["routes.txt"], lambda r: r["route_id"] in routes),
        "trips.txt": _csv_rows(members["trips.txt"], lambda r: r["trip_id"] in trips),
        "stop_times.txt": _csv_rows(members["stop_times.txt"], lambda r: r["trip_id"] in trips),
        "calendar_dates.txt": _csv_rows(
            members["calendar_dates.txt"],
            lambda r: r["service_id"] in services and r["date"].startswith("201808"),
        ),
    }


@cache
def excerpt_zip() -> bytes:
    return rezip(excerpt_members())


def test_the_gtfs_excerpt_is_a_timetable() -> None:
    result = parse_gtfs(excerpt_zip(), AREA)
    assert result.rejected == [] and result.missing == []
    calls = {(c.service_journey, c.quay) for c in result.timetable.calls_on(date(2018, 8, 28))}
    assert ("NSB:ServiceJourney:1-738-1631", "NSR:Quay:879") in calls
    assert ("NSB:ServiceJourney:1-1821-311", "NSR:Quay:22") in calls
    assert len(excerpt_zip()) < 40_000


def parses_or_refuses_gtfs(body: bytes) -> None:
    try:
        result = parse_gtfs(body, AREA)
    except SourceFormatError as exc:
        assert REASON.match(exc.reason) and str(exc)
        return
    for rejected in result.rejected:
        assert REASON.match(rejected.reason) and rejected.detail and rejected.payload
    result.timetable.calls_on(date(2018, 8, 28))  # what the adapter does next must not fail either


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_truncated_gtfs_zip_parses_or_is_refused(data: st.DataObject) -> None:
    body = excerpt_zip()
    parses_or_refuses_gtfs(body[: data.draw(st.integers(0, len(body)))])


@settings(max_examples=150, deadline=None)
@given(edits(max_edits=8))
def test_a_mutated_gtfs_zip_parses_or_is_refused(changes: list[Edit]) -> None:
    parses_or_refuses_gtfs(apply_edits(excerpt_zip(), changes))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(excerpt_members())), edits(max_edits=8), st.booleans(), st.data())
def test_mutated_or_truncated_gtfs_members_parse_or_are_refused(
    member: str, changes: list[Edit], truncate: bool, data: st.DataObject
) -> None:
    # a well-formed zip around a damaged CSV member reaches the CSV readers, not just zipfile
    original = excerpt_members()[member]
    damaged = (
        original[: data.draw(st.integers(0, len(original)))] if truncate else apply_edits(original, changes)
    )
    parses_or_refuses_gtfs(rezip({**excerpt_members(), member: damaged}))


@cache
def siri_excerpt() -> bytes:
    """The real SIRI document cut to two journeys: Flytoget 3718 and the late R10."""
    text = SIRI.read_text(encoding="utf-8")
    start = text.index("<EstimatedVehicleJourney>")
    end = text.rindex("</EstimatedVehicleJourney>") + len("</EstimatedVehicleJourney>")
    journeys = re.findall(r"<EstimatedVehicleJourney>.*?</EstimatedVehicleJourney>", text, re.S)
    kept = [j for j in journeys if "3718:2018-08-28" in j or "NSB:ServiceJourney:1-1821-311" in j]
    return (text[:start] + "\n".join(kept) + text[end:]).encode()


def parses_or_refuses_siri(body: bytes) -> None:
    timetable = timetable_result().timetable
    try:
        result = parse_estimated_timetable(body, timetable.quays.__contains__)
    except SourceFormatError as exc:
        assert exc.reason in ("not-xml", "xml-doctype", "not-siri-et") and str(exc)
        return
    for rejected in result.rejected:
        assert REASON.match(rejected.reason) and rejected.detail and rejected.payload
    decoder = msgspec.json.Decoder(TrainCall)
    for journey in result.journeys:  # what the adapter does next must not fail either
        for call in journey.calls:
            try:
                decoder.decode(msgspec.json.encode(join_call(timetable, journey, call)))
            except msgspec.ValidationError:
                pass  # dead-lettered as out-of-range


def test_the_siri_excerpt_has_its_two_journeys_and_every_prefix_parses_or_is_refused() -> None:
    body = siri_excerpt()
    result = parse_estimated_timetable(body, timetable_result().timetable.quays.__contains__)
    assert [(j.journey_ref, len(j.calls)) for j in result.journeys] == [
        ("3718:2018-08-28", 1),
        ("NSB:ServiceJourney:1-1821-311", 1),
    ]
    for length in range(0, len(body), 7):
        parses_or_refuses_siri(body[:length])


@settings(max_examples=300, deadline=None)
@given(edits(max_edits=8))
def test_a_mutated_siri_document_parses_or_is_refused(changes: list[Edit]) -> None:
    parses_or_refuses_siri(apply_edits(siri_excerpt(), changes))


SIRI_VALUES = (
    b"<Order>",
    b"<AimedDepartureTime>",
    b"<ExpectedArrivalTime>",
    b"<StopPointRef>",
    b"<LineRef>",
    b"<DatedVehicleJourneyRef>",
    b"<OperatorRef>",
    b"<DeparturePlatformName>",
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SIRI_VALUES), st.text(max_size=30))
def test_siri_values_replaced_by_anything_parse_or_are_refused(element: bytes, value: str) -> None:
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").encode("utf-8", "surrogatepass")
    body = re.sub(re.escape(element) + rb"[^<]*", lambda _: element + escaped, siri_excerpt(), count=1)
    parses_or_refuses_siri(body)


# -- over a real nats-server ----------------------------------------------------------------------


@pytest.mark.slow
async def test_over_a_real_nats_server(http_files: FileServer, bus: Bus) -> None:
    values = config(http_files)
    del values["stop_places"]  # the default area, Lier included
    async with AdapterHarness(EnturTrains, values, bus=bus) as harness:
        places = await harness.wait_for(StopPlace, len(DRAMMEN_AREA), timeout=15)
        # Lier adds 77 scheduled calls (stop_times.txt rows at NSR:Quay:711/712 whose service runs on
        # 2018-08-28) and 7 real-time ones (the SIRI file's calls at those quays)
        events = await harness.wait_for(TrainCall, SCHEDULED + 77 + REALTIME + 7, timeout=15)
        await harness.settle()
        calls = [e.data for e in harness.published(TrainCall)]
        assert len(calls) == SCHEDULED + 77 + REALTIME + 7
    assert {e.envelope.provenance for e in events} == {"vendor"}
    assert {e.data.stop_place for e in places} == set(DRAMMEN_AREA)
    assert {c.stop_place for c in calls} == set(DRAMMEN_AREA)
    # the L13 1-710-1617 left Lier (NSR:Quay:711) at 08:41, on time: a RecordedCall in the SIRI file
    [lier] = [
        c
        for c in calls
        if c.service_journey == "NSB:ServiceJourney:1-710-1617"
        and c.status == "actual"
        and c.stop_place == LIER
    ]
    assert (lier.quay, lier.actual_departure, lier.delay_seconds, lier.line) == (
        "NSR:Quay:711",
        at(8, 41),
        0,
        "L13",
    )
    [r10] = [
        c for c in calls if c.service_journey == "NSB:ServiceJourney:1-1821-311" and c.status == "actual"
    ]
    assert (r10.delay_seconds, r10.destination) == (240, "Lillehammer")
