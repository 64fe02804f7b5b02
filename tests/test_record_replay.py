"""Record live subjects from a real nats-server, replay them onto it: the same subjects, bodies and
order, with the recorded gaps kept on the replay's own schedule; and faults injected on the way,
with a ground truth that matches what a subscriber saw."""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from bus import Bus, RawMessage
from bus.codec import Codec
from bus.envelope import build_headers
from bus.errors import ContractViolation
from contracts import BeachObservation
from sandbox.contents import read_info
from sandbox.faults import FaultInjector, FaultPlan, Outgoing
from sandbox.recorder import record
from sandbox.recording import RecordingWriter
from sandbox.replay import Replayer
from tests.conftest import wait_for

T0 = datetime(2018, 8, 28, 10, 0, tzinfo=UTC)


async def test_record_then_replay_round_trips_through_nats(bus: Bus, entity: str, tmp_path: Path) -> None:
    subject = f"city.public.environment.beach-observation.{entity}"
    path = tmp_path / "live.mcap"
    stop, ready = asyncio.Event(), asyncio.Event()
    recorder = asyncio.create_task(record(bus, [subject], path, stop=stop, limit=30, ready=ready))
    await ready.wait()
    sent = []
    for i in range(30):
        observation = BeachObservation(
            site=entity, observed_at=T0 + timedelta(minutes=7 * i), water_temperature=15 + i / 10
        )
        await bus.publish(observation, provenance="synthetic", time=observation.observed_at)
        sent.append(observation)
    assert await asyncio.wait_for(recorder, 10) == 30
    info = read_info(path)
    assert (info.messages, info.subjects, info.provenance) == (30, 1, {"synthetic": 30})

    received: list[RawMessage] = []

    async def collect(raw: RawMessage) -> None:
        received.append(raw)

    await bus.subscribe_raw(subject, collect)
    await bus.flush()
    schedule: list[float] = []

    def on_sent(message: Outgoing, due: float, sent_at: float) -> None:
        schedule.append(due)

    speed = 42_000.0  # seven recorded minutes in 10 ms
    replayer = Replayer([path], bus.publish_raw, speed=speed, shift_to_now=False, on_sent=on_sent)
    await replayer.run()
    await wait_for(lambda: len(received) == 30)
    assert [r.subject for r in received] == [subject] * 30
    assert [msgspec.json.decode(r.data, type=BeachObservation) for r in received] == sent
    assert [r.headers["ce-time"] for r in received if r.headers] == [
        (T0 + timedelta(minutes=7 * i)).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for i in range(30)
    ]
    for k in range(1, 30):
        assert schedule[k] - schedule[0] == pytest.approx(7 * 60 * k / speed, abs=1e-6)


async def test_the_ground_truth_matches_what_a_subscriber_saw(bus: Bus, entity: str, tmp_path: Path) -> None:
    subject = f"city.public.environment.beach-observation.{entity}"
    path = tmp_path / "day.mcap"
    with RecordingWriter(path) as writer:
        for i in range(200):
            when = T0 + timedelta(minutes=i)
            body = msgspec.json.encode(
                BeachObservation(site=entity, observed_at=when, water_temperature=15.0)
            )
            headers = build_headers(
                BeachObservation.__contract__,
                event_id=f"e{i}",
                source="/rec",
                time=when,
                provenance="synthetic",
            )
            writer.add(subject, body, headers)
    plan = FaultPlan.loads(
        "seed = 42\n"
        '[[faults]]\nkind = "drop"\nprobability = 0.1\n'
        '[[faults]]\nkind = "duplicate"\nprobability = 0.05\n'
        '[[faults]]\nkind = "corrupt"\nprobability = 0.05\nmode = "truncate"\n',
        origin="test",
    )
    received: list[RawMessage] = []

    async def collect(raw: RawMessage) -> None:
        received.append(raw)

    await bus.subscribe_raw(subject, collect)
    await bus.flush()
    truth = io.StringIO()
    replayer = Replayer(
        [path],
        bus.publish_raw,
        speed=0,
        faults=lambda origin: FaultInjector(plan, origin=origin, truth=truth),
    )
    await replayer.run()
    faults = [json.loads(line) for line in truth.getvalue().splitlines()]
    kinds = Counter(f["kind"] for f in faults)
    assert set(kinds) == {"drop", "duplicate", "corrupt"}
    expected = 200 - kinds["drop"] + kinds["duplicate"]
    await wait_for(lambda: len(received) == expected)
    seen = Counter(r.headers["ce-id"] for r in received if r.headers)
    codec = Codec(BeachObservation)

    def decodes(raw: RawMessage) -> bool:
        try:
            codec.decode(raw.data)
        except ContractViolation:
            return False
        return True

    broken = {r.headers["ce-id"] for r in received if r.headers and not decodes(r)}
    assert {f["ce_id"] for f in faults if f["kind"] == "drop"}.isdisjoint(seen)
    assert {f["ce_id"] for f in faults if f["kind"] == "duplicate"} == {i for i, n in seen.items() if n == 2}
    assert {f["ce_id"] for f in faults if f["kind"] == "corrupt"} == broken
    assert sum(seen.values()) == expected and len(seen) == 200 - kinds["drop"]
