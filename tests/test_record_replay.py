"""Record live subjects from a real nats-server, replay them onto it: the same subjects, bodies and
order, with the recorded gaps kept on the replay's own schedule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from bus import Bus, RawMessage
from contracts import BeachObservation
from sandbox.faults import Outgoing
from sandbox.recorder import record
from sandbox.recording import read_info
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
