"""Organisations are tenants, and the broker keeps them apart: the volunteer platform's rows of the
access matrix, on a real nats-server with citybus's accounts.

* an organisation offers and asks its roster on its own subjects, through the platform, and gets
  the answers in its own inbox — the whole platform running with only the rights it declares
  (its key-value bucket, reading back its sign-ups, its replies);
* it cannot offer as another organisation nor ask another's roster: the server refuses the
  publish, the platform never sees it;
* it reads no personal subject, no request, no other inbox;
* the desk sends sign-ups and nothing else; no other adapter touches the platform's bucket or
  reads back its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from adapters import Context
from adapters.access import declaration
from adapters.instances import parse_instance
from adapters.metrics import AdapterMetrics
from adapters.volunteer import VolunteerPlatform
from adapters.volunteer.access import DESK, desk_declaration, organisation_declaration
from bus import Bus, Metrics, PermissionDeniedError
from bus.access import AccessError, AccessModel, Declaration
from bus.access.keys import CredentialStore
from bus.cli import main
from bus.server import EmbeddedServer
from bus.subjects import (
    contract_filter,
    dead_letter_filter,
    js_api,
    request_filter,
    store_bucket,
    store_filter,
    store_stream,
    stream_name,
)
from contracts import (
    Classification,
    OpportunityOffer,
    OpportunityReceipt,
    Roster,
    RosterRequest,
    SignupReceipt,
    VolunteerActivity,
    VolunteerSignup,
)
from tests.test_access import (
    CONTRACTS,
    PRODUCER,
    Peer,
    barrier,
    connect,
    provision_as_up,
    start_with_accounts,
)
from tests.volunteering import ORG, OTHER, offer, signup

pytestmark = pytest.mark.slow

INSTANCE = "volunteer-platform"
PLATFORM = declaration(parse_instance(INSTANCE, VolunteerPlatform, {"organisations": [ORG, OTHER]}))
TENANTS = (organisation_declaration(ORG), organisation_declaration(OTHER), desk_declaration())
BUCKET = store_bucket(INSTANCE, "places")
PERSONAL_STREAM = stream_name(Classification.PERSONAL, "community")


@dataclass
class Platform:
    server: EmbeddedServer
    store: CredentialStore
    peers: dict[str, Peer]

    async def bus(self, user: str) -> Bus:
        bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source=f"/tests/{user}")
        await bus.connect(self.server.url, **self.store.load("CITY", user).connect_options())
        return bus


@pytest.fixture(scope="module")
async def city(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    model = AccessModel(CONTRACTS, adapters=[PLATFORM, *TENANTS, PRODUCER])
    server, store = await start_with_accounts(tmp_path_factory.mktemp("volunteer-access"), model)
    users = (INSTANCE, ORG, OTHER, DESK, "vicotee-beach", "public")
    peers = {user: await connect(server.url, store, "CITY", user) for user in users}
    await provision_as_up(server, store, model)
    try:
        yield Platform(server, store, peers)
    finally:
        for peer in peers.values():
            with contextlib.suppress(Exception):
                await peer.nc.close()
        await server.stop()


@contextlib.asynccontextmanager
async def running(city: Platform) -> AsyncIterator[VolunteerPlatform]:
    """The platform adapter, logged in as its own user."""
    bus = await city.bus(INSTANCE)
    adapter = VolunteerPlatform(PLATFORM_CONFIG)
    ready = asyncio.Event()
    ctx = Context(
        bus=bus,
        adapter=VolunteerPlatform.name,
        instance=INSTANCE,
        consumes=adapter.consumed(),
        produces=adapter.produced(),
        answers=VolunteerPlatform.answers,
        metrics=AdapterMetrics(CollectorRegistry()).instance(VolunteerPlatform.name, INSTANCE),
        logger=structlog.get_logger(),
        on_ready=ready.set,
    )
    task = asyncio.create_task(adapter.run(ctx))
    try:
        await asyncio.wait({task, asyncio.ensure_future(ready.wait())}, return_when="FIRST_COMPLETED")
        if task.done():
            task.result()  # raises what stopped it
        yield adapter
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ctx.close()
        await bus.drain()


PLATFORM_CONFIG = parse_instance(INSTANCE, VolunteerPlatform, {"organisations": [ORG, OTHER]}).config


async def test_organisations_offer_and_ask_through_the_platform_with_its_declared_rights_only(
    city: Platform,
) -> None:
    ours, theirs, desk = await city.bus(ORG), await city.bus(OTHER), await city.bus(DESK)
    try:
        async with running(city):
            receipt = (
                await ours.request(offer("access-walk", places=2), OpportunityReceipt, timeout=10)
            ).data
            assert receipt.accepted, receipt.reason
            theirs_offer = offer("access-run", places=2, organisation=OTHER)
            assert (await theirs.request(theirs_offer, OpportunityReceipt, timeout=10)).data.accepted
            for n, opportunity in ((1, "access-walk"), (2, "access-run")):
                request = signup(n, opportunity, purposes=("volunteering", "statistics"))
                assert (await desk.request(request, SignupReceipt, timeout=10)).data.status == "confirmed"
            mine = (await ours.request(RosterRequest(organisation=ORG), Roster, timeout=10)).data
            assert [e.opportunity_id for e in mine.entries] == ["access-walk"]
        # a restart, still with its own rights only: it reads its sign-ups back
        async with running(city) as again:
            assert again.book.count("access-walk") == 1 and again.book.count("access-run") == 1
    finally:
        for bus in (ours, theirs, desk):
            await bus.drain()


@pytest.mark.parametrize(
    "subject",
    [
        request_filter(OpportunityOffer, OTHER),
        request_filter(RosterRequest, OTHER),
        request_filter(RosterRequest, "*"),
        request_filter(OpportunityOffer, "some-club"),
        contract_filter(VolunteerSignup, "v-000000000001"),
        js_api("STREAM", "MSG", "GET", PERSONAL_STREAM),
    ],
)
async def test_an_organisation_cannot_ask_or_offer_as_another(city: Platform, subject: str) -> None:
    ours = city.peers[ORG]
    await ours.nc.publish(subject, b"{}")
    await barrier(ours.nc)
    assert ours.refused("publish", subject)


async def test_asking_as_another_is_refused_by_the_broker(city: Platform) -> None:
    # Bus.request notices the refusal when its wait ends (request_raw watches for it at once)
    ours = await city.bus(ORG)
    try:
        with pytest.raises(PermissionDeniedError):
            await ours.request(offer("stolen", organisation=OTHER), OpportunityReceipt, timeout=1)
        with pytest.raises(PermissionDeniedError):
            # Refused within a round trip, not after the timeout, as if the platform were slow: a
            # wait of a minute would fail this test by its own timeout (the module's mark).
            await ours.request(RosterRequest(organisation=OTHER), Roster, timeout=600)
    finally:
        await ours.drain()


@pytest.mark.parametrize(
    "subject",
    [
        "city.personal.>",
        contract_filter(VolunteerSignup),
        contract_filter(VolunteerActivity),
        request_filter(RosterRequest, ORG),  # not even the requests on its own subject
        request_filter(OpportunityOffer, OTHER),
        "_INBOX.rode-kors-drammen.>",
        "city.internal.>",
    ],
)
async def test_an_organisation_subscribes_to_nothing_personal_nor_others_requests(
    city: Platform, subject: str
) -> None:
    ours = city.peers[ORG]
    sub = await ours.nc.subscribe(subject)
    await barrier(ours.nc)
    assert ours.refused("subscription", subject)
    await sub.unsubscribe()


@pytest.mark.parametrize(
    ("user", "subject", "allowed"),
    [
        (DESK, request_filter(OpportunityOffer, ORG), False),
        (DESK, request_filter(RosterRequest, ORG), False),
        (DESK, "city.personal.rpc.community.signup-request.access-walk", True),
        (ORG, "city.personal.rpc.community.signup-request.access-walk", False),
        ("public", request_filter(RosterRequest, ORG), False),
        ("vicotee-beach", store_filter(BUCKET).replace(">", "access-walk"), False),
        ("vicotee-beach", js_api("DIRECT", "GET", store_stream(BUCKET), "$KV", BUCKET, "x"), False),
        ("vicotee-beach", js_api("STREAM", "MSG", "GET", PERSONAL_STREAM), False),
        (INSTANCE, js_api("STREAM", "MSG", "GET", PERSONAL_STREAM), True),
        (INSTANCE, js_api("STREAM", "INFO", store_stream(BUCKET)), True),
        (INSTANCE, js_api("STREAM", "MSG", "GET", stream_name(Classification.PUBLIC, "environment")), False),
        (INSTANCE, js_api("STREAM", "CREATE", store_stream(store_bucket("other", "places"))), False),
    ],
)
async def test_who_else_may_publish_what_around_the_platform(
    city: Platform, user: str, subject: str, allowed: bool
) -> None:
    peer = city.peers[user]
    await peer.nc.publish(subject, b"{}")
    await barrier(peer.nc)
    assert peer.refused("publish", subject) is not allowed


async def test_the_platform_reads_the_personal_sign_ups_and_the_public_does_not(city: Platform) -> None:
    for user, allowed in ((INSTANCE, True), ("public", False), (ORG, False)):
        peer = city.peers[user]
        subject = contract_filter(VolunteerSignup)
        sub = await peer.nc.subscribe(subject)
        await barrier(peer.nc)
        assert peer.refused("subscription", subject) is not allowed, user
        await sub.unsubscribe()


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            Declaration("club", (), (), False, asks=("city.internal.rpc.community.>",)),
            "is not a request subject",
        ),
        (
            Declaration("club", (), (), False, asks=("city.internal.community.opportunity.x",)),
            "not a request",
        ),
        (Declaration("club", (), (), False, stores=("a.b",)), "is not a bucket name"),
        (Declaration("club", (), (), False, recalls=(VolunteerSignup,)), "which it does not produce"),
    ],
)
def test_the_model_refuses_asks_stores_and_recalls_it_cannot_grant(
    declared: Declaration, message: str
) -> None:
    with pytest.raises(AccessError, match=message):
        AccessModel(CONTRACTS, adapters=[declared])


def test_the_table_says_what_an_organisation_may_do_and_why() -> None:
    model = AccessModel(CONTRACTS, adapters=[PLATFORM, *TENANTS])
    rows = [(r.right, r.subject) for r in model.table() if r.user == ORG]
    assert rows == [
        ("publish", request_filter(OpportunityOffer, ORG)),
        ("publish", request_filter(RosterRequest, ORG)),
        ("subscribe", f"_INBOX.{ORG}.>"),
        ("never publish", dead_letter_filter()),
    ]
    (kind,) = {r.kind for r in model.table() if r.user == ORG}
    assert kind == "organisation"


PLATFORM_TOML = f"""\
[adapters.{INSTANCE}]
adapter = "volunteer-platform"
account = "city"
organisations = ["{ORG}", "{OTHER}"]
"""


def test_citybus_auth_issues_the_organisations_their_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "citybus.toml"
    config.write_text(PLATFORM_TOML)
    directory = tmp_path / "credentials"
    saved = structlog.get_config()  # the CLI configures logging for the process
    try:
        assert main(["--config", str(config), "auth", "generate", "--dir", str(directory)]) == 0
        capsys.readouterr()
        assert main(["--config", str(config), "auth", "show", "--user", ORG, "--dir", str(directory)]) == 0
        shown = capsys.readouterr().out
    finally:
        structlog.configure(**saved)
    store = CredentialStore(directory)
    for user in (ORG, OTHER, DESK, INSTANCE):
        assert store.load("CITY", user).connect_options()
    assert request_filter(OpportunityOffer, ORG) in shown and request_filter(RosterRequest, ORG) in shown
    assert OTHER not in shown


async def test_a_roster_is_never_answered_onto_a_stored_subject_the_asker_names(city: Platform) -> None:
    """The reply subject is the asker's to choose and the broker does not check it: an organisation
    that names a public (or personal) stream's subject as its reply-to must not get the platform to
    publish its volunteers' names and e-mails there, unsealed, for everyone to read and no erasure
    to find."""
    from contracts import Opportunity

    ours, desk = await city.bus(ORG), await city.bus(DESK)
    public = city.peers["public"]
    leak = contract_filter(Opportunity, "leak")
    seen: list[bytes] = []

    async def heard(msg: object) -> None:
        seen.append(msg.data)  # type: ignore[attr-defined]

    sub = await public.nc.subscribe(leak, cb=heard)
    await barrier(public.nc)
    try:
        async with running(city):
            offered = await ours.request(offer("leak-walk", places=2), OpportunityReceipt, timeout=10)
            assert offered.data.accepted
            request = signup(7, "leak-walk")
            assert (await desk.request(request, SignupReceipt, timeout=10)).data.status == "confirmed"
            raw = city.peers[ORG].nc
            body = b'{"organisation": "%s"}' % ORG.encode()
            headers = {
                "ce-type": RosterRequest.__contract__.type,
                "content-type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": "0198a0c0-0000-7000-8000-000000000001",
                "ce-source": "/tests/org",
                "ce-time": "2026-06-01T10:00:00+00:00",
            }
            await raw.publish(request_filter(RosterRequest, ORG), body, reply=leak, headers=headers)
            await barrier(raw)
            await asyncio.sleep(1.0)
    finally:
        await sub.unsubscribe()
        for bus in (ours, desk):
            await bus.drain()
    assert not [s for s in seen if b"Kari" in s], seen
