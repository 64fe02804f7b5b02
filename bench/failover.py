"""Failover under load (issue 20): a three-node cluster losing nodes while citybus publishes and consumes.

1. **Kill -9 under load.** A :class:`~bus.cluster.LocalCluster` of three nats-servers, the streams
   provisioned with three replicas. One process, four connections, as four components would have
   them: a publisher making ``N`` durable publishes (:data:`PUBLISHERS` concurrent
   ``Bus.publish_durable`` calls, each message with its own ``ce-id``, sent again under the same id
   after an error until acknowledged), a durable consumer (``Bus.consume``) counting the ids it is
   handed, a sandbox replay (:class:`sandbox.replay.Replayer` as :mod:`bench.replay` drives it,
   train calls and bike statuses at :attr:`Sizes.replay_rate` a second into ``CITY_PUBLIC_MOBILITY``,
   also R3, through ``Bus.publish_raw``), and a watcher reading the stream's state. A third of the
   way in, the stream's leader is killed (SIGKILL) and started again once publishing has gone on
   without it; two thirds in, a follower (the node not killed before, if the first victim leads
   again). Every acknowledgement, every delivery to the handler and every replayed message is
   timestamped: a *pause* is the longest gap between two successive ones from the kill on, and
   *resumed after* is when that gap ended, counted from the kill. *Caught up* is when the restarted
   node's replica of the stream is current again (polled every 0.1 s), counted from its restart.
   Afterwards the stream must hold ``N`` messages with ``N`` distinct ids, every one handed to the
   consumer; the consumer's redeliveries are those the server made (acknowledged again by the
   consumer without its handler, :mod:`bus.redelivery`) and any the handler saw.
2. **Two nodes dead.** The stream's leader and a follower are killed together. Durable publishes
   go on, each with a timeout of :attr:`Sizes.outage_timeout`: the time to the first error, what it
   says, how long the next ones take to give up, and whether core publish/subscribe between two
   connections of the surviving node still works. Then both nodes start again and the same bus
   publishes until one is stored: the time from the nodes running to that, and to the consumer
   being handed it.
3. **Durable publish on R3 against R1.** The same cluster, ``CITY_PUBLIC_ENVIRONMENT`` made anew
   with one replica, then with three (the same configuration otherwise), and on a single
   nats-server for reference: ``Bus.publish_durable_many`` (window 1024) and ``Bus.publish_durable``
   one after the other, fresh ids, :attr:`Sizes.rounds` rounds with the order alternating; a ratio
   is R3 / R1 of the same round, the figure its median.

Decisions, and why:

* **One process, four connections.** Each component has its own connection, so each fails over on
  its own (nats-py picks another node of the URL list when its node dies), which is what is
  measured; a process each would add what two shared cores already lack.
* **Pauses from timestamps, not from the kill's own clock.** The longest gap between successive
  acknowledgements says how long publishing stopped, however the retries inside
  ``publish_durable`` went; it includes the leader election (nats-server's election timeouts are
  4–9 s) and the time the clients take to notice.
* **A short ``ack_wait`` (5 s)** for the consumer, so that whatever the server redelivers comes
  within the case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import nats.js.errors
import structlog

from bench.common import CASE_LIMIT, BenchError, Options, Spec, log
from bench.recordings import load_templates, spread, write_recording
from bench.report import Case, Figure, Row, Target
from bench.stats import median
from bus import Bus, ConsumerSettings, Event, Metrics, NotConnectedError, PublishTimeoutError
from bus.cluster import LocalCluster
from bus.server import EmbeddedServer
from bus.streams_config import StreamsConfig
from contracts import BeachObservation
from sandbox.replay import Replayer

__all__ = ["CASES", "TITLE", "main"]

TITLE: Final = "Failover under load: kill -9 on a three-node cluster"
STREAM: Final = "CITY_PUBLIC_ENVIRONMENT"
REPLAYED: Final = "CITY_PUBLIC_MOBILITY"
DURABLE: Final = "bench-failover"
PUBLISHERS: Final = 32
PUBLISH_TIMEOUT: Final = 10.0
"""The timeout of each durable publish under load (an election takes 4-9 s)."""
WINDOW: Final = 1024
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the full run, or a smoke run."""

    messages: int
    replay_rate: float
    outage_timeout: float
    throughput: int
    """Messages of each ``publish_durable_many`` measurement (a fifth of them one after the other)."""
    rounds: int
    later_errors: int
    """Durable publishes timed after the first error of the two-dead part."""


