"""Running the gateway in a test: the real adapter, through the adapter harness, on a real server.

::

    async with running_gateway(bus) as gateway:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gateway.url}/api/v1/contracts") as response: ...

The harness has no access control: every ``connect_as`` opens an anonymous connection, so these
tests show what the gateway does with what it reads; the access matrix (tests/test_gateway_access.py)
runs it under ``citybus up``'s access control, where the broker decides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.gateway import Gateway
from adapters.gateway.app import GatewayState
from adapters.testing import AdapterHarness
from bus import Bus
from contracts import BeachObservation, GeoPoint

__all__ = ["RunningGateway", "beach", "running_gateway"]


@dataclass
class RunningGateway:
    """A gateway serving on a free loopback port."""

    url: str
    adapter: Gateway
    harness: AdapterHarness

    @property
    def state(self) -> GatewayState:
        """Its handlers' shared state."""
        assert self.adapter.state is not None
        return self.adapter.state


@asynccontextmanager
async def running_gateway(bus: Bus, **config: Any) -> AsyncIterator[RunningGateway]:
    """The gateway on the server ``bus`` is connected to, on a free port, until the block ends."""
    settings = {"port": 0, **config}
    async with AdapterHarness(Gateway, settings, bus=bus, instance="gateway") as harness:
        adapter = harness.adapter
        assert isinstance(adapter, Gateway)
        yield RunningGateway(url=adapter.url, adapter=adapter, harness=harness)


def beach(
    site: str, water: float, *, lat: float = 59.7409, lon: float = 10.2138, hour: int = 12
) -> BeachObservation:
    """A beach observation of ``site`` with water temperature ``water`` (°C) at a point."""
    return BeachObservation(
        site=site,
        observed_at=datetime(2018, 8, 28, hour, 0, tzinfo=UTC),
        water_temperature=water,
        location=GeoPoint(coordinates=[lon, lat]),
    )
