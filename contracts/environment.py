"""Contracts of the environment domain: bathing water, weather and air quality in Drammen.

Field names follow the FIWARE Smart Data Models (WaterQualityObserved, WeatherObserved,
AirQualityObserved) in snake case, so the data maps cleanly to NGSI-LD; units are UCUM codes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Classification, Contract, contract, measure
from contracts.fields import GeoPoint, Slug, Timestamp

__all__ = [
    "AirQualityObserved",
    "BeachNeighbours",
    "BeachObservation",
    "ForecastStep",
    "Neighbour",
    "SensorAlert",
    "SensorProblem",
    "WeatherForecast",
    "WeatherObserved",
]


@contract(
    "environment.beach-observation",
    version=1,
    classification=Classification.PUBLIC,
    key="site",
    example={
        "site": "bragernes-strand",
        "observed_at": "2018-08-29T10:00:00+02:00",
        "water_temperature": 15.7,
        "air_temperature": 17.9,
        "uv_index": 3.1,
        "battery": 87.0,
        "device": "vicotee-bragernes-strand-1",
        "depth": 0.5,
        "location": {"type": "Point", "coordinates": [10.2138, 59.7409]},
    },
)
class BeachObservation(Contract, frozen=True, kw_only=True):
    """The water at one of Drammen's bathing sites, as a citizen deciding where to swim needs it.

    Drammen kommune measures the water temperature at six pilot sites (Blektjern, Landfalltjern,
    Vannverksdammen, Stordammen, Sota fjordpark and Bragernes strand) with sensors reporting
    hourly, and with a thermometer by hand; the sensors also measure air temperature and UV on
    land. Bragernes strand has a second sensor out in the river, which reports as a site of its
    own (``drammenselva-bragernes``): seven sites on the bus. One message is one reading at one
    site; a manual reading has no device. A site whose position was not surveyed has an
    approximate ``location`` (``approximate``, ``uncertainty``, ``placement``).
    """

    site: Annotated[Slug, Meta(description="The bathing site, e.g. bragernes-strand or sota-fjordpark")]
    observed_at: Annotated[Timestamp, Meta(description="When the water was measured")]
    water_temperature: Annotated[float, measure("Temperature of the bathing water", unit="CEL", ge=-2, le=40)]
    air_temperature: (
        Annotated[float, measure("Temperature of the air on land by the site", unit="CEL", ge=-50, le=50)]
        | None
    ) = None
    uv_index: Annotated[float, measure("UV index on land by the site", unit="1", ge=0, le=20)] | None = None
    battery: (
        Annotated[float, measure("Charge left in the sensor's battery", unit="%", ge=0, le=100)] | None
    ) = None
    device: (
        Annotated[str, Meta(description="The sensor that measured it; absent for a manual reading")] | None
    ) = None
    depth: (
        Annotated[float, measure("Depth below the surface where it was measured", unit="m", ge=0, le=100)]
        | None
    ) = None
    location: Annotated[GeoPoint | None, Meta(description="Where the water was measured")] = None
    source: (
        Annotated[
            str,
            Meta(
                min_length=1,
                description="Who reported the reading when it came through a platform, e.g. yr.no or "
                "Badevann.no; absent when citybus read the sensor itself",
            ),
        ]
        | None
    ) = None


@contract(
    "environment.weather-observed",
    version=1,
    classification=Classification.PUBLIC,
    key="station",
    example={
        "station": "marienlyst",
        "station_name": "Marienlyst",
        "observed_at": "2018-08-29T10:00:00+02:00",
        "temperature": 17.9,
        "relative_humidity": 71.0,
        "wind_speed": 2.4,
        "wind_direction": 225.0,
        "precipitation": 0.0,
        "atmospheric_pressure": 1013.2,
    },
)
class WeatherObserved(Contract, frozen=True, kw_only=True):
    """The weather measured at one of Drammen's weather stations (Marienlyst, Gulskogen).

    Mirrors FIWARE WeatherObserved. Stations differ in what they measure, so everything but the
    station and the time is optional: absent means "not measured", never zero.
    """

    station: Annotated[Slug, Meta(description="The weather station, e.g. marienlyst")]
    station_name: Annotated[str, Meta(description="The station's name for people")] | None = None
    observed_at: Annotated[Timestamp, Meta(description="When the weather was observed")]
    location: Annotated[GeoPoint | None, Meta(description="Where the station stands")] = None
    temperature: Annotated[float, measure("Air temperature", unit="CEL", ge=-60, le=60)] | None = None
    relative_humidity: (
        Annotated[float, measure("Relative humidity of the air", unit="%", ge=0, le=100)] | None
    ) = None
    wind_speed: Annotated[float, measure("Mean wind speed", unit="m/s", ge=0, le=100)] | None = None
    wind_direction: (
        Annotated[
            float, measure("Direction the wind blows from, clockwise from north", unit="deg", ge=0, le=360)
        ]
        | None
    ) = None
    precipitation: (
        Annotated[float, measure("Precipitation in the hour before observed_at", unit="mm", ge=0, le=500)]
        | None
    ) = None
    atmospheric_pressure: (
        Annotated[float, measure("Air pressure at the station", unit="hPa", ge=800, le=1100)] | None
    ) = None


AirComponent = Literal["PM10", "PM2.5", "PM1", "NO2", "NOx", "NO", "O3", "SO2", "CO"]


@contract(
    "environment.air-quality-observed",
    version=1,
    classification=Classification.PUBLIC,
    key="station",
    example={
        "station": "bangelokka",
        "station_name": "Bangeløkka",
        "station_type": "roadside",
        "component": "PM10",
        "value": 14.2,
        "index": 1,
        "observed_at": "2018-08-29T10:00:00+02:00",
        "averaging_period": 3600,
    },
)
class AirQualityObserved(Contract, frozen=True, kw_only=True):
    """How polluted the air is at one of Drammen's measuring stations, for one pollutant.

    Drammen measures air quality at Rosenkrantzgata by Vårveien, Backeparken and Bangeløkka; the
    values are hourly means as NILU publishes them. One message carries one component, so a
    station publishes one message per pollutant per hour, all under the station's subject. Every
    concentration is in µg/m³: adapters convert, consumers never parse units.
    """

    station: Annotated[Slug, Meta(description="The measuring station, e.g. bangelokka")]
    station_name: Annotated[str, Meta(description="The station's name for people")] | None = None
    station_type: (
        Annotated[
            Literal["roadside", "urban-background", "suburban-background", "industrial", "rural-background"],
            Meta(description="What the station is placed to measure"),
        ]
        | None
    ) = None
    location: Annotated[GeoPoint | None, Meta(description="Where the station stands")] = None
    component: Annotated[AirComponent, Meta(description="The pollutant measured (NILU component code)")]
    value: Annotated[
        float, measure("Mean concentration over the averaging period", unit="ug/m3", ge=0, le=100000)
    ]
    index: (
        Annotated[
            int, measure("Air quality class: 1 low, 2 moderate, 3 high, 4 very high", unit="1", ge=1, le=4)
        ]
        | None
    ) = None
    observed_at: Annotated[Timestamp, Meta(description="The end of the averaging period")]
    averaging_period: Annotated[
        int, measure("Length of the period the value is the mean of", unit="s", gt=0, le=31_622_400)
    ] = 3600


class ForecastStep(msgspec.Struct, frozen=True, kw_only=True):
    """The forecast weather at one moment, and over the period that starts then.

    Instant values (temperature, wind, humidity, pressure, cloud) hold at ``time``; ``precipitation``
    and ``symbol`` cover the ``period_hours`` after it, the shortest period the source gives.
    """

    time: Annotated[Timestamp, Meta(description="The moment the instant values hold at")]
    temperature: Annotated[float, measure("Air temperature", unit="CEL", ge=-60, le=60)] | None = None
    relative_humidity: (
        Annotated[float, measure("Relative humidity of the air", unit="%", ge=0, le=100)] | None
    ) = None
    wind_speed: Annotated[float, measure("Mean wind speed", unit="m/s", ge=0, le=100)] | None = None
    wind_direction: (
        Annotated[
            float, measure("Direction the wind blows from, clockwise from north", unit="deg", ge=0, le=360)
        ]
        | None
    ) = None
    atmospheric_pressure: (
        Annotated[float, measure("Air pressure at sea level", unit="hPa", ge=800, le=1100)] | None
    ) = None
    cloud_cover: (
        Annotated[float, measure("Share of the sky covered by cloud", unit="%", ge=0, le=100)] | None
    ) = None
    period_hours: (
        Annotated[int, measure("Length of the period precipitation and symbol cover", unit="h", ge=1, le=24)]
        | None
    ) = None
    precipitation: (
        Annotated[float, measure("Precipitation over the period", unit="mm", ge=0, le=500)] | None
    ) = None
    symbol: (
        Annotated[
            str,
            Meta(
                pattern=r"^[a-z]+(?:_(?:day|night|polartwilight))?$",
                description="The weather symbol for the period, e.g. partlycloudy_day (MET Norway codes)",
            ),
        ]
        | None
    ) = None


@contract(
    "environment.weather-forecast",
    version=1,
    classification=Classification.PUBLIC,
    key="place",
    example={
        "place": "bragernes-strand",
        "place_name": "Bragernes strand",
        "location": {"type": "Point", "coordinates": [10.2138, 59.7409]},
        "elevation": 2.0,
        "updated_at": "2018-08-29T06:12:44Z",
        "steps": [
            {
                "time": "2018-08-29T10:00:00Z",
                "temperature": 17.9,
                "relative_humidity": 71.0,
                "wind_speed": 2.4,
                "wind_direction": 225.0,
                "atmospheric_pressure": 1013.2,
                "cloud_cover": 40.0,
                "period_hours": 1,
                "precipitation": 0.0,
                "symbol": "partlycloudy_day",
            }
        ],
    },
)
class WeatherForecast(Contract, frozen=True, kw_only=True):
    """The weather forecast for one place in Drammen, hour by hour and then in longer steps.

    One message is one forecast run for one place (MET Norway's Locationforecast updates about
    hourly), replacing the place's previous one: a citizen planning a trip to the beach, or a
    journey planner choosing between bike and train, reads the latest message for the place.
    """

    place: Annotated[Slug, Meta(description="The place forecast for, e.g. bragernes-strand")]
    place_name: Annotated[str, Meta(description="The place's name for people")] | None = None
    location: Annotated[GeoPoint, Meta(description="The point the forecast is for")]
    elevation: (
        Annotated[float, measure("Height above sea level the forecast is for", unit="m", ge=-500, le=9000)]
        | None
    ) = None
    updated_at: Annotated[Timestamp, Meta(description="When the forecast was made (the model run's time)")]
    steps: Annotated[
        list[ForecastStep],
        Meta(min_length=1, max_length=500, description="The forecast steps, in time order"),
    ]


class Neighbour(msgspec.Struct, frozen=True, kw_only=True):
    """The station nearest a bathing site, and how far it is (great-circle distance)."""

    station: Annotated[Slug, Meta(description="The station's identifier, the entity of its messages")]
    station_name: Annotated[str, Meta(description="The station's name for people")] | None = None
    location: Annotated[GeoPoint, Meta(description="Where the station stands, as its messages say")]
    distance: Annotated[float, measure("Great-circle distance from the site", unit="m", ge=0, le=20_037_600)]
    uncertainty: Annotated[
        float,
        measure(
            "How far off the distance may be: the sum of the two points' uncertainties "
            "(0 when both were surveyed)",
            unit="m",
            ge=0,
        ),
    ] = 0.0


@contract(
    "environment.beach-neighbours",
    version=1,
    classification=Classification.PUBLIC,
    key="site",
    example={
        "site": "bragernes-strand",
        "location": {"type": "Point", "coordinates": [10.2138, 59.7409]},
        "weather_station": {
            "station": "marienlyst",
            "station_name": "Marienlyst",
            "location": {
                "type": "Point",
                "coordinates": [10.2005, 59.7369],
                "approximate": True,
                "uncertainty": 500.0,
                "placement": "At the Marienlyst bike rack by Drammensbadet (OpenStreetMap)",
            },
            "distance": 857.0,
            "uncertainty": 500.0,
        },
        "air_quality_station": {
            "station": "bangelokka",
            "station_name": "Bangeløkka",
            "location": {
                "type": "Point",
                "coordinates": [10.216454, 59.73091],
                "approximate": True,
                "uncertainty": 300.0,
                "placement": "At the Bangeløkka express-bus quay, by the road the station stands at",
            },
            "distance": 1112.0,
            "uncertainty": 300.0,
        },
        "updated_at": "2018-08-28T00:41:00+02:00",
    },
)
class BeachNeighbours(Contract, frozen=True, kw_only=True):
    """Which weather station and which air-quality station are nearest a bathing site, and how far.

    A beach-day product shows a site's water next to the air temperature, wind and air quality
    around it: this says which stations those are, so that no company has to work it out (or type
    it in) itself. Computed from the locations the messages themselves carry — the site's beach
    observations, the stations' weather and air-quality observations — by great-circle distance,
    and published again whenever a location changes the answer. A station is absent while none of
    its kind has said where it stands. Approximate points make uncertain distances: each
    neighbour says by how much.
    """

    site: Annotated[Slug, Meta(description="The bathing site, as in environment.beach-observation")]
    location: Annotated[GeoPoint, Meta(description="The site's point, as its observations carry it")]
    weather_station: Annotated[
        Neighbour | None, Meta(description="The nearest station of environment.weather-observed")
    ] = None
    air_quality_station: Annotated[
        Neighbour | None, Meta(description="The nearest station of environment.air-quality-observed")
    ] = None
    updated_at: Annotated[Timestamp, Meta(description="The time of the newest location the answer used")]


SensorProblem = Literal["stuck", "silent", "clear"]


@contract(
    "environment.sensor-alert",
    version=1,
    classification=Classification.PUBLIC,
    key="sensor",
    example={
        "sensor": "sota-fjordpark",
        "observed": "environment.beach-observation",
        "problem": "stuck",
        "since": "2018-08-28T00:52:00Z",
        "detected_at": "2018-08-28T01:52:00Z",
        "readings": 3,
        "value": 16.4,
        "description": "sota-fjordpark has sent the same values 3 times in a row since 2018-08-28T00:52:00Z",
    },
)
class SensorAlert(Contract, frozen=True, kw_only=True):
    """A sensor of the city that has stopped telling the truth, or stopped talking, and when it
    recovers.

    A product showing a beach's water or a station's weather must not show a flatlined or an old
    reading as current: this says, per sensor, that its readings have repeated the same values
    (``stuck``), that it has not reported for much longer than it usually does (``silent``), and
    when either is over (``clear``). One alert per episode, not per reading; the last message of a
    sensor's subject is its current state. Worked out by the ``sensor-watch`` adapter from the
    observations on the bus, on the clock it runs on (the replayed time in the sandbox).
    """

    sensor: Annotated[
        Slug, Meta(description="The sensor's entity: the key of its observations, e.g. sota-fjordpark")
    ]
    observed: Annotated[
        str,
        Meta(
            min_length=1,
            description="The contract of the sensor's observations, e.g. environment.beach-observation",
        ),
    ]
    problem: Annotated[
        SensorProblem,
        Meta(
            description="stuck: the same values reading after reading; silent: no reading for too long; "
            "clear: the sensor's problem named by `cleared` is over"
        ),
    ]
    cleared: (
        Annotated[Literal["stuck", "silent"], Meta(description="For a clear: which problem is over")] | None
    ) = None
    since: Annotated[
        Timestamp,
        Meta(
            description="stuck: the time of the first repeated reading; silent: the time of the last "
            "reading; clear: the time of the reading that ended the problem"
        ),
    ]
    detected_at: Annotated[Timestamp, Meta(description="When the watch concluded it (its clock's time)")]
    readings: (
        Annotated[int, measure("stuck: readings in a row with the same values", unit="1", ge=1)] | None
    ) = None
    value: (
        Annotated[
            float,
            measure("stuck: the repeated temperature (a beach's water, a station's air)", unit="CEL"),
        ]
        | None
    ) = None
    description: Annotated[str, Meta(description="The alert in one sentence, for people")]
