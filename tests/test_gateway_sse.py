"""The gateway's Server-Sent Events stream against the real gateway on a real nats-server: events for
published messages, filters, resuming with Last-Event-ID, heartbeats, slow and departed clients,
revoked tokens, and hostile input at the protocol level."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest

from adapters.gateway.eventstream import parse_positions
from adapters.gateway.sse import PATH
from bus import Bus, subjects
from bus.server import EmbeddedServer
from contracts import AirQualityObserved, BeachObservation
from tests.conftest import open_bus, wait_for
from tests.gateway_support import RunningGateway, beach, running_gateway

pytestmark = pytest.mark.slow

GUARD = 20.0
"""How long a test waits for something that should happen (a guard against hanging, not a timing)."""


@dataclass
class Frame:
    """One frame of an event stream as a client reads it."""

    event: str = "message"
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class Client:
    """A Server-Sent Events client reading frames off one aiohttp response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None

    async def frame(self) -> Frame:
        frame = Frame()
        data: list[str] = []
        seen = False
        async with asyncio.timeout(GUARD):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if seen:
                        break
                    continue
                seen = True
                if line.startswith(":"):
                    frame.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                elif name == "event":
                    frame.event = value
                elif name == "id":
                    frame.id = self.last_id = value
                elif name == "retry":
                    frame.retry = int(value)
        frame.data = "\n".join(data) if data else None
        return frame

    async def event(self, kind: str = "message") -> Frame:
        """The next event of ``kind`` (other events and comments are skipped)."""
        while True:
            frame = await self.frame()
            if frame.data is not None and frame.event == kind:
                return frame

    async def messages(self, count: int, entity: str) -> list[dict[str, Any]]:
        """The next ``count`` messages about ``entity`` (the server's streams are shared by tests)."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            event = (await self.event()).json()
            if event["entity"] == entity:
                found.append(event)
        return found


@asynccontextmanager
async def sse(
    gateway: RunningGateway, *subject: str, headers: dict[str, str] | None = None, query: str = ""
) -> AsyncIterator[Client]:
    """A stream of ``subject`` patterns, read once its opening frames arrived (it listens then)."""
    params = "&".join(f"subject={s}" for s in subject)
    url = f"{gateway.url}{PATH}?{params}{'&' if params and query else ''}{query}"
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with asyncio.timeout(GUARD):
            response = await http.get(url, headers=headers or {})
        async with response:
            assert response.status == 200, await response.text()
            client = Client(response)
            opening = await client.frame()
            assert opening.retry == 2000
            yield client


class BeachStream:
    """The stream beach observations are stored in."""

    name = subjects.stream_name(BeachObservation.__contract__.classification, "environment")


def water(event: dict[str, Any]) -> float:
    return float(event["data"]["water_temperature"])


def sample(bus: Bus, name: str, labels: dict[str, str] | None = None) -> float:
    return bus.metrics.registry.get_sample_value(name, labels or {}) or 0.0


# -- events, filters -------------------------------------------------------------------------------


async def test_a_published_message_arrives_as_an_event_with_its_position(bus: Bus, entity: str) -> None:
    async with (
        running_gateway(bus) as gateway,
        sse(gateway, "environment.beach-observation") as client,
    ):
        headers = client.response.headers
        assert headers["Content-Type"].startswith("text/event-stream")
        assert headers["Cache-Control"] == "no-cache" and headers["X-Accel-Buffering"] == "no"
        await bus.publish_durable(beach(entity, 18.5))
        frame = await client.event()
        while frame.json()["entity"] != entity:
            frame = await client.event()
        event = frame.json()
        assert water(event) == 18.5 and event["contract"] == "environment.beach-observation"
        assert event["specversion"] == "1.0" and event["classification"] == "public"
        stream, _, seq = event["sequence"].partition(":")
        assert frame.id is not None and parse_positions(frame.id)[stream] == int(seq)


async def test_contract_names_and_patterns_choose_what_arrives(bus: Bus, entity: str) -> None:
    air = msgspec.structs.replace(AirQualityObserved.example(), station=entity)  # type: ignore[type-var]
    assert air.entity() == entity
    async with (
        running_gateway(bus) as gateway,
        sse(gateway, "environment.beach-observation@1") as by_name,
        sse(gateway, f"city.public.environment.*.{entity}") as by_pattern,
        sse(gateway, f"city.public.environment.beach-observation.{entity}-other") as elsewhere,
    ):
        await bus.publish_durable(air)  # same stream, another contract: by_name must skip it
        await bus.publish_durable(beach(entity, 16.0))
        await bus.publish_durable(beach(f"{entity}-other", 1.0))
        assert [e["contract"] for e in await by_name.messages(1, entity)] == ["environment.beach-observation"]
        assert [e["contract"] for e in await by_pattern.messages(2, entity)] == [
            "environment.air-quality-observed",
            "environment.beach-observation",
        ]
        assert [e["entity"] for e in await elsewhere.messages(1, f"{entity}-other")] == [f"{entity}-other"]


# -- resuming --------------------------------------------------------------------------------------


async def test_resuming_with_last_event_id_gets_exactly_the_missed_messages(bus: Bus, entity: str) -> None:
    pattern = subjects.contract_filter(BeachObservation, entity)
    async with running_gateway(bus) as gateway:
        async with sse(gateway, pattern) as client:
            await bus.publish_durable(beach(entity, 1.0))
            assert [water(e) for e in await client.messages(1, entity)] == [1.0]
            last_id = client.last_id
        assert last_id is not None
        # Published while the client is away; the feed has read them before it comes back.
        await bus.publish_durable_many([beach(entity, 2.0), beach(entity, 3.0)])
        feed = await gateway.state.feeds.of("public")
        stream = BeachStream.name
        await wait_for(lambda: feed.positions()[stream] >= parse_positions(last_id)[stream] + 2)
        for how in ("header", "query"):
            headers = {"Last-Event-ID": last_id} if how == "header" else None
            query = f"lastEventId={last_id}" if how == "query" else ""
            async with sse(gateway, pattern, headers=headers, query=query) as again:
                # The second time, 4.0 (published live the first time) was missed too.
                missed = [2.0, 3.0] if how == "header" else [2.0, 3.0, 4.0]
                assert [water(e) for e in await again.messages(len(missed), entity)] == missed, how
                # Then live, with nothing repeated across the switch.
                await bus.publish_durable(beach(entity, missed[-1] + 1))
                assert [water(e) for e in await again.messages(1, entity)] == [missed[-1] + 1]


async def test_a_last_event_id_ahead_of_the_stream_starts_it_from_now_and_says_so(
    bus: Bus, entity: str
) -> None:
    # e.g. a browser reconnecting after citybus started over on a fresh data directory
    pattern = subjects.contract_filter(BeachObservation, entity)
    ahead = f"{BeachStream.name}:999999999"
    async with (
        running_gateway(bus) as gateway,
        sse(gateway, pattern, headers={"Last-Event-ID": ahead}) as client,
    ):
        reset = (await client.event("reset")).json()
        assert reset["streams"] == [BeachStream.name] and "ahead" in reset["reason"]
        await bus.publish_durable(beach(entity, 6.5))
        assert [water(e) for e in await client.messages(1, entity)] == [6.5]


@pytest.mark.parametrize("whole", [False, True], ids=["one-entity", "whole-stream"])
async def test_more_missed_than_the_catch_up_limit_is_said_with_a_gap(
    fresh_server: EmbeddedServer, entity: str, whole: bool
) -> None:
    """Counted by reading the entity's messages, or (a pattern covering the stream) from sequences."""
    bus = await open_bus(fresh_server)  # its own streams: the whole-stream count is this test's alone
    pattern = "city.public.environment.>" if whole else subjects.contract_filter(BeachObservation, entity)
    async with running_gateway(bus, catch_up=2) as gateway:
        async with sse(gateway, pattern) as client:
            await bus.publish_durable(beach(entity, 0.0))
            await client.messages(1, entity)
            last_id = client.last_id
        assert last_id is not None
        await bus.publish_durable_many([beach(entity, float(w)) for w in range(1, 6)])
        await bus.publish_durable(beach(f"{entity}-other", 9.0))  # not the client's when it is one entity
        feed = await gateway.state.feeds.of("public")
        seen = parse_positions(last_id)[BeachStream.name]
        await wait_for(lambda: feed.positions()[BeachStream.name] >= seen + 6)
        async with sse(gateway, pattern, headers={"Last-Event-ID": last_id}) as again:
            assert [water(e) for e in await again.messages(2, entity)] == [1.0, 2.0]
            gap = await again.event("gap")
            skipped = 4 if whole else 3
            assert gap.json() == {"skipped": skipped, "streams": {BeachStream.name: skipped}}
            assert gap.id is not None and parse_positions(gap.id)[BeachStream.name] == seen + 6
            await bus.publish_durable(beach(entity, 6.0))
            assert [water(e) for e in await again.messages(1, entity)] == [6.0]
    await bus.drain()


