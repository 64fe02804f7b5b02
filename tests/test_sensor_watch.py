"""``sensor-watch``: stuck and silent sensors as alerts, on the replay's clock.

The rules are tested on :class:`~adapters.watch.Watch` directly; the adapter runs in the project's
:class:`~adapters.testing.AdapterHarness` on a sandbox clock that the test moves as a replay does,
fed first by hand and then with the recorded Drammen day's beach observations, as the sandbox
publishes them (recorded headers, ``ce-id`` s and times) and through the real fault injector with
the plans of docs/faults.md: the clean day raises no alert, a three-hour outage and a four-hour
stuck sensor raise one each, on the right sensor and within the fault's window, and duplicates,
reordering, delays, clock skew and corrupt bodies raise none.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters import check_declaration
from adapters.testing import AdapterHarness
from adapters.watch import Reading, SensorWatch, Watch
from bus.envelope import H_PROVENANCE, H_SOURCE, build_headers
from bus.errors import ConfigError
from contracts import BeachObservation, SensorAlert, WeatherObserved
from sandbox.faults.injector import FaultInjector, Outgoing
from sandbox.faults.plan import FaultPlan
from sandbox.recording import read_messages

RECORDING = Path(__file__).parent.parent / "sandbox" / "data" / "drammen-2018-08-28.mcap"
T0 = datetime(2018, 8, 28, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def reading(
    sensor: str, at: datetime, values: tuple[float | None, ...], event_id: str | None = None
) -> Reading:
    return Reading(
        sensor=sensor,
        observed="environment.beach-observation",
        event_id=event_id or f"{sensor}-{at.isoformat()}",
        time=at,
        values=values,
        main=values[0],
        provenance="sensor",
    )


# -- the rules ------------------------------------------------------------------------------------


def test_stuck_once_per_episode_and_clear_when_the_values_change() -> None:
    watch = Watch(repeats=3)
    found = [watch.reading(reading("a", T0 + i * HOUR, (16.4, 12.0, 0.0)), T0 + i * HOUR) for i in range(6)]
    assert [len(f) for f in found] == [0, 0, 1, 0, 0, 0]
    [stuck] = found[2]
    assert (stuck.problem, stuck.since, stuck.readings, stuck.value) == ("stuck", T0 + HOUR, 3, 16.4)
    [clear] = watch.reading(reading("a", T0 + 6 * HOUR, (16.5, 12.0, 0.0)), T0 + 6 * HOUR)
    assert (clear.problem, clear.cleared, clear.since) == ("clear", "stuck", T0 + 6 * HOUR)


def test_one_repeating_quantity_is_not_a_stuck_sensor() -> None:
    """UV 0 all night repeats; with the temperatures moving the sensor is fine."""
    watch = Watch(repeats=3)
    found = [
        watch.reading(reading("a", T0 + i * HOUR, (16.0 + i / 10, 12.0 - i / 10, 0.0)), T0 + i * HOUR)
        for i in range(12)
    ]
    assert found == [[]] * 12


def test_a_reading_with_nothing_measured_is_never_stuck() -> None:
    watch = Watch(repeats=2)
    found = [watch.reading(reading("a", T0 + i * HOUR, (None, None)), T0 + i * HOUR) for i in range(4)]
    assert found == [[]] * 4


def test_duplicates_and_older_readings_are_passed_over() -> None:
    watch = Watch(repeats=2)
    first = reading("a", T0, (16.0,), event_id="one")
    assert watch.reading(first, T0) == []
    assert watch.reading(first, T0 + timedelta(seconds=5)) == []  # the same ce-id again
    # the same values at a later time make it stuck; a copy of that and an older reading do not count
    later = reading("a", T0 + HOUR, (16.0,), event_id="two")
    assert [f.problem for f in watch.reading(later, T0 + HOUR)] == ["stuck"]
    older = reading("a", T0 + timedelta(minutes=30), (17.0,), event_id="three")
    assert watch.reading(older, T0 + HOUR + timedelta(minutes=1)) == []  # late: no clear from the past
    assert watch.reading(later, T0 + HOUR + timedelta(minutes=2)) == []


def test_silent_after_the_learnt_interval_times_the_factor_and_clear_when_it_speaks() -> None:
    watch = Watch(silence_factor=2.5)
    for i in range(3):
        watch.reading(reading("a", T0 + i * HOUR, (16.0 + i,)), T0 + i * HOUR)
    assert watch.limit("a", "environment.beach-observation") == 9000.0
    last = T0 + 2 * HOUR
    assert watch.check(last + timedelta(seconds=8999)) == []
    [silent] = watch.check(last + timedelta(seconds=9000))
    assert (silent.problem, silent.since) == ("silent", last)
    assert watch.check(last + 4 * HOUR) == []  # once per episode
    [clear] = watch.reading(reading("a", last + 5 * HOUR, (20.0,)), last + 5 * HOUR)
    assert (clear.problem, clear.cleared) == ("clear", "silent")


def test_a_sensor_with_one_reading_is_not_judged_unless_silence_is_fixed() -> None:
    learnt, fixed = Watch(), Watch(silence=600)
    for watch in (learnt, fixed):
        watch.reading(reading("a", T0, (16.0,)), T0)
    assert learnt.check(T0 + 24 * HOUR) == []
    assert [f.problem for f in fixed.check(T0 + timedelta(seconds=600))] == ["silent"]


def test_no_sensor_is_silent_while_the_watch_itself_hears_nothing() -> None:
    """Nothing from anyone for longer than ``blind`` (a broker restart): nobody's silence."""
    watch = Watch(silence=3 * 3600)
    for i in range(3):
        for n, sensor in enumerate("abc"):
            at = T0 + i * HOUR + n * timedelta(minutes=10)
            watch.reading(reading(sensor, at, (16.0 + i + n,)), at)
    cut = T0 + 2 * HOUR + timedelta(minutes=20)  # the last reading before the cut
    assert watch.check(cut + 4 * HOUR) == []  # blind: nobody has spoken for four hours
    back = cut + 4 * HOUR
    # b speaks first after the cut; a and c's silence counts from the cut's end, not from before it
    watch.reading(reading("b", back, (30.0,)), back)
    assert watch.check(back + timedelta(minutes=30)) == []
    # c never comes back: silent three hours of a live bus later (b keeps talking)
    for i in range(1, 4):
        at = back + i * HOUR
        watch.reading(reading("b", at, (30.0 + i,)), at)
        watch.reading(reading("a", at, (30.0 + i,)), at)
    found = watch.check(back + 3 * HOUR + timedelta(minutes=1))
    assert [(f.sensor, f.problem) for f in found] == [("c", "silent")]


