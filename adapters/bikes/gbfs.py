"""GBFS documents read into city-bike contracts: pure functions, no I/O.

GBFS (the General Bikeshare Feed Specification, https://gbfs.org) is what Norwegian city-bike
operators publish — Urban Sharing's Oslo, Bergen and Trondheim Bysykkel, and Entur's national
aggregate. A system is a set of JSON documents, each in the same envelope::

    {"last_updated": 1535529600, "ttl": 60, "version": "2.3", "data": {...}}

``gbfs.json`` (discovery) names the other documents' URLs; ``system_information`` says which
system it is (``system_id``); ``station_information`` lists the racks (where, how many docks);
``station_status`` says how many bikes and free docks each rack has now.

The versions differ, and this module reads them all:

=========================  ==========================  ===============================
                           1.x / 2.x                   3.0
=========================  ==========================  ===============================
``last_updated``           POSIX seconds               RFC 3339 string
``gbfs.json`` feeds        ``data.<language>.feeds``   ``data.feeds``
station ``name``           a string                    ``[{"text", "language"}, …]``
bikes at a station         ``num_bikes_available``     ``num_vehicles_available``
``last_reported``          POSIX seconds               RFC 3339 string
``is_renting`` etc.        bool (0/1 ints in 1.x)      bool
=========================  ==========================  ===============================

Decisions, and why:

* **Read by shape, not only by ``version``.** A timestamp is POSIX seconds if it is a number and
  RFC 3339 if it is a string; a name is a string or a list of localized strings; the bike count is
  read from the version's field and, failing that, the other version's. Producers migrating
  between versions mix them, and each shape means one thing, so nothing is guessed. ``version``
  must still be 1.x, 2.x or 3.x (absent means 1.0, which had no ``version``).
* **A document that is not GBFS raises** :class:`~adapters.polling.SourceFormatError`
  (``not-json``, ``not-gbfs`` naming what is missing, ``unsupported-version``); the poller
  dead-letters it. **A bad record in a good document** is returned as a :class:`RejectedRecord`
  with its reason — ``missing-field``, ``bad-field`` (wrong type), ``out-of-range`` (a negative
  count, a latitude beyond 90°, a position of exactly 0°, 0°), ``duplicate-station``,
  ``bad-record`` (not an object) — so that one broken rack does not hide all the others.
* **A localized name** is the one in the configured language, else one whose primary subtag
  matches (``nb`` for ``nb-NO``), else the first: a rack must have a name, and the operator's first
  is the one it shows by default.
* ``ttl`` is optional (default 0, "always refresh"): it only tunes polling, and a feed that
  forgets it is still a good feed. ``last_reported`` of 0 (1.x producers' "never") or absent
  falls back to the document's ``last_updated``.
* Every message is round-tripped through its contract's decoder, so what the contract forbids
  (an over-long ``station_id``, an empty name) is an ``out-of-range`` record, never a published one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias, TypeVar

import msgspec

from adapters.polling import SourceFormatError
from bus.codec import decode_bytes
from bus.errors import UndecodableError
from contracts import BikeStation, BikeStationStatus, validate
from contracts.fields import GeoPoint

__all__ = [
    "DiscoveryFeed",
    "Envelope",
    "RecordReason",
    "RejectedRecord",
    "StationInformationFeed",
    "StationStatusFeed",
    "SystemInformation",
    "localized",
    "parse_discovery",
    "parse_station_information",
    "parse_station_status",
    "parse_system_information",
]

RecordReason: TypeAlias = Literal[
    "missing-field", "bad-field", "out-of-range", "duplicate-station", "bad-record"
]

_VERSIONS: Final = ("1", "2", "3")
_LARGEST_POSIX: Final = 1e11  # year 5138: a larger "POSIX time" is milliseconds or garbage

_M = TypeVar("_M", BikeStation, BikeStationStatus)


# -- the envelope ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """The header of every GBFS document."""

    last_updated: datetime
    """When the producer last updated the data (timezone-aware)."""
    ttl: int
    """Seconds before the data will be updated again (0: always refresh)."""
    version: str
    """The GBFS version it declares; ``1.0`` when it declares none (1.0 had no ``version``)."""

    @property
    def major(self) -> int:
        """The major version: 1, 2 or 3."""
        return int(self.version.split(".", 1)[0])


_ANY: Final = msgspec.json.Decoder()


def _decode(body: bytes, feed: str) -> dict[str, Any]:
    try:
        document = decode_bytes(_ANY, body)
    except UndecodableError as exc:
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):  # msgspec checks UTF-8 in strings with the codec's error
            detail = f"a string is not UTF-8 at byte {cause.start}"
        else:
            detail = str(cause) if isinstance(cause, msgspec.DecodeError) else str(exc)
        raise SourceFormatError(f"{feed} is not JSON: {detail}", reason="not-json") from None
    if not isinstance(document, dict):
        raise SourceFormatError(
            f"{feed} is a JSON {_kind(document)}, not a GBFS document "
            "(an object with last_updated, ttl, version and data)",
            reason="not-gbfs",
        )
    return document


def _envelope(document: dict[str, Any], feed: str) -> tuple[Envelope, dict[str, Any]]:
    missing = [key for key in ("last_updated", "data") if key not in document]
    if missing:
        present = ", ".join(sorted(map(str, document))) or "nothing"
        raise SourceFormatError(
            f"{feed} has no {' and no '.join(missing)}: not a GBFS document (its keys: {present})",
            reason="not-gbfs",
        )
    try:
        last_updated = _moment(document["last_updated"], "last_updated")
    except _Bad as bad:
        raise SourceFormatError(f"{feed}: {bad}", reason="not-gbfs") from None
    ttl = document.get("ttl", 0)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
        raise SourceFormatError(
            f"{feed}: ttl must be a whole number of seconds >= 0, got {_show(ttl)}", reason="not-gbfs"
        )
    version = document.get("version", "1.0")
    if not isinstance(version, str):
        raise SourceFormatError(f"{feed}: version must be a string, got {_show(version)}", reason="not-gbfs")
    if version.split(".", 1)[0] not in _VERSIONS:
        raise SourceFormatError(
            f"{feed} declares GBFS version {version!r}; this adapter reads 1.x, 2.x and 3.x",
            reason="unsupported-version",
        )
    data = document["data"]
    if not isinstance(data, dict):
        raise SourceFormatError(f"{feed}: data must be an object, got {_show(data)}", reason="not-gbfs")
    return Envelope(last_updated=last_updated, ttl=ttl, version=version), data


# -- field readers (a bad field raises _Bad, which rejects its record) ----------------------------


class _Bad(Exception):
    def __init__(self, reason: RecordReason, message: str) -> None:
        super().__init__(message)
        self.reason: RecordReason = reason


def _kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str | int | float | bool) else _kind(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _moment(value: object, name: str) -> datetime:
    """A GBFS time: POSIX seconds (1.x/2.x) or an RFC 3339 string (3.0)."""
    if isinstance(value, bool) or value is None:
        raise _Bad("bad-field", f"{name} must be POSIX seconds or an RFC 3339 time, got {_show(value)}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise _Bad("out-of-range", f"{name} {_show(value)} is not a time")
        if value > _LARGEST_POSIX:
            raise _Bad("out-of-range", f"{name} {_show(value)} is not POSIX seconds (milliseconds?)")
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad("bad-field", f"{name} {_show(value)} is not an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise _Bad("bad-field", f"{name} {_show(value)} has no UTC offset")
        return moment
    raise _Bad("bad-field", f"{name} must be POSIX seconds or an RFC 3339 time, got {_show(value)}")


def _required(record: dict[str, Any], name: str, hint: str = "") -> Any:
    value = record.get(name)
    if value is None:
        raise _Bad("missing-field", f"{name} is missing{hint}")
    return value


def _station_id(record: dict[str, Any]) -> str:
    value = _required(record, "station_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # 1.x producers wrote numeric ids
    if not isinstance(value, str) or not value.strip():
        raise _Bad("bad-field", f"station_id must be a non-empty string, got {_show(value)}")
    return value


def _count(record: dict[str, Any], name: str) -> int:
    value = record[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad("bad-field", f"{name} must be a whole number, got {_show(value)}")
    if value < 0:
        raise _Bad("out-of-range", f"{name} is {value}; a count cannot be negative")
    return value


def _first_count(record: dict[str, Any], names: tuple[str, str], hint: str) -> int:
    for name in names:
        if record.get(name) is not None:
            return _count(record, name)
    raise _Bad("missing-field", f"{names[0]} is missing{hint}")


def _flag(record: dict[str, Any], name: str, default: bool | None = None) -> bool:
    value = record.get(name)
    if value is None:
        if default is None:
            raise _Bad("missing-field", f"{name} is missing")
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # GBFS 1.x
        return bool(value)
    raise _Bad("bad-field", f"{name} must be true or false (or 1/0), got {_show(value)}")


def _degrees(record: dict[str, Any], name: str, limit: float) -> float:
    value = _required(record, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad("bad-field", f"{name} must be a number of degrees, got {_show(value)}")
    if not math.isfinite(value) or abs(value) > limit:
        raise _Bad("out-of-range", f"{name} {value} is outside -{limit:g}..{limit:g}")
    return float(value)


def localized(value: object, language: str) -> str | None:
    """A text from a GBFS 3.0 localized string list (or a plain 1.x/2.x string), in ``language``.

    The text in exactly that language, else one whose primary subtag matches (``nb`` and
    ``nb-NO``), else the first; ``None`` when there is no non-empty text at all.
    """
    if isinstance(value, str):
        return value if value.strip() else None
    if not isinstance(value, list):
        return None
    texts: list[tuple[str, str]] = [
        (str(entry.get("language") or ""), entry["text"])
        for entry in value
        if isinstance(entry, dict) and isinstance(entry.get("text"), str) and entry["text"].strip()
    ]
    if not texts:
        return None
    return texts[_best([tag for tag, _ in texts], language)][1]


def _best(tags: list[str], language: str) -> int:
    """The index of ``language`` among ``tags``, else of its primary subtag, else 0."""
    wanted = language.casefold()
    folded = [tag.casefold() for tag in tags]
    if wanted in folded:
        return folded.index(wanted)
    primary = [tag.split("-", 1)[0] for tag in folded]
    return primary.index(wanted.split("-", 1)[0]) if wanted.split("-", 1)[0] in primary else 0


def _text(record: dict[str, Any], name: str, language: str, *, required: bool) -> str | None:
    value = record.get(name)
    if value is None:
        if required:
            raise _Bad("missing-field", f"{name} is missing")
        return None
    text = localized(value, language)
    if text is None:
        raise _Bad(
            "bad-field",
            f"{name} must be a non-empty string (1.x/2.x) or a list of {{text, language}} (3.0), "
            f"got {_show(value)}",
        )
    return text


def _validated(instance: _M) -> _M:
    try:
        return validate(instance)
    except msgspec.ValidationError as exc:
        raise _Bad("out-of-range", f"the contract does not allow it: {exc}") from None


# -- records --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A station record that makes no message: dead-letter ``raw`` with ``reason`` and ``detail``."""

    index: int
    """Its position in ``data.stations``, from 0."""
    station_id: str | None
    """Its station_id, when it has a usable one."""
    reason: RecordReason
    detail: str
    raw: bytes
    """The record as JSON."""


