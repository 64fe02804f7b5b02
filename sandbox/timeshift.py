"""Moving a recorded message in time: its ``ce-time`` and every timestamp in its body.

A replay makes a recorded day happen *now*: a beach observation recorded as measured at
2018-08-29 10:00 must say it was measured 10:00 today, in its header and in its body
(``observed_at``), or a consumer would see fresh messages about the past. The same shift models a
sensor whose clock is wrong (the ``skew`` fault).

Which fields are timestamps is read from the contract (``msgspec.inspect``), once per contract:
a ``datetime`` field, one inside a nested Struct (a forecast step's ``time``), in a list of them,
or an optional one. A body that is not a known contract, or not JSON, is left as it is: one nested
thousands of levels deep too (a recording may hold any bytes a publisher sent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from bus.codec import decode_bytes
from bus.envelope import H_TIME, format_time
from bus.errors import UndecodableError
from contracts import Registry, default_registry

__all__ = ["Shift", "TimeShifter"]

# A path into a decoded body: field names, with "*" for "every item of this list".
_Path = tuple[str, ...]
_EACH: Final = "*"


def _paths(info: mi.Type, prefix: _Path = (), depth: int = 0) -> list[_Path]:
    if depth > 8:  # contracts are shallow; a self-referencing one stops here
        return []
    if isinstance(info, mi.DateTimeType):
        return [prefix]
    if isinstance(info, mi.UnionType):
        return [p for t in info.types for p in _paths(t, prefix, depth + 1)]
    if isinstance(info, mi.Metadata):
        return _paths(info.type, prefix, depth + 1)
    if isinstance(info, mi.ListType | mi.TupleType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        item = getattr(info, "item_type", None)
        return _paths(item, (*prefix, _EACH), depth + 1) if item is not None else []
    if isinstance(info, mi.StructType):
        return [p for f in info.fields for p in _paths(f.type, (*prefix, f.encode_name), depth + 1)]
    return []


def _shift(value: Any, path: _Path, delta: timedelta) -> Any:
    if not path:
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return value
            return (moment + delta).isoformat()
        return value
    head, rest = path[0], path[1:]
    if head == _EACH and isinstance(value, list):
        return [_shift(item, rest, delta) for item in value]
    if isinstance(value, dict) and head in value and value[head] is not None:
        value[head] = _shift(value[head], rest, delta)
    return value


_FIELDS: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_MOMENT: Final = msgspec.json.Decoder(datetime)
_ANY: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()

Shift = Callable[[bytes, timedelta], bytes]
"""Moves every timestamp of one contract's body by a delta."""


def _shift_top_level(data: bytes, names: list[str], delta: timedelta) -> bytes:
    """Shift top-level timestamp fields, re-encoding the body around them (keys, values and their
    order as they were; whitespace and repeated keys are not kept)."""
    try:
        fields = decode_bytes(_FIELDS, data)
    except UndecodableError:
        return data  # not a JSON object: nothing to shift (a corrupted body stays corrupted)
    for name in names:
        raw = fields.get(name)
        if raw is None:
            continue
        try:
            moment = decode_bytes(_MOMENT, raw)
        except UndecodableError:
            continue  # null, or not a time: left as it is
        if moment.tzinfo is not None:
            fields[name] = msgspec.Raw(_ENCODER.encode(moment + delta))
    return _ENCODER.encode(fields)