def test_a_clock_gone_back_starts_a_sensor_afresh() -> None:
    watch = Watch(repeats=2)
    watch.reading(reading("a", T0 + 10 * HOUR, (16.0,)), T0 + 10 * HOUR)
    # the replay is sought back to T0: readings of then are taken, not ignored as old
    assert watch.reading(reading("a", T0, (17.0,), event_id="x"), T0) == []
    assert [f.problem for f in watch.reading(reading("a", T0 + HOUR, (17.0,)), T0 + HOUR)] == ["stuck"]


# -- the adapter --------------------------------------------------------------------------------------


def test_it_declares_what_it_detects() -> None:
    check_declaration(SensorWatch)
    [detection] = SensorWatch.detects
    assert detection.contract is SensorAlert
    assert (detection.field, detection.entity, detection.time) == ("problem", "sensor", "detected_at")
    assert dict(detection.kinds) == {"stuck": "stuck", "silent": "outage"}


def test_its_configuration_chooses_what_it_watches() -> None:
    assert SensorWatch(SensorWatch.Config()).consumed() == (BeachObservation,)
    both = SensorWatch.Config(watch=["environment.weather-observed", "environment.beach-observation"])
    assert SensorWatch(both).consumed() == (WeatherObserved, BeachObservation)


async def test_a_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="repeats"):
        async with AdapterHarness(SensorWatch, {"repeats": 1}):
            pass


def observation(site: str, at: datetime, water: float, air: float = 12.0) -> BeachObservation:
    return BeachObservation(
        site=site, observed_at=at, water_temperature=water, air_temperature=air, uv_index=0.0
    )


