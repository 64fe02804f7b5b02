"""The journey planner at its edges, as a hostile but fair user finds them: what the plan says
must hold for the plan a traveller reads (a Pareto set of arrival and the changes it reports; an
arrive-by journey that leaves as late as it can, walking included), an early train, times no zone
can convert, and the night between two service days."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from adapters.journey import Planner, load_feed
from adapters.journey.live import runs_on
from adapters.journey.network import Network
from contracts import BikeStation, BikeStationStatus, GeoPoint, JourneyPlan, JourneyRequest, TrainCall
from tests.http_files import SOURCES

GTFS = SOURCES / "transport" / "entur_nsb_gtfs_2018.zip"
CEST = timezone(timedelta(hours=2))
MORNING = datetime(2018, 8, 28, 8, 0, tzinfo=CEST)
R10 = "NSB:ServiceJourney:1-1821-311"
DRAMMEN, HAMAR = "NSR:StopPlace:11", "NSR:StopPlace:219"


@pytest.fixture
def planner() -> Planner:
    return Planner(load_feed(GTFS))


def ask(planner: Planner, origin: str, destination: str, **options: Any) -> JourneyPlan:
    options.setdefault("depart", MORNING)
    request = JourneyRequest(request_id="t", origin=origin, destination=destination, **options)
    return planner.answer(request, MORNING)


def with_racks(planner: Planner) -> None:
    """Drammen's real racks (OpenStreetMap), each with bikes and free docks."""
    data = json.loads((SOURCES / "bikes" / "drammen_bike_stations_osm.json").read_text())
    for rack in data["stations"]:
        ident, point = str(rack["id"]), GeoPoint(coordinates=(rack["lon"], rack["lat"]))
        planner.racks.station(BikeStation(station_id=ident, name=rack["name"], location=point))
        planner.racks.status(
            BikeStationStatus(
                station_id=ident,
                num_bikes_available=3,
                num_docks_available=5,
                is_renting=True,
                is_returning=True,
                reported_at=MORNING,
            )
        )


def test_the_journeys_a_traveller_reads_are_a_pareto_set(planner: Planner) -> None:
    # Billingstad to Hvalstad: the L1 (no changes, 13:08) and a 2.8 km walk (no changes, 13:30)
    noon = MORNING.replace(hour=12, minute=55)
    plan = ask(planner, "NSR:StopPlace:577", "NSR:StopPlace:295", depart=noon, max_walk=5000)
    assert plan.status == "ok", plan.message
    for faster, slower in zip(plan.journeys, plan.journeys[1:], strict=False):
        assert faster.arrival < slower.arrival and faster.changes > slower.changes, plan.journeys


def test_the_pareto_set_counts_a_city_bike_as_the_plan_does(planner: Planner) -> None:
    with_racks(planner)
    # Sandvika bussterminal to a street in Drammen: a train and a bike, or two trains (a change each)
    plan = ask(
        planner, "NSR:StopPlace:4030", "59.75644,10.22644", depart=MORNING.replace(minute=36), max_walk=2000
    )
    assert plan.status == "ok", plan.message
    changes = [j.changes for j in plan.journeys]
    assert changes == sorted(set(changes), reverse=True), plan.journeys


def test_arrive_by_on_foot_leaves_as_late_as_the_walk_allows(planner: Planner) -> None:
    deadline = datetime(2018, 8, 28, 3, 0, tzinfo=CEST)  # no train leaves Drammen near then
    plan = ask(planner, "59.7420,10.2050", "drammen", depart=None, arrive_by=deadline, bikes=False)
    assert plan.status == "ok", plan.message
    walk = plan.journeys[0].legs[0]
    assert walk.mode == "walk" and walk.arrival == deadline, walk


