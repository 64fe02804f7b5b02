"""Replicated streams (bus/provision.py): ``[streams] replicas`` and placement, on real servers.

What an operator would notice: each classification's streams get their replicas and live on the
nodes their tags name; raising replicas on a stream with messages keeps them; lowering replicas or
a limit is refused with a warning (and a metric) until they ask for it; a setting the servers cannot
honour (three copies on one server, more copies than nodes, tags no node carries, another storage)
is an error that says what to fix; key-value buckets are replicated like the data they serve.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from nats.js import api

from adapters.context import Context
from adapters.supervisor import adapter_metrics
from bus import Bus, Metrics
from bus.cluster import LocalCluster
from bus.config import Config
from bus.errors import ConfigError
from bus.personal.vault import VAULT_STREAM
from bus.provision import client_streams, reconcile
from bus.server import EmbeddedServer
from bus.store import open_store
from bus.streams_config import StreamsConfig
from contracts import BeachObservation
from tests.test_cli import assert_one_line_error, citybus_env, run_citybus

pytestmark = pytest.mark.timeout(120)

PUBLIC = "CITY_PUBLIC_ENVIRONMENT"
PERSONAL = "CITY_PERSONAL_COMMUNITY"


async def _bus(url: str) -> Bus:
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests/replicas")
    await bus.connect(url, reconnect_wait=0.1)
    return bus


async def _config(bus: Bus, stream: str) -> api.StreamConfig:
    config: api.StreamConfig = (await bus.js.stream_info(stream)).config
    return config


async def _all_current(bus: Bus, stream: str, replicas: int, timeout: float = 30.0) -> api.StreamInfo:
    """The stream's info once its leader and ``replicas - 1`` followers are current (deadline loop)."""
    async with asyncio.timeout(timeout):
        while True:
            info = await bus.js.stream_info(stream)
            peers = (info.cluster.replicas or []) if info.cluster is not None else []
            leader = info.cluster.leader if info.cluster is not None else None
            if leader and len(peers) == replicas - 1 and all(p.current and not p.offline for p in peers):
                return info
            await asyncio.sleep(0.1)


def _kept(bus: Bus, stream: str, setting: str) -> float | None:
    return bus.metrics.registry.get_sample_value(
        "citybus_stream_setting_kept", {"stream": stream, "setting": setting}
    )