FULL: Final = Sizes(100_000, 1_000.0, 10.0, 20_000, 3, 5)
SMOKE: Final = Sizes(3_000, 200.0, 3.0, 1_000, 1, 2)


def _quiet() -> Any:
    """A logger for the bench's buses and nodes: their warnings during a failover are the expected."""
    return structlog.wrap_logger(
        structlog.ReturnLogger(), wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL)
    )


async def _bus(url: str) -> Bus:
    bus = Bus(metrics=Metrics(), logger=_quiet(), source="/bench/failover")
    await bus.connect(url, reconnect_wait=0.1)
    return bus


async def _until(
    predicate: Callable[[], bool], what: str, limit: float = CASE_LIMIT, detail: Callable[[], str] = str
) -> None:
    """Wait for ``predicate`` (plain state set by other tasks), failing the case after ``limit``
    (saying ``detail()``)."""
    try:
        async with asyncio.timeout(limit):
            while not predicate():  # noqa: ASYNC110 - plain state
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise BenchError(f"failover: {what} did not happen within {limit:.0f} s{detail()}") from None


def pause(
    times: Sequence[float], since: float, before: float, *, spanning: bool = True
) -> tuple[float, float]:
    """The longest gap between successive ``times`` that ends after ``since`` and begins before
    ``before`` (the next event), counted from ``since``; and when it ended, from ``since``. A kill
    owns the gap it interrupted (``spanning``); a restart only those that begin after it, so that a
    pause the kill began is not counted twice. NaN, NaN: nothing came after ``since``."""
    ordered = sorted(times)
    longest, ended = math.nan, math.nan
    for earlier, later in itertools.pairwise(ordered):
        if later > since and earlier < before and (spanning or earlier >= since):
            gap = later - max(earlier, since)
            if not gap <= longest:  # the first, or a longer one
                longest, ended = gap, later - since
    return longest, ended


# -- part 1: kill -9 under load -------------------------------------------------------------------


@dataclass
class Kill:
    """One node killed and started again, and what its death did."""

    role: str
    node: str
    consumer_leader: str
    """The node leading the durable consumer when the kill came (not always the stream's leader)."""
    connected: str
    """The components whose connection was to the killed node (they reconnect to another)."""
    at: float
    restarted: float = 0.0
    running: float = 0.0
    current: float = 0.0


@dataclass
class Load:
    """What the publisher, the consumer and the replay did, timestamped on the loop's clock."""

    acks: list[float] = field(default_factory=list)
    deliveries: list[float] = field(default_factory=list)
    handled: Counter[str] = field(default_factory=Counter)
    replayed: list[float] = field(default_factory=list)
    replay_dropped: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_texts: dict[str, str] = field(default_factory=dict)


async def leader_of(bus: Bus, cluster: LocalCluster, stream: str = STREAM) -> int | None:
    """The node index of ``stream``'s leader, or ``None`` while it has none (or nobody answers)."""
    try:
        info = await bus.js.stream_info(stream)
    except Exception:  # noqa: BLE001 - an election in progress: no leader to name
        return None
    leader = info.cluster.leader if info.cluster is not None else None
    return cluster.index_of(leader) if leader else None


