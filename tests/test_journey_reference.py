"""Issue 17's reference mode: the journey planner's earliest arrivals equal an independent brute force's.

The brute force (:mod:`tests.journey_reference`) is first checked on facts looked up by hand in the
shipped feed's ``stop_times.txt``. Then the planner and the brute force answer the same queries: 1,000
seeded random ones (stop places with calls, dates over the whole feed including weekends and the end of
summer time on 2018-10-28, times over the whole day) and 100 about calls that take up or set down no
one, which random queries seldom meet. They must agree on every one:

- the plan's ``arrival`` is the brute force's earliest arrival as an instant, ``no-route`` exactly
  when the brute force finds none, and every journey of the plan can be ridden as the timetable says;
- its journeys are the Pareto set of (changes, arrival) that a second brute force finds by rounds.

The first 50 are asked again of a running ``journey-planner`` adapter, over a real nats-server. A
mismatch names its query and the ``citybus journey`` command that asks the same.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from adapters.journey import JourneyPlanner, Planner, load_feed
from adapters.testing import AdapterHarness
from bus import Bus
from bus.server import EmbeddedServer
from contracts.journey import Journey, JourneyPlan, JourneyRequest
from tests.conftest import open_bus
from tests.journey_reference import (
    CHANGE_SECONDS,
    OSLO,
    Reached,
    ReferenceFeed,
    ride_fault,
    service_day_origin,
)

FEED = Path(__file__).resolve().parent.parent / "sandbox/data/sources/transport/entur_nsb_gtfs_2018.zip"
FIRST_DAY, LAST_DAY = date(2018, 8, 18), date(2018, 12, 8)  # the feed's validity
DST_END = date(2018, 10, 28)  # 03:00 summer time becomes 02:00 winter time

DRAMMEN, OSLO_S, ASKER = "NSR:StopPlace:11", "NSR:StopPlace:337", "NSR:StopPlace:418"
LEIRSUND, NERDRUM, GARDERMOEN = "NSR:StopPlace:475", "NSR:StopPlace:254", "NSR:StopPlace:269"
NORDSTRAND, BERGEN = "NSR:StopPlace:279", "NSR:StopPlace:548"


QUERIES = 1000
"""Random queries planned both ways; every one must agree."""

MAX_CHANGES = 10
"""Changes a journey may have: the most a request allows, more than any earliest arrival needs here."""

RESTRICTED_QUERIES = 100
"""Queries about calls that take up or set down no one, planned both ways as well."""

BUS_QUERIES = 50
"""The first of them asked again over the bus, of a running journey-planner adapter."""


@pytest.fixture(scope="module")
def reference() -> ReferenceFeed:
    """The shipped feed, read once by the brute force."""
    return ReferenceFeed(FEED)


@pytest.fixture(scope="module")
def planner() -> Planner:
    """The planner on the shipped feed, loaded once."""
    return Planner(load_feed(FEED))


def local(day: date, hh: int, mm: int, *, fold: int = 0) -> datetime:
    """A wall-clock time in Oslo."""
    return datetime.combine(day, time(hh, mm), tzinfo=OSLO).replace(fold=fold)


TUESDAY = date(2018, 8, 28)


# -- the brute force on facts looked up by hand ---------------------------------------------------


def test_service_day_origin_is_noon_minus_twelve_hours() -> None:
    assert service_day_origin(TUESDAY) == datetime(2018, 8, 27, 22, 0, tzinfo=UTC)  # local midnight
    # On the day summer time ends, local noon is 11:00 UTC: the day's times count from 01:00 CEST.
    assert service_day_origin(DST_END) == datetime(2018, 10, 27, 23, 0, tzinfo=UTC)


def test_direct_train_drammen_to_oslo(reference: ReferenceFeed) -> None:
    # NSB:ServiceJourney:1-705-1615 leaves Drammen (NSR:Quay:18) 08:05, reaches Oslo S (NSR:Quay:571)
    # 08:41. The 08:00 from Drammen goes the other way (Oslo S is its first call).
    reached = reference.earliest_arrival(DRAMMEN, OSLO_S, local(TUESDAY, 8, 0))
    assert reached is not None
    assert (reached.arrival, reached.trips) == (local(TUESDAY, 8, 41), 1)
    # Leaving at 08:06 misses it: 1-2516-856 leaves 08:12 and reaches Oslo S 08:45.
    later = reference.earliest_arrival(DRAMMEN, OSLO_S, local(TUESDAY, 8, 6))
    assert later is not None and later.arrival == local(TUESDAY, 8, 45)


def test_departure_exactly_at_the_asked_time_is_taken(reference: ReferenceFeed) -> None:
    reached = reference.earliest_arrival(DRAMMEN, OSLO_S, local(TUESDAY, 8, 5))
    assert reached is not None and reached.arrival == local(TUESDAY, 8, 41)


def test_no_boarding_where_pickup_type_is_1(reference: ReferenceFeed) -> None:
    # The Bergen train 1-2204-62 calls at Drammen 14:12 and Oslo S 14:45 but only sets down at
    # Drammen (pickup_type 1); the next one to board is 1-2169-520, Drammen 14:17, Oslo S 14:51.
    reached = reference.earliest_arrival(DRAMMEN, OSLO_S, local(TUESDAY, 14, 12))
    assert reached is not None and reached.arrival == local(TUESDAY, 14, 51)
    # It would set down at Asker 14:22 (drop_off_type 0) but cannot be boarded at Drammen to get
    # there: 1-2169-520 reaches Asker 14:28.
    asker = reference.earliest_arrival(DRAMMEN, ASKER, local(TUESDAY, 14, 12))
    assert asker is not None and asker.arrival == local(TUESDAY, 14, 28)


def test_a_change_of_exactly_120_s_at_a_stop_place(reference: ReferenceFeed) -> None:
    # 1-707-1616 Leirsund 08:55 → Lillestrøm 09:03 (NSR:Quay:747), then 1-2137-508 Lillestrøm 09:05
    # (NSR:Quay:754, another quay of the same stop place) → Oslo Lufthavn 09:17: two trips.
    reached = reference.earliest_arrival(LEIRSUND, GARDERMOEN, local(TUESDAY, 8, 55))
    assert reached is not None
    assert (reached.arrival, reached.trips) == (local(TUESDAY, 9, 17), 2)


def test_a_change_of_60_s_is_too_short(reference: ReferenceFeed) -> None:
    # 1-254-1008 Nerdrum 08:38 → Lillestrøm 08:44; 1-1801-309 leaves Lillestrøm 08:45 and reaches
    # Oslo Lufthavn 08:57, but 60 s is too short a change: the next is 1-2137-508 at 09:05 → 09:17.
    reached = reference.earliest_arrival(NERDRUM, GARDERMOEN, local(TUESDAY, 8, 38))
    assert reached is not None
    assert (reached.arrival, reached.trips) == (local(TUESDAY, 9, 17), 2)


def test_after_midnight_the_previous_days_trips_still_run(reference: ReferenceFeed) -> None:
    # 1-1667-2777 runs on 2018-10-27 and leaves Oslo S (NSR:Quay:551) at 24:05, Nordstrand 24:10:
    # 00:05 and 00:10 summer time on the 28th.
    reached = reference.earliest_arrival(OSLO_S, NORDSTRAND, local(DST_END, 0, 1))
    assert reached is not None and reached.arrival == datetime(2018, 10, 27, 22, 10, tzinfo=UTC)


def test_times_count_from_noon_minus_twelve_hours_when_summer_time_ends(reference: ReferenceFeed) -> None:
    # The next, 1-1679-2781 of 2018-10-28, is timed 01:05 at Oslo S and 01:10 at Nordstrand; that
    # day's times count from 01:00 summer time, so it arrives 02:10 summer time (00:10 UTC), not 01:10.
    reached = reference.earliest_arrival(OSLO_S, NORDSTRAND, local(DST_END, 0, 6))
    assert reached is not None and reached.arrival == datetime(2018, 10, 28, 0, 10, tzinfo=UTC)


def test_the_night_train_timed_past_24_00(reference: ReferenceFeed) -> None:
    # The last train from Oslo S to Bergen, 1-2195-605, leaves 23:25 and arrives 30:49 (06:49).
    reached = reference.earliest_arrival(OSLO_S, BERGEN, local(TUESDAY, 23, 25))
    assert reached is not None and reached.arrival == local(TUESDAY + timedelta(days=1), 6, 49)


def test_after_the_last_train_the_next_mornings_first(reference: ReferenceFeed) -> None:
    # After 23:25 no trip of the 28th (nor any still running from the 27th) leaves Oslo S for Bergen:
    # the next day's first one does, and arrives at 14:57, within a day.
    reached = reference.earliest_arrival(OSLO_S, BERGEN, local(TUESDAY, 23, 26))
    assert reached is not None and reached.arrival == local(TUESDAY + timedelta(days=1), 14, 57)


def test_no_route_on_the_timetables_last_evening(reference: ReferenceFeed) -> None:
    # 2018-12-08 is the feed's last day: after its last train to Bergen there is no next morning.
    assert reference.earliest_arrival(OSLO_S, BERGEN, local(date(2018, 12, 8), 23, 26)) is None


# -- random queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One reference-mode query: from a stop place to another, leaving at or after a time."""

    number: int
    origin: str
    destination: str
    depart: datetime

    def __str__(self) -> str:
        return f"query {self.number}: {self.origin} → {self.destination} depart {self.depart.isoformat()}"