async def test_a_message_arriving_as_the_heartbeat_fires_is_not_lost(bus: Bus, entity: str) -> None:
    """The stream waits for a message under the heartbeat's timeout; the timeout firing just as a
    message is queued must leave the message for the next wait."""
    await bus.publish_durable(beach(entity, 5.0))
    async with running_gateway(bus) as gateway:
        feed = await gateway.state.feeds.of("public")
        item = feed.last(BeachObservation, entity)
        assert item is not None
        listener = feed.listen([subjects.contract_filter(BeachObservation, entity)], 4)
        waiting = asyncio.create_task(listener.get())
        for _ in range(5):
            await asyncio.sleep(0)  # let it wait
        listener.offer(item)
        waiting.cancel()  # in the same turn of the loop, as a timeout would
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert listener.pending() == 1 and await listener.get() is item
        listener.close("done")


# -- liveness, limits, leaving ---------------------------------------------------------------------


async def test_an_idle_stream_gets_heartbeats(bus: Bus, entity: str) -> None:
    async with (
        running_gateway(bus, heartbeat=0.1) as gateway,
        sse(gateway, subjects.contract_filter(BeachObservation, entity)) as client,
    ):
        beats = 0
        while beats < 3:
            frame = await client.frame()
            assert frame.data is None
            beats += frame.comments.count("heartbeat")


