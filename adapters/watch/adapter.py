"""The ``sensor-watch`` service: the city's sensors that flatline or fall silent, as alerts.

A product that shows a beach's water temperature must not show a frozen or an hours-old reading
as the water now. This service follows the observations on the bus and publishes an
:class:`~contracts.SensorAlert` when a sensor's readings repeat the same values (``stuck``), when
it stops reporting for much longer than it usually does (``silent``), and when either is over
(``clear``); the rules are :class:`~adapters.watch.watch.Watch`'s. It declares what it detects
(:attr:`SensorWatch.detects`), so ``citybus certify`` scores it against the sandbox's ground truth.

Configuration (``[adapters.<instance>]`` with ``adapter = "sensor-watch"``), every key optional:

=================  ===================================  ==============================================
key                default                              meaning
=================  ===================================  ==============================================
``watch``          ``["environment.beach-observation"]``  the observations watched; also
                                                        ``environment.weather-observed``
``repeats``        ``3``                                readings in a row with the same values that
                                                        make a sensor stuck (at least 2)
``silence``        none: learnt                         seconds without a reading that make a sensor
                                                        silent
``silence_factor`` ``3.5``                              without ``silence``: that many of the sensor's
                                                        usual intervals (before it has one: the other
                                                        sensors' of its kind)
``blind``          none: learnt                         seconds with no reading from any sensor that
                                                        mean the watch, not the sensors, was cut off
                                                        (learnt: 1.5 of the shortest usual interval)
``check_every``    ``300``                              seconds of its clock between silence checks
=================  ===================================  ==============================================

Decisions, and why:

* **On its clock, never the wall's**: the silence checks sleep with ``ctx.clock.sleep`` and every
  arrival is stamped with ``ctx.clock.now()``, so in the sandbox it runs on the replayed day
  (``detected_at`` and the alerts' ``ce-time`` are the replay's time) at whatever speed.
* **What is measured** per contract: a beach observation's water temperature, air temperature
  and UV index (not battery or depth, which hold still on a working sensor); a weather
  observation's temperature, humidity, wind, precipitation and pressure. The first is the value
  an alert quotes.
* **Defaults from the recorded Drammen day**: no sensor's measured values repeat three times in
  a row on it (the river sensor's water temperature, its only value, repeats twice at most; UV 0
  repeats all night, but never with the same temperatures), and every sensor reports hourly, so
  silence is 3.5 hours: three readings lost in a row (an outage of three hours or more) are called
  after 3.5 hours, one or two (a burst of drops, two corrupt bodies the bus dead-lettered: a sensor
  that still speaks) are not. A sensor heard only once has no interval of its own yet: the other
  sensors' of its kind stand in, so an outage early in a replay is called too.
* **Event ids from the finding**: the sensor, the problem and its ``since``; the same alert
  published again after a restart is dropped by JetStream's duplicate window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Final, Literal, TypeVar

import msgspec
from msgspec import Meta

from adapters.base import Adapter, Detection
from adapters.changes import stable_id
from adapters.context import Context
from adapters.watch.watch import Finding, Reading, Watch
from bus import Event
from contracts import BeachObservation, Contract, SensorAlert, WeatherObserved

__all__ = ["SensorWatch", "WatchConfig", "beach_reading", "weather_reading"]

C = TypeVar("C", bound=Contract)

Watched = Literal["environment.beach-observation", "environment.weather-observed"]


class WatchConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of ``sensor-watch`` (see :mod:`adapters.watch.adapter`)."""

    watch: Annotated[list[Watched], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["environment.beach-observation"]
    )
    repeats: Annotated[int, Meta(ge=2, le=1000)] = 3
    silence: Annotated[float, Meta(gt=0)] | None = None
    silence_factor: Annotated[float, Meta(gt=1, le=100)] = 3.5
    blind: Annotated[float, Meta(gt=0)] | None = None
    check_every: Annotated[float, Meta(gt=0, le=86_400)] = 300.0