def random_queries(reference: ReferenceFeed, count: int, seed: int = 17) -> list[Query]:
    """``count`` queries between distinct stop places, on dates over the feed's validity (every tenth on
    the day summer time ends), at times over the whole day, some written in UTC. Nine in ten join stop
    places that the day's trips call at (most places are served only on some days, so pairs drawn from
    all of them would mostly have no route); the tenth, any places with calls in the feed."""
    rng = random.Random(seed)
    everywhere = sorted(reference.places)
    days = (LAST_DAY - FIRST_DAY).days + 1
    queries = []
    served: dict[date, list[str]] = {}
    for number in range(count):
        day = DST_END if number % 10 == 0 else FIRST_DAY + timedelta(days=rng.randrange(days))
        if day not in served:
            served[day] = sorted({p for t in reference.day_trips(day) for p in t.places})
        places = everywhere if number % 10 == 9 else served[day]
        origin, destination = rng.sample(places, 2)
        wall = datetime.combine(day, time()) + timedelta(seconds=rng.randrange(24 * 3600))
        depart = wall.replace(tzinfo=OSLO, fold=rng.randrange(2))
        if number % 4 == 1:
            depart = depart.astimezone(UTC)
        queries.append(Query(number, origin, destination, depart))
    return queries


def test_random_queries_cover_the_feed(queries: list[Query]) -> None:
    queries = queries[:QUERIES]
    days = {q.depart.astimezone(OSLO).date() for q in queries}
    assert min(days) <= FIRST_DAY + timedelta(days=3) and max(days) >= LAST_DAY - timedelta(days=3)
    assert DST_END in days and {5, 6} <= {d.weekday() for d in days}
    hours = {q.depart.astimezone(OSLO).hour for q in queries}
    assert hours == set(range(24))


