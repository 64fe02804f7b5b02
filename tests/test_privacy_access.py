"""Only the privacy service may erase stored personal messages or destroy a key; it reads them all.

Against a real nats-server started with the configuration :class:`bus.access.AccessModel` renders
(as tests/test_access.py does): the rows below are written out by hand, each user asks JetStream
each question, and a refusal must be the broker's own. The privacy service then erases a person
over that server as its own user, and ``citybus personal export|erase`` does it from the command
line with the service's seed file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.privacy.access import OFFICER, officer_declaration
from bus import Bus, Event, Metrics
from bus.access import AccessError, AccessModel, Declaration
from bus.access.keys import CredentialStore
from bus.access.render import render_config
from bus.errors import PermissionDeniedError
from bus.personal import rights
from bus.personal.places import Logs
from bus.personal.stored import PersonalDeadLetters, PersonalStreams, Vault
from bus.personal.vault import VAULT_STREAM
from bus.server import EmbeddedServer
from bus.subjects import js_api, stream_name
from contracts import (
    BeachObservation,
    Classification,
    ErasureReceipt,
    ErasureRecord,
    ErasureRequest,
    PersonalExport,
    PersonalExportRequest,
    VolunteerActivity,
    VolunteerSignup,
    default_registry,
)
from sandbox.access import pilot_declaration
from tests.test_cli import ROOT, run_citybus
from tests.test_privacy_rights import EMAIL, NAME, PERSON, activity, signup

pytestmark = pytest.mark.slow

PLATFORM = Declaration(
    "volunteer-platform", consumes=(), produces=(VolunteerSignup, VolunteerActivity), declassifier=False
)
RECALLER = Declaration(  # reads back what it produced, as the volunteer platform does (recalls)
    "signup-ledger", consumes=(), produces=(VolunteerSignup,), declassifier=False, recalls=(VolunteerSignup,)
)
ARCHIVE = Declaration(
    "volunteer-archive", consumes=(VolunteerSignup,), produces=(), declassifier=False, durable=True
)
PRIVACY = Declaration(
    "privacy",
    consumes=(),
    produces=(PersonalExport, ErasureReceipt, ErasureRecord),
    declassifier=False,
    answers=(PersonalExportRequest, ErasureRequest),
    privacy=True,
)
COMMUNITY = stream_name(Classification.PERSONAL, "community")
LETTERS = stream_name(Classification.PERSONAL, "citybus")
PUBLIC = stream_name(Classification.PUBLIC, "environment")

# What each user may ask of JetStream (every other question is refused by the broker).
QUESTIONS = {
    "read a personal message": js_api("STREAM", "MSG", "GET", COMMUNITY),
    "erase a personal message": js_api("STREAM", "MSG", "DELETE", COMMUNITY),
    "erase a personal dead letter": js_api("STREAM", "MSG", "DELETE", LETTERS),
    "purge a personal stream": js_api("STREAM", "PURGE", COMMUNITY),
    "read a key": js_api("STREAM", "MSG", "GET", VAULT_STREAM),
    "destroy a key": js_api("STREAM", "MSG", "DELETE", VAULT_STREAM),
    "erase a public message": js_api("STREAM", "MSG", "DELETE", PUBLIC),
}
ALLOWED = {
    "privacy": {
        "read a personal message",
        "erase a personal message",
        "erase a personal dead letter",
        "read a key",
        "destroy a key",
    },
    "volunteer-platform": {"read a key"},  # to seal what it publishes
    "volunteer-archive": {"read a key"},  # to open what it consumes
    "signup-ledger": {"read a key", "read a personal message"},  # its own stream, never a delete
    OFFICER: set(),  # it asks the service, which reads for it
    "operator": set(),
    "internal": set(),
    "public": set(),
}


@dataclass
class City:
    server: EmbeddedServer
    store: CredentialStore
    credentials: Path


async def connect(city: City, user: str) -> Bus:
    bus = Bus(metrics=Metrics(), source=f"/tests/{user}")
    await bus.connect(city.server.url, **city.store.load("CITY", user).connect_options())
    bus.user = f"CITY/{user}"
    return bus


@pytest.fixture(scope="module")
async def city(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[City]:
    base = tmp_path_factory.mktemp("privacy-access")
    model = AccessModel(
        default_registry(), adapters=[PLATFORM, RECALLER, ARCHIVE, PRIVACY, officer_declaration()]
    )
    store = CredentialStore(base / "credentials")
    store.ensure(u.key for u in model.users)
    data_dir = base / "nats"
    data_dir.mkdir()
    (data_dir / "accounts.conf").write_text(render_config(model, store.public_keys()), encoding="utf-8")
    server = EmbeddedServer(data_dir=data_dir, extra_config='include "accounts.conf"')
    await server.start()
    city = City(server, store, base / "credentials")
    provisioner = await connect(city, "provisioner")
    try:
        await provisioner.provision_streams()
    finally:
        await provisioner.drain()
    try:
        yield city
    finally:
        await server.stop()


@pytest.mark.parametrize("user", list(ALLOWED))
async def test_only_the_privacy_service_reads_and_erases_stored_personal_messages(
    city: City, user: str
) -> None:
    bus = await connect(city, user)
    try:
        answered: set[str] = set()
        for question, subject in QUESTIONS.items():
            try:
                # a sequence no stream has: an allowed question is answered "no message found"
                await bus.request_raw(subject, b'{"seq": 999999}', timeout=5)
            except PermissionDeniedError:
                continue
            answered.add(question)
        assert answered == ALLOWED[user]
    finally:
        await bus.drain()


def test_a_guest_cannot_be_the_privacy_service() -> None:
    pilot = pilot_declaration("acme", (BeachObservation,))
    guest = Declaration(**{**{f: getattr(pilot, f) for f in pilot.__dataclass_fields__}, "privacy": True})
    with pytest.raises(AccessError, match="guest cannot be the privacy service"):
        AccessModel(default_registry(), guests=[guest])


async def test_the_privacy_service_erases_a_person_as_its_own_user(city: City, tmp_path: Path) -> None:
    platform = await connect(city, "volunteer-platform")
    privacy = await connect(city, "privacy")
    try:
        await platform.publish_durable(signup())
        await platform.publish_durable(activity())
        places = [PersonalStreams(privacy), PersonalDeadLetters(privacy), Logs(), Vault(privacy)]
        export = await rights.export(privacy, places, PERSON)
        assert export.complete and len(export.messages) == 2
        assert {m.data.get("name") for m in export.messages} == {NAME, None}

        # The same from the command line, with the service's seed file, as an operator would.
        seed = str(city.store.seed_path("CITY", "privacy"))
        login = ("--nats", city.server.url, "--nkey", seed)
        env = {"PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "xdg"), "PATH": "/usr/bin:/bin"}
        out = tmp_path / "export.json"
        done = await run_citybus(
            "personal", "export", PERSON, "--identifier", EMAIL, "-o", str(out), *login, cwd=tmp_path, env=env
        )
        assert done.returncode == 0, done
        assert "exported 2 messages" in done.stderr
        assert len(json.loads(out.read_text())["messages"]) == 2
        erased = await run_citybus(
            "personal", "erase", PERSON, "--case", "dpo-11", *login, cwd=tmp_path, env=env
        )
        assert erased.returncode == 0, erased
        assert f"stream {COMMUNITY}: 2 found, 2 erased (deleted and overwritten)" in erased.stdout
        assert f"key {VAULT_STREAM}: 1 found, 1 erased" in erased.stdout
        assert erased.stdout.splitlines()[-1] == "complete"

        assert (await rights.export(privacy, places, PERSON)).messages == ()
        assert await platform.vault.key(PERSON, create=False) is None
    finally:
        await platform.drain()
        await privacy.drain()


async def test_the_privacy_officer_asks_over_the_bus_and_nobody_else_may(city: City) -> None:
    """The officer's requests reach the service and come back; other users' are refused by the broker."""
    platform = await connect(city, "volunteer-platform")
    privacy = await connect(city, "privacy")
    officer = await connect(city, OFFICER)
    others = [await connect(city, user) for user in ("internal", "public", "volunteer-archive")]
    places = [PersonalStreams(privacy), PersonalDeadLetters(privacy), Logs(), Vault(privacy)]

    async def answer(event: Event[PersonalExportRequest]) -> PersonalExport:
        return await rights.export(privacy, places, event.data.person, case=event.data.case)

    try:
        await platform.publish_durable(signup())
        await privacy.serve(PersonalExportRequest, answer)
        await privacy.flush()
        asked = PersonalExportRequest(case="dpo-12", person=PERSON)
        export = (await officer.request(asked, PersonalExport, timeout=10)).data
        assert export.person == PERSON and [m.data["name"] for m in export.messages] == [NAME]
        for bus in others:
            with pytest.raises(PermissionDeniedError):
                await bus.request(asked, PersonalExport, timeout=10)
        # The officer reads nothing itself: no stream, no personal subject.
        with pytest.raises(PermissionDeniedError):
            await officer.request_raw(js_api("STREAM", "MSG", "GET", COMMUNITY), b'{"seq": 1}', timeout=10)
    finally:
        for bus in (platform, privacy, officer, *others):
            await bus.drain()