def _stations(data: dict[str, Any], feed: str) -> list[Any]:
    stations = data.get("stations")
    if not isinstance(stations, list):
        found = "no data.stations" if stations is None else f"data.stations is a {_kind(stations)}"
        raise SourceFormatError(f"{feed} has {found}: a GBFS {feed} lists stations there", reason="not-gbfs")
    return stations


def _records(
    stations: list[Any], feed: str, read: Callable[[dict[str, Any], str], _M]
) -> tuple[list[_M], list[RejectedRecord]]:
    """Read each record with ``read``; collect the rejected ones (and repeated ids) with reasons."""
    accepted: list[_M] = []
    rejected: list[RejectedRecord] = []
    first: dict[str, int] = {}
    for index, record in enumerate(stations):
        station_id: str | None = None
        try:
            if not isinstance(record, dict):
                raise _Bad("bad-record", f"a station must be an object, got {_show(record)}")
            station_id = _station_id(record)
            message = read(record, station_id)
            if station_id in first:
                raise _Bad(
                    "duplicate-station",
                    f"station {station_id!r} appeared already as record {first[station_id]}",
                )
            first[station_id] = index
            accepted.append(message)
        except _Bad as bad:
            which = f"record {index}" if station_id is None else f"record {index} (station {station_id!r})"
            raw = msgspec.json.encode(record)
            rejected.append(RejectedRecord(index, station_id, bad.reason, f"{feed} {which}: {bad}", raw))
    return accepted, rejected


