"""MET Norway's weather on the bus: forecasts for Drammen's places and observations of its stations.

Two source adapters: ``met-forecast`` (:class:`MetForecast`) polls Locationforecast 2.0 for each
configured place and publishes :class:`~contracts.WeatherForecast`; ``frost-weather``
(:class:`FrostWeather`) polls Frost's observations for the configured stations and publishes
:class:`~contracts.WeatherObserved`. The formats are read by pure functions —
:mod:`~adapters.weather.locationforecast` (:func:`parse_compact`) and :mod:`~adapters.weather.frost`
(:func:`parse_observations`) — that raise :class:`~adapters.polling.SourceFormatError` for a
document they cannot read and return every record they reject as a :class:`Rejected`, to be
dead-lettered on its own.
"""

from adapters.records import Rejected
from adapters.weather.frost import ELEMENTS, Element, FrostObservations, StationReading, parse_observations
from adapters.weather.frost_weather import FROST_URL, FrostConfig, FrostWeather, StationConfig
from adapters.weather.locationforecast import Locationforecast, forecast_for, parse_compact
from adapters.weather.met_forecast import (
    DEFAULT_PLACES,
    LOCATIONFORECAST_URL,
    ForecastConfig,
    MetForecast,
    PlaceConfig,
)

__all__ = [
    "DEFAULT_PLACES",
    "ELEMENTS",
    "Element",
    "FROST_URL",
    "ForecastConfig",
    "FrostConfig",
    "FrostObservations",
    "FrostWeather",
    "LOCATIONFORECAST_URL",
    "Locationforecast",
    "MetForecast",
    "PlaceConfig",
    "Rejected",
    "StationConfig",
    "StationReading",
    "forecast_for",
    "parse_compact",
    "parse_observations",
]
