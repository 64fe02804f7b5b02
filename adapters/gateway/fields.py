"""A contract's fields as people read them: name, type, unit and description, nested ones too.

The catalogue's field tables come from the contract classes themselves (:func:`msgspec.inspect.type_info`),
so a unit is the one the contract declares (``measure(…, unit="CEL")`` keeps it in the field's
``Meta.extra``) and never a copy that could drift. Nested structs are flattened with dotted names
(``location.coordinates``, ``steps[].temperature``): a unit is most often on a nested field.

Decisions, and why:

* **Units are UCUM codes as declared**, shown next to a name people know where there is one
  (``CEL`` is °C): the code is what a program compares, the name what a reader needs.
* **Recursion stops at a struct already being described** (a contract that contains itself) and
  at a depth of four, so a hostile package's contract cannot make a table without end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec
from msgspec import inspect as mi

from contracts import Contract

__all__ = [
    "FieldRow",
    "UNIT_NAMES",
    "fields_of",
    "unit_label",
]

_MAX_DEPTH: Final = 4

UNIT_NAMES: Final = {
    "CEL": "°C",
    "%": "percent",
    "1": "dimensionless",
    "m": "metres",
    "mm": "millimetres",
    "m/s": "metres per second",
    "deg": "degrees",
    "hPa": "hectopascals",
    "s": "seconds",
    "h": "hours",
    "ug/m3": "µg/m³",
    "dB": "decibels",
    "dB[mW]": "dBm",
}
"""What a UCUM code means for people, for the codes the city's contracts use."""


@dataclass(frozen=True, slots=True)
class FieldRow:
    """One field of a contract, nested fields named by their path."""

    name: str
    """``water_temperature``; nested: ``location.coordinates``, ``steps[].temperature``."""
    type: str
    """For people: ``number``, ``string``, ``date-time``, ``list of object``, ``one of "a", "b"``…"""
    unit: str | None
    """The UCUM code the contract declares (``CEL``), or ``None``."""
    description: str
    required: bool


def unit_label(unit: str) -> str:
    """``CEL (°C)``: a UCUM code with its name for people, where one is known."""
    name = UNIT_NAMES.get(unit)
    return f"{unit} ({name})" if name else unit


def fields_of(cls: type[Contract]) -> list[FieldRow]:
    """Every field of ``cls``, in declaration order, each followed by its nested fields."""
    info = mi.type_info(cls)
    rows: list[FieldRow] = []
    if isinstance(info, mi.StructType):
        _walk(info, "", rows, (cls,))
    return rows


@dataclass(frozen=True, slots=True)
class _Unwrapped:
    core: mi.Type
    description: str
    unit: str | None
    optional: bool


def _unwrap(t: mi.Type) -> _Unwrapped:
    """Strip metadata and ``| None`` off a type, keeping the description and unit found on the way."""
    description = ""
    unit: str | None = None
    optional = False
    while True:
        if isinstance(t, mi.Metadata):
            schema = t.extra_json_schema or {}
            description = description or str(schema.get("description") or "")
            extra = t.extra or {}
            unit = unit or (str(extra["unit"]) if "unit" in extra else None)
            t = t.type
        elif isinstance(t, mi.UnionType) and any(isinstance(x, mi.NoneType) for x in t.types):
            optional = True
            rest = [x for x in t.types if not isinstance(x, mi.NoneType)]
            if len(rest) != 1:
                t = mi.UnionType(types=tuple(rest))
                break
            t = rest[0]
        else:
            break
    return _Unwrapped(core=t, description=description, unit=unit, optional=optional)


def _walk(struct: mi.StructType, prefix: str, rows: list[FieldRow], seen: tuple[type[Any], ...]) -> None:
    for field in struct.fields:
        name = prefix + field.encode_name
        found = _unwrap(field.type)
        unit = found.unit or _item_unit(found.core)
        rows.append(
            FieldRow(
                name=name,
                type=_type_name(found.core),
                unit=unit,
                description=found.description or _struct_doc(found.core),
                required=field.required and not found.optional,
            )
        )
        inner, suffix = _nested(found.core)
        if inner is not None and inner.cls not in seen and len(seen) < _MAX_DEPTH:
            _walk(inner, f"{name}{suffix}.", rows, (*seen, inner.cls))


def _nested(t: mi.Type) -> tuple[mi.StructType | None, str]:
    """The struct whose fields are listed under this one (``""``), or under its items (``"[]"``)."""
    if isinstance(t, mi.StructType):
        return t, ""
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        item = _unwrap(t.item_type).core
        if isinstance(item, mi.StructType):
            return item, "[]"
    return None, ""


def _item_unit(t: mi.Type) -> str | None:
    """The unit shared by every item of a fixed tuple (coordinates in degrees), if they share one."""
    if isinstance(t, mi.TupleType) and t.item_types:
        units = {_unwrap(item).unit for item in t.item_types}
        if len(units) == 1:
            return units.pop()
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return _unwrap(t.item_type).unit
    return None


def _struct_doc(t: mi.Type) -> str:
    if isinstance(t, mi.StructType):
        lines = (t.cls.__doc__ or "").strip().splitlines()
        return lines[0] if lines else ""
    return ""


_SIMPLE: Final[dict[type[mi.Type], str]] = {
    mi.StrType: "string",
    mi.IntType: "integer",
    mi.FloatType: "number",
    mi.BoolType: "boolean",
    mi.DateTimeType: "date-time",
    mi.DateType: "date",
    mi.TimeType: "time",
    mi.TimeDeltaType: "duration",
    mi.BytesType: "bytes (base64)",
    mi.UUIDType: "UUID",
    mi.DecimalType: "decimal",
    mi.AnyType: "any",
}


def _type_name(t: mi.Type) -> str:
    t = _unwrap(t).core
    simple = _SIMPLE.get(type(t))
    if simple is not None:
        return simple
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(_literal(v) for v in t.values)
    if isinstance(t, mi.EnumType):
        return "one of " + ", ".join(_literal(m.value) for m in t.cls)
    if isinstance(t, mi.StructType):
        if t.tag is not None and t.tag_field == "type":
            return f"GeoJSON {t.tag}" if t.tag in ("Point", "LineString", "Polygon") else f"object ({t.tag})"
        return "object"
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return f"list of {_type_name(t.item_type)}"
    if isinstance(t, mi.TupleType):
        return "[" + ", ".join(_type_name(item) for item in t.item_types) + "]"
    if isinstance(t, mi.DictType):
        return f"map of {_type_name(t.key_type)} to {_type_name(t.value_type)}"
    if isinstance(t, mi.UnionType):
        return " or ".join(_type_name(x) for x in t.types)
    if isinstance(t, mi.NoneType):
        return "null"
    return type(t).__name__.removesuffix("Type").lower()


def _literal(value: object) -> str:
    return msgspec.json.encode(value).decode()
