"""One adapter instance in several processes: they share its durable consumer and its queue group.

Each process is ``citybus adapters run tally``, a real child process as an operator starts it (and
under access control, ``citybus up`` itself runs the instance and ``adapters run`` a second
process of it; on a three-node cluster, each process connected to a node of its own, as on two
machines). The instance is ``scaleout-tally`` (:mod:`bench.tally`), installed for real: each
process writes down every message it handled, so the test sees which process handled what. No
process is killed while messages flow: this is the steady state, where no message may be handled
twice. What a crash redelivers is the failover tests' business.

Each test first publishes small waves until both processes have handled a message (so both are
consuming, and a process that never gets a share fails the test at the deadline), then a batch
whose every message must be handled exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import structlog
from structlog.testing import capture_logs

from bench.tally import install, read_tallies
from bus import Bus, ConsumerSettings, Event, Metrics, subjects
from bus.access.login import client_login
from bus.cluster import LocalCluster
from bus.config import load_config
from bus.streams_config import StreamsConfig
from contracts import BeachObservation
from tests.test_cli import Background, citybus_env, start_up

pytestmark = pytest.mark.slow

BATCH = 600
"""Messages published once both processes are consuming: every one handled exactly once."""
DEADLINE = 60.0
"""A bound against hangs (a process that never gets its share), not a performance expectation."""
READY = '"event": "adapter ready"'
STREAM = subjects.stream_name(
    BeachObservation.__contract__.classification, BeachObservation.__contract__.domain
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The tally adapter installed (a ``*.dist-info`` on ``PYTHONPATH``)."""
    return install(tmp_path / "site")


def observation() -> BeachObservation:
    """A beach observation of now."""
    return msgspec.structs.replace(BeachObservation.example(), observed_at=datetime.now(UTC))


def section(record: Path, mode: str, name: str = "tally") -> str:
    """The instance's ``[adapters.NAME]`` section."""
    return f'[adapters.{name}]\nadapter = "scaleout-tally"\nrecord = "{record}"\nmode = "{mode}"\n'


def handled(record: Path) -> Counter[str]:
    """How often each ``ce-id`` was handled, over every process."""
    return Counter(event_id for tally in read_tallies(record) for event_id in tally.ids)


async def share(record: Path, publish: Callable[[], Awaitable[str]]) -> list[str]:
    """Publish waves of ten until every process has handled at least one message; the ``ce-id``s."""
    sent: list[str] = []
    async with asyncio.timeout(DEADLINE):
        while sum(1 for tally in read_tallies(record) if tally.ids) < 2:
            sent += [await publish() for _ in range(10)]
            await asyncio.sleep(0.05)
    return sent


async def batch(record: Path, publish: Callable[[], Awaitable[str]]) -> list[str]:
    """Publish :data:`BATCH` messages and wait until each was handled; their ``ce-id``s."""
    sent = [await publish() for _ in range(BATCH)]
    async with asyncio.timeout(DEADLINE):
        while not set(sent) <= set(handled(record)):  # noqa: ASYNC110 - files, not an event
            await asyncio.sleep(0.05)
    return sent


async def stopped(*children: Background) -> None:
    """Ctrl-C each child, and kill what is left (a test that failed must leave nothing running)."""
    for child in children:
        try:
            await child.stop()
        finally:
            await child.kill()


@contextlib.asynccontextmanager
async def two_processes(tmp_path: Path, site: Path, mode: str, urls: tuple[str, str]) -> AsyncIterator[Path]:
    """Two ``citybus adapters run tally`` processes of ``mode``, the first connected to ``urls[0]``,
    the second to ``urls[1]``; the directory of their tallies."""
    record = tmp_path / "record"
    toml = tmp_path / "citybus.toml"
    toml.write_text('[auth]\nmode = "off"\n' + section(record, mode))
    env = citybus_env(tmp_path / "data")
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(site)])
    children: list[Background] = []
    try:
        for url in urls:
            args = ("--log-format", "json", "adapters", "run", "tally", "--config", str(toml), "--nats", url)
            children.append(await Background.start(*args, cwd=tmp_path, env=env))
        for child in children:
            await child.wait_said(READY)
        yield record
    finally:
        await stopped(*children)


async def durable_shared(bus: Bus, record: Path) -> None:
    """Publish durably until both processes handle some, then a batch; every message handled once."""

    async def publish() -> str:
        return (await bus.publish_durable(observation(), provenance="synthetic")).event_id

    sent = await share(record, publish)
    sent += await batch(record, publish)
    counts = handled(record)
    assert set(counts) == set(sent), "every stored message handled"
    assert [event_id for event_id, n in counts.items() if n > 1] == [], "none handled twice"
    tallies = read_tallies(record)
    assert len(tallies) == 2 and all(tally.ids for tally in tallies), "both processes took a share"
    # one consumer on the server, for both processes, with nothing left unacknowledged
    [consumer] = await bus.js.consumers_info(STREAM)
    assert consumer.name == subjects.durable_name("tally", BeachObservation)
    assert consumer.num_ack_pending == 0


async def test_two_processes_share_the_instances_durable_consumer(
    quiet_bus: Bus, tmp_path: Path, site: Path
) -> None:
    async with two_processes(tmp_path, site, "durable", (quiet_bus.url, quiet_bus.url)) as record:
        await durable_shared(quiet_bus, record)