# -- the planner against the brute force -----------------------------------------------------------


def reference_request(query: Query) -> JourneyRequest:
    """The query in the reference mode: no walking, no bikes, 120 s changes, changes enough."""
    return JourneyRequest(
        request_id=f"ref{query.number}",
        origin=query.origin,
        destination=query.destination,
        depart=query.depart,
        max_walk=0,
        bikes=False,
        change=CHANGE_SECONDS,
        max_changes=MAX_CHANGES,
    )


def replay(query: Query) -> str:
    """The command that asks a running planner the same (at the command's 6 changes at most: as many as
    any earliest arrival here needs)."""
    return (
        f"citybus journey {query.origin} {query.destination} --depart {query.depart.isoformat()} "
        f"--max-walk 0 --no-bikes --change {CHANGE_SECONDS} --json"
    )


def journey_fault(reference: ReferenceFeed, query: Query, journey: Journey) -> str | None:
    """Why the planner's journey could not be travelled under the reference rules, or None."""
    day = query.depart.astimezone(OSLO).date()
    place, ready = query.origin, query.depart.timestamp()
    for number, leg in enumerate(journey.legs):
        ride = (leg.service_journey or "", leg.origin.stop_place or "", leg.destination.stop_place or "")
        if leg.mode == "walk" or leg.mode == "bike" or leg.known != "timetable":
            return f"leg {number} is a {leg.mode} leg known from {leg.known}"
        if ride[1] != place:
            return f"leg {number} starts at {ride[1]}, not at {place} where the journey is"
        if leg.departure.timestamp() < ready:
            return f"leg {number} leaves {leg.departure.isoformat()}, before it can be boarded"
        fault = ride_fault(reference, day, (*ride, leg.departure, leg.arrival))
        if fault is not None:
            return f"leg {number}: {fault}"
        place, ready = ride[2], leg.arrival.timestamp() + CHANGE_SECONDS
    if place != query.destination:
        return f"the journey ends at {place}"
    if journey.arrival.timestamp() != journey.legs[-1].arrival.timestamp():
        return f"the journey's arrival {journey.arrival.isoformat()} is not its last leg's"
    if journey.departure.timestamp() != journey.legs[0].departure.timestamp():
        return f"the journey's departure {journey.departure.isoformat()} is not its first leg's"
    if journey.changes != len(journey.legs) - 1:
        return f"the journey says {journey.changes} changes but rides {len(journey.legs)} trips"
    return None


