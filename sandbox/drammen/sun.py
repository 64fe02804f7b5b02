"""The sun over Drammen: its elevation at any moment, and the clear-sky UV index that follows from it.

Elevation uses NOAA's low-accuracy solar position equations (fractional year, equation of time,
declination, hour angle; good to a minute or two, well below what the recorded day needs). For
Bragernes (59.74 N, 10.21 E) on 2018-08-28 they give sunrise at 06:03 and sunset at 20:38 local
time (the sun's centre 0.833° below the horizon, for refraction and its radius) and solar noon at
13:20, the sun then 40° high.

UV index: the clear-sky approximation ``UVI = 12.5 · sin(elevation)^2.42`` (Madronich, 2007),
which gives 4.3 at that noon — Drammen's late-August peak of about 4 once thin cloud takes its
share (:mod:`~sandbox.drammen.weather`). It is 0 whenever the sun is below the horizon.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final

__all__ = ["DRAMMEN", "clear_sky_uv", "solar_elevation"]

DRAMMEN: Final = (59.7409, 10.2138)
"""Bragernes strand (latitude, longitude): the point the sun is computed for."""


def solar_elevation(moment: datetime, latitude: float = DRAMMEN[0], longitude: float = DRAMMEN[1]) -> float:
    """The sun's elevation above the horizon in degrees (negative at night), without refraction."""
    utc = moment.astimezone(UTC)
    hours = utc.hour + utc.minute / 60 + utc.second / 3600
    gamma = 2 * math.pi / 365 * (utc.timetuple().tm_yday - 1 + (hours - 12) / 24)
    equation_of_time = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    declination = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_minutes = hours * 60 + equation_of_time + 4 * longitude
    hour_angle = math.radians(true_solar_minutes / 4 - 180)
    phi = math.radians(latitude)
    cos_zenith = math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(declination) * math.cos(
        hour_angle
    )
    return 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))


def clear_sky_uv(elevation: float) -> float:
    """The UV index under a cloudless sky with the sun ``elevation`` degrees high (0 below the horizon)."""
    if elevation <= 0:
        return 0.0
    return float(12.5 * math.sin(math.radians(elevation)) ** 2.42)
