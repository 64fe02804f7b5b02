"""The generated weather of the recorded day: one model that every generated source reads.

No real record of Drammen's weather on 2018-08-28 is in the project, so the day's weather is
made up — but once, here, so that the weather stations, the forecast, the beach units' air
thermometers and UV sensors, and the air quality (wind disperses, rain washes out) all tell the
same story: a fair late-August day after a hot summer. Night 11 °C, 19–20 °C in the afternoon,
dew point around 10 °C (humidity near 95 % at dawn, 55 % in the afternoon), a sea breeze up the
fjord in the afternoon (3–4 m/s from the south-south-east, calm from the west-north-west at night),
cloud building after noon into a passing shower in the late afternoon (about 2 mm in three hours),
the pressure falling 3–4 hPa through the day ahead of it. The days after it (which only the
forecasts see) wander from there.

How it is built: hourly values from the start of the day before to eleven days after it,
interpolated linearly in between. Temperature follows a cosine from each day's minimum at 05:30
to its maximum at 15:00 and back; humidity follows from temperature and dew point (Magnus
formula), so the two never contradict each other; every series gets smooth seeded noise (an AR(1)
process), so the same seed always makes the same day.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sandbox.drammen.day import local_hours
from sandbox.drammen.sun import clear_sky_uv, solar_elevation

__all__ = ["DayWeather", "Weather", "relative_humidity"]

_FIRST_HOUR: Final = -24
"""The model starts a day early, so the night before the recorded day has its evening to cool from."""
_LAST_HOUR: Final = 11 * 24
"""…and ends eleven days after it: the last forecast of the day reaches nine and a half days ahead."""
_DAWN: Final = 5.5
_AFTERNOON: Final = 15.0


@dataclass(frozen=True, slots=True)
class Weather:
    """The weather at one moment, in the units of the contracts."""

    temperature: float
    """Air temperature, °C (2 m above ground, in town by the river)."""
    dew_point: float
    """°C."""
    relative_humidity: float
    """%, from temperature and dew point."""
    wind_speed: float
    """m/s (10 m above ground)."""
    wind_direction: float
    """Degrees the wind blows from, 0–360."""
    cloud_cover: float
    """% of the sky."""
    pressure: float
    """Air pressure at sea level, hPa."""


def relative_humidity(temperature: float, dew_point: float) -> float:
    """Relative humidity in % from temperature and dew point (Magnus formula), at most 98 %."""

    def vapour(t: float) -> float:
        return math.exp(17.625 * t / (243.04 + t))

    return min(98.0, 100.0 * vapour(dew_point) / vapour(temperature))


def _cosine(a: float, b: float, fraction: float) -> float:
    return a + (b - a) * (1 - math.cos(math.pi * fraction)) / 2


def _sea_breeze(hour: float) -> float:
    """How far the afternoon sea breeze is developed (0–1) at a local hour of any day."""
    h = hour % 24
    return max(0.0, math.sin(math.pi * (h - 9) / 11)) if 9 <= h <= 20 else 0.0


class DayWeather:
    """The generated weather around the recorded day; the same seed gives the same weather."""

    def __init__(self, rng: random.Random) -> None:
        days = range(_FIRST_HOUR // 24, _LAST_HOUR // 24 + 1)
        # Day 0 is the recorded day; its values are fixed, the others wander from it.
        self._t_min = {0: 11.2}
        self._t_max = {0: 19.6}
        self._pressure = {0: 1014.8, 1: 1011.2}  # at local midnight
        self._cloud_level = {0: 0.0}
        for day in days:
            if day < 0:
                self._t_min[day], self._t_max[day] = 12.0, 20.4
                self._pressure[day] = 1015.6
                self._cloud_level[day] = -10.0
            elif day > 0:
                self._t_min[day] = self._t_min[day - 1] + rng.uniform(-1.5, 1.2)
                self._t_max[day] = max(self._t_min[day] + 4, self._t_max[day - 1] + rng.uniform(-2.0, 1.5))
                self._cloud_level[day] = rng.uniform(-15, 45)
                if day > 1:
                    self._pressure[day] = self._pressure[day - 1] + rng.uniform(-5, 5)
        self._pressure[days[-1] + 1] = self._pressure[days[-1]]
        self.shower_start = rng.choice((16, 17))
        """The local hour the recorded day's shower begins."""
        shower = [0.4, 1.3, 0.3]
        self._rain: dict[int, float] = {
            self.shower_start + i + 1: round(amount * rng.uniform(0.7, 1.3), 1)
            for i, amount in enumerate(shower)
        }
        for day in days:
            if day > 0 and rng.random() < 0.35:  # a wet spell on some of the days after
                begin = rng.randrange(24)
                for hour in range(begin, begin + rng.randrange(2, 8)):
                    self._rain[day * 24 + hour] = round(rng.uniform(0.1, 2.0), 1)
        hours = range(_FIRST_HOUR, _LAST_HOUR + 1)
        noise = {name: self._ar1(rng, len(hours), sigma) for name, sigma in _NOISE.items()}
        self._hourly = [self._make(hour, {k: v[i] for k, v in noise.items()}) for i, hour in enumerate(hours)]

    @staticmethod
    def _ar1(rng: random.Random, count: int, sigma: float) -> list[float]:
        values, last = [], 0.0
        for _ in range(count):
            last = 0.7 * last + rng.gauss(0, sigma)
            values.append(last)
        return values

    def _temperature(self, hour: float) -> float:
        day = math.floor(hour / 24)
        h = hour - 24 * day
        if h < _DAWN:
            fraction = (h + 24 - _AFTERNOON) / (24 - _AFTERNOON + _DAWN)
            value = _cosine(self._t_max.get(day - 1, self._t_max[day]), self._t_min[day], fraction)
        elif h < _AFTERNOON:
            value = _cosine(self._t_min[day], self._t_max[day], (h - _DAWN) / (_AFTERNOON - _DAWN))
        else:
            fraction = (h - _AFTERNOON) / (24 - _AFTERNOON + _DAWN)
            value = _cosine(self._t_max[day], self._t_min.get(day + 1, self._t_min[day]), fraction)
        return value - 1.8 * self._shower_weight(hour)

    def _shower_weight(self, hour: float) -> float:
        return math.exp(-(((hour - self.shower_start - 1.5) / 1.3) ** 2))

    def _cloud(self, hour: float) -> float:
        day = math.floor(hour / 24)
        h = hour - 24 * day
        # fair mornings, cumulus building after noon, clearing in the evening
        base = 22 + 25 * math.exp(-(((h - 14.5) / 3.5) ** 2)) + self._cloud_level.get(day, 0.0)
        return base + 75 * self._shower_weight(hour)

    def _make(self, hour: int, noise: dict[str, float]) -> Weather:
        temperature = self._temperature(hour) + noise["temperature"]
        day = math.floor(hour / 24)
        dew_point = (
            min(self._t_min[day] - 0.8, temperature) + 1.2 * self._shower_weight(hour) + noise["dew_point"]
        )
        breeze = _sea_breeze(hour)
        gust = 1.5 * self._shower_weight(hour)
        wind_speed = max(0.2, 1.1 + 3.0 * breeze + gust + noise["wind_speed"])
        # drainage wind down the valley at night (WNW), sea breeze up the fjord by day (SSE)
        direction = (290 + (165 - 290) * min(1.0, 1.6 * breeze) + noise["wind_direction"]) % 360
        midnight = 24 * day
        pressure = (
            self._pressure[day]
            + (self._pressure[day + 1] - self._pressure[day]) * (hour - midnight) / 24
            + noise["pressure"]
        )
        return Weather(
            temperature=temperature,
            dew_point=dew_point,
            relative_humidity=relative_humidity(temperature, dew_point),
            wind_speed=wind_speed,
            wind_direction=direction,
            cloud_cover=min(100.0, max(0.0, self._cloud(hour) + noise["cloud_cover"])),
            pressure=pressure,
        )

    def at(self, moment: datetime) -> Weather:
        """The weather at ``moment`` (interpolated between the hours)."""
        hours = local_hours(moment)
        if not _FIRST_HOUR <= hours <= _LAST_HOUR:
            raise ValueError(f"{moment.isoformat()} is outside the generated weather")
        index = min(int(math.floor(hours)) - _FIRST_HOUR, len(self._hourly) - 2)
        fraction = hours - (index + _FIRST_HOUR)
        a, b = self._hourly[index], self._hourly[index + 1]

        def mix(x: float, y: float) -> float:
            return x + (y - x) * fraction

        turn = (b.wind_direction - a.wind_direction + 180) % 360 - 180  # the short way round
        temperature, dew_point = mix(a.temperature, b.temperature), mix(a.dew_point, b.dew_point)
        return Weather(
            temperature=temperature,
            dew_point=dew_point,
            relative_humidity=relative_humidity(temperature, dew_point),
            wind_speed=mix(a.wind_speed, b.wind_speed),
            wind_direction=(a.wind_direction + turn * fraction) % 360,
            cloud_cover=mix(a.cloud_cover, b.cloud_cover),
            pressure=mix(a.pressure, b.pressure),
        )

    def precipitation(self, hour_ending: datetime) -> float:
        """Precipitation in mm in the hour that ends at ``hour_ending`` (a whole hour)."""
        return self._rain.get(round(local_hours(hour_ending)), 0.0)

    def uv_index(self, moment: datetime) -> float:
        """The UV index at ``moment``: the clear-sky index, reduced by cloud (to half under overcast)."""
        clear = clear_sky_uv(solar_elevation(moment))
        return clear * (1 - 0.5 * (self.at(moment).cloud_cover / 100) ** 2)


_NOISE: Final = {
    "temperature": 0.15,
    "dew_point": 0.15,
    "wind_speed": 0.25,
    "wind_direction": 6.0,
    "cloud_cover": 4.0,
    "pressure": 0.05,
}
"""The standard deviation of each series' hourly noise innovations."""
