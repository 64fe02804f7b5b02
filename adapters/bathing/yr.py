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

import re
from typing import Final

import msgspec

from adapters.polling import SourceFormatError
from contracts.fields import Timestamp

__all__ = ["Place", "Position", "RecordError", "YrRecord", "decode_record", "place_of", "split_records"]

_BOM: Final = b"\xef\xbb\xbf"
_BYTE: Final = re.compile(r" \(byte (\d+)\)$")
_PATH: Final = re.compile(r" - at `\$([^`]*)`$")


class RecordError(SourceFormatError):
    """One record of a good document that makes no observation; it is dead-lettered on its own.

    ``reason`` is the dead-letter reason: ``unexpected-shape``, ``unnamed-site`` or ``out-of-range``.
    """


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


_DOCUMENT: Final = msgspec.json.Decoder(list[msgspec.Raw])
_PLACE: Final = msgspec.json.Decoder(Place)
_RECORD: Final = msgspec.json.Decoder(YrRecord)


def _position(body: bytes, offset: int) -> str:
    line_start = body.rfind(b"\n", 0, offset) + 1
    line = body.count(b"\n", 0, offset) + 1
    column = len(body[line_start:offset].decode("utf-8", "replace")) + 1
    return f"at line {line}, column {column} (byte {offset})"


def _not_json(body: bytes, exc: msgspec.DecodeError) -> SourceFormatError:
    text = str(exc)
    if not body.strip():
        return SourceFormatError("not JSON: the document is empty", reason="not-json")
    if "truncated" in text:
        return SourceFormatError(
            f"not JSON: the document ends in the middle of a value after {len(body)} bytes (cut off?)",
            reason="not-json",
        )
    text = text.removeprefix("JSON is malformed: ")
    match = _BYTE.search(text)
    if match is not None:
        text = text[: match.start()] + " " + _position(body, int(match.group(1)))
    return SourceFormatError(f"not JSON: {text}", reason="not-json")


def split_records(body: bytes) -> list[bytes]:
    """The records of a water-temperature document, each as its own JSON bytes.

    Raises :class:`~adapters.polling.SourceFormatError` ``not-json`` or ``unexpected-shape`` when
    the document is not a JSON array.
    """
    text = body.removeprefix(_BOM)
    try:
        records = _DOCUMENT.decode(text)
    except msgspec.ValidationError as exc:
        raise SourceFormatError(
            f"expected a JSON array of water temperatures, got something else: {exc}",
            reason="unexpected-shape",
        ) from None
    except msgspec.DecodeError as exc:
        raise _not_json(text, exc) from None
    except UnicodeDecodeError as exc:
        raise SourceFormatError(
            f"not JSON: a string is not valid UTF-8 ({exc.reason})", reason="not-json"
        ) from None
    return [bytes(record) for record in records]


def _record_error(exc: msgspec.MsgspecError | UnicodeDecodeError, index: int) -> RecordError:
    if isinstance(exc, UnicodeDecodeError):
        message = f"a string is not valid UTF-8 ({exc.reason})"
    else:  # msgspec says where inside the record ("at `$.value`"); say where in the document
        message = _PATH.sub(lambda m: f" (at `$[{index}]{m.group(1)}`)", str(exc))
    return RecordError(f"record $[{index}]: {message}", reason="unexpected-shape")


def place_of(data: bytes, index: int) -> Place:
    """Where record number ``index`` (from 0) is; raises :class:`RecordError` if it is not an object."""
    try:
        return _PLACE.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        raise _record_error(exc, index) from None


def decode_record(data: bytes, index: int) -> YrRecord:
    """Record number ``index`` (from 0) of a document; raises :class:`RecordError` ``unexpected-shape``."""
    try:
        return _RECORD.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:  # invalid UTF-8 inside a string, too
        raise _record_error(exc, index) from None
