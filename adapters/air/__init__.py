"""NILU's air-quality values on the bus: the ``nilu-air-quality`` source adapter.

:mod:`~adapters.air.utd` reads NILU's ``/aq/utd`` JSON (no I/O); :mod:`~adapters.air.observation`
maps one record to an :class:`~contracts.AirQualityObserved` and says why when it cannot;
:mod:`~adapters.air.adapter` is :class:`NiluAirQuality`, which polls the document and publishes.
"""

from adapters.air.adapter import NILU_URL, AirConfig, NiluAirQuality
from adapters.air.observation import (
    COMPONENTS,
    StationType,
    component_code,
    concentration,
    observation_from,
    station_type,
)
from adapters.air.utd import RecordError, UtdRecord, decode_record, split_records

__all__ = [
    "AirConfig",
    "COMPONENTS",
    "NILU_URL",
    "NiluAirQuality",
    "RecordError",
    "StationType",
    "UtdRecord",
    "component_code",
    "concentration",
    "decode_record",
    "observation_from",
    "split_records",
    "station_type",
]
