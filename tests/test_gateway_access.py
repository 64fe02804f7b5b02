"""Who sees what through the HTTP gateway, end to end: the access matrix over HTTP and SSE.

One real ``citybus up`` (a child process, access control on) replays the shipped Drammen day into
``SANDBOX`` and runs the gateway there. An internal reading (``operations.device-status``) is
published as the sandbox's ``replay`` user; nothing may publish personal data there. The tokens are
issued and revoked with the real ``citybus auth`` while it runs. Then every caller — no token, an
``internal`` token, a ``public`` token, a revoked token, a bogus one, and a ``CITY`` token at this
``SANDBOX`` gateway — asks for a public, an internal and a personal contract through every way in:
the entity list, the last value, the history, the SSE stream, the NGSI-LD view and the catalogue;
and every caller asks the journey planner (which ``citybus up`` runs beside them) through the gateway.

The gateway's own checks only explain a refusal; the broker enforces it. So the users the gateway
reads as are shown refused by the broker itself: ``SANDBOX/public`` may neither subscribe to an
internal subject nor get an internal stream's message, and the gateway is connected as those users,
not as itself.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from adapters.gateway.sdm import Vocabulary
from bus import Bus, Metrics, subjects
from bus.access import TokenStore
from bus.access.keys import CredentialStore
from bus.reading import last_stored
from contracts import Classification, default_registry
from tests.test_cli import (
    Background,
    Result,
    citybus_env,
    run_citybus,
    server_connections,
)

pytestmark = pytest.mark.slow

CONFIG = """\
[adapters.sandbox]
adapter = "sandbox-replay"
speed = 0
loop = false

[adapters.gateway]
adapter = "gateway"
account = "sandbox"
clock = "wall"
port = 0
heartbeat = 0.2

[adapters.journey-planner]
adapter = "journey-planner"
account = "sandbox"
clock = "wall"

[adapters.journey-planner.timetable]
file = "{timetable}"
"""
TIMETABLE = Path(__file__).resolve().parents[1] / "sandbox/data/sources/transport/entur_nsb_gtfs_2018.zip"

PUBLIC = "environment.beach-observation"
PUBLIC_ENTITY = "bragernes-strand"
INTERNAL = "operations.device-status"
INTERNAL_ENTITY = "vicotee-bragernes-strand-1"
PERSONAL = "community.volunteer-signup"
PERSONAL_ENTITY = "bragernes-strand"

CALLERS = ("anonymous", "internal", "public", "revoked", "bogus", "other-account")
"""Who asks: no token; a token for SANDBOX/internal; for SANDBOX/public; a revoked token; a token
nobody issued; a token for CITY/internal, asked of this SANDBOX gateway."""

EXPECTED: dict[str, dict[str, int]] = {
    contract: dict(zip(CALLERS, statuses, strict=True))
    for contract, statuses in {
        #          anonymous internal public revoked bogus other-account
        PUBLIC: (200, 200, 200, 401, 401, 401),
        INTERNAL: (401, 200, 403, 401, 401, 401),
        PERSONAL: (403, 403, 403, 401, 401, 401),
    }.items()
}
"""The matrix: public data for anyone without a token or with a valid one; internal data only with a
token of a user that reads it (401 without a token: authenticate; 403 with the public user's: that
token never will); personal data never. A token that is not valid here is refused whatever it asks
for, never quietly taken for the public."""


@dataclass
class Gateway:
    """The running ``citybus up``, its gateway's address and the callers' headers."""

    process: Background
    data_dir: Path
    cwd: Path
    env: dict[str, str]
    nats_url: str
    url: str
    headers: dict[str, dict[str, str]]
    outputs: list[str]

    @property
    def credentials(self) -> Path:
        return self.data_dir / "credentials"

    async def citybus(self, *args: str) -> Result:
        result = await run_citybus(*args, cwd=self.cwd, env=self.env)
        self.outputs += [result.stdout, result.stderr]
        return result


def device_status(battery: float) -> str:
    example = dict(default_registry().get(INTERNAL).__contract__.example)
    return json.dumps({**example, "device": INTERNAL_ENTITY, "battery": battery})


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    base = tmp_path_factory.mktemp("gateway-access")
    data_dir, cwd = base / "data", base / "cwd"
    cwd.mkdir()
    (cwd / "citybus.toml").write_text(CONFIG.format(timetable=TIMETABLE))
    env = citybus_env(data_dir)
    process = await Background.start("up", cwd=cwd, env=env)
    try:
        nats_url = (await process.wait_said(r"^citybus is up: NATS at (nats://\S+)$")).group(1)
        serving = await process.wait_said(r'"event": "gateway serving"')
        url = json.loads(serving.string)["url"]
        running = Gateway(process, data_dir, cwd, env, nats_url, url, {}, [])
        published = await running.citybus("publish", INTERNAL, device_status(87.0), "--user", "replay")
        assert published.returncode == 0, published
        assert "(in SANDBOX, CITY_INTERNAL_OPERATIONS #" in published.stdout, published

        async def token(name: str, user: str, *account: str) -> str:
            added = await running.citybus("auth", "add-token", name, "--user", user, *account)
            assert added.returncode == 0, added
            return added.stdout.strip()

        tokens = {
            "internal": await token("research", "internal"),
            "public": await token("open-data", "public"),
            "revoked": await token("former", "internal"),
            "bogus": "cbt_" + "x" * 43,
            "other-account": await token("production", "internal", "--account", "city"),
        }
        revoked = await running.citybus("auth", "revoke-token", "former")
        assert revoked.returncode == 0, revoked
        running.headers = {"anonymous": {}} | {
            caller: {"Authorization": f"Bearer {token}"} for caller, token in tokens.items()
        }
        yield running
    finally:
        try:
            await process.stop(signal.SIGINT)
        finally:
            await process.kill()


@dataclass(frozen=True)
class Reply:
    """What a GET answered: JSON decoded; an event stream's first bytes."""

    status: int
    kind: str
    body: Any
    challenge: str


