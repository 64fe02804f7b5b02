"""Replaying recordings: order, bodies, timing on the replay's own schedule, time shift, loops,
filters, faults, and control over the bus.

Timing is checked on the times the replayer scheduled (``on_sent`` reports when each message was
due and when it went out, on the monotonic clock): the gaps between due times must be the recorded
gaps divided by the speed. How late each one went out is a benchmark's business, not a test's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest

from adapters import Adapter, Context, NoConfig, Supervisor
from adapters.clock import ClockTick
from adapters.instances import parse_instance
from adapters.testing import AdapterHarness
from bus import MemoryBus, Metrics, RawMessage
from bus.envelope import build_headers, format_time
from bus.errors import CityBusError, ConfigError, RequestRefusedError
from bus.subjects import clock_subject, control_subject
from contracts import BeachObservation, TrainCall, WeatherObserved
from sandbox.adapter import SandboxReplay
from sandbox.control import SeekRequest, SpeedRequest, control_request
from sandbox.faults import FaultInjector, FaultPlan, Outgoing
from sandbox.metrics import replay_metrics
from sandbox.recording import RecordingWriter
from sandbox.replay import Replayer, ReplayStatus
from sandbox.timeshift import TimeShifter
from tests.conftest import wait_for

T0 = datetime(2018, 8, 28, 6, 0, tzinfo=UTC)
SITES = ("bragernes-strand", "sota-fjordpark", "blektjern")


def beach(site: str, when: datetime, temperature: float) -> tuple[str, bytes, dict[str, str]]:
    observation = BeachObservation(site=site, observed_at=when, water_temperature=temperature)
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=f"{site}-{when:%H%M}",
        source="/rec",
        time=when,
        provenance="synthetic",
    )
    return f"city.public.environment.beach-observation.{site}", msgspec.json.encode(observation), headers


def weather(when: datetime) -> tuple[str, bytes, dict[str, str]]:
    observed = WeatherObserved(station="marienlyst", observed_at=when, temperature=17.0)
    headers = build_headers(
        WeatherObserved.__contract__,
        event_id=f"w-{when:%H%M}",
        source="/rec",
        time=when,
        provenance="synthetic",
    )
    return "city.public.environment.weather-observed.marienlyst", msgspec.json.encode(observed), headers


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """Three beach sites every 10 minutes for two hours: 36 messages, 6 per site per hour."""
    path = tmp_path / "beach.mcap"
    with RecordingWriter(path) as writer:
        for step in range(12):
            for i, site in enumerate(SITES):
                writer.add(*beach(site, T0 + timedelta(minutes=10 * step, seconds=i), 15 + step / 10))
    return path


class Sink:
    """Collects what a replayer publishes, with its schedule."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, dict[str, str]]] = []
        self.schedule: list[tuple[float, float]] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.messages.append((subject, data, headers))

    def sent(self, message: Outgoing, due: float, sent: float) -> None:
        self.schedule.append((due, sent))


async def test_a_replay_keeps_subjects_bodies_order_and_the_recorded_gaps(recording: Path) -> None:
    sink = Sink()
    speed = 36_000.0  # ten recorded minutes in 1/60 s
    replayer = Replayer([recording], sink.publish, speed=speed, shift_to_now=False, on_sent=sink.sent)
    await replayer.run()
    assert len(sink.messages) == 36
    expected = [
        beach(site, T0 + timedelta(minutes=10 * s, seconds=i), 15 + s / 10)
        for s in range(12)
        for i, site in enumerate(SITES)
    ]
    assert [(m[0], m[1]) for m in sink.messages] == [(e[0], e[1]) for e in expected]
    assert [m[2]["ce-time"] for m in sink.messages] == [e[2]["ce-time"] for e in expected]
    dues = [due for due, _ in sink.schedule]
    recorded = [
        (T0 + timedelta(minutes=10 * s, seconds=i) - T0).total_seconds() for s in range(12) for i in range(3)
    ]
    for k in range(1, len(dues)):
        assert dues[k] - dues[0] == pytest.approx(recorded[k] / speed, abs=1e-6)
    assert replayer.state == "finished" and replayer.published == 36
    assert replayer.status().progress == 1.0  # a finished replay says where it ended, not where it began


async def test_replayed_messages_get_new_ids_and_keep_their_attributes(recording: Path) -> None:
    sink = Sink()
    await Replayer([recording], sink.publish, speed=0, shift_to_now=False).run()
    first = sink.messages[0][2]
    assert first["ce-id"] != "bragernes-strand-0600"
    assert "Nats-Msg-Id" not in first  # nothing for JetStream's duplicate window to hold (test_server_memory)
    assert (first["ce-type"], first["ce-source"], first["ce-provenance"]) == (
        "environment.beach-observation.v1",
        "/rec",
        "synthetic",
    )
    assert first["ce-dataschema"] == "urn:citybus:contract:environment.beach-observation:v1"
    assert len({m[2]["ce-id"] for m in sink.messages}) == 36


