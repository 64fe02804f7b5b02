"""yr.no's bathing-water temperatures on the bus: the ``yr-bathing`` source adapter.

:mod:`~adapters.bathing.yr` reads the JSON of badetemperaturer.yr.no (no I/O);
:mod:`~adapters.bathing.observation` maps one record to a :class:`~contracts.BeachObservation` and
says who measured it; :mod:`~adapters.bathing.adapter` is :class:`YrBathing`, which polls and publishes.
"""

from adapters.bathing.adapter import API_KEY_HEADER, YR_URL, BathingConfig, YrBathing, municipality_key
from adapters.bathing.observation import YR, observation_from, provenance_of, reporter_of
from adapters.bathing.yr import Place, Position, RecordError, YrRecord, decode_record, place_of, split_records

__all__ = [
    "API_KEY_HEADER",
    "BathingConfig",
    "Place",
    "Position",
    "RecordError",
    "YR",
    "YR_URL",
    "YrBathing",
    "YrRecord",
    "decode_record",
    "municipality_key",
    "observation_from",
    "place_of",
    "provenance_of",
    "reporter_of",
    "split_records",
]
