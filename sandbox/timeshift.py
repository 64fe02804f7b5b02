"""Moving a recorded message in time: its ``ce-time`` and every timestamp in its body.

A replay makes a recorded day happen *now*: a beach observation recorded as measured at
2018-08-29 10:00 must say it was measured 10:00 today, in its header and in its body
(``observed_at``), or a consumer would see fresh messages about the past. The same shift models a
sensor whose clock is wrong (the ``skew`` fault).

Which fields are timestamps is read from the contract (``msgspec.inspect``), once per contract:
a ``datetime`` field, one inside a nested Struct (a forecast step's ``time``), in a list of them,
or an optional one. A body that is not a known contract, or not JSON, is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from bus.envelope import H_TIME, format_time
from contracts import Registry, default_registry

__all__ = ["TimeShifter"]

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
_ENCODER: Final = msgspec.json.Encoder()


def _shift_top_level(data: bytes, paths: list[_Path], delta: timedelta) -> bytes:
    """Shift top-level timestamp fields and leave every other byte of the body as it was."""
    try:
        fields = _FIELDS.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return data  # not a JSON object: nothing to shift (a corrupted body stays corrupted)
    for (name,) in paths:
        raw = fields.get(name)
        if raw is None:
            continue
        try:
            moment = _MOMENT.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            continue  # null, or not a time: left as it is
        if moment.tzinfo is not None:
            fields[name] = msgspec.Raw(_ENCODER.encode(moment + delta))
    return _ENCODER.encode(fields)


class TimeShifter:
    """Shifts messages of the registry's contracts by a time delta."""

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry or default_registry()
        self._plans: dict[str, list[_Path]] = {}

    def paths(self, ce_type: str) -> list[_Path]:
        """The timestamp fields of a contract type (empty for an unknown type)."""
        plan = self._plans.get(ce_type)
        if plan is None:
            contract = self._registry.by_type(ce_type)
            plan = self._plans[ce_type] = [] if contract is None else _paths(mi.type_info(contract))
        return plan

    def body(self, data: bytes, ce_type: str, delta: timedelta) -> bytes:
        """``data`` (a JSON body of ``ce_type``) with every timestamp moved by ``delta``."""
        paths = self.paths(ce_type)
        if not paths or not delta:
            return data
        if all(len(path) == 1 for path in paths):  # the common case: only top-level timestamps
            return _shift_top_level(data, paths, delta)
        try:
            decoded = msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return data  # not JSON: nothing to shift (a corrupted body stays corrupted)
        for path in paths:
            decoded = _shift(decoded, path, delta)
        return msgspec.json.encode(decoded)

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
