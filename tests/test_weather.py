"""MET Norway's weather adapters against MET's real documents, served over real HTTP.

``met-forecast`` reads a real Locationforecast 2.0 compact response (Bergen, 2023-09-17) and
``frost-weather`` a real Frost observations response (SN50540 Bergen - Florida, 2022-04-01), both
from ``sandbox/data/sources/weather``. The expected values below were read by hand from those files
(line numbers are given); the malformed documents are the real files cut or changed in one place.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from adapters import Adapter, Context
from adapters.base import NoConfig
from adapters.changes import stable_id
from adapters.instances import parse_instance
from adapters.polling import Poller, SourceFormatError
from adapters.testing import AdapterHarness
from adapters.weather import (
    ForecastConfig,
    FrostConfig,
    FrostWeather,
    MetForecast,
    forecast_for,
    parse_compact,
    parse_observations,
)
from bus import Bus
from bus.errors import ConfigError
from contracts import ForecastStep, GeoPoint, WeatherForecast, WeatherObserved
from tests.conftest import wait_for
from tests.fuzz import mutated
from tests.http_files import SOURCES, FileServer

FORECAST = (SOURCES / "weather" / "met_locationforecast_compact_example.json").read_bytes()
FROST = (SOURCES / "weather" / "frost_observations_example.json").read_bytes()
USER_AGENT = "citybus-tests/1.0 weather-tests@example.org"
CLIENT_ID = "3f6c1a2e-7b9d-4e5f-8a0b-1c2d3e4f5a6b"  # made up; Frost's ids look like this
FORECAST_PATH = "/weatherapi/locationforecast/2.0/compact"
FROST_PATH = "/observations/v0.jsonld"
UTC_TIME = functools.partial(datetime, tzinfo=UTC)


def changed(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with its one occurrence of ``old`` replaced (failing if there is not exactly one)."""
    assert data.count(old) == 1, old
    return data.replace(old, new)


def forecast_config(url: str, **source: Any) -> dict[str, Any]:
    return {
        "places": {
            "bragernes-strand": {"lat": 59.7409, "lon": 10.2138, "altitude": 2, "name": "Bragernes strand"}
        },
        "source": {"url": url, "user_agent": USER_AGENT, **source},
    }


def frost_config(url: str, **source: Any) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "stations": {
            "SN50540": {"slug": "bergen-florida", "name": "Bergen - Florida", "lat": 60.38, "lon": 5.33}
        },
        "source": {"url": url, **source},
    }


class Idle(Adapter[NoConfig]):
    """Holds a context for tests that drive the weather adapters' pollers by hand."""

    name = "test-weather"
    produces = (WeatherForecast, WeatherObserved)

    async def run(self, ctx: Context) -> None:
        ctx.ready()
        await ctx.wait_stopped()


@pytest.fixture
async def idle() -> AsyncIterator[AdapterHarness]:
    async with AdapterHarness(Idle) as harness:
        yield harness


def context(harness: AdapterHarness) -> Context:
    assert harness.context is not None
    return harness.context