async def test_shift_to_now_moves_headers_and_bodies_by_the_same_offset(recording: Path) -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    sink = Sink()
    await Replayer([recording], sink.publish, speed=0, wall=lambda: now).run()
    offset = now - T0
    for _subject, data, headers in sink.messages:
        body = msgspec.json.decode(data, type=BeachObservation)
        assert datetime.fromisoformat(headers["ce-time"]) == body.observed_at
    first = msgspec.json.decode(sink.messages[0][1], type=BeachObservation)
    assert first.observed_at == T0 + offset == now


async def test_every_loop_replays_the_recorded_times_again_without_a_shift(recording: Path) -> None:
    sink = Sink()
    replayer = Replayer([recording], sink.publish, speed=0, loop=True, shift_to_now=False)
    task = asyncio.create_task(replayer.run())
    await wait_for(lambda: len(sink.messages) >= 80)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    times = [datetime.fromisoformat(m[2]["ce-time"]) for m in sink.messages[:80]]
    assert times[:36] == sorted(times[:36]) and times[0] == T0
    assert times[36:72] == times[:36]  # the second loop is the recorded window again, not the next one
    first = msgspec.json.decode(sink.messages[0][1], type=BeachObservation)
    again = msgspec.json.decode(sink.messages[36][1], type=BeachObservation)
    assert (again.site, again.water_temperature) == (first.site, first.water_temperature)
    assert replayer.loop_index >= 2
    ids = [m[2]["ce-id"] for m in sink.messages[:80]]
    assert len(set(ids)) == 80  # a second loop is not a duplicate


async def test_a_fast_looping_replay_never_stamps_beyond_now_plus_the_window(recording: Path) -> None:
    """Issue 12: a looping replay as fast as possible once ran its shifted clock to 2047."""
    sink = Sink()
    wall = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]

    def now() -> datetime:  # the wall clock moves one second per message sent: loops take 36 s
        return wall[0]

    async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
        wall[0] += timedelta(seconds=1)
        sink.messages.append((subject, data, headers))

    replayer = Replayer([recording], publish, speed=0, loop=True, wall=now)
    task = asyncio.create_task(replayer.run())
    await wait_for(lambda: len(sink.messages) >= 36 * 200)  # 200 loops of a 110-minute window
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    window = timedelta(minutes=110, seconds=2)
    for index, (_, data, headers) in enumerate(sink.messages[: 36 * 200]):
        sent = datetime(2026, 12, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=index + 1)
        stamped = datetime.fromisoformat(headers["ce-time"])
        assert stamped <= sent + window, (index, stamped)  # never beyond now + the recording's span
        assert stamped >= sent - timedelta(seconds=36)  # and a loop starts at the now it starts
        observed = msgspec.json.decode(data, type=BeachObservation).observed_at
        assert observed == stamped  # the body moves with the header
    loop_starts = [datetime.fromisoformat(m[2]["ce-time"]) for m in sink.messages[: 36 * 200 : 36]]
    assert loop_starts[-1] - loop_starts[0] == timedelta(seconds=36 * 199)  # each loop begins at its now


async def test_start_duration_include_and_exclude_choose_what_is_replayed(
    recording: Path, tmp_path: Path
) -> None:
    other = tmp_path / "weather.mcap"
    with RecordingWriter(other) as writer:
        for step in range(4):
            writer.add(*weather(T0 + timedelta(minutes=30 * step, seconds=30)))
    sink = Sink()
    await Replayer(
        [recording, other], sink.publish, speed=0, shift_to_now=False, start=1800, duration=3600
    ).run()
    times = [datetime.fromisoformat(m[2]["ce-time"]) for m in sink.messages]
    assert times[0] == T0 + timedelta(minutes=30) and max(times) < T0 + timedelta(minutes=90)
    assert times == sorted(times)  # two files merged by time
    assert sum("weather-observed" in m[0] for m in sink.messages) == 2
    sink = Sink()
    await Replayer(
        [recording, other],
        sink.publish,
        speed=0,
        include=("city.public.environment.beach-observation.*",),
        exclude=("*.*.*.*.blektjern",),
    ).run()
    assert {m[0].rsplit(".", 1)[-1] for m in sink.messages} == {"bragernes-strand", "sota-fjordpark"}
    assert len(sink.messages) == 24


