"""yr.no's bathing-water temperatures (``GET badetemperaturer.yr.no/api/watertemperatures``): reading them.

The API (header ``apikey: <key>``) answers with a JSON array, one object per bathing place and its
latest reading; ``/api/locations/{locationId}/watertemperatures`` answers the same shape for one
place. Two records as the API sends them::

    {"locationName": "Storøyodden", "locationId": "0-10014",
     "position": {"lat": 59.88819, "lon": 10.59302}, "elevation": 1, "county": "Akershus",
     "municipality": "Bærum kommune", "temperature": 13.6, "time": "2025-05-30T04:00:46+02:00",
     "sourceDisplayName": "Badevann.no"}
    {"locationName": "Årvolldammen", "locationId": "0-10027", ..., "municipality": "Oslo kommune",
     "temperature": 10, "time": "2025-05-26T08:40:00+02:00"}

``sourceDisplayName`` names the platform a sensor reading came through; a record without it is a
reading someone made by hand and reported to yr.

This module only reads (no I/O, no mapping to the contract). Decisions, and why:

* **Two levels of error.** A body that is not JSON, or JSON that is not an array, is malformed as a
  whole: :class:`~adapters.polling.SourceFormatError` ``not-json`` (with line and column) or
  ``unexpected-shape``, and the poller dead-letters the document. Inside a good array every record
  is decoded on its own, so one odd record is dead-lettered alone as ``unexpected-shape``
  (:class:`RecordError`) and the others still reach the bus.
* **Where before what.** :func:`place_of` reads only a record's ``locationId`` and
  ``municipality``, so a record the adapter is not configured for is skipped without being
  judged: a broken record in another municipality is that municipality's business.
* **Only the fields citybus uses are declared**; one yr adds breaks nothing.
* **Times must carry their UTC offset**; a naive time would be an hour off half the year.
* **A UTF-8 byte order mark is skipped** (the API is served by a stack that may send one).
"""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.jsondocs import RecordError, split_array
from adapters.jsondocs import decode_record as decode_record_as
from contracts.fields import Timestamp

__all__ = ["Place", "Position", "RecordError", "YrRecord", "decode_record", "place_of", "split_records"]


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """Where the bathing place is (WGS 84)."""

    lat: float
    lon: float


class Place(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Only where a record is: enough to decide whether the adapter wants it."""

    location_id: str | None = None
    municipality: str | None = None


class YrRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One bathing place's latest water temperature, as yr sends it (the fields citybus uses)."""

    location_name: str
    """The place's name, e.g. ``Storøyodden``."""
    location_id: str
    """yr's location id, e.g. ``0-10014``."""
    temperature: float
    """Water temperature in °C."""
    time: Timestamp
    """When the water was measured."""
    position: Position | None = None
    """Where the place is."""
    elevation: float | None = None
    """Metres above sea level."""
    county: str | None = None
    """The county, e.g. ``Akershus``."""
    municipality: str | None = None
    """The municipality, e.g. ``Bærum kommune``."""
    source_display_name: str | None = None
    """``sourceDisplayName``: the platform a sensor reading came through; absent for a manual reading."""


_PLACE: Final = msgspec.json.Decoder(Place)
_RECORD: Final = msgspec.json.Decoder(YrRecord)


def split_records(body: bytes) -> list[bytes]:
    """The records of a water-temperature document, each as its own JSON bytes.

    Raises :class:`~adapters.polling.SourceFormatError` ``not-json`` or ``unexpected-shape`` when
    the document is not a JSON array.
    """
    return split_array(body, what="water temperatures")


def place_of(data: bytes, index: int) -> Place:
    """Where record number ``index`` (from 0) is; raises :class:`RecordError` if it is not an object."""
    return decode_record_as(_PLACE, data, index)


def decode_record(data: bytes, index: int) -> YrRecord:
    """Record number ``index`` (from 0) of a document; raises :class:`RecordError` ``unexpected-shape``."""
    return decode_record_as(_RECORD, data, index)
