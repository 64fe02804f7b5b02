"""The statistics service over a real nats-server: volunteer hours counted by ref per district ×
activity × week, released at the week's end and on request within the privacy budget (one
process and two), withdrawals, erasures (heard and missed), comparisons that publish nothing,
public data sets, restarts, configuration errors, and logs and metrics that name no one.

Every test runs on a server of its own (``quiet_bus``): streams and buckets start empty. The
service runs on a clock the test sets (:class:`SetClock`), so a week ends when the test says so;
``tick()`` makes the releases that are then due (the service's own schedule would make them
within a second too — a release is made once either way).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest

from adapters.instances import parse_instance
from adapters.statistics import StatisticsConfig, StatisticsService
from adapters.statistics.service import Statistics
from adapters.testing import AdapterHarness
from bus import Bus, Metrics, RequestRefusedError
from bus.control import raise_for_refusal
from bus.envelope import Provenance, build_headers, new_event_id
from bus.errors import ConfigError
from bus.subjects import request_filter
from contracts import (
    Aggregate,
    AirQualityObserved,
    BeachObservation,
    Comparison,
    ComparisonRequest,
    GeoPoint,
    Opportunity,
    OpportunityReceipt,
    ReleaseReceipt,
    ReleaseRequest,
    SignupReceipt,
    SignupRequest,
    StatisticsRow,
    VolunteerActivity,
)
from tests.conftest import wait_for
from tests.volunteering import ORG, offer, platform, signup, stored, volunteer

pytestmark = pytest.mark.slow

OSLO = ZoneInfo("Europe/Oslo")
MONDAY = datetime(2018, 8, 27, tzinfo=OSLO)
"""The start of 2018-W35, the sandbox's week."""
WEEK = "2018-W35"
AFTER = MONDAY + timedelta(days=7, hours=1, seconds=1)
"""Just past the week's end plus the default ``release_after`` (1h): its final release is due."""
HOURS = "volunteer-hours"
BRAGERNES = (59.7440, 10.2040)
KONNERUD = (59.7130, 10.1600)
EXACT = {"datasets": {HOURS: {"mechanism": "k-anonymity", "k": 2}}}
"""Exact figures (k-anonymity, k = 2), for tests that count."""


