"""Supervision: every adapter instance in one TaskGroup, restarted with backoff when it fails.

A failing adapter is logged, counted (``citybus_adapter_restarts_total``), marked down
(``citybus_adapter_up``) and not ready, and started again — as a fresh object — after a delay that
doubles up to a bound and resets once it has run stably. It never takes the others down. On stop,
instances are cancelled one at a time in reverse order of starting, each under a timeout. An
adapter whose ``run`` returns has finished its work (a replay that does not loop): it is not
restarted, stays ready, and is marked finished (``citybus_adapter_finished``), so that nobody takes
it for one that crashed.

Under access control each instance has a connection of its own, logged in as its user (``connect``):
the broker then enforces what that instance may publish and read. The connection is opened on the
instance's first start (a failure — revoked credentials, a refusing server — is a failed start,
retried with the backoff) and kept across restarts; all of them are drained once the instances
stopped.

An instance on a replay's clock starts once that clock has ticked (or after ``clock_wait``
seconds, with a warning): before its first tick a :class:`BusClock` shows the wall clock, and an
adapter that publishes at once would stamp the wall clock's time into replayed data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from adapters.clock import BusClock, Clock
from adapters.context import Context
from adapters.instances import Instance
from adapters.metrics import AdapterMetrics
from bus import Bus, ConsumerSettings
from bus.backoff import Backoff as _Policy
from bus.config import Config
from bus.health import Health
from bus.metrics import per_registry

__all__ = ["Backoff", "Supervisor", "adapter_metrics"]

adapter_metrics = per_registry(AdapterMetrics)
"""The adapter metric families of a registry, registered on first use."""


class Backoff(_Policy, frozen=True, kw_only=True):
    """How long to wait before restarting a failed adapter: the one backoff policy
    (:class:`bus.backoff.Backoff`, 0.5 s doubling up to 30 s) and when to start it over."""

    stable_after: float = 60.0
    """An instance that ran this long before failing starts again from ``initial``."""


class Supervisor:
    """Runs adapter instances until :meth:`stop`. Use :meth:`run` inside a task you own."""

    def __init__(
        self,
        instances: list[Instance],
        *,
        bus: Bus,
        health: Health | None = None,
        logger: Any = None,
        clock: Clock | None = None,
        consumer_settings: ConsumerSettings | None = None,
        backoff: Backoff | None = None,
        stop_timeout: float = 10.0,
        connect: Callable[[Instance], Awaitable[Bus]] | None = None,
        clock_wait: float = 10.0,
        connect_as: Callable[[Instance, str], Awaitable[Bus]] | None = None,
        credentials: Path | None = None,
        links: dict[str, str] | None = None,
        config: Config | None = None,
    ) -> None:
        self.instances = list(instances)
        self._config = config
        self._bus = bus
        self._connect = connect
        self._connect_as = connect_as
        self._credentials = credentials
        self._links = links
        self._buses: dict[str, Bus] = {}
        self.health = health or Health()
        self.log = (logger if logger is not None else structlog.get_logger()).bind(component="supervisor")
        self._logger = logger if logger is not None else structlog.get_logger()
        self._clock = clock
        self._consumer_settings = consumer_settings
        self.backoff = backoff or Backoff()
        self.stop_timeout = stop_timeout
        self.clock_wait = clock_wait
        self._families = adapter_metrics(bus.metrics.registry)
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._bus_clocks: dict[str, BusClock] = {}
        self.contexts: dict[str, Context] = {}
        for instance in self.instances:
            self.health.expect(self._key(instance))

    @staticmethod
    def _key(instance: Instance) -> str:
        return f"adapter {instance.name}"

    def stop(self) -> None:
        """Ask :meth:`run` to stop the instances (in reverse order) and return."""
        self._stop.set()

    async def run(self) -> None:
        """Start every instance, supervise them, and stop them in reverse order on :meth:`stop`."""
        async with asyncio.TaskGroup() as tg:
            for instance in self.instances:
                self._tasks[instance.name] = tg.create_task(
                    self._supervise(instance), name=f"adapter {instance.name}"
                )
            stopping = tg.create_task(self._stop.wait(), name="supervisor stop")
            # until stopped, or until every instance has finished its work (a replay that does not loop)
            pending: set[asyncio.Task[Any]] = {stopping, *self._tasks.values()}
            while not stopping.done() and not (self._tasks and all(t.done() for t in self._tasks.values())):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for instance in reversed(self.instances):
                await self._stop_one(instance)
        for clock in self._bus_clocks.values():
            await clock.close()
        for name, bus in reversed(self._buses.items()):
            try:
                await bus.drain()
            except Exception as exc:  # one connection's trouble must not keep the others open
                self.log.error("error while closing a connection", instance=name, error=repr(exc))
        self._buses.clear()

    async def _bus_of(self, instance: Instance) -> Bus:
        """The instance's connection: its own under access control, else the shared one."""
        if self._connect is None:
            return self._bus
        bus = self._buses.get(instance.name)
        if bus is not None and bus.closed:  # the server closed it (its user revoked): a new one
            await bus.close()
            del self._buses[instance.name]
            bus = None
        if bus is None:
            bus = self._buses[instance.name] = await self._connect(instance)
        return bus

    async def _clock_of(self, instance: Instance, bus: Bus) -> Clock | None:
        """The instance's clock: the replay's it follows, else the supervisor's (the wall clock)."""
        if instance.clock is None:
            return self._clock
        clock = self._bus_clocks.get(instance.clock)
        if clock is None:
            clock = self._bus_clocks[instance.clock] = BusClock(bus, instance.clock)
        await clock.start()  # idempotent: a start that failed is tried again on the restart
        if not clock.following and not await clock.wait_following(self.clock_wait):
            self.log.warning(
                "the replay's clock has not ticked yet: the instance runs on wall-clock time until it does",
                instance=instance.name,
                replay=instance.clock,
                waited=self.clock_wait,
            )
        return clock

    async def _stop_one(self, instance: Instance) -> None:
        task = self._tasks[instance.name]
        if task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.stop_timeout)
        if done:
            self.log.info("adapter stopped", instance=instance.name)
        else:
            self.log.error("adapter did not stop in time", instance=instance.name, timeout=self.stop_timeout)

    def _acting_for(self, instance: Instance) -> Callable[[str], Awaitable[Bus]] | None:
        """How an instance that acts for other users connects as one (``acts_for``), else ``None``."""
        connect_as = self._connect_as
        if connect_as is None or not instance.adapter.acts_for:
            return None

        async def connect(user: str) -> Bus:
            return await connect_as(instance, user)

        return connect

    async def _supervise(self, instance: Instance) -> None:
        adapter_name = instance.adapter.name
        metrics = self._families.instance(adapter_name, instance.name)
        log = self.log.bind(adapter=adapter_name, instance=instance.name)
        key = self._key(instance)
        loop = asyncio.get_running_loop()
        retries = self.backoff.attempts()

        def on_ready() -> None:
            metrics.up.set(1)
            self.health.ready(key)

        while True:
            ctx: Context | None = None
            started = loop.time()
            metrics.finished.set(0)
            log.info("adapter starting")
            try:
                # Creating the adapter runs its code too: a failing __init__ is restarted like a failing run.
                adapter = instance.create()
                bus = await self._bus_of(instance)
                ctx = Context(
                    bus=bus,
                    adapter=adapter_name,
                    instance=instance.name,
                    consumes=adapter.consumed(),
                    produces=adapter.produced(),
                    answers=type(adapter).answers,
                    metrics=metrics,
                    logger=self._logger,
                    clock=await self._clock_of(instance, bus),
                    on_ready=on_ready,
                    consumer_settings=self._consumer_settings,
                    connect_as=self._acting_for(instance),
                    credentials=self._credentials if instance.adapter.acts_for else None,
                    account=instance.account,
                    links=self._links,
                    personal=(self._config or Config()) if instance.adapter.privacy else None,
                    streams=self._config.streams if self._config is not None else None,
                )
                self.contexts[instance.name] = ctx
                # Each run in a task of its own, so no run inherits the cancel count of the one before:
                # Python 3.11's TaskGroup leaves its parent task "cancelling" when a child fails while
                # the group's body has ended (python/cpython#116720), and the next run's reads, seeing
                # the count, took it for a stop and ended the instance (see _stopping).
                await asyncio.create_task(adapter.run(ctx), name=f"adapter {instance.name} run")
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and _stopping():
                    metrics.up.set(0)
                    if ctx is not None:
                        await ctx.close()
                    raise
                metrics.up.set(0)
                metrics.restarts.inc()
                self.health.ready(key, False)
                if ctx is not None:
                    await ctx.close()
                if loop.time() - started >= self.backoff.stable_after:
                    retries.reset()
                delay = retries.next()
                log.error(
                    "adapter failed, restarting",
                    error=_failure_text(exc),
                    restart_in=delay,
                    exc_info=exc,
                )
                await asyncio.sleep(delay)
                continue
            # A normal return means the adapter's work is done (a one-shot import, a finite replay).
            await ctx.close()
            metrics.up.set(0)
            metrics.finished.set(1)
            self.health.ready(key)
            log.info("adapter finished")
            return


def _failure_text(exc: BaseException) -> str:
    """``Type: message`` of what failed; for an exception group (a TaskGroup's), of each exception in
    it, so the log says what failed instead of "unhandled errors in a TaskGroup (1 sub-exception)"."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_failure_text(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _stopping() -> bool:
    """Whether the running task is being cancelled (a stop), rather than an adapter raising a
    :class:`asyncio.CancelledError` nobody asked for.

    A run that raises ``CancelledError`` on its own (a future cancelled under it, a read that took a
    stale cancel count for a stop) was taken for a stop: the instance's supervision ended without a
    word — no log, no restart — and ``/readyz`` said "not ready" for ever (seen with the statistics
    service when a node of ``citybus up --cluster 3`` died). Only a cancel of the supervising task
    itself counts (``Task.cancelling()``); any other is a failure, logged and restarted.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
