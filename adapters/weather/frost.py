"""MET Norway's Frost observations (``/observations/v0.jsonld``), read into station readings (no I/O).

A response has ``data``: a list of items, one per source and reference time, each with its
``observations``. An observation names its ``elementId`` (``air_temperature``,
``sum(precipitation_amount PT1H)`` …) and carries ``value``, ``unit``, ``level`` (e.g. 2 m above
ground), ``timeOffset``, ``timeResolution``, ``timeSeriesId`` and ``qualityCode``. A source id is a
station and, after the colon, a sensor system (``SN50540:0``).

Decisions, and why:

* **One reading per station and reference time**: observations of one station (whatever its sensor
  system) at one time make one :class:`StationReading`, the reference time being when they were
  observed. Elements map to the contract thus: ``air_temperature`` → ``temperature``,
  ``relative_humidity``, ``wind_speed``, ``wind_from_direction`` → ``wind_direction``,
  ``sum(precipitation_amount PT1H)`` → ``precipitation`` and ``surface_air_pressure`` →
  ``atmospheric_pressure``.
* **Pressure: the station's own, never reduced to sea level.** The contract's field is "air
  pressure at the station", which is ``surface_air_pressure``; ``air_pressure_at_sea_level`` is a
  different quantity (about 12 hPa more per 100 m of height) and is not mapped, so a station's
  series never jumps between the two.
* **Which series:** only ``timeOffset`` PT0H (Frost's data clarifications: PT0H "is always the
  preferred offset" for these elements), so the value holds at the reference time and the hourly
  precipitation sum is the hour that ends then — what the contract means by "the hour before
  observed_at". Where a station gives an element in several series, the one at the element's
  standard height (2 m for temperature and humidity, 10 m for wind) wins, then the finest
  ``timeResolution`` (PT10M before PT1H: the same instant, reported more often), then the lowest
  ``timeSeriesId`` (the station's main sensor).
* **Elements it does not map, and other offsets, are skipped**, not dead-lettered: they are not
  bad data, only data the contract has no field for (:attr:`FrostObservations.skipped` counts them).
* **Units are checked** (degC, percent, m/s, degrees, mm, hPa); an observation in another unit is
  dead-lettered as ``unsupported-unit`` rather than converted by guesswork.
* **Quality:** Frost condenses MET's quality-control flags (how the value was observed, whether
  it was found good or suspicious, and whether it was corrected or interpolated) into one
  ``qualityCode``, whose table is at frost.met.no/dataclarifications.html; 0 is a value that passed
  the control unchanged. An observation whose code is above ``max_quality_code`` (default 2; set 0
  to publish only values that passed unchanged) is dead-lettered as ``failed-quality-control``,
  where an operator can see it, rather than published as if it were sound; one without a code is
  published. The station's other observations are published all the same.
* **Dead letters:** a bad observation goes alone, wrapped in its item (``sourceId``,
  ``referenceTime``, and that observation) so that it can be read and replayed as Frost sent it.
  Reasons: ``bad-record`` (not the shape of an item or an observation), ``unsupported-unit``,
  ``failed-quality-control``, ``out-of-range`` (a value the contract forbids). Whole-document
  reasons: ``not-json`` and ``not-frost-observations``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, NamedTuple

import msgspec
from msgspec import Meta

from adapters.jsondocs import decode_document
from adapters.polling import SourceFormatError
from adapters.records import Rejected
from bus.codec import decode_bytes
from bus.errors import UndecodableError
from contracts import WeatherObserved

__all__ = ["ELEMENTS", "Element", "FrostObservations", "StationReading", "parse_observations"]

_Time = Annotated[datetime, Meta(tz=True)]


class Element(NamedTuple):
    """How one Frost element becomes one field of :class:`~contracts.WeatherObserved`."""

    field: str
    """The contract's field."""
    unit: str
    """The only unit accepted, as Frost spells it."""
    height: float | None
    """The standard height above ground in metres, preferred when there are several."""


ELEMENTS: Final[Mapping[str, Element]] = {
    "air_temperature": Element("temperature", "degC", 2.0),
    "relative_humidity": Element("relative_humidity", "percent", 2.0),
    "wind_speed": Element("wind_speed", "m/s", 10.0),
    "wind_from_direction": Element("wind_direction", "degrees", 10.0),
    "sum(precipitation_amount PT1H)": Element("precipitation", "mm", None),
    "surface_air_pressure": Element("atmospheric_pressure", "hPa", None),
}
"""The Frost elements read, by ``elementId``."""


class _Response(msgspec.Struct):
    data: list[msgspec.Raw]
    type: str | None = msgspec.field(default=None, name="@type")


class _Item(msgspec.Struct):
    sourceId: Annotated[str, Meta(min_length=1)]
    referenceTime: _Time
    observations: list[msgspec.Raw] = []


class _Head(msgspec.Struct):
    elementId: str


class _Level(msgspec.Struct):
    levelType: str | None = None
    value: float | None = None


class _Observation(msgspec.Struct):
    elementId: str
    value: float
    unit: str | None = None
    timeOffset: str = "PT0H"
    timeResolution: str | None = None
    timeSeriesId: int = 0
    level: _Level | None = None
    qualityCode: int | None = None


_RESPONSE: Final = msgspec.json.Decoder(_Response)
_ITEM: Final = msgspec.json.Decoder(_Item)
_HEAD: Final = msgspec.json.Decoder(_Head)
_OBSERVATION: Final = msgspec.json.Decoder(_Observation)
_VALID: Final = msgspec.json.Decoder(WeatherObserved)
_DURATION: Final = re.compile(r"^P(?:(\d{1,9})D)?(?:T(?:(\d{1,9})H)?(?:(\d{1,9})M)?(?:(\d{1,9})S)?)?$")


