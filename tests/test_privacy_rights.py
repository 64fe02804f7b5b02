"""A person's rights over a real nats-server: export finds every planted message, erasure leaves nothing.

Planted about one person: sealed events of two contracts (sign-ups and an activity), a sign-up
published around the bus unsealed (plaintext, the person's id in its subject: stored by the stream,
refused by the consumer), its personal dead letter, the dead letter of a sealed sign-up a handler
failed on, and a plaintext dead letter naming the person only by name and e-mail. After an erasure
a search for the name, the e-mail and the id in the raw bytes of every message of every stream and
in the server's data directory finds nothing, and a sealed copy kept from before cannot be opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from bus import Bus, Event
from bus.envelope import H_PERSON
from bus.personal import rights
from bus.personal.places import Logs, PersonalPlace
from bus.personal.scan import Stored, scan
from bus.personal.stored import PersonalDeadLetters, PersonalStreams, Vault
from bus.server import EmbeddedServer
from bus.subjects import stream_name
from contracts import (
    Classification,
    ErasureRecord,
    PersonalDeadLetter,
    VolunteerActivity,
    VolunteerSignup,
)
from tests.conftest import open_bus
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)

PERSON = "v-0a1b2c3d4e5f"
NAME = "Ingrid Testesen"
EMAIL = "ingrid.testesen@example.invalid"
OTHER = "v-99aa88bb77cc"
OTHER_NAME = "Per Annensen"
COMMUNITY = stream_name(Classification.PERSONAL, "community")
LETTERS = stream_name(Classification.PERSONAL, "citybus")
SIGNUP = VolunteerSignup.__contract__.type
FAILS = "fails-for-the-test"


def signup(person: str = PERSON, name: str = NAME, email: str = EMAIL, task: str = "") -> VolunteerSignup:
    example = msgspec.convert(VolunteerSignup.__contract__.example, type=VolunteerSignup)
    task_id = task or example.task_id
    return msgspec.structs.replace(example, volunteer_id=person, name=name, email=email, task_id=task_id)


def activity(person: str = PERSON) -> VolunteerActivity:
    example = msgspec.convert(VolunteerActivity.__contract__.example, type=VolunteerActivity)
    return msgspec.structs.replace(example, volunteer_id=person)


def ce_headers(ce_id: str, ce_type: str = SIGNUP) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-source": "/rogue",
        "ce-type": ce_type,
        "content-type": "application/json",
    }


def disk_bytes(root: Path) -> bytes:
    """Every byte the server stored under its data directory."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def places(bus: Bus) -> list[PersonalPlace]:
    return [PersonalStreams(bus), PersonalDeadLetters(bus), Logs(), Vault(bus)]


