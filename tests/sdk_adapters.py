"""Adapters used by the SDK tests, installed as real entry points by tests/test_adapters_sdk.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec

from adapters import Adapter, Context
from bus import Event
from contracts import BeachObservation, DeviceStatus, VolunteerSignup, WeatherObserved

# Shared with the tests: what the adapters did, in order.
JOURNAL: list[str] = []


class TickerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How often the ticker publishes."""

    site: str = "bragernes-strand"
    interval: float = 0.01
    crash_after: int = 0
    """Raise after this many publishes (0: never)."""


class Ticker(Adapter[TickerConfig]):
    """Publishes a beach observation at an interval; can be told to crash."""

    name = "ticker"
    Config = TickerConfig
    produces = (BeachObservation,)

    async def run(self, ctx: Context) -> None:
        ctx.ready()
        sent = 0
        try:
            while True:
                observation = msgspec.structs.replace(
                    BeachObservation.example(), site=self.config.site, observed_at=datetime.now(UTC)
                )
                await ctx.publish(observation, provenance="synthetic")
                sent += 1
                if self.config.crash_after and sent >= self.config.crash_after:
                    raise RuntimeError(f"{ctx.instance} crashed on purpose")
                await ctx.clock.sleep(self.config.interval)
        except asyncio.CancelledError:
            JOURNAL.append(f"stopped {ctx.instance}")
            raise


class Echo(Adapter):  # type: ignore[type-arg]
    """Answers each beach observation with a weather observation at the same site."""

    name = "echo"
    consumes = (BeachObservation,)
    produces = (WeatherObserved,)

    async def run(self, ctx: Context) -> None:
        async def on_observation(event: Event[BeachObservation]) -> None:
            weather = msgspec.structs.replace(
                WeatherObserved.example(), station=event.data.site, temperature=event.data.water_temperature
            )
            await ctx.publish(weather, provenance="synthetic")

        await ctx.subscribe(BeachObservation, on_observation)
        ctx.ready()
        await ctx.wait_stopped()


class Sneaky(Adapter):  # type: ignore[type-arg]
    """Declares beach observations but tries to publish device status."""

    name = "sneaky"
    produces = (BeachObservation,)

    async def run(self, ctx: Context) -> None:
        ctx.ready()
        await ctx.publish(DeviceStatus.example(), provenance="sensor")


class Leaky(Adapter):  # type: ignore[type-arg]
    """Consumes personal data and publishes public data without saying it declassifies."""

    name = "leaky"
    consumes = (VolunteerSignup,)
    produces = (BeachObservation,)

    async def run(self, ctx: Context) -> None:
        ctx.ready()


NOT_AN_ADAPTER = object()

raise_on_import = False
