"""Generated NILU ``/aq/utd`` documents for Drammen's three air-quality stations, hourly.

Drammen measures air quality at Rosenkrantzgata by Vårveien and at Bangeløkka (roadside) and in
Backeparken (urban background); no real values of that day are in the project. The
``nilu-air-quality`` adapter reads documents made here: every hour on the hour, the hour just
ended at each station for PM10, PM2.5 and NO2, in µg/m³ with NILU's index and colour, as the
``/aq/utd`` array of records.

How the values come about:

* **Traffic and weather.** A weekday's traffic (morning peak at 07:30, a midday plateau, the
  afternoon peak at 16:00, quiet nights) adds to each station's background: most at Bangeløkka,
  by the express-bus stop and the main road, least in Backeparken. Calm air concentrates it
  (the night's 1 m/s), the afternoon sea breeze dilutes it (:mod:`~sandbox.drammen.weather`), and
  the shower washes particles out. PM2.5 is a share of PM10 (smaller at the roadside, where road
  dust is coarse). Seeded noise of about 15 %.
* **The index is anchored on the year's facts.** In 2019 Drammen's air was "low" pollution 86 %
  of the time, "moderate" 9 % and "high" 5 %. The day's 72 station-hours are ranked by how close
  their worst component comes to its "moderate" limit; the top 5 % (4) are lifted into "high" and
  the next 9 % (6) into "moderate", by raising that component into the lower half of the class,
  so the day carries the year's mix — in the rush hours at the roadside stations, where Drammen's
  exceedances happen. (A real late-August day is likely cleaner than the year: the high hours of
  the year come from winter inversions and spring road dust. A pilot needs to see every class.)
* **NILU's classes**, hourly means in µg/m³, as luftkvalitet.info gives them: PM10 low < 60,
  moderate < 120, high < 400; PM2.5 < 30, < 50, < 150; NO2 < 100, < 200, < 400; above: very high.
  Each record's ``index`` is its own value's class, and ``color`` NILU's colour for it.
* No ``eoi``, ``latitude`` or ``longitude``: Drammen's EoI codes and the stations' coordinates
  are not known. The adapter's ``locations`` table (:data:`LOCATIONS`) places them instead, each
  marked approximate: Bangeløkka at the Bangeløkka express-bus quay on Bjørnstjerne Bjørnsons gate
  (Drammen kommune's facts; Statens vegvesen's station stands by that road), within 300 m;
  Rosenkrantzgata by Vårveien at the Strømsø torg bus quay, the nearest known point south of the
  river, within 1500 m; Backeparken at Bragernes torg, the centre north of the river where an
  urban-background station would stand, within 1500 m. The last two are loose guesses, and say so.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sandbox.drammen.day import FileVersion, every
from sandbox.drammen.weather import DayWeather

__all__ = ["CLASSES", "COMPONENTS", "FILE", "LOCATIONS", "STATIONS", "Station", "index_of", "utd_documents"]

FILE: Final = "aq_utd_drammen.json"
COMPONENTS: Final = ("NO2", "PM10", "PM2.5")
CLASSES: Final = {"NO2": (100.0, 200.0, 400.0), "PM10": (60.0, 120.0, 400.0), "PM2.5": (30.0, 50.0, 150.0)}
"""The upper limits (exclusive) of index 1, 2 and 3 per component, µg/m³ (hourly means)."""
_COLORS: Final = {1: "6ee86e", 2: "ff9900", 3: "ff0000", 4: "990099"}
_YEAR_SHARE: Final = {3: 0.05, 2: 0.09}
"""The share of the time Drammen's air was "high" and "moderate" in 2019."""


@dataclass(frozen=True, slots=True)
class Station:
    """One measuring station: its name and type as NILU writes them, and what traffic adds there."""

    name: str
    type: str
    no2: tuple[float, float]
    """Background NO2 and what full traffic adds, µg/m³."""
    pm10: tuple[float, float]
    """Background PM10 and what full traffic adds, µg/m³."""
    pm25_share: float
    """PM2.5 as a share of PM10."""


STATIONS: Final = (
    Station("Backeparken", "Bybakgrunn", no2=(8.0, 22.0), pm10=(8.0, 8.0), pm25_share=0.6),
    Station("Bangeløkka", "Veinær stasjon", no2=(14.0, 75.0), pm10=(10.0, 28.0), pm25_share=0.42),
    Station(
        "Rosenkrantzgata ved Vårveien", "Veinær stasjon", no2=(12.0, 60.0), pm10=(9.0, 22.0), pm25_share=0.45
    ),
)


