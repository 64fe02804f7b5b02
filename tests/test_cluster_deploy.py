"""docs/cluster/: the documented three-node cluster, run for real, as docs/cluster.md tells IT to.

The test follows the document step by step in a temporary directory, on free loopback ports:
certificates from ``docs/cluster/tls/make-certs.sh`` (openssl), ``citybus.toml`` and the three
nodes' ``nats.conf`` rendered from the templates, ``accounts.conf`` written by ``citybus auth
generate`` and copied beside each node's configuration; ``nats-server -t`` accepts each file; three
real nats-servers form the cluster over mutual-TLS routes; a client without a user, or without the
CA, is refused with citybus's message; citybus connects over TLS to the comma-separated URL as its
own users and provisions every stream of both accounts with three replicas, each on all three nodes
(a leader and two peers); then the node its connection is on is killed, and the connection moves to
another node and every stream answers again with a leader of the two left.

Decisions, and why:

* **The documented script, not a Python stand-in.** Certificates made by ``cryptography`` here
  would prove that *some* certificates work, not the commands the document gives; openssl is a
  service the test needs like PostgreSQL elsewhere (skipped without it, a failure in CI).
* **The runtime's own way in.** The buses come from :class:`bus.runtime.Connector` with the
  configuration loaded from the rendered ``citybus.toml`` — the code ``citybus up`` runs — rather
  than from hand-made nats-py options.
* **Helm is checked as YAML only**, and only where PyYAML is installed (no dependency is added for
  it): there is no Kubernetes here, and docs/cluster.md says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import ssl
import string
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import nats
import nats.errors
import pytest
import structlog
import yaml

from bus import Bus, Metrics
from bus.access.keys import CredentialStore
from bus.access.login import tls_context
from bus.config import load_config
from bus.errors import ServerUnavailableError
from bus.runtime import Connector
from bus.server import find_nats_server, parent_death_signal
from bus.server_config import free_port
from contracts import default_registry
from tests.conftest import require_service

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cluster"
HOST = "127.0.0.1"
NAMES = ("citybus-1", "citybus-2", "citybus-3")


@dataclass(frozen=True)
class Node:
    """One node's name, ports and directory."""

    name: str
    client: int
    cluster: int
    monitor: int
    directory: Path

    @property
    def config(self) -> Path:
        """Its ``nats.conf``, with ``accounts.conf`` beside it."""
        return self.directory / "nats.conf"


def render(template: Path, values: Mapping[str, str]) -> str:
    """A template of docs/cluster/ with every ``${...}`` filled in (a missing one is an error)."""
    return string.Template(template.read_text()).substitute(values)


def make_certs(tls: Path, name: str, *hosts: str) -> None:
    """Run the documented script for one node."""
    if shutil.which("openssl") is None:
        require_service("openssl", "it is not on PATH (docs/cluster/tls/make-certs.sh runs it)")
    script = DOCS / "tls" / "make-certs.sh"
    subprocess.run(["sh", str(script), str(tls), name, *hosts], check=True, capture_output=True, timeout=60)


