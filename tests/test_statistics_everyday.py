"""The public everyday data sets, fed the recorded Drammen day.

Each data set's ``observe`` is given every message of its contract in the shipped recording
(``sandbox/data/drammen-2018-08-28.mcap``), decoded as the bus decodes it, and what comes out is
checked against the same recording read independently — its JSON bodies, with the rule restated
here (the warmest beach, the share of trains on time at Drammen stasjon, the air per station and
pollutant, the bikes per rack).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.statistics.engine import Contribution, Policy, release
from adapters.statistics.everyday import (
    BY_NAME,
    EVERYDAY,
    ON_TIME_SECONDS,
    EverydayDataset,
    Observation,
    consumed,
    latest,
)
from adapters.vicotee import SITES
from contracts import (
    Aggregate,
    AirQualityObserved,
    BeachObservation,
    BikeStationStatus,
    Classification,
    Contract,
    ReleasePrivacy,
    StatisticsRow,
    TrainCall,
)
from sandbox.recording import read_messages

ROOT = Path(__file__).resolve().parent.parent
DAY = ROOT / "sandbox" / "data" / "drammen-2018-08-28.mcap"
OSLO = ZoneInfo("Europe/Oslo")
DRAMMEN = "NSR:StopPlace:11"


def recorded(contract: type[Contract]) -> Iterator[tuple[Contract, dict[str, Any]]]:
    """Every message of ``contract`` in the recorded day: decoded as the bus does, and as plain JSON."""
    kind = contract.__contract__.type
    for message in read_messages(DAY):
        if message.type == kind:
            yield msgspec.json.decode(message.data, type=contract), json.loads(message.data)


def observed(dataset: EverydayDataset) -> list[Observation]:
    """What the data set observes of the whole day, each observation once (the last per ``who``)."""
    return latest(o for value, _ in recorded(dataset.contract) for o in dataset.observe(value))


def bodies(contract: type[Contract]) -> list[dict[str, Any]]:
    return [body for _, body in recorded(contract)]


def released(dataset: EverydayDataset) -> dict[tuple[str, ...], StatisticsRow]:
    """The day's table of ``dataset`` as the release engine makes it for public data (mechanism
    none), labelled with the names the messages carry; its rows by group."""
    labels: dict[str, str] = {}
    for value, _ in recorded(dataset.contract):
        labels |= dataset.labels(value)
    contributions = [Contribution(who=o.who, group=o.group, value=o.value) for o in observed(dataset)]
    table = release(contributions, dataset.dimensions, Policy(mechanism="none", k=0), labels=labels)
    assert table.privacy.mechanism == "none" and table.privacy.epsilon == 0
    rows = {row.group: row for row in table.rows}
    assert len(rows) == len(table.rows)
    assert all(row.status == "released" for row in table.rows)
    return rows


def agrees(row: StatisticsRow, values: list[float]) -> None:
    """``row`` holds the figures of ``values``, worked out here."""
    assert row.count == len(values)
    assert row.sum == pytest.approx(math.fsum(values))
    assert row.mean == pytest.approx(statistics.fmean(values))
    assert row.median == pytest.approx(statistics.median(values))
    assert (row.min, row.max) == (min(values), max(values))


# -- what the data sets are -----------------------------------------------------------------------


def test_every_data_set_reads_a_public_contract_and_fits_the_aggregate_it_is_published_as() -> None:
    assert len({d.name for d in EVERYDAY}) == len(EVERYDAY)
    assert set(BY_NAME) == {d.name for d in EVERYDAY}
    assert {"beach-water-temperature", "train-punctuality", "air-quality", "bike-use"} <= set(BY_NAME)
    for dataset in EVERYDAY:
        assert dataset.contract.__contract__.classification is Classification.PUBLIC, dataset.name
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", dataset.name)
        # the table's header is a valid Aggregate: slugs, lengths and the counts literal as it checks them
        table = Aggregate(
            dataset=dataset.name,
            title=dataset.title,
            period="2018-08-28",
            period_start=datetime(2018, 8, 28, tzinfo=OSLO),
            period_end=datetime(2018, 8, 29, tzinfo=OSLO),
            dimensions=dataset.dimensions,
            measure=dataset.measure,
            unit=dataset.unit,
            counts=dataset.counts,
            rows=(),
            privacy=ReleasePrivacy(mechanism="none"),
            sources=dataset.sources,
        )
        assert msgspec.json.decode(msgspec.json.encode(table), type=Aggregate) == table
    assert consumed() == tuple(dict.fromkeys(d.contract for d in EVERYDAY))


def test_a_message_of_another_contract_is_a_clear_error() -> None:
    bikes = BY_NAME["bike-use"]
    beach, _ = next(recorded(BeachObservation))
    expected = "expected a mobility.bike-station-status message, got BeachObservation"
    with pytest.raises(TypeError, match=expected):
        bikes.observe(beach)


# -- the recorded day, data set by data set -------------------------------------------------------


def test_the_warmest_beach_of_the_day() -> None:
    found = observed(BY_NAME["beach-water-temperature"])
    water: dict[str, list[float]] = defaultdict(list)
    for body in bodies(BeachObservation):
        water[body["site"]].append(body["water_temperature"])
    assert len(found) == sum(len(v) for v in water.values())  # every reading, once
    per_site: dict[str, list[float]] = defaultdict(list)
    for o in found:
        (site,) = o.group
        per_site[site].append(o.value)
        assert o.at.tzinfo is not None
    assert {site: sorted(values) for site, values in per_site.items()} == {
        site: sorted(values) for site, values in water.items()
    }
    warmest = max(water, key=lambda site: statistics.fmean(water[site]))
    assert max(per_site, key=lambda site: statistics.fmean(per_site[site])) == warmest
    # the day's generator keeps the forest lakes warmer than the river (tests/test_drammen_day.py)
    assert warmest in ("blektjern", "landfalltjern", "vannverksdammen", "stordammen")
    labels: dict[str, str] = {}
    for value, _ in recorded(BeachObservation):
        labels |= BY_NAME["beach-water-temperature"].labels(value)
    assert labels["bragernes-strand"] == "Bragernes strand"
    assert set(labels) == set(water)


def test_punctuality_at_drammen_counts_each_train_that_called_once() -> None:
    punctuality, delays = observed(BY_NAME["train-punctuality"]), observed(BY_NAME["train-delay"])
    calls = [b for b in bodies(TrainCall) if b["status"] == "actual"]
    assert calls and all(b["delay_seconds"] is not None for b in calls)
    at_drammen = [b for b in calls if b["stop_place"] == DRAMMEN]
    on_time = [b for b in at_drammen if b["delay_seconds"] <= 180]
    share = len(on_time) / len(at_drammen)

    ours = [o for o in punctuality if o.group[0] == DRAMMEN]
    assert len(ours) == len(at_drammen)
    assert sum(o.value for o in ours) / len(ours) == pytest.approx(share)
    assert {o.value for o in punctuality} <= {0.0, 1.0}
    assert 0 < share < 1  # the late R10 of 08:57 is among them (+4 min)
    assert len(punctuality) == len(calls)  # scheduled and estimated calls are not facts: not counted
    # per line, as the table's cells are
    for line in {b["line"] for b in at_drammen}:
        mine = [o.value for o in ours if o.group[1] == line]
        theirs = [1.0 if b["delay_seconds"] <= 180 else 0.0 for b in at_drammen if b["line"] == line]
        assert sorted(mine) == sorted(theirs), line
    # the delays, in minutes, of the same calls
    minutes = sorted(b["delay_seconds"] / 60 for b in at_drammen)
    assert sorted(o.value for o in delays if o.group[0] == DRAMMEN) == pytest.approx(minutes)
    assert {o.who for o in delays} == {o.who for o in punctuality}
    names: dict[str, str] = {}
    for value, _ in recorded(TrainCall):
        names |= BY_NAME["train-punctuality"].labels(value)
    assert names[DRAMMEN] == "Drammen stasjon"


def test_air_quality_per_station_and_pollutant() -> None:
    found = observed(BY_NAME["air-quality"])
    expected: dict[tuple[str, str], list[float]] = defaultdict(list)
    for body in bodies(AirQualityObserved):
        expected[(body["station"], body["component"])].append(body["value"])
    got: dict[tuple[str, str], list[float]] = defaultdict(list)
    for o in found:
        station, pollutant = o.group
        got[(station, pollutant)].append(o.value)
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}
    assert len({station for station, _ in got}) == 3


def test_bikes_available_per_rack_counts_the_racks_that_rent() -> None:
    found = observed(BY_NAME["bike-use"])
    expected: dict[str, list[float]] = defaultdict(list)
    for body in bodies(BikeStationStatus):
        if body.get("is_installed", True) and body["is_renting"]:
            expected[body["station_id"]].append(float(body["num_bikes_available"]))
    got: dict[str, list[float]] = defaultdict(list)
    for o in found:
        got[o.group[0]].append(o.value)
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}
    assert len(got) == 16


# -- what is left out, and what counts once -------------------------------------------------------


def late_r10(**changes: Any) -> TrainCall:
    """The late R10 at Drammen of the recorded day (08:57, +4 min), with ``changes``."""
    call = next(
        value
        for value, body in recorded(TrainCall)
        if body["service_journey"] == "NSB:ServiceJourney:1-1821-311" and body["status"] == "actual"
    )
    assert isinstance(call, TrainCall)
    return msgspec.structs.replace(call, **changes)


def test_a_call_that_is_not_a_fact_with_a_delay_gives_nothing() -> None:
    for dataset in (BY_NAME["train-punctuality"], BY_NAME["train-delay"]):
        assert len(dataset.observe(late_r10())) == 1
        assert dataset.observe(late_r10(delay_seconds=None)) == []  # a missing delay is not "on time"
        assert dataset.observe(late_r10(status="estimated")) == []
        assert dataset.observe(late_r10(status="cancelled", delay_seconds=None)) == []


def test_on_time_is_at_most_three_minutes_late_and_early_is_on_time() -> None:
    punctuality = BY_NAME["train-punctuality"]
    for delay, on_time in ((ON_TIME_SECONDS, 1.0), (ON_TIME_SECONDS + 1, 0.0), (-60, 1.0), (240, 0.0)):
        (observation,) = punctuality.observe(late_r10(delay_seconds=delay))
        assert observation.value == on_time, delay
    (delay,) = BY_NAME["train-delay"].observe(late_r10(delay_seconds=-90))
    assert delay.value == -1.5


def test_a_rack_that_does_not_rent_gives_nothing() -> None:
    status, _ = next(recorded(BikeStationStatus))
    assert isinstance(status, BikeStationStatus)
    bikes = BY_NAME["bike-use"]
    assert len(bikes.observe(status)) == 1
    assert bikes.observe(msgspec.structs.replace(status, is_renting=False)) == []
    assert bikes.observe(msgspec.structs.replace(status, is_installed=False)) == []


def test_the_same_call_is_one_observation_and_the_next_day_s_run_another() -> None:
    punctuality = BY_NAME["train-punctuality"]
    (first,) = punctuality.observe(late_r10())
    (again,) = punctuality.observe(late_r10())
    (corrected,) = punctuality.observe(late_r10(delay_seconds=60))
    today = late_r10()
    assert today.aimed_departure is not None and today.actual_departure is not None
    day = timedelta(days=1)
    tomorrow = late_r10(
        aimed_departure=today.aimed_departure + day, actual_departure=today.actual_departure + day
    )
    (next_day,) = punctuality.observe(tomorrow)
    assert first.who == again.who == corrected.who != next_day.who
    assert latest([first, again, corrected, next_day]) == [corrected, next_day]
    assert next_day.at - first.at == timedelta(days=1)


# -- through the release engine, as the service publishes them ------------------------------------


def test_the_day_s_beach_table_names_the_warmest_beach() -> None:
    rows = released(BY_NAME["beach-water-temperature"])
    water: dict[str, list[float]] = defaultdict(list)
    for body in bodies(BeachObservation):
        water[body["site"]].append(body["water_temperature"])
    for site, values in water.items():
        agrees(rows[(site,)], values)
    agrees(rows[("all",)], [t for values in water.values() for t in values])
    assert set(rows) == {(site,) for site in water} | {("all",)}
    warmest = max((row for group, row in rows.items() if group != ("all",)), key=lambda row: row.mean or 0)
    expected = max(water, key=lambda site: statistics.fmean(water[site]))
    assert warmest.group == (expected,)
    assert warmest.label == SITES[expected].name


def test_the_day_s_punctuality_at_drammen_is_the_share_of_its_trains_on_time() -> None:
    punctuality, delay = released(BY_NAME["train-punctuality"]), released(BY_NAME["train-delay"])
    calls = [b for b in bodies(TrainCall) if b["status"] == "actual"]
    at_drammen = [b for b in calls if b["stop_place"] == DRAMMEN]
    on_time = [1.0 if b["delay_seconds"] <= 180 else 0.0 for b in at_drammen]
    drammen = punctuality[(DRAMMEN, "all")]
    agrees(drammen, on_time)
    assert drammen.label == "Drammen stasjon, all"
    agrees(delay[(DRAMMEN, "all")], [b["delay_seconds"] / 60 for b in at_drammen])
    # every station and line of the day, and the grand total over all stations
    for stop_place, line in {(b["stop_place"], b["line"]) for b in calls}:
        cell = [
            1.0 if b["delay_seconds"] <= 180 else 0.0
            for b in calls
            if (b["stop_place"], b["line"]) == (stop_place, line)
        ]
        agrees(punctuality[(stop_place, line)], cell)
    agrees(punctuality[("all", "all")], [1.0 if b["delay_seconds"] <= 180 else 0.0 for b in calls])


def test_the_day_s_air_table_per_station_and_pollutant_and_over_stations() -> None:
    rows = released(BY_NAME["air-quality"])
    readings: dict[tuple[str, str], list[float]] = defaultdict(list)
    names: dict[str, str] = {}
    for body in bodies(AirQualityObserved):
        readings[(body["station"], body["component"])].append(body["value"])
        names[body["station"]] = body["station_name"]
    for (station, pollutant), values in readings.items():
        agrees(rows[(station, pollutant)], values)
        assert rows[(station, pollutant)].label == f"{names[station]}, {pollutant}"
    for pollutant in {p for _, p in readings}:  # a pollutant over every station: a margin
        agrees(
            rows[("all", pollutant)],
            [v for (_, p), values in readings.items() if p == pollutant for v in values],
        )


def test_the_day_s_bikes_per_rack() -> None:
    rows = released(BY_NAME["bike-use"])
    bikes: dict[str, list[float]] = defaultdict(list)
    for body in bodies(BikeStationStatus):
        if body.get("is_installed", True) and body["is_renting"]:
            bikes[body["station_id"]].append(float(body["num_bikes_available"]))
    for station, values in bikes.items():
        agrees(rows[(station,)], values)
    assert set(rows) == {(station,) for station in bikes} | {("all",)}


def test_the_day_s_figures_in_the_docs_are_the_tables() -> None:
    doc = (ROOT / "docs" / "statistics-everyday.md").read_text(encoding="utf-8")

    def best(rows: dict[tuple[str, ...], StatisticsRow]) -> StatisticsRow:
        return max((r for g, r in rows.items() if "all" not in g), key=lambda r: r.mean or 0)

    def share(row: StatisticsRow) -> str:
        assert row.sum is not None and row.count is not None and row.mean is not None
        return f"{row.sum:.0f} of {row.count:.0f} calls ({row.mean:.2f})"

    beach = best(released(BY_NAME["beach-water-temperature"]))
    punctuality = released(BY_NAME["train-punctuality"])
    delay = released(BY_NAME["train-delay"])[(DRAMMEN, "all")]
    air = best(released(BY_NAME["air-quality"]))
    bikes = best(released(BY_NAME["bike-use"]))
    stations = {g[0] for g in punctuality if g[0] != "all"}
    assert len(stations) == 5
    expected = [
        f"| {beach.label}, {beach.mean:.2f} °C over {beach.count:.0f} readings |",
        f"| trains on time at Drammen stasjon | {share(punctuality[(DRAMMEN, 'all')])} |",
        f"| trains on time at the five stations | {share(punctuality[('all', 'all')])} |",
        f"| mean delay at Drammen stasjon | {delay.mean:.2f} min |",
        f"| {air.label}: {air.mean:.2f} ug/m3 |",
        f"| {bikes.label}, {bikes.mean:.2f} bikes over {bikes.count:.0f} reports |",
    ]
    assert [line for line in expected if line not in doc] == []