async def test_two_processes_on_two_nodes_of_a_cluster_share_the_durable_consumer(
    cluster: LocalCluster, tmp_path: Path, site: Path
) -> None:
    """As on two machines, each near a node of its own: the stream on three replicas, each process
    connected to another node, the publisher to the third."""
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests")
    await bus.connect(cluster.urls[2], reconnect_wait=0.1)
    try:
        await bus.provision_streams(StreamsConfig(replicas=3))
        async with two_processes(tmp_path, site, "durable", (cluster.urls[0], cluster.urls[1])) as record:
            await durable_shared(bus, record)
    finally:
        await bus.drain()


async def queue_group_shared(bus: Bus, tmp_path: Path, site: Path, urls: tuple[str, str]) -> None:
    """Core messages (at most once) to two processes of the instance: each to one of them."""

    async def publish() -> str:
        return await bus.publish(observation(), provenance="synthetic")

    async with two_processes(tmp_path, site, "core", urls) as record:
        warm_up = await share(record, publish)  # before both joined the group, some may go to no one
        sent = await batch(record, publish)
    counts = handled(record)
    assert all(counts[event_id] == 1 for event_id in sent), "each message to one process of the group"
    assert all(counts[event_id] <= 1 for event_id in warm_up), "never to both"
    tallies = read_tallies(record)
    assert len(tallies) == 2 and all(tally.ids for tally in tallies), "both processes took a share"


async def test_two_processes_share_the_instances_queue_group(
    quiet_bus: Bus, tmp_path: Path, site: Path
) -> None:
    await queue_group_shared(quiet_bus, tmp_path, site, (quiet_bus.url, quiet_bus.url))


async def test_two_processes_on_two_nodes_of_a_cluster_share_the_queue_group(
    cluster: LocalCluster, tmp_path: Path, site: Path
) -> None:
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests")
    await bus.connect(cluster.urls[2], reconnect_wait=0.1)
    try:
        await queue_group_shared(bus, tmp_path, site, (cluster.urls[0], cluster.urls[1]))
    finally:
        await bus.drain()


async def test_citybus_up_and_adapters_run_share_an_instance_under_access_control(
    tmp_path: Path, site: Path
) -> None:
    """``citybus up`` runs the instance; ``citybus adapters run tally`` (no --nats: it finds the
    running instance and logs in as the instance's own user) runs it a second time. Only that user
    may fetch from the instance's durable consumer, so both processes handling messages is both
    logged in as it."""
    record = tmp_path / "record"
    extra = section(record, "durable") + '[adapters.feed]\nadapter = "scaleout-feed"\n'
    up = await start_up(tmp_path / "up", site=site, extra=extra)
    child: Background | None = None
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests")
    try:
        child = await Background.start(
            "--log-format", "json", "adapters", "run", "tally", cwd=up.cwd, env=up.env
        )  # fmt: skip
        await child.wait_said(READY)
        config = load_config(up.cwd / "citybus.toml", environ={"CITYBUS_SERVER_DATA_DIR": str(up.data_dir)})
        await client_login(config, user="feed", account="city").connect(bus, config)

        async def publish() -> str:
            return (await bus.publish_durable(observation(), provenance="synthetic")).event_id

        sent = await share(record, publish)
        sent += await batch(record, publish)
    finally:
        await bus.drain()
        if child is not None:
            await stopped(child)
        await up.stop()
    counts = handled(record)
    assert set(counts) == set(sent)
    assert [event_id for event_id, n in counts.items() if n > 1] == []
    pids = {tally.pid for tally in read_tallies(record) if tally.ids}
    assert child is not None and pids == {up.process.process.pid, child.process.pid}


async def test_a_process_started_with_other_consumer_settings_applies_them_keeping_the_place(
    quiet_bus: Bus,
) -> None:
    """The durable consumer outlives its processes: one started with other ``[consumer]`` settings
    updates it (with a warning), and it goes on from where it was."""
    durable = "scaleout-settings-beach-observation-v1"
    seen: list[str] = []

    async def handle(event: Event[BeachObservation]) -> None:
        seen.append(event.id)

    async def consume_until(count: int, settings: ConsumerSettings) -> None:
        consumer = quiet_bus.consume(BeachObservation, handle, durable=durable, settings=settings)
        await consumer.start()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(consumer.run())
            async with asyncio.timeout(DEADLINE):
                while len(seen) < count:  # noqa: ASYNC110 - a list the handler fills
                    await asyncio.sleep(0.01)
            consumer.stop()
            await task

    first = [ack.event_id for ack in await quiet_bus.publish_durable_many(observation() for _ in range(5))]
    await consume_until(5, ConsumerSettings())
    with capture_logs() as same:
        await consume_until(5, ConsumerSettings())  # the same settings: bound as it is, nothing said
    assert [e for e in same if e["event"] == "durable consumer settings changed"] == []

    later = [ack.event_id for ack in await quiet_bus.publish_durable_many(observation() for _ in range(5))]
    with capture_logs() as logs:
        await consume_until(10, ConsumerSettings(ack_wait=75.0, max_in_flight=100))
    info = await quiet_bus.js.consumer_info(STREAM, durable)
    assert (info.config.ack_wait, info.config.max_ack_pending) == (75.0, 400)
    assert seen == first + later, "the place in the stream kept: nothing again, nothing skipped"
    [changed] = [e for e in logs if e["event"] == "durable consumer settings changed"]
    assert changed["changed"] == {"ack_wait": "30.0 -> 75.0", "max_ack_pending": "256 -> 400"}
