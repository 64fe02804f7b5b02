"""Access control against a real nats-server started with the generated configuration.

One server for the module (plus one of its own for the revocation test), started by
``EmbeddedServer`` with the configuration :class:`bus.access.AccessModel` renders, included from
``accounts.conf``; every client connects with the NKey seed :class:`bus.access.keys.CredentialStore`
issued it. The expectations are written out by hand below (``ALLOWED``), not derived from the
model, so a model that grants too much or too little fails here.

How a cell is decided: a publish *went through* when a user allowed to read the subject (the
witness) received it; a subscription *works* when it received what a user allowed to publish the
subject (the feeder) sent. Both wait on server round trips (flush), not on time: nats-server
handles a connection's commands in order, so once the sender's PING is answered the message has
been routed, and once the witness's PING is answered it has been delivered (see :func:`barrier`
for nats-py's part). A refusal must be the server's own: nats-py hands the server's
``-ERR 'Permissions Violation for …'`` to the error callback, and the test looks for it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import re
import signal
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import msgspec
import nats
import nats.errors
import pytest
import structlog
from nats.aio.client import Client as NATS
from nats.js import api
from prometheus_client import CollectorRegistry

from adapters import Context
from adapters.metrics import AdapterMetrics
from bus import Bus, Event, Metrics
from bus.access import (
    AccessError,
    AccessModel,
    Account,
    Declaration,
    DeclassificationError,
    Kind,
)
from bus.access.keys import CredentialError, CredentialStore, Secret
from bus.access.render import render_config
from bus.buckets import provision_buckets
from bus.errors import ConfigError
from bus.server import EmbeddedServer
from bus.subjects import (
    clock_subject,
    contract_filter,
    control_subject,
    dead_letter_subject,
    durable_name,
    js_api,
    request_filter,
    stream_name,
)
from contracts import (
    AirQualityObserved,
    BeachObservation,
    Classification,
    Contract,
    DeviceStatus,
    Registry,
    VolunteerSignup,
    contract,
    default_registry,
)
from sandbox.access import pilot_declaration
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

TEST_CONTRACTS = Registry()


@contract(
    "community.volunteer-count",
    version=1,
    classification=Classification.PUBLIC,
    key="area",
    example={"area": "bragernes", "volunteers": 12},
    registry=TEST_CONTRACTS,
)
class VolunteerCount(Contract, frozen=True, kw_only=True):
    """How many volunteers signed up in an area, published only above a privacy threshold."""

    area: str
    volunteers: Annotated[int, msgspec.Meta(ge=0)]


# -- the city under test ---------------------------------------------------------------------------

PRODUCER = Declaration(
    "vicotee-beach",
    consumes=(),
    produces=(BeachObservation, DeviceStatus),
    declassifier=False,
    raw_subscribe=("*.devices.*.up",),
    control="vicotee",
)
PLATFORM = Declaration(
    "volunteer-platform",
    consumes=(),
    produces=(VolunteerSignup,),
    declassifier=False,
    raw_publish=("*.devices.*.up",),
)
ARCHIVE = Declaration(
    "volunteer-archive", consumes=(VolunteerSignup,), produces=(), declassifier=False, durable=True
)
STATS = Declaration(
    "volunteer-stats", consumes=(VolunteerSignup,), produces=(VolunteerCount,), declassifier=True
)
CITY_SITE = "bragernes-strand"  # an entity the city's replay owns in the sandbox (issue 14, item 6)
REPLAY = Declaration(
    "sandbox",
    consumes=(),
    produces=(BeachObservation, DeviceStatus),
    declassifier=False,
    control="replay",
    clocks=True,
    owns=(contract_filter(BeachObservation, CITY_SITE), contract_filter(DeviceStatus, CITY_SITE)),
    sources=("/adapters/beach",),
)
# Pilots are the sandbox's guests: their rights are what sandbox/access.py declares for them.
PILOT = pilot_declaration("acme", (BeachObservation,))
OLD_PILOT = pilot_declaration("old-pilot", (AirQualityObserved,))

CONTRACTS = (*default_registry(), VolunteerCount)


def city_model(pilots: tuple[Declaration, ...] = (PILOT, OLD_PILOT)) -> AccessModel:
    return AccessModel(
        CONTRACTS,
        adapters=[PRODUCER, PLATFORM, ARCHIVE, STATS],
        sandbox_adapters=[REPLAY],
        guests=pilots,
    )


# The matrix: client kinds (rows) x subjects (columns) x (publish, subscribe). Written by hand from
# issue 6 and the permission table in bus/access/policy.py; every cell not listed must be refused.
KINDS = {
    "service": ("CITY", "service"),
    "producer": ("CITY", "vicotee-beach"),  # an adapter producing a public (and an internal) contract
    "personal-consumer": ("CITY", "volunteer-archive"),
    "declassifier": ("CITY", "volunteer-stats"),
    "public": ("CITY", "public"),
    "internal": ("CITY", "internal"),
    "operator": ("CITY", "operator"),
    "pilot": ("SANDBOX", "acme"),
}
# "city-site": a public subject of an entity the sandbox's replay owns (issue 14, item 6) — in CITY
# an ordinary public subject, in SANDBOX the replay's alone: a pilot may read it, never publish it.
COLUMNS = ("public", "internal", "personal", "dead-letter", "control", "sandbox", "city-site")
ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    #                     publish                                  subscribe
    "service": ({"dead-letter"}, set()),
    "producer": ({"public", "internal", "dead-letter", "city-site"}, {"control"}),
    "personal-consumer": ({"dead-letter"}, {"personal"}),
    "declassifier": ({"dead-letter"}, {"personal"}),
    "public": (set(), {"public", "city-site"}),
    "internal": (set(), {"public", "internal", "dead-letter", "city-site"}),
    "operator": ({"control"}, {"public", "internal", "dead-letter", "city-site"}),
    # in SANDBOX: its declared contract only (BeachObservation), never a dead letter (issue 12,
    # item 7: it could forge them); it reads the replayed public and internal data and the
    # sandbox's dead letters; "sandbox" = it reaches, and is reached by, the sandbox
    "pilot": ({"public", "sandbox"}, {"public", "internal", "dead-letter", "sandbox", "city-site"}),
}
# Who may read (WITNESS) and who may publish (FEEDER) a column's subject in each account; None:
# nobody may, so the cell can only be refused. The sandbox column is always seen from SANDBOX.
WITNESS: dict[tuple[str, str], tuple[str, str] | None] = {
    ("CITY", "public"): ("CITY", "public"),
    ("CITY", "internal"): ("CITY", "internal"),
    ("CITY", "personal"): ("CITY", "volunteer-archive"),
    ("CITY", "dead-letter"): ("CITY", "internal"),
    ("CITY", "control"): ("CITY", "vicotee-beach"),
    ("SANDBOX", "public"): ("SANDBOX", "public"),
    ("SANDBOX", "internal"): ("SANDBOX", "internal"),
    ("SANDBOX", "personal"): None,
    ("SANDBOX", "dead-letter"): ("SANDBOX", "internal"),
    ("SANDBOX", "control"): ("SANDBOX", "sandbox"),
}
FEEDER: dict[tuple[str, str], tuple[str, str] | None] = {
    ("CITY", "public"): ("CITY", "vicotee-beach"),
    ("CITY", "internal"): ("CITY", "vicotee-beach"),
    ("CITY", "personal"): ("CITY", "volunteer-platform"),
    ("CITY", "dead-letter"): ("CITY", "service"),
    ("CITY", "control"): ("CITY", "operator"),
    ("SANDBOX", "public"): ("SANDBOX", "sandbox"),
    ("SANDBOX", "internal"): ("SANDBOX", "sandbox"),
    ("SANDBOX", "personal"): None,
    ("SANDBOX", "dead-letter"): ("SANDBOX", "sandbox"),
    ("SANDBOX", "control"): ("SANDBOX", "operator"),
}


def cell_subject(column: str, account: str, token: str) -> str:
    if column == "city-site":
        return contract_filter(BeachObservation, CITY_SITE)
    if column in ("public", "sandbox"):
        return contract_filter(BeachObservation, token)
    if column == "internal":
        return contract_filter(DeviceStatus, token)
    if column == "personal":
        return contract_filter(VolunteerSignup, token)
    if column == "dead-letter":
        return dead_letter_subject(token)
    assert column == "control"
    return (
        control_subject("vicotee", "vicotee-beach", token)
        if account == "CITY"
        else control_subject("replay", "sandbox", token)
    )


# -- clients ---------------------------------------------------------------------------------------


@dataclass
class Peer:
    """One connected user and the errors the server sent it."""

    label: str
    nc: NATS
    errors: list[str] = field(default_factory=list)

    def refused(self, action: str, subject: str) -> bool:
        """Whether the server refused ``action`` ("publish" or "subscription") on ``subject``."""
        needle = f'permissions violation for {action} to "{subject}"'.lower()
        return any(needle in e.lower() for e in self.errors)


async def barrier(nc: NATS) -> None:
    """Return once the server has handled everything ``nc`` sent before.

    nats-py 2.16's ``flush()`` writes its PING straight to the socket, ahead of commands still in
    its buffer, so one flush can be answered before a SUB or PUB sent just before it is handled
    (about one time in a hundred here). The first flush also hands the buffer to the socket, so
    the second one's PING follows it.
    """
    await nc.flush()
    await nc.flush()


async def connect(url: str, store: CredentialStore, account: str, user: str, **options: Any) -> Peer:
    peer = Peer(f"{account}/{user}", None)  # type: ignore[arg-type]

    async def on_error(exc: Exception) -> None:
        peer.errors.append(str(exc))

    options.setdefault("allow_reconnect", False)
    peer.nc = await nats.connect(
        url, name=peer.label, error_cb=on_error, **store.load(account, user).connect_options(), **options
    )
    return peer


async def receives(receiver: Peer, subject: str, sender: Peer, send_to: str | None = None) -> bool:
    """Whether ``receiver``'s subscription to ``subject`` gets what ``sender`` publishes (on ``send_to``)."""
    sub = await receiver.nc.subscribe(subject)
    await barrier(receiver.nc)
    target = send_to or subject
    await sender.nc.publish(target, b"matrix")
    await barrier(sender.nc)
    await barrier(receiver.nc)
    try:
        await sub.next_msg(timeout=0.05)
        got = True
    except nats.errors.TimeoutError:
        got = False
    await sub.unsubscribe()
    return got


