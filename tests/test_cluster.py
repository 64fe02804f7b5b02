"""The local cluster (bus/cluster.py) and ``citybus up --cluster``: three real nats-servers with routes.

What a user would notice: the bus connects to all nodes by one comma-separated URL, streams get the
configured replicas, a node killed mid-way leaves publishing and subscribing working once the
cluster has moved on, and the node comes back with its store and catches up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog
from nats.aio.msg import Msg

from bus import Bus, Metrics
from bus.cli import main
from bus.cluster import LocalCluster, config_dir, embedded_broker
from bus.config import ServerConfig, load_config
from bus.errors import ConfigError, EmbeddedServerError
from bus.server import EmbeddedServer
from bus.server_config import free_port
from bus.streams_config import StreamsConfig
from contracts import Classification, Contract, default_registry
from contracts.environment import BeachObservation
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


async def _bus(url: str) -> Bus:
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests/cluster")
    await bus.connect(url, reconnect_wait=0.1)
    return bus


async def test_a_bus_fails_over_to_another_node_and_the_node_catches_up(cluster: LocalCluster) -> None:
    assert len(cluster.urls) == 3 and cluster.url.count(",") == 2
    bus = await _bus(cluster.url)
    try:
        await bus.provision_streams(StreamsConfig(replicas=3))
        stream = "CITY_PUBLIC_ENVIRONMENT"
        info = await bus.js.stream_info(stream)
        assert info.config.num_replicas == 3
        assert info.cluster is not None and info.cluster.leader in cluster.names
        assert {p.name for p in info.cluster.replicas or []} | {info.cluster.leader} == set(cluster.names)
        example = BeachObservation.example()
        await bus.publish_durable(example)

        # The node this bus is connected to dies: the bus moves to another and goes on.
        connected = bus.nc.connected_url
        assert connected is not None
        victim = next(i for i, u in enumerate(cluster.urls) if u.endswith(f":{connected.port}"))
        await cluster.kill(victim)
        for _ in range(5):
            await _publish_when_possible(bus, example)
        assert bus.nc.connected_url is not None and bus.nc.connected_url.port != connected.port
        info = await bus.js.stream_info(stream)
        assert info.state.messages == 6

        # It comes back with its store and catches up with what it missed.
        await cluster.start_node(victim)

        async with asyncio.timeout(60):
            while not await _caught_up(bus, stream):  # noqa: ASYNC110 - polling the stream's state
                await asyncio.sleep(0.2)
    finally:
        await bus.close()


async def _caught_up(bus: Bus, stream: str) -> bool:
    """Whether both followers of ``stream`` are current (none offline, none behind)."""
    peers = (await bus.js.stream_info(stream)).cluster
    replicas = (peers.replicas or []) if peers is not None else []
    return len(replicas) == 2 and all(p.current and not p.offline for p in replicas)


async def _publish_when_possible(bus: Bus, message: Contract) -> None:
    """Publish durably, retrying while the cluster elects a new stream leader (seconds at most)."""
    async with asyncio.timeout(30):
        while True:
            try:
                await bus.publish_durable(message, timeout=1.0)
                return
            except Exception:  # noqa: BLE001 - any failure here means "not yet"; the timeout bounds it
                await asyncio.sleep(0.1)


async def test_core_pub_sub_crosses_the_routes(cluster: LocalCluster) -> None:
    first, third = await _bus(cluster.urls[0]), await _bus(cluster.urls[2])
    try:
        got: list[str] = []

        async def heard(msg: Msg) -> None:
            got.append(msg.subject)

        await third.nc.subscribe("city.public.test.>", cb=heard)
        await third.flush()
        # Interest travels over the routes asynchronously: publish until the first message arrives.
        async with asyncio.timeout(10):
            while not got:
                await first.nc.publish("city.public.test.ping", b"x")
                await first.flush()
                await asyncio.sleep(0.05)
        assert got[0] == "city.public.test.ping"
    finally:
        await first.close()
        await third.close()


async def test_a_node_restarts_on_the_same_ports_and_store(cluster: LocalCluster) -> None:
    urls = cluster.urls
    await cluster.stop_node(1)
    assert not cluster.nodes[1].running
    await cluster.start_node(1)
    assert cluster.urls == urls
    await cluster.wait_jetstream(30)
    assert cluster.meta_leader() in cluster.names
    assert cluster.index_of(cluster.names[2]) == 2
    with pytest.raises(LookupError):
        cluster.index_of("nobody")


def test_replicas_per_classification_resolve_automatically() -> None:
    plain = StreamsConfig()
    assert plain.resolved(1).replicas_for("public") == 1
    assert plain.resolved(3).replicas_for("personal") == 3
    assert plain.resolved(5).replicas_for("internal") == 3  # automatic stops at three copies
    mixed = StreamsConfig(replicas={"personal": 5, "public": 1}, placement_tags={"personal": ["site:hall"]})
    resolved = mixed.resolved(3)
    assert [resolved.replicas_for(c.value) for c in Classification] == [1, 3, 5]
    assert resolved.most_replicas == 5
    assert mixed.tags_for("personal") == ["site:hall"] and mixed.tags_for("public") == []
    assert StreamsConfig(replicas=1, placement_tags=["ssd"]).tags_for("internal") == ["ssd"]


def test_streams_and_cluster_settings_from_toml_and_environment(tmp_path: Path) -> None:
    file = tmp_path / "citybus.toml"
    file.write_text('[streams]\nreplicas = { personal = 3 }\nplacement_tags = { personal = ["site:hall"] }\n')
    config = load_config(file, {"CITYBUS_SERVER_CLUSTER_SIZE": "3"})
    assert config.server.cluster_size == 3
    assert config.streams.resolved(3).replicas_for("public") == 3
    file.write_text("[streams]\nreplicas = { persona = 3 }\n")
    with pytest.raises(ConfigError, match=r"streams.replicas .* a table whose keys are one of 'internal'"):
        load_config(file, {})
    with pytest.raises(ConfigError, match="server.cluster_size"):
        load_config(None, {"CITYBUS_SERVER_CLUSTER_SIZE": "9"})
    with pytest.raises(ConfigError, match="local cluster runs no MQTT"):
        load_config(None, {"CITYBUS_SERVER_CLUSTER_SIZE": "3", "CITYBUS_SERVER_MQTT": "true"})


def test_the_embedded_broker_follows_the_server_section(tmp_path: Path) -> None:
    single = embedded_broker(ServerConfig(), tmp_path, "", structlog.get_logger())
    assert isinstance(single, EmbeddedServer) and config_dir(ServerConfig(), tmp_path) == tmp_path
    three = ServerConfig(cluster_size=3)
    broker = embedded_broker(three, tmp_path, "", structlog.get_logger())
    assert isinstance(broker, LocalCluster) and broker.size == 3
    assert [n.data_dir for n in broker.nodes] == [tmp_path / "cluster" / f"node-{i}" for i in (1, 2, 3)]
    assert all(n.data_dir.parent == config_dir(three, tmp_path).parent for n in broker.nodes)


async def test_a_node_that_cannot_start_stops_the_others(tmp_path: Path) -> None:
    busy = free_port("127.0.0.1")
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", busy)
    try:
        broken = LocalCluster(data_dir=tmp_path / "c", size=3, port=busy, start_timeout=15)
        with pytest.raises(EmbeddedServerError, match=f"port {busy}"):
            await broken.start()
        await wait_for(lambda: not any(node.running for node in broken.nodes), timeout=15)
    finally:
        blocker.close()


def test_a_cluster_needs_nodes(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServerError, match="3 or 5"):
        LocalCluster(data_dir=tmp_path, size=0)
    with pytest.raises(EmbeddedServerError, match="placement tags for 2 nodes"):
        LocalCluster(data_dir=tmp_path, size=3, tags=[["a"], ["b"]])


def test_the_registry_has_a_stream_per_class_and_domain() -> None:
    classes = {c for c, _ in default_registry().domains()}
    assert Classification.PERSONAL in classes and Classification.PUBLIC in classes


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["up", "--cluster", "3", "--nats", "nats://127.0.0.1:4222"],
            "with --nats, citybus uses yours",
        ),
        (["up", "--cluster", "9"], "--cluster 9: give 3 or 5 nodes"),
    ],
)
def test_wrong_cluster_options_say_what_to_do(
    argv: list[str],
    says: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no citybus.toml of the developer's
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and says in err and "Traceback" not in err


async def test_a_route_port_taken_before_the_start_is_chosen_again(tmp_path: Path) -> None:
    nodes = LocalCluster(data_dir=tmp_path / "c", size=3)
    taken = nodes.nodes[1].cluster
    assert taken is not None
    squatter = await asyncio.start_server(lambda r, w: None, "127.0.0.1", taken.port)
    try:
        await nodes.start()
        now = [n.cluster.port for n in nodes.nodes if n.cluster is not None]
        assert taken.port not in now and len(set(now)) == 3
        assert nodes.meta_leader() in nodes.names
    finally:
        squatter.close()
        await nodes.stop()
