"""The embedded nats-server's memory: bounded under a fast replay, and visible in citybus's metrics.

A replay as fast as possible once grew the server to 1.95 GB: JetStream kept every replayed
``Nats-Msg-Id`` of its 120 s duplicate window in memory (``bench/server_memory.py`` measures it;
``docs/benchmarks.md`` has the figures). These tests hold the fix against a real server: replayed
messages leave no id in the window, the server runs under its memory limit, its monitoring endpoint
listens on loopback only, and its memory, JetStream use and slow consumers reach ``/metrics``
(absent, not zero, when there is nothing to read).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bus import Bus
from bus.config import load_config
from bus.envelope import build_headers
from bus.errors import ConfigError
from bus.monitor import monitor_server
from bus.server import EmbeddedServer
from contracts import BeachObservation
from sandbox.recording import RecordingWriter
from sandbox.replay import Replayer

T0 = datetime(2018, 8, 28, 6, 0, tzinfo=UTC)
LIMIT = 256 << 20


def _samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def _recording(path: Path, count: int) -> Path:
    with RecordingWriter(path) as writer:
        for i in range(count):
            when = T0 + timedelta(seconds=i)
            observation = BeachObservation(site="bragernes-strand", observed_at=when, water_temperature=17.0)
            headers = build_headers(
                BeachObservation.__contract__,
                event_id=f"b-{i}",
                source="/rec",
                time=when,
                provenance="synthetic",
            )
            writer.add(
                "city.public.environment.beach-observation.bragernes-strand",
                msgspec.json.encode(observation),
                headers,
            )
    return path


async def test_replayed_messages_leave_no_id_in_the_servers_duplicate_window(
    quiet_bus: Bus, tmp_path: Path
) -> None:
    """The ids JetStream keeps for its duplicate window were the memory: a replay must add none."""
    sent: list[dict[str, str]] = []

    async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
        sent.append(headers)
        await quiet_bus.publish_raw(subject, data, headers)

    await Replayer([_recording(tmp_path / "beach.mcap", 20)], publish, speed=0, shift_to_now=False).run()
    await quiet_bus.flush()
    assert len(sent) == 20 and all("Nats-Msg-Id" not in headers for headers in sent)
    # Published again with a replayed ce-id as its Nats-Msg-Id, within the window: stored, not a
    # duplicate, because the server never saw that id (before the fix: duplicate=True).
    again = BeachObservation(site="bragernes-strand", observed_at=T0, water_temperature=17.0)
    ack = await quiet_bus.publish_durable(again, event_id=sent[5]["ce-id"])
    assert not ack.duplicate


@pytest.fixture
async def monitored(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """A server listening for clients everywhere, its monitoring on loopback, with a memory limit."""
    server = EmbeddedServer(data_dir=tmp_path / "nats", host="0.0.0.0", monitor_port=0, memory_limit=LIMIT)
    await server.start()
    yield server
    await server.stop()


async def test_monitoring_listens_on_loopback_and_the_limit_reaches_the_server(
    monitored: EmbeddedServer,
) -> None:
    assert monitored.monitor_url is not None and monitored.monitor_url.startswith("http://127.0.0.1:")
    assert 'http: "127.0.0.1:' in monitored.config_file.read_text()  # never the 0.0.0.0 of the clients
    assert monitored.pid is not None
    environ = (await asyncio.to_thread(Path(f"/proc/{monitored.pid}/environ").read_bytes)).split(b"\0")
    assert f"GOMEMLIMIT={LIMIT}".encode() in environ
    port = monitored.monitor_url.rsplit(":", 1)[1]
    await monitored.stop()
    await monitored.start()
    assert monitored.monitor_url.endswith(f":{port}")  # a restart keeps the port the scrapes use


async def test_the_servers_memory_store_and_slow_consumers_are_exported(monitored: EmbeddedServer) -> None:
    bus = Bus(source="/tests")
    await bus.connect(monitored.url)
    try:
        await bus.provision_streams()
        for step in range(50):
            observed = T0 + timedelta(minutes=step)
            await bus.publish_durable(
                BeachObservation(site="sota-fjordpark", observed_at=observed, water_temperature=16.5)
            )
        registry = CollectorRegistry()
        assert monitored.monitor_url is not None
        monitor_server(registry, monitored.monitor_url, memory_limit=monitored.memory_limit)
        found = _samples(registry)
    finally:
        await bus.drain()
    (((_, memory),),) = [found["citybus_nats_server_memory_bytes"]]
    assert 4 << 20 < memory < 1 << 30  # a nats-server's resident set: megabytes, not nothing
    assert found["citybus_nats_server_memory_limit_bytes"] == [({}, float(LIMIT))]
    assert found["citybus_nats_server_connections"][0][1] >= 1
    assert found["citybus_nats_server_slow_consumers_total"] == [({}, 0.0)]
    assert found["citybus_nats_server_jetstream_memory_bytes"] == [({}, 0.0)]  # file streams only
    store = found["citybus_nats_server_jetstream_store_bytes"][0][1]
    streams = {
        (labels["account"], labels["stream"]): value
        for labels, value in found["citybus_nats_server_stream_bytes"]
    }
    messages = {labels["stream"]: value for labels, value in found["citybus_nats_server_stream_messages"]}
    assert messages["CITY_PUBLIC_ENVIRONMENT"] == 50
    assert 0 < streams["$G", "CITY_PUBLIC_ENVIRONMENT"] <= store  # one stream's share of the store
    assert found["citybus_nats_server_monitor_errors_total"] == [({}, 0.0)]


async def test_without_an_answer_the_server_metrics_are_absent_not_zero(monitored: EmbeddedServer) -> None:
    registry = CollectorRegistry()
    assert monitored.monitor_url is not None
    monitor_server(registry, monitored.monitor_url)
    assert "citybus_nats_server_memory_limit_bytes" not in _samples(registry)  # no limit given: none shown
    await monitored.stop()
    found = _samples(registry)
    assert not [
        name for name in found if name.startswith("citybus_nats_server_") and "monitor_errors" not in name
    ]
    assert found["citybus_nats_server_monitor_errors_total"] == [({}, 1.0)]


def test_a_memory_limit_too_small_for_the_server_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server.memory_limit"):
        load_config(None, environ={"CITYBUS_SERVER_MEMORY_LIMIT": "1000"})
    assert load_config(None, environ={"CITYBUS_SERVER_MEMORY_LIMIT": "0"}).server.memory_limit == 0