def traced_session(urls: list[URL]) -> aiohttp.ClientSession:
    """A session that notes the URL of every request it sends."""

    async def on_request_start(
        session: aiohttp.ClientSession, trace: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        urls.append(params.url)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return aiohttp.ClientSession(trace_configs=[trace])


def forecast_settings(table: dict[str, Any]) -> ForecastConfig:
    config = parse_instance("forecast", MetForecast, table).config
    assert isinstance(config, ForecastConfig)
    return config


def frost_settings(table: dict[str, Any]) -> FrostConfig:
    config = parse_instance("weather", FrostWeather, table).config
    assert isinstance(config, FrostConfig)
    return config


def forecast_poller(
    harness: AdapterHarness, config: dict[str, Any], session: aiohttp.ClientSession
) -> Poller:
    adapter = MetForecast(forecast_settings(config))
    source = adapter.config.place_source("bragernes-strand")
    handler = functools.partial(adapter.handle, context(harness), "bragernes-strand")
    return Poller(context(harness), source, handler, name="bragernes-strand", session=session)


def frost_poller(harness: AdapterHarness, config: dict[str, Any], session: aiohttp.ClientSession) -> Poller:
    adapter = FrostWeather(frost_settings(config))
    source = adapter.config.request_source()
    return Poller(
        context(harness), source, functools.partial(adapter.handle, context(harness)), session=session
    )


# -- met-forecast ----------------------------------------------------------------------------------

# The first step (lines 25-60 of the file): 2023-09-17T19:00:00Z, next_1_hours partlycloudy_night, 0.0 mm.
FIRST_STEP = ForecastStep(
    time=UTC_TIME(2023, 9, 17, 19),
    temperature=11.2,
    relative_humidity=80.7,
    wind_speed=1.7,
    wind_direction=87.7,
    atmospheric_pressure=1016.8,
    cloud_cover=99.7,
    period_hours=1,
    precipitation=0.0,
    symbol="partlycloudy_night",
)
# Lines 98-131: next_1_hours says partlycloudy_night and 0.0 mm, next_6_hours lightrain and 0.6 mm.
HOUR_STEP = ForecastStep(
    time=UTC_TIME(2023, 9, 17, 21),
    temperature=11.8,
    relative_humidity=64.2,
    wind_speed=2.8,
    wind_direction=116.3,
    atmospheric_pressure=1015.4,
    cloud_cover=100.0,
    period_hours=1,
    precipitation=0.0,
    symbol="partlycloudy_night",
)
# Lines 1900-1925: a 6-hourly step, next_6_hours heavyrain 6.5 mm (next_12_hours heavyrain too).
SIX_HOUR_STEP = ForecastStep(
    time=UTC_TIME(2023, 9, 20, 12),
    temperature=14.4,
    relative_humidity=93.0,
    wind_speed=5.1,
    wind_direction=168.8,
    atmospheric_pressure=989.7,
    cloud_cover=100.0,
    period_hours=6,
    precipitation=6.5,
    symbol="heavyrain",
)
# The last step (end of the file): instant values only, no period.
LAST_STEP = ForecastStep(
    time=UTC_TIME(2023, 9, 27, 18),
    temperature=12.7,
    relative_humidity=89.3,
    wind_speed=3.5,
    wind_direction=163.5,
    atmospheric_pressure=1016.6,
    cloud_cover=100.0,
)
UPDATED_AT = UTC_TIME(2023, 9, 17, 19, 41, 8)  # meta.updated_at, line 13


async def test_a_forecast_is_published_field_by_field_from_the_real_document(http_files: FileServer) -> None:
    url = http_files.serve(FORECAST_PATH, FORECAST)
    async with AdapterHarness(MetForecast, forecast_config(url)) as harness:
        [event] = await harness.wait_for(WeatherForecast)
        await harness.settle()
        assert harness.dead_letters == []
    forecast = event.data
    assert forecast.place == "bragernes-strand"
    assert forecast.place_name == "Bragernes strand"
    assert forecast.location == GeoPoint.at(59.7409, 10.2138)  # the configured place, not Bergen
    assert forecast.elevation == 8.0  # geometry.coordinates[2], line 8
    assert forecast.updated_at == UPDATED_AT
    assert len(forecast.steps) == 85  # 85 entries in properties.timeseries
    steps = {step.time: step for step in forecast.steps}
    for expected in (FIRST_STEP, HOUR_STEP, SIX_HOUR_STEP, LAST_STEP):
        assert steps[expected.time] == expected
    assert [s.time for s in forecast.steps] == sorted(s.time for s in forecast.steps)
    # The hourly steps end with 2023-09-19T23:00 (line 1821), then every 6 hours.
    assert [s.period_hours for s in forecast.steps].count(1) == 53
    assert event.provenance == "vendor"
    assert event.subject == "city.public.environment.weather-forecast.bragernes-strand"
    assert event.id == stable_id("met-forecast", "bragernes-strand", "2023-09-17T19:41:08+00:00")
    assert event.envelope.time == UPDATED_AT
    assert http_files.request_headers[0]["User-Agent"] == USER_AGENT


async def test_the_request_carries_the_rounded_coordinates_and_the_user_agent(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    url = http_files.serve(FORECAST_PATH, FORECAST)
    config = forecast_config(url)
    config["places"]["bragernes-strand"].update(lat=59.740949, lon=10.213849)
    urls: list[URL] = []
    async with traced_session(urls) as session:
        await forecast_poller(idle, config, session).poll()
    [event] = await idle.wait_for(WeatherForecast)
    assert urls[0].path == FORECAST_PATH
    assert dict(urls[0].query) == {"lat": "59.7409", "lon": "10.2138", "altitude": "2"}
    assert http_files.request_headers[0]["User-Agent"] == USER_AGENT
    assert event.data.location == GeoPoint.at(59.7409, 10.2138)


async def test_a_second_poll_publishes_only_a_newer_forecast(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    url = http_files.serve(FORECAST_PATH, FORECAST)
    async with traced_session([]) as session:
        poller = forecast_poller(idle, forecast_config(url), session)
        await poller.poll()
        await poller.poll()  # 304 Not Modified
        # The same forecast run in other bytes reaches the handler, and is not published again.
        http_files.serve(FORECAST_PATH, json.dumps(json.loads(FORECAST)).encode())
        await poller.poll()
        older = changed(
            FORECAST, b'"updated_at": "2023-09-17T19:41:08Z"', b'"updated_at": "2023-09-17T18:41:08Z"'
        )
        http_files.serve(FORECAST_PATH, older)
        await poller.poll()
        await idle.settle()
        assert poller.documents == 3
        assert len(idle.published(WeatherForecast)) == 1
        newer = changed(
            FORECAST, b'"updated_at": "2023-09-17T19:41:08Z"', b'"updated_at": "2023-09-17T20:41:08Z"'
        )
        http_files.serve(FORECAST_PATH, newer)
        await poller.poll()
        first, second = await idle.wait_for(WeatherForecast, 2)
    assert second.data.updated_at == UTC_TIME(2023, 9, 17, 20, 41, 8)
    assert second.id != first.id
    assert idle.dead_letters == []


async def test_a_truncated_forecast_is_dead_lettered_whole(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    url = http_files.serve(FORECAST_PATH, FORECAST[:5000])
    async with traced_session([]) as session:
        await forecast_poller(idle, forecast_config(url), session).poll()
    await idle.settle()
    [letter] = idle.dead_letters
    assert letter.reason == "not-json"
    assert letter.detail.startswith("not JSON:")
    assert letter.payload == FORECAST[:5000]
    assert idle.published(WeatherForecast) == []


async def test_a_document_of_another_format_is_dead_lettered(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    url = http_files.serve(FORECAST_PATH, FROST)
    async with traced_session([]) as session:
        await forecast_poller(idle, forecast_config(url), session).poll()
    await idle.settle()
    [letter] = idle.dead_letters
    assert letter.reason == "not-locationforecast"
    assert "`properties`" in letter.detail


async def test_a_unit_the_contract_does_not_use_rejects_the_forecast(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    knots = changed(FORECAST, b'"wind_speed": "m/s"', b'"wind_speed": "knots"')
    url = http_files.serve(FORECAST_PATH, knots)
    async with traced_session([]) as session:
        await forecast_poller(idle, forecast_config(url), session).poll()
    await idle.settle()
    [letter] = idle.dead_letters
    assert letter.reason == "unsupported-unit"
    assert "meta.units.wind_speed is 'knots', but the contract wants m/s" in letter.detail
    assert idle.published(WeatherForecast) == []


def test_fahrenheit_is_converted_and_a_missing_unit_is_an_error() -> None:
    fahrenheit = changed(FORECAST, b'"air_temperature": "celsius"', b'"air_temperature": "fahrenheit"')
    assert parse_compact(fahrenheit).steps[0].temperature == -11.56  # (11.2 - 32) * 5 / 9
    no_unit = changed(FORECAST, b'"cloud_area_fraction": "%",', b"")
    with pytest.raises(SourceFormatError) as info:
        parse_compact(no_unit)
    assert info.value.reason == "unsupported-unit"
    assert "timeseries[0] (2023-09-17T19:00:00+00:00) gives cloud_area_fraction" in str(info.value)


async def test_a_bad_step_is_dead_lettered_alone_and_the_rest_published(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    hot = changed(FORECAST, b'"air_temperature": 11.2,', b'"air_temperature": 99.9,')
    url = http_files.serve(FORECAST_PATH, hot)
    async with traced_session([]) as session:
        await forecast_poller(idle, forecast_config(url), session).poll()
    [event] = await idle.wait_for(WeatherForecast)
    await idle.settle()
    assert len(event.data.steps) == 84
    assert event.data.steps[0].time == UTC_TIME(2023, 9, 17, 20)
    [letter] = idle.dead_letters
    assert letter.reason == "out-of-range"
    assert "place bragernes-strand: timeseries[0] (2023-09-17T19:00:00+00:00)" in letter.detail
    assert "temperature" in letter.detail
    assert json.loads(letter.payload)["data"]["instant"]["details"]["air_temperature"] == 99.9


def test_a_step_of_the_wrong_shape_or_a_repeated_time_is_rejected_alone() -> None:
    document = changed(FORECAST, b'"time": "2023-09-17T20:00:00Z"', b'"time": "2023-09-17T19:00:00Z"')
    document = changed(document, b'"wind_from_direction": 116.3,', b'"wind_from_direction": "116.3",')
    parsed = parse_compact(document)
    assert len(parsed.steps) == 83
    assert parsed.steps[0] == FIRST_STEP
    assert [(r.reason, r.detail.split(":")[0]) for r in parsed.rejected] == [
        ("bad-step", "timeseries[2] is not a forecast step"),
        ("duplicate-step", "timeseries[1] (2023-09-17T19"),
    ]


async def test_a_place_can_read_a_recorded_response_from_a_file() -> None:
    path = SOURCES / "weather" / "met_locationforecast_compact_example.json"
    config = {"places": {"bergen": {"lat": 60.3915, "lon": 5.3199, "name": "Bergen", "file": str(path)}}}
    with structlog.testing.capture_logs() as logs:
        async with AdapterHarness(MetForecast, config) as harness:
            [event] = await harness.wait_for(WeatherForecast)
    assert event.provenance == "recorded"
    assert event.data.place == "bergen"
    assert event.data.steps[0] == FIRST_STEP
    assert not [e for e in logs if "user_agent" in e["event"]]  # nothing is asked of api.met.no


async def test_the_default_user_agent_is_warned_about(http_files: FileServer) -> None:
    url = http_files.serve(FORECAST_PATH, FORECAST)
    config = forecast_config(url)
    del config["source"]["user_agent"]
    with structlog.testing.capture_logs() as logs:
        async with AdapterHarness(MetForecast, config) as harness:
            await harness.wait_for(WeatherForecast)
    [warning] = [e for e in logs if e["event"].startswith("user_agent is citybus's default")]
    assert warning["log_level"] == "warning"
    assert "names you and how to reach you" in warning["event"]


def forecast_error(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_instance("forecast", MetForecast, table)
    return str(info.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"places": {"bragernes-strand": {"lat": 91, "lon": 10.2}}},
            "places.bragernes-strand.lat = 91.0 is out of range: it must be from -90 to 90",
        ),
        (
            {"places": {"Bragernes Strand": {"lat": 59.7, "lon": 10.2}}},
            "place 'Bragernes Strand' is not a slug (lower-case letters, digits and single dashes, "
            "at most 64 characters): write 'bragernes-strand'",
        ),
        ({"places": {"x": {"lat": 59.7, "lon": 10.2, "elevation": 3}}}, "unknown field `elevation`"),
        ({"place": {}}, "unknown key 'place'; allowed keys: adapter, enabled, clock, account, places"),
        ({"places": {}}, "places is empty"),
        ({"places": {"x": {"lat": 59.7, "lon": 10.2, "altitude": 2.5}}}, "altitude: Expected `int | null`"),
        ({"source": {"url": "https://x.example/c?lat=1"}}, "source.url has lat: leave them out"),
        ({"source": {"file": "x.json"}}, "give each place its own `file`"),
    ],
    ids=[
        "lat-range",
        "bad-slug",
        "unknown-field",
        "unknown-key",
        "no-places",
        "altitude",
        "lat",
        "file",
    ],
)
def test_forecast_config_errors_say_what_to_fix(table: dict[str, Any], message: str) -> None:
    error = forecast_error(table)
    assert error.startswith("[adapters.forecast] (met-forecast): ")
    assert message in error


def test_the_default_place_is_bragernes_strand_polled_every_half_hour() -> None:
    config = forecast_settings({"source": {"user_agent": USER_AGENT}})
    assert config.source.user_agent == USER_AGENT
    assert list(config.places) == ["bragernes-strand"]
    assert config.place_source("bragernes-strand").url == (
        "https://api.met.no/weatherapi/locationforecast/2.0/compact?lat=59.7409&lon=10.2138"
    )
    assert config.source.interval == 1800


# -- frost-weather ---------------------------------------------------------------------------------


def authorization() -> str:
    return "Basic " + base64.b64encode(f"{CLIENT_ID}:".encode()).decode()


async def test_observations_are_published_field_by_field_from_the_real_response(
    http_files: FileServer,
) -> None:
    url = http_files.serve(FROST_PATH, FROST)
    async with AdapterHarness(FrostWeather, frost_config(url)) as harness:
        events = await harness.wait_for(WeatherObserved, 24)  # 24 items in data, hourly 00:00-23:00
        await harness.settle()
        assert harness.dead_letters == []
    assert len(events) == 24
    first, sixth, last = events[0], events[5], events[-1]
    location = GeoPoint.at(60.38, 5.33)  # from the test's stations table
    # data[0], lines 14-67: air_temperature 0 degC, relative_humidity 58 percent, wind_speed 1.4 m/s.
    assert first.data == WeatherObserved(
        station="bergen-florida",
        station_name="Bergen - Florida",
        observed_at=UTC_TIME(2022, 4, 1, 0),
        location=location,
        temperature=0.0,
        relative_humidity=58.0,
        wind_speed=1.4,
    )
    # data[5], lines 284-337: -2.4 degC, 71 percent, 1.2 m/s.
    assert (sixth.data.observed_at, sixth.data.temperature, sixth.data.relative_humidity) == (
        UTC_TIME(2022, 4, 1, 5),
        -2.4,
        71.0,
    )
    assert sixth.data.wind_speed == 1.2
    # data[23], from line 1256: -0.2 degC, 71 percent, 0.6 m/s; nothing else was asked for.
    assert (last.data.observed_at, last.data.temperature, last.data.relative_humidity) == (
        UTC_TIME(2022, 4, 1, 23),
        -0.2,
        71.0,
    )
    assert last.data.wind_speed == 0.6
    assert (last.data.wind_direction, last.data.precipitation, last.data.atmospheric_pressure) == (
        None,
        None,
        None,
    )
    assert first.provenance == "vendor"
    assert first.subject == "city.public.environment.weather-observed.bergen-florida"
    assert first.id == stable_id("frost-weather", "SN50540", "2022-04-01T00:00:00+00:00")
    assert first.envelope.time == UTC_TIME(2022, 4, 1, 0)
    assert http_files.request_headers[0]["Authorization"] == authorization()


async def test_the_request_names_the_stations_and_carries_the_client_id(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    url = http_files.serve(FROST_PATH, FROST)
    urls: list[URL] = []
    async with traced_session(urls) as session:
        await frost_poller(
            idle, frost_config(f"{url}?referencetime=latest&elements=air_temperature"), session
        ).poll()
    assert urls[0].path == FROST_PATH
    assert dict(urls[0].query) == {
        "referencetime": "latest",
        "elements": "air_temperature",
        "sources": "SN50540",
    }
    assert http_files.request_headers[0]["Authorization"] == authorization()
    await idle.wait_for(WeatherObserved, 24)


async def test_the_client_id_never_reaches_logs_errors_or_dead_letters(http_files: FileServer) -> None:
    url = http_files.serve(FROST_PATH, FROST[:3000])
    http_files.fail(FROST_PATH, status=401)
    config = frost_config(url, interval=0.05, backoff_initial=0.01, backoff_max=0.02)
    with structlog.testing.capture_logs() as logs:
        async with AdapterHarness(FrostWeather, config) as harness:
            await wait_for(lambda: len(harness.dead_letters) == 1)
            http_files.serve(FROST_PATH, FROST)
            await harness.wait_for(WeatherObserved, 24)
    assert any(e.get("outcome") == "http-401" for e in logs)  # the failure was logged...
    assert CLIENT_ID not in repr(logs)  # ...without the id
    encoded = authorization().split()[1]
    assert encoded not in repr(logs)
    [letter] = harness.dead_letters
    assert letter.reason == "not-json"
    assert CLIENT_ID not in repr(letter) and encoded not in repr(letter)
    parsed = parse_instance("weather", FrostWeather, config).config
    assert CLIENT_ID not in repr(parsed) and "client_id='***'" in repr(parsed)
    with pytest.raises(ConfigError) as info:
        parse_instance("weather", FrostWeather, {**config, "client_id": f"{CLIENT_ID}:x"})
    assert CLIENT_ID not in str(info.value)


async def test_a_second_poll_publishes_only_new_readings(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    url = http_files.serve(FROST_PATH, FROST)
    async with traced_session([]) as session:
        poller = frost_poller(idle, frost_config(url), session)
        await poller.poll()
        await idle.wait_for(WeatherObserved, 24)
        await poller.poll()  # 304 Not Modified
        document = json.loads(FROST)
        http_files.serve(FROST_PATH, json.dumps(document).encode())  # the same readings, other bytes
        await poller.poll()
        await idle.settle()
        assert poller.documents == 2
        assert len(idle.published(WeatherObserved)) == 24
        later = json.loads(json.dumps(document["data"][0]))
        later["referenceTime"] = "2022-04-02T00:00:00.000Z"
        document["data"].append(later)
        http_files.serve(FROST_PATH, json.dumps(document).encode())
        await poller.poll()
        events = await idle.wait_for(WeatherObserved, 25)
    assert events[-1].data.observed_at == UTC_TIME(2022, 4, 2, 0)
    assert events[-1].data.temperature == 0.0


async def test_bad_observations_are_dead_lettered_alone(idle: AdapterHarness, http_files: FileServer) -> None:
    document = json.loads(FROST)
    data = document["data"]
    data[0]["observations"][0]["qualityCode"] = 4  # air_temperature 0 degC at 00:00
    data[1]["observations"][1]["unit"] = "fraction"  # relative_humidity 63 at 01:00
    data[2]["sourceId"] = "SN99999:0"  # a station not in the table
    data[3]["observations"][0]["value"] = 99.0  # air_temperature at 03:00
    del data[4]["referenceTime"]
    url = http_files.serve(FROST_PATH, json.dumps(document).encode())
    async with traced_session([]) as session:
        await frost_poller(idle, frost_config(url), session).poll()
    events = await idle.wait_for(WeatherObserved, 23)
    await idle.settle()
    reasons = {letter.reason: letter for letter in idle.dead_letters}
    assert sorted(reasons) == ["bad-record", "failed-quality-control", "out-of-range", "unsupported-unit"]
    quality = reasons["failed-quality-control"]
    assert quality.detail == (
        "SN50540:0 at 2022-04-01T00:00:00+00:00, observations[0] (air_temperature): "
        "value 0.0 has qualityCode 4, above max_quality_code 2"
    )
    wrapped = json.loads(quality.payload)
    assert (wrapped["sourceId"], wrapped["referenceTime"]) == ("SN50540:0", "2022-04-01T00:00:00Z")
    assert wrapped["observations"][0]["qualityCode"] == 4
    assert (
        "unit 'fraction', but the contract's relative_humidity is in 'percent'"
        in reasons["unsupported-unit"].detail
    )
    assert "temperature" in reasons["out-of-range"].detail
    assert reasons["bad-record"].detail.startswith("data[4] is not an observation item:")
    by_time = {(e.data.station, e.data.observed_at.hour): e.data for e in events}
    assert (by_time[("bergen-florida", 0)].temperature, by_time[("bergen-florida", 0)].relative_humidity) == (
        None,
        58.0,
    )
    assert by_time[("bergen-florida", 1)].relative_humidity is None
    assert by_time[("bergen-florida", 1)].temperature == -1.2  # data[1], line 74
    unknown = by_time[("sn99999", 2)]
    assert (unknown.station_name, unknown.location, unknown.temperature) == (
        None,
        None,
        -1.6,
    )  # data[2], line 128
    assert ("bergen-florida", 4) not in by_time


async def test_a_truncated_frost_response_is_dead_lettered_whole(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    url = http_files.serve(FROST_PATH, FROST[:1234])
    async with traced_session([]) as session:
        poller = frost_poller(idle, frost_config(url), session)
        await poller.poll()
        http_files.serve(FROST_PATH, b'{"@type": "ErrorResponse", "data": []}')
        await poller.poll()
    await idle.settle()
    first, second = idle.dead_letters
    assert (first.reason, first.payload) == ("not-json", FROST[:1234])
    assert (second.reason, second.detail) == (
        "not-frost-observations",
        "a Frost 'ErrorResponse', not an ObservationResponse",
    )
    assert idle.published(WeatherObserved) == []


def test_the_series_at_the_standard_height_and_finest_resolution_wins() -> None:
    document = json.loads(FROST)
    item = document["data"][0]
    at_ten_minutes = dict(item["observations"][0], value=0.4, timeResolution="PT10M")
    at_five_metres = dict(
        item["observations"][0], value=0.9, level={"levelType": "height_above_ground", "value": 5}
    )
    other_offset = dict(item["observations"][0], value=0.7, timeOffset="PT20M")
    sea_level = {
        "elementId": "air_pressure_at_sea_level",
        "value": 1012.0,
        "unit": "hPa",
        "timeOffset": "PT0H",
    }
    item["observations"] += [at_five_metres, at_ten_minutes, other_offset, sea_level]
    parsed = parse_observations(json.dumps(document).encode())
    assert parsed.readings[0].values == {"temperature": 0.4, "relative_humidity": 58.0, "wind_speed": 1.4}
    assert parsed.skipped == {"air_temperature @PT20M": 1, "air_pressure_at_sea_level": 1}
    assert parsed.rejected == ()


def frost_error(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_instance("weather", FrostWeather, table)
    return str(info.value)


STATION = {"slug": "marienlyst"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"stations": {"SN1": STATION}}, "client_id is missing"),
        ({"client_id": CLIENT_ID}, "no stations: add [stations.SN…] tables"),
        ({"client_id": CLIENT_ID, "stations": {"50540": STATION}}, "'50540' is not a Frost station id"),
        ({"client_id": CLIENT_ID, "stations": {"SN50540:0": STATION}}, "without the ':0'"),
        (
            {"client_id": CLIENT_ID, "stations": {"SN1": {"slug": "Marien lyst"}}},
            "stations.SN1.slug 'Marien lyst' is not a slug",
        ),
        ({"client_id": CLIENT_ID, "stations": {"SN1": {"slug": "m", "lat": 59.7}}}, "give both lat and lon"),
        (
            {"client_id": CLIENT_ID, "stations": {"SN1": {"slug": "m", "lat": 100, "lon": 10}}},
            "stations.SN1.lat = 100.0 is out of range",
        ),
        ({"client_id": CLIENT_ID, "stations": {"SN1": {"slug": "m", "height": 3}}}, "unknown field `height`"),
        (
            {"client_id": CLIENT_ID, "stations": {"SN1": STATION, "SN2": STATION}},
            "the same slug 'marienlyst'",
        ),
        ({"client_id": CLIENT_ID, "stations": {"SN1": STATION}, "max_quality_code": 9}, "max_quality_code"),
        (
            {
                "client_id": CLIENT_ID,
                "stations": {"SN1": STATION},
                "source": {"url": "https://x.example", "headers": {"authorization": "Basic x"}},
            },
            "not both",
        ),
        ({"clientid": CLIENT_ID}, "unknown key 'clientid'"),
    ],
    ids=[
        "no-client-id",
        "no-stations",
        "station-id",
        "sensor-suffix",
        "bad-slug",
        "lat-without-lon",
        "lat-range",
        "unknown-field",
        "same-slug",
        "quality-range",
        "two-credentials",
        "unknown-key",
    ],
)
def test_frost_config_errors_say_what_to_fix(table: dict[str, Any], message: str) -> None:
    error = frost_error(table)
    assert error.startswith("[adapters.weather] (frost-weather): ")
    assert message in error
    assert CLIENT_ID not in error


def test_a_recorded_frost_response_needs_no_client_id() -> None:
    config = frost_settings({"source": {"file": "frost.json"}})
    assert config.request_source() == config.source


# -- fuzzing: every parser returns or raises SourceFormatError, nothing else ------------------------


def cut_forecast() -> bytes:
    """The real forecast with 5 of its steps: hourly, 6-hourly and the last one without a period."""
    document = json.loads(FORECAST)
    series = document["properties"]["timeseries"]
    document["properties"]["timeseries"] = [series[0], series[2], series[45], series[55], series[-1]]
    return json.dumps(document, indent=1).encode()


def cut_frost() -> bytes:
    """The real Frost response with its first 3 items."""
    document = json.loads(FROST)
    document["data"] = document["data"][:3]
    return json.dumps(document, indent=1).encode()


CUT_FORECAST = cut_forecast()
CUT_FROST = cut_frost()


def read_forecast(body: bytes) -> None:
    try:
        parsed = parse_compact(body)
        forecast_for(parsed, place="bragernes-strand", location=GeoPoint.at(59.7409, 10.2138))
    except SourceFormatError as exc:
        assert exc.reason and str(exc)
        return
    assert all(r.reason and r.detail for r in parsed.rejected)


def read_frost(body: bytes) -> None:
    try:
        parsed = parse_observations(body)
    except SourceFormatError as exc:
        assert exc.reason and str(exc)
        return
    assert all(r.reason and r.detail for r in parsed.rejected)
    for reading in parsed.readings:
        observed = WeatherObserved(station="x", observed_at=reading.observed_at, **reading.values)  # type: ignore[arg-type]
        msgspec.json.Decoder(WeatherObserved).decode(msgspec.json.encode(observed))


def test_every_prefix_of_the_cut_documents_is_read_or_rejected() -> None:
    for size in range(len(CUT_FORECAST) + 1):
        read_forecast(CUT_FORECAST[:size])
    for size in range(len(CUT_FROST) + 1):
        read_frost(CUT_FROST[:size])


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=len(FORECAST)), st.integers(min_value=0, max_value=len(FROST)))
def test_prefixes_of_the_whole_documents_are_read_or_rejected(forecast_size: int, frost_size: int) -> None:
    read_forecast(FORECAST[:forecast_size])
    read_frost(FROST[:frost_size])


@settings(max_examples=300, deadline=None)
@given(mutated(CUT_FORECAST, max_edits=8))
def test_mutated_forecasts_are_read_or_rejected(body: bytes) -> None:
    read_forecast(body)


@settings(max_examples=300, deadline=None)
@given(mutated(CUT_FROST, max_edits=8))
def test_mutated_frost_responses_are_read_or_rejected(body: bytes) -> None:
    read_frost(body)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([b"0", b"-1", b"1e308", b'"x"', b"null", b"[]", b"{}", b"true", b"4300" * 2000]))
def test_any_json_value_in_place_of_a_number_is_read_or_rejected(value: bytes) -> None:
    read_forecast(changed(CUT_FORECAST, b'"air_temperature": 11.2', b'"air_temperature": ' + value))
    read_frost(CUT_FROST.replace(b'"timeResolution": "PT1H"', b'"timeResolution": "PT' + value + b'H"', 1))
    read_frost(CUT_FROST.replace(b'"qualityCode": 0', b'"qualityCode": ' + value, 1))


# -- over a real nats-server ----------------------------------------------------------------------


@pytest.mark.slow
async def test_a_recorded_forecast_goes_over_a_real_nats_server(bus: Bus, entity: str) -> None:
    path = SOURCES / "weather" / "met_locationforecast_compact_example.json"
    config = {"places": {entity: {"lat": 60.3915, "lon": 5.3199, "file": str(path)}}}
    async with AdapterHarness(MetForecast, config, bus=bus) as harness:
        await wait_for(lambda: any(e.data.place == entity for e in harness.published(WeatherForecast)))
    [event] = [e for e in harness.published(WeatherForecast) if e.data.place == entity]
    assert event.subject == f"city.public.environment.weather-forecast.{entity}"
    assert event.provenance == "recorded"
    assert event.data.updated_at == UPDATED_AT
    assert len(event.data.steps) == 85
    assert event.data.steps[0] == FIRST_STEP