def disagreement(
    reference: ReferenceFeed, query: Query, plan: JourneyPlan, expected: Reached | None
) -> str | None:
    """What is wrong with the planner's answer to a query, or None when it equals the brute force's."""
    if expected is None:
        if plan.status != "no-route":
            arrival = plan.arrival.isoformat() if plan.arrival else None
            return f"brute force: no route; planner: {plan.status} arrival {arrival} ({plan.message})"
        return None
    want = expected.arrival.astimezone(OSLO).isoformat()
    if plan.status != "ok" or plan.arrival is None:
        return f"brute force: {want} ({expected.trips} trips); planner: {plan.status} ({plan.message})"
    if plan.arrival.timestamp() != expected.arrival.timestamp():
        got = plan.arrival.astimezone(OSLO).isoformat()
        return f"brute force: {want} ({expected.trips} trips); planner: {got} ({plan.message})"
    if not plan.journeys or plan.journeys[0].arrival.timestamp() != plan.arrival.timestamp():
        return "the plan's arrival is not its first journey's"
    for journey in plan.journeys:
        fault = journey_fault(reference, query, journey)
        if fault is not None:
            return f"a journey cannot be travelled: {fault}"
    return None


def restricted_queries(reference: ReferenceFeed, count: int, seed: int = 17) -> list[Query]:
    """``count`` queries about calls within a trip that take up or set down no one (pickup or drop-off
    type 1), which random queries seldom meet (most such calls end or start a trip): from such a call
    at its departure to a later call of the trip, or to such a call from an earlier one."""
    rng = random.Random(seed)
    days = (LAST_DAY - FIRST_DAY).days + 1
    queries: list[Query] = []
    while len(queries) < count:
        trip = rng.choice(reference.day_trips(FIRST_DAY + timedelta(days=rng.randrange(days))))
        restricted = [i for i in range(1, len(trip.places) - 1) if not (trip.pickup[i] and trip.drop_off[i])]
        if not restricted:
            continue
        i = rng.choice(restricted)
        j = rng.randrange(i + 1, len(trip.places)) if not trip.pickup[i] else rng.randrange(i)
        start = min(i, j)
        depart = datetime.fromtimestamp(trip.departures[start], UTC).astimezone(OSLO)
        queries.append(
            Query(
                number=-1 - len(queries),
                origin=trip.places[start],
                destination=trip.places[max(i, j)],
                depart=depart,
            )
        )
    return queries


@pytest.fixture(scope="module")
def queries(reference: ReferenceFeed) -> list[Query]:
    """The random queries, then the restricted-call ones (numbered -1, -2, ...)."""
    return random_queries(reference, QUERIES) + restricted_queries(reference, RESTRICTED_QUERIES)


def pareto_disagreement(plan: JourneyPlan, fewest: list[tuple[int, datetime]]) -> str | None:
    """How the plan's journeys differ from the Pareto set of (trips, arrival) found by rounds, or None."""
    want = [(trips - 1, arrival.timestamp()) for trips, arrival in reversed(fewest)]
    got = [(journey.changes, journey.arrival.timestamp()) for journey in plan.journeys]
    if got == want:
        return None

    def shown(pairs: list[tuple[int, float]]) -> str:
        return ", ".join(f"{c} changes {datetime.fromtimestamp(a, OSLO):%H:%M}" for c, a in pairs) or "none"

    return f"brute force (rounds): {shown(want)}; planner: {shown(got)}"


