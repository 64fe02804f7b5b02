"""``citybus sandbox join INSTANCE`` (and ``citybus adapters run NAME --sandbox``): a development
adapter in the running sandbox, without restarting ``citybus up``.

The instance is an installed adapter (entry point group ``citybus.adapters``) with its defaults,
or an ``[adapters.NAME]`` section of the configuration (``--config FILE``). The command

1. finds the running ``citybus up`` (``instance.json``) and the replay whose clock to follow:
   ``--clock NAME``, else the section's ``clock``, else the one replay it runs (``sandbox`` when
   there are several);
2. issues the instance a ``SANDBOX`` user of its own from what its adapter declares — it publishes
   what it produces, reads what it consumes, follows the clocks — keeping every other user, and
   reloads the server (:func:`bus.access.joined.join`);
3. provisions the sandbox's streams as ``SANDBOX/provisioner``, so that a contract of a company
   package installed after ``citybus up`` started is stored like the city's (``citybus up`` made
   the streams of the contracts it knew);
4. runs it, supervised, on the replay's clock (``ctx.clock`` is the replayed time, ``ce-time``
   follows it), with the sandbox's reserved sources checked on what it receives
   (:class:`bus.origin.SourceGuard`);
5. leaves on Ctrl-C, SIGTERM or when the adapter ends: its user is revoked and the server
   reloaded again (:func:`bus.access.joined.leave`). A join killed outright leaves its user
   behind until the next join, ``citybus auth generate`` or ``citybus up`` prunes it.

Decisions, and why:

* **A joined instance is a pilot.** It is a company's code, so it gets a pilot's rules
  (``kind = "pilot"``, a guest of ``SANDBOX``): never personal data (the same refusal as
  ``citybus auth add-pilot``), no control requests, never the city's own entities. Unlike a pilot
  that only holds a seed file, it reads exactly what it consumes, not whole classes, and it
  publishes dead letters: it runs citybus's bus, whose dead letters are how its developer sees
  what it refused (a forged city reading among them).
* **Its name is its own.** A name another ``SANDBOX`` user has, or whose ``ce-source``
  (``/adapters/NAME``) is one of the city's recorded sources, is refused before anything is
  written: the first would take over a user, the second would make every consumer dead-letter it.
* **The connection waits for the reload.** nats-server applies a reload a moment after the
  signal; the first login is retried for a few seconds instead of failing on that race.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
from collections.abc import Sequence
from typing import Any

from adapters.access import declaration
from adapters.instances import REPLAY_CONTROL, Instance
from adapters.supervisor import Supervisor
from bus import Bus, Metrics
from bus.access import Account, Declaration
from bus.access.declared import Declared
from bus.access.joined import join, leave, running_sandbox
from bus.access.login import Login, client_login
from bus.config import Config
from bus.console import err
from bus.errors import CityBusError
from bus.health import Health
from bus.logs import configure_logging
from bus.origin import SourceGuard
from bus.pipeline import Middleware
from bus.provision import client_streams
from bus.tracing import from_config

__all__ = ["ADMISSION_TIMEOUT", "add_join_options", "joined_declaration", "replay_to_follow", "run_joined"]

ADMISSION_TIMEOUT = 10.0
"""How long the first login waits for the server to apply the reload that lets the user in."""


def joined_declaration(instance: Instance) -> Declaration:
    """What a joined instance may do: what its adapter declares (:func:`adapters.access.declaration`),
    as a pilot — no personal data, on the sandbox's clock, owning none of the city's entities."""
    return dataclasses.replace(
        declaration(instance), kind="pilot", personal=False, clocks=True, owns=(), sources=()
    )


def replay_to_follow(declared: Declared, wanted: str | None) -> str:
    """The replay instance whose clock a joined instance runs on (``wanted``, else the only one,
    else ``sandbox``); a :class:`CityBusError` that names the running replays otherwise."""
    replays = [d.name for d in declared.sandbox if d.control == REPLAY_CONTROL]
    if wanted is not None:
        if wanted not in replays:
            running = ", ".join(replays) or "none"
            raise CityBusError(
                f"the running citybus up has no replay named {wanted!r} (its replays: {running}): "
                "choose one with --clock NAME"
            )
        return wanted
    if len(replays) == 1:
        return replays[0]
    if "sandbox" in replays:
        return "sandbox"
    if not replays:
        raise CityBusError(
            "the running citybus up replays nothing, so the sandbox has no clock to follow: start it "
            'with a sandbox-replay instance ([adapters.sandbox] adapter = "sandbox-replay")'
        )
    raise CityBusError(
        f"the running citybus up has several replays ({', '.join(replays)}): choose with --clock"
    )


async def _provisioned(config: Config, log: Any) -> None:
    """Create or update the sandbox's streams of every contract this process knows, as its
    provisioner (whose rights the join's ``accounts.conf`` just extended to a new package's streams)."""
    provisioner = client_login(config, default_user="provisioner", default_account=Account.SANDBOX.value)
    bus = Bus(metrics=Metrics(), logger=log, name="citybus-join-provisioner", encoding=config.bus.encoding)
    await _admitted(bus, provisioner, config)
    try:
        await bus.provision_streams(client_streams(config, provisioner.url, external=bool(config.nats.url)))
    finally:
        await bus.drain()


async def _admitted(bus: Bus, login: Login, config: Config) -> None:
    """Connect ``bus`` as ``login``, retrying while the server has not applied the reload yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ADMISSION_TIMEOUT
    while True:
        try:
            await login.connect(bus, config, reconnect_wait=config.nats.reconnect_wait)
            return
        except CityBusError:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.2)


