"""The NATS server's own health as citybus metrics: its memory, JetStream use and slow consumers.

citybus's metrics say what citybus does; a broker that grows to gigabytes, fills its store or drops
messages for a slow consumer shows only in the server. nats-server reports those on its HTTP
monitoring endpoint (``/varz``, ``/jsz``), which the embedded server serves on loopback
(``server.monitor``) and an external server where ``nats.monitor_url`` points. A
:class:`ServerMonitor` in the metrics registry reads both on every scrape of ``/metrics``, so the
figures are as fresh as the scrape, and exports:

=================================================== =============================================
``citybus_nats_server_memory_bytes``                 the server's resident memory (``/varz`` mem)
``citybus_nats_server_memory_limit_bytes``           its soft limit (``GOMEMLIMIT``), when citybus set one
``citybus_nats_server_connections``                  client connections open now
``citybus_nats_server_slow_consumers_total``         clients the server cut off or dropped messages for
``citybus_nats_server_jetstream_memory_bytes``       JetStream data held in memory (memory streams)
``citybus_nats_server_jetstream_store_bytes``        JetStream data on disk (file streams)
``citybus_nats_server_stream_bytes{account,stream}`` one stream's size, as it counts against ``max_bytes``
``citybus_nats_server_stream_messages{account,stream}`` one stream's messages
=================================================== =============================================

Decisions, and why:

* **Absent, not zero.** Without a monitoring URL, or when the server does not answer within
  ``timeout``, the collector exports nothing: a 0 would read as "no memory, no slow consumers",
  and Prometheus's ``absent()`` is how an operator asks "is this measured at all". A failed read is
  logged (at most once a minute) and counted in ``citybus_nats_server_monitor_errors_total``, the
  one family exported whatever the answer.
* **Read at scrape time, briefly.** One ``/varz`` and one ``/jsz`` request per scrape, with a short
  timeout (1 s): a scrape every 15 s costs the server two small JSON documents. The ops server
  renders ``/metrics`` in a worker thread, so a server that hangs never stalls the event loop.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Final

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ServerMonitor", "monitor_server", "monitoring_document"]

_TIMEOUT: Final = 1.0
_LOG_EVERY: Final = 60.0
"""Seconds between two log lines about an unreadable monitoring endpoint."""


class ServerMonitor(Collector):
    """Reads a nats-server's monitoring endpoint (``http://host:port``) on every collection."""

    def __init__(
        self,
        url: str,
        *,
        memory_limit: int | None = None,
        timeout: float = _TIMEOUT,
        logger: Any = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.errors = 0
        """Reads that failed, since this monitor was made."""
        self._memory_limit = memory_limit
        self._timeout = timeout
        self._log = (logger if logger is not None else structlog.get_logger()).bind(component="monitor")
        self._logged = -_LOG_EVERY
        self._lock = threading.Lock()  # scrapes may overlap; the log throttle is shared

    def _get(self, path: str) -> dict[str, Any]:
        return monitoring_document(f"{self.url}{path}", self._timeout)

    def read(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``/varz`` and ``/jsz`` (accounts and streams), or ``None`` when the server does not answer."""
        try:
            return self._get("/varz"), self._get("/jsz?accounts=true&streams=true")
        except (OSError, ValueError, urllib.error.URLError) as exc:  # refused, timed out, not JSON
            with self._lock:
                self.errors += 1
                now = time.monotonic()
                if now - self._logged >= _LOG_EVERY:
                    self._logged = now
                    self._log.warning("nats-server monitoring unreadable", url=self.url, error=str(exc))
            return None

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the families exist only while the server answers (see the module doc)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """The server's figures now, or nothing when it does not answer."""
        found = self.read()
        errors = CounterMetricFamily(
            "citybus_nats_server_monitor_errors",
            "Reads of the NATS server's monitoring endpoint that failed (refused, timed out, not JSON).",
        )
        errors.add_metric([], float(self.errors))
        yield errors
        if found is None:
            return
        varz, jsz = found
        yield _gauge("memory_bytes", "The NATS server's resident memory (its /varz mem).", varz.get("mem"))
        if self._memory_limit is not None:
            yield _gauge(
                "memory_limit_bytes",
                "The NATS server's soft memory limit (GOMEMLIMIT) that citybus set (server.memory_limit).",
                self._memory_limit,
            )
        yield _gauge("connections", "Client connections the NATS server has open.", varz.get("connections"))
        slow = CounterMetricFamily(
            "citybus_nats_server_slow_consumers",
            "Times the NATS server found a client too slow to take its messages (and dropped them or "
            "the client), since the server started.",
        )
        slow.add_metric([], float(varz.get("slow_consumers") or 0))
        yield slow
        stats = (varz.get("jetstream") or {}).get("stats")
        if stats is not None:  # a server without JetStream has no "stats"
            yield _gauge(
                "jetstream_memory_bytes",
                "JetStream data the NATS server holds in memory (streams with memory storage).",
                stats.get("memory"),
            )
            yield _gauge(
                "jetstream_store_bytes",
                "JetStream data the NATS server holds on disk (streams with file storage).",
                stats.get("storage"),
            )
        size = GaugeMetricFamily(
            "citybus_nats_server_stream_bytes",
            "Bytes a JetStream stream holds (what counts against its max_bytes).",
            labels=["account", "stream"],
        )
        count = GaugeMetricFamily(
            "citybus_nats_server_stream_messages",
            "Messages a JetStream stream holds.",
            labels=["account", "stream"],
        )
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                state = stream.get("state") or {}
                labels = [str(account.get("name", "")), str(stream.get("name", ""))]
                size.add_metric(labels, float(state.get("bytes") or 0))
                count.add_metric(labels, float(state.get("messages") or 0))
        yield size
        yield count


def monitoring_document(url: str, timeout: float) -> dict[str, Any]:
    """The JSON document a nats-server monitoring endpoint serves at ``url`` (``/varz``, ``/jsz``, …).

    Raises :class:`OSError` (refused, timed out) or :class:`ValueError` (not JSON)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) monitoring URLs
        document: dict[str, Any] = json.loads(response.read())
    return document


def _gauge(name: str, documentation: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"citybus_nats_server_{name}", documentation, value=float(value or 0))


def monitor_server(
    registry: CollectorRegistry, url: str, *, memory_limit: int | None = None, logger: Any = None
) -> ServerMonitor:
    """Register a :class:`ServerMonitor` of ``url`` in ``registry`` (unregister it when done)."""
    monitor = ServerMonitor(url, memory_limit=memory_limit, logger=logger)
    registry.register(monitor)
    return monitor