def _varz(monitor_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{monitor_url}/varz", timeout=5) as response:  # noqa: S310 - loopback
        document: dict[str, Any] = json.loads(response.read())
    return document


@pytest.fixture
async def tagged(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """Three nodes, two at site a and one at site b."""
    nodes = LocalCluster(data_dir=tmp_path / "tagged", size=3, tags=[["site:a"], ["site:a"], ["site:b"]])
    await nodes.start()
    yield nodes
    await nodes.stop()


def test_a_lower_value_is_kept_and_unlimited_is_the_largest() -> None:
    existing = api.StreamConfig(
        name="S", num_replicas=3, max_bytes=-1, max_msgs=100, max_age=0, duplicate_window=120
    )
    wanted = api.StreamConfig(
        name="S", num_replicas=1, max_bytes=1 << 30, max_msgs=-1, max_age=60, duplicate_window=None
    )
    applied, lowered = reconcile(existing, wanted, allow_lower=False)
    assert {k.setting: (k.existing, k.configured) for k in lowered} == {
        "replicas": (3, 1),
        "max_bytes": (-1, 1 << 30),  # -1 is unlimited: a limit is lower
        "max_age": (0, 60),  # 0 keeps forever
    }
    assert (applied.num_replicas, applied.max_bytes, applied.max_age) == (3, -1, 0)
    assert applied.max_msgs == -1  # raised to unlimited: applied
    assert applied.duplicate_window is None  # not configured: the server's, not compared
    forced, again = reconcile(existing, wanted, allow_lower=True)
    assert forced == wanted and again == lowered


def test_a_client_command_resolves_automatic_replicas_as_the_running_citybus_up_did() -> None:
    three = "nats://127.0.0.1:4001,nats://127.0.0.1:4002,nats://127.0.0.1:4003"
    assert client_streams(Config(), three, external=False).replicas_for("personal") == 3
    assert client_streams(Config(), "nats://127.0.0.1:4001", external=False).replicas_for("public") == 1
    assert client_streams(Config(), three, external=True).replicas_for("internal") == 1  # --nats URL


async def test_each_classification_gets_its_replicas_and_the_nodes_its_tags_name(
    tagged: LocalCluster,
) -> None:
    assert [_varz(url)["tags"] for url in tagged.monitor_urls] == [["site:a"], ["site:a"], ["site:b"]]
    settings = StreamsConfig(
        replicas={"public": 1, "internal": 3, "personal": 2}, placement_tags={"personal": ["site:a"]}
    )
    bus = await _bus(tagged.url)
    try:
        await bus.provision_streams(settings.resolved(3))
        assert (await _config(bus, PUBLIC)).num_replicas == 1
        assert (await _config(bus, "CITY_INTERNAL_CITYBUS")).num_replicas == 3
        for stream in (PERSONAL, VAULT_STREAM):  # the key vault holds personal data too
            info = await _all_current(bus, stream, 2)
            assert info.config.num_replicas == 2
            assert info.config.placement is not None and info.config.placement.tags == ["site:a"]
            assert info.cluster is not None
            peers = {info.cluster.leader, *(p.name for p in info.cluster.replicas or [])}
            assert peers == {"citybus-1", "citybus-2"}  # the nodes at site a, never site b's

        # Tags no node carries, and more copies than there are nodes: errors that say what to fix.
        nowhere = msgspec.structs.replace(settings, placement_tags={"personal": ["site:z"]})
        with pytest.raises(ConfigError, match=r"tagged \['site:z'\].*server_tags"):
            await bus.provision_streams(nowhere.resolved(3))
        with pytest.raises(ConfigError, match=r"streams.replicas = 5 .* at most the cluster's nodes"):
            await bus.provision_streams(StreamsConfig(replicas=5))
    finally:
        await bus.drain()


async def test_a_stream_given_new_tags_moves_first_and_scales_at_the_next_provisioning(
    tagged: LocalCluster,
) -> None:
    at_b = StreamsConfig(replicas={"public": 1}, placement_tags={"public": ["site:b"]}).resolved(3)
    at_a = StreamsConfig(replicas={"public": 2}, placement_tags={"public": ["site:a"]}).resolved(3)
    with structlog.testing.capture_logs() as logs:
        bus = await _bus(tagged.url)
        try:
            await bus.provision_streams(at_b)
            await bus.publish_durable(BeachObservation.example())
            info = await bus.js.stream_info(PUBLIC)
            assert info.cluster is not None and info.cluster.leader == "citybus-3"

            # JetStream refuses to move and scale at once: the move goes first, the scale waits.
            await bus.provision_streams(at_a)
            config = await _config(bus, PUBLIC)
            assert config.placement is not None and config.placement.tags == ["site:a"]
            assert config.num_replicas == 1
            assert any(e["event"] == "stream moves before it scales" and e["stream"] == PUBLIC for e in logs)

            # Provisioned again once the move is done (until then: "stream is moving"), it scales.
            async with asyncio.timeout(60):
                while (await _config(bus, PUBLIC)).num_replicas != 2:
                    await bus.provision_streams(at_a)
                    await asyncio.sleep(0.2)
            info = await _all_current(bus, PUBLIC, 2)
            assert info.cluster is not None and info.state.messages == 1
            peers = {info.cluster.leader, *(p.name for p in info.cluster.replicas or [])}
            assert peers == {"citybus-1", "citybus-2"}
        finally:
            await bus.drain()


async def test_raising_replicas_keeps_the_messages_and_lowering_waits_for_the_operator(
    cluster: LocalCluster,
) -> None:
    with structlog.testing.capture_logs() as logs:
        bus = await _bus(cluster.url)
        try:
            await bus.provision_streams(StreamsConfig(replicas=1))
            for _ in range(20):
                await bus.publish_durable(BeachObservation.example())
            assert (await bus.js.stream_info(PUBLIC)).state.messages == 20

            await bus.provision_streams(StreamsConfig(replicas=3))
            info = await _all_current(bus, PUBLIC, 3)
            assert info.config.num_replicas == 3 and info.state.messages == 20
            assert _kept(bus, PUBLIC, "replicas") is None

            # Lowering by mistake (a file that forgot replicas): three copies stay, and it is said.
            await bus.provision_streams(StreamsConfig(replicas=1))
            assert (await _config(bus, PUBLIC)).num_replicas == 3
            assert _kept(bus, PUBLIC, "replicas") == 1
            [warning] = [e for e in logs if e["event"] == "stream setting kept" and e["stream"] == PUBLIC]
            assert (warning["setting"], warning["existing"], warning["configured"]) == ("replicas", 3, 1)
            assert "--allow-lower" in warning["fix"]

            # Asked for: applied, and the messages are still there.
            await bus.provision_streams(StreamsConfig(replicas=1, allow_lower=True))
            info = await bus.js.stream_info(PUBLIC)
            assert info.config.num_replicas == 1 and info.state.messages == 20
            assert _kept(bus, PUBLIC, "replicas") is None
            assert any(e["event"] == "stream setting lowered" and e["stream"] == PUBLIC for e in logs)
        finally:
            await bus.drain()


async def test_a_tighter_limit_is_kept_and_a_looser_one_applied(fresh_server: EmbeddedServer) -> None:
    bus = await _bus(fresh_server.url)
    try:
        await bus.provision_streams(StreamsConfig())
        await bus.provision_streams(
            StreamsConfig(max_bytes=1024, max_age=60, max_msgs=-1, duplicate_window=30)
        )
        config = await _config(bus, PUBLIC)
        assert (config.max_bytes, config.max_age, config.duplicate_window) == (1 << 30, 7 * 24 * 3600, 120)
        assert _kept(bus, PUBLIC, "max_bytes") == _kept(bus, PUBLIC, "duplicate_window") == 1
        await bus.provision_streams(StreamsConfig(max_bytes=-1, max_msgs=5000))
        config = await _config(bus, PUBLIC)
        # max_bytes unlimited is larger, max_msgs 5000 is a limit where there was none: kept.
        assert (config.max_bytes, config.max_msgs) == (-1, -1)
        assert _kept(bus, PUBLIC, "max_bytes") is None and _kept(bus, PUBLIC, "max_msgs") == 1
    finally:
        await bus.drain()


async def test_what_the_servers_cannot_do_is_an_error_that_says_what_to_fix(
    fresh_server: EmbeddedServer,
) -> None:
    bus = await _bus(fresh_server.url)
    try:
        with pytest.raises(ConfigError, match=r"not clustered.*`citybus up --cluster 3`"):
            await bus.provision_streams(StreamsConfig(replicas=3))
        with pytest.raises(ConfigError, match=r"streams.replicas.personal = 3 .* not clustered"):
            await bus.provision_streams(StreamsConfig(replicas={"public": 1, "internal": 1, "personal": 3}))
        await bus.provision_streams(StreamsConfig(replicas=1))
        with pytest.raises(ConfigError, match=r"kept in file storage.*cannot change a stream's storage"):
            await bus.provision_streams(StreamsConfig(storage="memory"))
        with pytest.raises(ConfigError, match=r"not clustered"):
            await open_store(bus, "three-copies", streams=StreamsConfig(replicas=3))
    finally:
        await bus.drain()


async def test_the_command_says_what_to_fix_and_lowers_only_when_told(
    fresh_server: EmbeddedServer, tmp_path: Path
) -> None:
    env = citybus_env(tmp_path / "data", CITYBUS_STREAMS_REPLICAS="3")
    refused = await run_citybus("contracts", "provision", "--nats", fresh_server.url, cwd=tmp_path, env=env)
    assert_one_line_error(refused, 2, "configuration error", "not clustered", "streams.replicas = 1")
    env["CITYBUS_STREAMS_REPLICAS"] = "1"
    done = await run_citybus("contracts", "provision", "--nats", fresh_server.url, cwd=tmp_path, env=env)
    assert done.returncode == 0, done
    env.update(CITYBUS_STREAMS_MAX_AGE="60", CITYBUS_STREAMS_DUPLICATE_WINDOW="30")
    kept = await run_citybus("contracts", "provision", "--nats", fresh_server.url, cwd=tmp_path, env=env)
    assert kept.returncode == 0 and "stream setting kept" in kept.stderr, kept
    bus = await _bus(fresh_server.url)
    try:
        assert (await _config(bus, PUBLIC)).max_age == 7 * 24 * 3600
        lower = ("contracts", "provision", "--allow-lower", "--nats", fresh_server.url)
        lowered = await run_citybus(*lower, cwd=tmp_path, env=env)
        assert lowered.returncode == 0 and "stream setting lowered" in lowered.stderr, lowered
        assert (await _config(bus, PUBLIC)).max_age == 60
        env["CITYBUS_STREAMS_DUPLICATE_WINDOW"] = "120"  # longer than the messages are kept
        wrong = await run_citybus("contracts", "provision", "--nats", fresh_server.url, cwd=tmp_path, env=env)
        assert_one_line_error(wrong, 2, "refused the settings of stream", "duplicates window", "[streams]")
    finally:
        await bus.drain()


async def test_key_value_buckets_get_the_most_replicas_and_an_r1_bucket_is_scaled_up(
    cluster: LocalCluster,
) -> None:
    streams = StreamsConfig(replicas={"public": 1}).resolved(3)  # internal and personal: automatic, 3
    bus = await _bus(cluster.url)
    try:
        # Through the adapter's context, as the supervisor makes it with the runtime's [streams].
        ctx = Context(
            bus=bus,
            adapter="volunteer",
            instance="volunteer",
            consumes=(),
            produces=(),
            metrics=adapter_metrics(bus.metrics.registry).instance("volunteer", "volunteer"),
            logger=structlog.get_logger(),
            streams=streams,
        )
        places = await ctx.key_value("places")
        info = await _all_current(bus, f"KV_{places.bucket}", 3)
        assert info.config.num_replicas == 3

        # A bucket made with one copy (before the cluster, or before replicas were raised).
        bucket = f"test-{uuid.uuid4().hex[:8]}"
        single = await open_store(bus, bucket)
        revision = await single.put("place", b"taken", revision=None)
        assert (await _config(bus, f"KV_{bucket}")).num_replicas == 1
        scaled = await open_store(bus, bucket, streams=streams)
        info = await _all_current(bus, f"KV_{bucket}", 3)
        assert info.config.num_replicas == 3
        record = await scaled.get("place")
        assert record is not None and (record.value, record.revision) == (b"taken", revision)
        # Asked for fewer again: the bucket keeps its copies.
        await open_store(bus, bucket, streams=StreamsConfig(replicas=1))
        assert (await _config(bus, f"KV_{bucket}")).num_replicas == 3
    finally:
        await bus.drain()


async def test_an_instance_under_access_control_says_who_may_scale_its_bucket(cluster: LocalCluster) -> None:
    """Its user may create its bucket, never update it (it could point it at others' subjects)."""
    with structlog.testing.capture_logs() as logs:
        bus = await _bus(cluster.url)
        try:
            bucket = f"test-{uuid.uuid4().hex[:8]}"
            await open_store(bus, bucket)
            bus.user = "CITY/volunteer"  # as a connection logged in as an instance (bus.runtime.Connector)
            store = await open_store(bus, bucket, streams=StreamsConfig(replicas=3))
            assert await store.get("nothing") is None  # the store works on with the copies it has
            assert (await _config(bus, f"KV_{bucket}")).num_replicas == 1
        finally:
            await bus.drain()
    [warning] = [e for e in logs if e["event"] == "key-value store not scaled"]
    assert warning["fix"] == f"run `nats stream edit KV_{bucket} --replicas 3` as an operator of the account"
