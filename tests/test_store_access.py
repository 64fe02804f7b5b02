"""Key-value buckets under access control, on a real nats-server with citybus's accounts.

A ``STREAM.CREATE`` request carries the stream's configuration in its body, which the broker does
not check: an instance allowed to create its bucket's stream could create ``KV_<bucket>`` over any
subject of its account (a citizen's personal requests) and read what it captured with a stored
message get — data it may not subscribe to. So instances do not create their buckets: the
account's provisioner does, with the bucket's own subjects (:mod:`bus.buckets`), and the instance
binds, reads and writes its keys.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import pytest
import structlog
from nats.js import api

from bus import Bus, Metrics
from bus.access import AccessModel, Account, Declaration
from bus.access.keys import CredentialStore
from bus.access.tenancy import asker
from bus.buckets import provision_buckets
from bus.server import EmbeddedServer
from bus.store import StoreError, open_store
from bus.subjects import (
    dead_letter_filter,
    js_api,
    overlaps,
    request_filter,
    store_bucket,
    store_filter,
    store_stream,
)
from contracts import ComparisonRequest
from tests.test_access import CONTRACTS, Peer, barrier, connect, start_with_accounts

pytestmark = pytest.mark.slow

KEEPER = "keeper"
BUCKET = store_bucket(KEEPER, "state")
STREAM = store_stream(BUCKET)
LATER = store_bucket(KEEPER, "later")
"""A bucket it declares that nobody provisioned yet."""
CITIZEN = "citizen"
ASKED = request_filter(ComparisonRequest, "p-000000000042")
"""A citizen's personal request: only the statistics service may read it."""


@dataclass
class City:
    server: EmbeddedServer
    store: CredentialStore

    async def bus(self, user: str) -> Bus:
        bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source=f"/tests/{user}")
        await bus.connect(self.server.url, **self.store.load("CITY", user).connect_options())
        bus.user = f"CITY/{user}"  # as the runtime's connector and the client commands log in
        return bus

    async def peer(self, user: str) -> Peer:
        return await connect(self.server.url, self.store, "CITY", user)


