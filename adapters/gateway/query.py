"""The query parameters of the entity API and of the NGSI-LD view, read strictly.

Every parser here takes the raw text of a query parameter and returns a value or raises
:class:`BadQuery` with a one-line message that says what to send instead; the routes turn it into
an HTTP 400 (a problem document, or an NGSI-LD ``BadRequestData``).

Decisions, and why:

* **Bounded before parsed.** A query string comes from anyone on the network: every parameter
  has a length limit checked first, a list has a count limit, and JSON (NGSI-LD ``coordinates``)
  is decoded by msgspec into a fixed shape (``tuple[float, float]``), so a deeply nested or huge
  value is refused in constant work instead of being walked.
* **``since`` is a moment or a window.** ``since=2026-12-07T06:00:00Z`` (ISO 8601 with an offset)
  or ``since=600`` (seconds before now): a history is at most an hour long (``history`` in the
  gateway's config), so a number is read as a window, never as an epoch.
* **``idPattern`` without nested quantifiers.** Python's ``re`` has no time limit; a pattern such
  as ``(a+)+`` or ``(a|a)*`` can take exponential time, so a repeated group that holds a
  quantifier, an alternation or another group is refused: NGSI-LD's id patterns
  (``urn:ngsi-ld:TrainCall:.*``, ``urn:ngsi-ld:(TrainCall|StopPlace):.*``) never need one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import msgspec

from adapters.geo import distance
from bus.errors import CityBusError
from contracts import GeoPoint

__all__ = [
    "MAX_LIST",
    "MAX_VALUE",
    "BadQuery",
    "GeoQuery",
    "Near",
    "parse_coordinates",
    "parse_georel",
    "parse_id_pattern",
    "parse_list",
    "parse_near",
    "parse_page",
    "parse_since",
    "sort_by_distance",
]

MAX_VALUE: Final = 2048
"""The longest query-parameter value read (characters)."""
MAX_LIST: Final = 500
"""The most items a comma-separated list (``entity=a,b``, ``id=…``) may have."""
_MAX_DISTANCE: Final = 20_037_600.0  # half the Earth's circumference: no two points are farther apart


class BadQuery(CityBusError, ValueError):
    """A query parameter is malformed; the message names it and says what is expected."""


class Near(msgspec.Struct, frozen=True, kw_only=True):
    """A point to sort and filter entities by distance from, with an optional radius in metres."""

    lat: float
    lon: float
    radius: float | None = None
    min_distance: float | None = None

    @property
    def point(self) -> GeoPoint:
        """The point as the contracts' type."""
        return GeoPoint.at(self.lat, self.lon)

    def distance_to(self, lat: float, lon: float) -> float:
        """The haversine distance in metres from this point to ``(lat, lon)``."""
        return distance(self.point, GeoPoint.at(lat, lon))

    def admits(self, metres: float) -> bool:
        """Whether a place ``metres`` away passes the radius (and NGSI-LD's minimum distance)."""
        if self.radius is not None and metres > self.radius:
            return False
        return self.min_distance is None or metres >= self.min_distance


class GeoQuery(msgspec.Struct, frozen=True, kw_only=True):
    """An NGSI-LD geo-query this view answers: ``near`` a Point on the ``location`` property."""

    near: Near


def _bounded(name: str, value: str) -> str:
    if len(value) > MAX_VALUE:
        raise BadQuery(f"{name} is {len(value)} characters long; at most {MAX_VALUE} are read")
    return value


def parse_list(name: str, value: str) -> list[str]:
    """A comma-separated list of non-empty items (``entity=a,b``), at most :data:`MAX_LIST`."""
    items = [item.strip() for item in _bounded(name, value).split(",")]
    if any(not item for item in items):
        raise BadQuery(f"{name}={value!r} has an empty item: give names separated by commas, e.g. {name}=a,b")
    if len(items) > MAX_LIST:
        raise BadQuery(f"{name} lists {len(items)} items; at most {MAX_LIST} are allowed")
    return items


