"""Failover under load on a real three-node cluster: kill -9 a stream's leader, a follower, two nodes.

What a user would notice: durable publishes on R3 streams lose nothing and store nothing twice
while nodes die and return (each message is sent again under its ``ce-id`` until acknowledged); a
durable consumer receives every message; a restarted node catches up; with two of three nodes
dead, a durable publish ends with an error that names the stream and says what to do, core
publish/subscribe goes on, and the same bus publishes durably again once the nodes are back.
How long each pause lasts is measured in ``bench/failover.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
import structlog

from bus import Bus, ConsumerSettings, Event, JetStreamUnavailableError, Metrics, PublishTimeoutError
from bus.cluster import LocalCluster
from bus.streams_config import StreamsConfig
from contracts.environment import BeachObservation

pytestmark = pytest.mark.timeout(150)

STREAM = "CITY_PUBLIC_ENVIRONMENT"
MESSAGES = 6_000
PUBLISHERS = 16


async def _bus(url: str) -> Bus:
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests/failover")
    await bus.connect(url, reconnect_wait=0.1)
    return bus


async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for ``predicate``; a bound against a hang, not a timing assertion."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - plain state, set by other tasks
            await asyncio.sleep(0.02)


async def publish_all(bus: Bus, ids: list[str], acked: list[str], workers: int) -> Counter[str]:
    """Publish one message per id durably, each sent again under the same id after an error until
    JetStream acknowledges it; returns the errors met, by type."""
    example = BeachObservation.example()
    queue = iter(ids)
    errors: Counter[str] = Counter()

    async def worker() -> None:
        for event_id in queue:
            while True:
                try:
                    await bus.publish_durable(example, event_id=event_id, timeout=5)
                except PublishTimeoutError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                acked.append(event_id)
                break

    async with asyncio.timeout(120), asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    return errors


async def leader(bus: Bus, cluster: LocalCluster) -> int:
    """The node index of the stream's leader."""
    info = await bus.js.stream_info(STREAM)
    assert info.cluster is not None and info.cluster.leader is not None
    return cluster.index_of(info.cluster.leader)


async def settled(bus: Bus, durable: str) -> bool:
    """Whether the consumer has every stored message delivered and acknowledged, as the server counts."""
    try:
        info = await bus.js.consumer_info(STREAM, durable)
    except Exception:  # noqa: BLE001 - an election in progress: not yet
        return False
    return not info.num_ack_pending and not info.num_pending


async def caught_up(bus: Bus) -> bool:
    """Whether the stream has a leader and both followers are current (none offline, none behind)."""
    try:
        peers = (await bus.js.stream_info(STREAM)).cluster
    except Exception:  # noqa: BLE001 - an election in progress: not yet
        return False
    replicas = (peers.replicas or []) if peers is not None else []
    return (
        peers is not None and bool(peers.leader) and len(replicas) == 2 and all(p.current for p in replicas)
    )


async def wait_caught_up(bus: Bus) -> None:
    async with asyncio.timeout(60):
        while not await caught_up(bus):  # noqa: ASYNC110 - polling the stream's state
            await asyncio.sleep(0.2)


