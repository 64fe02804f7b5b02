"""Generated MET Locationforecast documents for Bragernes strand, every six hours.

The ``met-forecast`` adapter reads a Locationforecast 2.0 ``compact`` document per place; the
recorded day has one for Bragernes strand (its default place) at 00:00, 06:00, 12:00 and 18:00
local time, made from :class:`~sandbox.drammen.weather.DayWeather` the way MET lays them out:
hourly steps for the first 60 hours, then every six hours (at 00, 06, 12 and 18 UTC) to about nine
and a half days ahead, the last step without periods. ``updated_at`` is the hour the document
appears (the event time of its message).

Decisions, and why:

* **A forecast is not the truth:** each step is the model's weather plus an error that grows with
  the lead time (about ±0.4 °C in the first hours, ±2 °C a week ahead; smooth, seeded anew for
  every run), so four runs of one day differ the way real runs do.
* **Symbols** follow the cloud cover and the period's precipitation (MET's codes: ``clearsky``,
  ``fair``, ``partlycloudy``, ``cloudy``, ``lightrainshowers``, ``rainshowers``, ``lightrain``,
  ``rain``), with ``_day`` or ``_night`` by the sun, for the codes that have one.
* ``geometry`` is Bragernes strand's point at 2 m: the height the adapter passes on as
  ``elevation``.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sandbox.drammen.day import FileVersion, at, utc_text
from sandbox.drammen.sun import DRAMMEN, solar_elevation
from sandbox.drammen.weather import DayWeather

__all__ = ["FILE", "ISSUED", "PLACE", "forecast_documents"]

FILE: Final = "locationforecast_bragernes-strand.json"
PLACE: Final = "bragernes-strand"
ISSUED: Final = (at(0), at(6), at(12), at(18))
"""When the day's four forecast runs appear."""
_HOURLY_STEPS: Final = 60
_REACH: Final = timedelta(days=9, hours=12)
_UNITS: Final = {
    "air_pressure_at_sea_level": "hPa",
    "air_temperature": "celsius",
    "cloud_area_fraction": "%",
    "precipitation_amount": "mm",
    "relative_humidity": "%",
    "wind_from_direction": "degrees",
    "wind_speed": "m/s",
}
_WITH_SUN: Final = {"clearsky", "fair", "partlycloudy", "lightrainshowers", "rainshowers"}


class _Error:
    """A forecast run's error: smooth in time (knots every 6 hours), growing with the lead."""

    def __init__(self, rng: random.Random, issued: datetime) -> None:
        self._issued = issued
        self._knots = [(rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)) for _ in range(45)]

    def __call__(self, moment: datetime) -> tuple[float, float, float]:
        lead = (moment - self._issued).total_seconds() / 3600
        index = min(int(lead // 6), len(self._knots) - 2)
        fraction = lead / 6 - index
        a, b = self._knots[index], self._knots[index + 1]
        scale = 0.4 + 0.22 * lead / 24
        t, w, r = (scale * (x + (y - x) * fraction) for x, y in zip(a, b, strict=True))
        return t, w, r


def _symbol(cloud: float, rain: float, hours: int, moment: datetime) -> str:
    per_hour = rain / hours
    if per_hour >= 1.0:
        code = "rainshowers" if cloud < 90 else "rain"
    elif rain >= 0.1:
        code = "lightrainshowers" if cloud < 90 else "lightrain"
    elif cloud < 13:
        code = "clearsky"
    elif cloud < 38:
        code = "fair"
    elif cloud < 75:
        code = "partlycloudy"
    else:
        code = "cloudy"
    if code not in _WITH_SUN:
        return code
    middle = moment + timedelta(hours=hours / 2)
    return f"{code}_{'day' if solar_elevation(middle) > 0 else 'night'}"


def _period(weather: DayWeather, start: datetime, hours: int, error: float) -> dict[str, Any]:
    rain = sum(weather.precipitation(start + timedelta(hours=h + 1)) for h in range(hours))
    rain = round(max(0.0, rain * (1 + 0.3 * error)), 1)
    cloud = sum(weather.at(start + timedelta(hours=h)).cloud_cover for h in range(hours)) / hours
    period: dict[str, Any] = {"summary": {"symbol_code": _symbol(cloud, rain, hours, start)}}
    if hours < 12:
        period["details"] = {"precipitation_amount": rain}
    return period


def _step(
    weather: DayWeather, moment: datetime, error: _Error, *, periods: tuple[int, ...]
) -> dict[str, Any]:
    now = weather.at(moment)
    temperature_error, wind_error, rain_error = error(moment)
    details = {
        "air_pressure_at_sea_level": round(now.pressure + 0.8 * temperature_error, 1),
        "air_temperature": round(now.temperature + temperature_error, 1),
        "cloud_area_fraction": round(min(100.0, max(0.0, now.cloud_cover + 12 * wind_error)), 1),
        "relative_humidity": round(min(100.0, max(5.0, now.relative_humidity - 3 * temperature_error)), 1),
        "wind_from_direction": round((now.wind_direction + 15 * wind_error) % 360, 1),
        "wind_speed": round(max(0.0, now.wind_speed + 0.5 * wind_error), 1),
    }
    data: dict[str, Any] = {"instant": {"details": details}}
    for hours in periods:
        data[f"next_{hours}_hours"] = _period(weather, moment, hours, rain_error)
    return {"time": utc_text(moment), "data": data}


def _steps(weather: DayWeather, issued: datetime, error: _Error) -> list[dict[str, Any]]:
    first = issued.astimezone(UTC)
    times = [first + timedelta(hours=h) for h in range(_HOURLY_STEPS)]
    moment = times[-1] + timedelta(hours=1)
    while moment.hour % 6:
        moment += timedelta(hours=1)
    while moment <= first + _REACH:
        times.append(moment)
        moment += timedelta(hours=6)
    steps = []
    for index, moment in enumerate(times):
        last = index == len(times) - 1
        periods = () if last else (1, 6, 12) if index < _HOURLY_STEPS else (6, 12)
        steps.append(_step(weather, moment, error, periods=periods))
    return steps


def forecast_documents(weather: DayWeather, rng: random.Random) -> list[FileVersion]:
    """The day's four Locationforecast compact documents for Bragernes strand."""
    documents = []
    for issued in ISSUED:
        document = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [DRAMMEN[1], DRAMMEN[0], 2]},
            "properties": {
                "meta": {"updated_at": utc_text(issued), "units": _UNITS},
                "timeseries": _steps(weather, issued, _Error(rng, issued)),
            },
        }
        documents.append(FileVersion(issued, FILE, json.dumps(document).encode()))
    return documents
