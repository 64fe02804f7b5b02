"""The NATS cluster as citybus metrics and health: every node, every stream's leader, replicas, quorum.

A replicated stream keeps working with one node of three dead, and stops taking durable publishes
with two; neither shows in citybus's own metrics until it is too late. :class:`ClusterMonitor`
reads every node's monitoring endpoint (``/varz``, ``/routez``, ``/jsz?accounts=true&streams=true``)
— the local cluster's (``citybus up --cluster 3``), or an external cluster's listed in
``nats.monitor_url`` separated by commas — and exports (how the figures are derived:
:mod:`bus.cluster_view`):

======================================================== =====================================
``citybus_cluster_node_up{node}``                         1 while the node answers (0: down)
``citybus_cluster_node_connections{node}``                its client connections
``citybus_cluster_node_routes{node}``                     the peers it has routes to
``citybus_cluster_meta_leader{node}``                     1 on the JetStream meta leader
``citybus_stream_leader{account,stream,node}``            1 on the node leading the stream
``citybus_stream_replica{account,stream,node,state}``     1 per replica, state current|lagging|offline
``citybus_stream_replica_lag{account,stream,node}``       entries a replica is behind its leader
``citybus_stream_quorum{account,stream}``                 1 with a leader and a majority current
``citybus_cluster_monitor_errors_total{node}``            failed reads of a node's endpoint
======================================================== =====================================

The alerts ``CitybusClusterNodeDown``, ``CitybusStreamReplicaLost`` and ``CitybusStreamNoQuorum``
(docs/prometheus/citybus-rules.yml) watch them. The same view is citybus's health check
``nats cluster``: a stream citybus provisioned without quorum fails ``/readyz`` (503) and makes
``/healthz`` say ``unhealthy``; a node down or replicas behind make it ``degraded``, with reasons.
Adapters' key-value buckets are left to their adapters (one whose bucket has no quorum fails,
restarts with backoff and is not ready), and another application's streams on a shared cluster
to their owners: they show in the metrics, but do not make citybus unready.

Decisions, and why (and :class:`~bus.monitor.ServerMonitor`'s, which this keeps):

* **Absent, not zero.** When no node answers, only ``node_up`` (0 for each) and the error counter
  are exported: nothing is known of leaders or quorum, and a 0 would claim it is.
* **Briefly, in parallel, off the event loop.** Each node is read in a thread of its own with a
  1 s timeout, and a node that fails one request is not asked the other two: a scrape costs at
  most about a second whatever hangs. A failed read is counted per node and logged at most once a
  minute; a node going down or coming back is logged once, when it happens.
* **Health from the last read, kept fresh by a watch.** ``/readyz`` runs on the event loop and
  must never wait for HTTP, so the check reads the last view; :meth:`ClusterMonitor.start` keeps
  it at most :data:`WATCH_INTERVAL` seconds old (a scrape of ``/metrics`` reads afresh, and the
  watch skips a read a scrape just made).
* **No grace for elections.** When a node dies, the streams it led have no leader until the
  others elect one (measured on loopback, nats-server 2.15.1, a SIGKILLed node that led 5 to 7
  streams: 7 to 8 s until every stream had quorum again), and ``/readyz`` says so: durable
  publishes to them do wait then. An orchestrator's failure threshold (Kubernetes: 3 probes) rides
  out an election; the alerts' ``for:`` does the same for a person.
* **The server monitor reads node 1.** ``citybus_nats_server_*`` (:mod:`bus.monitor`) keep their
  meaning and labels in a cluster: one server's memory, store and streams, the first endpoint's.
  Reading every node would need a ``node`` label on each, and every sum over a stream's bytes
  would count each replica. When node 1 is down they are absent (not another node's figures
  under the same name), and ``citybus_cluster_node_up`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bus.cluster_view import ClusterView, NodeRead, cluster_view, node_name
from bus.errors import ConfigError
from bus.health import Verdict
from bus.monitor import monitoring_document

__all__ = ["WATCH_INTERVAL", "ClusterMonitor", "monitor_urls", "watch_cluster"]

_TIMEOUT: Final = 1.0
_LOG_EVERY: Final = 60.0
"""Seconds between two log lines about unreadable endpoints."""
WATCH_INTERVAL: Final = 5.0
"""Seconds between two reads of the cluster for the health check (when no scrape read it since)."""
_PATHS: Final = ("/varz", "/routez", "/jsz?accounts=true&streams=true")


def monitor_urls(value: str) -> list[str]:
    """The monitoring endpoints in ``nats.monitor_url`` (one, or several separated by commas)."""
    urls = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"nats.monitor_url: {url!r} is not an HTTP URL; give each node's monitoring endpoint "
                "as http://host:8222, separated by commas for a cluster"
            )
    return urls


class ClusterMonitor(Collector):
    """Reads every node of a NATS cluster on every collection (and, once started, every few seconds).

    ``urls`` are the nodes' monitoring endpoints; ``names`` their server names in the same order,
    where known up front (the local cluster's), else learned from their ``/varz``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        timeout: float = _TIMEOUT,
        interval: float = WATCH_INTERVAL,
        logger: Any = None,
    ) -> None:
        self.urls = [url.rstrip("/") for url in urls]
        self._names = dict(zip(self.urls, names or (), strict=False))
        self._timeout = timeout
        self._interval = interval
        self._log = (logger if logger is not None else structlog.get_logger()).bind(
            component="cluster monitor"
        )
        self._errors = dict.fromkeys(self.urls, 0)
        self._logged = -_LOG_EVERY
        self._lock = threading.Lock()  # a scrape and the watch may read at once
        self._read_at = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self.view: ClusterView | None = None
        """The last view read, or ``None`` before the first read."""

    @property
    def errors(self) -> dict[str, int]:
        """Failed reads per endpoint, since this monitor was made."""
        return dict(self._errors)

    def _get(self, url: str) -> dict[str, Any]:
        return monitoring_document(url, self._timeout)

    def _read_node(self, url: str) -> NodeRead:
        documents: list[dict[str, Any]] = []
        try:
            for path in _PATHS:
                documents.append(self._get(f"{url}{path}"))
        except (OSError, ValueError, urllib.error.URLError) as exc:  # refused, timed out, not JSON
            with self._lock:
                self._errors[url] += 1
                now = time.monotonic()
                if now - self._logged >= _LOG_EVERY:
                    self._logged = now
                    self._log.warning("nats cluster node monitoring unreadable", url=url, error=str(exc))
            return NodeRead(url=url)
        return NodeRead(url=url, varz=documents[0], routez=documents[1], jsz=documents[2])

    def read(self) -> ClusterView:
        """Read every node now (in parallel), and keep the view as :attr:`view`."""
        with ThreadPoolExecutor(max_workers=len(self.urls), thread_name_prefix="cluster-monitor") as pool:
            reads = list(pool.map(self._read_node, self.urls))
        with self._lock:
            for read in reads:
                if read.answered and read.varz is not None and read.varz.get("server_name"):
                    self._names[read.url] = str(read.varz["server_name"])
            before = self.view
            view = cluster_view(reads, self._names, before.remembered if before is not None else ())
            self.view, self._read_at = view, time.monotonic()
        self._log_changes(before, view)
        return view

    def _log_changes(self, before: ClusterView | None, now: ClusterView) -> None:
        was = {n.name: n.up for n in before.nodes} if before is not None else {}
        for node in now.nodes:
            if node.up and was.get(node.name) is False:
                self._log.info("nats cluster node is back", node=node.name)
            elif not node.up and was.get(node.name, True):
                self._log.warning("nats cluster node is down", node=node.name, url=node.url)

    # -- the watch and the health check ------------------------------------------------------------

    def start(self) -> None:
        """Keep :attr:`view` fresh in the background (for :meth:`verdict`) until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="nats cluster watch")

    async def stop(self) -> None:
        """Stop the background reads. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        while True:
            wait = self._interval - (time.monotonic() - self._read_at)  # a scrape may have just read
            if wait <= 0:
                try:
                    await asyncio.to_thread(self.read)
                except Exception as exc:  # a document nats-server never sent: logged, and read again
                    self._log.error("nats cluster view failed", error=repr(exc))
                wait = self._interval
            await asyncio.sleep(wait)

    def verdict(self, streams: Iterable[str] | None = None) -> Verdict:
        """The health of the cluster from the last view: failing while one of ``streams`` (names in
        any account; ``None``: every stream) has no quorum, degraded while a node is down or
        replicas are behind. Never reads: it runs on the event loop."""
        view = self.view
        if view is None:
            return Verdict(ok=True, reasons=("the NATS cluster has not been read yet",))
        failing, degraded = view.problems(streams)
        age = time.monotonic() - self._read_at
        if self._task is not None and age > 3 * self._interval:
            degraded.append(f"the NATS cluster was last read {age:.0f}s ago")
        return Verdict(ok=not failing, reasons=tuple(failing + degraded))

    # -- the metrics --------------------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the families depend on what the nodes answer (see the module doc)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """The cluster's figures now."""
        view = self.read()
        errors = CounterMetricFamily(
            "citybus_cluster_monitor_errors",
            "Reads of a NATS cluster node's monitoring endpoint that failed (refused, timed out, not JSON).",
            labels=["node"],
        )
        for url, count in self.errors.items():
            errors.add_metric([node_name(self._names, url)], float(count))
        yield errors
        up = _family(
            "cluster_node_up",
            "1 while the NATS cluster node answers (or, without an endpoint here, "
            "while a node that answers has a route to it); 0 while it does not.",
            ["node"],
        )
        for node in view.nodes:
            up.add_metric([node.name], 1.0 if node.up else 0.0)
        yield up
        if not view.answered:
            return
        connections = _family(
            "cluster_node_connections", "Client connections a cluster node has open.", ["node"]
        )
        routes = _family("cluster_node_routes", "Peers a cluster node has routes to.", ["node"])
        meta = _family(
            "cluster_meta_leader", "1 on the JetStream meta leader of the cluster, else 0.", ["node"]
        )
        for node in view.nodes:
            if node.connections is not None and node.routes is not None:
                connections.add_metric([node.name], float(node.connections))
                routes.add_metric([node.name], float(node.routes))
            meta.add_metric([node.name], 1.0 if node.meta_leader else 0.0)
        yield from (connections, routes, meta)
        stream = ["account", "stream"]
        leader = _family("stream_leader", "1 on the node that leads a JetStream stream.", [*stream, "node"])
        replica = _family(
            "stream_replica",
            "1 per replica of a stream, as its leader sees it: state current, lagging (alive but behind) "
            "or offline.",
            [*stream, "node", "state"],
        )
        lag = _family(
            "stream_replica_lag", "Entries a stream's replica is behind its leader.", [*stream, "node"]
        )
        quorum = _family(
            "stream_quorum", "1 while a stream has a leader and a majority of current replicas.", stream
        )
        for s in view.streams:
            if s.leader is not None:
                leader.add_metric([s.account, s.name, s.leader], 1.0)
            for r in s.replicas:
                replica.add_metric([s.account, s.name, r.node, r.state], 1.0)
                lag.add_metric([s.account, s.name, r.node], float(r.lag))
            quorum.add_metric([s.account, s.name], 1.0 if s.quorum else 0.0)
        yield from (leader, replica, lag, quorum)


def _family(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"citybus_{name}", documentation, labels=labels)


def watch_cluster(
    registry: CollectorRegistry,
    urls: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    logger: Any = None,
) -> ClusterMonitor:
    """Register a :class:`ClusterMonitor` of ``urls`` in ``registry`` and start its watch (call
    :meth:`~ClusterMonitor.stop` and unregister it when done). Runs on the event loop."""
    monitor = ClusterMonitor(urls, names=names, logger=logger)
    registry.register(monitor)
    monitor.start()
    return monitor