async def test_alerts_on_the_replay_clock() -> None:
    async with AdapterHarness(SensorWatch, {"check_every": 60}, clock="sandbox") as harness:
        for i in range(4):  # two sites; "a" repeats itself from the second reading on
            at = T0 + i * HOUR
            await harness.tick(at, state="paused")
            await harness.publish(observation("a", at, 16.0 if i else 15.0), provenance="sensor")
            await harness.publish(observation("b", at + timedelta(minutes=5), 17.0 + i))
            await harness.settle()
        [stuck] = await harness.wait_for(SensorAlert)
        assert stuck.data.sensor == "a" and stuck.data.problem == "stuck"
        assert stuck.data.since == T0 + 2 * HOUR and stuck.data.readings == 3
        assert stuck.data.detected_at == T0 + 3 * HOUR == stuck.envelope.time
        assert stuck.provenance == "sensor" and stuck.subject == "city.public.environment.sensor-alert.a"
        # "a" falls silent; "b" speaks on; 3.5 hours after a's last reading it is silent
        for i in range(4, 8):
            at = T0 + i * HOUR + timedelta(minutes=5)
            await harness.tick(at, state="paused")
            await harness.publish(observation("b", at, 17.0 + i))
            await harness.settle()
        stuck, silent = await harness.wait_for(SensorAlert, 2)
        assert silent.data.sensor == "a" and silent.data.problem == "silent"
        assert silent.data.since == T0 + 3 * HOUR
        assert T0 + 6.5 * HOUR <= silent.data.detected_at <= T0 + 6.5 * HOUR + timedelta(minutes=36)
        at = T0 + 8 * HOUR
        await harness.tick(at, state="paused")
        await harness.publish(observation("a", at, 18.0))
        *_, clear_silent, clear_stuck = await harness.wait_for(SensorAlert, 4)
        assert (clear_silent.data.problem, clear_silent.data.cleared) == ("clear", "silent")
        assert (clear_stuck.data.problem, clear_stuck.data.cleared) == ("clear", "stuck")
        assert clear_stuck.data.since == at


async def test_weather_stations_are_watched_when_configured() -> None:
    config = {"watch": ["environment.weather-observed"]}
    async with AdapterHarness(SensorWatch, config, clock="sandbox") as harness:
        for i in range(3):
            at = T0 + i * HOUR
            await harness.tick(at, state="paused")
            same = WeatherObserved(station="marienlyst", observed_at=at, temperature=14.2, wind_speed=0.4)
            await harness.publish(same)
            await harness.publish(observation("blektjern", at, 16.0))  # not watched: the same each hour
            await harness.settle()
        [stuck] = await harness.wait_for(SensorAlert)
        assert (stuck.data.sensor, stuck.data.observed) == ("marienlyst", "environment.weather-observed")
        assert stuck.data.value == 14.2
        assert harness.adapter.watch.sensors == [("environment.weather-observed", "marienlyst")]


# -- the recorded Drammen day, through the real fault injector -------------------------------------


def recorded_beach_day() -> list[Outgoing]:
    """The recording's beach observations as the replay hands them to its fault injector."""
    info = BeachObservation.__contract__
    return [
        Outgoing(
            subject=m.subject,
            data=m.data,
            headers=build_headers(
                info,
                event_id=f"drammen-{m.channel}-{m.sequence}",
                source=m.headers[H_SOURCE],
                time=m.time,
                provenance=m.headers[H_PROVENANCE],
            ),
            time=m.time,
        )
        for m in read_messages(RECORDING)
        if m.type == info.type
    ]


def faulted(plan: dict[str, Any], day: list[Outgoing]) -> tuple[list[tuple[datetime, Outgoing]], list[Any]]:
    """The day through the fault injector: (due time, message) in publishing order, and the truth."""
    truth = io.StringIO()
    origin = datetime(2018, 8, 27, 22, 0, tzinfo=UTC)  # the recording's start: the replay's
    injector = FaultInjector(FaultPlan.from_dict(plan), origin=origin, truth=truth)
    out: list[tuple[datetime, Outgoing]] = []
    for message in day:
        out += [(message.time + timedelta(seconds=d), m) for d, m in injector.apply(message)]
    last = day[-1].time
    out += [(last + timedelta(seconds=d), m) for d, m in injector.flush()]
    out.sort(key=lambda pair: pair[0])
    return out, [json.loads(line) for line in truth.getvalue().splitlines()]


async def replay(
    messages: list[tuple[datetime, Outgoing]], until: datetime, *, dead_letters: int = 0
) -> list[SensorAlert]:
    """Publish each message at its due time on the sandbox clock; return every alert published."""
    async with AdapterHarness(SensorWatch, clock="sandbox") as harness:
        for due, message in messages:
            await harness.tick(due, state="paused")
            await harness.publish_raw(message.subject, message.data, message.headers)
            await harness.settle()
        step = max(due for due, _ in messages)
        while step < until:  # let the clock run on, as the replay's does after its last message
            step += timedelta(minutes=10)
            await harness.tick(step, state="paused")
            await harness.settle()
        assert len(harness.dead_letters) == dead_letters  # the corrupt ones only
        watched = {sensor for _, sensor in harness.adapter.watch.sensors}
        assert watched == {m.subject.rpartition(".")[2] for _, m in messages}
        return [e.data for e in harness.published(SensorAlert)]


