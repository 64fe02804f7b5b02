"""The periods a release covers: an ISO week, a month or a day, in Drammen's time (Europe/Oslo).

A period is written as the :class:`~contracts.Aggregate` contract's ``period`` allows:
``2018-W35`` (ISO week), ``2018-08`` (month), ``2018-08-28`` (day). :class:`Period` parses and
validates such a string, finds the period containing a moment, and gives its start and end as
aware datetimes.

Decisions, and why:

* **Local time decides.** A week, month or day starts at local midnight in Europe/Oslo, because
  that is when the city's week starts; the bounds are aware datetimes in that zone, each with its
  own UTC offset, so a week across a change of summer time is 167 or 169 hours long in UTC.
* **The end is exclusive** (the next period's start), as ``period_end`` in the contract: a moment
  belongs to exactly one period of each kind.
* **The clock is passed in.** :meth:`Period.current` takes ``now`` from the caller (the adapter's
  clock, which the sandbox may replay), never reads the wall clock itself.
* **Bad input is a :class:`PeriodError`** (a ``ValueError``) whose one-line message says what is
  wrong and shows the accepted forms; a naive datetime is refused, as its zone would be a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

__all__ = ["CITY_TIME", "KINDS", "Period", "PeriodError", "PeriodKind"]

CITY_TIME: Final = ZoneInfo("Europe/Oslo")
"""Drammen's time zone: periods start at its local midnight."""

PeriodKind = Literal["week", "month", "day"]
KINDS: Final[tuple[PeriodKind, ...]] = ("week", "month", "day")
"""The kinds of period, as configuration names them."""

_FORMS: Final = "an ISO week (2018-W35), a month (2018-08) or a day (2018-08-28)"
_WEEK: Final = re.compile(r"^([0-9]{4})-W([0-9]{2})$")
_MONTH: Final = re.compile(r"^([0-9]{4})-([0-9]{2})$")
_DAY: Final = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")


class PeriodError(ValueError):
    """A period string or argument is wrong; the message says what is accepted."""


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """One week, month or day: its kind and its first local date (a Monday, a 1st, the day)."""

    first: date
    kind: PeriodKind

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PeriodError(f"unknown period kind {self.kind!r}: use week, month or day")
        if (self.kind == "week" and self.first.isoweekday() != 1) or (
            self.kind == "month" and self.first.day != 1
        ):
            raise PeriodError(f"a {self.kind} starts on its first day, not on {self.first.isoformat()}")

    @classmethod
    def parse(cls, text: str) -> Period:
        """The period a string names (``2018-W35``, ``2018-08``, ``2018-08-28``)."""
        if not isinstance(text, str):
            raise PeriodError(f"a period is a string, {_FORMS}; got {type(text).__name__}")
        try:
            if match := _WEEK.fullmatch(text):
                year, week = int(match[1]), int(match[2])
                return cls(date.fromisocalendar(year, week, 1), "week")
            if match := _MONTH.fullmatch(text):
                return cls(date(int(match[1]), int(match[2]), 1), "month")
            if match := _DAY.fullmatch(text):
                return cls(date(int(match[1]), int(match[2]), int(match[3])), "day")
        except ValueError as error:
            raise PeriodError(f"no such period {text!r} ({error}): write {_FORMS}") from None
        raise PeriodError(f"not a period: {text!r}: write {_FORMS}")

    @classmethod
    def containing(cls, at: datetime, kind: PeriodKind = "week") -> Period:
        """The period of ``kind`` that the aware moment ``at`` falls in, in Drammen's time."""
        if kind not in KINDS:
            raise PeriodError(f"unknown period kind {kind!r}: use week, month or day")
        if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
            raise PeriodError(f"the moment must be an aware datetime (with a time zone), not {at!r}")
        local = at.astimezone(CITY_TIME).date()
        if kind == "week":
            return cls(local - timedelta(days=local.isoweekday() - 1), "week")
        if kind == "month":
            return cls(local.replace(day=1), "month")
        return cls(local, "day")

    @classmethod
    def current(cls, now: datetime, kind: PeriodKind = "week") -> Period:
        """The period running at ``now`` (the caller's clock)."""
        return cls.containing(now, kind)

    @property
    def start(self) -> datetime:
        """When the period starts: local midnight of its first day, aware."""
        return datetime.combine(self.first, datetime.min.time(), CITY_TIME)

    @property
    def end(self) -> datetime:
        """When the period ends (exclusive): the start of the next one, aware."""
        return self.next().start

    def next(self) -> Period:
        """The period of the same kind after this one."""
        if self.kind == "week":
            return Period(self.first + timedelta(days=7), "week")
        if self.kind == "month":
            year, month = divmod(self.first.month, 12)
            return Period(date(self.first.year + year, month + 1, 1), "month")
        return Period(self.first + timedelta(days=1), "day")

    def previous(self) -> Period:
        """The period of the same kind before this one."""
        if self.kind == "week":
            return Period(self.first - timedelta(days=7), "week")
        if self.kind == "month":
            return Period((self.first - timedelta(days=1)).replace(day=1), "month")
        return Period(self.first - timedelta(days=1), "day")

    def __contains__(self, at: object) -> bool:
        """Whether an aware datetime falls within the period."""
        return isinstance(at, datetime) and at.tzinfo is not None and self.start <= at < self.end

    def __str__(self) -> str:
        if self.kind == "week":
            year, week, _ = self.first.isocalendar()
            return f"{year:04d}-W{week:02d}"
        if self.kind == "month":
            return f"{self.first.year:04d}-{self.first.month:02d}"
        return self.first.isoformat()
