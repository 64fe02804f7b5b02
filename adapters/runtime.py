"""The adapters' part of ``citybus up``: discover, configure and supervise the adapter instances.

Registered as the ``adapters`` entry point of the group ``citybus.runtime``, so the bus's runtime
runs it without importing this package.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import entry_points
from typing import Any

from adapters.base import Adapter
from adapters.discovery import discover
from adapters.instances import Instance, instances_from_config
from adapters.supervisor import Supervisor
from bus import Bus
from bus.access import Account
from bus.config import Config
from bus.origin import SourceGuard
from bus.runtime import RuntimeContext

__all__ = ["DEFAULTS_GROUP", "AdapterRuntime", "check", "component", "default_sections", "sandbox_guard"]


DEFAULTS_GROUP = "citybus.defaults"
"""Entry points of packages that give default instances more keys: each a function returning
``{instance: {key: value}}`` (the sandbox names the timetable it ships for ``journey-planner``)."""


def default_sections(adapters: dict[str, type[Adapter[Any]]]) -> dict[str, dict[str, Any]]:
    """What runs when the configuration has no ``[adapters.*]`` section: each installed adapter that
    declares a ``default_instance``, with its defaults, and what installed packages add to them
    (:data:`DEFAULTS_GROUP`; the adapter's own keys win). One section, even ``enabled = false``,
    turns the defaults off."""
    sections = {
        cls.default_instance: {"adapter": name, **cls.default_section}
        for name, cls in sorted(adapters.items())
        if cls.default_instance is not None
    }
    for ep in sorted(entry_points(group=DEFAULTS_GROUP), key=lambda e: e.name):
        for instance, keys in ep.load()().items():
            if instance in sections:
                sections[instance] = {**keys, **sections[instance]}
    return sections


def sandbox_guard(instances: list[Instance]) -> SourceGuard:
    """The sources the ``SANDBOX`` instances own (a replay's recorded ones), reserved to their
    subjects (:mod:`bus.origin`): what the sandbox's own consumers check on what they receive."""
    guard = SourceGuard()
    for instance in instances:
        if instance.account == Account.SANDBOX.value:
            owns, sources = instance.create().owned()
            if owns and sources:
                guard.reserve(sources, owns, owner=instance.name)
    return guard


class AdapterRuntime:
    """Runs the configured adapter instances under a :class:`Supervisor`."""

    name = "adapters"

    def __init__(self, context: RuntimeContext, *, ready_timeout: float = 30.0) -> None:
        self.log = context.logger.bind(component="adapters")
        found = discover()
        for problem in found.problems:
            self.log.error("adapter not loaded", problem=str(problem))
        sections = context.config.adapters or default_sections(found.adapters)
        instances = instances_from_config(sections, found.adapters)
        for undeclared in found.undeclared_of({i.adapter.name for i in instances}):
            # it works here (this process imported the adapter), but tail and the ops endpoints do not know it
            self.log.warning("contract declared only in its adapter's module", problem=str(undeclared))
        running = {i.name for i in instances}
        for instance in instances:
            if instance.clock is not None and instance.clock not in running:
                # legitimate against another server (--nats), a mistake in a file that forgot the replay
                self.log.warning(
                    "instance follows the clock of a replay this citybus up does not run",
                    instance=instance.name,
                    replay=instance.clock,
                    fix=f'add [adapters.{instance.clock}] adapter = "sandbox-replay", or set its clock',
                )
        connector = context.connector
        connect = None
        connect_as = None
        if connector is not None:

            async def connect_as(instance: Instance, user: str) -> Bus:
                return await connector.connect(
                    instance.account, user, name=f"citybus {instance.name} as {instance.account}/{user}"
                )

        if connector is not None and connector.enabled:
            guard = sandbox_guard(instances)

            async def connect(instance: Instance) -> Bus:
                bus = await connector.connect(instance.account, instance.name)
                if instance.account == Account.SANDBOX.value:
                    bus.source_guard = guard  # the city's sources, on the city's subjects only
                return bus

        self.supervisor = Supervisor(
            instances,
            bus=context.bus,
            health=context.health,
            logger=context.logger,
            consumer_settings=context.config.consumer,
            connect=connect,
            connect_as=connect_as,
            credentials=context.config.credentials_dir() if connect is not None else None,
            links=context.links,
            config=context.config,
        )
        self.ready_timeout = ready_timeout
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the instances; return once all are ready (or the ready timeout passed)."""
        names = [i.name for i in self.supervisor.instances]
        self.log.info("starting adapters", instances=names)
        self._task = asyncio.create_task(self.supervisor.run(), name="adapter supervisor")
        keys = [f"adapter {n}" for n in names]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while loop.time() < deadline and not self._task.done():
            status = self.supervisor.health.status()
            if all(status.get(k) for k in keys):
                return
            await asyncio.sleep(0.05)
        if self._task.done():
            await self._task  # raises what stopped the supervisor
        not_ready = [k for k, ok in self.supervisor.health.status().items() if k in keys and not ok]
        if not_ready:
            self.log.warning("adapters not ready yet", waiting_for=not_ready, after=self.ready_timeout)

    async def stop(self) -> None:
        """Stop the instances in reverse order."""
        self.supervisor.stop()
        if self._task is not None:
            await self._task


def component(context: RuntimeContext) -> Any:
    """The ``citybus.runtime`` entry point: the adapter runtime of ``citybus up``."""
    return AdapterRuntime(context)


def check(config: Config) -> None:
    """The ``citybus.checks`` entry point: every adapter section configures, before anything starts."""
    found = discover()
    instances_from_config(config.adapters or default_sections(found.adapters), found.adapters)
