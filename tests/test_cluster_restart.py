"""Starting again on a store that exists: a whole local cluster stopped and started again, as
``citybus up --cluster 3`` run a second time on the same data directory does, and streams
provisioned a second time.

Found by hand: the second ``citybus up --cluster 3`` on a data dir ended at start-up with "JetStream
did not answer (TimeoutError): is JetStream enabled on the server?". The cluster had its meta leader
(:meth:`~bus.cluster.LocalCluster.start` waits for that), but the streams it already held elect
their own leaders only after it, and a stream without a leader does not answer ``STREAM.INFO`` at
all: provisioning's first request timed out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from bus.cluster import LocalCluster, embedded_broker
from bus.config import ServerConfig, load_config
from bus.errors import ConfigError, EmbeddedServerError
from bus.personal.vault import VAULT_STREAM
from bus.server import EmbeddedServer
from bus.streams_config import StreamsConfig
from contracts.environment import BeachObservation
from tests.test_cluster import _bus

pytestmark = pytest.mark.timeout(120)


async def test_a_cluster_started_again_on_its_store_provisions_its_streams(cluster: LocalCluster) -> None:
    settings = StreamsConfig(replicas=3)
    bus = await _bus(cluster.url)
    try:
        names = await bus.provision_streams(settings)
        event_id = "before-the-restart"
        await bus.publish_durable(BeachObservation.example(), event_id=event_id)
    finally:
        await bus.drain()
    await cluster.stop()

    await cluster.start()  # returns once the meta group has a leader, not every stream
    bus = await _bus(cluster.url)
    try:
        assert await bus.provision_streams(settings) == names
        info = await bus.js.stream_info("CITY_PUBLIC_ENVIRONMENT")
        assert info.config.num_replicas == 3 and info.state.messages == 1
        stored = await bus.js.get_last_msg("CITY_PUBLIC_ENVIRONMENT", "city.public.>")
        assert stored.headers is not None and stored.headers["ce-id"] == event_id
    finally:
        await bus.drain()


async def test_provisioning_again_keeps_nothing_that_was_not_lowered(fresh_server: EmbeddedServer) -> None:
    # The key vault leaves its duplicate window unset (sent as 0, the server's 2 min), and the server
    # reports 120 s: every start after the first warned "stream setting kept" and set the gauge.
    bus = await _bus(fresh_server.url)
    try:
        names = await bus.provision_streams(StreamsConfig())
        assert VAULT_STREAM in names
        await bus.provision_streams(StreamsConfig())
        kept = [
            sample.labels
            for family in bus.metrics.registry.collect()
            if family.name == "citybus_stream_setting_kept"
            for sample in family.samples
            if sample.value
        ]
        assert kept == []
        assert (await bus.js.stream_info(VAULT_STREAM)).config.duplicate_window == 120
    finally:
        await bus.drain()


def test_a_cluster_of_two_is_refused_wherever_it_is_set() -> None:
    # Two nodes lose JetStream with either one: less available than one server, and `citybus up
    # --cluster 2` ran without a word, with R2 streams, showing no failover at all.
    with pytest.raises(ConfigError, match="cluster_size = 2: two nodes have no majority"):
        load_config(None, {"CITYBUS_SERVER_CLUSTER_SIZE": "2"})
    assert load_config(None, {"CITYBUS_SERVER_CLUSTER_SIZE": "3"}).server.cluster_size == 3


async def test_a_single_server_and_a_cluster_refuse_to_share_a_data_dir(tmp_path: Path) -> None:
    # Found by hand: `citybus up` and `citybus up --cluster 3` on one data dir both ran (the stores
    # differ: <dir>/jetstream and <dir>/cluster/node-N), sharing credentials and instance.json, and
    # the first one stopped deleted the other's instance.json: `citybus tail` found nothing running.
    log = structlog.get_logger()
    cluster = embedded_broker(ServerConfig(cluster_size=3), tmp_path, "", log)
    single = embedded_broker(ServerConfig(), tmp_path, "", log)
    assert isinstance(cluster, LocalCluster) and isinstance(single, EmbeddedServer)
    await cluster.start()
    try:
        with pytest.raises(EmbeddedServerError, match="in use by another nats-server.*a local cluster of 3"):
            await single.start()
    finally:
        await cluster.stop()
    await single.start()
    try:
        with pytest.raises(EmbeddedServerError, match=f"the data dir {tmp_path} is in use"):
            await cluster.start()
        assert not any(node.running for node in cluster.nodes)
    finally:
        await single.stop()
    await cluster.start()  # each gave the lock back when it stopped
    await cluster.stop()