# -- station_information --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StationInformationFeed:
    """A ``station_information`` document: the racks, and the records that make none."""

    envelope: Envelope
    stations: list[BikeStation]
    rejected: list[RejectedRecord]


def parse_station_information(
    body: bytes, *, language: str = "nb", system: str | None = None
) -> StationInformationFeed:
    """Read a ``station_information`` document (any version); raises ``SourceFormatError``.

    ``language`` picks 3.0's localized names; ``system`` is put in every station's ``system``.
    """
    envelope, data = _envelope(_decode(body, "station_information"), "station_information")

    def read(record: dict[str, Any], station_id: str) -> BikeStation:
        name = _text(record, "name", language, required=True)
        latitude = _degrees(record, "lat", 90)
        longitude = _degrees(record, "lon", 180)
        if latitude == 0 and longitude == 0:
            raise _Bad("out-of-range", "lat/lon is 0, 0: the producer does not know where the rack is")
        station = BikeStation(
            station_id=station_id,
            name=str(name),
            location=GeoPoint.at(latitude, longitude),
            capacity=_count(record, "capacity") if record.get("capacity") is not None else None,
            address=_text(record, "address", language, required=False),
            system=system,
        )
        return _validated(station)

    stations, rejected = _records(_stations(data, "station_information"), "station_information", read)
    return StationInformationFeed(envelope, stations, rejected)


