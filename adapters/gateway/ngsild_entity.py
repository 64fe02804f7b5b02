"""A contract message as an NGSI-LD entity (ETSI GS CIM 009), in the three shapes clients ask for.

``normalized`` (the default) gives every attribute as a ``Property`` with its ``value``, its
``unitCode`` (the field's unit as a UN/CEFACT code) and ``observedAt`` (when it was observed:
the model's time field, ``dateObserved``, or else the message's CloudEvents ``time``), and
``location`` as a ``GeoProperty``; ``concise`` drops what the type can be told from; ``keyValues``
(*simplified*) gives attribute → value only. The entity's ``id`` is
``urn:ngsi-ld:<Type>:<entity>``, its ``type`` the Smart Data Models type (:mod:`.sdm`).

Decisions, and why:

* **Pure functions of decoded messages.** The routes (:mod:`.ngsild`) hand in the feed's items;
  nothing here reads the bus, so every shape is tested without a server.
* **Absent is absent.** An optional field a message leaves out (``None``) is no attribute at all,
  never ``null``: NGSI-LD has no null value, and "not measured" must not read as a reading.
* **The key is the id.** The contract's key field (``site``, ``station``) is the entity id's last
  part, not repeated as an attribute, as in the models' own examples.
* **Date-times are typed** (``{"@type": "DateTime", "@value": …}``) in the normalized and concise
  shapes, as the specification asks, so a JSON-LD processor sees a date and not a string.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints

import msgspec

from adapters.gateway.sdm import SDM_TYPES, UNIT_CODES, Vocabulary
from contracts import Contract, GeoPoint

__all__ = ["FORMATS", "Format", "Reading", "entity_id", "split_entity_id", "to_entity", "utc"]

Format = Literal["normalized", "concise", "keyValues"]
FORMATS: Final[tuple[Format, ...]] = ("normalized", "concise", "keyValues")

_URN: Final = "urn:ngsi-ld:"


class Reading(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded message of an entity: what :func:`to_entity` is made from."""

    data: Contract
    """The message's contract instance."""
    time: str
    """When it was observed (the CloudEvents ``time``), ISO 8601 with an offset."""


def entity_id(type_: str, entity: str) -> str:
    """The NGSI-LD id of a contract entity: ``urn:ngsi-ld:WaterQualityObserved:bragernes-strand``."""
    return f"{_URN}{type_}:{entity}"


def split_entity_id(identifier: str) -> tuple[str, str] | None:
    """``(type, entity)`` of an id made by :func:`entity_id`, or ``None`` for any other id."""
    if not identifier.startswith(_URN):
        return None
    type_, sep, entity = identifier[len(_URN) :].partition(":")
    if not sep or not type_ or not entity:
        return None
    return type_, entity


def utc(time: str) -> str:
    """An ISO 8601 time with an offset as UTC with ``Z`` (NGSI-LD's ``observedAt`` form)."""
    moment = dt.datetime.fromisoformat(time)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _units(cls: type[Contract]) -> dict[str, str]:
    """Field → UN/CEFACT code, for the fields whose annotation carries a UCUM unit we can translate."""
    cached: dict[str, str] | None = _UNITS.get(cls)
    if cached is not None:
        return cached
    found: dict[str, str] = {}
    hints = get_type_hints(cls, include_extras=True)
    for field in cls.__struct_fields__:
        unit = _unit_in(hints.get(field))
        if unit is not None and unit in UNIT_CODES:
            found[field] = UNIT_CODES[unit]
    _UNITS[cls] = found
    return found


_UNITS: dict[type[Contract], dict[str, str]] = {}


def _unit_in(hint: Any) -> str | None:
    for meta in getattr(hint, "__metadata__", ()):
        extra = getattr(meta, "extra", None)
        if isinstance(extra, Mapping) and isinstance(extra.get("unit"), str):
            return str(extra["unit"])
    if get_origin(hint) is not None:
        for arg in get_args(hint):
            unit = _unit_in(arg)
            if unit is not None:
                return unit
    return None


def _attribute(value: Any, *, unit: str | None, observed: str, fmt: Format) -> Any:
    if isinstance(value, GeoPoint):
        geo = msgspec.to_builtins(value)
        if fmt == "keyValues":
            return geo
        return {"type": "GeoProperty", "value": geo} if fmt == "normalized" else {"value": geo}
    if isinstance(value, dt.datetime):
        text = value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        if fmt == "keyValues":
            return text
        plain: Any = {"@type": "DateTime", "@value": text}
    else:
        plain = msgspec.to_builtins(value)
        if fmt == "keyValues":
            return plain
    attr: dict[str, Any] = {"type": "Property", "value": plain} if fmt == "normalized" else {"value": plain}
    if unit is not None:
        attr["unitCode"] = unit
    attr["observedAt"] = observed
    return attr


def _observed(reading: Reading) -> str:
    """When a reading's values were observed: its model's time field, else the CloudEvents time."""
    model = SDM_TYPES.get(reading.data.__contract__.name)
    value = getattr(reading.data, model.observed) if model is not None and model.observed else None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return utc(reading.time)


def to_entity(
    vocabulary: Vocabulary,
    readings: Sequence[Reading],
    *,
    fmt: Format = "normalized",
    attrs: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The NGSI-LD entity of one contract entity, from its readings (oldest first, at least one).

    The newest reading gives every attribute; older ones add only what a model spreads over
    several messages (air quality: the latest value of each pollutant). ``attrs`` keeps only those
    attributes (NGSI-LD's projection); ``location`` is kept whenever it is asked for.
    """
    last = readings[-1].data
    info = last.__contract__
    type_ = vocabulary.type_of(info.name)
    if type_ is None:
        raise LookupError(f"contract {info.name} has no NGSI-LD type")
    entity: dict[str, Any] = {"id": entity_id(type_, last.entity()), "type": type_}
    model = SDM_TYPES.get(info.name)
    spread = model.spread if model is not None else None
    observed = _observed(readings[-1])
    units = _units(type(last))
    if spread is not None and model is not None:
        name_field, value_field = spread
        for reading in readings:
            if reading.data.__contract__.name != info.name:
                continue
            name = model.spread_names.get(str(getattr(reading.data, name_field)))
            if name is not None and (attrs is None or name in attrs):
                entity[name] = _attribute(
                    getattr(reading.data, value_field),
                    unit=_units(type(reading.data)).get(value_field),
                    observed=_observed(reading),
                    fmt=fmt,
                )
    for field in type(last).__struct_fields__:
        if field == info.key or (spread is not None and field in spread):
            continue
        value = getattr(last, field)
        if value is None:
            continue
        term = "location" if field == "location" else vocabulary.attribute(info.name, field)[0]
        if attrs is not None and term not in attrs:
            continue
        entity[term] = _attribute(value, unit=units.get(field), observed=observed, fmt=fmt)
    return entity