def episodes(truth: list[dict[str, Any]]) -> Iterator[tuple[str, str, datetime, datetime]]:
    """(kind, entity, first hit, end) of every fault in the truth."""
    spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    for line in truth:
        at = datetime.fromisoformat(line["time"])
        end = datetime.fromisoformat(line.get("until", line["time"]))
        key = (line["kind"], line["subject"].rpartition(".")[2])
        first, last = spans.get(key, (at, end))
        spans[key] = (min(first, at), max(last, end))
    for (kind, entity), (first, last) in spans.items():
        yield kind, entity, first, last


DAY_END = datetime(2018, 8, 28, 22, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def beach_day() -> list[Outgoing]:
    return recorded_beach_day()


async def test_the_clean_drammen_day_raises_no_alert(beach_day: list[Outgoing]) -> None:
    assert len(beach_day) == 168
    messages, truth = faulted({}, beach_day)
    assert truth == []
    assert await replay(messages, DAY_END) == []


async def test_an_outage_and_a_stuck_sensor_of_docs_faults_md_are_found(beach_day: list[Outgoing]) -> None:
    plan = {
        "seed": 2018,
        "faults": [
            {
                "kind": "outage",
                "subjects": ["city.public.environment.beach-observation.blektjern"],
                "start": 7200,
                "duration": 10800,
            },
            {
                "kind": "stuck",
                "subjects": ["city.public.environment.beach-observation.sota-fjordpark"],
                "start": 3600,
                "duration": 14400,
            },
        ],
    }
    messages, truth = faulted(plan, beach_day)
    alerts = await replay(messages, DAY_END)
    problems = [(a.sensor, a.problem) for a in alerts if a.problem != "clear"]
    assert sorted(problems) == [("blektjern", "silent"), ("sota-fjordpark", "stuck")]
    windows = {(kind, entity): (first, last) for kind, entity, first, last in episodes(truth)}
    for alert in alerts:
        if alert.problem == "clear":
            continue
        first, last = windows[("outage" if alert.problem == "silent" else "stuck", alert.sensor)]
        # silent after 3.5 hourly intervals: past the three-hour outage, before the sensor's next reading
        after = timedelta(hours=1) if alert.problem == "silent" else timedelta(0)
        assert first <= alert.detected_at <= last + after, alert
    clears = [(a.sensor, a.cleared) for a in alerts if a.problem == "clear"]
    assert sorted(clears) == [("blektjern", "silent"), ("sota-fjordpark", "stuck")]


async def test_faults_that_are_no_stuck_or_silent_sensor_raise_no_alert(beach_day: list[Outgoing]) -> None:
    beach = ["city.public.environment.beach-observation.*"]
    plan = {
        "seed": 7,
        "faults": [
            {"kind": "duplicate", "subjects": beach, "probability": 0.3, "copies": 2, "gap": 5.0},
            {"kind": "reorder", "subjects": beach, "probability": 0.2, "window": 4},
            {"kind": "delay", "subjects": beach, "probability": 0.2, "delay": 600.0, "jitter": 300.0},
            {"kind": "skew", "subjects": beach, "skew": 600.0, "start": 3600, "duration": 21600},
            {"kind": "corrupt", "subjects": beach, "probability": 0.02, "mode": "garble"},
        ],
    }
    messages, truth = faulted(plan, beach_day)
    kinds = {line["kind"] for line in truth}
    assert kinds == {"duplicate", "reorder", "delay", "skew", "corrupt"}
    corrupted = sum(line["kind"] == "corrupt" for line in truth)
    assert await replay(messages, DAY_END, dead_letters=corrupted) == []


async def test_a_sensor_heard_once_is_judged_by_the_others_interval() -> None:
    """An outage early in a replay: the sensor has no interval of its own yet; its kind's stands in."""
    async with AdapterHarness(SensorWatch, {"check_every": 60}, clock="sandbox") as harness:
        for i in range(8):
            at = T0 + i * HOUR
            await harness.tick(at, state="paused")
            await harness.publish(observation("b", at, 17.0 + i))
            if i == 1:
                await harness.publish(observation("a", at + timedelta(minutes=5), 15.0))  # its only reading
            await harness.settle()
        [silent] = await harness.wait_for(SensorAlert)
        assert (silent.data.sensor, silent.data.problem) == ("a", "silent")
        assert T0 + HOUR + timedelta(minutes=5) + 3.5 * HOUR <= silent.data.detected_at <= T0 + 5.5 * HOUR
