"""The gateway's feeds on a real nats-server: last values, history, live listeners, resuming after a
position, and a stored message that does not fit its contract never served."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from adapters.gateway.feeds import ListenerClosed
from bus import Bus, subjects
from bus.envelope import build_headers, new_event_id
from bus.errors import ConfigError
from contracts import BeachObservation
from tests.conftest import wait_for
from tests.gateway_support import beach, running_gateway

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


async def test_the_public_feed_has_each_entity_s_last_value_and_history(bus: Bus, entity: str) -> None:
    for water in (15.0, 16.0, 17.5):
        await bus.publish_durable(beach(entity, water))
    async with running_gateway(bus) as gateway:
        feed = await gateway.state.feeds.of("public")
        last = feed.last(BeachObservation, entity)
        assert last is not None
        assert isinstance(last.data, BeachObservation) and last.data.water_temperature == 17.5
        waters = [i.data.water_temperature for i in feed.history(BeachObservation, entity)]  # type: ignore[attr-defined]
        assert waters == [15.0, 16.0, 17.5]
        assert last.location == pytest.approx((59.7409, 10.2138))
        event = msgspec.json.decode(last.event)
        assert event["entity"] == entity and event["contract"] == "environment.beach-observation"
        assert event["data"]["water_temperature"] == 17.5 and event["specversion"] == "1.0"
        assert event["sequence"] == f"{last.stream}:{last.seq}"


async def test_a_listener_gets_new_items_and_catch_up_resumes_after_a_position(bus: Bus, entity: str) -> None:
    await bus.publish_durable(beach(entity, 10.0))
    async with running_gateway(bus) as gateway:
        feed = await gateway.state.feeds.of("public")
        listener = feed.listen([subjects.contract_filter(BeachObservation, entity)], 16)
        mark = feed.positions()
        await bus.publish_durable(beach(entity, 11.0))
        await bus.publish_durable(beach(entity, 12.0))
        got = [await asyncio.wait_for(listener.get(), 10) for _ in range(2)]
        assert [i.data.water_temperature for i in got] == [11.0, 12.0]  # type: ignore[attr-defined]
        again = await feed.catch_up([subjects.contract_filter(BeachObservation, entity)], mark, 100)
        assert [i.seq for i in again] == [i.seq for i in got]
        listener.close("done")
        assert feed.listeners == 0


async def test_a_slow_listener_is_closed_with_a_reason_not_grown(bus: Bus, entity: str) -> None:
    async with running_gateway(bus) as gateway:
        feed = await gateway.state.feeds.of("public")
        listener = feed.listen([subjects.contract_filter(BeachObservation, entity)], 2)
        for water in (1.0, 2.0, 3.0, 4.0):
            await bus.publish_durable(beach(entity, water))
        await wait_for(lambda: listener.closed is not None)
        with pytest.raises(ListenerClosed, match="slow consumer"):
            await listener.get()
        assert feed.listeners == 0


async def test_a_stored_message_that_does_not_fit_its_contract_is_never_served(bus: Bus, entity: str) -> None:
    await bus.publish_durable(beach(entity, 14.0))
    subject = subjects.contract_filter(BeachObservation, entity)
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/tests/forger",
        time=datetime.now(UTC),
        provenance="manual",
    )
    await bus.js.publish(subject, b'{"site": "x", "water_temperature": "warm"}', headers=headers)
    async with running_gateway(bus) as gateway:
        feed = await gateway.state.feeds.of("public")
        last = feed.last(BeachObservation, entity)
        assert last is not None and last.data.water_temperature == 14.0  # type: ignore[attr-defined]
        assert len(feed.history(BeachObservation, entity)) == 1


async def test_a_taken_default_port_falls_back_to_a_free_one_a_taken_set_port_is_an_error(
    bus: Bus,
) -> None:
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(OSError):  # when something else holds 8080, it is taken all the same
        holder.bind(("127.0.0.1", 8080))
        holder.listen()
    try:
        async with running_gateway(bus, port=None) as gateway:
            assert not gateway.url.endswith(":8080") and gateway.url.startswith("http://127.0.0.1:")
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:8080 .*set another port"):
            async with running_gateway(bus, port=8080):
                pass
    finally:
        holder.close()


async def test_catching_up_on_a_sparse_pattern_asks_the_server_to_skip_the_rest(
    bus: Bus, entity: str
) -> None:
    async with running_gateway(bus) as gateway:
        feed = await gateway.state.feeds.of("public")
        mark = feed.positions()
        for water in range(200):
            await bus.publish_durable(beach(f"{entity}-busy", float(water % 30)))
        await bus.publish_durable(beach(f"{entity}-rare", 21.0))
        rare = [subjects.contract_filter(BeachObservation, f"{entity}-rare")]
        await wait_for(lambda: feed.last(BeachObservation, f"{entity}-rare") is not None)  # live reads done
        sent = feed.bus.nc.stats["out_msgs"]
        items = await feed.catch_up(rare, mark, 100)
        assert [i.data.water_temperature for i in items] == [21.0]  # type: ignore[attr-defined]
        # one read that found it and one that found nothing after it: not one per stored message
        assert feed.bus.nc.stats["out_msgs"] - sent <= 4


def test_the_gateway_raises_its_open_file_limit_and_serves_no_more_clients_than_fit() -> None:
    script = """
import resource, types, structlog
from adapters.gateway.adapter import _client_limit, open_files
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
raised = open_files()
resource.setrlimit(resource.RLIMIT_NOFILE, (400, 400))
ctx = types.SimpleNamespace(log=structlog.get_logger())
print(raised == hard or hard == resource.RLIM_INFINITY, _client_limit(5000, ctx), _client_limit(10, ctx))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["True", "144", "10"]  # 400 files, 256 kept for the rest