@dataclass
class City:
    server: EmbeddedServer
    store: CredentialStore
    model: AccessModel
    peers: dict[tuple[str, str], Peer]

    def peer(self, account: str, user: str) -> Peer:
        return self.peers[(account, user)]


def write_accounts(data_dir: Path, model: AccessModel, store: CredentialStore) -> str:
    text = render_config(model, store.public_keys())
    (data_dir / "accounts.conf").write_text(text, encoding="utf-8")
    return text


async def start_with_accounts(base: Path, model: AccessModel) -> tuple[EmbeddedServer, CredentialStore]:
    """A started nats-server in ``base`` whose accounts are ``model``'s, and its users' credentials."""
    store = CredentialStore(base / "credentials")
    store.ensure(u.key for u in model.users)
    data_dir = base / "nats"
    data_dir.mkdir()
    write_accounts(data_dir, model, store)
    server = EmbeddedServer(data_dir=data_dir, extra_config='include "accounts.conf"')
    await server.start()
    return server, store


async def provision_as_up(server: EmbeddedServer, store: CredentialStore, model: AccessModel) -> None:
    """What ``citybus up``'s provisioner makes in ``CITY``: the registry's streams, and the key-value
    buckets the instances declare (they make none themselves: bus/buckets.py)."""
    provisioner = Bus(metrics=Metrics(), source="/tests/provisioner")
    await provisioner.connect(server.url, **store.load("CITY", "provisioner").connect_options())
    try:
        await provisioner.provision_streams()
        await provision_buckets(provisioner, model.buckets[Account.CITY], None)
    finally:
        await provisioner.drain()