async def test_killing_the_leader_then_a_follower_loses_and_duplicates_nothing(cluster: LocalCluster) -> None:
    bus = await _bus(cluster.url)
    try:
        await bus.provision_streams(StreamsConfig(replicas=3))
        deliveries: Counter[str] = Counter()

        async def count(event: Event[BeachObservation]) -> None:
            deliveries[event.id] += 1

        # A short ack_wait so that whatever is redelivered comes within the test.
        settings = ConsumerSettings(ack_wait=3.0)
        consumer = bus.consume(BeachObservation, count, durable="failover", settings=settings)
        await consumer.start()
        ids = [f"failover-{n:06d}" for n in range(MESSAGES)]
        acked: list[str] = []

        async def kill_and_restart() -> list[str]:
            killed = []
            for share, pick_leader in ((1 / 3, True), (2 / 3, False)):
                await until(lambda share=share: len(acked) >= MESSAGES * share)  # type: ignore[misc]
                first = await leader(bus, cluster)
                # The follower: the node not killed before, if the first victim leads again.
                followers = [i for i in range(3) if i != first]
                victim = (
                    first if pick_leader else max(followers, key=lambda i: cluster.names[i] not in killed)
                )
                await cluster.kill(victim)
                killed.append(cluster.names[victim])
                resumed = len(acked) + MESSAGES // 20  # publishing goes on without it
                await until(lambda resumed=resumed: len(acked) >= resumed)  # type: ignore[misc]
                await cluster.start_node(victim)
            return killed

        async with asyncio.TaskGroup() as tg:
            tg.create_task(consumer.run())
            killing = tg.create_task(kill_and_restart())
            errors = await publish_all(bus, ids, acked, PUBLISHERS)
            killed = await killing
            await until(lambda: len(deliveries) == MESSAGES)
            # Every delivery acknowledged on the server: what was to be redelivered has been.
            async with asyncio.timeout(60):
                while not await settled(bus, "failover"):  # noqa: ASYNC110 - polling the server's state
                    await asyncio.sleep(0.2)
            consumer.stop()

        structlog.get_logger().info(
            "failover measured",
            killed=killed,
            publish_errors=dict(errors),
            redeliveries_skipped=consumer.redeliveries_skipped,
        )
        assert len(killed) == 2
        state = (await bus.js.stream_info(STREAM)).state
        assert sorted(acked) == ids  # every id acknowledged once to the publisher
        assert state.messages == MESSAGES, f"stored {state.messages} for {MESSAGES} ids ({errors})"
        assert set(deliveries) == set(ids)  # 0 lost: the consumer saw every stored id
        # At least once from the server; a failover's redeliveries of handled messages are acked
        # by the consumer without reaching the handler (bus/redelivery.py): it saw each id once.
        twice = sorted(i for i, n in deliveries.items() if n > 1)
        assert not twice, (
            f"handled twice after {killed} died ({consumer.redeliveries_skipped} skipped): {twice[:5]}"
        )
        await wait_caught_up(bus)  # both restarted nodes are current replicas again
    finally:
        await bus.close()


async def test_with_two_nodes_dead_durable_publishing_says_why_and_recovers_on_the_same_bus(
    cluster: LocalCluster,
) -> None:
    bus = await _bus(cluster.url)
    listener: Bus | None = None
    try:
        await bus.provision_streams(StreamsConfig(replicas=3))
        example = BeachObservation.example()
        await bus.publish_durable(example)
        first = await leader(bus, cluster)
        dead = [first, (first + 1) % 3]
        survivor = next(i for i in range(3) if i not in dead)
        for index in dead:
            await cluster.kill(index)

        # A durable publish gives up within its timeout, naming the stream and what to do; once
        # the stream's own state says it cannot store, later publishes give up early.
        async with asyncio.timeout(60):
            while True:
                with pytest.raises(JetStreamUnavailableError) as unavailable:
                    await bus.publish_durable(example, timeout=3)
                if "give up after" in str(unavailable.value):
                    break
        text = str(unavailable.value)
        assert unavailable.value.stream == STREAM and STREAM in text
        assert "no leader" in text or "no quorum" in text or "JetStream is unavailable" in text, text
        assert "Bring its nodes back" in text, text
        assert "Error" not in text and "nats" not in text.replace("NATS", ""), text  # nothing of nats-py

        # Core publish/subscribe between two clients of the surviving node goes on.
        listener = await _bus(cluster.urls[survivor])
        heard: list[str] = []

        async def hear(event: Event[BeachObservation]) -> None:
            heard.append(event.id)

        await listener.subscribe(BeachObservation, hear)
        await listener.flush()
        await until(lambda: bus.connected)
        sent = await bus.publish(example)
        await until(lambda: sent in heard, timeout=10)

        # The nodes return: the same bus publishes durably again, without a restart.
        for index in dead:
            await cluster.start_node(index)
        async with asyncio.timeout(60):
            while True:
                try:
                    ack = await bus.publish_durable(example, event_id="after-the-outage", timeout=3)
                    break
                except PublishTimeoutError:
                    continue
        assert ack.stream == STREAM and not ack.duplicate
        assert not bus._durable.outages  # the outage is over for the bus too
        await wait_caught_up(bus)
    finally:
        if listener is not None:
            await listener.close()
        await bus.close()
