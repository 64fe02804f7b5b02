"""Review findings on the statistics service (issue 19), each a test that failed before its fix."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from adapters.statistics.access import citizen_declaration
from adapters.statistics.periods import Period, PeriodError
from bus import Bus, RequestRefusedError
from bus.access import AccessError
from contracts import Comparison, ComparisonRequest, ReleaseReceipt, ReleaseRequest
from tests.test_statistics_service import (
    BRAGERNES,
    HOURS,
    MONDAY,
    WEEK,
    SetClock,
    activity,
    ask_release,
    counted,
    offered,
    opportunity,
    releases,
    service,
    took_part,
)
from tests.volunteering import volunteer

pytestmark = pytest.mark.slow


async def test_a_period_written_with_a_trailing_newline_spends_the_same_budget(quiet_bus: Bus) -> None:
    clock = SetClock(MONDAY + timedelta(days=3))
    async with service(quiet_bus, clock) as harness:
        await offered(quiet_bus, harness, opportunity("o1", BRAGERNES))
        await took_part(quiet_bus, *(activity(n, "o1") for n in range(1, 9)))
        await counted(quiet_bus, 8)
        first, second = [await ask_release(quiet_bus) for _ in range(2)]
        assert (first.status, second.status) == ("released", "released")
        request = msgspec.convert({"dataset": HOURS, "period": WEEK + "\n"}, ReleaseRequest)
        third = (await quiet_bus.request(request, ReleaseReceipt, timeout=30)).data
    assert (third.status, third.release) == ("refused", 0)
    assert "not a period" in third.reason
    assert len(await releases(quiet_bus)) == 2


async def test_a_comparison_for_a_period_with_a_trailing_newline_is_refused_in_a_line(quiet_bus: Bus) -> None:
    clock = SetClock(MONDAY + timedelta(days=3))
    async with service(quiet_bus, clock):
        request = msgspec.convert({"person_id": volunteer(1), "period": WEEK + "\n"}, ComparisonRequest)
        with pytest.raises(RequestRefusedError) as refused:
            await quiet_bus.request(request, Comparison, timeout=30)
    assert "RequestPeriodError" in str(refused.value) and "not a period" in str(refused.value)


@pytest.mark.parametrize("text", ["2018-W35\n", "2018-08\n", "2018-08-28\n"])
def test_a_period_with_a_trailing_newline_is_no_period(text: str) -> None:
    with pytest.raises(PeriodError):
        Period.parse(text)


def test_a_citizen_named_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(AccessError):
        citizen_declaration("v-0123456789\n")
