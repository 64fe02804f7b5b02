"""Tailored answers go only to the person who asked, and the broker sees to it: the statistics
service's rows of the access matrix, on a real nats-server with citybus's accounts.

* a citizen's user asks about itself only: a request for another person, for everyone (``*``) or
  for a release is refused by the server before any responder sees it;
* it reads nothing but its own inbox: not another's inbox, not ``_INBOX.>``, not the request
  subjects, not a whole class;
* nobody else may ask comparisons but the desk — not the organisations, the pilots, the public,
  internal or gateway users, the operator or the analyst — and nobody but the service hears them;
* releases are asked by the analyst (and by ``internal``, whose requests the internal class are:
  the budget bounds what any asker can spend);
* ``citybus auth add-citizen`` issues a citizen's user, in the sandbox or in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
import structlog
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from adapters import Context
from adapters.access import declaration
from adapters.gateway import Gateway
from adapters.instances import parse_instance
from adapters.metrics import AdapterMetrics
from adapters.statistics import StatisticsService
from adapters.statistics.access import (
    ANALYST,
    CITIZENS,
    DESK,
    analyst_declaration,
    citizen_declaration,
    declared,
    desk_declaration,
)
from adapters.volunteer import VolunteerPlatform
from adapters.volunteer.access import organisation_declaration
from bus import Bus, Metrics, PermissionDeniedError
from bus.access import AccessError, AccessModel, Account, Declaration
from bus.access.guests import Guest, load_guests
from bus.access.keys import CredentialStore
from bus.cli import main
from bus.config import load_config
from bus.server import EmbeddedServer
from bus.subjects import contract_filter, dead_letter_filter, request_filter
from contracts import (
    Aggregate,
    Comparison,
    ComparisonRequest,
    Opportunity,
    ReleaseRequest,
    RosterRequest,
    VolunteerActivity,
)
from sandbox.access import pilot_declaration
from tests.test_access import (
    CONTRACTS,
    PRODUCER,
    Peer,
    barrier,
    connect,
    provision_as_up,
    start_with_accounts,
)

pytestmark = pytest.mark.slow

A = "v-00000000000a"
B = "v-00000000000b"
ORG = "drammen-frivilligsentral"
PILOT = "acme"
ADDED = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
SERVICE_CONFIG = parse_instance("statistics", StatisticsService, {"account": "city"})
SERVICE = declaration(SERVICE_CONFIG)
PLATFORM = declaration(parse_instance("volunteer-platform", VolunteerPlatform, {"organisations": [ORG]}))
GATEWAY = declaration(parse_instance("gateway", Gateway, {}))


def citizen(person: str, account: Account = Account.CITY) -> Declaration:
    """A citizen's user as ``citybus auth add-citizen`` makes it."""
    return Guest(CITIZENS, person, (), ADDED, account).declaration()


def model() -> AccessModel:
    return AccessModel(
        CONTRACTS,
        adapters=[SERVICE, desk_declaration(), analyst_declaration(), organisation_declaration(ORG)]
        + [PRODUCER, PLATFORM],
        sandbox_adapters=[GATEWAY],
        guests=[citizen(A), citizen(B), pilot_declaration(PILOT, ())],
    )


@dataclass
class City:
    server: EmbeddedServer
    store: CredentialStore
    peers: dict[str, Peer]

    async def bus(self, user: str) -> Bus:
        """A bus logged in as ``user`` of ``CITY``."""
        bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source=f"/tests/{user}")
        await bus.connect(self.server.url, **self.store.load("CITY", user).connect_options())
        return bus


PEERS = {
    A: Account.CITY,
    B: Account.CITY,
    DESK: Account.CITY,
    ANALYST: Account.CITY,
    ORG: Account.CITY,
    "vicotee-beach": Account.CITY,
    "public": Account.CITY,
    "internal": Account.CITY,
    "operator": Account.CITY,
    "statistics": Account.CITY,
    "gateway": Account.SANDBOX,
    PILOT: Account.SANDBOX,
}


