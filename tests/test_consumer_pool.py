"""The durable consumer's worker pool and its reading of the JetStream reply subject.

The pool (``bus.jetstream._Workers``) replaced a task per message: these check that what the
task-per-message consumer did still holds — up to ``max_in_flight`` handlers at once, also when the
messages arrive one by one; ``stop()`` finishing the messages in hand — and that the delivery and
pending counts read from the reply subject equal nats-py's own ``msg.metadata`` in both reply forms.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from conftest import wait_for
from nats.aio.msg import Msg

from bus import Bus, ConsumerSettings, Event, Metrics
from bus.memory import MemoryBus
from bus.pipeline import delivery_count, pending_count
from contracts import BeachObservation


def beach(entity: str) -> BeachObservation:
    return msgspec.structs.replace(BeachObservation.example(), site=entity)


V1 = "$JS.ACK.CITY_PUBLIC_ENVIRONMENT.archive.3.1042.977.1733500000123456789.17"
V2 = "$JS.ACK._.ACCOUNTHASH.CITY_PUBLIC_ENVIRONMENT.archive.3.1042.977.1733500000123456789.17.r4nd0m"
V2_DOMAIN = "$JS.ACK.hub.ACCOUNTHASH.CITY_PUBLIC_ENVIRONMENT.archive.3.1042.977.1733500000123456789.17"


@pytest.mark.parametrize("reply", [V1, V2, V2_DOMAIN], ids=["9 tokens", "12 tokens", "11 tokens"])
def test_the_counts_from_the_reply_subject_equal_nats_py_metadata(reply: str) -> None:
    msg = Msg(None, subject="city.public.environment.beach.x", reply=reply)  # type: ignore[arg-type]
    assert (delivery_count(msg), pending_count(msg)) == (3, 17)
    assert (msg.metadata.num_delivered, msg.metadata.num_pending) == (3, 17)


async def test_a_reply_subject_without_counts_falls_back_to_its_metadata() -> None:
    bus = MemoryBus(metrics=Metrics(), source="/tests")
    await bus.connect()
    got: list[int] = []
    consumer = bus.consume(BeachObservation, lambda e: _noop(), durable="fallback", entity="fb")
    await bus.publish_durable(beach("fb"))
    await consumer.start()
    msgs = await consumer._fetch(1)  # the in-memory bus's reply subject carries no counts
    got.append(delivery_count(msgs[0]))
    assert msgs[0].reply.count(".") < 8 and got == [msgs[0].metadata.num_delivered] == [1]
    await bus.drain()


async def _noop() -> None:
    pass


async def test_handlers_run_up_to_max_in_flight_at_once_also_when_messages_come_one_by_one(
    any_bus: Bus, entity: str
) -> None:
    """Four handlers that each wait until all four run: a fetch must not wait for half the slots
    when the messages in hand are all with their handlers."""
    running = 0
    all_in = asyncio.Event()
    handled: list[str] = []

    async def together(event: Event[BeachObservation]) -> None:
        nonlocal running
        running += 1
        if running == 4:
            all_in.set()
        await all_in.wait()
        handled.append(event.id)

    settings = ConsumerSettings(max_in_flight=4)
    consumer = any_bus.consume(
        BeachObservation, together, durable=f"together-{entity}", entity=entity, settings=settings
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run())
        for n in range(4):
            await any_bus.publish_durable(beach(entity))
            await wait_for(lambda n=n: running == n + 1)  # type: ignore[misc]
        await wait_for(lambda: len(handled) == 4)
        consumer.stop()


async def test_stop_finishes_the_messages_in_hand(any_bus: Bus, entity: str) -> None:
    release = asyncio.Event()
    started: list[str] = []
    finished: list[str] = []

    async def slow(event: Event[BeachObservation]) -> None:
        started.append(event.id)
        await release.wait()
        finished.append(event.id)

    for _ in range(3):
        await any_bus.publish_durable(beach(entity))
    settings = ConsumerSettings(max_in_flight=8)
    consumer = any_bus.consume(
        BeachObservation, slow, durable=f"finish-{entity}", entity=entity, settings=settings
    )
    async with asyncio.TaskGroup() as tg:
        running = tg.create_task(consumer.run())
        await wait_for(lambda: len(started) == 3)
        consumer.stop()
        await asyncio.sleep(0.05)
        assert not running.done()  # still finishing the three in hand
        release.set()
    assert sorted(finished) == sorted(started)
