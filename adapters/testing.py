"""A test harness for adapter authors: run one adapter against an in-memory bus (or a real one).

::

    async def test_my_adapter() -> None:
        async with AdapterHarness(MyAdapter, {"threshold": 3}) as harness:
            await harness.publish(BeachObservation.example())
            await harness.settle()
            assert harness.published(DailyStatistics)

The harness uses :class:`bus.MemoryBus` — the real :class:`bus.Bus` over an in-process connection —
so publishing, validation, dead letters and durable consumers behave as they do over NATS. Pass
``bus=`` a connected :class:`bus.Bus` to run the same test against a real server.

``clock="sandbox"`` runs the adapter on a replay's clock, as an instance in the sandbox runs: a
:class:`~adapters.clock.BusClock` following ``citybus.clock.sandbox``, whose time the test sets
with :meth:`AdapterHarness.tick` as a replay publishes it::

    async with AdapterHarness(MyAdapter, clock="sandbox") as harness:
        await harness.tick(datetime(2018, 8, 28, 14, 0, tzinfo=UTC), state="paused")
        assert harness.clock.now() == datetime(2018, 8, 28, 14, 0, tzinfo=UTC)
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec
import structlog

from adapters.base import Adapter, check_declaration
from adapters.clock import BusClock, Clock, ClockTick, ReplayState, WallClock
from adapters.context import ActingForOthersError, Context
from adapters.instances import parse_instance
from adapters.supervisor import adapter_metrics
from bus import Bus, ConsumerSettings, Event, MemoryBus, Metrics, RawMessage
from bus.config import Config
from bus.envelope import Provenance
from bus.subjects import clock_subject
from contracts import Contract, DeadLetter, PersonalDeadLetter

__all__ = ["AdapterHarness"]

C = TypeVar("C", bound=Contract)


class AdapterHarness:
    """Runs one adapter instance and records what it publishes and what it dead-letters."""

    def __init__(
        self,
        adapter: type[Adapter[Any]],
        config: dict[str, Any] | msgspec.Struct | None = None,
        *,
        instance: str = "test",
        bus: Bus | None = None,
        clock: Clock | str | None = None,
        consumer_settings: ConsumerSettings | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        self.adapter_class = check_declaration(adapter)
        if config is None or isinstance(config, dict):
            config = parse_instance(instance, adapter, dict(config or {})).config
        self.adapter = adapter(config)
        self.instance = instance
        self._own_bus = bus is None
        self.bus: Bus = bus if bus is not None else MemoryBus(metrics=Metrics(), source="/tests")
        self._clock = clock
        self._bus_clock: BusClock | None = None
        self._epoch = 0
        self._consumer_settings = consumer_settings or ConsumerSettings(retry_delay=0.01)
        self._ready_timeout = ready_timeout
        self._events: list[Event[Contract]] = []
        self._task: asyncio.Task[None] | None = None
        self.context: Context | None = None
        self.error: BaseException | None = None

    async def __aenter__(self) -> Self:
        if self._own_bus:
            await self.bus.connect("memory://")
        if isinstance(self._clock, str):  # a replay's clock, followed over the bus as in the sandbox
            self._bus_clock = BusClock(self.bus, self._clock)
            await self._bus_clock.start()
        watched: set[type[Contract]] = {*self.adapter.produced(), DeadLetter, PersonalDeadLetter}
        for contract in watched:
            await self.bus.subscribe(contract, self._record, entity=">")
        metrics = adapter_metrics(self.bus.metrics.registry).instance(self.adapter_class.name, self.instance)
        ready = asyncio.Event()
        self.context = Context(
            bus=self.bus,
            adapter=self.adapter_class.name,
            instance=self.instance,
            consumes=self.adapter.consumed(),
            produces=self.adapter.produced(),
            answers=self.adapter_class.answers,
            metrics=metrics,
            logger=structlog.get_logger(),
            clock=self.clock,
            on_ready=ready.set,
            consumer_settings=self._consumer_settings,
            connect_as=self._connect_as if self.adapter_class.acts_for else None,
            account="SANDBOX" if self._clock is not None else "CITY",
            personal=Config() if self.adapter_class.privacy else None,
        )
        self._task = asyncio.create_task(self._run(self.context), name=f"adapter {self.instance}")
        waiter = asyncio.create_task(ready.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, self._task}, timeout=self._ready_timeout, return_when="FIRST_COMPLETED"
            )
            if self._task in done and self.error is not None:
                raise self.error
            if not ready.is_set() and self._task not in done:
                name, wait = self.adapter_class.name, self._ready_timeout
                raise TimeoutError(f"adapter {name} did not call ctx.ready() within {wait} s")
        except BaseException:
            await self._stop()
            raise
        finally:
            waiter.cancel()
        return self

    async def _connect_as(self, user: str) -> Bus:
        """For an adapter that acts for others: a new connection to the same server. The harness
        has no access control, so ``user`` only names the connection."""
        if isinstance(self.bus, MemoryBus):
            raise ActingForOthersError(
                f"adapter {self.adapter_class.name} acts for other users: run its harness on a real "
                "server (AdapterHarness(..., bus=a connected Bus))"
            )
        bus = Bus(
            registry=self.bus.registry, metrics=self.bus.metrics, source="/tests", name=f"harness as {user}"
        )
        bus.user = user
        await bus.connect(self.bus.url)
        return bus

    @property
    def clock(self) -> Clock:
        """The adapter's clock: the one given, the replay's it follows, or the wall clock."""
        if self._bus_clock is not None:
            return self._bus_clock
        return self._clock if self._clock is not None and not isinstance(self._clock, str) else WallClock()

    async def tick(self, time: datetime, *, speed: float = 60.0, state: ReplayState = "playing") -> None:
        """Publish the replay's clock as a replay does (``clock="<replay>"`` only), and return once
        the adapter's clock shows it: ``state="paused"`` holds the time still, so a test can say
        exactly what ``ctx.clock.now()`` is; a tick with a time earlier than the last is a seek."""
        clock = self._bus_clock
        if clock is None:
            raise RuntimeError(
                'AdapterHarness.tick() needs a replay\'s clock: AdapterHarness(..., clock="sandbox")'
            )
        if clock.following and time < clock.now():
            self._epoch += 1
        tick = ClockTick(time=time, speed=speed, state=state, epoch=self._epoch)
        await self.bus.publish_raw(clock_subject(clock.instance), msgspec.json.encode(tick))
        await self.bus.flush()
        for _ in range(500):  # over a real server the tick may still be on its way
            if clock.last_tick == tick:
                return
            await asyncio.sleep(0.01)
        raise TimeoutError(f"the clock of replay {clock.instance} did not follow the tick within 5 s")

    async def _run(self, ctx: Context) -> None:
        try:
            await self.adapter.run(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc
        finally:
            await ctx.close()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()
        if exc_type is None and self.error is not None:
            raise self.error  # the adapter failed after the test's last look

    async def _stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._bus_clock is not None:
            await self._bus_clock.close()
        if self._own_bus:
            await self.bus.drain()

    async def _record(self, event: Event[Contract]) -> None:
        self._events.append(event)

    async def publish(self, instance: Contract, *, provenance: Provenance | str = Provenance.MANUAL) -> None:
        """Publish a message as the outside world would (any contract, not only declared ones)."""
        await self.bus.publish(instance, provenance=provenance, source="/tests")

    async def publish_durable(
        self, instance: Contract, *, provenance: Provenance | str = Provenance.MANUAL
    ) -> None:
        """Publish a message and wait until its stream stored it (for adapters that consume durably)."""
        await self.bus.publish_durable(instance, provenance=provenance, source="/tests")

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Publish raw bytes (a device uplink, a vendor payload) on a subject."""
        await self.bus.publish_raw(subject, data, headers)

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until everything published so far has been handled by core subscriptions (and raise
        what the adapter raised). An adapter that consumes durably (``ctx.consume``) handles its
        messages in its own time: wait for its output with :meth:`wait_for`."""
        await self.bus.flush(timeout)
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error

    async def wait_for(self, contract: type[C], count: int = 1, timeout: float = 5.0) -> list[Event[C]]:
        """Wait until the adapter has published ``count`` messages of ``contract``; return them."""
        async with asyncio.timeout(timeout):
            while len(found := self.published(contract)) < count:
                if self.error is not None:
                    raise self.error
                await asyncio.sleep(0.01)
        return found

    def published(self, contract: type[C]) -> list[Event[C]]:
        """The messages of ``contract`` published so far (by the adapter or the test)."""
        return [e for e in self._events if isinstance(e.data, contract)]  # type: ignore[misc]

    @property
    def dead_letters(self) -> list[DeadLetter | PersonalDeadLetter]:
        """The dead letters so far (personal ones included)."""
        return [e.data for e in self._events if isinstance(e.data, DeadLetter | PersonalDeadLetter)]

    def raw(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> RawMessage:
        """A raw message, as an adapter's raw handler receives it."""
        return RawMessage(subject, data, headers)