def test_arrive_by_offers_fewer_changes_leaving_earlier(planner: Planner) -> None:
    deadline = datetime(2018, 8, 28, 22, 0, tzinfo=CEST)
    plan = ask(planner, "drammen", "Trondheim S", depart=None, arrive_by=deadline, max_walk=0, bikes=False)
    assert plan.status == "ok", plan.message
    # the latest departure changes twice (via Røros); leaving 13:17 changes once, at Oslo S
    assert [(j.departure.strftime("%H:%M"), j.changes) for j in plan.journeys] == [("13:57", 2), ("13:17", 1)]
    for later, earlier in zip(plan.journeys, plan.journeys[1:], strict=False):
        assert later.departure > earlier.departure and later.changes > earlier.changes
    assert all(j.arrival <= deadline for j in plan.journeys)


@pytest.mark.parametrize(
    "when",
    [
        {"depart": datetime(1, 1, 1, 0, 0, tzinfo=CEST)},
        {"depart": datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-2)))},
        {"depart": None, "arrive_by": datetime(1, 1, 1, 0, 30, tzinfo=CEST)},
    ],
)
def test_a_time_no_zone_can_convert_is_outside_the_timetable(planner: Planner, when: dict[str, Any]) -> None:
    plan = ask(planner, "drammen", "Oslo S", **when)
    assert plan.status == "outside-validity"
    assert plan.message.startswith("the timetable runs 2018-08-18 to 2018-12-08;"), plan.message


def test_an_early_train_still_leaves_later_stops_on_time(planner: Planner) -> None:
    before = ask(planner, DRAMMEN, HAMAR, depart=MORNING.replace(minute=50), max_walk=0, bikes=False)
    assert before.journeys[0].legs[0].service_journey == R10
    early = TrainCall(
        service_journey=R10,
        line="R10",
        operator="NSB",
        stop_place=DRAMMEN,
        stop_name="Drammen stasjon",
        sequence=0,
        aimed_departure=datetime(2018, 8, 28, 8, 57, tzinfo=CEST),
        expected_departure=datetime(2018, 8, 28, 8, 54, tzinfo=CEST),
        status="estimated",
    )
    assert planner.take_call(early) == "applied"
    after = ask(planner, DRAMMEN, HAMAR, depart=MORNING.replace(minute=50), max_walk=0, bikes=False)
    leg = after.journeys[0].legs[0]
    assert leg.service_journey == R10
    # a train ahead of time at Drammen waits at the stations after it: Hamar is not reached early
    assert after.arrival == before.arrival


def test_just_before_midnight_the_first_train_after_it_is_taken(planner: Planner) -> None:
    late = ask(planner, "drammen", "Oslo S", depart=datetime(2018, 8, 28, 23, 55, tzinfo=CEST), max_walk=0)
    midnight = ask(planner, "drammen", "Oslo S", depart=datetime(2018, 8, 29, 0, 0, tzinfo=CEST), max_walk=0)
    # leaving five minutes earlier can never arrive later: the L13 at 00:05 is there to catch
    assert midnight.arrival == datetime(2018, 8, 29, 0, 41, tzinfo=CEST)
    assert late.arrival == midnight.arrival, late.message


def late_call(planner: Planner, trip_id: str, service_date: date, position: int, minutes: int) -> TrainCall:
    """A live call saying ``trip_id`` leaves its call at ``position`` ``minutes`` late."""
    feed = planner.feed
    trip = next(t for t in feed.trips if t.id == trip_id)
    place = feed.places[trip.places[position]]
    aimed = feed.instant(feed.origin(service_date) + trip.departures[position])
    return TrainCall(
        service_journey=trip.id,
        line=trip.line,
        operator="NSB",
        stop_place=place.id,
        stop_name=place.name,
        sequence=position,
        aimed_departure=aimed,
        expected_departure=aimed + timedelta(minutes=minutes),
        status="estimated",
    )


# the L2 of 2018-08-27 leaves Skøyen at 23:53 and reaches Stabekk at 23:59 (stop_times.txt)
L2_LATE_EVENING, STABEKK, SKOYEN = (
    "NSB:ServiceJourney:1-1672-2778",
    "NSR:StopPlace:706",
    "NSR:StopPlace:152",
)