@pytest.fixture(scope="module")
async def city(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[City]:
    model = city_model()
    server, store = await start_with_accounts(tmp_path_factory.mktemp("access"), model)
    users = {*KINDS.values(), *(k for k in (*WITNESS.values(), *FEEDER.values()) if k is not None)}
    peers = {key: await connect(server.url, store, *key) for key in sorted(users)}
    try:
        yield City(server, store, model, peers)
    finally:
        for peer in peers.values():
            with contextlib.suppress(Exception):
                await peer.nc.close()
        await server.stop()


# -- the matrix ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ALLOWED))
async def test_matrix_every_allowed_pair_works_and_every_other_is_refused_by_the_server(
    city: City, kind: str
) -> None:
    account, user = KINDS[kind]
    peer = city.peer(account, user)
    published: set[str] = set()
    subscribed: set[str] = set()
    for column in COLUMNS:
        token = f"t-{uuid.uuid4().hex[:10]}"
        subject = cell_subject(column, account, token)
        seen_from = "SANDBOX" if column == "sandbox" else account
        column_key = "public" if column in ("sandbox", "city-site") else column

        # publish: did a reader of the subject get it?
        witness_key = WITNESS[(seen_from, column_key)]
        if witness_key is None:
            went = False
            await peer.nc.publish(subject, b"matrix")
            await barrier(peer.nc)
        else:
            went = await receives(city.peer(*witness_key), subject, peer)
        if went:
            published.add(column)
        if column != "sandbox":  # across accounts nothing arrives, whether or not it was allowed here
            assert went != peer.refused("publish", subject), (kind, "publish", column, peer.errors)

        # subscribe: did the subscription get what an allowed publisher sent?
        feeder_key = FEEDER[(seen_from, column_key)]
        if feeder_key is None:
            await peer.nc.subscribe(subject)
            await barrier(peer.nc)
            got = False
        else:
            feeder = city.peer(*feeder_key)
            got = await receives(peer, subject, feeder)
            assert not feeder.refused("publish", subject), (
                f"the feeder {feeder.label} may not publish {subject}"
            )
        if got:
            subscribed.add(column)
        if column != "sandbox":
            assert got != peer.refused("subscription", subject), (kind, "subscribe", column, peer.errors)

    assert (published, subscribed) == ALLOWED[kind]


# -- the cases issue 6 names -----------------------------------------------------------------------


async def test_a_pilot_cannot_reach_city(city: City) -> None:
    pilot = city.peer("SANDBOX", "acme")
    # Its declared contract arrives in the sandbox, never in CITY.
    subject = contract_filter(BeachObservation, "pilot-buoy")
    assert await receives(city.peer("SANDBOX", "public"), subject, pilot)
    assert not await receives(city.peer("CITY", "public"), subject, pilot)
    # And CITY's data never reaches it, though it may read the same subjects in the sandbox.
    assert not await receives(pilot, "city.public.>", city.peer("CITY", "vicotee-beach"), subject)
    assert await receives(pilot, "city.public.>", city.peer("SANDBOX", "sandbox"), subject)
    # A contract it did not declare, personal data and control are refused outright.
    air = contract_filter(AirQualityObserved, "pilot-buoy")
    await pilot.nc.publish(air, b"{}")
    await pilot.nc.subscribe("city.personal.>")
    await pilot.nc.publish(control_subject("replay", "sandbox", "pause"), b"{}")
    await barrier(pilot.nc)
    assert pilot.refused("publish", air)
    assert pilot.refused("subscription", "city.personal.>")
    assert pilot.refused("publish", "citybus.control.replay.sandbox.pause")


async def test_a_pilots_forged_city_site_reading_is_refused_by_the_server(city: City) -> None:
    """Issue 14, item 6: a pilot's reading for a city site, with the city adapter's ce-source and
    provenance=sensor, sent by a bare nats-py client logged in as the pilot, never reaches the
    sandbox: the server refuses the subject, whatever the headers say. Its own sites still go."""
    pilot = city.peer("SANDBOX", "acme")
    reader = city.peer("SANDBOX", "internal")
    forged = contract_filter(BeachObservation, CITY_SITE)
    headers = {
        "ce-source": "/adapters/beach",
        "ce-provenance": "sensor",
        "ce-type": "environment.beach-observation.v1",
    }
    sub = await reader.nc.subscribe("city.public.environment.beach-observation.*")
    await barrier(reader.nc)
    await pilot.nc.publish(forged, b'{"site": "bragernes-strand"}', headers=headers)
    await barrier(pilot.nc)
    await barrier(reader.nc)
    assert pilot.refused("publish", forged), pilot.errors
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.05)
    await sub.unsubscribe()
    # The replay may; the pilot's own entity is the pilot's; a contract of the site it did not
    # declare stays refused as before.
    assert await receives(reader, forged, city.peer("SANDBOX", "sandbox"))
    assert await receives(reader, contract_filter(BeachObservation, "acme-buoy"), pilot)
    rights = city.model.user("SANDBOX", "acme").permissions
    assert [g.subject for g in rights.deny_publish if "beach-observation" in g.subject] == [forged]
    assert all("device-status" not in g.subject for g in rights.deny_publish)  # not its contract anyway