LOCATIONS: Final = {
    "bangelokka": {
        "lat": 59.73091,
        "lon": 10.216454,
        "uncertainty": 300.0,
        "placement": "Not surveyed: placed at the Bangeløkka express-bus quay on Bjørnstjerne Bjørnsons "
        "gate (Drammen kommune), the road Statens vegvesen's station stands by",
    },
    "backeparken": {
        "lat": 59.7439,
        "lon": 10.2054,
        "uncertainty": 1500.0,
        "placement": "Not surveyed: placed at Bragernes torg (the bike rack, OpenStreetMap), the town "
        "centre north of the river; the park's own position is not known",
    },
    "rosenkrantzgata-ved-varveien": {
        "lat": 59.739909,
        "lon": 10.202112,
        "uncertainty": 1500.0,
        "placement": "Not surveyed: placed at the Strømsø torg bus quay (Drammen kommune), south of the "
        "river; the crossing of Rosenkrantzgata and Vårveien is not known to the project",
    },
}
"""The ``nilu-air-quality`` adapter's ``locations`` table: approximate places (see the module doc)."""


def index_of(component: str, value: float) -> int:
    """NILU's index (1 low … 4 very high) of an hourly mean of ``component``."""
    return 1 + sum(value >= limit for limit in CLASSES[component])


def _traffic(hour: float) -> float:
    def peak(centre: float, width: float) -> float:
        return math.exp(-0.5 * ((hour - centre) / width) ** 2)

    return min(1.0, 0.08 + 0.85 * peak(7.6, 1.1) + 0.45 * peak(12.0, 2.5) + 0.9 * peak(16.0, 1.4))


def _natural(station: Station, end: datetime, weather: DayWeather, rng: random.Random) -> dict[str, float]:
    middle = end - timedelta(minutes=30)  # the hour's mean: its middle stands for it
    hour = middle.hour + middle.minute / 60
    load = _traffic(hour) / (0.5 + weather.at(middle).wind_speed / 3)
    washout = 0.6 if weather.precipitation(end) >= 0.3 else 1.0
    no2 = (station.no2[0] + station.no2[1] * load) * math.exp(rng.gauss(0, 0.15))
    pm10 = (station.pm10[0] + station.pm10[1] * load) * washout * math.exp(rng.gauss(0, 0.15))
    pm25 = pm10 * station.pm25_share * math.exp(rng.gauss(0, 0.08))
    return {"NO2": no2, "PM10": pm10, "PM2.5": pm25}


def _anchor(values: dict[tuple[int, int], dict[str, float]], rng: random.Random) -> None:
    """Lift the most polluted station-hours into "high" and "moderate", in the year's shares."""

    def closeness(key: tuple[int, int]) -> float:
        return max(v / CLASSES[c][0] for c, v in values[key].items())

    ranked = sorted(values, key=lambda key: (-closeness(key), key))
    quota = [(3, round(_YEAR_SHARE[3] * len(ranked))), (2, round(_YEAR_SHARE[2] * len(ranked)))]
    position = 0
    for level, count in quota:
        for key in ranked[position : position + count]:
            component = max(values[key], key=lambda c: values[key][c] / CLASSES[c][0])
            low, high = CLASSES[component][level - 2], CLASSES[component][level - 1]
            values[key][component] = low + (high - low) * rng.uniform(0.1, 0.5)
        position += count
    for key in ranked[position:]:  # the rest stay "low"
        for component, value in values[key].items():
            values[key][component] = min(value, 0.95 * CLASSES[component][0])


def utd_documents(weather: DayWeather, rng: random.Random) -> list[FileVersion]:
    """The day's ``/aq/utd`` documents: one an hour, for the hour that has just ended."""
    ends = list(every(timedelta(hours=1)))
    values = {
        (s, h): _natural(station, end, weather, rng)
        for h, end in enumerate(ends)
        for s, station in enumerate(STATIONS)
    }
    _anchor(values, rng)
    documents = []
    for h, end in enumerate(ends):
        records: list[dict[str, Any]] = []
        for s, station in enumerate(STATIONS):
            for c, component in enumerate(COMPONENTS):
                value = round(values[(s, h)][component], 1)
                level = index_of(component, value)
                records.append(
                    {
                        "id": 1 + s * len(COMPONENTS) + c,
                        "municipality": "Drammen",
                        "area": "Drammen",
                        "station": station.name,
                        "type": station.type,
                        "component": component,
                        "fromTime": (end - timedelta(hours=1)).isoformat(),
                        "toTime": end.isoformat(),
                        "value": value,
                        "unit": "µg/m³",
                        "timestep": 3600,
                        "index": level,
                        "color": _COLORS[level],
                        "isValid": True,
                        "isVisible": True,
                    }
                )
        documents.append(FileVersion(end, FILE, json.dumps(records, ensure_ascii=False).encode()))
    return documents