async def stored(bus: Bus, stream: str) -> list[Stored]:
    return [m async for m in scan(bus, stream)]


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait until an asynchronous condition holds (bounded by the test's timeout, not timed)."""
    while not await condition():  # noqa: ASYNC110 - the condition asks the server each time
        await asyncio.sleep(0.02)


async def plant(producer: Bus, consumer: Bus) -> None:
    """Everything about PERSON (and one sign-up of OTHER) the tests look for."""
    failed: list[str] = []

    async def handle(event: Event[VolunteerSignup]) -> None:
        if event.data.task_id == FAILS:
            failed.append(event.id)
            raise RuntimeError("the organiser's system is down")

    await consumer.subscribe(VolunteerSignup, handle)
    await consumer.flush()
    await producer.publish_durable(signup())
    await producer.publish_durable(signup(task="beach-cleanup-2"))
    await producer.publish_durable(activity())
    await producer.publish_durable(signup(OTHER, OTHER_NAME, "per@example.invalid"))
    await producer.publish_durable(signup(task=FAILS))  # sealed, then dead-lettered by the handler
    # Published around the bus: stored unsealed by the stream, refused by the consumer (not-sealed).
    plain = msgspec.json.encode(signup())
    await producer.publish_raw(
        f"city.personal.community.volunteer-signup.{PERSON}", plain, ce_headers("raw-1")
    )
    # A plaintext dead letter naming the person by name and e-mail only (not by id).
    letter = PersonalDeadLetter(
        reason="invalid-body",
        detail="Expected `str`, got `int` - at `$.phone`",
        original_subject="city.personal.community.volunteer-signup.unknown",
        original_headers=ce_headers("raw-2"),
        payload=msgspec.json.encode({"name": NAME, "email": EMAIL, "phone": 4791234567}),
        contract=SIGNUP,
        failed_at=datetime(2026, 12, 7, 12, tzinfo=UTC),
    )
    await producer.dead_letters.publish(letter)

    async def three_letters() -> bool:
        return len(await stored(producer, LETTERS)) == 3

    await until(three_letters)
    assert len(failed) == 1


@pytest.fixture
async def buses(fresh_server: EmbeddedServer) -> AsyncIterator[tuple[Bus, Bus]]:
    producer, consumer = await open_bus(fresh_server), await open_bus(fresh_server)
    yield producer, consumer
    await producer.drain()
    await consumer.drain()


async def test_export_finds_every_planted_message_and_opens_the_sealed_ones(
    buses: tuple[Bus, Bus],
) -> None:
    producer, consumer = buses
    await plant(producer, consumer)
    export = await rights.export(producer, places(producer), PERSON, [EMAIL], case="dpo-1")
    assert export.complete and export.person == PERSON
    assert export.places == ("stream", "dead-letters", "logs", "key")
    streams = [m for m in export.messages if m.place == "stream"]
    letters = [m for m in export.messages if m.place == "dead-letters"]
    # three sign-ups (one of them the failing one), the activity, and the unsealed copy
    assert sorted(m.type for m in streams) == sorted([SIGNUP] * 4 + [VolunteerActivity.__contract__.type])
    assert all(m.readable and m.data["volunteer_id"] == PERSON for m in streams)
    assert {m.data.get("name") for m in streams} == {NAME, None}  # the activity names nobody
    assert len({m.location for m in export.messages}) == len(export.messages)
    # the not-sealed refusal, the handler's failure (sealed, opened) and the one naming her by e-mail
    assert sorted(m.data["reason"] for m in letters) == ["handler-error", "invalid-body", "not-sealed"]
    assert all(m.readable and m.data["message"]["name"] == NAME for m in letters)
    assert OTHER not in msgspec.json.encode(export).decode()

    without = await rights.export(producer, places(producer), PERSON, case="dpo-2")
    assert len(without.messages) == len(export.messages) - 1  # the e-mail-only letter needs the e-mail


async def test_an_unknown_person_has_an_empty_export(buses: tuple[Bus, Bus]) -> None:
    producer, consumer = buses
    await plant(producer, consumer)
    export = await rights.export(producer, places(producer), "v-0000000000ff", case="dpo-3")
    assert export.complete and export.messages == ()


async def test_erasure_leaves_nothing_readable_anywhere_not_even_on_disk(
    buses: tuple[Bus, Bus], fresh_server: EmbeddedServer
) -> None:
    producer, consumer = buses
    await plant(producer, consumer)
    kept = (await rights.export(producer, places(producer), PERSON)).messages
    sealed_before = next(
        m for m in await stored(producer, COMMUNITY) if m.headers.get(H_PERSON) and m.seq == 1
    )
    records: list[Event[ErasureRecord]] = []

    async def record(event: Event[ErasureRecord]) -> None:
        records.append(event)

    await consumer.subscribe(ErasureRecord, record)
    await consumer.flush()

    needles = [v.encode() for v in (PERSON, NAME, EMAIL)]
    await eventually(lambda: all(n in disk_bytes(fresh_server.data_dir) for n in needles))  # the plaintext

    receipt = await rights.erase(producer, places(producer), PERSON, case="dpo-4")

    assert receipt.complete, receipt
    by_place = {(p.place, p.location): p for p in receipt.places}
    assert by_place[("stream", COMMUNITY)].erased == 5  # learned her name and e-mail from the sign-ups
    assert by_place[("dead-letters", LETTERS)].erased == 3
    assert by_place[("key", "CITYBUS_PERSONAL_KEYS")].erased == 1
    assert by_place[("logs", "standard error")].how == "citybus writes no personal values to its logs"
    assert [p.place for p in receipt.places][-1] == "key"
    assert len(kept) == 7  # without the e-mail, the letter naming her only by it is not found
    await eventually(lambda: len(records) == 1)
    assert records[0].data.reason == "request" and PERSON not in msgspec.json.encode(records[0].data).decode()

    for stream in await producer.js.streams_info():
        for msg in await stored(producer, stream.config.name or ""):
            raw = msg.subject.encode() + msgspec.json.encode(msg.headers) + msg.data
            assert not [n for n in needles if n in raw], (stream.config.name, msg.seq)
    await eventually(lambda: not [n for n in needles if n in disk_bytes(fresh_server.data_dir)])
    # The other person's sign-up is still there, and readable.
    left = await rights.export(producer, places(producer), OTHER)
    assert [m.data["name"] for m in left.messages] == [OTHER_NAME]
    # A copy kept from before the erasure (a recording, a backup) no longer opens, on the bus either.
    again = await rights.export(producer, places(producer), PERSON)
    assert again.messages == ()
    await producer.publish_raw(sealed_before.subject, sealed_before.data, sealed_before.headers)
    unreadable = consumer.metrics.personal_unreadable.labels(SIGNUP)
    await eventually(lambda: unreadable._value.get() == 1)


async def test_a_plaintext_copy_that_claims_to_be_sealed_for_someone_else_is_still_found_and_erased(
    buses: tuple[Bus, Bus], fresh_server: EmbeddedServer
) -> None:
    """A message published around the bus with a ``citybus-person`` header but a body in the clear
    (a buggy or hostile producer; the header names nobody's real ref) is stored by the stream and
    taken by consumers as erased (no key has that ref). The header must not
    make the places trust that the bytes are ciphertext: her name and e-mail are in them."""
    producer, consumer = buses
    await plant(producer, consumer)
    bogus = "p-" + "0" * 24
    headers = {**ce_headers("raw-bogus"), H_PERSON: bogus}
    plain = msgspec.json.encode(signup(task="beach-cleanup-9"))
    await producer.publish_raw(f"city.personal.community.volunteer-signup.{bogus}", plain, headers)

    async def seven() -> bool:
        return len(await stored(producer, COMMUNITY)) == 7

    await until(seven)
    export = await rights.export(producer, places(producer), PERSON, [EMAIL])
    assert sum(1 for m in export.messages if m.place == "stream" and m.location.endswith("#7")) == 1, [
        m.location for m in export.messages
    ]
    receipt = await rights.erase(producer, places(producer), PERSON)
    assert receipt.complete
    needles = [v.encode() for v in (PERSON, NAME, EMAIL)]
    for stream in await producer.js.streams_info():
        for msg in await stored(producer, stream.config.name or ""):
            raw = msg.subject.encode() + msgspec.json.encode(msg.headers) + msg.data
            assert not [n for n in needles if n in raw], (stream.config.name, msg.seq, msg.subject)


async def test_a_name_a_citizen_typed_does_not_make_an_erasure_take_other_peoples_data(
    buses: tuple[Bus, Bus],
) -> None:
    """The identifiers an erasure learns are what the citizen typed into the sign-up form. A name
    like "community" (or "city", "volunteer") is a substring of every message's type or subject:
    searched as a substring in every copy in the clear, it erases other people's dead letters (and,
    in the archive, whole tables of internal rows)."""
    producer, consumer = buses
    await plant(producer, consumer)
    # someone else's unsealed copy, dead-lettered (not-sealed): it names Per, not her
    plain = msgspec.json.encode(signup(OTHER, OTHER_NAME, "per@example.invalid"))
    await producer.publish_raw(
        f"city.personal.community.volunteer-signup.{OTHER}", plain, ce_headers("raw-9")
    )

    async def four_letters() -> bool:
        return len(await stored(producer, LETTERS)) == 4

    await until(four_letters)
    hostile = "v-0c0c0c0c0c0c"
    typed = msgspec.structs.replace(signup(hostile, "Community", "x@example.invalid"), phone=None)
    await producer.publish_durable(typed)
    receipt = await rights.erase(producer, places(producer), hostile)
    assert receipt.complete
    left = await rights.export(producer, places(producer), OTHER)
    assert sorted(m.place for m in left.messages) == ["dead-letters", "stream", "stream"], left.messages
