"""The NATS cluster as operators see it (bus/cluster_monitor.py): metrics and health from every node.

Against a real three-node cluster (the ``cluster`` fixture): after provisioning R3 streams every
node is up and routed, each stream's leader is the one JetStream names and its replicas are
current; a killed follower is offline at once (nats-server itself would call it current for 10 s
more); two killed nodes leave the streams without quorum; restarted, they are current again. And
``citybus up`` on a cluster says so on ``/healthz`` and ``/readyz`` without being restarted.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bus import Bus, Metrics
from bus.cluster import LocalCluster
from bus.cluster_monitor import ClusterMonitor, monitor_urls, watch_cluster
from bus.config import load_config
from bus.errors import ConfigError
from bus.runtime import Runtime
from bus.streams_config import StreamsConfig

pytestmark = pytest.mark.timeout(180)

STREAM = "CITY_PUBLIC_ENVIRONMENT"
Found = dict[str, list[tuple[dict[str, str], float]]]


def _samples(registry: CollectorRegistry) -> Found:
    found: Found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def _by(found: Found, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(labels[k] for k in keys): value for labels, value in found.get(name, [])}


def _states(found: Found, stream: str) -> dict[str, str]:
    """Node → state of each replica of ``stream``."""
    return {
        labels["node"]: labels["state"]
        for labels, value in found.get("citybus_stream_replica", [])
        if labels["stream"] == stream and value == 1
    }


async def _until(registry: CollectorRegistry, holds: Callable[[Found], bool], timeout: float = 60) -> Found:
    """Scrape (in a thread: the collector reads over HTTP) until ``holds``; fail if it never does."""
    async with asyncio.timeout(timeout):
        while True:
            found = await asyncio.to_thread(_samples, registry)
            if holds(found):
                return found
            await asyncio.sleep(0.2)


async def _provisioned(cluster: LocalCluster) -> tuple[Bus, list[str]]:
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests/cluster-monitor")
    await bus.connect(cluster.url, reconnect_wait=0.1)
    return bus, await bus.provision_streams(StreamsConfig(replicas=3))


def _monitored(cluster: LocalCluster) -> tuple[CollectorRegistry, ClusterMonitor]:
    registry = CollectorRegistry()
    monitor = ClusterMonitor(cluster.monitor_urls)  # names learned from /varz, as for an external cluster
    registry.register(monitor)
    return registry, monitor


async def test_every_node_stream_leader_and_current_replica_is_exported(cluster: LocalCluster) -> None:
    bus, streams = await _provisioned(cluster)
    try:
        registry, _ = _monitored(cluster)
        # Followers of a stream just created are current once they have caught up with its leader.
        found = await _until(
            registry, lambda f: all(set(_states(f, s).values()) == {"current"} for s in streams)
        )
        leaders = {s: (await bus.js.stream_info(s)).cluster for s in streams}
    finally:
        await bus.drain()
    names = set(cluster.names)
    assert _by(found, "citybus_cluster_node_up", "node") == {(n,): 1.0 for n in names}
    assert _by(found, "citybus_cluster_node_routes", "node") == {(n,): 2.0 for n in names}
    assert sum(_by(found, "citybus_cluster_node_connections", "node").values()) >= 1  # the bus's
    assert _by(found, "citybus_cluster_monitor_errors_total", "node") == {(n,): 0.0 for n in names}
    meta = _by(found, "citybus_cluster_meta_leader", "node")
    assert sorted(meta.values()) == [0.0, 0.0, 1.0]
    assert meta[(cluster.meta_leader() or "",)] == 1.0
    leader_of = {
        stream: node for (stream, node), _ in _by(found, "citybus_stream_leader", "stream", "node").items()
    }
    for stream, info in leaders.items():
        assert info is not None and leader_of[stream] == info.leader  # the leader JetStream names
        assert _states(found, stream) == dict.fromkeys(names, "current")
    assert set(_by(found, "citybus_stream_quorum", "stream").items()) >= {((s,), 1.0) for s in streams}
    lags = _by(found, "citybus_stream_replica_lag", "stream", "node")
    assert {lags[(STREAM, n)] for n in names} == {0.0}


async def test_replicas_go_offline_quorum_is_lost_and_both_come_back(cluster: LocalCluster) -> None:
    bus, streams = await _provisioned(cluster)
    try:
        leader = (await bus.js.stream_info(STREAM)).cluster
        assert leader is not None and leader.leader is not None
    finally:
        await bus.drain()
    registry, monitor = _monitored(cluster)
    await _until(registry, lambda f: set(_states(f, STREAM).values()) == {"current"})
    follower, other = [cluster.index_of(n) for n in cluster.names if n != leader.leader]
    victim = cluster.names[follower]

    # A follower dies: its replica is offline, the stream keeps its quorum (2 of 3).
    await cluster.kill(follower)
    found = await _until(registry, lambda f: _states(f, STREAM).get(victim) == "offline")
    assert _by(found, "citybus_cluster_node_up", "node")[(victim,)] == 0.0
    assert _by(found, "citybus_stream_quorum", "stream")[(STREAM,)] == 1.0
    assert _by(found, "citybus_stream_leader", "stream", "node").get((STREAM, leader.leader)) == 1.0
    assert _by(found, "citybus_cluster_monitor_errors_total", "node")[(victim,)] >= 1
    verdict = monitor.verdict(streams)
    assert any(victim in reason for reason in verdict.reasons)

    # A second dies: no stream has a majority any more.
    await cluster.kill(other)
    found = await _until(registry, lambda f: set(_by(f, "citybus_stream_quorum", "stream").values()) == {0.0})
    up = _by(found, "citybus_cluster_node_up", "node")
    assert up[(victim,)] == up[(cluster.names[other],)] == 0.0 and up[(leader.leader,)] == 1.0
    assert set(_by(found, "citybus_stream_quorum", "stream")) >= {(s,) for s in streams}
    assert not monitor.verdict(streams).ok
    assert any(f"{STREAM} has no quorum" in r for r in monitor.verdict(streams).reasons)

    # Both come back (same ports, same stores): they rejoin, catch up and every replica is current.
    await cluster.start_node(follower)
    await cluster.start_node(other)
    found = await _until(
        registry,
        lambda f: (
            set(_by(f, "citybus_stream_quorum", "stream").values()) == {1.0}
            and all(set(_states(f, s).values()) == {"current"} and len(_states(f, s)) == 3 for s in streams)
        ),
    )
    assert set(_by(found, "citybus_cluster_node_up", "node").values()) == {1.0}
    assert monitor.verdict(streams).ok and not monitor.verdict(streams).reasons


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_nodes_that_do_not_answer_are_down_and_nothing_else_is_claimed() -> None:
    urls = [f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"]
    registry = CollectorRegistry()
    monitor = ClusterMonitor(urls, names=["node-a", "node-b"])
    registry.register(monitor)
    found = await asyncio.to_thread(_samples, registry)
    assert _by(found, "citybus_cluster_node_up", "node") == {("node-a",): 0.0, ("node-b",): 0.0}
    assert _by(found, "citybus_cluster_monitor_errors_total", "node") == {("node-a",): 1.0, ("node-b",): 1.0}
    # Absent, not zero: nothing is known of leaders, replicas or quorum.
    assert set(found) == {"citybus_cluster_node_up", "citybus_cluster_monitor_errors_total"}
    verdict = monitor.verdict()
    assert verdict.ok and verdict.reasons == (
        "no node of the NATS cluster answers on its monitoring endpoint",
    )


def test_monitor_url_takes_a_comma_separated_list_and_refuses_what_is_not_http() -> None:
    assert monitor_urls(" http://a:8222/, http://b:8222 ,,") == ["http://a:8222", "http://b:8222"]
    assert monitor_urls("") == []
    with pytest.raises(ConfigError, match=r"nats.monitor_url: 'b:8222' is not an HTTP URL"):
        monitor_urls("http://a:8222,b:8222")


# -- citybus up on a cluster: health tells the truth ------------------------------------------------


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def _poll(
    session: aiohttp.ClientSession, url: str, holds: Callable[[int, Any], bool], timeout: float = 60
) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            status, body = await _get(session, url)
            if holds(status, body):
                return body
            await asyncio.sleep(0.2)


def _reasons(body: Any) -> list[str]:
    return [reason for reasons in body.get("reasons", {}).values() for reason in reasons]


@asynccontextmanager
async def _up(tmp_path: Path, **environ: str) -> AsyncIterator[Runtime]:
    """``citybus up`` in-process (no adapters, no access control), ready until the block ends."""
    environ |= {"CITYBUS_AUTH_MODE": "off", "CITYBUS_SERVER_DATA_DIR": str(tmp_path / "data")}
    runtime = Runtime(load_config(environ=environ), logger=structlog.get_logger(), components=[])
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        try:
            async with asyncio.timeout(60):
                await runtime.ready.wait()
            yield runtime
        finally:
            stop.set()


async def test_citybus_up_on_a_cluster_says_degraded_then_unhealthy_then_ok_without_a_restart(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    async with (
        _up(
            tmp_path,
            CITYBUS_NATS_URL=cluster.url,
            CITYBUS_NATS_MONITOR_URL=",".join(cluster.monitor_urls),
            CITYBUS_NATS_RECONNECT_WAIT="0.1",
            CITYBUS_STREAMS_REPLICAS="3",
            CITYBUS_OPS_PORT="0",
        ) as runtime,
        aiohttp.ClientSession() as session,
    ):
        assert runtime.ops is not None
        ops = runtime.ops.url
        healthy = await _poll(session, f"{ops}/healthz", lambda _s, b: b == {"status": "ok"})
        assert healthy == {"status": "ok"}
        status, body = await _get(session, f"{ops}/readyz")
        assert status == 200 and body["checks"]["nats cluster"] is True
        text = await (await session.get(f"{ops}/metrics")).text()
        families = {f.name for f in text_string_to_metric_families(text)}
        assert families >= CLUSTER_FAMILIES  # what the dashboard and the alerts query

        # One node dies: still serving (ready, once its streams have new leaders), but degraded.
        victim = cluster.names[2]
        await cluster.kill(2)
        body = await _poll(
            session,
            f"{ops}/readyz",
            lambda s, b: s == 200 and any(f"node {victim} is down" in r for r in _reasons(b)),
        )
        status, health = await _get(session, f"{ops}/healthz")
        assert status == 200 and health["status"] == "degraded"
        assert any(victim in r for r in health["reasons"]["nats cluster"])

        # A second dies: no quorum, so not ready for durable work, and unhealthy (still 200: a
        # restart would heal nothing).
        await cluster.kill(1)
        # (The bus's own node may die too: "nats connected" can fail first, until it reconnects.)
        body = await _poll(
            session, f"{ops}/readyz", lambda s, b: s == 503 and not b["checks"]["nats cluster"]
        )
        assert any(f"{STREAM} has no quorum" in r for r in body["reasons"]["nats cluster"])
        health = await _poll(session, f"{ops}/healthz", lambda _s, b: b["status"] == "unhealthy")
        assert "nats cluster" in health["failing"]

        # They come back: healthy again, with nothing restarted on citybus's side.
        await cluster.start_node(1)
        await cluster.start_node(2)
        await _poll(session, f"{ops}/healthz", lambda s, b: s == 200 and b == {"status": "ok"}, 90)
        status, body = await _get(session, f"{ops}/readyz")
        assert status == 200 and "reasons" not in body


CLUSTER_FAMILIES = {
    "citybus_cluster_node_up",
    "citybus_cluster_node_connections",
    "citybus_cluster_node_routes",
    "citybus_cluster_meta_leader",
    "citybus_cluster_monitor_errors",
    "citybus_stream_leader",
    "citybus_stream_replica",
    "citybus_stream_replica_lag",
    "citybus_stream_quorum",
}
"""Every family the cluster monitor exports (tests/test_observability.py charts each)."""


async def test_citybus_up_with_a_local_cluster_watches_each_node_and_node_1s_server(tmp_path: Path) -> None:
    async with _up(tmp_path, CITYBUS_SERVER_CLUSTER_SIZE="3", CITYBUS_OPS_ENABLED="false") as runtime:
        assert runtime.cluster is not None
        found = await _until(
            runtime.metrics.registry,
            lambda f: set(_by(f, "citybus_stream_quorum", "stream").values()) == {1.0},
        )
        assert set(_by(found, "citybus_cluster_node_up", "node")) == {(n,) for n in runtime.cluster.names}
        assert len(found["citybus_nats_server_memory_bytes"]) == 1  # node 1's, unlabelled
        async with asyncio.timeout(30):  # the runtime's health check reads the same view
            while not runtime.health.status().get("nats cluster"):  # noqa: ASYNC110
                await asyncio.sleep(0.1)


async def test_the_watch_keeps_the_view_fresh_without_scrapes(cluster: LocalCluster) -> None:
    registry = CollectorRegistry()
    monitor = watch_cluster(registry, cluster.monitor_urls)
    try:
        async with asyncio.timeout(30):
            while monitor.view is None or not monitor.view.answered:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await cluster.kill(0)
        async with asyncio.timeout(30):  # the next read of the watch (every 5 s) sees it
            while (node := monitor.view.node(cluster.names[0])) is None or node.up:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        await monitor.stop()
