"""Generated Frost observations of Drammen's weather stations, Marienlyst and Gulskogen, hourly.

Drammen measures the weather at Marienlyst and Gulskogen, but no real record of that day is in
the project, and their Frost source ids are not known either. So the ``frost-weather`` adapter
reads documents made here from :class:`~sandbox.drammen.weather.DayWeather`, in the shape of a
Frost ``/observations/v0.jsonld`` response with ``referencetime=latest``: every hour on the hour,
one item per station with the six elements the adapter maps (temperature and humidity at 2 m,
wind at 10 m, the hour's precipitation, the pressure at the station), each ``timeOffset`` PT0H
and ``qualityCode`` 0, as MET writes them.

Decisions, and why:

* **Local station ids** ``SN9990001`` (Marienlyst) and ``SN9990002`` (Gulskogen): Frost's
  pattern (``SN`` and digits) so the adapter takes them, with seven digits where MET's own ids have
  at most five, so no one mistakes them for MET stations. The adapter's ``stations`` table maps
  them to the slugs ``marienlyst`` and ``gulskogen``.
* **Approximate places:** the stations' coordinates are not known, so each is placed at a real
  point of the place it is named after — Marienlyst at the bike rack by Drammensbadet
  (OpenStreetMap), within 500 m; Gulskogen at its railway station (Entur), within 1000 m — and
  published as approximate (``uncertainty``, ``placement``) through the adapter's table.
* **Two stations, one weather:** Marienlyst, by the river in town, reads the model as it is;
  Gulskogen, two kilometres up the valley, has the colder night (down to 0.6 °C colder at dawn),
  the slightly warmer afternoon and a little less wind of a valley site. The pressure at the
  stations is the sea-level pressure less their assumed height (about 5 and 12 m: 0.6 and 1.4 hPa).
* No ``license`` in the documents: the values are generated, not MET's.
* Values are rounded as MET publishes them: 0.1 °C, whole percent, 0.1 m/s, whole degrees,
  0.1 mm, 0.1 hPa.
"""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta
from typing import Any, Final

from sandbox.drammen.day import FileVersion, every, utc_text
from sandbox.drammen.weather import DayWeather, relative_humidity

__all__ = ["FILE", "STATIONS", "observation_documents"]

FILE: Final = "frost_observations.json"
STATIONS: Final = {
    "SN9990001": {
        "slug": "marienlyst",
        "name": "Marienlyst",
        "lat": 59.7369,
        "lon": 10.2005,
        "uncertainty": 500.0,
        "placement": "Not surveyed: placed at the Marienlyst bike rack by Drammensbadet (OpenStreetMap), "
        "in the Marienlyst park and sports ground the station is named after",
    },
    "SN9990002": {
        "slug": "gulskogen",
        "name": "Gulskogen",
        "lat": 59.743896,
        "lon": 10.160511,
        "uncertainty": 1000.0,
        "placement": "Not surveyed: placed at Gulskogen railway station (Entur's NSR:StopPlace:18), "
        "in the district the station is named after",
    },
}
"""The ``frost-weather`` adapter's ``stations`` table: local ids, not MET's, and approximate
places (see the module doc)."""

_HEIGHT_HPA: Final = {"SN9990001": 0.6, "SN9990002": 1.4}


def _observation(element: str, value: float, unit: str, height: float | None) -> dict[str, Any]:
    observation: dict[str, Any] = {"elementId": element, "value": value, "unit": unit}
    if height is not None:
        observation["level"] = {"levelType": "height_above_ground", "unit": "m", "value": height}
    observation |= {"timeOffset": "PT0H", "timeResolution": "PT1H", "timeSeriesId": 0, "qualityCode": 0}
    return observation


def _item(station: str, moment: datetime, weather: DayWeather, rng: random.Random) -> dict[str, Any]:
    now = weather.at(moment)
    temperature, dew_point, wind = now.temperature, now.dew_point, now.wind_speed
    if station == "SN9990002":  # Gulskogen, up the valley
        hour = moment.hour + moment.minute / 60
        dawn = math.exp(-(((hour - 5.5) / 3.0) ** 2))
        afternoon = math.exp(-(((hour - 15.0) / 2.5) ** 2))
        temperature += -0.6 * dawn + 0.3 * afternoon + rng.gauss(0, 0.1)
        wind *= 0.85
    humidity = relative_humidity(temperature, dew_point)
    return {
        "sourceId": f"{station}:0",
        "referenceTime": utc_text(moment, millis=True),
        "observations": [
            _observation("air_temperature", round(temperature, 1), "degC", 2.0),
            _observation("relative_humidity", float(round(humidity)), "percent", 2.0),
            _observation("wind_speed", round(wind, 1), "m/s", 10.0),
            _observation("wind_from_direction", float(round(now.wind_direction) % 360), "degrees", 10.0),
            _observation("sum(precipitation_amount PT1H)", weather.precipitation(moment), "mm", None),
            _observation("surface_air_pressure", round(now.pressure - _HEIGHT_HPA[station], 1), "hPa", None),
        ],
    }


def observation_documents(weather: DayWeather, rng: random.Random) -> list[FileVersion]:
    """The day's Frost responses: one an hour, on the hour, with both stations' observations."""
    documents = []
    for moment in every(timedelta(hours=1)):
        items = [_item(station, moment, weather, rng) for station in sorted(STATIONS)]
        response = {
            "@context": "https://frost.met.no/schema",
            "@type": "ObservationResponse",
            "apiVersion": "v0",
            "createdAt": utc_text(moment),
            "queryTime": 0.1,
            "currentItemCount": len(items),
            "itemsPerPage": len(items),
            "offset": 0,
            "totalItemCount": len(items),
            "data": items,
        }
        documents.append(FileVersion(moment, FILE, json.dumps(response, ensure_ascii=False).encode()))
    return documents