@pytest.fixture(scope="module")
async def city(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[City]:
    access = model()
    server, store = await start_with_accounts(tmp_path_factory.mktemp("statistics-access"), access)
    peers = {user: await connect(server.url, store, account.value, user) for user, account in PEERS.items()}
    await provision_as_up(server, store, access)
    try:
        yield City(server, store, peers)
    finally:
        for peer in peers.values():
            with contextlib.suppress(Exception):
                await peer.nc.close()
        await server.stop()


async def publishes(peer: Peer, subject: str) -> bool:
    """Whether the server lets ``peer`` publish on ``subject`` (a refusal comes back as an error)."""
    await peer.nc.publish(subject, b"{}")
    await barrier(peer.nc)
    return not peer.refused("publish", subject)


async def subscribes(peer: Peer, subject: str) -> bool:
    """Whether the server lets ``peer`` subscribe to ``subject``."""
    sub = await peer.nc.subscribe(subject)
    await barrier(peer.nc)
    allowed = not peer.refused("subscription", subject)
    await sub.unsubscribe()
    return allowed


ASK_A = request_filter(ComparisonRequest, A)
ASK_B = request_filter(ComparisonRequest, B)
RELEASE = request_filter(ReleaseRequest, "volunteer-hours")


@pytest.mark.parametrize(
    ("subject", "allowed"),
    [
        (ASK_A, True),
        (ASK_B, False),
        (request_filter(ComparisonRequest, "v-0000000000ff"), False),
        (RELEASE, False),
        (request_filter(RosterRequest, ORG), False),
        (contract_filter(Aggregate, "volunteer-hours"), False),
        (contract_filter(VolunteerActivity, A), False),
        (dead_letter_filter().replace(">", "x"), False),
        ("_INBOX.v-00000000000b.x", False),
    ],
)
async def test_a_citizen_asks_about_itself_and_nothing_else(city: City, subject: str, allowed: bool) -> None:
    assert await publishes(city.peers[A], subject) is allowed


@pytest.mark.parametrize(
    ("subject", "allowed"),
    [
        (f"_INBOX.{A}.>", True),
        (f"_INBOX.{B}.>", False),
        (f"_INBOX.{DESK}.>", False),
        ("_INBOX.>", False),
        (">", False),
        (ASK_A, False),  # not even the requests on its own subject
        (request_filter(ComparisonRequest), False),
        ("city.personal.>", False),
        ("city.public.>", False),
        (contract_filter(Aggregate), False),
    ],
)
async def test_a_citizen_reads_its_own_inbox_only(city: City, subject: str, allowed: bool) -> None:
    assert await subscribes(city.peers[A], subject) is allowed


# Who may ask: every user of both accounts against the two request subjects. A personal request is
# asked by the desk (anyone) and the person's own user; a release (internal) by the analyst and by
# the internal client kind, which asks internal services.
ASKERS = {
    A: (True, False),
    B: (False, False),
    DESK: (True, False),
    ANALYST: (False, True),
    ORG: (False, False),
    "vicotee-beach": (False, False),
    "public": (False, False),
    "internal": (False, True),
    "operator": (False, False),
    "statistics": (False, False),
    "gateway": (False, False),
    PILOT: (False, False),
}


@pytest.mark.parametrize("user", sorted(ASKERS))
async def test_who_may_ask_a_comparison_or_a_release(city: City, user: str) -> None:
    compare, release = ASKERS[user]
    peer = city.peers[user]
    assert await publishes(peer, ASK_A) is compare
    assert await publishes(peer, RELEASE) is release


@pytest.mark.parametrize("user", sorted(set(PEERS) - {"statistics"}))
async def test_nobody_but_the_service_hears_the_requests(city: City, user: str) -> None:
    peer = city.peers[user]
    for subject in (ASK_A, request_filter(ComparisonRequest), RELEASE, "city.personal.rpc.>", "_INBOX.>"):
        assert not await subscribes(peer, subject), (user, subject)


async def test_the_service_hears_the_requests_it_answers(city: City) -> None:
    peer = city.peers["statistics"]
    assert await subscribes(peer, request_filter(ComparisonRequest))
    assert await subscribes(peer, request_filter(ReleaseRequest))
    assert not await subscribes(peer, f"_INBOX.{A}.>")


def test_the_table_says_what_a_citizen_may_do_and_why() -> None:
    access = model()
    rows = [(r.account, r.right, r.subject) for r in access.table() if r.user == A]
    assert rows == [
        ("CITY", "publish", ASK_A),
        ("CITY", "subscribe", f"_INBOX.{A}.>"),
        ("CITY", "never publish", dead_letter_filter()),
    ]
    assert {r.kind for r in access.table() if r.user == A} == {"citizen"}
    assert [(r.right, r.subject) for r in access.table() if r.user == DESK][0] == (
        "publish",
        request_filter(ComparisonRequest),
    )


def test_a_citizen_in_the_sandbox_is_a_sandbox_user() -> None:
    access = AccessModel(CONTRACTS, guests=[citizen(A, Account.SANDBOX)])
    assert access.user(Account.SANDBOX, A).title == "citizen"
    with pytest.raises(KeyError):
        access.user(Account.CITY, A)


@pytest.mark.parametrize(
    ("name", "produces", "message"),
    [
        ("kari-nordmann", (), "named by the person's id"),
        ("v-12", (), "8 to 32 hex digits"),
        (A, (Aggregate,), "a citizen publishes nothing"),
    ],
)
def test_a_citizen_is_a_person_id_that_publishes_nothing(
    name: str, produces: tuple[type[Aggregate], ...], message: str
) -> None:
    with pytest.raises(AccessError, match=message):
        citizen_declaration(name, produces)


@pytest.mark.parametrize(
    ("toml", "account"),
    [
        ("", "sandbox"),  # the default instance, next to the sandbox
        ('[adapters.stats]\nadapter = "statistics"\naccount = "city"\n', "city"),
        ('[adapters.stats]\nadapter = "statistics"\nenabled = false\n', None),
    ],
)
def test_the_desk_and_the_analyst_are_where_a_statistics_service_runs(
    tmp_path: Path, toml: str, account: str | None
) -> None:
    path = tmp_path / "citybus.toml"
    path.write_text(toml)
    found = declared(load_config(path))
    users = {"city": [d.name for d in found.city], "sandbox": [d.name for d in found.sandbox]}
    assert users == {key: [DESK, ANALYST] if key == account else [] for key in users}


@dataclass
class Cli:
    config: Path
    directory: Path
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        saved = structlog.get_config()  # the CLI configures logging for the process
        try:
            status = main(["--config", str(self.config), "auth", *args, "--dir", str(self.directory)])
        finally:
            structlog.configure(**saved)
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err


def test_citybus_auth_adds_a_citizen_to_the_sandbox_or_production(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "citybus.toml"
    config.write_text("")
    cli = Cli(config, tmp_path / "credentials", capsys)
    status, out, _ = cli("add-citizen", A)
    assert status == 0 and f"added citizen {A} to the sandbox (account SANDBOX)" in out
    assert f"publishes  {ASK_A}" in out
    status, out, _ = cli("add-citizen", B, "--account", "city")
    assert status == 0 and f"added citizen {B} to production (account CITY)" in out
    store = CredentialStore(cli.directory)
    assert store.load("SANDBOX", A).connect_options()["inbox_prefix"] == f"_INBOX.{A}"
    assert store.load("CITY", B).connect_options()
    assert {(g.name, g.account) for g in load_guests(cli.directory, CITIZENS)} == {
        (A, Account.SANDBOX),
        (B, Account.CITY),
    }
    status, out, _ = cli("show", "--user", B)
    assert status == 0 and request_filter(ComparisonRequest, B) in out and ASK_A not in out
    # one line for what cannot be a citizen, and nothing issued for it
    status, out, err = cli("add-citizen", "v-abc")
    assert status == 1 and "8 to 32 hex digits" in err and len(err.strip().splitlines()) == 1
    assert not (cli.directory / "SANDBOX" / "v-abc.nk").exists()
    with pytest.raises(SystemExit, match="2"):
        cli("add-citizen", "v-00000000000c", "--account", "sys")
    assert "invalid choice: 'SYS' (choose from 'SANDBOX', 'CITY')" in capsys.readouterr().err
    # revoked: out of citizens.toml, its seed gone, and added again later with new credentials
    status, out, _ = cli("revoke", B)
    assert status == 0 and f"CITY/{B} revoked" in out
    assert [g.name for g in load_guests(cli.directory, CITIZENS)] == [A]
    assert not (cli.directory / "CITY" / f"{B}.nk").exists()
    assert f"`citybus auth add-citizen {B} --account city [--produces ...]`" in out


QUIET = structlog.make_filtering_bound_logger(logging.WARNING)


@contextlib.asynccontextmanager
async def running(city: City) -> AsyncIterator[StatisticsService]:
    """The statistics service, logged in as its own user: its declared rights and nothing else."""
    bus = await city.bus(SERVICE.name)
    adapter = StatisticsService(SERVICE_CONFIG.config)
    ready = asyncio.Event()
    ctx = Context(
        bus=bus,
        adapter=StatisticsService.name,
        instance=SERVICE.name,
        consumes=adapter.consumed(),
        produces=adapter.produced(),
        answers=StatisticsService.answers,
        metrics=AdapterMetrics(CollectorRegistry()).instance(StatisticsService.name, SERVICE.name),
        # its warnings to standard error, and nothing in the output of the commands run beside it
        logger=structlog.wrap_logger(structlog.PrintLogger(sys.stderr), wrapper_class=QUIET),
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


OSLO = ZoneInfo("Europe/Oslo")
BRAGERNES = {"type": "Point", "coordinates": [10.2040, 59.7440]}


def opportunity(opportunity_id: str, starts: datetime) -> Opportunity:
    """A public opportunity at Bragernes, asking for beach clean-up."""
    given: dict[str, Any] = {
        **Opportunity.__contract__.example,
        "opportunity_id": opportunity_id,
        "organisation": ORG,
        "location": BRAGERNES,
        "starts": starts.isoformat(),
        "ends": (starts + timedelta(hours=3)).isoformat(),
        "skills": ["beach-cleanup"],
    }
    return msgspec.convert(given, Opportunity)


def activity(person: str, opportunity_id: str, starts: datetime, hours: float) -> VolunteerActivity:
    """A volunteer's hours on an opportunity, as the platform publishes them (consent to statistics)."""
    given: dict[str, Any] = {
        **VolunteerActivity.__contract__.example,
        "volunteer_id": person,
        "opportunity_id": opportunity_id,
        "organisation": ORG,
        "skills": ["beach-cleanup"],
        "starts": starts.isoformat(),
        "hours": hours,
    }
    return msgspec.convert(given, VolunteerActivity)


# Where each other connection listens: everything its user may subscribe that could carry an answer.
WITNESSES = {
    B: (f"_INBOX.{B}.>",),
    DESK: (f"_INBOX.{DESK}.>",),
    ANALYST: (f"_INBOX.{ANALYST}.>",),
    ORG: (f"_INBOX.{ORG}.>",),
    "public": ("city.public.>", "_INBOX.public.>"),
    "internal": ("city.public.>", "city.internal.>", "_INBOX.internal.>"),
    "operator": ("city.public.>", "city.internal.>", "citybus.clock.>", "_INBOX.operator.>"),
    "vicotee-beach": ("_INBOX.vicotee-beach.>",),
}


async def stats(city: City, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """``citybus stats ARGS`` against the test's server: its status, output and errors."""
    config = tmp_path / "citybus.toml"
    config.write_text("")
    saved = structlog.get_config()  # the CLI configures logging for the process
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            argv = ["--config", str(config), "stats", *args, "--nats", city.server.url]
            status = await asyncio.to_thread(main, argv)
    finally:
        structlog.configure(**saved)
    return status, out.getvalue(), err.getvalue()


async def test_a_citizen_gets_its_own_figures_and_no_other_connection_sees_them(
    city: City, tmp_path: Path
) -> None:
    heard: dict[str, list[bytes]] = {user: [] for user in WITNESSES}
    subs = []
    for user, patterns in WITNESSES.items():
        peer = city.peers[user]

        async def listen(msg: Msg, user: str = user) -> None:
            heard[user].append(msg.subject.encode() + b" " + msg.data)

        for pattern in patterns:
            subs.append(await peer.nc.subscribe(pattern, cb=listen))
        await barrier(peer.nc)
        assert not any(peer.refused("subscription", p) for p in patterns), user
    platform, a = await city.bus(PLATFORM.name), await city.bus(A)
    now = datetime.now(OSLO)
    try:
        async with running(city):
            await platform.publish(opportunity("access-cleanup", now))
            await platform.publish(activity(A, "access-cleanup", now, hours=3.0))
            ask = ComparisonRequest(person_id=A)
            for _ in range(400):  # until the service has counted the hours (20 s at most)
                mine = (await a.request(ask, Comparison, timeout=10)).data
                if mine.yours:
                    break
                await asyncio.sleep(0.05)
            assert mine.person_id == A and [f.value for f in mine.yours] == [3.0]
            assert mine.yours[0].group[1] == "beach-cleanup"
            # ... and for another person, the broker refuses the request before the service sees it
            with pytest.raises(PermissionDeniedError):
                await a.request(ComparisonRequest(person_id=B), Comparison, timeout=600)
            # the same from the command line, with the seed `citybus auth add-citizen` hands the person
            seed = city.store.seed_path("CITY", A)
            status, out, err = await stats(city, tmp_path, "compare", A, "--nkey", str(seed))
            assert status == 0 and out.startswith(f"volunteer-hours, {mine.period}, for {A}")
            assert "bragernes / beach-cleanup" in out and "computed for you alone" in out
            status, out, err = await stats(city, tmp_path, "compare", B, "--nkey", str(seed))
            assert (status, out) == (1, "") and len(err.strip().splitlines()) == 1
            assert f"the broker refused CITY/{A} to ask about {B}: a citizen asks only about" in err
            for peer in city.peers.values():
                await barrier(peer.nc)
    finally:
        for sub in subs:
            await sub.unsubscribe()
        await platform.drain()
        await a.drain()
    assert heard["public"], "the witnesses listened (the public heard the opportunity)"
    for user, messages in heard.items():
        assert not [m for m in messages if A.encode() in m or b"yours" in m], user
