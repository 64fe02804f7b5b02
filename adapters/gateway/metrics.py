"""The gateway's Prometheus metrics, registered once per registry (an adapter restarts as a new object)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bus.metrics import per_registry

__all__ = ["GatewayMetrics", "gateway_metrics"]


class GatewayMetrics:
    """The metric families of the HTTP gateway."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "citybus_gateway_requests",
            "HTTP requests the gateway answered, by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "citybus_gateway_request_seconds",
            "Time to answer an HTTP request (not SSE streams, which last as long as their clients)",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.invalid = Counter(
            "citybus_gateway_invalid",
            "Stored messages not served because they do not fit their contract, by stream",
            ["stream"],
            registry=registry,
        )
        self.feed_errors = Counter(
            "citybus_gateway_feed_errors",
            "Failed reads of a stream by a feed (a user the broker refuses, a lost connection)",
            ["user", "stream"],
            registry=registry,
        )
        self.sse_clients = Gauge(
            "citybus_gateway_sse_clients", "SSE clients connected now", registry=registry
        )
        self.sse_dropped = Counter(
            "citybus_gateway_sse_dropped",
            "SSE clients the gateway dropped, by reason (slow consumer, revoked token)",
            ["reason"],
            registry=registry,
        )


gateway_metrics = per_registry(GatewayMetrics)
"""The gateway's metric families of ``registry``, registered on first use."""