async def test_a_pilot_follows_the_replay_clock_of_the_sandbox_only(city: City) -> None:
    replay = city.peer("SANDBOX", "sandbox")
    tick = clock_subject("sandbox")
    assert await receives(city.peer("SANDBOX", "acme"), "citybus.clock.>", replay, tick)
    assert await receives(city.peer("SANDBOX", "operator"), "citybus.clock.>", replay, tick)
    assert not await receives(city.peer("CITY", "operator"), "citybus.clock.>", replay, tick)
    # The pilot reads the sandbox's dead letters (why its messages were refused) and forges none.
    pilot = city.peer("SANDBOX", "acme")
    letter = dead_letter_subject("t-pilot")
    assert await receives(pilot, "city.internal.>", replay, letter)
    assert await receives(city.peer("SANDBOX", "internal"), "city.internal.>", replay, letter)
    assert not await receives(city.peer("SANDBOX", "internal"), "city.internal.>", pilot, letter)
    assert pilot.refused("publish", letter)


@pytest.mark.parametrize(
    "pattern",
    [
        "city.personal.>",
        "city.personal.community.volunteer-signup.*",
        "city.>",
        ">",
        "city.internal.citybus.>",
    ],
)
async def test_a_public_client_can_subscribe_neither_personal_data_nor_dead_letters(
    city: City, pattern: str
) -> None:
    public = city.peer("CITY", "public")
    await public.nc.subscribe(pattern)
    await barrier(public.nc)
    assert public.refused("subscription", pattern)


async def test_public_clients_read_public_data_but_not_others_requests_or_inboxes(city: City) -> None:
    public, internal = city.peer("CITY", "public"), city.peer("CITY", "internal")
    producer = city.peer("CITY", "vicotee-beach")
    assert await receives(public, "city.public.>", producer, contract_filter(BeachObservation, "t-pub"))
    # A request may carry what a citizen asked: a city.public.> subscriber does not get it.
    request = request_filter(BeachObservation, "bragernes-strand")
    assert not await receives(internal, "city.public.>", public, request)
    assert not public.refused("publish", request)  # the public may ask
    await public.nc.subscribe("city.public.rpc.>")
    await public.nc.subscribe("_INBOX.internal.>")
    await public.nc.subscribe("_INBOX.>")
    await public.nc.publish(dead_letter_subject("t-spam"), b"{}")
    await barrier(public.nc)
    assert public.refused("subscription", "city.public.rpc.>")
    assert public.refused("subscription", "_INBOX.internal.>")
    assert public.refused("subscription", "_INBOX.>")
    assert public.refused("publish", dead_letter_subject("t-spam"))


async def test_control_requests_are_answered_through_the_requesters_own_inbox(city: City) -> None:
    operator, producer = city.peer("CITY", "operator"), city.peer("CITY", "vicotee-beach")

    async def answer(msg: Any) -> None:
        await msg.respond(b'{"state": "running"}')

    sub = await producer.nc.subscribe(control_subject("vicotee", "vicotee-beach", "*"), cb=answer)
    await barrier(producer.nc)
    reply = await operator.nc.request(control_subject("vicotee", "vicotee-beach", "status"), b"", timeout=2)
    assert reply.data == b'{"state": "running"}'
    assert reply.subject.startswith("_INBOX.operator.")
    await sub.unsubscribe()
    # allow_responses lets it answer a request it received, not write into inboxes at will.
    await producer.nc.publish("_INBOX.operator.forged", b"{}")
    await barrier(producer.nc)
    assert producer.refused("publish", "_INBOX.operator.forged")


async def test_a_declassifier_is_the_one_door_from_personal_to_public(city: City) -> None:
    stats, public = city.peer("CITY", "volunteer-stats"), city.peer("CITY", "public")
    count = contract_filter(VolunteerCount, "bragernes")
    assert await receives(public, "city.public.>", stats, count)
    assert [u.name for u in city.model.declassifiers()] == ["volunteer-stats"]
    rows = [r for r in city.model.table() if r.user == "volunteer-stats"]
    assert rows and all(r.declassifier for r in rows)
    # Who may read personal data: exactly the two adapters that declare VolunteerSignup.
    readers = {
        (r.account, r.user)
        for r in city.model.table()
        if r.right == "subscribe" and r.subject.startswith("city.personal.")
    }
    assert readers == {("CITY", "volunteer-archive"), ("CITY", "volunteer-stats")}