@pytest.mark.parametrize("built_first", [True, False])
def test_a_train_of_the_day_before_late_past_midnight_can_be_caught(
    planner: Planner, built_first: bool
) -> None:
    trip = next(t for t in planner.feed.trips if t.id == L2_LATE_EVENING)
    position = trip.places.index(planner.feed.ids[SKOYEN])
    if built_first:
        planner.network(date(2018, 8, 28))
    assert (
        planner.take_call(late_call(planner, L2_LATE_EVENING, date(2018, 8, 27), position, 20)) == "applied"
    )
    plan = ask(
        planner, SKOYEN, STABEKK, depart=datetime(2018, 8, 28, 0, 5, tzinfo=CEST), max_walk=0, bikes=False
    )
    leg = plan.journeys[0].legs[0]
    # 20 minutes late, it leaves Skøyen at 00:13, before the next train (00:17)
    assert (leg.service_journey, leg.known) == (L2_LATE_EVENING, "live"), plan.message
    assert leg.departure == datetime(2018, 8, 28, 0, 13, tzinfo=CEST)


def test_a_network_changed_by_live_calls_is_the_network_built_with_them(planner: Planner) -> None:
    day = date(2018, 8, 28)
    kept = planner.network(day)
    drammen = planner.feed.ids[DRAMMEN]
    for index in planner.feed.trips_on(day):
        trip = planner.feed.trips[index]
        if drammen in trip.places:  # every train through Drammen late, some enough to be overtaken
            minutes = 2 + (index % 3) * 45
            planner.take_call(late_call(planner, trip.id, day, trip.places.index(drammen), minutes))

    def shape(
        network: Network,
    ) -> list[tuple[tuple[int, ...], tuple[tuple[str, date, tuple[int, ...]], ...]]]:
        return sorted(
            (p.places, tuple((r.trip.id, r.service_date, r.departures) for r in p.runs))
            for p in network.patterns
        )

    fresh = Network(planner.feed, day, runs_on(planner.feed, day, planner.live))
    assert len(kept.patterns) > 184  # overtaking split some
    assert shape(kept) == shape(fresh)
    for place in range(len(planner.feed.places)):
        assert sorted(kept.patterns[i].places[p] for i, p in kept.at[place]) == [place] * len(kept.at[place])


def test_a_walk_instead_of_a_city_bike_is_offered_as_one_change_fewer(planner: Planner) -> None:
    with_racks(planner)
    # Oslo S to Bragernes torg: the L12 to Drammen, then a bike across the river (08:47, 1 change)
    # or a 650 m walk (08:50, no changes); both are in the Pareto set of arrival and changes
    plan = ask(planner, "Oslo S", "59.7446,10.2046", max_walk=1500)
    assert [j.changes for j in plan.journeys] == [1, 0], plan.journeys


def test_arriving_by_just_after_midnight_leaves_as_late_as_the_evening_allows(planner: Planner) -> None:
    deadline = datetime(2018, 8, 29, 0, 8, tzinfo=CEST)
    plan = ask(planner, SKOYEN, STABEKK, depart=None, arrive_by=deadline, max_walk=0, bikes=False)
    # the L2 that leaves Skøyen at 23:53 and ends its run at Stabekk at 23:59 (not 23:47's train)
    assert plan.departure == datetime(2018, 8, 28, 23, 53, tzinfo=CEST), plan.message


def test_a_rack_that_moves_is_cycled_from_where_it_stands_now(planner: Planner) -> None:
    with_racks(planner)
    origin = "59.7446,10.2046"  # Bragernes torg, across the river from the station
    assert "bike" in [leg.mode for leg in ask(planner, origin, "Mjøndalen").journeys[0].legs]
    for rack in list(planner.racks.racks.values()):  # every rack carried off to the North Cape
        far = GeoPoint(coordinates=(25.78, 71.17))
        planner.racks.station(BikeStation(station_id=rack.id, name=rack.name, location=far))
    assert "bike" not in [leg.mode for leg in ask(planner, origin, "Mjøndalen").journeys[0].legs]
