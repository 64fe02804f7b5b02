"""Who may change the streams, against a real nats-server: only the ``provisioner``, and only by
reading, creating and updating the registry's streams; and the embedded server's files are private.

Issue 12, item 8: the runtime's long-lived ``service`` user could send ``$JS.API.STREAM.UPDATE``
(``max_msgs: 1`` purged a stream in effect), and the data dir was 0755 and ``nats-server.conf``
0644 under the usual umask.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import pytest
import structlog
from nats.js import api

from bus import Bus, Metrics
from bus.access import AccessModel, Kind
from bus.access.keys import CredentialStore
from bus.config import load_config
from bus.runtime import Runtime
from bus.server import EmbeddedServer
from bus.subjects import contract_filter, dead_letter_subject, js_api
from contracts import BeachObservation, default_registry
from tests.test_access import Peer, barrier, connect, write_accounts

pytestmark = pytest.mark.slow

STREAM = "CITY_PUBLIC_ENVIRONMENT"


@dataclass
class Broker:
    server: EmbeddedServer
    store: CredentialStore
    model: AccessModel


@pytest.fixture(scope="module")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Broker]:
    base = tmp_path_factory.mktemp("provisioning")
    model = AccessModel(default_registry())
    store = CredentialStore(base / "credentials")
    store.ensure(u.key for u in model.users)
    data_dir = base / "nats"
    data_dir.mkdir()
    write_accounts(data_dir, model, store)
    async with EmbeddedServer(data_dir=data_dir, extra_config='include "accounts.conf"') as server:
        yield Broker(server, store, model)


async def refused(peer: Peer, subject: str, body: bytes = b"{}") -> bool:
    """Whether the server refused ``peer``'s publish on ``subject`` (it says so on the connection)."""
    await peer.nc.publish(subject, body)
    await barrier(peer.nc)
    return peer.refused("publish", subject)


async def test_only_the_provisioner_may_update_a_stream(broker: Broker) -> None:
    provisioner = Bus(metrics=Metrics(), source="/tests/provisioner")
    await provisioner.connect(broker.server.url, **broker.store.load("CITY", "provisioner").connect_options())
    try:
        assert STREAM in await provisioner.provision_streams()
    finally:
        await provisioner.drain()
    update = js_api("STREAM", "UPDATE", STREAM)
    body = json.dumps({"name": STREAM, "subjects": ["city.public.environment.>"], "max_msgs": 1}).encode()
    users = [u for u in broker.model.users if u.kind not in (Kind.PROVISIONER, Kind.SYSTEM, Kind.MQTT)]
    assert {u.name for u in users} >= {"service", "operator", "internal", "public"}
    for user in users:
        peer = await connect(broker.server.url, broker.store, *user.key)
        try:
            assert await refused(peer, update, body), (user.key, peer.errors)
        finally:
            await peer.nc.close()


async def test_the_service_touches_no_stream_and_still_dead_letters(broker: Broker) -> None:
    service = await connect(broker.server.url, broker.store, "CITY", "service")
    witness = await connect(broker.server.url, broker.store, "CITY", "internal")
    try:
        for action in ("INFO", "CREATE", "UPDATE", "DELETE", "PURGE"):
            assert await refused(service, js_api("STREAM", action, STREAM)), (action, service.errors)
        sub = await witness.nc.subscribe(dead_letter_subject("provisioning-test"))
        await barrier(witness.nc)
        assert not await refused(service, dead_letter_subject("provisioning-test"))
        assert (await sub.next_msg(timeout=5)).data == b"{}"
    finally:
        await service.nc.close()
        await witness.nc.close()


async def test_the_provisioner_reads_creates_and_updates_its_streams_and_nothing_else(broker: Broker) -> None:
    peer = await connect(broker.server.url, broker.store, "CITY", "provisioner")
    js = peer.nc.jetstream(timeout=0.5)
    try:
        assert (await js.stream_info(STREAM)).config.name == STREAM
        forbidden = [
            js_api("STREAM", "DELETE", STREAM),
            js_api("STREAM", "PURGE", STREAM),
            js_api("STREAM", "MSG", "DELETE", STREAM),
            js_api("STREAM", "MSG", "GET", STREAM),
            js_api("STREAM", "SNAPSHOT", STREAM),
            js_api("STREAM", "RESTORE", STREAM),
            js_api("STREAM", "UPDATE", "NOT_A_CITYBUS_STREAM"),
            js_api("STREAM", "CREATE", "NOT_A_CITYBUS_STREAM"),
            js_api("STREAM", "NAMES"),
            js_api("CONSUMER", "CREATE", STREAM, "mine", "city.public.>"),
            "city.public.environment.beach-observation.bragernes-strand",
            dead_letter_subject("provisioning-test"),
        ]
        for subject in forbidden:
            assert await refused(peer, subject), (subject, peer.errors)
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_stream(api.StreamConfig(name="NOT_A_CITYBUS_STREAM", subjects=["elsewhere.>"]))
        readable = contract_filter(BeachObservation)
        await peer.nc.subscribe(readable)
        await barrier(peer.nc)
        assert peer.refused("subscription", readable)
    finally:
        await peer.nc.close()


# -- the embedded server's files ---------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: whatever a file gets then, the code gave it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
async def test_citybus_up_keeps_its_data_dir_and_server_configuration_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = load_config(environ={"CITYBUS_SERVER_DATA_DIR": str(data_dir), "CITYBUS_OPS_ENABLED": "false"})
    runtime = Runtime(config, logger=structlog.get_logger(), components=[])
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        try:
            async with asyncio.timeout(30):
                await runtime.ready.wait()
            assert mode(data_dir) == 0o700
            assert mode(data_dir / "nats-server.conf") == 0o600
            assert mode(data_dir / "instance.json") == 0o600
            # The streams were provisioned (by the provisioner), in both accounts.
            login = runtime.store
            assert login is not None
            for account in ("CITY", "SANDBOX"):
                operator = await connect(runtime.nats_url, login, account, "operator")
                try:
                    js = operator.nc.jetstream(timeout=5)
                    assert (await js.stream_info(STREAM)).config.name == STREAM
                finally:
                    await operator.nc.close()
        finally:
            stop.set()