async def request(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Reply:
    async with http.get(url, headers=headers) as response:
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.content_type == "text/event-stream":
            return Reply(response.status, response.content_type, await response.content.readany(), challenge)
        raw = await response.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        return Reply(response.status, response.content_type, body, challenge)


async def settled_public_entity(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    """Wait until the public feed holds the replayed beach (a failure, not a timing assertion, if
    it never does): the replay runs as fast as it can while the gateway starts."""
    url = f"{gateway.url}/api/v1/contracts/{PUBLIC}/entities/{PUBLIC_ENTITY}"
    async with asyncio.timeout(30):
        while (await request(http, url, {})).status != 200:  # noqa: ASYNC110 - the gateway's state, polled
            await asyncio.sleep(0.05)


# -- the matrix over HTTP ---------------------------------------------------------------------------

ENTITY_WAYS = {
    "entity list": "/api/v1/contracts/{contract}/entities",
    "last value": "/api/v1/contracts/{contract}/entities/{entity}",
    "history": "/api/v1/contracts/{contract}/entities/{entity}/history",
}
ENTITIES = {PUBLIC: PUBLIC_ENTITY, INTERNAL: INTERNAL_ENTITY, PERSONAL: PERSONAL_ENTITY}


@pytest.mark.parametrize("way", list(ENTITY_WAYS))
async def test_the_entity_api_serves_each_caller_what_its_user_reads(gateway: Gateway, way: str) -> None:
    async with aiohttp.ClientSession() as http:
        await settled_public_entity(http, gateway)
        seen: dict[tuple[str, str], int] = {}
        for contract in EXPECTED:
            path = ENTITY_WAYS[way].format(contract=contract, entity=ENTITIES[contract])
            for caller in CALLERS:
                reply = await request(http, gateway.url + path, gateway.headers[caller])
                seen[(contract, caller)] = reply.status
                if reply.status == 200:
                    events = reply.body if isinstance(reply.body, list) else [reply.body]
                    assert events and {e["contract"] for e in events} == {contract}, (way, caller, reply)
                    assert {e["classification"] for e in events} <= {"public", "internal"}
                else:
                    assert reply.kind == "application/problem+json", (way, contract, caller, reply)
                    assert reply.body["status"] == reply.status and reply.body["detail"], reply
                    assert (reply.status == 401) == reply.challenge.startswith("Bearer"), reply
    assert seen == {(c, caller): EXPECTED[c][caller] for c in EXPECTED for caller in CALLERS}


async def test_the_ngsi_ld_view_serves_each_caller_what_its_user_reads(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        await settled_public_entity(http, gateway)
        vocabulary = Vocabulary(default_registry())
        seen: dict[tuple[str, str], int] = {}
        for contract in (PUBLIC, INTERNAL):
            type_ = vocabulary.type_of(contract)
            assert type_ is not None, contract
            for caller in CALLERS:
                url = f"{gateway.url}/ngsi-ld/v1/entities?type={type_}"
                reply = await request(http, url, gateway.headers[caller])
                seen[(contract, caller)] = reply.status
                if reply.status == 200:
                    assert reply.body and all(e["type"] == type_ for e in reply.body), (caller, reply)
        assert seen == {(c, caller): EXPECTED[c][caller] for c in (PUBLIC, INTERNAL) for caller in CALLERS}
        # Personal data is not even listed among the types, whoever asks.
        for caller in ("anonymous", "internal", "public"):
            reply = await request(http, f"{gateway.url}/ngsi-ld/v1/types", gateway.headers[caller])
            assert reply.status == 200, reply
            assert "olunteer" not in json.dumps(reply.body), reply
        # Nor can it be asked for: the view has no type for it, so a query by its name finds nothing
        # (as NGSI-LD answers for any unknown type); a token that is not valid is still refused.
        personal = vocabulary.type_of(PERSONAL) or "VolunteerSignup"
        for caller in CALLERS:
            url = f"{gateway.url}/ngsi-ld/v1/entities?type={personal}"
            reply = await request(http, url, gateway.headers[caller])
            if EXPECTED[PERSONAL][caller] == 401:
                assert reply.status == 401, (caller, reply)
            else:
                assert (reply.status, reply.body) == (200, []), (caller, reply)


# -- the matrix over SSE ----------------------------------------------------------------------------


async def test_the_event_stream_serves_each_caller_what_its_user_reads(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        seen: dict[tuple[str, str], int] = {}
        for contract in EXPECTED:
            for caller in CALLERS:
                url = f"{gateway.url}/api/v1/stream?subject={contract}"
                reply = await request(http, url, gateway.headers[caller])
                seen[(contract, caller)] = reply.status
                assert (reply.kind == "text/event-stream") == (reply.status == 200), (contract, caller, reply)
        assert seen == {(c, caller): EXPECTED[c][caller] for c in EXPECTED for caller in CALLERS}
        # A pattern reaching internal subjects is refused to the public, and served with the token.
        for caller, status in (("anonymous", 401), ("public", 403), ("internal", 200)):
            url = f"{gateway.url}/api/v1/stream?subject=city.internal.>"
            assert (await request(http, url, gateway.headers[caller])).status == status, caller


async def test_an_internal_token_follows_internal_data_live_and_the_public_never_sees_it(
    gateway: Gateway,
) -> None:
    """A reading published while two clients listen to everything they may read reaches the one
    with the internal token, and not the public one (which still hears every heartbeat)."""
    async with aiohttp.ClientSession() as http:
        url = f"{gateway.url}/api/v1/stream?subject=city.>"
        async with (
            http.get(url, headers=gateway.headers["internal"]) as internal,
            http.get(url, headers=gateway.headers["anonymous"]) as public,
        ):
            assert (internal.status, public.status) == (200, 200)
            published = await gateway.citybus("publish", INTERNAL, device_status(12.5), "--user", "replay")
            assert published.returncode == 0, published
            event = await _next_event(internal, lambda e: e.get("contract") == INTERNAL)
            assert event["data"]["battery"] == 12.5 and event["classification"] == "internal"
            # What the public stream carried until a heartbeat after that: no internal event.
            lines = await _lines_until_heartbeats(public, 3)
    assert not [line for line in lines if line.startswith("data:") and '"classification":"internal"' in line]


async def test_a_token_revoked_while_its_stream_is_open_ends_the_stream(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        added = await gateway.citybus("auth", "add-token", "watcher", "--user", "internal")
        assert added.returncode == 0, added
        headers = {"Authorization": f"Bearer {added.stdout.strip()}"}
        async with http.get(f"{gateway.url}/api/v1/stream?subject={INTERNAL}", headers=headers) as stream:
            assert stream.status == 200
            await stream.content.readany()  # it is open
            revoked = await gateway.citybus("auth", "revoke-token", "watcher")
            assert revoked.returncode == 0, revoked
            async with asyncio.timeout(30):
                lines = [raw.decode().rstrip("\n") async for raw in stream.content]
    dropped = lines.index("event: dropped")
    reason = json.loads(lines[dropped + 1].removeprefix("data:"))["reason"]
    assert reason.startswith("revoked token"), lines


async def _next_event(response: aiohttp.ClientResponse, wanted: Any) -> dict[str, Any]:
    async with asyncio.timeout(30):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data:"):
                event = json.loads(line.removeprefix("data:").strip())
                if wanted(event):
                    return dict(event)
    raise AssertionError("the stream ended")


async def _lines_until_heartbeats(response: aiohttp.ClientResponse, heartbeats: int) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(30):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            lines.append(line)
            if line.startswith(": heartbeat"):
                heartbeats -= 1
                if heartbeats == 0:
                    return lines
    return lines


# -- journey planning --------------------------------------------------------------------------------


async def test_journeys_are_planned_as_the_caller_s_user_through_the_broker(gateway: Gateway) -> None:
    """The journey route sends the request as the caller's user: ``public`` (no token, or a public
    token) and ``internal`` may ask the planner and get its answer in their private inboxes; a token
    that is not valid here is refused before anything is asked."""
    path = "/api/v1/journey?from=drammen&to=Oslo%20S&depart=2018-08-28T08:00"
    async with aiohttp.ClientSession() as http:
        seen: dict[str, int] = {}
        for caller in CALLERS:
            reply = await request(http, gateway.url + path, gateway.headers[caller])
            seen[caller] = reply.status
            if reply.status == 200:
                assert reply.body["status"] == "ok", (caller, reply)
                assert "rail" in {leg["mode"] for leg in reply.body["journeys"][0]["legs"]}, reply
    expected = {"anonymous": 200, "internal": 200, "public": 200, "revoked": 401, "bogus": 401}
    assert seen == {**expected, "other-account": 401}


# -- the catalogue -----------------------------------------------------------------------------------


async def test_a_token_that_is_not_valid_here_is_refused_even_for_the_catalogue(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{gateway.url}/catalogue.jsonld"
        for caller in CALLERS:
            reply = await request(http, url, gateway.headers[caller])
            if caller in ("revoked", "bogus", "other-account"):
                assert reply.status == 401 and reply.kind == "application/problem+json", (caller, reply)
                assert reply.body["title"] == "Unauthorized" and reply.challenge.startswith("Bearer"), reply
            else:
                assert reply.status == 200, (caller, reply)
        revoked = await request(http, url, gateway.headers["revoked"])
        assert "unknown or revoked token" in revoked.body["detail"]
        other = await request(http, url, gateway.headers["other-account"])
        assert "is for the CITY account; this gateway serves SANDBOX" in other.body["detail"]
        malformed = await request(http, url, {"Authorization": "Basic dXNlcjpwYXNz"})
        assert malformed.status == 401 and "Authorization: Bearer" in malformed.body["detail"]


async def test_a_token_revoked_while_the_gateway_runs_is_refused_from_the_next_request(
    gateway: Gateway,
) -> None:
    added = await gateway.citybus("auth", "add-token", "short-lived", "--user", "internal")
    assert added.returncode == 0, added
    headers = {"Authorization": f"Bearer {added.stdout.strip()}"}
    url = f"{gateway.url}/catalogue.jsonld"
    async with aiohttp.ClientSession() as http:
        assert (await request(http, url, headers)).status == 200
        revoked = await gateway.citybus("auth", "revoke-token", "short-lived")
        assert revoked.returncode == 0, revoked
        assert "no reload" in revoked.stdout
        assert (await request(http, url, headers)).status == 401


# -- the broker enforces it -------------------------------------------------------------------------


async def connect_as(gateway: Gateway, user: str) -> Bus:
    """A bus connected as ``SANDBOX/<user>`` with its seed file, as the gateway connects."""
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests")
    bus.user = f"SANDBOX/{user}"
    options: dict[str, Any] = CredentialStore(gateway.credentials).load("SANDBOX", user).connect_options()
    await bus.connect(gateway.nats_url, **options)
    return bus


async def test_the_broker_refuses_internal_data_to_the_public_user(gateway: Gateway) -> None:
    """Were the gateway's own checks wrong, the public user's feed still could not read internal
    data: the broker refuses it both a subscription and a stored message."""
    internal_stream = subjects.stream_name(Classification.INTERNAL, "operations")
    internal_subject = f"city.internal.{INTERNAL}.{INTERNAL_ENTITY}"
    public_stream = subjects.stream_name(Classification.PUBLIC, "environment")
    public_subject = f"city.public.{PUBLIC}.{PUBLIC_ENTITY}"

    public = await connect_as(gateway, "public")
    try:
        # The public user reads public data (so what follows is a refusal, not a broken login) …
        assert await last_stored(public, public_stream, public_subject) is not None
        # … and never an internal stored message.
        with pytest.raises(LookupError):
            await last_stored(public, internal_stream, internal_subject)
    finally:
        await public.drain()
    internal = await connect_as(gateway, "internal")
    try:
        stored = await last_stored(internal, internal_stream, internal_subject)
        assert stored is not None and json.loads(stored.data)["device"] == INTERNAL_ENTITY
    finally:
        await internal.drain()

    # A subscription: the client command as SANDBOX/public, refused by the broker in one line.
    tailed = await gateway.citybus("tail", "city.internal.>", "--user", "public", "-n", "1")
    assert tailed.returncode == 1, tailed
    assert "citybus: error: the broker refused city.internal.> to SANDBOX/public" in tailed.stderr, tailed
    assert "Traceback" not in tailed.stderr


async def test_the_gateway_reads_as_the_callers_users_never_as_itself(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        # An internal caller makes the gateway open the internal user's feed.
        reply = await request(http, f"{gateway.url}/catalogue.jsonld", gateway.headers["internal"])
        assert reply.status == 200, reply
    store = CredentialStore(gateway.credentials)
    names = {i.public_key: (i.account, i.user) for i in store.list() if i.revoked_at is None}
    seen = await server_connections(gateway.nats_url, gateway.credentials / "SYS" / "system.nk", names)
    assert {("SANDBOX", "public"), ("SANDBOX", "internal"), ("SANDBOX", "gateway")} <= seen
    assert ("SANDBOX", "operator") not in seen and ("CITY", "internal") not in seen


# -- no token in any output or log ------------------------------------------------------------------


async def test_no_token_appears_in_any_output_or_log(gateway: Gateway) -> None:
    tokens = [h["Authorization"].removeprefix("Bearer ") for h in gateway.headers.values() if h]
    assert len(TokenStore(gateway.credentials).list()) >= 3  # the store the gateway reads
    texts = [gateway.process.text, (gateway.credentials / "tokens.toml").read_text(), *gateway.outputs]
    texts += [p.read_text(errors="replace") for p in gateway.data_dir.glob("*.log*")]
    for token in tokens:
        # Only the standard output of the `citybus auth add-token` that issued it holds it: alone.
        assert [t for t in texts if token in t and t.strip() != token] == []