async def test_raw_subjects_with_a_wildcard_first_token_stay_out_of_the_bus_namespaces(city: City) -> None:
    producer, platform = city.peer("CITY", "vicotee-beach"), city.peer("CITY", "volunteer-platform")
    # *.devices.*.up works for uplinks...
    assert await receives(producer, "*.devices.*.up", platform, "ttn.devices.unit-7.up")
    # ...but not where it meets city., citybus., _INBOX. or $JS.
    for subject in ("city.devices.unit-7.up", "citybus.devices.unit-7.up", "_INBOX.devices.x.up"):
        await platform.nc.publish(subject, b"{}")
    await barrier(platform.nc)
    assert platform.refused("publish", "city.devices.unit-7.up")
    assert platform.refused("publish", "citybus.devices.unit-7.up")
    assert platform.refused("publish", "_INBOX.devices.x.up")


async def test_the_system_user_monitors_the_server_and_nobody_else_can(city: City) -> None:
    system = await connect(city.server.url, city.store, "SYS", "system")
    try:
        reply = await system.nc.request("$SYS.REQ.SERVER.PING", b"", timeout=2)
        assert msgspec.json.decode(reply.data)["server"]["name"] == "citybus"
    finally:
        await system.nc.close()
    operator = city.peer("CITY", "operator")
    await operator.nc.publish("$SYS.REQ.SERVER.PING", b"")
    await barrier(operator.nc)
    assert operator.refused("publish", "$SYS.REQ.SERVER.PING")


async def test_anonymous_clients_are_refused(city: City) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(city.server.url, allow_reconnect=False, max_reconnect_attempts=0)


# -- JetStream: the provisioner provisions, a durable consumer gets exactly its own rights ---------


async def test_the_provisioner_provisions_streams_and_a_durable_consumer_works_with_its_minimal_rights(
    city: City,
) -> None:
    url, store = city.server.url, city.store
    service = Bus(metrics=Metrics(), source="/tests/provisioner")
    platform = Bus(metrics=Metrics(), source="/tests/platform")
    archive = Bus(metrics=Metrics(), source="/tests/archive")
    users = ((service, "provisioner"), (platform, "volunteer-platform"), (archive, "volunteer-archive"))
    for bus, user in users:
        await bus.connect(url, **store.load("CITY", user).connect_options())
    try:
        names = await service.provision_streams()
        assert "CITY_PERSONAL_COMMUNITY" in names
        signup = VolunteerSignup.example()
        ack = await platform.publish_durable(signup, timeout=5)
        assert ack.stream == "CITY_PERSONAL_COMMUNITY"

        received: list[Event[VolunteerSignup]] = []

        async def store_it(event: Event[VolunteerSignup]) -> None:
            received.append(event)

        durable = durable_name("volunteer-archive", VolunteerSignup)
        consumer = archive.consume(VolunteerSignup, store_it, durable=durable)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(consumer.run())
            await wait_for(lambda: len(received) >= 1)
            consumer.stop()
        assert received[0].data == signup
        stream = stream_name(Classification.PERSONAL, "community")
        acked = False
        async with asyncio.timeout(5):
            while not acked:  # the acknowledgement reaches the consumer asynchronously
                info = await archive.js.consumer_info(stream, durable)
                acked = info.num_ack_pending == 0 and (info.ack_floor.stream_seq or 0) >= ack.seq

        # An operator reads the state of public streams, not of personal ones.
        operator = city.peer("CITY", "operator")
        js = operator.nc.jetstream(timeout=0.5)
        assert (await js.stream_info("CITY_PUBLIC_ENVIRONMENT")).config.name == "CITY_PUBLIC_ENVIRONMENT"
        with pytest.raises(nats.errors.TimeoutError):
            await js.stream_info(stream)
        assert operator.refused("publish", js_api("STREAM", "INFO", stream))
    finally:
        for bus in (service, platform, archive):
            await bus.drain()


async def test_an_adapters_durable_consumer_works_under_access_control(city: City) -> None:
    """ctx.consume names its consumer by the rule the broker grants (bus.subjects.durable_name);
    a durable name of its own is refused at the call, in one line, not by the broker later."""
    url, store = city.server.url, city.store
    provisioner = Bus(metrics=Metrics(), source="/tests/provisioner")
    platform = Bus(metrics=Metrics(), source="/tests/platform")
    archive = Bus(metrics=Metrics(), source="/tests/archive")
    users = ((provisioner, "provisioner"), (platform, "volunteer-platform"), (archive, "volunteer-archive"))
    for bus, user in users:
        await bus.connect(url, **store.load("CITY", user).connect_options())
    ctx = Context(
        bus=archive,
        adapter="volunteer-archive",
        instance="volunteer-archive",
        consumes=(VolunteerSignup,),
        produces=(),
        metrics=AdapterMetrics(CollectorRegistry()).instance("volunteer-archive", "volunteer-archive"),
        logger=structlog.get_logger(),
    )
    try:
        await provisioner.provision_streams()
        signup = VolunteerSignup.example()
        await platform.publish_durable(signup, timeout=5)
        received: list[Event[VolunteerSignup]] = []

        async def store_it(event: Event[VolunteerSignup]) -> None:
            received.append(event)

        with pytest.raises(ConfigError, match="named 'volunteer-archive-volunteer-signup-v1'"):
            await ctx.consume(VolunteerSignup, store_it, durable="my-archive")
        own = durable_name("volunteer-archive", VolunteerSignup)
        for durable in (None, own):  # the rule's name, by default or repeated
            received.clear()
            task = asyncio.create_task(ctx.consume(VolunteerSignup, store_it, durable=durable))
            try:
                # A pull request the previous consumer left on the server may take the message
                # published after it stopped; JetStream gives it again after ack_wait (30 s).
                await wait_for(lambda t=task: any(e.data == signup for e in received) or t.done(), 45)
                assert not task.done(), task.exception()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await platform.publish_durable(VolunteerSignup.example(), timeout=5)
    finally:
        for bus in (provisioner, platform, archive):
            await bus.drain()