@contextlib.asynccontextmanager
async def running(nodes: list[Node]) -> AsyncIterator[dict[str, asyncio.subprocess.Process]]:
    """The nodes' nats-servers by name, stopped (killed if they linger) whatever happens."""
    binary = str(find_nats_server())
    processes: dict[str, asyncio.subprocess.Process] = {}
    try:
        for node in nodes:
            with (node.directory / "server.log").open("wb") as log:
                processes[node.name] = await asyncio.create_subprocess_exec(
                    binary,
                    "-c",
                    str(node.config),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=parent_death_signal(),
                )
        yield processes
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.terminate()
        for process in processes.values():
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_cluster(nodes: list[Node], timeout: float = 60.0) -> None:
    """Until every node is healthy (JetStream current) and routed to the two others."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        for node in nodes:
            base = f"http://{HOST}:{node.monitor}"
            others = {n.name for n in nodes if n is not node}
            while True:
                try:
                    async with http.get(f"{base}/healthz") as health, http.get(f"{base}/routez") as routez:
                        routes = await routez.json()
                        peers = {r.get("remote_name") for r in routes.get("routes") or []}
                        if health.status == 200 and others <= peers:
                            break
                except aiohttp.ClientError:
                    pass  # not listening yet
                await asyncio.sleep(0.2)


async def node_serving(nodes: list[Node], connection: str) -> Node:
    """The node the client connection named ``connection`` is connected to (from ``/connz``)."""
    async with aiohttp.ClientSession() as http:
        for node in nodes:
            async with http.get(f"http://{HOST}:{node.monitor}/connz") as connz:
                names = {c.get("name") for c in (await connz.json()).get("connections") or []}
            if connection in names:
                return node
    raise AssertionError(f"no node serves {connection!r}")


async def leaders_among(provisioner: Bus, streams: list[str], alive: set[str]) -> None:
    """Until every stream answers with a leader among ``alive`` (the bus reconnecting meanwhile)."""
    for name in streams:
        while True:
            try:
                info = await provisioner.js.stream_info(name)
            except (nats.errors.Error, TimeoutError, OSError):
                info = None  # reconnecting, or the stream is electing its leader
            if info is not None and info.cluster is not None and info.cluster.leader in alive:
                break
            await asyncio.sleep(0.2)


@pytest.fixture
def documented(tmp_path: Path) -> tuple[list[Node], Path]:
    """The nodes' files and ``citybus.toml``, made as docs/cluster.md says; each ``nats.conf``
    passes ``nats-server -t``."""
    nodes = [Node(name, free_port(HOST), free_port(HOST), free_port(HOST), tmp_path / name) for name in NAMES]
    tls = tmp_path / "tls"
    for node in nodes:
        make_certs(tls, node.name, HOST, "localhost")
    assert not (DOCS / "tls" / "ca-key.pem").exists(), "no private key belongs in docs/"

    # citybus.toml, then the accounts: `citybus auth generate`, as the document says.
    toml = tmp_path / "citybus.toml"
    toml.write_text(
        render(
            DOCS / "citybus.toml.template",
            {
                **{f"NODE_{i}": f"{HOST}:{n.client}" for i, n in enumerate(nodes, 1)},
                **{f"MONITOR_{i}": f"{HOST}:{n.monitor}" for i, n in enumerate(nodes, 1)},
                "CA_FILE": str(tls / "ca.pem"),
                "CREDENTIALS_DIR": str(tmp_path / "credentials"),
            },
        )
    )
    generate = [sys.executable, "-m", "bus.cli", "--config", str(toml), "auth", "generate"]
    done = subprocess.run(generate, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    accounts = tmp_path / "credentials" / "accounts.conf"
    assert f"wrote {accounts}" in done.stdout

    binary = str(find_nats_server())
    for node in nodes:
        node.directory.mkdir()
        shutil.copy(accounts, node.directory / "accounts.conf")
        values = {
            "NODE_NAME": node.name,
            "LISTEN": HOST,
            "CLIENT_PORT": str(node.client),
            "CLUSTER_PORT": str(node.cluster),
            "MONITOR_PORT": str(node.monitor),
            "CLUSTER_NAME": "citybus",
            **{f"ROUTE_{i}": f"{HOST}:{n.cluster}" for i, n in enumerate(nodes, 1)},
            "TLS_DIR": str(tls),
            "STORE_DIR": str(node.directory / "store"),
            # What JetStream reserves, not what it writes: every stream's max_bytes (1 GiB by
            # default) counts against it on each of its three nodes (docs/cluster.md, "Sizing").
            "MAX_FILE_STORE": "50GB",
            "ZONE": f"zone-{node.name[-1]}",
        }
        node.config.write_text(render(DOCS / "node.conf.template", values))
        checked = subprocess.run(
            [binary, "-t", "-c", str(node.config)], capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    return nodes, toml


async def test_documented_cluster_serves_citybus_over_tls_with_three_replicas(
    documented: tuple[list[Node], Path],
) -> None:
    nodes, toml = documented
    config = load_config(toml, environ={})
    assert config.streams.replicas == 3
    store = CredentialStore(config.credentials_dir())
    connector = Connector(
        config,
        config.nats.url,
        registry=default_registry(),
        metrics=Metrics(),
        logger=structlog.get_logger(),
        store=store,
        options={"tls": tls_context(config.nats.tls_ca)},
    )
    async with running(nodes) as processes:
        await wait_cluster(nodes)

        # Nobody gets in without a user of accounts.conf; nobody trusts the nodes without the CA.
        stranger = Bus(metrics=Metrics(), name="stranger")
        with pytest.raises(ServerUnavailableError, match="Authorization Violation"):
            await stranger.connect(config.nats.url, tls=tls_context(config.nats.tls_ca))
        with pytest.raises(ServerUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            await stranger.connect(config.nats.url, tls=ssl.create_default_context())

        for account in ("CITY", "SANDBOX"):
            provisioner = await connector.connect(account, "provisioner")
            try:
                streams = await provisioner.provision_streams(config.streams)
                assert streams
                for name in streams:
                    info = await provisioner.js.stream_info(name)
                    assert info.config.num_replicas == 3, name
                    assert info.cluster is not None and info.cluster.leader in NAMES, (name, info.cluster)
                    peers = {r.name for r in info.cluster.replicas or []}
                    assert peers | {info.cluster.leader} == set(NAMES), (name, info.cluster)
            finally:
                await provisioner.drain()

        # One node lost (kill -9 the one citybus is connected to): the connection moves to another
        # node over TLS, and every stream answers again, with a leader of the two left.
        provisioner = await connector.connect("SANDBOX", "provisioner")
        try:
            lost = await node_serving(nodes, "citybus SANDBOX/provisioner")
            processes[lost.name].kill()
            await processes[lost.name].wait()
            async with asyncio.timeout(60):
                await leaders_among(provisioner, streams, set(NAMES) - {lost.name})
        finally:
            await provisioner.drain()


def test_helm_values_are_the_charts_keys() -> None:
    values = yaml.safe_load((DOCS / "helm-values.yaml").read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] is True and config["cluster"]["replicas"] == 3
    assert config["cluster"]["tls"]["enabled"] is True and config["nats"]["tls"]["enabled"] is True
    assert config["jetstream"]["enabled"] is True and config["jetstream"]["fileStore"]["pvc"]["enabled"]
    assert config["merge"]["$include"] == "accounts.conf"
    assert values["tlsCA"]["enabled"] is True


def test_the_documents_configuration_examples_load(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", (DOCS.parent / "cluster.md").read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        path = tmp_path / "citybus.toml"
        path.write_text(block)
        assert load_config(path, environ={}).nats.url.count("tls://") == 3