async def test_faults_from_a_plan_reach_the_replay_and_its_ground_truth(
    recording: Path, tmp_path: Path
) -> None:
    plan_file = tmp_path / "faults.toml"
    plan_file.write_text(
        'seed = 7\n[[faults]]\nkind = "drop"\nprobability = 1.0\n'
        'subjects = ["city.public.environment.beach-observation.blektjern"]\n'
    )
    plan = FaultPlan.load(plan_file)
    truth = tmp_path / "truth.jsonl"
    sink = Sink()
    with truth.open("w", encoding="utf-8") as log:
        replayer = Replayer(
            [recording],
            sink.publish,
            speed=0,
            faults=lambda origin: FaultInjector(plan, origin=origin, truth=log),
        )
        await replayer.run()
    assert len(sink.messages) == 24 and not any(m[0].endswith("blektjern") for m in sink.messages)
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(lines) == 12 and {line["kind"] for line in lines} == {"drop"}
    assert replayer.status().faults == {"drop": 12}


def test_a_bad_replay_is_refused_with_a_reason(recording: Path, tmp_path: Path) -> None:
    with pytest.raises(CityBusError, match="past the end"):
        Replayer([recording], Sink().publish, start=10 * 3600)
    with pytest.raises(CityBusError, match="no recording at"):
        Replayer([tmp_path / "nothing.mcap"], Sink().publish)
    with pytest.raises(ValueError, match="speed"):
        Replayer([recording], Sink().publish, speed=-1)


# -- the adapter, steered over the bus ------------------------------------------------------------


async def test_pause_resume_seek_and_speed_over_control_subjects(recording: Path) -> None:
    config = {"files": [str(recording)], "speed": 600.0, "loop": False}
    async with AdapterHarness(SandboxReplay, config) as harness:
        bus = harness.bus
        ticks: list[ClockTick] = []

        async def on_tick(raw: RawMessage) -> None:
            ticks.append(msgspec.json.decode(raw.data, type=ClockTick))

        await bus.subscribe_raw(clock_subject("test"), on_tick)
        await harness.wait_for(BeachObservation, 3)
        paused = await control_request(bus, "test", "pause")
        assert paused.state == "paused"
        count = len(harness.published(BeachObservation))
        await asyncio.sleep(0.3)  # at 600× that would be three recorded minutes: nothing may come
        assert len(harness.published(BeachObservation)) == count
        status = await control_request(bus, "test", "status")
        assert status.state == "paused" and status.position_seconds == paused.position_seconds
        faster = await control_request(bus, "test", "speed", SpeedRequest(speed=0))
        assert faster.speed == 0
        seeked = await control_request(bus, "test", "seek", SeekRequest(position=0))
        assert seeked.position_seconds == 0
        with pytest.raises(RequestRefusedError, match="position must be between") as refused:
            await control_request(bus, "test", "seek", SeekRequest(position=10**6))
        assert refused.value.code == "400"
        with pytest.raises(RequestRefusedError, match="unknown verb") as unknown:
            await control_request(bus, "test", "rewind")
        assert unknown.value.code == "404"
        await wait_for(lambda: any(t.state == "paused" for t in ticks))
        resumed = await control_request(bus, "test", "resume")
        assert resumed.state == "playing"
        await harness.wait_for(BeachObservation, count + 36)  # from the start again, as fast as possible
        await wait_for(lambda: ticks[-1].state == "finished")
    sites = [e.data.site for e in harness.published(BeachObservation)[:3]]
    assert sites == list(SITES)


async def test_a_refusal_travels_in_the_nats_service_error_headers(recording: Path) -> None:
    """One way for every control service: an empty body and the headers NATS micro services send
    (it was a ``{"error": …}`` body here and a ``citybus-error`` header elsewhere)."""
    config = {"files": [str(recording)], "speed": 1.0, "loop": True}
    async with AdapterHarness(SandboxReplay, config) as harness:
        subject = control_subject("replay", "test", "speed")
        for body, words in (
            (b"", 'speed needs {"speed": factor}'),
            (b'{"speed": -1}', "speed must be between 0"),
            (b'{"speed": "fast"}', "Expected `float`, got `str` - at `$.speed`"),
            (b'{"position": 3}', "unknown field `position`"),
            (b"{", "the request body is"),
        ):
            raw = await harness.bus.nc.request(subject, body, timeout=5)  # as any NATS client sees it
            assert raw.data == b"" and raw.headers is not None
            assert raw.headers["Nats-Service-Error-Code"] == "400"
            assert words in raw.headers["Nats-Service-Error"]
            with pytest.raises(RequestRefusedError) as refused:  # and as the bus raises it
                await harness.bus.request_raw(subject, body)
            assert refused.value.code == "400" and words in refused.value.description
        status = await harness.bus.request_raw(control_subject("replay", "test", "status"))
        assert not status.headers
        assert msgspec.json.decode(status.data, type=ReplayStatus).instance == "test"