async def test_jetstream_refuses_consumers_that_are_not_the_adapters_own(city: City) -> None:
    archive, stats = city.peer("CITY", "volunteer-archive"), city.peer("CITY", "volunteer-stats")
    stream = stream_name(Classification.PERSONAL, "community")
    own = durable_name("volunteer-archive", VolunteerSignup)
    js = archive.nc.jetstream(timeout=0.3)
    # Another consumer's name, a wider filter under its own name, the legacy create without a filter
    # in its subject, reading the stream directly: all refused by the server.
    attempts: list[tuple[Callable[[], Awaitable[Any]], str]] = [
        (
            lambda: js.consumer_info(stream, "postgres-archive-volunteer-signup-v1"),
            js_api("CONSUMER", "INFO", stream, "postgres-archive-volunteer-signup-v1"),
        ),
        (
            lambda: js.add_consumer(
                stream, api.ConsumerConfig(name=own, durable_name=own, filter_subject="city.personal.>")
            ),
            js_api("CONSUMER", "CREATE", stream, own, "city.personal.>"),
        ),
        (
            lambda: js.add_consumer(stream, api.ConsumerConfig(durable_name=own)),
            js_api("CONSUMER", "DURABLE", "CREATE", stream, own),
        ),
        (lambda: js.get_msg(stream, 1), js_api("STREAM", "MSG", "GET", stream)),
    ]
    for call, api_subject in attempts:
        with pytest.raises(nats.errors.TimeoutError):
            await call()
        assert archive.refused("publish", api_subject), (api_subject, archive.errors)
    # A consumer without `durable` gets no JetStream rights at all.
    stats_js = stats.nc.jetstream(timeout=0.3)
    with pytest.raises(nats.errors.TimeoutError):
        await stats_js.consumer_info(stream, durable_name("volunteer-stats", VolunteerSignup))
    assert any("$js.api.consumer.info" in e.lower() for e in stats.errors)


# -- revocation ------------------------------------------------------------------------------------


async def test_a_revoked_pilot_is_disconnected_and_refused_on_reconnect(tmp_path: Path) -> None:
    model = city_model()
    store = CredentialStore(tmp_path / "credentials")
    store.ensure(u.key for u in model.users)
    data_dir = tmp_path / "nats"
    data_dir.mkdir()
    write_accounts(data_dir, model, store)
    old_seed = store.load("SANDBOX", "old-pilot").seed
    async with EmbeddedServer(data_dir=data_dir, extra_config='include "accounts.conf"') as server:
        # A pilot that kept a copy of its seed, and keeps trying to reconnect with it.
        old = Peer("SANDBOX/old-pilot", None)  # type: ignore[arg-type]

        async def on_error(exc: Exception) -> None:
            old.errors.append(str(exc))

        old.nc = await nats.connect(
            server.url,
            nkeys_seed_str=old_seed.reveal(),
            inbox_prefix="_INBOX.old-pilot",
            error_cb=on_error,
            max_reconnect_attempts=3,
            reconnect_time_wait=0.05,
        )
        assert await receives(old, "city.public.>", old, contract_filter(AirQualityObserved, "t-old"))
        acme = await connect(server.url, store, "SANDBOX", "acme")
        try:
            revoked = store.revoke("SANDBOX", "old-pilot")
            assert revoked.revoked_at is not None
            text = write_accounts(data_dir, city_model(pilots=(PILOT,)), store)
            assert revoked.public_key not in text
            assert server.pid is not None
            os.kill(server.pid, signal.SIGHUP)  # nats-server reloads its configuration
            await wait_for(lambda: old.nc.is_closed)
            assert any("authorization violation" in e.lower() for e in old.errors), old.errors
            # Its old seed no longer opens the door, and the files no longer hold it.
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await nats.connect(
                    server.url,
                    nkeys_seed_str=old_seed.reveal(),
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                )
            with pytest.raises(CredentialError, match="revoked"):
                store.load("SANDBOX", "old-pilot")
            assert ("SANDBOX", "old-pilot") not in store.ensure([("SANDBOX", "old-pilot")])
            # The other pilot is untouched.
            assert acme.nc.is_connected
            assert await receives(acme, "city.public.>", acme, contract_filter(BeachObservation, "t-acme"))
        finally:
            await acme.nc.close()
            await old.nc.close()


# -- credentials -----------------------------------------------------------------------------------


