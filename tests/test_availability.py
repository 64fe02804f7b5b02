"""What a user notices when JetStream cannot store, and what a durable consumer does about failovers.

A durable publish that gives up says why, naming the stream (bus/availability.py), and only a
stream's own word that it cannot store makes later publishes give up early. A durable consumer
recognises a redelivery of a message it handled (bus/redelivery.py), and stops when cancelled even
if an await below it lost the cancellation (bus/jetstream.py). The cluster cases themselves (no
leader, no quorum, failover under load) are in tests/test_failover.py.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import structlog

from bus import Bus, Event, JetStreamUnavailableError, Metrics, PublishTimeoutError
from bus.availability import PROBE, Diagnosis, Outages, from_info
from bus.redelivery import Handled
from bus.server import EmbeddedServer
from contracts.environment import BeachObservation
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

STREAM = "CITY_PUBLIC_ENVIRONMENT"


def info(
    cluster: dict[str, object] | None = None, *, replicas: int = 3, error: dict[str, object] | None = None
) -> bytes:
    """A ``$JS.API.STREAM.INFO`` answer, as nats-server writes one."""
    document: dict[str, object] = {"type": "io.nats.jetstream.api.v1.stream_info_response"}
    if error is not None:
        document["error"] = error
    else:
        document["config"] = {"name": STREAM, "num_replicas": replicas}
        if cluster is not None:
            document["cluster"] = {"name": "citybus", **cluster}
    return json.dumps(document).encode()


def peer(name: str, current: bool) -> dict[str, object]:
    return {"name": name, "current": current, "active": 1_000_000}


def test_the_stream_state_says_which_outage_it_is_and_what_to_do() -> None:
    no_leader = from_info(STREAM, info({"replicas": [peer("citybus-1", False), peer("citybus-2", True)]}))
    assert no_leader.unavailable and no_leader.confirmed
    assert (
        "has no leader" in no_leader.why
        and "citybus-1" in no_leader.why
        and "Bring its nodes back" in no_leader.why
    )

    lost = from_info(
        STREAM,
        info({"leader": "citybus-3", "replicas": [peer("citybus-1", False), peer("citybus-2", False)]}),
    )
    assert lost.unavailable and lost.confirmed
    assert "leader citybus-3 has no quorum" in lost.why and "2 of its 3 replicas" in lost.why

    meta = from_info(
        STREAM,
        info(
            error={"code": 503, "err_code": 10008, "description": "JetStream system temporarily unavailable"}
        ),
    )
    assert meta.unavailable and meta.confirmed and "JetStream is unavailable" in meta.why

    healthy = from_info(
        STREAM, info({"leader": "citybus-3", "replicas": [peer("citybus-1", True), peer("citybus-2", False)]})
    )
    assert not healthy.unavailable and "has a leader (citybus-3) and a quorum" in healthy.why

    missing = from_info(
        STREAM, info(error={"code": 404, "err_code": 10059, "description": "stream not found"})
    )
    assert (
        not missing.unavailable
        and "does not exist" in missing.why
        and "citybus contracts provision" in missing.why
    )

    single = from_info(STREAM, info(replicas=1))
    assert not single.unavailable and "overloaded or restarting" in single.why


async def test_only_a_stream_that_says_it_cannot_store_makes_later_publishes_give_up_early() -> None:
    outages = Outages(structlog.get_logger())
    assert outages.probe([STREAM], 30) == 30 and not outages
    outages.failed(STREAM, Diagnosis("nobody answered", True, False))  # not the stream's own word
    assert outages.probe([STREAM], 30) == 30 and outages.why(STREAM) is None
    outages.failed(STREAM, Diagnosis("it has no leader", True, True))
    assert outages.probe([STREAM], 30) == PROBE
    assert outages.probe([STREAM], PROBE / 2) == PROBE / 2
    assert outages.probe([STREAM, "CITY_PUBLIC_MOBILITY"], 30) == 30  # another stream may store
    why = outages.why(STREAM)
    assert why is not None and "it has no leader" in why and f"give up after {PROBE:g} s" in why
    outages.stored(STREAM)
    assert not outages and outages.probe([STREAM], 30) == 30


async def test_a_durable_publish_to_a_stream_that_does_not_exist_says_so(
    fresh_server: EmbeddedServer,
) -> None:
    bus = Bus(metrics=Metrics(), source="/tests", request_timeout=0.5)
    await bus.connect(fresh_server.url)  # no stream provisioned
    try:
        with pytest.raises(PublishTimeoutError) as unstored:
            await bus.publish_durable(BeachObservation.example(), timeout=2)
        assert not isinstance(unstored.value, JetStreamUnavailableError)
        assert f"stream {STREAM} does not exist" in str(unstored.value)
        assert "`citybus contracts provision`" in str(unstored.value)
        assert not bus._durable.outages
    finally:
        await bus.close()


async def test_a_durable_publish_without_a_server_says_so_and_is_not_an_outage_of_the_stream(
    fresh_server: EmbeddedServer,
) -> None:
    bus = Bus(metrics=Metrics(), source="/tests", request_timeout=0.5)
    await bus.connect(fresh_server.url, reconnect_wait=0.1)
    try:
        await bus.provision_streams()
        await fresh_server.kill()
        with pytest.raises(PublishTimeoutError) as unstored:
            await bus.publish_durable(BeachObservation.example(), timeout=1.5)
        assert not isinstance(unstored.value, JetStreamUnavailableError)
        assert "no NATS server is connected" in str(unstored.value)
        assert not bus._durable.outages  # a server restarting is waited for, message by message
        await fresh_server.start()
        assert (await bus.publish_durable(BeachObservation.example(), timeout=20)).stream == STREAM
    finally:
        await bus.close()


async def test_publishes_awaiting_their_acknowledgement_when_the_connection_dies_are_sent_again_at_once(
    fresh_server: EmbeddedServer,
) -> None:
    """After the reconnect, not at their request timeout (60 s here): an acknowledgement awaited on
    a connection that died never comes. Both ways of publishing durably; each message stored once."""
    bus = Bus(metrics=Metrics(), source="/tests", request_timeout=60.0)
    await bus.connect(fresh_server.url, reconnect_wait=0.1)
    await bus.provision_streams()
    example = BeachObservation.example()
    acked: list[str] = []

    async def one_by_one(worker: int) -> None:
        for n in range(150):
            ack = await bus.publish_durable(example, event_id=f"{worker}-{n}", timeout=120)
            acked.append(ack.event_id)

    async def many() -> None:
        for _ in range(6):
            acked.extend(ack.event_id for ack in await bus.publish_durable_many([example] * 500, timeout=120))

    try:
        async with asyncio.timeout(40):  # far below the request timeout: a bound, not a measurement
            async with asyncio.TaskGroup() as tg:
                for worker in range(8):
                    tg.create_task(one_by_one(worker))
                tg.create_task(many())
                await wait_for(lambda: len(acked) >= 400)
                await fresh_server.kill()
                await fresh_server.start()
        assert len(set(acked)) == len(acked) == 8 * 150 + 6 * 500
        assert (await bus.js.stream_info(STREAM)).state.messages == len(acked)
    finally:
        await bus.close()


def ack_reply(seq: int, delivered: int = 1, *, long: bool = False) -> SimpleNamespace:
    """A message as a durable consumer receives it: its reply subject holds the delivery's numbers."""
    if long:  # the form with a domain and an account hash, and a random token at the end
        return SimpleNamespace(reply=f"$JS.ACK._.ACCHASH.S.c.{delivered}.{seq}.{seq}.0.0.x1")
    return SimpleNamespace(reply=f"$JS.ACK.S.c.{delivered}.{seq}.{seq}.0.0")


