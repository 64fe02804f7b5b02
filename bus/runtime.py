"""``citybus up``: the embedded server (or a given one), the bus, the streams, the ops server and
the components that other packages plug in, started in order and stopped in reverse.

Other packages extend the runtime through the entry-point group ``citybus.runtime``: each entry
point names a factory ``(RuntimeContext) -> Component``. The adapter supervisor is one; ``bus``
itself never imports ``adapters`` or ``sandbox``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import structlog

from bus.bus import Bus, redact_url
from bus.config import Config
from bus.errors import CityBusError
from bus.health import Health
from bus.jetstream import ConsumerSettings, StreamSettings
from bus.metrics import Metrics
from bus.ops import OpsServer
from bus.server import EmbeddedServer
from contracts import Registry, default_registry

__all__ = [
    "Component",
    "ConfigCheck",
    "INSTANCE_FILE",
    "Runtime",
    "RuntimeContext",
    "consumer_settings",
    "discover_checks",
    "instance_file",
    "read_instance",
    "stream_settings",
]

INSTANCE_FILE = "instance.json"
RUNTIME_GROUP = "citybus.runtime"
CHECK_GROUP = "citybus.checks"


class Component(Protocol):
    """Something ``citybus up`` runs beside the bus: started after it, stopped before it."""

    name: str

    async def start(self) -> None:
        """Start; return once running (and call ``health.ready(name)`` when ready)."""

    async def stop(self) -> None:
        """Stop; the runtime bounds this with a timeout."""


@dataclass(kw_only=True)
class RuntimeContext:
    """What a component gets from the runtime."""

    config: Config
    bus: Bus
    health: Health
    metrics: Metrics
    registry: Registry
    logger: Any
    nats_url: str
    extras: dict[str, Any] = field(default_factory=dict)


def stream_settings(config: Config) -> StreamSettings:
    """The stream limits of a configuration."""
    s = config.streams
    return StreamSettings(
        max_age=s.max_age,
        max_bytes=s.max_bytes,
        max_msgs=s.max_msgs,
        duplicate_window=s.duplicate_window,
        replicas=s.replicas,
        storage=s.storage,
    )


def consumer_settings(config: Config) -> ConsumerSettings:
    """The durable-consumer settings of a configuration."""
    c = config.consumer
    return ConsumerSettings(
        max_deliver=c.max_deliver,
        retry_delay=c.retry_delay,
        ack_wait=c.ack_wait,
        max_in_flight=c.max_in_flight,
    )


def instance_file(config: Config) -> Path:
    """Where a running ``citybus up`` says how to reach it (NATS URL, ops URL, pid)."""
    return config.resolved_data_dir() / INSTANCE_FILE


def read_instance(config: Config) -> dict[str, Any] | None:
    """The running instance's description, or ``None`` if none runs on this data directory."""
    path = instance_file(config)
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return info


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


ComponentFactory = Callable[[RuntimeContext], Component]


def discover_components() -> list[tuple[str, ComponentFactory]]:
    """The runtime extensions installed in the ``citybus.runtime`` entry-point group."""
    found = []
    for ep in sorted(entry_points(group=RUNTIME_GROUP), key=lambda e: e.name):
        found.append((ep.name, ep.load()))
    return found


ConfigCheck = Callable[[Config], None]
"""Checks a configuration before anything starts; raises :class:`~bus.errors.ConfigError`."""


def discover_checks() -> list[tuple[str, ConfigCheck]]:
    """The configuration checks installed in the ``citybus.checks`` entry-point group: each package
    that configures a runtime component checks its part before a server is started."""
    return [(ep.name, ep.load()) for ep in sorted(entry_points(group=CHECK_GROUP), key=lambda e: e.name)]