@dataclass(frozen=True, slots=True)
class StationReading:
    """What one station observed at one time: the contract's fields and their values."""

    station: str
    """The Frost station id, without the sensor system (``SN50540``)."""
    observed_at: datetime
    """The reference time of the observations."""
    values: Mapping[str, float]
    """Contract field → value, e.g. ``{"temperature": -1.2, "wind_speed": 2.1}``."""


@dataclass(frozen=True, slots=True)
class FrostObservations:
    """One Frost response, read."""

    readings: tuple[StationReading, ...]
    """One per station and reference time, in time order."""
    rejected: tuple[Rejected, ...]
    """The observations (or items) to dead-letter, each with its reason."""
    skipped: Mapping[str, int]
    """Observations not mapped, by ``elementId`` (with `` @<timeOffset>`` for another offset)."""


def _seconds(duration: str | None) -> float:
    """An ISO 8601 duration such as ``PT10M`` in seconds; unknown ones sort last."""
    match = _DURATION.match(duration or "")
    if match is None or duration == "P":
        return math.inf
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def _rank(observation: _Observation, element: Element, order: int) -> tuple[int, float, int, int]:
    level = observation.level
    standard = level is None or level.value is None or element.height is None or level.value == element.height
    return (0 if standard else 1, _seconds(observation.timeResolution), observation.timeSeriesId, order)


def _wrapped(item: _Item, observation: msgspec.Raw) -> bytes:
    """The observation inside an item of its own, as Frost would send it alone."""
    one = {"sourceId": item.sourceId, "referenceTime": item.referenceTime, "observations": [observation]}
    return msgspec.json.encode(one)


class _Reader:
    def __init__(self, max_quality_code: int) -> None:
        self.max_quality_code = max_quality_code
        self.best: dict[tuple[str, datetime], dict[str, tuple[tuple[int, float, int, int], float]]] = {}
        self.rejected: list[Rejected] = []
        self.skipped: Counter[str] = Counter()
        self.order = 0

    def item(self, index: int, raw: msgspec.Raw) -> None:
        data = bytes(raw)
        try:
            item = decode_bytes(_ITEM, data)
        except UndecodableError as exc:  # the document parsed, but this part may be deeper than it
            self.rejected.append(
                Rejected("bad-record", f"data[{index}] is not an observation item: {exc}", data)
            )
            return
        station = item.sourceId.partition(":")[0]
        where = f"{item.sourceId} at {item.referenceTime.isoformat()}"
        fields = self.best.setdefault((station, item.referenceTime), {})
        for number, raw_observation in enumerate(item.observations):
            self.order += 1
            self.observation(item, raw_observation, f"{where}, observations[{number}]", station, fields)
        if not fields:
            del self.best[(station, item.referenceTime)]

    def observation(
        self,
        item: _Item,
        raw: msgspec.Raw,
        where: str,
        station: str,
        fields: dict[str, tuple[tuple[int, float, int, int], float]],
    ) -> None:
        try:
            element_id = decode_bytes(_HEAD, raw).elementId
            element = ELEMENTS.get(element_id)
            if element is None:
                self.skipped[element_id] += 1
                return
            observation = decode_bytes(_OBSERVATION, raw)
        except UndecodableError as exc:
            self._reject(item, raw, "bad-record", f"{where} is not an observation: {exc}")
            return
        where = f"{where} ({element_id})"
        if observation.timeOffset != "PT0H":
            self.skipped[f"{element_id} @{observation.timeOffset}"] += 1
            return
        if observation.unit != element.unit:
            self._reject(
                item,
                raw,
                "unsupported-unit",
                f"{where}: unit {observation.unit!r}, but the contract's {element.field} is in "
                f"{element.unit!r}",
            )
            return
        code = observation.qualityCode
        if code is not None and code > self.max_quality_code:
            self._reject(
                item,
                raw,
                "failed-quality-control",
                f"{where}: value {observation.value} has qualityCode {code}, "
                f"above max_quality_code {self.max_quality_code}",
            )
            return
        check = {"station": "check", "observed_at": item.referenceTime, element.field: observation.value}
        try:  # the contract's own constraints, checked on this one value
            _VALID.decode(msgspec.json.encode(check))
        except msgspec.ValidationError as exc:
            self._reject(item, raw, "out-of-range", f"{where}: a value the contract forbids: {exc}")
            return
        rank = _rank(observation, element, self.order)
        current = fields.get(element.field)
        if current is None or rank < current[0]:
            fields[element.field] = (rank, observation.value)

    def _reject(self, item: _Item, raw: msgspec.Raw, reason: str, detail: str) -> None:
        self.rejected.append(Rejected(reason, detail, _wrapped(item, raw)))

    def result(self) -> FrostObservations:
        readings = [
            StationReading(station=station, observed_at=time, values={f: v for f, (_, v) in fields.items()})
            for (station, time), fields in self.best.items()
        ]
        readings.sort(key=lambda r: (r.observed_at, r.station))
        return FrostObservations(
            readings=tuple(readings), rejected=tuple(self.rejected), skipped=dict(self.skipped)
        )


def parse_observations(body: bytes, *, max_quality_code: int = 2) -> FrostObservations:
    """Read a Frost observations response; raises :class:`SourceFormatError` and nothing else.

    Pure: the same bytes always give the same result.
    """
    response = decode_document(
        _RESPONSE, body, what="a Frost observations response", reason="not-frost-observations"
    )
    if response.type is not None and response.type != "ObservationResponse":
        raise SourceFormatError(
            f"a Frost {response.type!r}, not an ObservationResponse", reason="not-frost-observations"
        )
    reader = _Reader(max_quality_code)
    for index, raw in enumerate(response.data):
        reader.item(index, raw)
    return reader.result()