async def test_a_client_that_stops_reading_is_dropped_and_counted(
    fresh_server: EmbeddedServer, entity: str
) -> None:
    # A server of its own: the thousands of messages it takes stay out of the other tests' streams.
    bus = await open_bus(fresh_server)
    labels = {"reason": "slow consumer"}
    async with running_gateway(bus, queue=4, heartbeat=0.5) as gateway:
        feed = await gateway.state.feeds.of("public")
        host, port = gateway.url.removeprefix("http://").split(":")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it will never read: keep it small
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(slow, (host, int(port)))
        pattern = subjects.contract_filter(BeachObservation, entity)
        await loop.sock_sendall(slow, f"GET {PATH}?subject={pattern} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await wait_for(lambda: feed.listeners >= 1)
        try:
            sent = 0
            async with asyncio.timeout(120):
                while not sample(bus, "citybus_gateway_sse_dropped_total", labels):
                    await bus.publish_durable_many([beach(entity, float(i % 40)) for i in range(200)])
                    sent += 200
                    await asyncio.sleep(0.05)
            await wait_for(lambda: feed.listeners == 0)
            assert sample(bus, "citybus_gateway_sse_clients") == 0
            # The gateway closed it: reading now drains what the kernel held, then ends.
            slow.setblocking(True)
            slow.settimeout(GUARD)
            received = b""
            while chunk := await asyncio.to_thread(slow.recv, 65536):
                received += chunk
            assert received.startswith(b"HTTP/1.1 200")
            assert received.count(b"event: message") < sent
        finally:
            slow.close()
    await bus.drain()


async def test_departed_clients_leave_nothing_behind(bus: Bus) -> None:
    async with running_gateway(bus) as gateway:
        feed = await gateway.state.feeds.of("public")
        host, port = gateway.url.removeprefix("http://").split(":")
        clients = []
        for _ in range(200):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await reader.readuntil(b"retry: 2000\n\n")
            clients.append(writer)
        assert feed.listeners >= 200
        assert sample(bus, "citybus_gateway_sse_clients") >= 200
        for writer in clients:
            writer.close()
        await wait_for(lambda: feed.listeners == 0)
        await wait_for(lambda: sample(bus, "citybus_gateway_sse_clients") == 0)


async def test_beyond_max_clients_a_client_is_told_to_retry_later(bus: Bus) -> None:
    async with running_gateway(bus, max_clients=1) as gateway, sse(gateway):
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}{PATH}") as refused:
            assert refused.status == 503
            assert int(refused.headers["Retry-After"]) > 0
            assert refused.content_type == "application/problem+json"


