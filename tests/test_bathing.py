"""The yr bathing-temperature adapter: yr.no's water temperatures over real HTTP, beach observations out.

The served documents are the ``response`` list of
``sandbox/data/sources/bathing/yr_bathing_temperature_example.json``: two records, Storøyodden in
Bærum, reported by Badevann.no, and Årvolldammen in Oslo, read by hand.
Records changed to test a failure are DERIVED from those two and marked so where they are made.
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

import adapters.bathing as bathing
from adapters.bathing import (
    BathingConfig,
    YrBathing,
    decode_record,
    municipality_key,
    observation_from,
    place_of,
    provenance_of,
    split_records,
)
from adapters.changes import stable_id
from adapters.instances import parse_instance
from adapters.polling import SourceFormatError
from adapters.testing import AdapterHarness
from bus import Bus, Provenance
from bus.errors import ConfigError
from contracts import BeachObservation
from contracts.fields import GeoPoint
from tests.conftest import wait_for
from tests.fuzz import mutated
from tests.http_files import SOURCES, FileServer

FORMAT = json.loads((SOURCES / "bathing" / "yr_bathing_temperature_example.json").read_text(encoding="utf-8"))
RESPONSE: list[dict[str, Any]] = FORMAT["response"]
STOROYODDEN, ARVOLLDAMMEN = RESPONSE
CEST = timezone(timedelta(hours=2))
PATH = "/api/watertemperatures"
KEY = "yr-key-0c4e9b21d7"


def document(*records: object, indent: int | None = None) -> bytes:
    """A water-temperatures answer: a JSON array of records."""
    return json.dumps(list(records), ensure_ascii=False, indent=indent).encode()


RESPONSE_BODY = document(*RESPONSE)


def by_site(events: list[Any]) -> dict[str, Any]:
    return {e.data.site: e for e in events}


def fetches(harness: AdapterHarness, outcome: str) -> float:
    labels = {
        "adapter": "yr-bathing",
        "adapter_instance": "test",
        "source": "watertemperatures",
        "outcome": outcome,
    }
    return harness.bus.metrics.registry.get_sample_value("citybus_source_fetches_total", labels) or 0.0


def config(url: str, **extra: Any) -> dict[str, Any]:
    return {"source": {"url": url, "interval": 0.05}, "api_key": KEY, **extra}


@pytest.fixture
async def harness(http_files: FileServer) -> AsyncIterator[AdapterHarness]:
    url = http_files.serve(PATH, RESPONSE_BODY)
    async with AdapterHarness(YrBathing, config(url, municipalities=[])) as h:
        yield h


# -- records in, observations out -----------------------------------------------------------------


async def test_both_records_become_observations_field_by_field(harness: AdapterHarness) -> None:
    events = by_site(await harness.wait_for(BeachObservation, 2))
    # expected values read by hand from yr_bathing_temperature_example.json, response[0]
    storoyodden = events["storoyodden"]  # "locationName": "Storøyodden"
    assert storoyodden.data == BeachObservation(
        site="storoyodden",
        observed_at=datetime(2025, 5, 30, 4, 0, 46, tzinfo=CEST),  # "time": "2025-05-30T04:00:46+02:00"
        water_temperature=13.6,  # "temperature": 13.6
        location=GeoPoint(coordinates=(10.59302, 59.88819)),  # "position": {"lat": 59.88819, "lon": 10.59302}
        source="Badevann.no",  # "sourceDisplayName": "Badevann.no"
    )
    assert storoyodden.data.device is None
    assert storoyodden.provenance == "vendor"  # a platform's sensor, passed on
    assert storoyodden.envelope.time == datetime(2025, 5, 30, 4, 0, 46, tzinfo=CEST)
    assert storoyodden.id == stable_id("yr-bathing", "storoyodden", "2025-05-30T04:00:46+02:00")
    assert storoyodden.subject == "city.public.environment.beach-observation.storoyodden"
    # response[1]: no sourceDisplayName, so someone measured it by hand
    arvolldammen = events["arvolldammen"]  # "locationName": "Årvolldammen"
    assert arvolldammen.data == BeachObservation(
        site="arvolldammen",
        observed_at=datetime(2025, 5, 26, 8, 40, tzinfo=CEST),  # "time": "2025-05-26T08:40:00+02:00"
        water_temperature=10.0,  # "temperature": 10
        location=GeoPoint(coordinates=(10.82012, 59.94768)),  # "position": {"lat": 59.94768, "lon": 10.82012}
        source="yr.no",
    )
    assert arvolldammen.provenance == "manual"
    assert harness.dead_letters == []


async def test_the_key_reaches_yr_and_never_the_logs(http_files: FileServer) -> None:
    url = http_files.serve(PATH, RESPONSE_BODY)
    http_files.fail(PATH, status=401)  # a failure is logged with the URL and the error: not the key
    table = {
        **config(url, municipalities=[]),
        "source": {"url": url, "interval": 0.05, "backoff_initial": 0.01},
    }
    with structlog.testing.capture_logs() as logs:
        async with AdapterHarness(YrBathing, table) as harness:
            await harness.wait_for(BeachObservation, 2)
            await harness.settle()
            assert fetches(harness, "http-401") == 1
            assert KEY not in repr(harness.adapter.config)
            assert all(
                KEY not in letter.detail + repr(letter.original_headers) for letter in harness.dead_letters
            )
    assert [headers.get("apikey") for headers in http_files.request_headers[:2]] == [KEY, KEY]
    assert any(e["event"] == "source failed" and "401" in e["error"] for e in logs)
    assert KEY not in repr(logs)


async def test_without_a_key_the_adapter_warns(http_files: FileServer) -> None:
    url = http_files.serve(PATH, RESPONSE_BODY)
    with structlog.testing.capture_logs() as logs:
        async with AdapterHarness(YrBathing, {"source": {"url": url}, "municipalities": []}) as harness:
            await harness.wait_for(BeachObservation, 2)
    assert any("no api_key" in e["event"] and e["log_level"] == "warning" for e in logs)
    assert "apikey" not in {name.lower() for name in http_files.request_headers[0]}


@pytest.mark.parametrize(
    ("municipalities", "sites", "expected"),
    [
        (["Drammen kommune"], {}, {}),  # the default: neither record is in Drammen
        (
            ["Oslo kommune"],
            {},
            {"arvolldammen": "Årvolldammen"},
        ),  # response[1] "municipality": "Oslo kommune"
        (
            ["bærum"],
            {},
            {"storoyodden": "Storøyodden"},
        ),  # response[0] "Bærum kommune", any case, no "kommune"
        (
            ["Oslo kommune", "Bærum kommune"],
            {},
            {"arvolldammen": "Årvolldammen", "storoyodden": "Storøyodden"},
        ),
        (["Drammen kommune"], {"0-10014": "storoyodden-baerum"}, {"storoyodden-baerum": "Storøyodden"}),
    ],
    ids=["drammen", "oslo", "baerum", "both", "named-in-sites"],
)
async def test_the_municipality_filter_skips_other_towns_quietly(
    http_files: FileServer, municipalities: list[str], sites: dict[str, str], expected: dict[str, str]
) -> None:
    url = http_files.serve(PATH, RESPONSE_BODY)
    with structlog.testing.capture_logs() as logs:
        async with AdapterHarness(
            YrBathing, config(url, municipalities=municipalities, sites=sites)
        ) as harness:
            await wait_for(lambda: fetches(harness, "ok") == 1)
            await harness.settle()
            published = harness.published(BeachObservation)
            assert {e.data.site: e.data.water_temperature for e in published} == {
                site: {"Storøyodden": 13.6, "Årvolldammen": 10.0}[name] for site, name in expected.items()
            }
            assert harness.dead_letters == []  # skipped records are not errors
    [handled] = [e for e in logs if e["event"] == "water temperatures handled"]
    assert handled.get("skipped", 0) == 2 - len(expected)
    assert handled.get("published", 0) == len(expected)


async def test_a_second_poll_publishes_nothing_new(harness: AdapterHarness, http_files: FileServer) -> None:
    await harness.wait_for(BeachObservation, 2)
    await wait_for(lambda: http_files.requests[PATH] >= 3)  # the same document: not handled again
    http_files.serve(PATH, document(*reversed(RESPONSE), indent=2))  # the same records in other bytes
    await wait_for(lambda: fetches(harness, "ok") >= 2)
    await harness.settle()
    assert len(harness.published(BeachObservation)) == 2
    # a new reading at Årvolldammen (DERIVED: the next morning, 10.4 °C): exactly one more message
    newer = {**ARVOLLDAMMEN, "temperature": 10.4, "time": "2025-05-27T08:40:00+02:00"}
    http_files.serve(PATH, document(STOROYODDEN, newer))
    [*_, event] = await harness.wait_for(BeachObservation, 3)
    assert (event.data.site, event.data.water_temperature) == ("arvolldammen", 10.4)
    polled = http_files.requests[PATH]
    await wait_for(lambda: http_files.requests[PATH] >= polled + 2)
    await harness.settle()
    assert len(harness.published(BeachObservation)) == 3


BAD = [
    # each DERIVED from a real record, changed in the one way the reason names
    ({**STOROYODDEN, "temperature": 136.0}, "out-of-range", "water_temperature"),
    (
        {**ARVOLLDAMMEN, "locationId": "0-1", "position": {"lat": 95.0, "lon": 10.82012}},
        "out-of-range",
        "coordinates",
    ),
    ({**ARVOLLDAMMEN, "locationId": "0-2", "temperature": "10,5"}, "unexpected-shape", "$[3].temperature"),
    ({**ARVOLLDAMMEN, "locationId": "0-3", "time": "2025-05-26T08:40:00"}, "unexpected-shape", "$[4].time"),
    ({**ARVOLLDAMMEN, "locationId": "0-4", "locationName": "?"}, "unnamed-site", "map '0-4' in `sites`"),
    (
        {k: v for k, v in ARVOLLDAMMEN.items() if k != "time"},
        "unexpected-shape",
        "missing required field `time`",
    ),
    ("Årvolldammen", "unexpected-shape", "Expected `object`, got `str`"),
]


async def test_bad_records_are_dead_lettered_alone_and_once(http_files: FileServer) -> None:
    url = http_files.serve(PATH, document(ARVOLLDAMMEN, *(record for record, _, _ in BAD)))
    async with AdapterHarness(YrBathing, config(url, municipalities=[])) as harness:
        [event] = await harness.wait_for(BeachObservation)
        assert event.data.site == "arvolldammen"
        await wait_for(lambda: len(harness.dead_letters) >= len(BAD))
        letters = harness.dead_letters
        assert [letter.reason for letter in letters] == [reason for _, reason, _ in BAD]
        for letter, (record, _, named) in zip(letters, BAD, strict=True):
            assert named in letter.detail, letter.detail
            assert json.loads(letter.payload) == record  # the record alone
        assert "Storøyodden (0-10014) at 2025-05-30T04:00:46+02:00" in letters[0].detail
        # the same records again in other bytes: those with an identity are not dead-lettered twice
        http_files.serve(PATH, document(ARVOLLDAMMEN, *(record for record, _, _ in BAD), indent=1))
        await wait_for(lambda: fetches(harness, "ok") >= 2)
        await harness.settle()
        again = [letter.reason for letter in harness.dead_letters[len(BAD) :]]
        assert again == ["unexpected-shape"] * 4


MALFORMED = [
    (RESPONSE_BODY[:180], "not-json", "ends in the middle of a value after 180 bytes"),
    (b"", "not-json", "the document is empty"),
    (RESPONSE_BODY.replace(b'"elevation": 1,', b'"elevation": 1,,'), "not-json", "at line 1, column "),
    (b'{"message": "Invalid API key"}', "unexpected-shape", "Expected `array`, got `object`"),
]


@pytest.mark.parametrize(("body", "reason", "named"), MALFORMED, ids=["truncated", "empty", "bad", "object"])
async def test_a_malformed_document_is_dead_lettered_whole(
    http_files: FileServer, body: bytes, reason: str, named: str
) -> None:
    url = http_files.serve(PATH, body)
    async with AdapterHarness(YrBathing, config(url, municipalities=[])) as harness:
        await wait_for(lambda: len(harness.dead_letters) == 1)
        [letter] = harness.dead_letters
        assert (letter.reason, letter.payload) == (reason, body)
        assert named in letter.detail, letter.detail
        assert KEY not in letter.detail
        assert harness.published(BeachObservation) == []


async def test_a_file_keeps_manual_and_vendor_unless_provenance_is_configured(tmp_path: Path) -> None:
    path = tmp_path / "watertemperatures.json"
    path.write_bytes(RESPONSE_BODY)
    table: dict[str, Any] = {"source": {"file": str(path)}, "municipalities": []}
    async with AdapterHarness(YrBathing, table) as harness:
        events = by_site(await harness.wait_for(BeachObservation, 2))
        assert (events["storoyodden"].provenance, events["arvolldammen"].provenance) == ("vendor", "manual")
    table["source"]["provenance"] = "synthetic"
    async with AdapterHarness(YrBathing, table) as harness:
        events = by_site(await harness.wait_for(BeachObservation, 2))
        assert {e.provenance for e in events.values()} == {"synthetic"}


# -- configuration --------------------------------------------------------------------------------


def config_error(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_instance("bathing", YrBathing, table)
    return str(info.value)


def test_the_default_config_reads_drammen_from_yr_every_half_hour() -> None:
    parsed = parse_instance("bathing", YrBathing, {"adapter": "yr-bathing"}).config
    assert isinstance(parsed, BathingConfig)
    assert parsed.source.url == "https://badetemperaturer.yr.no/api/watertemperatures"
    assert parsed.source.interval == 1800
    assert (parsed.api_key, parsed.municipalities, parsed.sites) == (None, ["Drammen kommune"], {})


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"api_key": "abc def"}, "api_key must be the key alone"),
        ({"api_key": ""}, "api_key must be the key alone"),
        (
            {
                "api_key": "k1",
                "source": {"url": "https://badetemperaturer.yr.no/api/x", "headers": {"ApiKey": "k2"}},
            },
            "the key is given twice",
        ),
        ({"sites": {"0-10014": "Storøyodden"}}, "'0-10014' = 'Storøyodden' is not a slug"),
        ({"municipalities": [" "]}, "municipalities: ' ' is not a municipality's name"),
        ({"municipalities": "Drammen kommune"}, "key municipalities: Expected `array`, got `str`"),
        ({"apikey": "k"}, "unknown key 'apikey'"),
    ],
    ids=[
        "space-in-key",
        "empty-key",
        "key-twice",
        "bad-slug",
        "blank-municipality",
        "not-a-list",
        "unknown-key",
    ],
)
def test_config_errors_say_what_to_fix(table: dict[str, Any], named: str) -> None:
    message = config_error(table)
    assert "[adapters.bathing] (yr-bathing)" in message
    assert named in message
    assert "k2" not in message


def test_the_key_is_a_header_of_the_request_only() -> None:
    parsed = msgspec.convert({"api_key": KEY}, BathingConfig)
    assert parsed.request_source().headers == {"apikey": KEY}
    assert parsed.source.headers == {}
    assert KEY not in repr(parsed) and "api_key='***'" in repr(parsed)


# -- the mapping, piece by piece ------------------------------------------------------------------


def test_municipality_names_compare_without_case_or_kommune() -> None:
    assert municipality_key("Drammen kommune") == municipality_key(" drammen ") == "drammen"
    assert municipality_key("Bærum  Kommune") == "bærum"


def test_provenance_and_source_follow_source_display_name() -> None:
    storoyodden = decode_record(json.dumps(STOROYODDEN).encode(), 0)
    arvolldammen = decode_record(json.dumps(ARVOLLDAMMEN).encode(), 1)
    assert (provenance_of(storoyodden), provenance_of(arvolldammen)) == (Provenance.VENDOR, Provenance.MANUAL)
    blank = decode_record(json.dumps({**STOROYODDEN, "sourceDisplayName": " "}).encode(), 0)
    assert (provenance_of(blank), observation_from(blank, sites={}).source) == (Provenance.MANUAL, "yr.no")
    assert observation_from(storoyodden, sites={"0-10014": "storoya"}).site == "storoya"
    assert place_of(json.dumps(ARVOLLDAMMEN).encode(), 1).municipality == "Oslo kommune"


def test_package_all_is_sorted_and_complete() -> None:
    assert bathing.__all__ == sorted(bathing.__all__)
    assert [name for name in bathing.__all__ if not hasattr(bathing, name)] == []


# -- fuzzing the parser with the real document ----------------------------------------------------


def parse_everything(body: bytes) -> list[BeachObservation]:
    """What the adapter does with a document, without the bus: each record published or refused."""
    published = []
    for index, data in enumerate(split_records(body)):
        try:
            place_of(data, index)
            published.append(observation_from(decode_record(data, index), sites={}))
        except SourceFormatError as exc:
            assert exc.reason and str(exc)
    return published


def test_the_real_document_parses() -> None:
    assert [(o.site, o.water_temperature) for o in parse_everything(RESPONSE_BODY)] == [
        ("storoyodden", 13.6),
        ("arvolldammen", 10.0),
    ]


def test_every_truncation_is_a_format_error() -> None:
    for length in range(len(RESPONSE_BODY)):
        with pytest.raises(SourceFormatError) as info:
            parse_everything(RESPONSE_BODY[:length])
        assert info.value.reason == "not-json" and str(info.value), length


@settings(max_examples=300, deadline=None)
@given(mutated(RESPONSE_BODY))
def test_a_mutated_document_parses_or_is_a_format_error(body: bytes) -> None:
    try:
        parse_everything(body)
    except SourceFormatError as exc:
        assert exc.reason in ("not-json", "unexpected-shape") and str(exc)


# -- over a real nats-server ----------------------------------------------------------------------


async def test_over_a_real_nats_server(bus: Bus, http_files: FileServer) -> None:
    url = http_files.serve(PATH, RESPONSE_BODY)
    async with AdapterHarness(
        YrBathing, config(url, municipalities=["Oslo kommune", "Bærum kommune"]), bus=bus
    ) as h:
        await wait_for(lambda: {"storoyodden", "arvolldammen"} <= set(by_site(h.published(BeachObservation))))
        events = by_site(h.published(BeachObservation))
        assert (events["storoyodden"].data.water_temperature, events["storoyodden"].provenance) == (
            13.6,
            "vendor",
        )
        assert (events["arvolldammen"].data.source, events["arvolldammen"].provenance) == ("yr.no", "manual")