async def current(bus: Bus, node: str, stream: str = STREAM) -> bool:
    """Whether ``node`` holds a current replica of ``stream`` (its leader, or a current follower)."""
    try:
        peers = (await bus.js.stream_info(stream)).cluster
    except Exception:  # noqa: BLE001 - an election in progress: not yet
        return False
    if peers is None or not peers.leader:
        return False
    return peers.leader == node or any(p.name == node and p.current for p in peers.replicas or [])


async def publish(bus: Bus, ids: list[str], load: Load) -> None:
    """Each id once, durably, by :data:`PUBLISHERS` tasks; after an error, the same id again."""
    loop = asyncio.get_running_loop()
    example = BeachObservation.example()
    queue = iter(ids)

    async def publisher() -> None:
        for event_id in queue:
            while True:
                try:
                    await bus.publish_durable(example, event_id=event_id, timeout=PUBLISH_TIMEOUT)
                except PublishTimeoutError as exc:
                    name = type(exc).__name__
                    load.errors[name] += 1
                    load.error_texts.setdefault(name, str(exc))
                    continue
                load.acks.append(loop.time())
                break

    async with asyncio.TaskGroup() as tg:
        for _ in range(PUBLISHERS):
            tg.create_task(publisher())


async def replay(bus: Bus, recording: Path, load: Load) -> None:
    """The sandbox replay at its recording's pace, looping, until cancelled; a message its lost
    connection cannot take is counted, as core NATS loses it."""

    async def into_bus(subject: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            await bus.publish_raw(subject, data, headers)
        except NotConnectedError:
            load.replay_dropped += 1

    replayer = Replayer(
        [recording],
        into_bus,
        speed=1.0,
        loop=True,
        shift_to_now=True,
        on_sent=lambda _message, _due, at: load.replayed.append(at),
        logger=_quiet(),
    )
    await replayer.run()


async def kill_twice(
    cluster: LocalCluster, watcher: Bus, load: Load, n: int, components: dict[str, Bus]
) -> list[Kill]:
    """Kill the stream's leader a third in and a follower two thirds in (once the first is current
    again), each started again once publishing went on without it; wait until each restarted node
    is current."""
    loop = asyncio.get_running_loop()
    kills: list[Kill] = []
    catching_up: list[asyncio.Task[None]] = []

    async def catch_up(kill: Kill) -> None:
        async with asyncio.timeout(CASE_LIMIT):
            while not await current(watcher, kill.node):  # noqa: ASYNC110 - polling the server's state
                await asyncio.sleep(0.1)
        kill.current = loop.time()

    for share, role in ((1 / 3, "leader"), (2 / 3, "follower")):
        await _until(lambda share=share: len(load.acks) >= n * share, f"{share:.0%} acknowledged")  # type: ignore[misc]
        if catching_up:  # a second death while the first node still catches up stops the stream
            await catching_up[-1]
        first = await leader_of(watcher, cluster)
        if first is None:
            raise BenchError("failover: the stream had no leader before a kill")
        if role == "leader":
            victim = first
        else:
            followers = [i for i in range(cluster.size) if i != first]
            victim = max(followers, key=lambda i: all(k.node != cluster.names[i] for k in kills))
        try:
            info = await watcher.js.consumer_info(STREAM, DURABLE)
            consumer_leader = (info.cluster.leader if info.cluster is not None else None) or "none"
        except Exception:  # noqa: BLE001 - an election in progress
            consumer_leader = "unknown"
        port = cluster.urls[victim].rpartition(":")[2]
        on_it = [
            name for name, bus in components.items() if str(getattr(bus.nc.connected_url, "port", "")) == port
        ]
        kill = Kill(role, cluster.names[victim], consumer_leader, ", ".join(on_it) or "none", loop.time())
        log(f"failover: kill -9 the {role}, {kill.node}")
        await cluster.kill(victim)
        kills.append(kill)
        goal = min(len(load.acks) + n // 20, n)  # publishing went on without it
        await _until(
            lambda goal=goal: len(load.acks) >= goal,  # type: ignore[misc]
            "publishing after the kill",
            detail=lambda: (
                f" ({len(load.acks)} acknowledged; errors: {dict(load.errors)}; {load.error_texts})"
            ),
        )
        kill.restarted = loop.time()
        await cluster.start_node(victim)
        kill.running = loop.time()
        catching_up.append(asyncio.ensure_future(catch_up(kill)))
    await asyncio.gather(*catching_up)
    return kills


async def settled(bus: Bus) -> bool:
    """Whether the consumer has every stored message delivered and acknowledged, as the server counts."""
    try:
        info = await bus.js.consumer_info(STREAM, DURABLE)
    except Exception:  # noqa: BLE001 - an election in progress: not yet
        return False
    return not info.num_ack_pending and not info.num_pending


@dataclass
class UnderLoad:
    """Part 1's outcome."""

    kills: list[Kill]
    load: Load
    """What happened until the end of part 1 (a copy: the consumer goes on into part 2)."""
    stored: int
    skipped: int
    seconds: float
    end: float


async def under_load(
    cluster: LocalCluster, sizes: Sizes, recording: Path, consumer_bus: Bus, consumer: Any, load: Load
) -> UnderLoad:
    """Part 1 (see the module): the publishes, the consumer and the replay, two kills."""
    loop = asyncio.get_running_loop()
    publisher, replayer_bus, watcher = [await _bus(cluster.url) for _ in range(3)]
    n = sizes.messages
    ids = [f"failover-{i:07d}" for i in range(n)]
    try:
        started = loop.time()
        replaying = asyncio.ensure_future(replay(replayer_bus, recording, load))
        components = {"publisher": publisher, "consumer": consumer_bus, "replay": replayer_bus}
        killing = asyncio.ensure_future(kill_twice(cluster, watcher, load, n, components))
        try:
            async with asyncio.timeout(3 * CASE_LIMIT):  # 100,000 publishes: a bound against a hang
                await publish(publisher, ids, load)
            kills = await killing
        finally:
            for task in (replaying, killing):
                task.cancel()
            await asyncio.gather(replaying, killing, return_exceptions=True)
        seconds = loop.time() - started
        await _until(lambda: len(load.handled) >= n, "every message handed to the consumer")
        async with asyncio.timeout(CASE_LIMIT):
            while not await settled(consumer_bus):  # noqa: ASYNC110 - polling the server's state
                await asyncio.sleep(0.2)
        stored = (await watcher.js.stream_info(STREAM)).state.messages
        copy = Load(
            acks=list(load.acks),
            deliveries=list(load.deliveries),
            handled=Counter(load.handled),
            replayed=list(load.replayed),
            replay_dropped=load.replay_dropped,
            errors=Counter(load.errors),
            error_texts=dict(load.error_texts),
        )
        return UnderLoad(kills, copy, stored, consumer.redeliveries_skipped, seconds, loop.time())
    finally:
        for bus in (publisher, replayer_bus, watcher):
            await bus.close()


# -- part 2: two nodes dead -------------------------------------------------------------------------


@dataclass
class Outage:
    """Part 2's outcome: seconds, and what citybus said."""

    first_error: float
    first_text: str
    first_type: str
    later: list[float]
    later_text: str
    core_sent: int
    core_heard: int
    start_seconds: float
    stored_after: float
    consumed_after: float


async def two_dead(cluster: LocalCluster, sizes: Sizes, load: Load) -> Outage:
    """Part 2 (see the module): two nodes killed at once, durable publishes, core pub/sub, recovery."""
    loop = asyncio.get_running_loop()
    bus = await _bus(cluster.url)
    listener: Bus | None = None
    try:
        first = await leader_of(bus, cluster)
        if first is None:
            raise BenchError("failover: the stream had no leader before the two kills")
        dead = [first, (first + 1) % cluster.size]
        survivor = next(i for i in range(cluster.size) if i not in dead)
        example = BeachObservation.example()
        log(f"failover: kill -9 {', '.join(cluster.names[i] for i in dead)} together")
        killed = loop.time()
        for index in dead:
            await cluster.kill(index)
        errors: list[tuple[float, PublishTimeoutError]] = []
        for number in range(1 + sizes.later_errors):
            began = loop.time()
            try:
                await bus.publish_durable(example, event_id=f"outage-{number}", timeout=sizes.outage_timeout)
            except PublishTimeoutError as exc:
                errors.append((loop.time() - (killed if number == 0 else began), exc))
                continue
            raise BenchError("failover: a durable publish was stored with two of three nodes dead")
        listener = await _bus(cluster.urls[survivor])
        heard: list[str] = []

        async def hear(event: Event[BeachObservation]) -> None:
            heard.append(event.id)

        await listener.subscribe(BeachObservation, hear)
        await listener.flush()
        await _until(lambda: bus.connected, "the bus on the surviving node")
        sent = [await bus.publish(example) for _ in range(100)]
        await bus.flush()
        with contextlib.suppress(BenchError):
            await _until(lambda: len(heard) >= len(sent), "core messages heard", limit=5)
        began = loop.time()
        for index in dead:
            await cluster.start_node(index)
        running = loop.time()
        async with asyncio.timeout(CASE_LIMIT):
            while True:
                try:
                    ack = await bus.publish_durable(example, event_id="after-the-outage", timeout=2.0)
                    break
                except PublishTimeoutError:
                    continue
        stored = loop.time()
        await _until(lambda: "after-the-outage" in load.handled, "the consumer handed the first stored")
        consumed = loop.time()
        if ack.stream != STREAM:
            raise BenchError(f"failover: stored in {ack.stream}, not {STREAM}")
        (first_error, error), *later = errors
        return Outage(
            first_error=first_error,
            first_text=str(error),
            first_type=type(error).__name__,
            later=[seconds for seconds, _ in later],
            later_text=str(later[-1][1]) if later else "",
            core_sent=len(sent),
            core_heard=len(set(sent) & set(heard)),
            start_seconds=running - began,
            stored_after=stored - running,
            consumed_after=consumed - running,
        )
    finally:
        if listener is not None:
            await listener.close()
        await bus.close()


# -- part 3: R3 against R1 --------------------------------------------------------------------------


async def remake(bus: Bus, replicas: int) -> None:
    """``CITY_PUBLIC_ENVIRONMENT`` made anew, empty, with ``replicas`` and its configuration otherwise;
    each step tried again while JetStream says it is unavailable (a cluster whose nodes just came back
    is still electing its leaders)."""
    config = (await _again(lambda: bus.js.stream_info(STREAM))).config
    config.num_replicas = replicas

    async def delete() -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):  # deleted by a try whose answer was lost
            await bus.js.delete_stream(STREAM)

    async def add() -> None:
        try:
            await bus.js.add_stream(config)
        except nats.js.errors.BadRequestError:  # made by a try whose answer was lost?
            if (await bus.js.stream_info(STREAM)).config.num_replicas != replicas:
                raise

    await _again(delete)
    await _again(add)


async def _again(step: Callable[[], Awaitable[T]]) -> T:
    """``step()``, tried again every 0.2 s while it fails, for :data:`~bench.common.CASE_LIMIT` s."""
    async with asyncio.timeout(CASE_LIMIT):
        while True:
            try:
                return await step()
            except Exception:  # noqa: BLE001 - unavailable, or a deletion still being applied: again
                await asyncio.sleep(0.2)


async def rates(bus: Bus, count: int, tag: str) -> tuple[float, float]:
    """msg/s of ``publish_durable_many`` (``count`` messages) and of ``publish_durable`` one after the
    other (a fifth of them), each message with a fresh id."""
    example = BeachObservation.example()
    async with asyncio.timeout(CASE_LIMIT):
        started = time.perf_counter()
        acks = await bus.publish_durable_many([example] * count, window=WINDOW)
        many = count / (time.perf_counter() - started)
        one = max(count // 5, 1)
        started = time.perf_counter()
        for i in range(one):
            await bus.publish_durable(example, event_id=f"{tag}-{i}")
        single = one / (time.perf_counter() - started)
    stored = (await bus.js.stream_info(STREAM)).state.messages
    if len(acks) != count or stored != count + one:
        raise BenchError(f"failover: {tag}: {stored} stored of {count + one} published")
    return many, single


async def throughput(cluster: LocalCluster, sizes: Sizes, work: Path) -> dict[str, list[tuple[float, float]]]:
    """Part 3 (see the module): each setup's (many, one-by-one) msg/s, round by round."""
    measured: dict[str, list[tuple[float, float]]] = {"R1": [], "R3": [], "single": []}
    server = EmbeddedServer(data_dir=work / "failover-single", logger=_quiet())
    await server.start()
    cluster_bus, single_bus = await _bus(cluster.url), await _bus(server.url)
    try:
        await single_bus.provision_streams()
        setups = ("R1", "R3", "single")
        for number in range(1, sizes.rounds + 1):
            for setup in setups if number % 2 else setups[::-1]:
                log(f"failover: throughput, round {number}, {setup}")
                bus = single_bus if setup == "single" else cluster_bus
                await remake(bus, 3 if setup == "R3" else 1)
                measured[setup].append(await rates(bus, sizes.throughput, f"{setup}-{number}"))
    finally:
        await cluster_bus.close()
        await single_bus.close()
        await server.stop()
    return measured


# -- the case -------------------------------------------------------------------------------------


def failover_case(options: Options) -> Case:
    """The three parts, on one cluster of the run's own."""
    return asyncio.run(_failover(SMOKE if options.smoke else FULL, options))


async def _failover(sizes: Sizes, options: Options) -> Case:
    case = Case(
        TITLE,
        f"{sizes.messages:,} durable publishes (`Bus.publish_durable`, {PUBLISHERS} at once, each id "
        f"sent again after an error, timeout {PUBLISH_TIMEOUT:g} s) into `{STREAM}` with three replicas, a "
        f"durable consumer of it (`Bus.consume`, default settings but `ack_wait` 5 s) and a sandbox replay "
        f"into `{REPLAYED}` (R3, {sizes.replay_rate:,.0f} msg/s of train calls and bike statuses), one "
        "process, each with a connection of its own to the three nodes; the stream's leader killed "
        "(SIGKILL) a third in, a follower two thirds in (once the first node is current again), each "
        "started again once publishing had gone on without it. *Paused*: the longest gap between "
        "successive acknowledgements (deliveries to the handler, replayed messages) from the kill on; "
        "*resumed after*: when it ended, from the kill; *caught up*: the restarted node's replica current "
        "again, from its restart (`bench/failover.py`).",
    )
    work = options.work
    recording = work / "failover-replay.mcap"
    seconds = 60.0
    write_recording(
        recording, spread(int(sizes.replay_rate * seconds), seconds, ("train", "bike")), load_templates()
    )
    cluster = LocalCluster(data_dir=work / "failover-cluster", size=3, logger=_quiet())
    await cluster.start()
    load = Load()
    consumer_bus: Bus | None = None
    try:
        consumer_bus = await _bus(cluster.url)
        await consumer_bus.provision_streams(StreamsConfig(replicas=3))
        loop = asyncio.get_running_loop()

        async def count(event: Event[BeachObservation]) -> None:
            load.handled[event.id] += 1
            load.deliveries.append(loop.time())

        consumer = consumer_bus.consume(
            BeachObservation, count, durable=DURABLE, settings=ConsumerSettings(ack_wait=5.0)
        )
        await consumer.start()
        consuming = asyncio.ensure_future(consumer.run())
        try:
            log(f"failover: {sizes.messages:,} durable publishes, a consumer, a replay; two kills")
            result = await under_load(cluster, sizes, recording, consumer_bus, consumer, load)
            log("failover: two nodes dead")
            outage = await two_dead(cluster, sizes, load)
        finally:
            consumer.stop()
            consuming.cancel()
            await asyncio.gather(consuming, return_exceptions=True)
        async with asyncio.timeout(CASE_LIMIT):
            while not all([await current(consumer_bus, name) for name in cluster.names]):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        measured = await throughput(cluster, sizes, work)
    finally:
        if consumer_bus is not None:
            await consumer_bus.close()
        await cluster.stop()
    report(case, sizes, result, outage, measured)
    return case


def report(
    case: Case,
    sizes: Sizes,
    result: UnderLoad,
    outage: Outage,
    measured: dict[str, list[tuple[float, float]]],
) -> None:
    """The case's tables, targets, notes and figures."""
    load, n = result.load, sizes.messages
    distinct = len(load.handled)
    lost = n - distinct
    duplicated = result.stored - distinct
    handled_twice = sum(count - 1 for count in load.handled.values())
    outcome = {
        "published": f"{n:,}",
        "acknowledged": f"{len(load.acks):,}",
        "stored": f"{result.stored:,}",
        "distinct ids handed to the consumer": f"{distinct:,}",
        "lost": f"{lost:,}",
        "stored twice": f"{duplicated:,}",
        "redelivered by the server": f"{result.skipped + handled_twice:,}",
        "handled twice": f"{handled_twice:,}",
        "publish errors (sent again)": ", ".join(f"{c:,} {name}" for name, c in load.errors.items()) or "0",
        "msg/s over the run": f"{n / result.seconds:,.0f}",
        "replayed meanwhile (lost by a dead connection)": f"{len(load.replayed):,} ({load.replay_dropped:,})",
    }
    case.tables.append(("What was published, stored and handed to the consumer:", [Row(outcome)]))
    pauses = []
    for number, kill in enumerate(result.kills):
        following = result.kills[number + 1].at if number + 1 < len(result.kills) else result.end
        for event, since, until in (
            (
                f"the {kill.role} ({kill.node}) killed; the consumer's leader: {kill.consumer_leader}; "
                f"connected to it: {kill.connected}",
                kill.at,
                kill.restarted,
            ),
            (f"it started again, {kill.restarted - kill.at:.1f} s after", kill.restarted, following),
        ):
            spanning = since == kill.at
            cells = {"event": event}
            for label, times in (
                ("publishing", load.acks),
                ("consumer", load.deliveries),
                ("replay", load.replayed),
            ):
                longest, ended = pause(times, since, until, spanning=spanning)
                shown = "none after it" if math.isnan(ended) else f"{longest:.2f} ({ended:.2f})"
                cells[f"{label} paused s (resumed after s)"] = shown
            cells["caught up after s"] = (
                f"{kill.current - kill.running:.2f}" if since == kill.restarted else ""
            )
            pauses.append(Row(cells))
    case.tables.append(
        (
            "Each kill and restart: the longest pause of publishing (between acknowledgements), of the "
            "consumer (deliveries to its handler) and of the replay (messages sent): for a kill, the pause "
            "it interrupted or one beginning before the restart; for a restart, one beginning after it and "
            "before the next kill; in brackets when it ended, from the event:",
            pauses,
        )
    )
    later = median(outage.later) if outage.later else float("nan")
    case.tables.append(
        (
            f"Two of three nodes dead (durable publishes with a timeout of {sizes.outage_timeout:g} s):",
            [
                Row(
                    {
                        "what": "first durable publish after the kills: gave up after",
                        "s": f"{outage.first_error:.2f}",
                        "citybus": outage.first_type,
                    }
                ),
                Row(
                    {
                        "what": f"the next {len(outage.later)}: each gave up after (median)",
                        "s": f"{later:.2f}",
                        "citybus": "the same, known outage",
                    }
                ),
                Row(
                    {
                        "what": "core publish → subscribe on the surviving node",
                        "s": "",
                        "citybus": f"{outage.core_heard} of {outage.core_sent} heard",
                    }
                ),
                Row(
                    {
                        "what": "both nodes started again (`start_node`, until they listen)",
                        "s": f"{outage.start_seconds:.2f}",
                        "citybus": "",
                    }
                ),
                Row(
                    {
                        "what": "the same bus stored a durable publish, from the nodes running",
                        "s": f"{outage.stored_after:.2f}",
                        "citybus": "no restart",
                    }
                ),
                Row(
                    {
                        "what": "the consumer was handed it, from the nodes running",
                        "s": f"{outage.consumed_after:.2f}",
                        "citybus": "",
                    }
                ),
            ],
        )
    )
    rows, ratios = [], {}
    r1_many = [many for many, _ in measured["R1"]]
    r1_one = [one for _, one in measured["R1"]]
    for setup, label in (
        ("R1", "cluster, R1 stream"),
        ("R3", "cluster, R3 stream"),
        ("single", "single nats-server"),
    ):
        many = [m for m, _ in measured[setup]]
        one = [o for _, o in measured[setup]]
        ratio_many = median([m / r for m, r in zip(many, r1_many, strict=True)])
        ratio_one = median([o / r for o, r in zip(one, r1_one, strict=True)])
        ratios[setup] = (ratio_many, ratio_one)
        rows.append(
            Row(
                {
                    "setup": label,
                    "`publish_durable_many` msg/s, each round": ", ".join(f"{m:,.0f}" for m in many),
                    "median": f"{median(many):,.0f}",
                    "ratio to R1": f"{ratio_many:.2f}x",
                    "`publish_durable` one by one, msg/s, each round": ", ".join(f"{o:,.0f}" for o in one),
                    "median ": f"{median(one):,.0f}",
                    "ratio to R1 ": f"{ratio_one:.2f}x",
                }
            )
        )
    case.tables.append(
        (
            f"Durable publish throughput, {sizes.throughput:,} messages (`publish_durable_many`, window "
            f"{WINDOW}) and {max(sizes.throughput // 5, 1):,} (`publish_durable`), {sizes.rounds} round(s); "
            "ratio: to the R1 stream of the same round, median:",
            rows,
        )
    )
    case.targets.append(Target(f"{TITLE}: messages lost on R3", "0", f"{lost:,}", lost == 0))
    case.targets.append(
        Target(f"{TITLE}: messages stored twice on R3", "0", f"{duplicated:,}", duplicated == 0)
    )
    case.notes.append(f"The first error of the two-dead part, in full: {outage.first_text}")
    if outage.later_text:
        case.notes.append(f"The later ones: {outage.later_text}")
    for name, text in load.error_texts.items():
        case.notes.append(f"A {name} under load (one node dead), in full: {text}")
    leader = result.kills[0]
    case.figures += [
        Figure("R3 / R1, publish_durable_many", ratios["R3"][0], "x"),
        Figure("R3 / R1, publish_durable", ratios["R3"][1], "x"),
        Figure(
            "publishing paused, leader killed", pause(load.acks, leader.at, leader.restarted)[0], "s", False
        ),
        Figure(
            "consumer paused, leader killed",
            pause(load.deliveries, leader.at, leader.restarted)[0],
            "s",
            False,
        ),
        Figure("lost", float(lost), "messages", False),
        Figure("stored twice", float(duplicated), "messages", False),
    ]


CASES: Final = [Spec("failover", TITLE, failover_case)]


def main() -> int:
    """``python -m bench.failover``: the case alone, its tables printed."""
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="citybus-failover-") as temp:
        case = failover_case(Options(smoke=args.smoke, work=Path(temp)))
    for caption, rows in case.tables:
        sys.stdout.write(f"{caption}\n")
        for row in rows:
            sys.stdout.write("  " + "  ".join(f"{k}: {v}" for k, v in row.cells.items()) + "\n")
    sys.stdout.write("\n".join(case.notes) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
