"""Reading publishers' JSON documents: errors that say where, and one bad record never sinks the rest.

Many city data APIs answer with a JSON array of records (NILU's ``/aq/utd``, yr's bathing
temperatures). :func:`split_array` checks the document as a whole — not JSON, or not an array, is
a :class:`~adapters.polling.SourceFormatError` (``not-json`` with line and column, or
``unexpected-shape``), which the poller dead-letters — and hands back every record as its own JSON
bytes; :func:`decode_record` then decodes one, raising :class:`RecordError` ``unexpected-shape``
with the record's index and field, so the adapter dead-letters that record alone.

Every decode goes through :func:`bus.codec.decode_bytes`, so invalid UTF-8 inside a string (msgspec
raises ``UnicodeDecodeError`` for it) and a document nested thousands of levels deep (a
``RecursionError``) are refused like any other bad document, never a crash of the adapter. A UTF-8
byte order mark in front of the document is skipped: some HTTP stacks add one, and it is not an
error in the data.
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

import msgspec

from adapters.polling import SourceFormatError
from bus.codec import decode_bytes
from bus.errors import UndecodableError

__all__ = ["RecordError", "decode_document", "decode_record", "split_array"]

T = TypeVar("T")

_BOM: Final = b"\xef\xbb\xbf"
_BYTE: Final = re.compile(r" \(byte (\d+)\)$")
_PATH: Final = re.compile(r" - at `\$([^`]*)`$")
_ARRAY: Final = msgspec.json.Decoder(list[msgspec.Raw])


class RecordError(SourceFormatError):
    """One record of a good document that makes no message; it is dead-lettered on its own.

    ``reason`` is the dead-letter reason (each adapter lists its own).
    """


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


def _unreadable(body: bytes, exc: UndecodableError) -> SourceFormatError:
    """``not-json`` for a document that did not decode for a reason other than its shape."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return SourceFormatError(f"not JSON: a string is not valid UTF-8 ({cause.reason})", reason="not-json")
    if isinstance(cause, msgspec.DecodeError):
        return _not_json(body, cause)
    return SourceFormatError(f"not JSON citybus can read: the document is {exc}", reason="not-json")


def split_array(body: bytes, *, what: str) -> list[bytes]:
    """The records of a JSON-array document, each as its own JSON bytes (to decode, or to dead-letter).

    ``what`` names the records in the error, e.g. ``"records (as /aq/utd sends)"``. Raises
    :class:`~adapters.polling.SourceFormatError` ``not-json`` or ``unexpected-shape``.
    """
    text = body.removeprefix(_BOM)
    try:
        records = decode_bytes(_ARRAY, text)
    except UndecodableError as exc:
        if exc.kind == "shape":
            raise SourceFormatError(
                f"expected a JSON array of {what}, got something else: {exc}", reason="unexpected-shape"
            ) from None
        raise _unreadable(text, exc) from None
    return [bytes(record) for record in records]


def decode_document(decoder: msgspec.json.Decoder[T], body: bytes, *, what: str, reason: str) -> T:
    """A whole JSON document as ``decoder``'s type; raises :class:`~adapters.polling.SourceFormatError`.

    ``not-json`` (with line and column, or the first byte that is not UTF-8) for a body that is
    not JSON; ``reason`` with "not ``what``: …" for JSON of another shape. The whole body's UTF-8
    is checked first: parts kept as ``msgspec.Raw`` and decoded later would otherwise meet a bad
    byte as their own fault rather than the document's.
    """
    text = body.removeprefix(_BOM)
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"not JSON: byte {exc.start} (0x{text[exc.start]:02x}) is not UTF-8 text"
        raise SourceFormatError(message, reason="not-json") from None
    try:
        return decode_bytes(decoder, text)
    except UndecodableError as exc:
        if exc.kind == "shape":
            raise SourceFormatError(f"not {what}: {exc}", reason=reason) from None
        raise _unreadable(text, exc) from None


def decode_record(decoder: msgspec.json.Decoder[T], data: bytes, index: int) -> T:
    """Record number ``index`` (from 0) of a document; raises :class:`RecordError` ``unexpected-shape``.

    The error says where in the document: ``record $[3]: Expected `str`, got `null` (at `$[3].station`)``.
    """
    try:
        return decode_bytes(decoder, data)
    except UndecodableError as exc:
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):
            message = f"a string is not valid UTF-8 ({cause.reason})"
        elif isinstance(cause, msgspec.MsgspecError):  # where in the record: say where in the document
            message = _PATH.sub(lambda m: f" (at `$[{index}]{m.group(1)}`)", str(cause))
        else:
            message = str(exc)
        raise RecordError(f"record $[{index}]: {message}", reason="unexpected-shape") from None
