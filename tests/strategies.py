"""Hypothesis strategies built from msgspec's type information, constraints included.

``instances(SomeStruct)`` draws valid instances of any msgspec Struct (contracts included): bounds,
lengths, patterns, literals, time zones and nested structs are all taken from
:func:`msgspec.inspect.type_info`, so a new contract is covered without writing a strategy for it.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

__all__ = ["for_type", "instances"]

_INT64 = 2**63 - 1
# Inside the range every codec round-trips, wherever the offset moves the UTC time.
_EARLIEST = datetime(1900, 1, 1)
_LATEST = datetime(2200, 1, 1)

_OFFSETS = st.one_of(
    st.just(UTC),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)


def instances(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Valid instances of a msgspec Struct type."""
    return for_type(mi.type_info(cls))


def for_type(t: mi.Type) -> st.SearchStrategy[Any]:
    """Valid values of one msgspec type description."""
    match t:
        case mi.Metadata():
            return for_type(t.type)
        case mi.StructType():
            return _struct(t)
        case mi.UnionType():
            return st.one_of([for_type(member) for member in t.types])
        case mi.NoneType():
            return st.none()
        case mi.BoolType():
            return st.booleans()
        case mi.IntType():
            return _int(t)
        case mi.FloatType():
            return _float(t)
        case mi.StrType():
            return _str(t)
        case mi.BytesType() | mi.ByteArrayType():
            return st.binary(min_size=t.min_length or 0, max_size=t.max_length)
        case mi.DateTimeType():
            return _datetime(t)
        case mi.DateType():
            return st.dates(min_value=_EARLIEST.date(), max_value=_LATEST.date())
        case mi.LiteralType():
            return st.sampled_from(t.values)
        case mi.EnumType():
            members: list[enum.Enum] = list(t.cls)
            return st.sampled_from(members)
        case mi.ListType() | mi.VarTupleType():
            items = st.lists(for_type(t.item_type), min_size=t.min_length or 0, max_size=t.max_length)
            return items if isinstance(t, mi.ListType) else items.map(tuple)
        case mi.TupleType():
            return st.tuples(*(for_type(item) for item in t.item_types))
        case mi.DictType():
            return st.dictionaries(
                for_type(t.key_type),
                for_type(t.value_type),
                min_size=t.min_length or 0,
                max_size=t.max_length,
            )
        case mi.AnyType():
            return _json_value
        case _:
            raise NotImplementedError(f"no strategy for msgspec type {t!r}: add one to tests/strategies.py")


# ``Any`` in a contract is a JSON value (an exported message's data): what JSON and msgpack both
# carry back unchanged (lists, not tuples; no floats, whose text form is the decoder's choice).
_json_value: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _struct(t: mi.StructType) -> st.SearchStrategy[Any]:
    required = {f.name: for_type(f.type) for f in t.fields if f.required}
    optional = {f.name: for_type(f.type) for f in t.fields if not f.required}
    cls = t.cls
    return st.fixed_dictionaries(required, optional=optional).map(lambda kwargs: cls(**kwargs))


def _int(t: mi.IntType) -> st.SearchStrategy[int]:
    low = -_INT64 - 1
    high = _INT64
    if t.ge is not None:
        low = t.ge
    if t.gt is not None:
        low = t.gt + 1
    if t.le is not None:
        high = t.le
    if t.lt is not None:
        high = t.lt - 1
    values = st.integers(min_value=low, max_value=high)
    if t.multiple_of is not None:
        step = t.multiple_of
        values = values.filter(lambda v: v % step == 0)
    return values


def _float(t: mi.FloatType) -> st.SearchStrategy[float]:
    low = t.ge if t.ge is not None else t.gt
    high = t.le if t.le is not None else t.lt
    values = st.floats(
        min_value=low,
        max_value=high,
        exclude_min=t.gt is not None,
        exclude_max=t.lt is not None,
        allow_nan=False,
        allow_infinity=False,
    )
    if t.multiple_of is not None:
        step = t.multiple_of
        values = values.filter(lambda v: math.isclose(v % step, 0) or math.isclose(v % step, step))
    return values


def _str(t: mi.StrType) -> st.SearchStrategy[str]:
    low, high = t.min_length or 0, t.max_length
    if t.pattern is None:
        return st.text(min_size=low, max_size=high)
    return st.from_regex(t.pattern, fullmatch=True).filter(
        lambda s: len(s) >= low and (high is None or len(s) <= high)
    )


def _datetime(t: mi.DateTimeType) -> st.SearchStrategy[datetime]:
    aware = st.datetimes(min_value=_EARLIEST, max_value=_LATEST, timezones=_OFFSETS)
    naive = st.datetimes(min_value=_EARLIEST, max_value=_LATEST)
    if t.tz is True:
        return aware
    if t.tz is False:
        return naive
    return aware | naive
