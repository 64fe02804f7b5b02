"""What a producer typed, checked strictly: fields its contract does not have.

Contracts decode tolerantly on the wire: a consumer ignores fields it does not know, so a producer
may add an optional field in a later compatible version without breaking anyone (schema evolution
as msgspec documents it). A person typing a message (``citybus publish``) is another matter: an
unknown field there is almost always a typo (``water_temprature``) whose value would be silently
lost. :func:`unknown_fields` finds them, nested ones too, without changing the contracts.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["UnknownField", "unknown_fields"]


class UnknownField(msgspec.Struct, frozen=True):
    """A field of a JSON object that its struct does not declare."""

    path: str
    """Where it is, JSON-path style: ``$.water_temprature``, ``$.steps[0].tempp``."""
    struct: str
    """The name of the struct the object is decoded into."""
    allowed: tuple[str, ...]
    """The fields that object may have, as spelt on the wire."""


def unknown_fields(value: Any, annotation: Any) -> list[UnknownField]:
    """Every object key in ``value`` (decoded JSON) that ``annotation``'s structs do not declare."""
    found: list[UnknownField] = []
    _walk(value, msgspec.inspect.type_info(annotation), "$", found)
    return found


def _walk(value: Any, info: msgspec.inspect.Type, path: str, found: list[UnknownField]) -> None:
    inspect = msgspec.inspect
    if isinstance(info, inspect.Metadata):
        _walk(value, info.type, path, found)
    elif isinstance(info, inspect.StructType):
        if not isinstance(value, dict):
            return  # the typed decode says what is wrong with it
        fields = {f.encode_name: f for f in info.fields}
        allowed = tuple(fields) + ((info.tag_field,) if info.tag_field else ())
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in fields:
                _walk(item, fields[key].type, where, found)
            elif key not in allowed:
                found.append(UnknownField(where, info.cls.__name__, allowed))
    elif isinstance(info, inspect.UnionType):
        structs = [t for t in info.types if isinstance(t, inspect.StructType)]
        if isinstance(value, dict) and structs:
            chosen = structs[0]
            for struct in structs:  # a tagged union: the member whose tag the object carries
                if struct.tag_field and value.get(struct.tag_field) == struct.tag:
                    chosen = struct
            _walk(value, chosen, path, found)
        else:
            for member in info.types:
                if not isinstance(member, inspect.StructType):
                    _walk(value, member, path, found)
    elif isinstance(info, inspect.ListType | inspect.SetType | inspect.FrozenSetType | inspect.VarTupleType):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, info.item_type, f"{path}[{i}]", found)
    elif isinstance(info, inspect.TupleType):
        if isinstance(value, list):
            for i, (item, item_type) in enumerate(zip(value, info.item_types, strict=False)):
                _walk(item, item_type, f"{path}[{i}]", found)
    elif isinstance(info, inspect.DictType) and isinstance(value, dict):
        for key, item in value.items():
            _walk(item, info.value_type, f"{path}.{key}", found)
