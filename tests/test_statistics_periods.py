"""Periods of the statistics: ISO weeks, months and days in Drammen's time, parsed and bounded."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.statistics.periods import CITY_TIME, Period, PeriodError
from contracts.statistics import PERIOD


@given(day=st.dates(date(1990, 1, 1), date(2100, 12, 31)), kind=st.sampled_from(["week", "month", "day"]))
def test_a_period_is_written_as_the_contract_allows_and_read_back(day: date, kind: str) -> None:
    moment = datetime.combine(day, datetime.min.time(), CITY_TIME) + timedelta(hours=13)
    period = Period.containing(moment, kind)  # type: ignore[arg-type]
    assert re.match(PERIOD, str(period))
    assert Period.parse(str(period)) == period
    assert moment in period and period.start <= moment < period.end
    assert period.next().start == period.end and period.next().previous() == period
    assert period.end not in period and period.start in period


def test_bounds_are_local_midnights_across_summer_time() -> None:
    week = Period.parse("2018-W13")  # summer time begins on Sunday 25 March 2018
    assert str(week.start) == "2018-03-26 00:00:00+02:00"
    assert Period.parse("2018-W12").start.isoformat() == "2018-03-19T00:00:00+01:00"
    spring = Period.parse("2018-W12")
    assert (spring.end.astimezone(UTC) - spring.start.astimezone(UTC)) == timedelta(hours=167)
    assert str(Period.parse("2018-08").end) == "2018-09-01 00:00:00+02:00"
    assert (
        str(Period.parse("2018-12").next()) == "2019-01"
        and str(Period.parse("2018-01").previous()) == "2017-12"
    )


def test_the_moment_decides_in_drammens_time() -> None:
    late = datetime(2018, 12, 30, 23, 30, tzinfo=UTC)  # already Monday 31 December in Drammen
    assert str(Period.containing(late, "week")) == "2019-W01"
    assert str(Period.containing(late, "day")) == "2018-12-31"
    assert str(Period.current(late, "month")) == "2018-12"


@pytest.mark.parametrize(
    "text", ["2018-W54", "2019-W53", "2018-W00", "2018-13", "2018-02-30", "18-W35", "", "week"]
)
def test_a_wrong_period_says_what_is_accepted(text: str) -> None:
    with pytest.raises(PeriodError, match="2018-W35") as caught:
        Period.parse(text)
    assert "\n" not in str(caught.value)


def test_wrong_arguments_are_refused_clearly() -> None:
    with pytest.raises(PeriodError, match="aware"):
        Period.containing(datetime(2018, 8, 28, 12), "week")
    with pytest.raises(PeriodError, match="week, month or day"):
        Period.containing(datetime(2018, 8, 28, tzinfo=UTC), "year")  # type: ignore[arg-type]
    with pytest.raises(PeriodError, match="first day"):
        Period(date(2018, 8, 28), "week")
    assert str(Period.parse("2020-W53")) == "2020-W53"
