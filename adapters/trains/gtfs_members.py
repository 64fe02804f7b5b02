"""Reading the members of a GTFS zip, shared by the readers of a feed (the trains adapter's
timetable of a few stop places, the journey planner's whole network).

Each member is read with :mod:`csv` straight out of :mod:`zipfile`; every way a zip, a member or a
row can be unreadable becomes a :class:`~adapters.polling.SourceFormatError` with a reason
(``not-zip``, ``gtfs-missing-member``, ``gtfs-missing-column``, ``gtfs-unreadable``,
``gtfs-no-agency``, ``gtfs-bad-timezone``) or, for one row, a :class:`~adapters.records.Rejected`.
"""

from __future__ import annotations

import csv
import io
import struct
import zipfile
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.polling import SourceFormatError
from adapters.records import Rejected
from adapters.trains.timetable import ServiceCalendar

__all__ = [
    "REQUIRED_MEMBERS",
    "Agency",
    "Member",
    "cell",
    "gtfs_date",
    "open_gtfs",
    "read_agencies",
    "read_calendars",
]

REQUIRED_MEMBERS: Final = ("agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt")
"""The members every GTFS feed has; a feed also needs ``calendar.txt`` or ``calendar_dates.txt``."""

_CALENDARS: Final = ("calendar.txt", "calendar_dates.txt")
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def gtfs_date(text: str) -> date:
    """A GTFS date ``YYYYMMDD``; ``ValueError`` if it is not one."""
    text = text.strip()
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not a GTFS date YYYYMMDD")
    return datetime.strptime(text, "%Y%m%d").date()


# -- reading members ------------------------------------------------------------------------------


class Member:
    """One CSV member of the zip: its header, its rows (line number and cells), its problems."""

    def __init__(self, archive: zipfile.ZipFile, name: str, required: tuple[str, ...]) -> None:
        self.name = name
        self._archive = archive
        self._rows = self._read()
        try:
            _, self.header = next(self._rows)
        except StopIteration:
            raise SourceFormatError(
                f"{name} is empty: a GTFS member needs a header line", reason="gtfs-missing-column"
            ) from None
        self.header = [h.strip() for h in self.header]
        self.columns = {column: i for i, column in enumerate(self.header)}
        missing = [c for c in required if c not in self.columns]
        if missing:
            raise SourceFormatError(
                f"{name} has no column {', '.join(missing)} (its header: {','.join(self.header)[:300]})",
                reason="gtfs-missing-column",
            )

    def _read(self) -> Iterator[tuple[int, list[str]]]:
        try:
            with self._archive.open(self.name) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                reader = csv.reader(text)
                for row in reader:
                    yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise SourceFormatError(
                f"{self.name} is not UTF-8 (byte {exc.start} of a chunk: {exc.reason})",
                reason="gtfs-unreadable",
            ) from None
        except csv.Error as exc:
            raise SourceFormatError(
                f"{self.name} is not valid CSV: {exc}", reason="gtfs-unreadable"
            ) from None
        except (
            zipfile.BadZipFile,
            zlib.error,
            struct.error,
            EOFError,
            OSError,
            ValueError,
            NotImplementedError,
            RuntimeError,
        ) as exc:
            # a bad CRC or header, a truncated deflate stream, an offset before the start of the file,
            # an unsupported compression, an encrypted member: zipfile says each its own way
            raise SourceFormatError(
                f"{self.name} cannot be read from the zip: {exc or type(exc).__name__}",
                reason="gtfs-unreadable",
            ) from None

    def index(self, column: str) -> int:
        """The index of ``column``, or -1 if the member has none (an optional column)."""
        return self.columns.get(column, -1)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """The data rows, with their line numbers."""
        return self._rows

    def record(self, row: list[str]) -> bytes:
        """The header and one row, as CSV: a dead letter's payload."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerow(row)
        return out.getvalue().encode()

    def reject(self, reason: str, line: int, row: list[str], problem: str) -> Rejected:
        """A :class:`Rejected` for one row, saying where it is."""
        return Rejected(reason, f"{self.name} line {line}: {problem}", self.record(row))


def cell(row: list[str], index: int) -> str:
    """The stripped cell ``index`` of a row, or ``""`` if the row has no such cell (index -1: no column)."""
    return row[index].strip() if 0 <= index < len(row) else ""


def open_gtfs(body: bytes) -> zipfile.ZipFile:
    """Open a GTFS zip and check it has the members every feed needs; else :class:`SourceFormatError`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, struct.error, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise SourceFormatError(
            f"not a zip file ({exc or type(exc).__name__}): a GTFS feed is a zip of CSV files",
            reason="not-zip",
        ) from None
    names = set(archive.namelist())
    for member in REQUIRED_MEMBERS:
        if member not in names:
            raise SourceFormatError(
                f"the GTFS zip has no {member} (it has: {', '.join(sorted(names)) or 'nothing'})",
                reason="gtfs-missing-member",
            )
    if not names.intersection(_CALENDARS):
        raise SourceFormatError(
            "the GTFS zip has neither calendar.txt nor calendar_dates.txt: no day on which a trip runs",
            reason="gtfs-missing-member",
        )
    return archive