def beach_reading(event: Event[BeachObservation]) -> Reading:
    """A beach observation as the watch sees it: the site is the sensor."""
    data = event.data
    return Reading(
        sensor=data.site,
        observed=BeachObservation.__contract__.name,
        event_id=event.id,
        time=data.observed_at,
        values=(data.water_temperature, data.air_temperature, data.uv_index),
        main=data.water_temperature,
        provenance=event.provenance,
    )


def weather_reading(event: Event[WeatherObserved]) -> Reading:
    """A weather observation as the watch sees it: the station is the sensor."""
    data = event.data
    return Reading(
        sensor=data.station,
        observed=WeatherObserved.__contract__.name,
        event_id=event.id,
        time=data.observed_at,
        values=(
            data.temperature,
            data.relative_humidity,
            data.wind_speed,
            data.wind_direction,
            data.precipitation,
            data.atmospheric_pressure,
        ),
        main=data.temperature,
        provenance=event.provenance,
    )


_CONTRACTS: Final[dict[str, type[Contract]]] = {
    BeachObservation.__contract__.name: BeachObservation,
    WeatherObserved.__contract__.name: WeatherObserved,
}


def describe(finding: Finding) -> str:
    """The alert in one sentence."""
    since = finding.since.isoformat().replace("+00:00", "Z")
    if finding.problem == "stuck":
        return f"{finding.sensor} has sent the same values {finding.readings} times in a row since {since}"
    if finding.problem == "silent":
        return f"{finding.sensor} has sent nothing since its reading of {since}"
    return f"{finding.sensor} is no longer {finding.cleared}: its reading of {since} says so"


class SensorWatch(Adapter[WatchConfig]):
    """Observations in; an alert when a sensor's readings flatline or stop, and when they recover."""

    name = "sensor-watch"
    Config = WatchConfig
    consumes = (BeachObservation, WeatherObserved)
    produces = (SensorAlert,)
    detects = (
        Detection(
            SensorAlert,
            field="problem",
            kinds={"stuck": "stuck", "silent": "outage"},
            entity="sensor",
            time="detected_at",
        ),
    )

    def __init__(self, config: WatchConfig) -> None:
        super().__init__(config)
        self.watch = Watch(
            repeats=config.repeats,
            silence=config.silence,
            silence_factor=config.silence_factor,
            blind=config.blind,
        )

    def consumed(self) -> tuple[type[Contract], ...]:
        """The observations configured in ``watch``."""
        return tuple(_CONTRACTS[name] for name in dict.fromkeys(self.config.watch))

    async def run(self, ctx: Context) -> None:
        """Follow the watched observations, check for silence every ``check_every`` seconds."""
        lock = asyncio.Lock()  # a reading and a check never interleave their publishing

        def handler(to_reading: Callable[[Event[C]], Reading]) -> Callable[[Event[C]], Awaitable[None]]:
            async def on_reading(event: Event[C]) -> None:
                async with lock:
                    await self._publish(ctx, self.watch.reading(to_reading(event), ctx.clock.now()))

            return on_reading

        watched = self.consumed()
        if BeachObservation in watched:
            await ctx.subscribe(BeachObservation, handler(beach_reading))
        if WeatherObserved in watched:
            await ctx.subscribe(WeatherObserved, handler(weather_reading))
        ctx.ready()
        while True:
            await ctx.clock.sleep(self.config.check_every)
            async with lock:
                await self._publish(ctx, self.watch.check(ctx.clock.now()))

    async def _publish(self, ctx: Context, findings: list[Finding]) -> None:
        for finding in findings:
            detected = ctx.clock.now()
            alert = SensorAlert(
                sensor=finding.sensor,
                observed=finding.observed,
                problem=finding.problem,
                cleared=finding.cleared,
                since=finding.since,
                detected_at=detected,
                readings=finding.readings,
                value=finding.value,
                description=describe(finding),
            )
            ident = stable_id(
                self.name, ctx.instance, finding.sensor, finding.problem, finding.cleared, finding.since
            )
            await ctx.publish(alert, provenance=finding.provenance, event_id=ident, time=detected)
