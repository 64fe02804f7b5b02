"""NILU's hourly air-quality document, ``GET https://api.nilu.no/aq/utd`` ("up to date"): reading it.

The answer is a JSON array with one object per station and component, each the latest hourly mean,
for example this real record (Oslo, Manglerud, PM10, 2022-03-09 12–13 h)::

    {"id": 38, "zone": "Stor-Oslo", "municipality": "Oslo", "area": "Oslo", "station": "Manglerud",
     "eoi": "NO0071A", "type": "Veinær stasjon", "component": "PM10",
     "fromTime": "2022-03-09T12:00:00+01:00", "toTime": "2022-03-09T13:00:00+01:00",
     "value": 50.7, "unit": "µg/m³", "latitude": 59.89864, "longitude": 10.8149, "timestep": 3600,
     "index": 1, "color": "6ee86e", "isValid": true, "isVisible": true}

This module only reads (no I/O, no mapping to the contract). Decisions, and why:

* **Two levels of error.** A body that is not JSON, or JSON that is not an array, is malformed as a
  whole: :class:`~adapters.polling.SourceFormatError` ``not-json`` (with line and column) or
  ``unexpected-shape``, and the poller dead-letters the document. Inside a good array every record
  is decoded on its own (:func:`split_records`, then :func:`decode_record`), so one odd record — an
  element that is not an object, a missing ``station``, a time without its UTC offset — is
  dead-lettered alone as ``unexpected-shape`` (:class:`RecordError`) and the others still reach the bus.
* **Only the fields citybus uses are declared.** ``id``, ``zone``, ``color``, ``isVisible`` … are
  ignored, so a field NILU adds or drops breaks nothing that is not needed.
* **Times must carry their UTC offset** (NILU writes ``+01:00``/``+02:00``): a naive time would be
  an hour off for half the year, so it is refused rather than guessed.
* **A UTF-8 byte order mark is skipped**: some HTTP stacks put one in front of JSON, and it is not
  an error in the data.
"""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.jsondocs import RecordError, split_array
from adapters.jsondocs import decode_record as decode_record_as
from contracts.fields import Timestamp

__all__ = ["RecordError", "UtdRecord", "decode_record", "split_records"]


class UtdRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One station's latest hourly value of one component, as NILU sends it (the fields citybus uses)."""

    station: str
    """The station's name, e.g. ``Manglerud``."""
    component: str
    """NILU's component code: ``PM10``, ``PM2.5``, ``NO2`` …"""
    to_time: Timestamp
    """``toTime``: the end of the averaging period."""
    value: float | None
    """The mean concentration in :attr:`unit`; ``null`` when NILU has none."""
    unit: str
    """``µg/m³`` for nearly everything; ``mg/m³`` for CO at some stations."""
    eoi: str | None = None
    """The station's European (EoI) code, e.g. ``NO0071A``."""
    type: str | None = None
    """What the station is placed to measure, in Norwegian (``Veinær stasjon``, ``Bybakgrunn`` …)."""
    area: str | None = None
    """The area it belongs to (the ``areas=`` of the query), e.g. ``Oslo``."""
    municipality: str | None = None
    """The municipality it stands in."""
    from_time: Timestamp | None = None
    """``fromTime``: the start of the averaging period."""
    latitude: float | None = None
    """WGS 84 latitude of the station."""
    longitude: float | None = None
    """WGS 84 longitude of the station."""
    timestep: int = 3600
    """Length of the averaging period in seconds."""
    index: int | None = None
    """Air quality class 1–4; 0 (and -1) when NILU gives none."""
    is_valid: bool | None = None
    """``isValid``: false when the station itself flags the value as not to be trusted."""


_RECORD: Final = msgspec.json.Decoder(UtdRecord)


def split_records(body: bytes) -> list[bytes]:
    """The records of a ``/aq/utd`` document, each as its own JSON bytes (to decode, or to dead-letter).

    Raises :class:`~adapters.polling.SourceFormatError` ``not-json`` or ``unexpected-shape`` when
    the document is not a JSON array.
    """
    return split_array(body, what="records (as /aq/utd sends)")


def decode_record(data: bytes, index: int) -> UtdRecord:
    """Record number ``index`` (from 0) of a document; raises :class:`RecordError` ``unexpected-shape``."""
    return decode_record_as(_RECORD, data, index)
