"""The journey planner on the shipped NSB feed: places read as travellers type them, walking and city
bikes, arriving by a time, no route, times outside the timetable, the Pareto set, and a feed that
cannot be used. (The exact check of the routing against a brute force is test_journey_reference.py;
live trains are test_journey_live.py; the command and the bus are test_journey_up.py.)"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from adapters.journey import Planner, load_feed, read_feed
from adapters.journey.moving import Point, distance
from adapters.polling import SourceFormatError
from contracts import BikeStation, BikeStationStatus, GeoPoint, JourneyPlan, JourneyRequest
from tests.http_files import SOURCES

GTFS = SOURCES / "transport" / "entur_nsb_gtfs_2018.zip"
CEST = timezone(timedelta(hours=2))
MORNING = datetime(2018, 8, 28, 8, 0, tzinfo=CEST)
BRAGERNES_TORG = (59.7446, 10.2046)  # a city-bike rack across the river from the station


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner(load_feed(GTFS))


def ask(planner: Planner, origin: str, destination: str, **options: Any) -> JourneyPlan:
    options.setdefault("depart", MORNING)
    request = JourneyRequest(request_id="t", origin=origin, destination=destination, **options)
    return planner.answer(request, MORNING)


def stop_times(trip: str) -> dict[str, tuple[str, str]]:
    """A trip's (arrival, departure) by quay, read straight from the zip."""
    with zipfile.ZipFile(GTFS) as archive, archive.open("stop_times.txt") as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig"))
        return {r["stop_id"]: (r["arrival_time"], r["departure_time"]) for r in rows if r["trip_id"] == trip}


def test_the_feed_is_the_whole_nsb_network(planner: Planner) -> None:
    feed = planner.feed
    assert (len(feed.trips), len(feed.places)) == (4680, 493)
    assert (feed.valid_from.isoformat(), feed.valid_to.isoformat()) == ("2018-08-18", "2018-12-08")
    assert not feed.rejected
    assert feed.place("NSR:Quay:22") == feed.place("NSR:StopPlace:11")


def test_drammen_to_oslo_takes_the_first_train_and_its_times_are_the_timetables(planner: Planner) -> None:
    plan = ask(planner, "drammen", "Oslo S", max_walk=0, bikes=False)
    assert plan.status == "ok", plan.message
    leg = plan.journeys[0].legs[0]
    assert (leg.mode, leg.line, leg.known) == ("rail", "L13", "timetable")
    times = stop_times(str(leg.service_journey))
    departed = [
        d
        for quay, (_, d) in times.items()
        if planner.feed.place(quay) == planner.feed.place("NSR:StopPlace:11")
    ]
    arrived = [
        a
        for quay, (a, _) in times.items()
        if planner.feed.place(quay) == planner.feed.place("NSR:StopPlace:337")
    ]
    assert leg.departure.strftime("%H:%M:%S") == departed[0] == "08:05:00"
    assert leg.arrival.strftime("%H:%M:%S") == arrived[0] == "08:41:00"
    assert (plan.departure, plan.arrival) == (leg.departure, leg.arrival)
    assert plan.message == "Drammen stasjon 08:05 → Oslo S 08:41, no changes (L13)"


@pytest.mark.parametrize(
    ("text", "stop_place"),
    [
        ("drammen", "NSR:StopPlace:11"),
        ("Drammen stasjon", "NSR:StopPlace:11"),
        ("DRAMMEN  STASJON", "NSR:StopPlace:11"),
        ("NSR:Quay:22", "NSR:StopPlace:11"),
        ("Oslo S", "NSR:StopPlace:337"),
        ("oslo s", "NSR:StopPlace:337"),
        ("mjondalen", "NSR:StopPlace:187"),
        ("Mjøndalen", "NSR:StopPlace:187"),
        ("trondheim", "NSR:StopPlace:659"),
    ],
)
def test_places_are_matched_forgivingly(planner: Planner, text: str, stop_place: str) -> None:
    endpoint = planner.places.resolve(text)
    assert endpoint.place is not None
    assert planner.feed.places[endpoint.place].id == stop_place


def test_an_unknown_place_gets_the_nearest_names(planner: Planner) -> None:
    plan = ask(planner, "Drammen", "Lilehammer")
    assert plan.status == "unknown-place"
    assert plan.message.startswith("no stop place is called 'Lilehammer': did you mean ")
    assert any(name.startswith("Lillehammer") for name in plan.suggestions)
    assert not plan.journeys


def test_a_time_outside_the_timetable_says_its_dates(planner: Planner) -> None:
    plan = ask(planner, "drammen", "Oslo S", depart=datetime(2019, 1, 2, 8, 0, tzinfo=CEST))
    assert plan.status == "outside-validity"
    assert plan.message.startswith("the timetable runs 2018-08-18 to 2018-12-08; 2019-01-02 is outside it")
    assert (plan.valid_from, plan.valid_to) == ("2018-08-18", "2018-12-08")


def test_no_route_names_the_latest_departure_that_works(planner: Planner) -> None:
    # the timetable's last evening: no train after midnight to take (a day's journeys use the next
    # day's trains too, so on another evening the first morning train would be the answer)
    late = datetime(2018, 12, 8, 23, 30, tzinfo=timezone(timedelta(hours=1)))  # CET
    plan = ask(planner, "drammen", "Halden", depart=late, max_walk=0)
    assert plan.status == "no-route"
    assert plan.latest_departure is not None and plan.latest_departure < late
    # it does work, and a minute later nothing does
    assert ask(planner, "drammen", "Halden", depart=plan.latest_departure, max_walk=0).status == "ok"
    later = plan.latest_departure + timedelta(minutes=1)
    assert ask(planner, "drammen", "Halden", depart=later, max_walk=0).status == "no-route"


