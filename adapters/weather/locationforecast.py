"""MET Norway's Locationforecast 2.0 ``compact`` format, read into forecast steps (no I/O).

The format is a GeoJSON Feature: ``geometry.coordinates`` is ``[lon, lat, altitude]`` of the point
forecast for, ``properties.meta`` has ``updated_at`` (when the model run was made) and ``units``,
and ``properties.timeseries`` lists the steps: each has a ``time``, ``data.instant.details`` (air
pressure at sea level, air temperature, cloud area fraction, relative humidity, wind direction and
speed at that moment) and up to three periods starting then, ``data.next_1_hours``,
``next_6_hours`` and ``next_12_hours``, each with ``summary.symbol_code`` and (not for 12 hours)
``details.precipitation_amount``. The first 2–3 days come hour by hour, then every 6 hours, and
the last step has no period at all.

Decisions, and why:

* **The shortest period the step gives** fills ``period_hours``, ``precipitation`` and ``symbol``
  (1, else 6, else 12 hours), as the contract asks: the hourly period is the most precise, and a
  step without it (after the first days) still says what the next 6 hours bring. A step with no
  period has none of the three.
* **Units are checked, not assumed.** ``meta.units`` must give the contract's unit (celsius, %,
  m/s, degrees, hPa, mm) for every value the document uses; fahrenheit and kelvin are converted
  (rounded to 0.01 °C), anything else rejects the whole document as ``unsupported-unit``,
  because every step of it would be wrong the same way.
* **A bad step is dead-lettered on its own** and the forecast published without it: ``bad-step``
  (not the shape of a step, e.g. a naive time or text for a number), ``out-of-range`` (a value the
  contract forbids, such as 99 °C or a symbol that is not a MET code), ``duplicate-step`` (a time
  already given) or ``too-many-steps`` (beyond the contract's 500). Steps are put in time order.
* **Whole-document reasons:** ``not-json``, ``not-locationforecast`` (JSON, but not this format),
  ``unsupported-unit``, ``no-steps`` (nothing left to publish) and ``out-of-range`` (an elevation
  the contract forbids).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from adapters.jsondocs import decode_document
from adapters.polling import SourceFormatError
from adapters.records import Rejected
from bus.codec import decode_bytes
from bus.errors import UndecodableError
from contracts import ForecastStep, GeoPoint, WeatherForecast, validate

__all__ = ["Locationforecast", "forecast_for", "parse_compact"]

MAX_STEPS: Final = 500
"""The most steps a :class:`~contracts.WeatherForecast` may hold."""

_Time = Annotated[datetime, Meta(tz=True)]


class _InstantDetails(msgspec.Struct):
    air_pressure_at_sea_level: float | None = None
    air_temperature: float | None = None
    cloud_area_fraction: float | None = None
    relative_humidity: float | None = None
    wind_from_direction: float | None = None
    wind_speed: float | None = None


class _Instant(msgspec.Struct):
    details: _InstantDetails = msgspec.field(default_factory=_InstantDetails)


class _Summary(msgspec.Struct):
    symbol_code: str


class _PeriodDetails(msgspec.Struct):
    precipitation_amount: float | None = None


class _Period(msgspec.Struct):
    summary: _Summary | None = None
    details: _PeriodDetails | None = None


class _Data(msgspec.Struct):
    instant: _Instant
    next_1_hours: _Period | None = None
    next_6_hours: _Period | None = None
    next_12_hours: _Period | None = None


class _Step(msgspec.Struct):
    time: _Time
    data: _Data


class _Meta(msgspec.Struct):
    updated_at: _Time
    units: dict[str, str] = {}


class _Properties(msgspec.Struct):
    meta: _Meta
    timeseries: list[msgspec.Raw]


class _Geometry(msgspec.Struct):
    coordinates: list[float]


class _Feature(msgspec.Struct):
    properties: _Properties
    geometry: _Geometry | None = None


_FEATURE: Final = msgspec.json.Decoder(_Feature)
_STEP: Final = msgspec.json.Decoder(_Step)

_Convert = Callable[[float], float]


def _same(value: float) -> float:
    return value


def _from_fahrenheit(value: float) -> float:
    return round((value - 32.0) * 5.0 / 9.0, 2)


def _from_kelvin(value: float) -> float:
    return round(value - 273.15, 2)


# Per source key: the contract's unit, and every unit accepted with how it becomes the contract's.
_UNITS: Final[Mapping[str, tuple[str, Mapping[str, _Convert]]]] = {
    "air_temperature": (
        "celsius",
        {"celsius": _same, "fahrenheit": _from_fahrenheit, "kelvin": _from_kelvin},
    ),
    "air_pressure_at_sea_level": ("hPa", {"hPa": _same}),
    "cloud_area_fraction": ("%", {"%": _same}),
    "relative_humidity": ("%", {"%": _same}),
    "wind_from_direction": ("degrees", {"degrees": _same}),
    "wind_speed": ("m/s", {"m/s": _same}),
    "precipitation_amount": ("mm", {"mm": _same}),
}


@dataclass(frozen=True, slots=True)
class Locationforecast:
    """One compact document, read: the steps that are good and the ones that were not."""

    updated_at: datetime
    """When MET made the forecast (``meta.updated_at``)."""
    elevation: float | None
    """The altitude in ``geometry.coordinates``, if given: the height the forecast is for."""
    steps: tuple[ForecastStep, ...]
    """The good steps, in time order."""
    rejected: tuple[Rejected, ...]
    """The steps to dead-letter, each with its reason."""


class _Units:
    """The converters ``meta.units`` calls for; a key it does not name is an error only once used."""

    def __init__(self, units: Mapping[str, str]) -> None:
        self._convert: dict[str, _Convert] = {}
        for key, (wanted, accepted) in _UNITS.items():
            unit = units.get(key)
            if unit is None:
                continue
            convert = accepted.get(unit)
            if convert is None:
                raise SourceFormatError(
                    f"meta.units.{key} is {unit!r}, but the contract wants {wanted} "
                    f"(accepted: {', '.join(accepted)})",
                    reason="unsupported-unit",
                )
            self._convert[key] = convert

    def __call__(self, key: str, value: float | None, where: str) -> float | None:
        if value is None:
            return None
        convert = self._convert.get(key)
        if convert is None:
            raise SourceFormatError(
                f"{where} gives {key}, but meta.units names no unit for it", reason="unsupported-unit"
            )
        return convert(value)


def _period(data: _Data) -> tuple[int, _Period] | None:
    for hours, period in ((1, data.next_1_hours), (6, data.next_6_hours), (12, data.next_12_hours)):
        if period is not None and (period.summary is not None or period.details is not None):
            return hours, period
    return None


def _forecast_step(step: _Step, units: _Units, where: str) -> ForecastStep:
    details = step.data.instant.details
    found = _period(step.data)
    hours = precipitation = symbol = None
    if found is not None:
        hours, period = found
        if period.details is not None:
            precipitation = units("precipitation_amount", period.details.precipitation_amount, where)
        if period.summary is not None:
            symbol = period.summary.symbol_code
    return ForecastStep(
        time=step.time,
        temperature=units("air_temperature", details.air_temperature, where),
        relative_humidity=units("relative_humidity", details.relative_humidity, where),
        wind_speed=units("wind_speed", details.wind_speed, where),
        wind_direction=units("wind_from_direction", details.wind_from_direction, where),
        atmospheric_pressure=units("air_pressure_at_sea_level", details.air_pressure_at_sea_level, where),
        cloud_cover=units("cloud_area_fraction", details.cloud_area_fraction, where),
        period_hours=hours,
        precipitation=precipitation,
        symbol=symbol,
    )


def parse_compact(body: bytes) -> Locationforecast:
    """Read a Locationforecast 2.0 compact document; raises :class:`SourceFormatError` and nothing else.

    Pure: the same bytes always give the same result.
    """
    feature = decode_document(
        _FEATURE, body, what="a Locationforecast compact document", reason="not-locationforecast"
    )
    units = _Units(feature.properties.meta.units)
    good: list[tuple[ForecastStep, bytes, str]] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(feature.properties.timeseries):
        data = bytes(raw)
        where = f"timeseries[{index}]"
        try:
            step = decode_bytes(_STEP, data)
        except UndecodableError as exc:  # the document parsed, so the step is JSON (but maybe too deep)
            rejected.append(Rejected("bad-step", f"{where} is not a forecast step: {exc}", data))
            continue
        where = f"{where} ({step.time.isoformat()})"
        built = _forecast_step(step, units, where)
        try:  # the constructor checked no constraint
            good.append((validate(built), data, where))
        except msgspec.ValidationError as exc:
            rejected.append(Rejected("out-of-range", f"{where}: a value the contract forbids: {exc}", data))
    good.sort(key=lambda item: item[0].time)
    steps: list[ForecastStep] = []
    for forecast_step, data, where in good:
        if steps and steps[-1].time == forecast_step.time:
            rejected.append(Rejected("duplicate-step", f"{where}: a step for this time came before", data))
        elif len(steps) == MAX_STEPS:
            rejected.append(
                Rejected("too-many-steps", f"{where}: a forecast holds at most {MAX_STEPS} steps", data)
            )
        else:
            steps.append(forecast_step)
    geometry = feature.geometry
    elevation = geometry.coordinates[2] if geometry is not None and len(geometry.coordinates) > 2 else None
    return Locationforecast(
        updated_at=feature.properties.meta.updated_at,
        elevation=elevation,
        steps=tuple(steps),
        rejected=tuple(rejected),
    )


def forecast_for(
    forecast: Locationforecast, *, place: str, location: GeoPoint, place_name: str | None = None
) -> WeatherForecast:
    """The :class:`~contracts.WeatherForecast` for a configured place; raises :class:`SourceFormatError`
    (``no-steps`` or ``out-of-range``) if the document makes none."""
    if not forecast.steps:
        raise SourceFormatError(
            f"no forecast step to publish ({len(forecast.rejected)} rejected)", reason="no-steps"
        )
    built = WeatherForecast(
        place=place,
        place_name=place_name,
        location=location,
        elevation=forecast.elevation,
        updated_at=forecast.updated_at,
        steps=list(forecast.steps),
    )
    try:
        return validate(built)
    except msgspec.ValidationError as exc:
        raise SourceFormatError(
            f"place {place}: a value the contract forbids: {exc}", reason="out-of-range"
        ) from None
