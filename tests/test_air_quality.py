"""The NILU air-quality adapter: NILU's ``/aq/utd`` JSON served over real HTTP, observations out.

Every document is built from the one real record in ``sandbox/data/sources/air/nilu_format_example.json``
(``record_example``: Oslo, Manglerud, PM10, 2022-03-09 12–13 h). Drammen's stations are known by name
only (the file's ``drammen_stations_from_drammen_kommune_page``: no EoI codes, no coordinates), so the
Drammen records below are DERIVED from that real record — its field layout, with the station,
component and value changed — and are marked as such wherever they are made.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from hypothesis import given, settings

import adapters.air as air
from adapters.air import (
    AirConfig,
    NiluAirQuality,
    component_code,
    concentration,
    decode_record,
    observation_from,
    split_records,
    station_type,
)
from adapters.changes import stable_id
from adapters.instances import parse_instance
from adapters.polling import SourceFormatError
from adapters.testing import AdapterHarness
from bus import Bus
from bus.errors import ConfigError
from contracts import AirQualityObserved
from contracts.fields import GeoPoint
from tests.conftest import wait_for
from tests.fuzz import mutated
from tests.http_files import SOURCES, FileServer

FORMAT = json.loads((SOURCES / "air" / "nilu_format_example.json").read_text(encoding="utf-8"))
REAL: dict[str, Any] = FORMAT["record_example"]
"""The real NILU record (Oslo, Manglerud, PM10, 2022-03-09 12–13 h)."""

CET = timezone(timedelta(hours=1))
TO_TIME = datetime(2022, 3, 9, 13, 0, tzinfo=CET)  # record_example.toTime "2022-03-09T13:00:00+01:00"
PATH = "/aq/utd"


def derived(**changes: Any) -> dict[str, Any]:
    """DERIVED from the real record: a Drammen station in NILU's record layout (not a real reading).

    Drammen's EoI codes, ids and zone are not known, so they are left out rather than invented.
    """
    record = {k: v for k, v in REAL.items() if k not in ("id", "eoi", "zone")}
    record.update(area="Drammen", municipality="Drammen")
    record.update(changes)
    return record


# DERIVED: Bangeløkka is roadside (the file's note); coordinates are the Bangeløkka bus quay from
# sandbox/data/sources/README.md (59.73091, 10.216454), near the station, not the station itself.
BANGELOKKA_PM25 = derived(
    station="Bangeløkka", component="PM2.5", value=12.4, index=1, latitude=59.73091, longitude=10.216454
)
# DERIVED: Backeparken as an urban-background station, without coordinates (none are public).
BACKEPARKEN_NO2 = {
    k: v
    for k, v in derived(
        station="Backeparken", type="Bybakgrunn", component="NO2", value=31.4, index=2
    ).items()
    if k not in ("latitude", "longitude")
}
# DERIVED: carbon monoxide in mg/m³, as NILU reports CO, and NILU's "no index" (0).
VARVEIEN_CO = derived(station="Vårveien", component="CO", value=0.4, unit="mg/m³", index=0)

GOOD = [REAL, BANGELOKKA_PM25, BACKEPARKEN_NO2, VARVEIEN_CO]


def document(*records: object, indent: int | None = None) -> bytes:
    """A ``/aq/utd`` answer: a JSON array of records, UTF-8 as NILU sends it."""
    return json.dumps(list(records), ensure_ascii=False, indent=indent).encode()


def by_station(events: list[Any]) -> dict[tuple[str, str], Any]:
    return {(e.data.station, e.data.component): e for e in events}


def fetches(harness: AdapterHarness, outcome: str) -> float:
    labels = {"adapter": "nilu-air-quality", "adapter_instance": "test", "source": "utd", "outcome": outcome}
    return harness.bus.metrics.registry.get_sample_value("citybus_source_fetches_total", labels) or 0.0


@pytest.fixture
async def served(http_files: FileServer) -> str:
    return http_files.serve(PATH, document(*GOOD), content_type="application/json; charset=utf-8")


@pytest.fixture
async def harness(served: str) -> AsyncIterator[AdapterHarness]:
    async with AdapterHarness(NiluAirQuality, {"source": {"url": served, "interval": 0.05}}) as h:
        yield h


# -- records in, observations out -----------------------------------------------------------------


async def test_the_real_record_becomes_an_observation_field_by_field(harness: AdapterHarness) -> None:
    events = by_station(await harness.wait_for(AirQualityObserved, 4))
    event = events["manglerud", "PM10"]
    # every expected value below is record_example's, read by hand from nilu_format_example.json
    assert event.data == AirQualityObserved(
        station="manglerud",  # "station": "Manglerud"
        station_name="Manglerud",
        station_type="roadside",  # "type": "Veinær stasjon"
        location=GeoPoint(coordinates=(10.8149, 59.89864)),  # "latitude": 59.89864, "longitude": 10.8149
        component="PM10",  # "component": "PM10"
        value=50.7,  # "value": 50.7, "unit": "µg/m³"
        index=1,  # "index": 1
        observed_at=TO_TIME,  # "toTime": "2022-03-09T13:00:00+01:00"
        averaging_period=3600,  # "timestep": 3600
    )
    assert event.provenance == "vendor"
    assert event.envelope.time == TO_TIME
    assert event.id == stable_id("nilu-air-quality", "manglerud", "PM10", "2022-03-09T13:00:00+01:00")
    assert event.subject == "city.public.environment.air-quality-observed.manglerud"
    assert harness.dead_letters == []


async def test_drammen_stations_convert_units_and_drop_no_index(harness: AdapterHarness) -> None:
    events = by_station(await harness.wait_for(AirQualityObserved, 4))
    bangelokka = events["bangelokka", "PM2.5"].data  # DERIVED record BANGELOKKA_PM25
    assert (bangelokka.station_name, bangelokka.station_type) == ("Bangeløkka", "roadside")
    assert (bangelokka.value, bangelokka.index, bangelokka.observed_at) == (12.4, 1, TO_TIME)
    assert bangelokka.location == GeoPoint.at(59.73091, 10.216454)
    backeparken = events["backeparken", "NO2"].data  # DERIVED record BACKEPARKEN_NO2
    assert (backeparken.station_type, backeparken.value, backeparken.index) == ("urban-background", 31.4, 2)
    assert backeparken.location is None  # no coordinates in the record: absent, not (0, 0)
    varveien = events["varveien", "CO"].data  # DERIVED record VARVEIEN_CO: 0.4 mg/m³
    assert varveien.value == 400.0  # µg/m³, as the contract promises
    assert varveien.index is None  # NILU's 0 means "no index"


async def test_a_second_poll_publishes_nothing_new(harness: AdapterHarness, http_files: FileServer) -> None:
    await harness.wait_for(AirQualityObserved, 4)
    await wait_for(lambda: http_files.requests[PATH] >= 3)  # identical polls: 304, nothing handled
    # the same records in other bytes: handled again, but each (station, component, hour) is known
    http_files.serve(PATH, document(*reversed(GOOD), indent=2))
    await wait_for(lambda: fetches(harness, "ok") >= 2)
    await harness.settle()
    assert len(harness.published(AirQualityObserved)) == 4
    # the next hour at one station: exactly one new message
    next_hour = {**REAL, "fromTime": "2022-03-09T13:00:00+01:00", "toTime": "2022-03-09T14:00:00+01:00"}
    http_files.serve(PATH, document(next_hour, BANGELOKKA_PM25, BACKEPARKEN_NO2, VARVEIEN_CO))
    [*_, newest] = await harness.wait_for(AirQualityObserved, 5)
    assert (newest.data.station, newest.data.observed_at) == ("manglerud", TO_TIME + timedelta(hours=1))
    polled = http_files.requests[PATH]
    await wait_for(lambda: http_files.requests[PATH] >= polled + 2)
    await harness.settle()
    assert len(harness.published(AirQualityObserved)) == 5
    assert harness.dead_letters == []


BAD = [
    # every bad record is DERIVED from the real one, changed in the one way the reason names
    ({**REAL, "isValid": False}, "invalid-at-source", "isValid false"),
    ({**REAL, "component": "C6H6"}, "unknown-component", "'C6H6'"),
    ({**REAL, "component": "NO", "unit": "ppb"}, "unknown-unit", "'ppb'"),
    ({**REAL, "component": "NO2", "value": None}, "no-value", "null"),
    ({**REAL, "component": "O3", "value": "n/a"}, "unexpected-shape", "$[5].value"),
    ({**REAL, "component": "SO2", "value": -5.0}, "out-of-range", "value"),
    ({**REAL, "component": "NOx", "toTime": "2022-03-09T13:00:00"}, "unexpected-shape", "$[7].toTime"),
    ({**REAL, "component": "PM1", "latitude": 159.9}, "out-of-range", "coordinates"),
    ({**REAL, "station": "—", "eoi": None}, "unnamed-station", "`stations`"),
    (42, "unexpected-shape", "Expected `object`, got `int`"),
]


async def test_bad_records_are_dead_lettered_alone_and_once(http_files: FileServer) -> None:
    body = document(BANGELOKKA_PM25, *(record for record, _, _ in BAD))
    url = http_files.serve(PATH, body)
    async with AdapterHarness(NiluAirQuality, {"source": {"url": url, "interval": 0.05}}) as harness:
        [event] = await harness.wait_for(AirQualityObserved)
        assert event.data.station == "bangelokka"
        await wait_for(lambda: len(harness.dead_letters) >= len(BAD))
        letters = harness.dead_letters
        assert [letter.reason for letter in letters] == [reason for _, reason, _ in BAD]
        for letter, (record, _, named) in zip(letters, BAD, strict=True):
            assert named in letter.detail, letter.detail
            assert json.loads(letter.payload) == record  # the record alone, not the document
            assert letter.original_subject == url
        assert "Manglerud PM10 at 2022-03-09T13:00:00+01:00" in letters[0].detail
        # the same document in other bytes: records that still fail are not dead-lettered again,
        # except those that do not even decode (no identity to remember them by)
        http_files.serve(PATH, document(BANGELOKKA_PM25, *(record for record, _, _ in BAD), indent=1))
        await wait_for(lambda: fetches(harness, "ok") >= 2)
        await harness.settle()
        again = [letter.reason for letter in harness.dead_letters[len(BAD) :]]
        assert again == ["unexpected-shape", "unexpected-shape", "unexpected-shape"]
        assert len(harness.published(AirQualityObserved)) == 1


MALFORMED = [
    (document(*GOOD)[:700], "not-json", "ends in the middle of a value after 700 bytes"),
    (b"", "not-json", "the document is empty"),
    (b'[\n  {"station": "Manglerud",\n   component: "PM10"}]', "not-json", "at line 3, column 4 (byte 32)"),
    (b"<html><body>502 Bad Gateway</body></html>", "not-json", "at line 1, column 1 (byte 0)"),
    (json.dumps({"records": [REAL]}).encode(), "unexpected-shape", "Expected `array`, got `object`"),
]


@pytest.mark.parametrize(
    ("body", "reason", "named"), MALFORMED, ids=["truncated", "empty", "bad", "html", "object"]
)
async def test_a_malformed_document_is_dead_lettered_whole(
    http_files: FileServer, body: bytes, reason: str, named: str
) -> None:
    url = http_files.serve(PATH, body)
    async with AdapterHarness(NiluAirQuality, {"source": {"url": url}}) as harness:
        await wait_for(lambda: len(harness.dead_letters) == 1)
        [letter] = harness.dead_letters
        assert letter.reason == reason
        assert named in letter.detail, letter.detail
        assert letter.payload == body
        assert fetches(harness, "malformed") == 1
        assert harness.published(AirQualityObserved) == []


async def test_a_byte_order_mark_is_not_an_error(http_files: FileServer) -> None:
    url = http_files.serve(PATH, b"\xef\xbb\xbf" + document(REAL))
    async with AdapterHarness(NiluAirQuality, {"source": {"url": url}}) as harness:
        [event] = await harness.wait_for(AirQualityObserved)
        assert event.data.value == 50.7  # record_example.value


# -- configuration --------------------------------------------------------------------------------


async def test_components_filter_and_station_names_from_the_config(http_files: FileServer) -> None:
    # a benzene record outside the filter is skipped, not dead-lettered: the operator did not ask for it
    body = document(*GOOD, {**REAL, "component": "C6H6"})
    url = http_files.serve(PATH, body)
    config = {
        "source": {"url": url},
        "components": ["PM10", "PM2.5"],
        "stations": {"NO0071A": "manglerud-nilu", "Bangeløkka": "bangelokka-bjornsons-gate"},
    }
    async with AdapterHarness(NiluAirQuality, config) as harness:
        events = await harness.wait_for(AirQualityObserved, 2)
        await wait_for(lambda: fetches(harness, "ok") >= 1)
        await harness.settle()
        assert sorted(by_station(harness.published(AirQualityObserved))) == [
            ("bangelokka-bjornsons-gate", "PM2.5"),  # mapped by NILU's station name
            ("manglerud-nilu", "PM10"),  # mapped by record_example's "eoi": "NO0071A"
        ]
        assert {e.data.station_name for e in events} == {"Manglerud", "Bangeløkka"}
        assert harness.dead_letters == []


async def test_the_key_in_source_headers_reaches_nilu_and_stays_out_of_logs(http_files: FileServer) -> None:
    url = http_files.serve(PATH, document(REAL))
    key = "nilu-key-5f1c9a77"
    http_files.fail(PATH, status=401)
    config = {
        "source": {"url": url, "interval": 0.05, "backoff_initial": 0.01, "headers": {"X-Api-Key": key}}
    }
    with structlog.testing.capture_logs() as logs:
        async with AdapterHarness(NiluAirQuality, config) as harness:
            await harness.wait_for(AirQualityObserved)
            assert fetches(harness, "http-401") == 1
            assert key not in repr(harness.adapter.config)
    assert [h.get("X-Api-Key") for h in http_files.request_headers][:2] == [key, key]
    failed = [e for e in logs if e["event"] == "source failed"]
    assert failed and "401" in failed[0]["error"] and "API key" in failed[0]["error"]
    assert key not in repr(logs)


async def test_a_recorded_file_is_published_as_recorded(tmp_path: Path) -> None:
    path = tmp_path / "utd.json"
    path.write_bytes(document(REAL))
    async with AdapterHarness(NiluAirQuality, {"source": {"file": str(path)}}) as harness:
        [event] = await harness.wait_for(AirQualityObserved)
        assert event.provenance == "recorded"


def config_error(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_instance("air", NiluAirQuality, table)
    return str(info.value)


def test_the_default_config_polls_nilu_for_drammen_every_quarter_hour() -> None:
    config = parse_instance("air", NiluAirQuality, {"adapter": "nilu-air-quality"}).config
    assert isinstance(config, AirConfig)
    assert config.source.url == "https://api.nilu.no/aq/utd?areas=Drammen"
    assert config.source.interval == 900
    assert (config.stations, config.components) == ({}, None)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"components": ["PM25"]}, "unknown component 'PM25'; known: PM10, PM2.5"),
        ({"components": []}, "components: an empty list would publish nothing"),
        ({"stations": {"NO0071A": "Manglerud"}}, "'NO0071A' = 'Manglerud' is not a slug"),
        ({"station": {}}, "unknown key 'station'"),
        ({"source": {"url": "https://api.nilu.no/aq/utd", "file": "utd.json"}}, "exactly one of `url`"),
        ({"source": {"url": "ftp://api.nilu.no/aq/utd"}}, "http:// or https://"),
    ],
    ids=["unknown-component", "no-components", "bad-slug", "unknown-key", "url-and-file", "bad-url"],
)
def test_config_errors_say_what_to_fix(table: dict[str, Any], named: str) -> None:
    message = config_error(table)
    assert "[adapters.air] (nilu-air-quality)" in message
    assert named in message


def test_the_config_repr_hides_headers() -> None:
    config = AirConfig(stations={"Vårveien": "varveien"})
    assert "api.nilu.no" in repr(config)
    keyed = msgspec.convert(
        {"source": {"url": "https://api.nilu.no/aq/utd", "headers": {"k": "s3cret"}}}, AirConfig
    )
    assert "s3cret" not in repr(keyed) and "'k': '***'" in repr(keyed)


# -- the mapping, piece by piece ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Veinær stasjon", "roadside"),  # record_example.type
        ("Bybakgrunn", "urban-background"),
        ("Forstadsbakgrunn", "suburban-background"),
        ("Industri", "industrial"),
        ("Industrinær stasjon", "industrial"),
        ("Regional bakgrunn", "rural-background"),
        ("Landlig bakgrunn", "rural-background"),
        ("  veinær   STASJON ", "roadside"),
        ("Målestasjon", None),
        (None, None),
    ],
)
def test_station_types(text: str | None, kind: str | None) -> None:
    assert station_type(text) == kind


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (50.7, "µg/m³", 50.7),  # record_example: the micro sign U+00B5 and a superscript 3
        (50.7, "\u03bcg/m\u00b3", 50.7),  # the Greek mu
        (50.7, "ug/m3", 50.7),
        (0.4, "mg/m³", 400.0),
        (0.123, "mg/m3", 123.0),
        (5.0, "ppb", None),
        (5.0, "", None),
    ],
)
def test_units_become_micrograms_per_cubic_metre(value: float, unit: str, expected: float | None) -> None:
    assert concentration(value, unit) == expected


def test_component_codes_ignore_case_and_index_outside_1_to_4_is_absent() -> None:
    assert [component_code(c) for c in ("PM10", "pm2.5", "no2", "NOx", "C6H6")] == [
        "PM10",
        "PM2.5",
        "NO2",
        "NOx",
        None,
    ]
    for index, expected in ((1, 1), (4, 4), (0, None), (-1, None), (5, None), (None, None)):
        record = decode_record(json.dumps({**REAL, "index": index}).encode(), 0)
        assert observation_from(record, stations={}).index == expected, index


def test_package_all_is_sorted_and_complete() -> None:
    assert air.__all__ == sorted(air.__all__)
    assert [name for name in air.__all__ if not hasattr(air, name)] == []


# -- fuzzing the parser with the real document ----------------------------------------------------

REAL_DOCUMENT = document(*GOOD)


def parse_everything(body: bytes) -> list[AirQualityObserved]:
    """What the adapter does with a document, without the bus: each record published or refused."""
    published = []
    for index, data in enumerate(split_records(body)):
        try:
            published.append(observation_from(decode_record(data, index), stations={}))
        except SourceFormatError as exc:
            assert exc.reason and str(exc)
    return published


def test_the_real_document_parses() -> None:
    assert [(o.station, o.component) for o in parse_everything(REAL_DOCUMENT)] == [
        ("manglerud", "PM10"),
        ("bangelokka", "PM2.5"),
        ("backeparken", "NO2"),
        ("varveien", "CO"),
    ]


def test_every_truncation_is_a_format_error() -> None:
    for length in range(len(REAL_DOCUMENT)):
        with pytest.raises(SourceFormatError) as info:
            parse_everything(REAL_DOCUMENT[:length])
        assert info.value.reason == "not-json" and str(info.value), length


@settings(max_examples=300, deadline=None)
@given(mutated(REAL_DOCUMENT))
def test_a_mutated_document_parses_or_is_a_format_error(body: bytes) -> None:
    try:
        parse_everything(body)
    except SourceFormatError as exc:
        assert exc.reason in ("not-json", "unexpected-shape") and str(exc)


# -- over a real nats-server ----------------------------------------------------------------------


async def test_over_a_real_nats_server(bus: Bus, http_files: FileServer) -> None:
    url = http_files.serve(PATH, document(*GOOD))
    async with AdapterHarness(NiluAirQuality, {"source": {"url": url}}, bus=bus) as harness:
        await wait_for(
            lambda: (
                {("manglerud", "PM10"), ("varveien", "CO")}
                <= set(by_station(harness.published(AirQualityObserved)))
            )
        )
        event = by_station(harness.published(AirQualityObserved))["manglerud", "PM10"]
        assert (event.data.value, event.data.observed_at, event.provenance) == (50.7, TO_TIME, "vendor")