def test_the_clock_tick_has_one_definition() -> None:
    """The replay publishes what a follower's clock reads: one Struct, in the lower layer (adapters)."""
    import sandbox
    import sandbox.adapter

    assert sandbox.ClockTick is ClockTick
    assert sandbox.adapter.ClockTick is ClockTick  # what _tick publishes


async def test_the_adapter_refuses_a_missing_file_or_a_bad_plan(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no recording at"):
        AdapterHarness(SandboxReplay, {"files": [str(tmp_path / "x.mcap")]})
    plan = tmp_path / "plan.toml"
    plan.write_text('[[faults]]\nkind = "explode"\n')
    with pytest.raises(ConfigError, match="explode"):
        AdapterHarness(SandboxReplay, {"faults": str(plan)})


async def test_replay_metrics_count_messages_and_position(recording: Path) -> None:
    metrics = Metrics()
    families = replay_metrics(metrics.registry)
    sink = Sink()
    await Replayer(
        [recording], sink.publish, speed=0, instance="m", metrics=families, shift_to_now=False
    ).run()
    value = metrics.registry.get_sample_value
    assert value("citybus_replay_messages_total", {"adapter_instance": "m"}) == 36
    assert value("citybus_replay_progress_ratio", {"adapter_instance": "m"}) == pytest.approx(1.0, abs=1e-3)


# -- adapters on replayed time ----------------------------------------------------------------------


class Sleeper(Adapter[NoConfig]):
    """Notes the time its clock says, sleeps ten replayed minutes, notes it again."""

    name = "sleeper"
    seen: ClassVar[list[datetime]] = []

    async def run(self, ctx: Context) -> None:
        ctx.ready()
        while True:
            Sleeper.seen.append(ctx.clock.now())
            await ctx.clock.sleep(600)


async def test_an_adapter_with_clock_sandbox_runs_on_the_replays_time(recording: Path) -> None:
    bus = MemoryBus(metrics=Metrics(), source="/tests")
    await bus.connect("memory://")
    replay = parse_instance(
        "sandbox",
        SandboxReplay,
        {"files": [str(recording)], "speed": 600.0, "shift_to_now": False, "clock_interval": 0.05},
    )
    sleeper = parse_instance("sleeper", Sleeper, {"clock": "sandbox"})
    assert sleeper.clock == "sandbox"
    supervisor = Supervisor([replay, sleeper], bus=bus)
    task = asyncio.create_task(supervisor.run())
    try:
        # ten replayed minutes last a second at 600×: three wake-ups come within a few seconds
        await wait_for(lambda: len([t for t in Sleeper.seen if t.year == 2018]) >= 3, timeout=20)
    finally:
        supervisor.stop()
        await task
        await bus.drain()
    replayed = [t for t in Sleeper.seen if t.year == 2018]
    assert all(T0 <= t <= T0 + timedelta(hours=2, minutes=10) for t in replayed)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(replayed)]
    assert all(gap >= 600 for gap in gaps)  # a sleep of 600 replayed seconds is never shorter


def test_a_wrong_clock_is_refused() -> None:
    with pytest.raises(ConfigError, match="clock must name the replay instance"):
        parse_instance("sleeper", Sleeper, {"clock": "Sandbox Replay"})


async def test_nanoseconds_of_the_last_message_are_not_lost(tmp_path: Path) -> None:
    # other MCAP tools write nanosecond times: the last message must not fall off the window's end
    path = tmp_path / "ns.mcap"
    base = int(T0.timestamp()) * 1_000_000_000
    with RecordingWriter(path) as writer:
        writer.add(*beach("bragernes-strand", T0, 15.0), log_time=base + 1)
        writer.add(*beach("bragernes-strand", T0, 15.1), log_time=base + 1_000_000_999)
    sink = Sink()
    await Replayer([path], sink.publish, speed=0).run()
    assert len(sink.messages) == 2