@dataclass
class Agency:
    """An agency of ``agency.txt``: its name and the time zone its times count in."""

    name: str
    timezone: ZoneInfo


def read_agencies(archive: zipfile.ZipFile) -> dict[str, Agency]:
    """``agency.txt``: agency id → its name and time zone (at least one, each zone a real IANA one)."""
    member = Member(archive, "agency.txt", ("agency_name", "agency_timezone"))
    i_id, i_name, i_tz = (
        member.index("agency_id"),
        member.index("agency_name"),
        member.index("agency_timezone"),
    )
    agencies: dict[str, Agency] = {}
    for line, row in member.rows():
        key = cell(row, i_tz)
        try:
            timezone = ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a key that is a directory
            raise SourceFormatError(
                f"agency.txt line {line}: agency_timezone {key!r} is not an IANA time zone "
                "such as Europe/Oslo",
                reason="gtfs-bad-timezone",
            ) from None
        agencies.setdefault(cell(row, i_id), Agency(cell(row, i_name), timezone))
    if not agencies:
        raise SourceFormatError(
            "agency.txt has no agency: the times have no time zone", reason="gtfs-no-agency"
        )
    return agencies


def read_calendars(
    archive: zipfile.ZipFile, wanted: Collection[str], rejected: list[Rejected]
) -> dict[str, ServiceCalendar]:
    """The days each ``wanted`` service runs, from ``calendar.txt`` and ``calendar_dates.txt``; bad rows
    are added to ``rejected``."""
    names = set(archive.namelist())
    weekly: dict[str, tuple[frozenset[int], date, date]] = {}
    if "calendar.txt" in names:
        member = Member(archive, "calendar.txt", ("service_id", *_WEEKDAYS, "start_date", "end_date"))
        i_service, i_start, i_end = (member.index(c) for c in ("service_id", "start_date", "end_date"))
        i_days = [member.index(day) for day in _WEEKDAYS]
        for line, row in member.rows():
            service = cell(row, i_service)
            if service not in wanted:
                continue
            try:
                flags = [cell(row, i) for i in i_days]
                if any(f not in ("0", "1") for f in flags):
                    raise ValueError(f"the weekday columns must be 0 or 1, not {','.join(flags)}")
                days = frozenset(n for n, f in enumerate(flags) if f == "1")
                weekly[service] = (days, gtfs_date(cell(row, i_start)), gtfs_date(cell(row, i_end)))
            except ValueError as exc:
                rejected.append(member.reject("bad-calendar", line, row, f"service {service}: {exc}"))
    added: dict[str, set[date]] = {}
    removed: dict[str, set[date]] = {}
    if "calendar_dates.txt" in names:
        member = Member(archive, "calendar_dates.txt", ("service_id", "date", "exception_type"))
        i_service, i_date, i_type = (member.index(c) for c in ("service_id", "date", "exception_type"))
        for line, row in member.rows():
            service = cell(row, i_service)
            if service not in wanted:
                continue
            kind = cell(row, i_type)
            try:
                day = gtfs_date(cell(row, i_date))
                if kind not in ("1", "2"):
                    raise ValueError(f"exception_type {kind!r} is neither 1 (added) nor 2 (removed)")
            except ValueError as exc:
                rejected.append(member.reject("bad-calendar", line, row, f"service {service}: {exc}"))
                continue
            (added if kind == "1" else removed).setdefault(service, set()).add(day)
    calendars: dict[str, ServiceCalendar] = {}
    for service in wanted:
        days, start, end = weekly.get(service, (frozenset(), None, None))
        calendars[service] = ServiceCalendar(
            weekdays=days,
            start=start,
            end=end,
            added=frozenset(added.get(service, ())),
            removed=frozenset(removed.get(service, ())),
        )
    return calendars