@pytest.fixture(scope="module")
async def city(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[City]:
    keeper = Declaration(KEEPER, consumes=(), produces=(), declassifier=False, stores=(BUCKET, LATER))
    citizen = asker(CITIZEN, "citizen", request_filter(ComparisonRequest, "*"))
    model = AccessModel(CONTRACTS, adapters=[keeper, citizen])
    server, store = await start_with_accounts(tmp_path_factory.mktemp("store-access"), model)
    try:
        provisioner = City(server, store)
        bus = await provisioner.bus("provisioner")
        try:
            await bus.provision_streams()  # the registry's streams, as citybus up makes them
            assert model.buckets[Account.CITY] == (LATER, BUCKET)
            assert await provision_buckets(bus, [BUCKET], None) == [STREAM]  # LATER: not yet
        finally:
            await bus.drain()
        yield City(server, store)
    finally:
        await server.stop()


async def _ask_raw(peer: Peer, subject: str, body: dict[str, object]) -> dict[str, object] | None:
    """JetStream's answer to ``body`` on ``subject``, or ``None`` when none came (refused)."""
    try:
        reply = await peer.nc.request(subject, json.dumps(body).encode(), timeout=2)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return None
    answer: dict[str, object] = json.loads(reply.data)
    return answer


async def _stored(peer: Peer, stream: str, subject: str) -> bytes | None:
    """What ``peer`` reads of ``subject`` from ``stream`` with a stored message get, once
    JetStream stored it (it stores a message a moment after taking it); ``None`` when there is no
    such stream, it does not capture ``subject``, or ``peer`` may not ask."""
    info = await _ask_raw(peer, js_api("STREAM", "INFO", stream), {})
    config = info.get("config") if info is not None else None
    captured = config.get("subjects", []) if isinstance(config, dict) else []
    if not any(overlaps(pattern, subject) for pattern in captured):
        return None
    async with asyncio.timeout(10):
        while True:
            answer = await _ask_raw(peer, js_api("STREAM", "MSG", "GET", stream), {"last_by_subj": subject})
            if answer is None:
                return None
            message, error = answer.get("message"), answer.get("error")
            if isinstance(message, dict):
                return base64.b64decode(message["data"])
            if isinstance(error, dict) and error.get("err_code") == 10059:  # JSStreamNotFoundErr
                return None
            await asyncio.sleep(0.05)  # the stream is there, the message not yet stored


async def test_an_instance_cannot_point_its_bucket_at_a_citizens_requests_to_read_them(city: City) -> None:
    keeper, citizen = await city.peer(KEEPER), await city.peer(CITIZEN)
    try:
        # What it may not read by subscribing: the broker refuses the subscription.
        await keeper.nc.subscribe("city.personal.rpc.>")
        await barrier(keeper.nc)
        assert keeper.refused("subscription", "city.personal.rpc.>")

        # Its bucket's stream (one not made yet), created with another subject in the request's body.
        stream = store_stream(LATER)
        forged = api.StreamConfig(
            name=stream, subjects=["city.personal.rpc.>"], storage=api.StorageType.FILE, num_replicas=1
        )
        created = await _ask_raw(keeper, js_api("STREAM", "CREATE", stream), forged.as_dict())
        await citizen.nc.publish(ASKED, b'{"person": "p-000000000042", "asks": "my own data"}')
        await barrier(citizen.nc)
        leaked = await _stored(keeper, stream, ASKED)
        assert leaked is None, f"the instance read a citizen's request through its bucket: {leaked!r}"
        assert created is None and keeper.refused("publish", js_api("STREAM", "CREATE", stream))
        # Nor can it point the bucket that exists elsewhere.
        moved = dataclasses.replace(forged, name=STREAM)
        updated = await _ask_raw(keeper, js_api("STREAM", "UPDATE", STREAM), moved.as_dict())
        assert updated is None and keeper.refused("publish", js_api("STREAM", "UPDATE", STREAM))
    finally:
        for peer in (keeper, citizen):
            with contextlib.suppress(Exception):
                await peer.nc.close()


async def test_the_provisioner_made_the_bucket_over_its_own_keys_and_the_instance_keeps_its_records(
    city: City,
) -> None:
    keeper = await city.bus(KEEPER)
    try:
        config = (await keeper.js.stream_info(STREAM)).config
        assert config.subjects == [store_filter(BUCKET)] and config.max_msgs_per_subject == 1
        store = await open_store(keeper, BUCKET)
        revision = await store.put("walk", b"two places", revision=None)
        record = await store.get("walk")
        assert record is not None and (record.value, record.revision) == (b"two places", revision)
        assert await store.keys() == ["walk"]
        again = await open_store(keeper, BUCKET)  # another replica of the instance binds to it too
        assert await again.get("walk") == record
    finally:
        await keeper.drain()


async def test_a_bucket_nobody_provisioned_is_an_error_that_says_who_creates_it(city: City) -> None:
    keeper = await city.bus(KEEPER)
    try:
        with pytest.raises(StoreError) as refused:
            await open_store(keeper, LATER)
        message = str(refused.value)
        assert f"the key-value store {LATER} does not exist" in message
        for who in ("citybus up", "citybus contracts provision", "citybus sandbox join"):
            assert who in message
    finally:
        await keeper.drain()


def test_citybus_auth_show_gives_each_bucket_to_its_accounts_provisioner_and_its_instance_its_keys() -> None:
    keeper = Declaration(KEEPER, consumes=(), produces=(), declassifier=False, stores=(BUCKET,))
    guest = Declaration("visitor", consumes=(), produces=(), declassifier=False, stores=("visitor_notes",))
    model = AccessModel(CONTRACTS, adapters=[keeper], guests=[guest])
    published = {(r.account, r.user, r.subject) for r in model.table() if r.right == "publish"}
    for action in ("INFO", "CREATE", "UPDATE"):
        assert ("CITY", "provisioner", js_api("STREAM", action, STREAM)) in published
        assert ("SANDBOX", "provisioner", js_api("STREAM", action, "KV_visitor_notes")) in published
        assert ("SANDBOX", "provisioner", js_api("STREAM", action, STREAM)) not in published
    mine = {subject for account, user, subject in published if (account, user) == ("CITY", KEEPER)}
    assert mine == {
        dead_letter_filter(),
        js_api("STREAM", "INFO", STREAM),  # binds
        store_filter(BUCKET),  # writes its keys
        js_api("DIRECT", "GET", STREAM, ">"),  # reads them
        js_api("STREAM", "MSG", "GET", STREAM),
    }