class _TopLevel:
    """Shifts a contract's top-level timestamps by replacing their text in the body, leaving every
    other byte as it was: the replay's hot path, a few times faster than re-encoding the body.

    The body is decoded only as far as the timestamp fields (a Struct of ``Raw`` values: the other
    fields are skipped, not built). A timestamp's text (``"2018-08-28T10:00:00+02:00"``, quotes
    included) is replaced where it stands only when it occurs in the body exactly as often as the
    timestamp fields hold it: then every occurrence is one of those fields, never the same text
    in a key or inside another string. Otherwise the body is re-encoded (:func:`_shift_top_level`).
    What a text becomes is remembered for the delta in use: city messages repeat their times (the
    sensors of one poll, a train's aimed and expected departure), and ``null`` is the most common.
    """

    def __init__(self, names: list[str]) -> None:
        self._names = names
        fields = [(f"f{i}", msgspec.Raw, msgspec.Raw()) for i in range(len(names))]
        rename = {f"f{i}": name for i, name in enumerate(names)}
        self._decoder = msgspec.json.Decoder(msgspec.defstruct("Timestamps", fields, rename=rename))
        self._delta = timedelta(0)
        self._moved: dict[bytes, bytes | None] = {}  # a field's text: its text moved by _delta, or None

    def _move(self, old: bytes, delta: timedelta) -> bytes | None:
        try:
            moment = decode_bytes(_MOMENT, old)
        except UndecodableError:
            return None  # null, or not a time: left as it is
        if moment.tzinfo is None:
            return None
        return _ENCODER.encode(moment + delta)

    def shift(self, data: bytes, delta: timedelta) -> bytes:
        """``data`` with its timestamps moved by ``delta``."""
        try:
            found = msgspec.structs.astuple(decode_bytes(self._decoder, data))
        except UndecodableError:
            return data  # not a JSON object: nothing to shift (a corrupted body stays corrupted)
        known = self._moved
        if delta != self._delta or len(known) > _REMEMBERED:
            self._delta = delta
            known.clear()
        moved: dict[bytes, bytes] = {}  # old text: new text
        fields = 0  # how many fields hold a text that moves
        for raw in found:
            if not raw or raw == _NULL:
                continue  # absent, or null
            old = bytes(raw)
            new = known.get(old, _UNKNOWN)
            if new is _UNKNOWN:
                new = known[old] = self._move(old, delta)
            if new is not None:
                moved[old] = new
                fields += 1
        if not moved:
            return data
        if len(moved) == 1:  # the common case: one timestamp, or several at the same time
            ((old, new),) = moved.items()
            if data.count(old) == fields:
                return data.replace(old, new)
            return _shift_top_level(data, self._names, delta)
        # Each text must occur as often as fields hold it; and replacing one must not make another
        # (a new text that is also an old one): then the replacements can go one after the other.
        if sum(map(data.count, moved)) != fields or not moved.keys().isdisjoint(moved.values()):
            return _shift_top_level(data, self._names, delta)
        for old, new in moved.items():
            data = data.replace(old, new)
        return data


_NULL: Final = msgspec.Raw(b"null")
_UNKNOWN: Final = b""
_REMEMBERED: Final = 4096
"""Timestamp texts a shift remembers (then it forgets them all and starts again)."""


def _shift_nested(paths: list[_Path]) -> Shift:
    def shift(data: bytes, delta: timedelta) -> bytes:
        try:
            decoded = decode_bytes(_ANY, data)
        except UndecodableError:
            return data  # not JSON: nothing to shift (a corrupted body stays corrupted)
        for path in paths:
            decoded = _shift(decoded, path, delta)
        return msgspec.json.encode(decoded)

    return shift


class TimeShifter:
    """Shifts messages of the registry's contracts by a time delta."""

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry or default_registry()
        self._plans: dict[str, list[_Path]] = {}
        self._shifts: dict[str, Shift | None] = {}

    def paths(self, ce_type: str) -> list[_Path]:
        """The timestamp fields of a contract type (empty for an unknown type)."""
        plan = self._plans.get(ce_type)
        if plan is None:
            contract = self._registry.by_type(ce_type)
            plan = self._plans[ce_type] = [] if contract is None else _paths(mi.type_info(contract))
        return plan

    def shift(self, ce_type: str) -> Shift | None:
        """How to move the timestamps of a ``ce_type`` body, planned once per type; ``None`` when it
        has none (an unknown type, a raw message)."""
        try:
            return self._shifts[ce_type]
        except KeyError:
            pass
        paths = self.paths(ce_type)
        found: Shift | None = None
        if paths and all(len(path) == 1 for path in paths):  # the common case: top-level timestamps
            found = _TopLevel([name for (name,) in paths]).shift
        elif paths:
            found = _shift_nested(paths)
        self._shifts[ce_type] = found
        return found

    def body(self, data: bytes, ce_type: str, delta: timedelta) -> bytes:
        """``data`` (a JSON body of ``ce_type``) with every timestamp moved by ``delta``."""
        shift = self.shift(ce_type)
        if shift is None or not delta:
            return data
        return shift(data, delta)

    def headers(self, headers: Mapping[str, str], delta: timedelta) -> dict[str, str]:
        """``headers`` with ``ce-time`` moved by ``delta``."""
        shifted = dict(headers)
        raw = shifted.get(H_TIME)
        if raw and delta:
            try:
                shifted[H_TIME] = format_time(datetime.fromisoformat(raw) + delta)
            except ValueError:
                pass
        return shifted
