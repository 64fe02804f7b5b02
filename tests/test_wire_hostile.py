"""Hostile bytes from another NATS client, sent with a raw socket to a real nats-server: one
malformed header block must not make a citybus connection deaf; it is a dead letter (``bad-header``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import msgspec
import pytest
from conftest import open_bus, wait_for
from tcp_proxy import FreezableProxy

from bus import Bus, Event, Metrics
from bus.bus import RawMessage
from bus.deadletters import HEADER_BLOCK
from bus.server import EmbeddedServer
from bus.subjects import contract_subject
from contracts import BeachObservation, DeadLetter

# Header blocks nats-py 2.x raised on, from inside its reader task.
BAD_BLOCKS = [
    b"NATS/1.0",  # no line end: nats-py indexes the byte after it
    b"NATS/1.0 \xff\xfe\r\n\r\n",  # a status that is not UTF-8
    b"NATS/1.0 503 \xff\r\n\r\n",  # a status description that is not UTF-8
]


class RawClient:
    """A NATS client in a few lines of the protocol, as an attacker would write one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        host, _, port = url.removeprefix("nats://").rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        await reader.readline()  # INFO
        options = {"verbose": False, "pedantic": False, "headers": True, "protocol": 1, "lang": "raw"}
        writer.write(b"CONNECT " + json.dumps(options).encode() + b"\r\n")
        client = cls(reader, writer)
        await client.round_trip()
        return client

    async def hpub(self, subject: str, block: bytes, payload: bytes) -> None:
        head = f"HPUB {subject} {len(block)} {len(block) + len(payload)}\r\n".encode()
        self.writer.write(head + block + payload + b"\r\n")
        await self.round_trip()

    async def round_trip(self) -> None:
        """PING, and read up to the PONG: the server has taken everything sent before."""
        self.writer.write(b"PING\r\n")
        await self.writer.drain()
        async with asyncio.timeout(5):
            while True:
                line = await self.reader.readline()
                assert not line.startswith(b"-ERR"), line
                if line.startswith(b"PONG"):
                    return

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def raw_client(nats_server: EmbeddedServer) -> AsyncIterator[RawClient]:
    client = await RawClient.connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def fresh_bus(nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    """A connection of its own: a test that breaks its reader must not break the others'."""
    b = await open_bus(nats_server)
    yield b
    await b.close()


def beach(entity: str) -> BeachObservation:
    return msgspec.structs.replace(BeachObservation.example(), site=entity)


def unescape(text: str) -> bytes:
    return text.encode("ascii").decode("unicode_escape").encode("latin-1")


@pytest.mark.parametrize("block", BAD_BLOCKS)
async def test_a_malformed_header_block_is_dead_lettered_and_the_subscriber_hears_what_follows(
    fresh_bus: Bus, raw_client: RawClient, entity: str, block: bytes
) -> None:
    letters: list[Event[DeadLetter]] = []
    got: list[Event[BeachObservation]] = []

    async def keep_letter(event: Event[DeadLetter]) -> None:
        if event.data.original_subject.endswith(entity):
            letters.append(event)

    async def keep(event: Event[BeachObservation]) -> None:
        got.append(event)

    await fresh_bus.subscribe(DeadLetter, keep_letter, entity=">")
    await fresh_bus.subscribe(BeachObservation, keep, entity=entity)
    await fresh_bus.flush()
    subject = contract_subject(beach(entity))
    await raw_client.hpub(subject, block, b'{"site": "x"}')
    await fresh_bus.publish(beach(entity))
    await wait_for(lambda: len(got) == 1 and len(letters) == 1)
    letter = letters[0].data
    assert letter.reason == "bad-header"
    assert letter.payload == b'{"site": "x"}'
    assert unescape(letter.original_headers[HEADER_BLOCK]) == block
    # ... and it was stored, so an operator finds it
    stored = await stored_letters(fresh_bus, subject)
    assert [d.reason for d in stored] == ["bad-header"]


async def stored_letters(bus: Bus, subject: str) -> list[DeadLetter]:
    sub = await bus.js.pull_subscribe("city.internal.citybus.dead-letter.>", stream="CITY_INTERNAL_CITYBUS")
    found: list[DeadLetter] = []
    try:
        async with asyncio.timeout(10):
            while not found:
                for msg in await sub.fetch(1000, timeout=2):
                    letter = msgspec.json.decode(msg.data, type=DeadLetter)
                    if letter.original_subject == subject:
                        found.append(letter)
    finally:
        await sub.unsubscribe()
    return found


async def test_a_malformed_header_block_on_a_raw_subject_is_dead_lettered_and_the_reader_goes_on(
    fresh_bus: Bus, raw_client: RawClient, entity: str
) -> None:
    letters: list[Event[DeadLetter]] = []
    got: list[RawMessage] = []

    async def keep_letter(event: Event[DeadLetter]) -> None:
        if event.data.original_subject.endswith(entity):
            letters.append(event)

    async def keep(raw: RawMessage) -> None:
        got.append(raw)

    await fresh_bus.subscribe(DeadLetter, keep_letter, entity=">")
    subject = f"city.internal.control.replay.{entity}"
    await fresh_bus.subscribe_raw(subject, keep)
    await fresh_bus.flush()
    for block in BAD_BLOCKS:
        await raw_client.hpub(subject, block, b"{}")
    await fresh_bus.publish_raw(subject, b"after")
    await wait_for(lambda: [r.data for r in got] == [b"after"] and len(letters) == len(BAD_BLOCKS))
    assert {letter.data.reason for letter in letters} == {"bad-header"}


async def test_a_connection_that_stops_reading_shows_as_down_within_seconds_and_is_reconnected(
    nats_server: EmbeddedServer, entity: str
) -> None:
    async with FreezableProxy(nats_server.url) as proxy:
        metrics = Metrics()
        bus = Bus(metrics=metrics, source="/tests")
        await bus.connect(proxy.url, reconnect_wait=0.1, watch_interval=0.2, stall_timeout=1.0)
        try:

            def gauge() -> float | None:
                return metrics.registry.get_sample_value("citybus_nats_connected")

            assert bus.connected and gauge() == 1
            proxy.freeze()
            await wait_for(lambda: not bus.connected and gauge() == 0)
            assert metrics.registry.get_sample_value("citybus_nats_stalls_total") == 1
            proxy.thaw()  # nats-py reconnects, and the bus works again
            await wait_for(lambda: bus.connected and gauge() == 1)
            got: list[RawMessage] = []

            async def keep(raw: RawMessage) -> None:
                got.append(raw)

            await bus.subscribe_raw(f"city.internal.test.{entity}", keep)
            await bus.publish_raw(f"city.internal.test.{entity}", b"still here")
            await wait_for(lambda: len(got) == 1)
        finally:
            await bus.close()


async def test_a_connection_whose_reader_task_ended_is_reconnected(fresh_bus: Bus, entity: str) -> None:
    """What nats-py's reader did on the header blocks above, and may do on a bytes nobody foresaw:
    end. The watchdog notices within its interval, counts it, and reconnects."""
    reader = fresh_bus.nc._reading_task
    assert reader is not None
    reader.cancel()
    await wait_for(lambda: fresh_bus.metrics.registry.get_sample_value("citybus_nats_stalls_total") == 1)
    got: list[RawMessage] = []

    async def keep(raw: RawMessage) -> None:
        got.append(raw)

    await wait_for(lambda: fresh_bus.connected)
    await fresh_bus.subscribe_raw(f"city.internal.test.{entity}", keep)
    await fresh_bus.publish_raw(f"city.internal.test.{entity}", b"heard")
    await wait_for(lambda: len(got) == 1)


class _BrokenLog:
    """A logger whose warnings fail, as a log writing to a closed stream does."""

    def bind(self, **_: object) -> _BrokenLog:
        return self

    def __getattr__(self, name: str) -> object:
        def log(*_args: object, **_kwargs: object) -> None:
            if name == "warning":
                raise ValueError("I/O operation on closed file")

        return log


async def test_a_callback_that_fails_does_not_end_reconnecting(fresh_server: EmbeddedServer) -> None:
    """nats-py stops reading and reconnecting for good when one of its callbacks raises; a log that
    fails in citybus's "disconnected" callback must not leave the connection down."""
    bus = Bus(metrics=Metrics(), logger=_BrokenLog())
    await bus.connect(fresh_server.url, reconnect_wait=0.1)
    try:
        await fresh_server.kill()
        await wait_for(lambda: not bus.connected)
        await fresh_server.start()
        await wait_for(lambda: bus.connected, timeout=20)
        await bus.publish_raw("city.internal.test.after", b"still here")
        await bus.flush()
    finally:
        await bus.close()