class SetClock:
    """The service's clock, set by the test (the runtime gives it the wall clock or a replay's)."""

    def __init__(self, time: datetime) -> None:
        self.time = time

    def now(self) -> datetime:
        """The time the test set."""
        return self.time

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time (the time stays what the test set)."""
        await asyncio.sleep(seconds)


def opportunity(
    opportunity_id: str, at: tuple[float, float], skills: tuple[str, ...] = ("lifting",)
) -> Opportunity:
    """A public three-hour opportunity on the Wednesday of 2018-W35, at ``at``."""
    starts = MONDAY + timedelta(days=2, hours=10)
    return Opportunity(
        opportunity_id=opportunity_id,
        organisation=ORG,
        title="Beach clean-up",
        place="Drammen",
        location=GeoPoint.at(*at),
        starts=starts,
        ends=starts + timedelta(hours=3),
        skills=skills,
        places=20,
        places_left=10,
        status="open",
    )


def activity(
    n: int, opportunity_id: str, skills: tuple[str, ...] = ("lifting",), *, withdrawn: bool = False
) -> VolunteerActivity:
    """Volunteer ``n`` takes part in (or withdraws from) a three-hour opportunity of 2018-W35."""
    return VolunteerActivity(
        volunteer_id=volunteer(n),
        opportunity_id=opportunity_id,
        organisation=ORG,
        skills=skills,
        starts=MONDAY + timedelta(days=2, hours=10),
        hours=3.0,
        withdrawn=withdrawn,
    )


@asynccontextmanager
async def service(
    bus: Bus, clock: SetClock, config: dict[str, Any] | None = None, instance: str = "statistics"
) -> AsyncIterator[AdapterHarness]:
    """A statistics instance on ``bus`` (a real server's), ready."""
    async with AdapterHarness(
        StatisticsService, config or {}, instance=instance, bus=bus, clock=clock
    ) as harness:
        yield harness


def running(harness: AdapterHarness) -> Statistics:
    """The harness's service state."""
    adapter = harness.adapter
    assert isinstance(adapter, StatisticsService) and adapter.statistics is not None
    return adapter.statistics


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A metric's value (0 when it has none yet)."""
    return registry.get_sample_value(name, labels) or 0.0


async def counted(bus: Bus, n: int, action: str = "counted") -> None:
    """Wait until the service applied ``n`` activities with ``action`` (over the durable consumer)."""
    await wait_for(
        lambda: sample(bus.metrics.registry, "citybus_statistics_contributions_total", action=action) >= n
    )


async def offered(bus: Bus, harness: AdapterHarness, *opportunities: Opportunity) -> None:
    """Publish opportunities and wait until the service knows where they count."""
    for o in opportunities:
        await bus.publish_durable(o, provenance=Provenance.MANUAL, source="/tests")
    for o in opportunities:
        await known(harness, o.opportunity_id)


async def known(harness: AdapterHarness, opportunity_id: str) -> None:
    """Wait until the service knows where an opportunity counts."""
    opportunities = running(harness).opportunities
    for _ in range(200):
        if await opportunities.get(opportunity_id, fresh=True) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the service did not learn where {opportunity_id} counts")


async def took_part(bus: Bus, *activities: VolunteerActivity, time: datetime | None = None) -> None:
    """Publish activities as the volunteer platform does (sealed by the bus)."""
    for a in activities:
        await bus.publish_durable(a, provenance=Provenance.MANUAL, source="/tests", time=time)


async def ask_release(bus: Bus, dataset: str = HOURS, period: str | None = WEEK) -> ReleaseReceipt:
    return (
        await bus.request(ReleaseRequest(dataset=dataset, period=period), ReleaseReceipt, timeout=30)
    ).data


async def compare(bus: Bus, n: int, **fields: Any) -> Comparison:
    request = msgspec.convert({"person_id": volunteer(n), "period": WEEK, **fields}, ComparisonRequest)
    return (await bus.request(request, Comparison, timeout=30)).data


def table(aggregate: Aggregate) -> dict[tuple[str, ...], StatisticsRow]:
    return {row.group: row for row in aggregate.rows}


def figures(row: StatisticsRow) -> tuple[str, float | None, float | None]:
    return (row.status, row.count, row.sum)


async def releases(bus: Bus, dataset: str = HOURS, period: str = WEEK) -> list[Aggregate]:
    """The releases of ``dataset`` for ``period`` its stream holds, in stored order."""
    return [a for a in await stored(bus, Aggregate) if (a.dataset, a.period) == (dataset, period)]


async def stream_sizes(bus: Bus) -> dict[str, int]:
    """How many messages each stream (key-value buckets included) holds."""
    return {info.config.name or "": info.state.messages for info in await bus.js.streams_info()}


# -- counting and the final release ---------------------------------------------------------------


async def test_hours_are_counted_by_ref_per_district_and_activity_and_released_when_the_week_ends(
    quiet_bus: Bus,
) -> None:
    clock = SetClock(MONDAY + timedelta(days=3))
    async with service(quiet_bus, clock, EXACT) as harness:
        statistics = running(harness)
        await offered(
            quiet_bus, harness, opportunity("o1", BRAGERNES), opportunity("o2", KONNERUD, ("first-aid",))
        )
        await took_part(
            quiet_bus,
            *(activity(n, "o1") for n in (1, 2, 3)),
            *(activity(n, "o2", ("first-aid",)) for n in (1, 4, 5)),
        )
        await counted(quiet_bus, 6)
        await statistics.tick()  # the week is still running: nothing of it is due
        assert await releases(quiet_bus) == []

        # kept by ref only: the keys name refs, and neither key nor value a volunteer id
        refs = {await quiet_bus.vault.ref(volunteer(n)) for n in range(1, 6)}
        keys = set(await statistics.contributions.store.keys())
        assert {k for k in keys if not k.startswith("opportunity.")} == {f"{HOURS}.{WEEK}.{r}" for r in refs}
        for name in keys:
            record = await statistics.contributions.store.get(name)
            assert record is not None and b"v-0000" not in record.value and b"v-0000" not in name.encode()

        clock.time = AFTER
        await statistics.tick()
        (final,) = await releases(quiet_bus)
        # a late activity of the week counts in no later release: the week was released
        await took_part(quiet_bus, activity(6, "o1"))
        await counted(quiet_bus, 7)
        clock.time += timedelta(days=1)
        await statistics.tick()
    assert await releases(quiet_bus) == [final]
    assert (final.final, final.release, final.dimensions, final.counts) == (
        True,
        1,
        ("district", "activity"),
        "persons",
    )
    assert final.period_start == MONDAY and final.period_end == MONDAY + timedelta(days=7)
    assert (final.privacy.mechanism, final.privacy.k) == ("k-anonymity", 2)
    rows = table(final)
    assert figures(rows[("bragernes", "lifting")]) == ("released", 3.0, 9.0)
    assert figures(rows[("konnerud", "first-aid")]) == ("released", 3.0, 9.0)
    assert figures(rows[("all", "all")]) == ("released", 5.0, 18.0)  # five persons, one in both cells
    assert figures(rows[("bragernes", "all")]) == ("released", 3.0, 9.0)
    assert (rows[("bragernes", "lifting")].label, rows[("all", "all")].label) == (
        "Bragernes, Lifting",
        "All, All",
    )
    assert final.sources == ("community.volunteer-activity",)


async def test_a_withdrawal_removes_the_hours_even_when_it_arrives_before_the_sign_up(quiet_bus: Bus) -> None:
    clock = SetClock(MONDAY + timedelta(days=3))
    async with service(quiet_bus, clock, EXACT) as harness:
        await offered(quiet_bus, harness, opportunity("o1", BRAGERNES))
        await took_part(quiet_bus, *(activity(n, "o1") for n in (1, 2, 3)))
        await counted(quiet_bus, 3)
        await took_part(quiet_bus, activity(3, "o1", withdrawn=True))
        await counted(quiet_bus, 1, "withdrawn")
        # volunteer 4 signed up and withdrew; the withdrawal is applied first (two service processes
        # share the consumer): the older sign-up does not bring the hours back
        signed_up = MONDAY + timedelta(days=1)
        await took_part(quiet_bus, activity(4, "o1", withdrawn=True), time=signed_up + timedelta(hours=1))
        await counted(quiet_bus, 2, "withdrawn")
        await took_part(quiet_bus, activity(4, "o1"), time=signed_up)
        await counted(quiet_bus, 1, "unchanged")
        # the same message again changes nothing
        await took_part(quiet_bus, activity(1, "o1"))
        await counted(quiet_bus, 2, "unchanged")
        receipt = await ask_release(quiet_bus)
        assert (receipt.status, receipt.release) == ("released", 1)
    (released,) = await releases(quiet_bus)
    assert figures(table(released)[("bragernes", "lifting")]) == ("released", 2.0, 6.0)


# -- the budget -----------------------------------------------------------------------------------


async def test_the_budget_refuses_the_release_that_would_exceed_it(quiet_bus: Bus) -> None:
    """Budget 2 per week, epsilon 1 per release (the defaults): two releases, the third refused,
    nothing published for it, and the receipt says why."""
    clock = SetClock(MONDAY + timedelta(days=3))
    async with service(quiet_bus, clock) as harness:
        await offered(quiet_bus, harness, opportunity("o1", BRAGERNES))
        await took_part(quiet_bus, *(activity(n, "o1") for n in range(1, 9)))
        await counted(quiet_bus, 8)
        first, second, third = [await ask_release(quiet_bus) for _ in range(3)]
        registry = quiet_bus.metrics.registry
        assert sample(registry, "citybus_statistics_releases_total", dataset=HOURS, outcome="refused") == 1
        assert sample(registry, "citybus_statistics_budget_remaining", dataset=HOURS) == 0.0
    assert [(r.status, r.release, r.epsilon, r.spent, r.budget) for r in (first, second)] == [
        ("released", 1, 1.0, 1.0, 2.0),
        ("released", 2, 1.0, 2.0, 2.0),
    ]
    assert (third.status, third.release, third.spent, third.budget) == ("refused", 0, 2.0, 2.0)
    assert "budget" in third.reason and "exceeded" in third.reason
    published = await releases(quiet_bus)
    assert [(a.release, a.final, a.privacy.spent, a.privacy.epsilon) for a in published] == [
        (1, False, 1.0, 1.0),
        (2, False, 2.0, 1.0),
    ]
    assert all(a.privacy.mechanism == "differential-privacy" and a.privacy.budget == 2.0 for a in published)


async def test_provisional_releases_come_on_schedule_and_spend_the_same_budget(quiet_bus: Bus) -> None:
    """``release_every``: a provisional release while the week runs, on schedule whatever the data;
    each spends the week's budget, so once it is spent the rest — the final release too — is
    refused, once each, and nothing more is published."""
    clock = SetClock(MONDAY + timedelta(days=1))
    async with service(quiet_bus, clock, {"release_every": "2d"}) as harness:
        statistics = running(harness)
        registry = quiet_bus.metrics.registry
        seen: list[int] = []
        for hours in (0, 1, 48, 49, 96, 97, 140):  # from Tuesday 00:00 to Sunday 20:00
            clock.time = MONDAY + timedelta(days=1, hours=hours)
            await statistics.tick()
            seen.append(len(await releases(quiet_bus)))
        refused_while_open = sample(
            registry, "citybus_statistics_releases_total", dataset=HOURS, outcome="refused"
        )
        clock.time = AFTER
        await statistics.tick()
        await statistics.tick()
        refused = sample(registry, "citybus_statistics_releases_total", dataset=HOURS, outcome="refused")
    assert seen == [1, 1, 2, 2, 2, 2, 2]
    published = await releases(quiet_bus)
    assert [(a.release, a.final, a.privacy.spent) for a in published] == [(1, False, 1.0), (2, False, 2.0)]
    assert (refused_while_open, refused) == (1, 2)  # the third provisional, then the final: once each


async def test_two_service_processes_share_the_budget_and_make_one_final_release(quiet_bus: Bus) -> None:
    """Two instances, each on its own connection with its own memory, sharing only the server's
    buckets: the final release is made once, and concurrent requests never overspend."""
    other = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests/second")
    await other.connect(quiet_bus.url)
    clock = SetClock(MONDAY + timedelta(days=3))
    try:
        async with service(quiet_bus, clock) as first, service(other, clock) as second:
            await offered(quiet_bus, first, opportunity("o1", BRAGERNES))
            await took_part(quiet_bus, *(activity(n, "o1") for n in range(1, 9)))
            await wait_for(
                lambda: (
                    sum(
                        sample(b.metrics.registry, "citybus_statistics_contributions_total", action="counted")
                        for b in (quiet_bus, other)
                    )
                    >= 8
                )
            )
            clock.time = AFTER
            await asyncio.gather(running(first).tick(), running(second).tick())
            # both processes at once, each through its own state (and analysts asking either)
            hours = running(first).datasets[HOURS]
            receipts = await asyncio.gather(
                *(running(harness).release(hours, WEEK) for harness in (first, second) * 4),
                *(ask_release(client) for client in (quiet_bus, other)),
            )
            record = await running(second).budget.record(HOURS, WEEK)
    finally:
        await other.drain()
    assert sorted(r.status for r in receipts) == ["refused"] * 9 + ["released"]
    published = await releases(quiet_bus)
    assert sorted((a.release, a.final) for a in published) == [(1, True), (2, False)]
    assert (record.spent, record.releases, record.final) == (2.0, 2, True)
    # the week before was due when they started: released once too
    assert [(a.release, a.final) for a in await releases(quiet_bus, period="2018-W34")] == [(1, True)]


# -- erasure --------------------------------------------------------------------------------------


async def test_an_erased_person_is_forgotten_heard_or_missed(quiet_bus: Bus) -> None:
    clock = SetClock(MONDAY + timedelta(days=3))
    async with service(quiet_bus, clock, EXACT) as harness:
        statistics = running(harness)
        await offered(quiet_bus, harness, opportunity("o1", BRAGERNES))
        await took_part(quiet_bus, *(activity(n, "o1") for n in (1, 2, 3)))
        await counted(quiet_bus, 3)
        gone = await quiet_bus.vault.ref(volunteer(3))
        assert await quiet_bus.vault.destroy(gone)  # what an erasure does (the rights engine's)
        await wait_for(
            lambda: (
                sample(quiet_bus.metrics.registry, "citybus_statistics_contributions_total", action="erased")
                >= 1
            )
        )
        assert await statistics.contributions.of(HOURS, WEEK, gone) == {}
        assert (await ask_release(quiet_bus)).status == "released"
    # erased while the service is down: it learns it from the vault when it starts
    assert await quiet_bus.vault.destroy(await quiet_bus.vault.ref(volunteer(2)))
    async with service(quiet_bus, clock, EXACT):
        assert (await ask_release(quiet_bus)).status == "released"
    first, second = await releases(quiet_bus)
    assert figures(table(first)[("bragernes", "lifting")]) == ("released", 2.0, 6.0)
    assert table(second)[("bragernes", "lifting")].reason == "too-few"  # one person left, k = 2


async def test_contributions_are_forgotten_a_year_after_their_week(quiet_bus: Bus) -> None:
    """Kept no longer than the activity they were counted from (community.volunteer-activity keeps a
    year): the first tick of a later period empties them, and never a week too early."""
    clock = SetClock(MONDAY + timedelta(days=3))
    async with service(quiet_bus, clock, EXACT) as harness:
        statistics = running(harness)
        await offered(quiet_bus, harness, opportunity("o1", BRAGERNES))
        await took_part(quiet_bus, *(activity(n, "o1") for n in (1, 2, 3)))
        await counted(quiet_bus, 3)
        clock.time = MONDAY + timedelta(days=364)  # the week ended 357 days ago: kept
        await statistics.tick()
        assert len(await statistics.contributions.period(HOURS, WEEK)) == 3
        clock.time = MONDAY + timedelta(days=7 + 366)  # more than a year after the week ended
        await statistics.tick()
        assert await statistics.contributions.period(HOURS, WEEK) == {}
        expired = sample(
            quiet_bus.metrics.registry, "citybus_statistics_contributions_total", action="expired"
        )
        assert expired == 3


# -- comparisons ----------------------------------------------------------------------------------


async def test_a_comparison_answers_the_person_with_their_own_figures_and_publishes_nothing(
    quiet_bus: Bus,
) -> None:
    clock = SetClock(MONDAY + timedelta(days=3))
    with structlog.testing.capture_logs() as logs:
        async with service(quiet_bus, clock, EXACT) as harness:
            await offered(
                quiet_bus, harness, opportunity("o1", BRAGERNES), opportunity("o2", KONNERUD, ("first-aid",))
            )
            await took_part(
                quiet_bus, *(activity(n, "o1") for n in (1, 2, 3)), activity(1, "o2", ("first-aid",))
            )
            await counted(quiet_bus, 4)
            before_release = await compare(quiet_bus, 1)
            await ask_release(quiet_bus)
            station = AirQualityObserved.example()
            assert isinstance(station, AirQualityObserved)
            for n, (name, value) in enumerate(
                (("bangelokka", 14.0), ("bangelokka", 16.0), ("nedre-eiker", 9.0))
            ):
                await quiet_bus.publish(
                    msgspec.structs.replace(
                        station, station=name, value=value, observed_at=MONDAY + timedelta(hours=n)
                    ),
                    provenance=Provenance.SENSOR,
                    source="/tests",
                )
            await wait_for(
                lambda: (
                    sample(
                        quiet_bus.metrics.registry,
                        "citybus_statistics_observations_total",
                        dataset="air-quality",
                    )
                    >= 3
                )
            )
            assert (await ask_release(quiet_bus, "air-quality")).status == "released"
            sizes = await stream_sizes(quiet_bus)
            mine = await compare(quiet_bus, 1, commute=["bangelokka"])
            nobody = await compare(quiet_bus, 9)
            assert await stream_sizes(quiet_bus) == sizes  # nothing published, nothing stored
            assert harness.published(Comparison) == []
            with pytest.raises(RequestRefusedError, match="names another person"):
                await forged_comparison(quiet_bus, sent_as=volunteer(2), naming=volunteer(1))
            registry = quiet_bus.metrics.registry
    assert (before_release.release, before_release.released) == (0, ())
    assert [(f.group, f.value) for f in before_release.yours] == [
        (("bragernes", "lifting"), 3.0),
        (("konnerud", "first-aid"), 3.0),
    ]
    assert "nothing" in before_release.note

    (released,) = await releases(quiet_bus)
    rows = table(released)
    assert (mine.release, mine.period, mine.unit) == (1, WEEK, "h")
    assert [(f.group, f.value, f.released_mean) for f in mine.yours] == [
        (("bragernes", "lifting"), 3.0, rows[("bragernes", "lifting")].mean),
        (("konnerud", "first-aid"), 3.0, None),  # one person in it: suppressed, nothing to compare with
    ]
    # the rows compared with are the published ones for the person's groups and their totals
    assert set(mine.released) <= set(released.rows)
    assert {r.group for r in mine.released} >= {
        ("bragernes", "lifting"),
        ("all", "all"),
        ("bragernes", "all"),
    }
    assert ("konnerud", "first-aid") in {r.group for r in mine.released}
    assert {r.group[0] for r in mine.commute} == {"bangelokka"}
    (air,) = mine.commute
    assert (air.count, air.mean, air.min, air.max) == (2.0, 15.0, 14.0, 16.0)
    assert (nobody.yours, nobody.release) == ((), 1)
    assert {r.group for r in nobody.released} == {("all", "all")}

    text = repr(logs)
    assert "comparison answered" in text
    refs = [await quiet_bus.vault.ref(volunteer(n)) for n in (1, 2, 3, 9)]
    for secret in (*(volunteer(n) for n in (1, 2, 3, 9)), *refs):
        assert secret not in text
    exposed = generate_latest(registry).decode()
    assert 'citybus_statistics_comparisons_total{dataset="volunteer-hours"} 3.0' in exposed
    # the week asked for, and the week before it (its final release, due when the service started)
    assert 'citybus_statistics_releases_total{dataset="volunteer-hours",outcome="released"} 2.0' in exposed
    for secret in (volunteer(1), refs[0]):
        assert secret not in exposed


async def forged_comparison(bus: Bus, *, sent_as: str, naming: str) -> None:
    """A comparison request naming ``naming`` in its body, sent on ``sent_as``'s subject."""
    subject = request_filter(ComparisonRequest, sent_as)
    headers = build_headers(
        ComparisonRequest.__contract__,
        event_id=new_event_id(),
        source="/tests",
        time=datetime.now(UTC),
        provenance=Provenance.MANUAL,
    )
    body = msgspec.json.encode(ComparisonRequest(person_id=naming, period=WEEK))
    reply = await bus.nc.request(subject, body, headers=headers, timeout=10)
    raise_for_refusal(reply.headers, subject)


# -- restarts -------------------------------------------------------------------------------------


async def test_a_restart_keeps_the_budget_the_contributions_and_the_releases(quiet_bus: Bus) -> None:
    clock = SetClock(MONDAY + timedelta(days=3))
    async with service(quiet_bus, clock) as harness:
        await offered(quiet_bus, harness, opportunity("o1", BRAGERNES))
        await took_part(quiet_bus, *(activity(n, "o1") for n in range(1, 9)))
        await counted(quiet_bus, 8)
        assert (await ask_release(quiet_bus)).spent == 1.0
    async with service(quiet_bus, clock) as restarted:
        mine = await compare(quiet_bus, 1)
        kept = await running(restarted).contributions.of(HOURS, WEEK, await quiet_bus.vault.ref(volunteer(1)))
        second, third = await ask_release(quiet_bus), await ask_release(quiet_bus)
    assert mine.release == 1 and [(f.group, f.value) for f in mine.yours] == [(("bragernes", "lifting"), 3.0)]
    assert [(item, i.group, i.value) for item, i in kept.items()] == [("o1", ("bragernes", "lifting"), 3.0)]
    assert (second.status, second.release, second.spent) == ("released", 2, 2.0)
    assert third.status == "refused"
    assert [a.release for a in await releases(quiet_bus)] == [1, 2]


# -- public data sets -----------------------------------------------------------------------------


async def test_public_data_is_released_with_mechanism_none_once_the_day_has_settled(quiet_bus: Bus) -> None:
    """A replayed day arrives long after its week ended: its final release waits until no new
    observation has come for ``release_after``; a repeated message counts once."""
    clock = SetClock(MONDAY + timedelta(days=30))
    async with service(quiet_bus, clock) as harness:
        reading = BeachObservation.example()
        assert isinstance(reading, BeachObservation)
        # the fourth message repeats the second (the same reading, published again)
        for hour, water in ((0, 15.0), (1, 16.0), (2, 17.0), (1, 16.0)):
            time = MONDAY + timedelta(days=1, hours=hour)
            await quiet_bus.publish(
                msgspec.structs.replace(reading, water_temperature=water, observed_at=time),
                provenance=Provenance.RECORDED,
                source="/tests",
            )
        registry = quiet_bus.metrics.registry
        await wait_for(
            lambda: (
                sample(registry, "citybus_statistics_observations_total", dataset="beach-water-temperature")
                >= 4
            )
        )
        await running(harness).tick()
        assert await releases(quiet_bus, "beach-water-temperature") == []  # heard just now: not settled
        clock.time += timedelta(hours=1, seconds=1)
        await running(harness).tick()
        (final,) = await releases(quiet_bus, "beach-water-temperature")
        # what was held for the week is let go once it is released: asking again is refused, and
        # so is a data set nothing was heard of (an empty table would replace nothing with nothing)
        again, empty = (
            await ask_release(quiet_bus, "beach-water-temperature"),
            await ask_release(quiet_bus, "bike-use"),
        )
        assert again.status == empty.status == "refused"
        assert again.reason == f"the final release of beach-water-temperature for {WEEK} was made: see it"
        assert empty.reason == f"no observation of bike-use in {WEEK} has been heard here: nothing to release"
    assert (final.final, final.privacy.mechanism, final.counts, final.unit) == (
        True,
        "none",
        "observations",
        "Cel",
    )
    (site,) = [r for r in final.rows if r.group == (reading.site,)]
    assert (site.count, site.mean, site.median, site.min, site.max) == (3.0, 16.0, 16.0, 15.0, 17.0)
    assert site.label == "Bragernes strand"


# -- the volunteer platform ------------------------------------------------------------------------


async def test_the_volunteer_platforms_activity_counts_only_with_consent(quiet_bus: Bus) -> None:
    """The platform publishes activity (sealed) only for volunteers who consented to statistics;
    the service counts exactly those, and a withdrawal through the platform takes the hours away."""
    clock = SetClock(datetime(2026, 6, 6, 12, 0, tzinfo=UTC))  # the platform tests' opportunity: 2026-W23
    async with platform(quiet_bus), service(quiet_bus, clock, EXACT) as harness:
        bragernes = GeoPoint.at(*BRAGERNES)
        offered_ = await quiet_bus.request(
            offer("sota-day", 10, location=bragernes), OpportunityReceipt, timeout=30
        )
        assert offered_.data.accepted
        await known(harness, "sota-day")
        for n in (1, 2, 3):
            confirmed = await ask(quiet_bus, signup(n, "sota-day", purposes=("volunteering", "statistics")))
            assert confirmed.status == "confirmed"
        assert (await ask(quiet_bus, signup(4, "sota-day"))).status == "confirmed"  # no consent to statistics
        await counted(quiet_bus, 3)
        statistics = running(harness)
        refs = {await quiet_bus.vault.ref(volunteer(n)) for n in (1, 2, 3)}
        assert {ref for _, _, ref in await statistics.contributions.keys()} == refs
        first = await ask_release(quiet_bus, period="2026-W23")
        withdrawn = await ask(quiet_bus, signup(3, "sota-day", "withdraw", purposes=None))
        assert withdrawn.status == "withdrawn"
        await counted(quiet_bus, 1, "withdrawn")
        second = await ask_release(quiet_bus, period="2026-W23")
    assert (first.status, second.status) == ("released", "released")
    one, two = await releases(quiet_bus, period="2026-W23")
    assert figures(table(one)[("bragernes", "lifting")]) == ("released", 3.0, 9.0)
    assert figures(table(two)[("bragernes", "lifting")]) == ("released", 2.0, 6.0)


async def ask(bus: Bus, request: SignupRequest) -> SignupReceipt:
    return (await bus.request(request, SignupReceipt, timeout=60)).data


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"period": "fortnight"}, "key period: Invalid enum value 'fortnight'"),
        ({"release_after": "1 hour"}, "release_after: '1 hour' is not a duration: write it like 1h, 90m"),
        ({"release_every": "0s"}, "release_every: '0s' is no time at all"),
        (
            {"datasets": {"volunteer-hourz": {}}},
            "datasets.volunteer-hourz: there is no such data set; the data",
        ),
        (
            {"datasets": {HOURS: {"mechanism": "none"}}},
            'datasets.volunteer-hours: it holds personal data: its mechanism must be "k-anonymity" or',
        ),
        (
            {"datasets": {HOURS: {"k": 1}}},
            "datasets.volunteer-hours: it holds personal data: k must be at least 2",
        ),
        (
            {"datasets": {HOURS: {"budget": 0.2}}},
            "datasets.volunteer-hours: budget 0.2 cannot pay for one release",
        ),
        ({"datasets": {HOURS: {"epsilon": -1}}}, "datasets.volunteer-hours.epsilon: Expected `float` > 0.0"),
        (
            {"datasets": {HOURS: {"epsilon": "a lot"}}},
            "datasets.volunteer-hours.epsilon: Expected `float | null`",
        ),
        (
            {"datasets": {HOURS: {"spend": 1}}},
            "datasets.volunteer-hours: Object contains unknown field `spend`",
        ),
        (
            {"districts": {"all": {"lat": 59.7, "lon": 10.2, "name": "All"}}},
            "districts.all: a district's key is",
        ),
        (
            {"districts": {"sentrum": {"lat": 159.7, "lon": 10.2, "name": "S"}}},
            "districts.sentrum.lat: Expected",
        ),
        (
            {"datasets": {"air-quality": {"release_every": "soon"}}},
            "datasets.air-quality.release_every: 'soon'",
        ),
    ],
)
def test_a_bad_configuration_is_one_clear_error(table: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_instance("statistics", StatisticsService, table)
    message = str(raised.value)
    assert message.startswith(f"[adapters.statistics] (statistics): {error}"), message
    assert "\n" not in message


def test_the_configuration_overrides_the_defaults_per_data_set() -> None:
    config = parse_instance(
        "statistics",
        StatisticsService,
        {
            "period": "month",
            "release_every": "6h",
            "datasets": {
                HOURS: {"mechanism": "k-anonymity", "k": 10},
                "air-quality": {"release_every": "1h"},
            },
            "districts": {"sentrum": {"lat": 59.74, "lon": 10.2, "name": "Sentrum"}},
        },
    ).config
    assert isinstance(config, StatisticsConfig)
    hours = config.policy(HOURS)
    assert (hours.mechanism, hours.k, hours.epsilon, hours.budget) == ("k-anonymity", 10, 1.0, 2.0)
    assert config.policy("air-quality").mechanism == "none"
    assert (config.every("air-quality"), config.every(HOURS)) == (3600.0, 6 * 3600.0)
    assert [(d.slug, d.name) for d in config.district_list()] == [("sentrum", "Sentrum")]