class Runtime:
    """Everything ``citybus up`` runs, in order. Use :meth:`run` with an event that says "stop"."""

    def __init__(
        self,
        config: Config,
        *,
        logger: Any = None,
        registry: Registry | None = None,
        metrics: Metrics | None = None,
        components: list[tuple[str, ComponentFactory]] | None = None,
        checks: list[tuple[str, ConfigCheck]] | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.log = logger if logger is not None else structlog.get_logger()
        self.registry = registry if registry is not None else default_registry()
        self.metrics = metrics if metrics is not None else Metrics()
        self.health = Health()
        self._factories = components
        self._checks = checks
        self.shutdown_timeout = shutdown_timeout
        self.server: EmbeddedServer | None = None
        self.bus: Bus | None = None
        self.ops: OpsServer | None = None
        self.nats_url = ""
        self.mqtt_url = ""
        """The embedded server's MQTT listener (``server.mqtt``), else empty."""
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, report ready, wait for ``stop``, then stop in reverse order."""
        log = self.log.bind(component="runtime")
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self._forget_instance)
            # Ctrl-C must work while starting too (a server coming up, adapters getting ready):
            # a stop that comes first cancels start-up, and the stack stops what had started.
            starting = asyncio.create_task(self._start(stack, log), name="citybus start-up")
            stopping = asyncio.create_task(stop.wait(), name="citybus stop")
            try:
                await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not starting.done():
                    starting.cancel()
                    log.info("stopping during start-up")
                await asyncio.gather(starting, stopping, return_exceptions=True)
            if starting.cancelled():
                return
            starting.result()  # a start-up error (a wrong config, a dead server) ends here
            self._write_instance()
            self.ready.set()
            log.info(
                "citybus is up",
                nats=redact_url(self.nats_url),
                mqtt=self.mqtt_url or None,
                ops=self.ops.url if self.ops else None,
            )
            await stop.wait()
            log.info("stopping")
        log.info("stopped")

    async def _start(self, stack: AsyncExitStack, log: Any) -> None:
        cfg = self.config
        # A wrong adapter section is found before a server is started, not after.
        for _name, check in self._checks if self._checks is not None else discover_checks():
            check(cfg)
        self.health.expect("nats")
        self.health.expect("streams")
        if cfg.ops.enabled:
            self.ops = OpsServer(
                metrics=self.metrics,
                health=self.health,
                registry=self.registry,
                host=cfg.ops.host,
                port=cfg.ops.port,
                logger=self.log,
            )
            await self.ops.start()
            stack.push_async_callback(self._bounded, "ops server", self.ops.stop)
        url = cfg.nats.url
        if not url:
            self.server = EmbeddedServer(
                data_dir=cfg.resolved_data_dir(),
                host=cfg.server.host,
                port=cfg.server.port,
                jetstream=cfg.server.jetstream,
                mqtt_port=cfg.server.mqtt_port if cfg.server.mqtt else None,
                logger=self.log,
            )
            url = await self.server.start()
            stack.push_async_callback(self._bounded, "nats-server", self.server.stop)
            if cfg.server.mqtt:
                self.mqtt_url = self.server.mqtt_url
            log.info(
                "embedded nats-server started",
                url=url,
                mqtt=self.mqtt_url or None,
                data_dir=str(cfg.resolved_data_dir()),
            )
        elif cfg.server.mqtt:
            log.warning("server.mqtt is ignored: nats.url names an external server, configure MQTT there")
        self.nats_url = url
        bus = Bus(
            registry=self.registry,
            metrics=self.metrics,
            logger=self.log,
            name=cfg.nats.name,
            source=cfg.bus.source,
            provenance=cfg.bus.provenance,
            encoding=cfg.bus.encoding,
            max_in_flight_bytes=cfg.nats.max_in_flight_bytes,
            request_timeout=cfg.nats.request_timeout,
        )
        await bus.connect(
            url,
            connect_timeout=cfg.nats.connect_timeout,
            reconnect_wait=cfg.nats.reconnect_wait,
            drain_timeout=cfg.nats.drain_timeout,
        )
        self.bus = bus
        # The connection is drained last of all (after every component stopped publishing).
        stack.push_async_callback(self._bounded, "nats connection", bus.drain)
        self.health.ready("nats")
        self.health.check("nats connected", lambda: bus.connected)
        streams = await bus.provision_streams(stream_settings(cfg))
        self.health.ready("streams")
        log.info("streams provisioned", streams=streams)
        context = RuntimeContext(
            config=cfg,
            bus=bus,
            health=self.health,
            metrics=self.metrics,
            registry=self.registry,
            logger=self.log,
            nats_url=url,
            extras={"mqtt_url": self.mqtt_url} if self.mqtt_url else {},
        )
        factories = self._factories if self._factories is not None else discover_components()
        for name, factory in factories:
            component = factory(context)
            await component.start()
            stack.push_async_callback(self._bounded, name, component.stop)

    async def _bounded(self, what: str, stop: Callable[[], Any]) -> None:
        """Stop one part under a timeout; an error is logged, and the others still stop."""
        try:
            async with asyncio.timeout(self.shutdown_timeout):
                await stop()
        except TimeoutError:
            self.log.error("did not stop in time", part=what, timeout=self.shutdown_timeout)
        except Exception as exc:
            self.log.error("error while stopping", part=what, error=repr(exc))

    def _write_instance(self) -> None:
        path = instance_file(self.config)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "pid": os.getpid(),
            "nats_url": self.nats_url,
            "mqtt_url": self.mqtt_url or None,
            "ops_url": self.ops.url if self.ops else None,
        }
        tmp = path.with_suffix(".tmp")
        # The URL may carry credentials: readable by this user only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(info))
        tmp.replace(path)

    async def _forget_instance(self) -> None:
        path = instance_file(self.config)
        try:
            info = json.loads(path.read_text())
            if info.get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


def nats_url_for_client(config: Config, override: str | None = None) -> str:
    """The NATS URL a client command should use: ``--nats``, the config, or the running ``citybus up``."""
    if override:
        return override
    if config.nats.url:
        return config.nats.url
    info = read_instance(config)
    if info is None or not info.get("nats_url"):
        raise CityBusError(
            f"no running `citybus up` found (looked for {instance_file(config)}): start `citybus up`, "
            "or say which NATS server to use with --nats URL or CITYBUS_NATS_URL"
        )
    return str(info["nats_url"])