@dataclass
class Outcome:
    """What the planner got wrong over all the queries, by kind."""

    answered: int = 0
    arrivals: list[str] = field(default_factory=list)
    pareto: list[str] = field(default_factory=list)
    brute_forces: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def outcome(reference: ReferenceFeed, planner: Planner, queries: list[Query]) -> Outcome:
    """Every query asked of the planner once, and its answer held against the brute force's."""
    found = Outcome()
    for query in queries:
        expected = reference.earliest_arrival(query.origin, query.destination, query.depart)
        fewest = reference.fewest_trips(query.origin, query.destination, query.depart, MAX_CHANGES + 1)
        by_passes = None if expected is None else expected.arrival.timestamp()
        if by_passes != (fewest[-1][1].timestamp() if fewest else None):
            found.brute_forces.append(f"{query}: passes {expected}, rounds {fewest}")
        found.answered += expected is not None
        plan = planner.answer(reference_request(query), now=query.depart)
        problem = disagreement(reference, query, plan, expected)
        if problem is not None:
            found.arrivals.append(f"{query}: {problem}\n    replay: {replay(query)}")
        elif expected is not None and (problem := pareto_disagreement(plan, fewest)) is not None:
            found.pareto.append(f"{query}: {problem}\n    replay: {replay(query)}")
    return found


def test_the_two_brute_forces_agree(outcome: Outcome, queries: list[Query]) -> None:
    assert outcome.answered >= len(queries) // 2  # the sample is not mostly "no route"
    assert not outcome.brute_forces, "\n".join(outcome.brute_forces[:25])


def test_planner_equals_brute_force(outcome: Outcome, queries: list[Query]) -> None:
    wrong = outcome.arrivals
    assert not wrong, f"{len(wrong)} of {len(queries)} queries disagree:\n" + "\n".join(wrong[:25])


def test_planner_pareto_set_equals_brute_force(outcome: Outcome, queries: list[Query]) -> None:
    """Each journey's changes and arrival: the fewest changes for each earlier arrival, nothing dominated."""
    wrong = outcome.pareto
    assert not wrong, f"{len(wrong)} of {len(queries)} Pareto sets differ:\n" + "\n".join(wrong[:25])


def test_a_ride_is_checked_against_the_timetable(reference: ReferenceFeed) -> None:
    sj = "NSB:ServiceJourney:"
    fine = (sj + "1-705-1615", DRAMMEN, OSLO_S, local(TUESDAY, 8, 5), local(TUESDAY, 8, 41))
    assert ride_fault(reference, TUESDAY, fine) is None
    not_taking_up = (sj + "1-2204-62", DRAMMEN, OSLO_S, local(TUESDAY, 14, 12), local(TUESDAY, 14, 45))
    assert ride_fault(reference, TUESDAY, not_taking_up) is not None
    backwards = (sj + "1-705-1615", OSLO_S, DRAMMEN, local(TUESDAY, 8, 41), local(TUESDAY, 8, 5))
    assert ride_fault(reference, TUESDAY, backwards) is not None
    # Its service has every date of the feed in calendar_dates.txt but 2018-09-22 and 2018-09-23.
    sunday = date(2018, 9, 23)
    not_running = (sj + "1-705-1615", DRAMMEN, OSLO_S, local(sunday, 8, 5), local(sunday, 8, 41))
    assert ride_fault(reference, sunday, not_running) is not None


@pytest.fixture
async def journey_planner(nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    """A journey-planner adapter on the shipped feed, on a real server; yields a client's bus."""
    config = {"timetable": {"file": str(FEED)}, "live": False, "bikes": False}
    adapter_bus, client = await open_bus(nats_server), await open_bus(nats_server)
    try:
        async with AdapterHarness(JourneyPlanner, config, instance="journey-planner", bus=adapter_bus):
            yield client
    finally:
        await client.drain()
        await adapter_bus.drain()


async def test_the_adapter_answers_over_the_bus_as_the_brute_force(
    reference: ReferenceFeed, queries: list[Query], journey_planner: Bus
) -> None:
    wrong = []
    for query in queries[:BUS_QUERIES]:
        expected = reference.earliest_arrival(query.origin, query.destination, query.depart)
        reply = await journey_planner.request(reference_request(query), JourneyPlan, timeout=10)
        assert reply.data.request_id == reference_request(query).request_id
        problem = disagreement(reference, query, reply.data, expected)
        if problem is not None:
            wrong.append(f"{query}: {problem}\n    replay: {replay(query)}")
    assert not wrong, f"{len(wrong)} of {BUS_QUERIES} queries over the bus disagree:\n" + "\n".join(wrong)