# -- station_status -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StationStatusFeed:
    """A ``station_status`` document: each rack's counts (no name or place: those are in
    ``station_information``), and the records that make none."""

    envelope: Envelope
    statuses: list[BikeStationStatus]
    rejected: list[RejectedRecord]


def parse_station_status(body: bytes) -> StationStatusFeed:
    """Read a ``station_status`` document (any version); raises ``SourceFormatError``.

    ``reported_at`` is the record's ``last_reported``, else the document's ``last_updated``.
    """
    envelope, data = _envelope(_decode(body, "station_status"), "station_status")
    bikes = ("num_vehicles_available", "num_bikes_available")
    if envelope.major < 3:
        bikes = (bikes[1], bikes[0])
    hint = " (num_bikes_available in GBFS 1.x/2.x, num_vehicles_available in 3.0)"

    def read(record: dict[str, Any], station_id: str) -> BikeStationStatus:
        available = _first_count(record, bikes, hint)
        _required(record, "num_docks_available", " (3.0 leaves it out for unlimited docks: no count to give)")
        reported = record.get("last_reported")
        status = BikeStationStatus(
            station_id=station_id,
            num_bikes_available=available,
            num_docks_available=_count(record, "num_docks_available"),
            is_installed=_flag(record, "is_installed", default=True),
            is_renting=_flag(record, "is_renting"),
            is_returning=_flag(record, "is_returning"),
            reported_at=envelope.last_updated
            if reported in (None, 0)
            else _moment(reported, "last_reported"),
        )
        return _validated(status)

    statuses, rejected = _records(_stations(data, "station_status"), "station_status", read)
    return StationStatusFeed(envelope, statuses, rejected)


# -- gbfs.json and system_information -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscoveryFeed:
    """A ``gbfs.json``: the URL of each feed of the system, in one language."""

    envelope: Envelope
    feeds: dict[str, str]
    """Feed name (``station_status`` …) → URL, as the document gives it."""
    language: str | None
    """The language whose feeds were taken (1.x/2.x); ``None`` in 3.0, which has one list."""


def _feed_list(feeds: object, where: str) -> dict[str, str]:
    if not isinstance(feeds, list):
        raise SourceFormatError(f"gbfs.json: {where} must be a list, got {_show(feeds)}", reason="not-gbfs")
    found: dict[str, str] = {}
    for index, feed in enumerate(feeds):
        if not (
            isinstance(feed, dict) and isinstance(feed.get("name"), str) and isinstance(feed.get("url"), str)
        ):
            raise SourceFormatError(
                f"gbfs.json: {where}[{index}] must be an object with a name and a url, got {_show(feed)}",
                reason="not-gbfs",
            )
        found[feed["name"]] = feed["url"]
    return found


def parse_discovery(body: bytes, *, language: str = "nb") -> DiscoveryFeed:
    """Read a ``gbfs.json`` (3.0 ``data.feeds`` or 1.x/2.x ``data.<language>.feeds``).

    Of several languages, ``language`` is taken, else one with the same primary subtag, else the
    first. Raises ``SourceFormatError``.
    """
    envelope, data = _envelope(_decode(body, "gbfs.json"), "gbfs.json")
    if "feeds" in data:
        return DiscoveryFeed(envelope, _feed_list(data["feeds"], "data.feeds"), None)
    languages = [tag for tag, value in data.items() if isinstance(value, dict) and "feeds" in value]
    if not languages:
        raise SourceFormatError(
            "gbfs.json has neither data.feeds (GBFS 3.0) nor data.<language>.feeds (1.x/2.x)",
            reason="not-gbfs",
        )
    chosen = languages[_best(languages, language)]
    return DiscoveryFeed(envelope, _feed_list(data[chosen]["feeds"], f"data.{chosen}.feeds"), chosen)


@dataclass(frozen=True, slots=True)
class SystemInformation:
    """What ``system_information`` says about the system that matters here."""

    envelope: Envelope
    system_id: str
    name: str | None


def parse_system_information(body: bytes, *, language: str = "nb") -> SystemInformation:
    """Read a ``system_information`` document; raises ``SourceFormatError`` without a system_id."""
    envelope, data = _envelope(_decode(body, "system_information"), "system_information")
    system_id = data.get("system_id")
    if not isinstance(system_id, str) or not system_id.strip():
        raise SourceFormatError(
            f"system_information has no data.system_id string (got {_show(system_id)})", reason="not-gbfs"
        )
    return SystemInformation(envelope, system_id, localized(data.get("name"), language))