# -- what the hot path must keep -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "shifted"),
    [
        # two fields at the same time and one at another; every other byte as it was, spaces too
        (
            b'{"line": "L13", "aimed_departure": "2018-08-28T10:00:00+02:00", "aimed_arrival":null,'
            b' "expected_departure":"2018-08-28T10:00:00+02:00", "actual_departure":"2018-08-28T08:05:00Z"}',
            b'{"line": "L13", "aimed_departure": "2018-08-28T11:00:00+02:00", "aimed_arrival":null,'
            b' "expected_departure":"2018-08-28T11:00:00+02:00", "actual_departure":"2018-08-28T09:05:00Z"}',
        ),
        # the same text in a field that is not a time stays as it was
        (
            b'{"aimed_departure":"2018-08-28T10:00:00Z","destination":"2018-08-28T10:00:00Z"}',
            b'{"aimed_departure":"2018-08-28T11:00:00Z","destination":"2018-08-28T10:00:00Z"}',
        ),
        # a time moved onto another field's time is not moved twice
        (
            b'{"aimed_departure":"2018-08-28T10:00:00Z","expected_departure":"2018-08-28T11:00:00Z"}',
            b'{"aimed_departure":"2018-08-28T11:00:00Z","expected_departure":"2018-08-28T12:00:00Z"}',
        ),
        # a time without a zone, null, something that is not a time, a body that is not an object
        (b'{"aimed_departure":"2018-08-28T10:00:00","expected_departure":null}', None),
        (b'{"aimed_departure":"soon","expected_departure":7}', None),
        (b"[1, 2]", None),
        (b"\xfa\x01 not json", None),
    ],
)
def test_the_time_shift_moves_each_timestamp_once_and_leaves_the_rest_of_the_body(
    body: bytes, shifted: bytes | None
) -> None:
    shifter = TimeShifter()
    train = TrainCall.__contract__.type
    for _ in range(2):  # the second time from what the shift remembers
        assert shifter.body(body, train, timedelta(hours=1)) == (body if shifted is None else shifted)
    assert shifter.body(body, train, timedelta(0)) == body


async def test_ce_time_is_exact_across_midnight_and_in_every_microsecond(tmp_path: Path) -> None:
    path = tmp_path / "midnight.mcap"
    times = [
        datetime(2020, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2020, 2, 29, 0, 0, tzinfo=UTC),
        datetime(2020, 2, 29, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2020, 2, 29, 13, 7, 9, 50_000, tzinfo=UTC),
        datetime(2020, 3, 1, 0, 0, 59, 999_000, tzinfo=UTC),
    ]
    with RecordingWriter(path) as writer:
        for moment in times:
            writer.add(*beach("bragernes-strand", moment, 15.0))
    sink = Sink()
    await Replayer([path], sink.publish, speed=0, shift_to_now=False).run()
    assert [m[2]["ce-time"] for m in sink.messages] == [format_time(t) for t in times]
    now = datetime(2026, 11, 27, 23, 59, 59, 999_998, tzinfo=UTC)
    sink = Sink()
    await Replayer([path], sink.publish, speed=0, wall=lambda: now).run()
    offset = now - times[0]
    assert [m[2]["ce-time"] for m in sink.messages] == [format_time(t + offset) for t in times]
    for _subject, data, headers in sink.messages:
        observed = msgspec.json.decode(data, type=BeachObservation).observed_at
        assert format_time(observed) == headers["ce-time"]


async def test_a_replay_as_fast_as_possible_lets_others_run_between_batches(recording: Path) -> None:
    sink = Sink()
    replayer = Replayer([recording], sink.publish, speed=0, read_ahead=8)
    seen: list[int] = []

    async def watch() -> None:
        while replayer.state != "finished":
            seen.append(len(sink.messages))
            await asyncio.sleep(0)

    await asyncio.gather(replayer.run(), watch())
    assert len(sink.messages) == 36
    assert {8, 16, 24, 32} <= set(seen)  # a control request, a clock tick, NATS's flusher get their turn


async def test_replay_metrics_follow_position_speed_and_faults(recording: Path, tmp_path: Path) -> None:
    plan_file = tmp_path / "faults.toml"
    plan_file.write_text(
        '[[faults]]\nkind = "drop"\nprobability = 1.0\n'
        'subjects = ["city.public.environment.beach-observation.blektjern"]\n'
    )
    plan = FaultPlan.load(plan_file)
    metrics = Metrics()
    sink = Sink()
    replayer = Replayer(
        [recording],
        sink.publish,
        speed=0,
        instance="m",
        metrics=replay_metrics(metrics.registry),
        faults=lambda origin: FaultInjector(plan, origin=origin),
    )
    await replayer.run()
    value = metrics.registry.get_sample_value
    labels = {"adapter_instance": "m"}
    assert value("citybus_replay_messages_total", labels) == 24
    assert value("citybus_replay_faults_total", {**labels, "kind": "drop"}) == 12
    assert value("citybus_replay_speed", labels) == 0
    assert value("citybus_replay_position_seconds", labels) == 110 * 60 + 2  # the last message's