def _number(name: str, text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise BadQuery(f"{name}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise BadQuery(f"{name}: {text!r} is not a finite number")
    return number


def _check_point(name: str, lat: float, lon: float) -> None:
    if not -90 <= lat <= 90:
        raise BadQuery(f"{name}: latitude {lat} is out of range (-90 to 90); the order is LAT,LON")
    if not -180 <= lon <= 180:
        raise BadQuery(f"{name}: longitude {lon} is out of range (-180 to 180)")


def _metres(name: str, text: str) -> float:
    metres = _number(name, _bounded(name, text))
    if not 0 <= metres <= _MAX_DISTANCE:
        raise BadQuery(f"{name}={text} must be a distance in metres from 0 to {_MAX_DISTANCE:.0f}")
    return metres


def parse_near(near: str | None, radius: str | None) -> Near | None:
    """``near=LAT,LON`` (degrees, WGS 84) and ``radius=M`` (metres, optional) of the entity API."""
    if near is None:
        if radius is not None:
            raise BadQuery("radius needs a point to measure from: add near=LAT,LON (e.g. near=59.74,10.20)")
        return None
    parts = _bounded("near", near).split(",")
    if len(parts) != 2:
        raise BadQuery(f"near={near!r} must be LAT,LON in degrees, e.g. near=59.7439,10.2045")
    lat, lon = _number("near", parts[0].strip()), _number("near", parts[1].strip())
    _check_point("near", lat, lon)
    return Near(lat=lat, lon=lon, radius=None if radius is None else _metres("radius", radius))


def parse_since(value: str | None, now: float) -> float | None:
    """``since``: an ISO 8601 moment with an offset, or seconds before ``now``; as epoch seconds."""
    if value is None:
        return None
    text = _bounded("since", value).strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise BadQuery(f"since={value!r}: a number of seconds must be 0 or more")
        return now - seconds
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(
            f"since={value!r} is neither seconds (since=600) nor an ISO 8601 time "
            "(since=2026-12-07T06:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise BadQuery(f"since={value!r} has no UTC offset: add Z or +01:00")
    return moment.timestamp()


def parse_page(limit: str | None, offset: str | None, *, default: int, most: int) -> tuple[int, int]:
    """NGSI-LD's ``limit`` (0 to ``most``) and ``offset`` (0 or more)."""

    def whole(name: str, text: str, top: int) -> int:
        if not text.isdigit() or len(text) > 9:
            raise BadQuery(f"{name}={text!r} must be a whole number from 0 to {top}")
        number = int(text)
        if number > top:
            raise BadQuery(f"{name}={number} is too large: at most {top}")
        return number

    return (
        default if limit is None else whole("limit", limit, most),
        0 if offset is None else whole("offset", offset, 10**9),
    )


def parse_coordinates(value: str) -> tuple[float, float]:
    """NGSI-LD ``coordinates`` of a Point: ``[lon,lat]`` as JSON (GeoJSON order)."""
    if len(value) > 128:
        raise BadQuery("coordinates of a Point are two numbers, [lon,lat]: the value given is far too long")
    try:
        lon, lat = msgspec.json.decode(value, type=tuple[float, float])
    except msgspec.DecodeError:
        raise BadQuery(f"coordinates={value!r} must be a Point's [lon,lat], e.g. [10.2045,59.7439]") from None
    _check_point("coordinates", lat, lon)
    return lon, lat


_GEOREL = re.compile(r"^near(?:;(maxDistance|minDistance)==([0-9.eE+-]+))+$")


def parse_georel(georel: str | None, geometry: str | None, coordinates: str | None) -> GeoQuery | None:
    """An NGSI-LD geo-query: ``georel=near;maxDistance==M`` (and/or ``minDistance``),
    ``geometry=Point``, ``coordinates=[lon,lat]``; the only one a view of points needs."""
    if georel is None and geometry is None and coordinates is None:
        return None
    if georel is None or geometry is None or coordinates is None:
        raise BadQuery("a geo-query needs georel, geometry and coordinates together")
    georel = _bounded("georel", georel)
    if geometry != "Point":
        raise BadQuery(f"geometry={geometry!r} is not supported: use geometry=Point with georel=near")
    if not _GEOREL.match(georel):
        raise BadQuery(
            f"georel={georel!r} is not supported: use near;maxDistance==M (metres), "
            "optionally with ;minDistance==M"
        )
    limits: dict[str, float] = {}
    for part in georel.split(";")[1:]:
        key, _, text = part.partition("==")
        limits[key] = _metres(key, text)
    lon, lat = parse_coordinates(coordinates)
    return GeoQuery(
        near=Near(lat=lat, lon=lon, radius=limits.get("maxDistance"), min_distance=limits.get("minDistance"))
    )


def _repeats_a_choice_or_repetition(pattern: str) -> bool:
    """Whether a repeated group (``(…)*``, ``(…)+``, ``(…){n,}``) holds a quantifier, an
    alternation or another group: the shapes (``(a+)+``, ``(a|a)*``) that backtrack exponentially."""
    opened: list[tuple[int, bool]] = []  # (index of "(", whether its content is risky so far)
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            if opened:
                opened[-1] = (opened[-1][0], True)
            opened.append((index, False))
            if pattern[index + 1 : index + 2] == "?":  # (?:…), (?P<name>…): no quantifier
                index += 1
        elif char == ")" and opened:
            _, risky = opened.pop()
            repeated = pattern[index + 1 : index + 2] in ("*", "+", "{")
            if risky and repeated:
                return True
            if opened and (risky or repeated):
                opened[-1] = (opened[-1][0], True)
        elif char in "*+?{|" and opened:
            opened[-1] = (opened[-1][0], True)
        index += 1
    return False


def parse_id_pattern(value: str) -> re.Pattern[str]:
    """NGSI-LD ``idPattern``: a regular expression matched against whole entity ids."""
    if len(value) > 256:
        raise BadQuery("idPattern is too long: at most 256 characters")
    if _repeats_a_choice_or_repetition(value):
        raise BadQuery(
            f"idPattern={value!r} repeats a group that holds a repetition or a choice, which can take "
            "exponential time: write it without nesting quantifiers, e.g. urn:ngsi-ld:TrainCall:.*"
        )
    try:
        return re.compile(value)
    except re.error as exc:
        raise BadQuery(f"idPattern={value!r} is not a regular expression: {exc}") from None


T = TypeVar("T")


def sort_by_distance(
    near: Near, items: Sequence[T], place: Callable[[T], tuple[float, float] | None]
) -> list[tuple[float, T]]:
    """``(metres, item)`` for the items within ``near``'s radius, nearest first; items without a
    place are left out (nothing can say how far they are)."""
    found = []
    for item in items:
        where = place(item)
        if where is None:
            continue
        metres = near.distance_to(*where)
        if near.admits(metres):
            found.append((metres, item))
    found.sort(key=lambda pair: pair[0])
    return found