def run_joined(
    instance: Instance,
    config: Config,
    *,
    clock: str | None = None,
    url: str | None = None,
    middleware: Sequence[Middleware] = (),
    health: Health | None = None,
) -> int:
    """Join the running sandbox as ``instance``, run it until stopped, and leave.

    ``url`` replaces the server's (a proxy in between); ``middleware`` wraps the handling of every
    message the instance receives and ``health`` gets its readiness (``citybus certify``'s probe)."""
    info, declared = running_sandbox(config)
    follow = replay_to_follow(declared, clock or instance.clock)
    instance = dataclasses.replace(instance, clock=follow)
    guard = SourceGuard.from_declarations(declared.sandbox)
    own_source = f"/adapters/{instance.name}"
    if own_source in guard.sources:
        raise CityBusError(
            f"instance name {instance.name!r} would publish as {own_source}, one of the city's sources "
            'in the sandbox: join under another name (an [adapters.NAME] section with adapter = "...")'
        )
    joined = join(config, joined_declaration(instance))
    try:
        for name in joined.pruned:
            err(f"removed SANDBOX/{name}: the `citybus sandbox join` that held it is gone")
        reloaded = f"reloaded nats-server pid {joined.reloaded}" if joined.reloaded else "no server reloaded"
        err(
            f"joined the sandbox as {Account.SANDBOX.value}/{instance.name} ({reloaded}), "
            f"on the clock of replay {follow}; Ctrl-C leaves"
        )
        login = client_login(config, default_user=instance.name, default_account=Account.SANDBOX.value)
        if url is not None:
            login = dataclasses.replace(login, url=url)
        asyncio.run(_run(instance, config, login, guard, middleware, health))
    finally:
        pid = leave(config, instance.name)
        after = f"reloaded nats-server pid {pid}" if pid else "citybus up is gone"
        err(f"left the sandbox: {Account.SANDBOX.value}/{instance.name} revoked ({after})")
    return 0


async def _run(
    instance: Instance,
    config: Config,
    login: Login,
    guard: SourceGuard,
    middleware: Sequence[Middleware],
    health: Health | None,
) -> None:
    log = configure_logging(config.log.format, config.log.level)
    t = config.tracing
    bus = Bus(
        metrics=Metrics(),
        logger=log,
        name=f"citybus-{instance.name}",
        encoding=config.bus.encoding,
        middleware=middleware,
        tracing=from_config(t.enabled, t.endpoint, t.service_name, export=t.export),
    )
    bus.source_guard = guard
    supervisor = Supervisor([instance], bus=bus, logger=log, consumer_settings=config.consumer, health=health)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop)
    await _provisioned(config, log)
    await _admitted(bus, login, config)
    err(f"running adapter {instance.adapter.name} as instance {instance.name} (Ctrl-C to stop)")
    try:
        await supervisor.run()
    finally:
        await bus.drain()


def add_join_options(parser: argparse.ArgumentParser) -> None:
    """``--clock NAME``: the replay to follow."""
    parser.add_argument(
        "--clock",
        metavar="NAME",
        help="the replay instance whose clock it runs on (default: the one the running citybus up runs)",
    )
