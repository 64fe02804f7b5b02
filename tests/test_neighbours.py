"""The ``beach-neighbours`` service and the places adapters are told: on the in-memory harness.

A site's neighbours are worked out from the locations its and the stations' messages carry,
published when the answer changes (a station that moves, a nearer one that appears), and carry the
uncertainty of approximate points; a configured place is checked, and published marked approximate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.air import NiluAirQuality
from adapters.geo import PlaceConfig, distance
from adapters.instances import parse_instance
from adapters.neighbours import BeachNeighboursService, nearest
from adapters.testing import AdapterHarness
from adapters.weather import FrostWeather
from bus.errors import ConfigError
from contracts import AirQualityObserved, BeachNeighbours, BeachObservation, GeoPoint, WeatherObserved

T0 = datetime(2018, 8, 28, 10, 0, tzinfo=UTC)
BEACH = GeoPoint.at(59.7409, 10.2138)
NEAR = GeoPoint.approximately(59.7369, 10.2005, uncertainty=500.0, placement="by the rack")
FAR = GeoPoint.at(59.743896, 10.160511)


def beach(minutes: int, location: GeoPoint | None = BEACH) -> BeachObservation:
    return BeachObservation(
        site="bragernes-strand",
        observed_at=T0 + timedelta(minutes=minutes),
        water_temperature=16.0,
        location=location,
    )


def weather(station: str, location: GeoPoint | None, minutes: int = 0) -> WeatherObserved:
    return WeatherObserved(station=station, observed_at=T0 + timedelta(minutes=minutes), location=location)


def air(station: str, location: GeoPoint) -> AirQualityObserved:
    return AirQualityObserved(station=station, location=location, component="NO2", value=20.0, observed_at=T0)


def test_distance_is_the_great_circle_in_metres() -> None:
    # one minute of latitude is a nautical mile, 1852 m (to within the sphere's approximation)
    assert distance(GeoPoint.at(59.0, 10.0), GeoPoint.at(59 + 1 / 60, 10.0)) == pytest.approx(1853, abs=2)
    assert distance(BEACH, BEACH) == 0.0


def test_ties_go_to_the_station_that_sorts_first() -> None:
    found = nearest(BEACH, {"b": (NEAR, None), "a": (NEAR, "A")})
    assert found is not None and (found.station, found.station_name) == ("a", "A")
    assert nearest(BEACH, {}) is None


async def test_a_site_gets_its_nearest_stations_when_it_reports_and_again_when_the_answer_changes() -> None:
    async with AdapterHarness(BeachNeighboursService, {}) as harness:
        await harness.publish(weather("gulskogen", FAR), provenance="sensor")
        await harness.publish(weather("nowhere", None), provenance="sensor")  # no location: passed over
        await harness.publish(air("bangelokka", GeoPoint.at(59.73091, 10.216454)), provenance="synthetic")
        await harness.settle()  # the stations' messages handled before the site reports
        await harness.publish(beach(16), provenance="sensor")
        [first] = await harness.wait_for(BeachNeighbours)
        answer = first.data
        assert answer.site == "bragernes-strand" and answer.location == BEACH
        assert answer.weather_station is not None and answer.weather_station.station == "gulskogen"
        assert answer.weather_station.distance == pytest.approx(distance(BEACH, FAR), abs=0.1)
        assert answer.weather_station.uncertainty == 0.0
        assert answer.air_quality_station is not None and answer.air_quality_station.station == "bangelokka"
        assert first.provenance == "synthetic"  # no more real than its least real point
        assert answer.updated_at == T0 + timedelta(minutes=16)

        await harness.publish(beach(76), provenance="sensor")  # the same answer: nothing new
        await harness.publish(weather("marienlyst", NEAR, minutes=80), provenance="sensor")
        await harness.settle()
        assert len(harness.published(BeachNeighbours)) == 1  # a station's message alone answers nothing
        await harness.publish(beach(136), provenance="sensor")  # a nearer station: a new answer
        events = await harness.wait_for(BeachNeighbours, 2)
        moved = events[1].data
        assert moved.weather_station is not None and moved.weather_station.station == "marienlyst"
        assert moved.weather_station.uncertainty == 500.0  # the approximate station's margin
        assert moved.updated_at == T0 + timedelta(minutes=80)  # the newest location it used
        assert len(harness.published(BeachNeighbours)) == 2
        assert harness.dead_letters == []


def test_a_place_is_surveyed_or_approximate_with_both_how_and_how_well() -> None:
    assert PlaceConfig(lat=59.7, lon=10.2).point == GeoPoint.at(59.7, 10.2)
    point = PlaceConfig(lat=59.7, lon=10.2, uncertainty=300, placement="at the quay").point
    assert (point.approximate, point.uncertainty, point.placement) == (True, 300, "at the quay")
    with pytest.raises(ValueError, match="needs both uncertainty"):
        PlaceConfig(lat=59.7, lon=10.2, uncertainty=300).check("locations.x")
    with pytest.raises(ValueError, match=r"locations.x.lat = 95"):
        PlaceConfig(lat=95, lon=10.2).check("locations.x")


def test_a_wrong_location_in_an_adapters_table_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="needs both uncertainty"):
        parse_instance(
            "air", NiluAirQuality, {"locations": {"bangelokka": {"lat": 59.7, "lon": 10.2, "placement": "x"}}}
        )
    with pytest.raises(ConfigError, match="uncertainty and placement describe lat and lon"):
        parse_instance(
            "weather",
            FrostWeather,
            {
                "client_id": "x",
                "source": {"file": "f.json"},
                "stations": {"SN1": {"slug": "a", "uncertainty": 100}},
            },
        )


def test_a_configured_approximate_station_is_published_marked() -> None:
    instance = parse_instance(
        "weather",
        FrostWeather,
        {
            "client_id": "x",
            "stations": {
                "SN1": {"slug": "a", "lat": 59.7, "lon": 10.2, "uncertainty": 500, "placement": "by the rack"}
            },
        },
    )
    location = instance.config.stations["SN1"].location
    assert location is not None and location.approximate and location.uncertainty == 500
