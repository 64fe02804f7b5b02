"""``citybus up``: the embedded server (or a given one), the bus, the streams, the ops server and
the components that other packages plug in, started in order and stopped in reverse.

Other packages extend the runtime through the entry-point group ``citybus.runtime``: each entry
point names a factory ``(RuntimeContext) -> Component``. The adapter supervisor is one; ``bus``
itself never imports ``adapters`` or ``sandbox``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import msgspec
import structlog

from bus.access import Account, Kind
from bus.access.declared import Declared, access_model, declared_record, discover_declarations
from bus.access.joined import credentials_lock, joined_declarations, prune_joined
from bus.access.keys import CredentialStore
from bus.access.login import (
    Instance,
    InstanceAccess,
    InstanceAuth,
    forget_instance,
    tls_context,
    write_instance,
)
from bus.access.render import generate, server_include
from bus.buckets import provision_buckets
from bus.bus import Bus, redact_url
from bus.cluster import LocalCluster, config_dir, embedded_broker
from bus.cluster_monitor import ClusterMonitor, monitor_urls, watch_cluster
from bus.config import Config
from bus.entities import EntityReader
from bus.health import Health
from bus.metrics import Metrics
from bus.monitor import monitor_server
from bus.ops import OpsServer
from bus.server import EmbeddedServer
from bus.tracing import from_config
from contracts import Registry, default_registry

__all__ = [
    "Component",
    "ConfigCheck",
    "Connector",
    "Runtime",
    "RuntimeContext",
    "discover_checks",
]

RUNTIME_GROUP = "citybus.runtime"
CHECK_GROUP = "citybus.checks"


class Component(Protocol):
    """Something ``citybus up`` runs beside the bus: started after it, stopped before it."""

    name: str

    async def start(self) -> None:
        """Start; return once running (and call ``health.ready(name)`` when ready)."""

    async def stop(self) -> None:
        """Stop; the runtime bounds this with a timeout."""


class Connector:
    """Opens the bus connections of ``citybus up``: each user its own, with its credentials.

    With access control off (:attr:`enabled` false) there are no users: components share the
    runtime's bus and :meth:`connect` opens anonymous connections.
    """

    def __init__(
        self,
        config: Config,
        url: str,
        *,
        registry: Registry,
        metrics: Metrics,
        logger: Any,
        store: CredentialStore | None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.url = url
        self.registry = registry
        self.metrics = metrics
        self.log = logger
        self.store = store
        self.options = dict(options or {})
        """Connect options every connection shares (TLS)."""
        t = config.tracing
        self.tracing = from_config(t.enabled, t.endpoint, t.service_name, export=t.export)
        """One tracer for every connection of the process (``[tracing]``), or ``None``."""

    @property
    def enabled(self) -> bool:
        """Whether connections log in as their users."""
        return self.store is not None

    async def connect(self, account: str, user: str, *, name: str | None = None) -> Bus:
        """A new bus connected as ``user`` of ``account`` (or anonymously, without access control).

        Raises :class:`~bus.access.keys.CredentialError` (missing or revoked credentials) or
        :class:`~bus.errors.ServerUnavailableError` (the server refused or is down).
        """
        cfg = self.config
        options = dict(self.options)
        if self.store is not None:
            options.update(self.store.load(account, user).connect_options())
        bus = Bus(
            registry=self.registry,
            metrics=self.metrics,
            logger=self.log,
            name=name or f"citybus {account}/{user}",
            source=cfg.bus.source,
            provenance=cfg.bus.provenance,
            encoding=cfg.bus.encoding,
            max_in_flight_bytes=cfg.nats.max_in_flight_bytes,
            request_timeout=cfg.nats.request_timeout,
            tracing=self.tracing,
        )
        if self.store is not None:
            bus.user = f"{account}/{user}"
        await bus.connect(
            self.url,
            connect_timeout=cfg.nats.connect_timeout,
            reconnect_wait=cfg.nats.reconnect_wait,
            drain_timeout=cfg.nats.drain_timeout,
            **options,
        )
        return bus


@dataclass(kw_only=True)
class RuntimeContext:
    """What a component gets from the runtime."""

    config: Config
    bus: Bus
    """The runtime's own connection (the ``service`` user of ``CITY`` under access control)."""
    health: Health
    metrics: Metrics
    registry: Registry
    logger: Any
    nats_url: str
    connector: Connector | None = None
    """Opens a connection per user (each adapter instance its own) under access control."""
    extras: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    """What a component serves and where (``{"web": "http://127.0.0.1:8080"}``): ``citybus up``
    prints them once ready, so a user finds the gateway's page without reading a log."""


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
        declarations: Declared | None = None,
        shutdown_timeout: float = 10.0,
        config_file: Path | None = None,
    ) -> None:
        # Automatic stream replicas made concrete once, so every component sees the same counts.
        size = config.server.cluster_size if not config.nats.url else 1
        self.config = msgspec.structs.replace(config, streams=config.streams.resolved(size))
        self.config_file = config_file
        """The file ``config`` was read from (recorded in ``instance.json``), if any."""
        self.log = logger if logger is not None else structlog.get_logger()
        self.registry = registry if registry is not None else default_registry()
        self.metrics = metrics if metrics is not None else Metrics()
        self.health = Health()
        self._factories = components
        self._checks = checks
        self._declarations = declarations
        self.shutdown_timeout = shutdown_timeout
        self.server: EmbeddedServer | None = None
        self.cluster: LocalCluster | None = None
        """The local cluster under ``server.cluster_size`` > 1 (then :attr:`server` is ``None``)."""
        self.bus: Bus | None = None
        self.ops: OpsServer | None = None
        self.nats_url = ""
        self.mqtt_url = ""
        """The embedded server's MQTT listener (``server.mqtt``), else empty."""
        self.connector: Connector | None = None
        self.store: CredentialStore | None = None
        """The credentials under access control, else ``None``."""
        self.default_account = Account.CITY.value
        """The account client commands read by default: ``SANDBOX`` when only the sandbox runs."""
        self.access: InstanceAccess | None = None
        """Under access control, what ``citybus auth`` needs to rebuild this instance's access model
        (recorded in ``instance.json``): the declarations, the MQTT users, the users it runs as."""
        self.buckets: dict[Account, tuple[str, ...]] = {}
        """Under access control, the key-value buckets each account's provisioner creates (``stores``)."""
        self.ready = asyncio.Event()
        self.links: dict[str, str] = {}
        """What the components serve and where, once they do (see :attr:`RuntimeContext.links`)."""

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
            self.ops.links = self.links  # the same dict: filled as components start
            await self.ops.start()
            stack.push_async_callback(self._bounded, "ops server", self.ops.stop)
        url = cfg.nats.url
        include = self._prepare_access(log)
        if not url:
            if cfg.nats.monitor_url:
                log.warning("nats.monitor_url is ignored: citybus reads its embedded server's own monitoring")
            broker = embedded_broker(cfg.server, cfg.resolved_data_dir(), include, self.log)
            url = await broker.start()
            stack.push_async_callback(self._bounded, "nats-server", broker.stop)
            if isinstance(broker, LocalCluster):
                self.cluster = broker
                # A node killed by hand comes back (unwatched before the cluster stops: stack order).
                restarts = self.metrics.node_restarts
                watching = broker.watching(cfg.server.restart_delay, restarts=restarts)
                await stack.enter_async_context(watching)
            else:
                self.server = broker
                self.mqtt_url = broker.mqtt_url if cfg.server.mqtt else ""
            log.info(
                "embedded nats-server started",
                url=url,
                nodes=self.cluster.names if self.cluster else None,
                mqtt=self.mqtt_url or None,
                data_dir=str(cfg.resolved_data_dir()),
            )
        elif cfg.server.mqtt:
            log.warning("server.mqtt is ignored: nats.url names an external server, configure MQTT there")
        self.nats_url = url
        cluster_monitor = self._monitor(stack)
        self.connector = connector = Connector(
            cfg,
            url,
            registry=self.registry,
            metrics=self.metrics,
            logger=self.log,
            store=self.store,
            options=self._tls_options(),
        )
        if connector.enabled:
            bus = await connector.connect(Account.CITY.value, "service")
        else:
            bus = await connector.connect(Account.CITY.value, "service", name=cfg.nats.name)
        self.bus = bus
        # The connection is drained last of all (after every component stopped publishing).
        stack.push_async_callback(self._bounded, "nats connection", bus.drain)
        self.health.ready("nats")
        # This connection and every other of the process (each adapter's own, under access
        # control), as citybus_nats_connected counts them: one refused or lost is an outage too.
        self.health.check("nats connected", lambda: bus.connected and self.metrics.links_up)
        if connector.enabled:
            # The sandbox is an account of its own, with streams of its own (same names). Streams
            # are provisioned by a user of their own, on connections closed once it is done: the
            # long-lived service connections may not touch a stream (see bus/access/policy.py).
            for account in (Account.CITY.value, Account.SANDBOX.value):
                streams = await self._provision(connector, account)
            sandbox = await connector.connect(Account.SANDBOX.value, "service")
            stack.push_async_callback(self._bounded, "nats connection (SANDBOX)", sandbox.drain)
            self.health.check("nats connected (SANDBOX)", lambda: sandbox.connected)
        else:
            streams = await bus.provision_streams(cfg.streams)
        self.health.ready("streams")
        if cluster_monitor is not None:  # these streams without quorum: no durable work (bus/health.py)
            self.health.check("nats cluster", lambda: cluster_monitor.verdict(streams))
        if self.ops is not None:  # /entities reads as each account's operator (see bus/entities.py)
            if connector.enabled:
                reader = EntityReader(
                    lambda a: connector.connect(a, "operator"), self.registry, self.default_account
                )
            else:
                reader = EntityReader(lambda _a: _same(bus), self.registry, self.default_account, owned=False)
            self.ops.entities = reader
            stack.push_async_callback(self._bounded, "entities connections", reader.close)
        accounts = "CITY, SANDBOX" if connector.enabled else None
        log.info("streams provisioned", streams=streams, accounts=accounts)
        context = RuntimeContext(
            config=cfg,
            bus=bus,
            health=self.health,
            metrics=self.metrics,
            registry=self.registry,
            logger=self.log,
            nats_url=url,
            connector=connector,
            extras={"mqtt_url": self.mqtt_url} if self.mqtt_url else {},
            links=self.links,
        )
        factories = self._factories if self._factories is not None else discover_components()
        for name, factory in factories:
            component = factory(context)
            # Its stop is on the stack before it starts: a stop during its start (adapters getting
            # ready) must stop it too, before the connections and the server it runs on.
            stack.push_async_callback(self._bounded, name, component.stop)
            await component.start()

    async def _provision(self, connector: Connector, account: str) -> list[str]:
        """Provision ``account``'s streams and the key-value buckets its instances declare
        (:mod:`bus.buckets`) as its ``provisioner``, then close that connection."""
        provisioner = await connector.connect(account, "provisioner")
        try:
            streams = await provisioner.provision_streams(self.config.streams)
            buckets = self.buckets.get(Account(account), ())
            return streams + await provision_buckets(provisioner, buckets, self.config.streams)
        finally:
            await self._bounded(f"provisioning connection ({account})", provisioner.drain)

    def _monitor(self, stack: AsyncExitStack) -> ClusterMonitor | None:
        """The server's memory, JetStream use and slow consumers in ``/metrics`` (bus/monitor.py: node
        1's in a cluster) and, for a cluster, every node's state (bus/cluster_monitor.py)."""
        server, cluster, registry = self.server, self.cluster, self.metrics.registry
        if server is not None:
            urls = [server.monitor_url] if server.monitor_url else []
        else:
            urls = cluster.monitor_urls if cluster is not None else monitor_urls(self.config.nats.monitor_url)
        if urls:
            first = server or (cluster.nodes[0] if cluster is not None else None)
            limit = first.memory_limit if first is not None else None
            monitor = monitor_server(registry, urls[0], memory_limit=limit, logger=self.log)
            stack.callback(registry.unregister, monitor)
        if not urls or (len(urls) < 2 and cluster is None):  # one endpoint: a single server
            return None
        nodes = watch_cluster(registry, urls, names=cluster.names if cluster else None, logger=self.log)
        stack.callback(registry.unregister, nodes)
        stack.push_async_callback(self._bounded, "nats cluster monitor", nodes.stop)
        return nodes

    def _prepare_access(self, log: Any) -> str:
        """Under access control: the credentials every user needs and the server's ``accounts.conf``.

        Returns the ``include`` line for the embedded server's configuration (empty without access
        control, or for an external server, which includes the file itself).
        """
        cfg = self.config
        if not cfg.auth_enabled():
            if cfg.nats.url:
                log.info("access control is the external server's (auth.mode = auto/off)")
            else:
                log.warning("access control is off (auth.mode = off): any client may do anything")
            return ""
        declared = self._declarations if self._declarations is not None else discover_declarations(cfg)
        if not declared.city:
            self.default_account = Account.SANDBOX.value if declared.sandbox else Account.CITY.value
        self.store = store = CredentialStore(cfg.credentials_dir(), logger=self.log)
        # Users of `citybus sandbox join`s still running (a restart keeps them); dead ones go.
        with credentials_lock(store.directory):
            pruned = prune_joined(store)
        if pruned:
            log.info("removed the users of joins that are gone", users=[f"SANDBOX/{n}" for n in pruned])
        declared += Declared(guests=joined_declarations(store.directory))
        model = access_model(self.registry, declared, cfg)
        self.buckets = model.buckets
        # `citybus auth`, run from anywhere, must rebuild this model (not its own directory's
        # citybus.toml's), and must never drop a user this instance runs as.
        self.access = InstanceAccess(
            declared=declared_record(declared),
            mqtt_users=list(cfg.auth.mqtt_users),
            users=[f"{a}/{n}" for a, n in (u.key for u in model.users if u.kind is not Kind.GUEST)],
        )
        if cfg.nats.url:
            # An external server reads accounts.conf as its operator included it: written by
            # `citybus auth generate`, not here (it would need a reload citybus cannot do).
            log.info("connecting as each user, with the credentials in", credentials=str(store.directory))
            return ""
        done = generate(model, store)
        log.info(
            "access control: accounts CITY, SANDBOX, SYS",
            users=len(done.credentials),
            issued=len(done.issued),
            revoked=[f"{a}/{u}" for a, u in done.revoked] or None,
            credentials=str(store.directory),
        )
        return server_include(done.config_file, config_dir(cfg.server, cfg.resolved_data_dir()))

    def _tls_options(self) -> dict[str, Any]:
        """TLS for every connection: the configured CA, and the embedded server's own certificate."""
        cfg = self.config
        cas = [cfg.nats.tls_ca] if cfg.nats.tls_ca else []
        if not cfg.nats.url and cfg.server.tls_cert:
            cas.append(cfg.server.tls_cert)
        if not cas and not (cfg.nats.url or "").startswith("tls://"):
            return {}
        return {"tls": tls_context(*cas)}

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
        cfg = self.config
        write_instance(
            cfg,
            Instance(
                pid=os.getpid(),
                nats_url=self.nats_url,
                mqtt_url=self.mqtt_url or None,
                ops_url=self.ops.url if self.ops else None,
                server_pid=self.server.pid if self.server else None,
                # How client commands log in: where the credentials are, and which account to read.
                auth=(
                    InstanceAuth(credentials=str(self.store.directory), account=self.default_account)
                    if self.store is not None
                    else None
                ),
                tls_ca=cfg.nats.tls_ca or (cfg.server.tls_cert if not cfg.nats.url else "") or None,
                config_file=str(self.config_file) if self.config_file is not None else None,
                access=self.access,
            ),
        )

    async def _forget_instance(self) -> None:
        forget_instance(self.config)


async def _same(bus: Bus) -> Bus:
    """The runtime's own connection, for a reader without access control."""
    return bus