def test_credential_files_are_private_and_seeds_never_show(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "creds")
    cred = store.generate("CITY", "vicotee-beach")
    assert isinstance(cred.seed, Secret)
    seed = cred.seed.reveal()
    assert seed.startswith("SU") and cred.public_key.startswith("U")
    assert stat.S_IMODE(cred.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "creds").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "creds" / "CITY").stat().st_mode) == 0o700
    assert cred.path.read_text().strip() == seed
    for shown in (
        repr(cred),
        str(cred),
        f"{cred.seed}",
        repr(cred.seed),
        str(store.list()),
        repr(cred.connect_options()),
    ):
        assert seed not in shown
    assert cred.public_key in repr(cred)
    with pytest.raises(TypeError):
        pickle.dumps(cred.seed)
    assert store.load("CITY", "vicotee-beach").public_key == cred.public_key
    with pytest.raises(CredentialError, match="already has credentials"):
        store.generate("CITY", "vicotee-beach")
    rotated = store.generate("CITY", "vicotee-beach", replace=True)
    assert rotated.public_key != cred.public_key


def test_credential_errors_say_which_file_and_what_to_run(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "creds")
    with pytest.raises(CredentialError, match="no credentials directory .*citybus auth generate"):
        store.load("CITY", "public")
    cred = store.generate("CITY", "public")
    with pytest.raises(
        CredentialError, match=r"CITY/internal has no credentials \(expected .*internal\.nk\)"
    ):
        store.load("CITY", "internal")
    cred.path.chmod(0o644)
    with pytest.raises(
        CredentialError,
        match=re.escape(f"{cred.path} is readable by other users (mode 0644): run `chmod 600"),
    ):
        store.load("CITY", "public")
    cred.path.chmod(0o600)
    (tmp_path / "creds").chmod(0o755)
    with pytest.raises(
        CredentialError, match=re.escape(f"directory {tmp_path / 'creds'} is open to other users")
    ):
        store.load("CITY", "public")
    (tmp_path / "creds").chmod(0o700)
    cred.path.write_text("SUNOTASEED\n")
    with pytest.raises(
        CredentialError, match=re.escape(f"{cred.path} does not hold an NKey user seed")
    ) as caught:
        store.load("CITY", "public")
    assert "SUNOTASEED" not in str(caught.value)
    with pytest.raises(CredentialError, match="kebab case"):
        store.load("CITY", "../../etc/passwd")


def test_seeds_never_appear_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        store = CredentialStore(tmp_path / "creds")
        model = city_model()
        issued = store.ensure(u.key for u in model.users)
        store.revoke("SANDBOX", "old-pilot")
        text = render_config(model, store.public_keys())
        table = model.table()
    seeds = [c.seed.reveal() for c in issued.values()]
    assert logs and any(entry.get("public_key") for entry in logs)
    captured = capsys.readouterr()
    everything = "\n".join(
        [str(logs), caplog.text, captured.out, captured.err, text, str(table), str(issued)]
    )
    assert not [s for s in seeds if s in everything]


async def test_no_seed_reaches_the_server_log_or_the_bus_log(city: City) -> None:
    with structlog.testing.capture_logs() as logs:
        bus = Bus(metrics=Metrics(), source="/tests/log")
        await bus.connect(city.server.url, **city.store.load("CITY", "internal").connect_options())
        await bus.drain()
    seeds = [city.store.load(*u.key).seed.reveal() for u in city.model.users]
    assert logs  # the bus did log its connection
    server_log = city.server.log_file.read_text(encoding="utf-8", errors="replace")
    config = (city.server.data_dir / "accounts.conf").read_text()
    assert not [s for s in seeds if s in str(logs) or s in server_log or s in config]


# -- the model refuses what it cannot grant safely ------------------------------------------------


def test_a_non_declassifier_reading_personal_data_may_not_publish_public_data() -> None:
    leaky = Declaration(
        "volunteer-stats", consumes=(VolunteerSignup,), produces=(VolunteerCount,), declassifier=False
    )
    with pytest.raises(DeclassificationError, match="adapter 'volunteer-stats' .*declassifier") as caught:
        AccessModel(CONTRACTS, adapters=[leaky])
    assert "community.volunteer-signup v1 (personal)" in str(caught.value)
    # Raw subjects are unclassified: publishing them from internal data is declassifying too.
    raw = Declaration(
        "status-bridge", consumes=(DeviceStatus,), produces=(), declassifier=False, raw_publish=("ttn.x",)
    )
    with pytest.raises(DeclassificationError, match="status-bridge"):
        AccessModel(CONTRACTS, adapters=[raw])


@pytest.mark.parametrize(
    ("declaration", "pilot", "message"),
    [
        (replace(PILOT, consumes=(VolunteerSignup,)), True, "pilots never handle personal data"),
        (pilot_declaration("acme", (VolunteerSignup,)), True, "pilots never handle personal data"),
        (replace(PILOT, control="replay"), True, "guests take no control"),
        (replace(PILOT, reads=(Classification.PERSONAL,)), True, "nobody reads a whole personal class"),
        (
            Declaration("spy", (), (), False, raw_subscribe=("city.personal.>",)),
            False,
            "namespace of the bus",
        ),
        (Declaration("spy", (), (), False, raw_subscribe=("$JS.API.>",)), False, "namespace of the bus"),
        (
            Declaration("spy", (), (), False, raw_subscribe=("_INBOX.public.>",)),
            False,
            "namespace of the bus",
        ),
        (
            Declaration("spy", (), (), False, raw_publish=("citybus.control.>",)),
            False,
            "namespace of the bus",
        ),
        (Declaration("spy", (), (), False, raw_subscribe=("*.>",)), False, "literal first token"),
        (Declaration("spy", (), (), False, raw_subscribe=("a..b",)), False, "token 2 is empty"),
        (Declaration("public", (), (BeachObservation,), False), False, "name of a built-in user"),
        (Declaration("Beach", (), (), False), False, "kebab case"),
    ],
)
def test_the_model_refuses_unsafe_declarations(declaration: Declaration, pilot: bool, message: str) -> None:
    kwargs = {"guests": [declaration]} if pilot else {"adapters": [declaration]}
    with pytest.raises(AccessError, match=message):
        AccessModel(CONTRACTS, **kwargs)  # type: ignore[arg-type]


