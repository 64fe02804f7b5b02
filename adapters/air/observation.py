"""From one NILU ``/aq/utd`` record to one :class:`~contracts.AirQualityObserved`: the mapping.

Pure functions, no I/O. Each record that makes no observation raises
:class:`~adapters.air.utd.RecordError` with its dead-letter reason:

``invalid-at-source``
    ``isValid`` is false: the station itself says the value is not to be trusted.
``unknown-component``
    a component the contract's ``AirComponent`` does not list (benzene, say); the contract
    would need a new code before it can carry it.
``unknown-unit``
    a unit other than µg/m³ or mg/m³: converting a ppb or an index would need knowledge the
    record does not give, and a wrong number is worse than none.
``no-value``
    ``value`` is null.
``unnamed-station``
    the station's name makes no identifier (and ``stations`` does not map it).
``out-of-range``
    a value the contract does not allow (a negative concentration, a latitude of 200); the
    message names the field.

Decisions, and why:

* **station** is ``stations[eoi]``, else ``stations[station name]``, else the slug of the name
  (``Bangeløkka`` → ``bangelokka``): the EoI code is the station's stable European identifier, the
  name is what people configure.
* **component** codes are matched without regard to case (``pm2.5`` is ``PM2.5``): NILU writes
  them in capitals in records but in lower case in its query parameters.
* **value** is µg/m³, as the contract promises: mg/m³ (NILU uses it for CO) is multiplied by 1000,
  and the unit is matched after Unicode normalisation, so the micro sign (U+00B5), the Greek mu
  (U+03BC), ``u`` and a superscript or plain ``3`` are all the same unit. The product is rounded to
  six decimals, so 0.4 mg/m³ is 400 µg/m³ and not 400.00000000000006.
* **index** 1–4 is kept; anything else is absent. NILU uses 0 (and -1) for "no index" (too few
  data, or a component without classes), and an unknown class must not be passed on as a known one.
* **station_type** from NILU's Norwegian ``type`` (``Veinær stasjon`` → ``roadside``,
  ``Bybakgrunn`` → ``urban-background``, ``Forstadsbakgrunn`` → ``suburban-background``,
  ``Industri…`` → ``industrial``, ``Regional bakgrunn``/``Landlig…`` → ``rural-background``);
  a type not in that list is absent, not an error: the measurement is still good.
* **observed_at** is ``toTime``, the end of the averaging period, as the contract defines it;
  **averaging_period** is ``timestep``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Final, Literal, TypeAlias, get_args

import msgspec

from adapters.air.utd import RecordError, UtdRecord
from adapters.naming import slug
from contracts import AirQualityObserved, validate
from contracts.environment import AirComponent
from contracts.fields import GeoPoint

__all__ = [
    "COMPONENTS",
    "StationType",
    "component_code",
    "concentration",
    "observation_from",
    "station_type",
]

StationType: TypeAlias = Literal[
    "roadside", "urban-background", "suburban-background", "industrial", "rural-background"
]

COMPONENTS: Final[tuple[AirComponent, ...]] = get_args(AirComponent)
"""The component codes the contract carries, as NILU writes them."""

_COMPONENTS: Final[dict[str, AirComponent]] = {code.casefold(): code for code in COMPONENTS}

# Prefixes of NILU's Norwegian station types, after folding case and spaces.
_STATION_TYPES: Final[tuple[tuple[str, StationType], ...]] = (
    ("veinær", "roadside"),
    ("bybakgrunn", "urban-background"),
    ("forstadsbakgrunn", "suburban-background"),
    ("industri", "industrial"),
    ("regional bakgrunn", "rural-background"),
    ("landlig", "rural-background"),
)

_TO_MICROGRAMS: Final = {"ug/m3": 1.0, "mg/m3": 1000.0}


def station_type(text: str | None) -> StationType | None:
    """The contract's station type for NILU's ``type``; ``None`` when it is absent or not known."""
    if text is None:
        return None
    folded = " ".join(text.split()).casefold()
    return next((kind for prefix, kind in _STATION_TYPES if folded.startswith(prefix)), None)


def component_code(text: str) -> AirComponent | None:
    """The contract's code for NILU's ``component`` (any case); ``None`` when the contract has none."""
    return _COMPONENTS.get(text.strip().casefold())


def _unit_key(unit: str) -> str:
    folded = unicodedata.normalize("NFKC", unit).replace("\u03bc", "u")
    return "".join(folded.split()).casefold()


def concentration(value: float, unit: str) -> float | None:
    """``value`` in ``unit`` as µg/m³; ``None`` when the unit is not a mass concentration citybus knows."""
    factor = _TO_MICROGRAMS.get(_unit_key(unit))
    return None if factor is None else round(value * factor, 6)


def _label(record: UtdRecord) -> str:
    return f"{record.station} {record.component} at {record.to_time.isoformat()}"


def observation_from(record: UtdRecord, *, stations: Mapping[str, str]) -> AirQualityObserved:
    """The observation one record makes; raises :class:`~adapters.air.utd.RecordError` if none.

    ``stations`` maps an EoI code or a NILU station name to the station's slug.
    """
    label = _label(record)
    if record.is_valid is False:
        raise RecordError(
            f"{label}: NILU marks the value as not valid (isValid false)", reason="invalid-at-source"
        )
    component = component_code(record.component)
    if component is None:
        raise RecordError(
            f"{label}: component {record.component!r} is not one the contract carries "
            f"({', '.join(COMPONENTS)})",
            reason="unknown-component",
        )
    if record.value is None:
        raise RecordError(f"{label}: the value is null", reason="no-value")
    value = concentration(record.value, record.unit)
    if value is None:
        raise RecordError(
            f"{label}: unit {record.unit!r} is not µg/m³ or mg/m³, so the value cannot be given in µg/m³",
            reason="unknown-unit",
        )
    station = (stations.get(record.eoi) if record.eoi else None) or stations.get(record.station)
    station = station or slug(record.station)
    if not station:
        raise RecordError(
            f"{label}: the station name makes no identifier; name it in `stations`",
            reason="unnamed-station",
        )
    latitude, longitude = record.latitude, record.longitude
    observation = AirQualityObserved(
        station=station,
        station_name=record.station,
        station_type=station_type(record.type),
        location=GeoPoint.at(latitude, longitude) if latitude is not None and longitude is not None else None,
        component=component,
        value=value,
        index=record.index if record.index is not None and 1 <= record.index <= 4 else None,
        observed_at=record.to_time,
        averaging_period=record.timestep,
    )
    try:  # the constructor checked no constraint
        return validate(observation)
    except msgspec.ValidationError as exc:
        raise RecordError(
            f"{label}: a value the contract does not allow: {exc}", reason="out-of-range"
        ) from None