async def test_stopping_the_gateway_ends_its_streams_with_the_reason(bus: Bus) -> None:
    """An open stream does not hold the gateway's shutdown until its client leaves."""
    async with contextlib.AsyncExitStack() as running:
        gateway = await running.enter_async_context(running_gateway(bus))
        async with sse(gateway) as client:
            stopping = asyncio.create_task(running.aclose())
            dropped = await client.event("dropped")
            assert dropped.json() == {"reason": "gateway stopping"}
            async with asyncio.timeout(GUARD):
                await stopping
    assert sample(bus, "citybus_gateway_sse_dropped_total", {"reason": "gateway stopping"}) >= 1


@dataclass(frozen=True)
class Grant:
    """A valid token's grant (what ``bus.access.tokens.TokenStore.resolve`` returns)."""

    name: str
    account: str
    user: str


class Tokens:
    """Bearer tokens held in a dict: the smallest real resolver, revoked by deleting."""

    def __init__(self) -> None:
        self.grants: dict[str, Grant] = {}

    def resolve(self, token: str) -> Grant | None:
        return self.grants.get(token)


async def test_a_revoked_token_s_stream_ends_with_the_reason(bus: Bus) -> None:
    tokens = Tokens()
    tokens.grants["cbt_secret"] = Grant("ops-team", "CITY", "internal")
    before = sample(bus, "citybus_gateway_sse_dropped_total", {"reason": "revoked token"})
    async with running_gateway(bus, heartbeat=0.2) as gateway:
        gateway.state.tokens = tokens
        async with sse(gateway, "city.internal.>", headers={"Authorization": "Bearer cbt_secret"}) as client:
            del tokens.grants["cbt_secret"]
            dropped = await client.event("dropped")
            assert "revoked token" in dropped.json()["reason"]
            with pytest.raises(EOFError):
                await client.frame()
    assert sample(bus, "citybus_gateway_sse_dropped_total", {"reason": "revoked token"}) == before + 1


# -- refusals and hostile input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers", "status", "says"),
    [
        ("subject=city.personal.>", {}, 403, "never served"),
        ("subject=city.internal.>", {}, 401, "bearer token"),
        ("subject=environment.beach-observaton", {}, 400, "did you mean"),
        ("subject=sensors.a.b", {}, 400, "not city data"),
        ("", {"Last-Event-ID": "yesterday"}, 400, "STREAM:sequence"),
        ("lastEventId=A:1,A:2", {}, 400, "twice"),
    ],
)
async def test_refused_requests_get_a_problem_saying_what_to_fix(
    bus: Bus, query: str, headers: dict[str, str], status: int, says: str
) -> None:
    async with (
        running_gateway(bus) as gateway,
        aiohttp.ClientSession() as http,
        http.get(f"{gateway.url}{PATH}?{query}", headers=headers) as response,
    ):
        assert response.status == status
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
        assert problem["status"] == status and says in problem["detail"]
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def _raw(gateway: RunningGateway, request: bytes) -> bytes:
    """Send raw bytes and read the answer until the server closes or a complete problem arrived."""
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        async with asyncio.timeout(GUARD):
            head = await reader.readuntil(b"\r\n\r\n")
            return head + await reader.read(4096)
    finally:
        writer.close()


async def test_hostile_requests_are_answered_or_closed_and_others_stream_on(bus: Bus, entity: str) -> None:
    pattern = subjects.contract_filter(BeachObservation, entity)
    async with running_gateway(bus) as gateway, sse(gateway, pattern) as bystander:
        host, port = gateway.url.removeprefix("http://").split(":")
        # A request that never finishes: it holds a socket and nothing else.
        _, unfinished = await asyncio.open_connection(host, int(port))
        unfinished.write(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ".encode())
        malformed = await _raw(
            gateway, f"GET {PATH} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: STREAM-7\r\n\r\n".encode()
        )
        assert malformed.startswith(b"HTTP/1.1 400") and b"Last-Event-ID" in malformed
        huge = await _raw(
            gateway, f"GET {PATH} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {'A:1,' * 50_000}\r\n\r\n".encode()
        )
        assert re.match(rb"HTTP/1\.[01] (400|431) ", huge)
        garbage = await _raw(gateway, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] 400 ", garbage)
        # Meanwhile the stream that was open goes on.
        await bus.publish_durable(beach(entity, 21.0))
        assert [water(e) for e in await bystander.messages(1, entity)] == [21.0]
        unfinished.close()