def test_two_users_of_one_name_and_bad_keys_are_refused() -> None:
    with pytest.raises(AccessError, match="two users are named 'acme' in account SANDBOX"):
        AccessModel(CONTRACTS, sandbox_adapters=[PILOT], guests=[PILOT])
    model = AccessModel(CONTRACTS)
    key = "U" + "A" * 55
    with pytest.raises(AccessError, match="same public key"):
        render_config(model, {("CITY", "public"): key, ("CITY", "internal"): key})
    with pytest.raises(AccessError, match="that is a seed"):
        render_config(model, {("CITY", "public"): "SU" + "A" * 56})


def test_mqtt_users_send_what_city_adapters_read_and_their_passwords_are_hashes_only() -> None:
    uplinks = Declaration(
        "beach",
        consumes=(),
        produces=(BeachObservation,),
        declassifier=False,
        raw_subscribe=("*.devices.*.up",),
    )
    model = AccessModel(CONTRACTS, adapters=[uplinks], mqtt_users=["network-server"])
    user = model.user("CITY", "network-server")
    assert [g.subject for g in user.permissions.publish] == ["*.devices.*.up"]
    # Where the pattern meets the bus's namespaces, the broker refuses it.
    assert "city.devices.*.up" in [g.subject for g in user.permissions.deny_publish]
    assert user.permissions.subscribe == ()
    with pytest.raises(AccessError, match="not a bcrypt hash"):
        render_config(model, {}, {("CITY", "network-server"): "plain-text-password"})
    hashed = "$2b$11$" + "a" * 53
    text = render_config(model, {}, {("CITY", "network-server"): hashed})
    assert f'password: "{hashed}"' in text and 'allowed_connection_types: ["MQTT"]' in text
    with pytest.raises(AccessError, match="name of a built-in user"):
        AccessModel(CONTRACTS, mqtt_users=["operator"])


def test_the_table_says_who_may_do_what_and_why() -> None:
    model = city_model()
    rows = model.table()
    public = {(r.right, r.subject) for r in rows if (r.account, r.user) == ("CITY", "public")}
    # The HTTP gateway reads stored public messages as this user: read-only APIs of the public
    # streams, never a consumer (whose deliver subject could be anything).
    reads = {
        ("publish", f"$JS.API.STREAM.{api}.CITY_PUBLIC_{domain}")
        for api in ("INFO", "MSG.GET")
        for domain in ("COMMUNITY", "ENVIRONMENT", "MOBILITY", "STATISTICS")
    }
    assert public == {
        ("publish", "city.public.rpc.>"),
        ("subscribe", "city.public.>"),
        ("subscribe", "_INBOX.public.>"),
        ("never subscribe", "city.public.rpc.>"),
        *reads,
    }
    assert not any(word in subject for _, subject in public for word in ("CONSUMER", "PERSONAL", "INTERNAL"))
    archive = {(r.right, r.subject) for r in rows if r.user == "volunteer-archive"}
    stream, durable = "CITY_PERSONAL_COMMUNITY", "volunteer-archive-volunteer-signup-v1"
    assert archive == {
        ("publish", "city.internal.citybus.dead-letter.*"),
        ("publish", "city.personal.citybus.personal-dead-letter.*"),  # it consumes personal data
        ("publish", f"$JS.API.CONSUMER.INFO.{stream}.{durable}"),
        ("publish", f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.city.personal.community.volunteer-signup.*"),
        ("publish", f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
        ("publish", f"$JS.ACK.{stream}.{durable}.>"),
        ("subscribe", "city.personal.community.volunteer-signup.*"),
        ("subscribe", "_INBOX.volunteer-archive.>"),
        # Sign-ups are sealed: it reads the keys to open them, and hears when one is destroyed.
        ("publish", "$JS.API.STREAM.MSG.GET.CITYBUS_PERSONAL_KEYS"),
        ("subscribe", "citybus.personal.erased"),
    }
    assert not any("keys.*" in subject or "pepper" in subject for _, subject in archive)  # it creates no key
    producer = {(r.right, r.subject) for r in rows if r.user == "vicotee-beach"}
    assert ("reply", "(reply subjects)") in producer
    assert ("never subscribe", "city.devices.*.up") in producer
    assert ("never subscribe", "_INBOX.devices.*.up") in producer
    assert [r.subject for r in rows if r.kind == Kind.SYSTEM] == [">"]
    assert all(r.why for r in rows)
    assert model.user(Account.SANDBOX, "acme").inbox_prefix == "_INBOX.acme"


def test_the_replay_never_publishes_the_bus_s_own_records_or_personal_data() -> None:
    """A replay that could publish dead letters or erasure records could forge what operators and the
    privacy metrics count; one that could publish personal data could put people into the sandbox."""
    from sandbox.access import replay_declaration

    produced = replay_declaration().produces
    assert produced and not [c for c in produced if c.__contract__.domain == "citybus"]
    assert not [c for c in produced if c.__contract__.classification is Classification.PERSONAL]