def test_arrive_by_leaves_as_late_as_possible(planner: Planner) -> None:
    deadline = datetime(2018, 8, 28, 9, 0, tzinfo=CEST)
    plan = ask(planner, "drammen", "Oslo S", depart=None, arrive_by=deadline, max_walk=0, bikes=False)
    assert plan.status == "ok", plan.message
    assert plan.arrival is not None and plan.departure is not None
    assert plan.arrival <= deadline
    # leaving a minute after its departure arrives too late
    later = ask(
        planner, "drammen", "Oslo S", depart=plan.departure + timedelta(minutes=1), max_walk=0, bikes=False
    )
    assert later.arrival is not None and later.arrival > deadline


def test_the_pareto_set_trades_changes_for_time(planner: Planner) -> None:
    plan = ask(planner, "drammen", "Trondheim S", max_walk=0, bikes=False)
    assert len(plan.journeys) >= 2
    for faster, slower in zip(plan.journeys, plan.journeys[1:], strict=False):
        assert faster.arrival < slower.arrival and faster.changes > slower.changes
    for journey in plan.journeys:
        rides = [leg for leg in journey.legs if leg.mode != "walk"]
        assert journey.changes == len(rides) - 1
        # each change leaves at least the change time, and the legs follow each other
        for before, after in zip(journey.legs, journey.legs[1:], strict=False):
            assert after.departure >= before.arrival
            if before.mode == "rail" and after.mode == "rail":
                assert after.departure - before.arrival >= timedelta(seconds=120)


def test_a_coordinate_walks_to_the_station(planner: Planner) -> None:
    near_station = "59.7420,10.2050"  # some 200 m from Drammen stasjon
    plan = ask(planner, near_station, "Oslo S", bikes=False)
    assert plan.status == "ok", plan.message
    walk, ride = plan.journeys[0].legs[:2]
    assert (walk.mode, walk.known, walk.destination.stop_place) == ("walk", "estimated", "NSR:StopPlace:11")
    metres = distance(Point(59.7420, 10.2050), Point(59.740105, 10.205235))
    assert walk.distance == pytest.approx(metres, abs=0.1)
    assert walk.arrival <= ride.departure
    assert plan.departure == walk.departure
    # too far to walk with max_walk 100
    assert ask(planner, near_station, "Oslo S", bikes=False, max_walk=100).status == "no-route"


def racks(planner: Planner, bikes: int) -> None:
    """The real racks of Drammen (OpenStreetMap), each with ``bikes`` bikes and free docks."""
    data = json.loads((SOURCES / "bikes" / "drammen_bike_stations_osm.json").read_text())
    for rack in data["stations"]:
        point = GeoPoint(coordinates=(rack["lon"], rack["lat"]))
        ident, name = str(rack["id"]), rack["name"]
        planner.racks.station(BikeStation(station_id=ident, name=name, location=point))
        planner.racks.status(
            BikeStationStatus(
                station_id=ident,
                num_bikes_available=bikes,
                num_docks_available=5,
                is_renting=True,
                is_returning=True,
                reported_at=MORNING,
            )
        )


def test_a_city_bike_takes_you_to_the_train_when_a_rack_has_one(planner: Planner) -> None:
    origin = f"{BRAGERNES_TORG[0]},{BRAGERNES_TORG[1]}"
    racks(planner, bikes=3)
    plan = ask(planner, origin, "Mjøndalen")
    modes = [leg.mode for leg in plan.journeys[0].legs]
    assert "bike" in modes and "rail" in modes, plan.journeys[0]
    bike = next(leg for leg in plan.journeys[0].legs if leg.mode == "bike")
    assert bike.known == "estimated" and bike.origin.bike_station and bike.destination.bike_station
    # without bikes on the racks, or with --no-bikes, nobody cycles
    assert "bike" not in [leg.mode for leg in ask(planner, origin, "Mjøndalen", bikes=False).journeys[0].legs]
    racks(planner, bikes=0)
    assert "bike" not in [leg.mode for leg in ask(planner, origin, "Mjøndalen").journeys[0].legs]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"origin": "drammen", "destination": "Drammen stasjon"}, "are both Drammen stasjon"),
        ({"origin": "91,10", "destination": "Oslo S"}, "is not a coordinate"),
        ({"origin": "drammen", "destination": "Oslo S", "arrive_by": MORNING}, "not both"),
    ],
)
def test_bad_requests_get_one_line(planner: Planner, options: dict[str, Any], says: str) -> None:
    origin, destination = options.pop("origin"), options.pop("destination")
    plan = ask(planner, origin, destination, **options)
    assert plan.status == "bad-request" and says in plan.message and "\n" not in plan.message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not a zip", "not-zip"),
        (b"PK\x05\x06" + b"\0" * 18, "gtfs-missing-member"),
    ],
)
def test_a_feed_that_cannot_be_used_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(SourceFormatError) as raised:
        read_feed(body)
    assert raised.value.reason == reason


def test_a_missing_feed_file_says_where_it_looked(tmp_path: Any) -> None:
    with pytest.raises(SourceFormatError, match="cannot read the GTFS feed .*nowhere.zip"):
        load_feed(tmp_path / "nowhere.zip")