def test_a_redelivery_of_a_handled_message_is_recognised_and_nothing_else() -> None:
    handled = Handled(size=4)
    for seq in (1, 2, 3):
        handled.remember(ack_reply(seq))
    assert not handled.again(ack_reply(4))  # a new message
    assert handled.again(ack_reply(2, delivered=2))  # delivered again after it was handled
    assert handled.again(ack_reply(3, long=True))  # delivered as new by a leader that lost the delivery
    assert not handled.again(ack_reply(4, delivered=2))  # delivered again, never handled (a retry)
    for seq in (4, 5, 6, 7):
        handled.remember(ack_reply(seq, long=True))
    assert handled.again(ack_reply(7, delivered=3))
    assert not handled.again(ack_reply(1, delivered=2))  # older than the ring remembers: handled again
    assert not handled.again(SimpleNamespace(reply=""))  # the in-memory bus's messages
    handled.remember(SimpleNamespace(reply=""))
    assert handled.newest == 7


async def test_a_consumer_whose_cancellation_was_lost_stops_at_its_next_turn(quiet_bus: Bus) -> None:
    """Python 3.11's ``asyncio.wait_for`` (under nats-py's requests) drops a cancellation that meets
    its result; a consumer stopped right after its start then fetched on forever, now and then."""

    async def ignore(event: Event[BeachObservation]) -> None:
        """Nothing to do with it."""

    consumer = quiet_bus.consume(BeachObservation, ignore, durable="lost-cancellation")
    waiting = asyncio.Event()

    async def lose_a_cancellation_then_consume() -> None:
        waiting.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # what the await under the consumer's start did
        await consumer.run()

    task = asyncio.ensure_future(lose_a_cancellation_then_consume())
    await waiting.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=20)
    assert done == {task} and task.cancelled()
