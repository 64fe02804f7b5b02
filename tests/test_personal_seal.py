"""Personal messages are sealed on the bus with their person's key, and destroying the key erases them.

Against a real nats-server of the test's own: what the stream stores, what a subscriber gets, what
is on the server's disk, and what happens once the key is destroyed.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from bus import Bus, Event
from bus.envelope import H_PERSON
from bus.personal.opening import seal_raw
from bus.personal.vault import ERASED_SUBJECT, VAULT_STREAM, vault_subject
from bus.server import EmbeddedServer
from bus.subjects import stream_name
from contracts import Classification, DeadLetter, PersonalDeadLetter, VolunteerSignup
from tests.conftest import open_bus
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(60)

PERSON = "v-0a1b2c3d4e5f"
NAME = "Ingrid Testesen"
EMAIL = "ingrid.testesen@example.invalid"
STREAM = stream_name(Classification.PERSONAL, "community")


def signup(person: str = PERSON, name: str = NAME, email: str = EMAIL) -> VolunteerSignup:
    example = msgspec.convert(VolunteerSignup.__contract__.example, type=VolunteerSignup)
    return msgspec.structs.replace(example, volunteer_id=person, name=name, email=email)


def disk_bytes(root: Path) -> bytes:
    """Every byte the server stored under its data directory."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def test_a_personal_event_is_stored_sealed_under_a_pseudonymous_subject(quiet_bus: Bus) -> None:
    ack = await quiet_bus.publish_durable(signup())
    stored = await quiet_bus.js.get_msg(STREAM, ack.seq)
    assert stored.data is not None and stored.headers is not None and stored.subject is not None
    ref = stored.headers[H_PERSON]
    assert ref == await quiet_bus.vault.ref(PERSON)
    assert stored.subject == f"city.personal.community.volunteer-signup.{ref}"
    for needle in (PERSON, NAME, EMAIL):
        assert needle.encode() not in stored.data
        assert needle not in stored.subject
        assert all(needle not in v for v in stored.headers.values())


async def test_a_subscriber_gets_it_opened_and_keeps_the_sealed_body(quiet_bus: Bus) -> None:
    got: list[Event[VolunteerSignup]] = []

    async def keep(event: Event[VolunteerSignup]) -> None:
        got.append(event)

    await quiet_bus.subscribe(VolunteerSignup, keep)
    await quiet_bus.flush()
    await quiet_bus.publish(signup())
    await eventually(lambda: len(got) == 1)
    (event,) = got
    assert event.data.name == NAME and event.data.volunteer_id == PERSON
    assert event.envelope.person == await quiet_bus.vault.ref(PERSON)
    assert event.sealed is not None and NAME.encode() not in event.sealed


async def test_two_processes_creating_the_same_key_at_once_end_with_one(fresh_server: EmbeddedServer) -> None:
    first, second = await open_bus(fresh_server), await open_bus(fresh_server)
    try:
        keys = await asyncio.gather(*(b.vault.key("v-00000000aa") for b in (first, second) for _ in range(5)))
        assert len({k for k in keys if k is not None}) == 1
        assert (await first.vault.ref("v-00000000aa")) == (await second.vault.ref("v-00000000aa"))
    finally:
        await first.drain()
        await second.drain()


async def test_destroying_the_key_makes_every_copy_unreadable_on_disk_too(
    fresh_server: EmbeddedServer,
) -> None:
    producer, consumer = await open_bus(fresh_server), await open_bus(fresh_server)
    try:
        got: list[Event[VolunteerSignup]] = []

        async def keep(event: Event[VolunteerSignup]) -> None:
            got.append(event)

        await consumer.subscribe(VolunteerSignup, keep)
        await consumer.flush()
        await producer.publish_durable(signup())
        await eventually(lambda: len(got) == 1)  # the consumer has the key cached now
        found = await producer.vault.key(PERSON, create=False)
        assert found is not None
        ref, key = found
        await producer.js.get_last_msg(VAULT_STREAM, vault_subject(ref))
        data_dir = fresh_server.data_dir
        stored_key = base64.b64encode(key)  # the vault's record is JSON: the key in base64
        await eventually(lambda: stored_key in disk_bytes(data_dir))

        assert await producer.vault.destroy(ref)
        assert await producer.vault.key(PERSON, create=False) is None
        # The record was overwritten on disk, not only dropped from the stream's index.
        await eventually(lambda: stored_key not in disk_bytes(data_dir))
        # The other process heard of it: the next message about the person cannot be opened there.
        sealed_before = got[0].sealed
        assert sealed_before is not None
        await eventually(lambda: consumer.vault._ciphers.get(ref) is None)
        with pytest.raises(Exception, match="destroyed"):
            await consumer.vault.open(ref, sealed_before, VolunteerSignup.__contract__.type)
        stored = await producer.js.get_last_msg(STREAM, f"city.personal.community.volunteer-signup.{ref}")
        assert stored.data is not None and stored.headers is not None
        await consumer.publish_raw(stored.subject or "", stored.data, dict(stored.headers))
        await eventually(
            lambda: (
                consumer.metrics.personal_unreadable.labels(VolunteerSignup.__contract__.type)._value.get()
                == 1
            )
        )
        assert len(got) == 1
    finally:
        await producer.drain()
        await consumer.drain()


async def test_a_personal_event_sent_unsealed_is_refused_as_personal(quiet_bus: Bus) -> None:
    letters: list[Event[PersonalDeadLetter]] = []
    internal: list[Event[DeadLetter]] = []
    got: list[Event[VolunteerSignup]] = []

    async def keep(event: Event[VolunteerSignup]) -> None:
        got.append(event)

    async def letter(event: Event[PersonalDeadLetter]) -> None:
        letters.append(event)

    async def internal_letter(event: Event[DeadLetter]) -> None:
        internal.append(event)

    await quiet_bus.subscribe(VolunteerSignup, keep)
    await quiet_bus.subscribe(PersonalDeadLetter, letter)
    await quiet_bus.subscribe(DeadLetter, internal_letter)
    await quiet_bus.flush()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "plain-1",
        "ce-source": "/rogue",
        "ce-type": VolunteerSignup.__contract__.type,
        "content-type": "application/json",
    }
    await quiet_bus.publish_raw(
        "city.personal.community.volunteer-signup.v-0a1b2c3d4e5f", msgspec.json.encode(signup()), headers
    )
    await eventually(lambda: len(letters) == 1)
    assert letters[0].data.reason == "not-sealed"
    assert "must be sealed" in letters[0].data.detail
    assert not got and not internal


async def test_a_recorded_personal_message_is_sealed_as_it_is_replayed(quiet_bus: Bus) -> None:
    got: list[Event[VolunteerSignup]] = []

    async def keep(event: Event[VolunteerSignup]) -> None:
        got.append(event)

    await quiet_bus.subscribe(VolunteerSignup, keep)
    await quiet_bus.flush()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "recorded-1",
        "ce-source": "/sandbox/replay",
        "ce-type": VolunteerSignup.__contract__.type,
        "ce-provenance": "synthetic",
        "content-type": "application/json",
    }
    body = msgspec.json.encode(signup())
    subject, sealed, sealed_headers = await seal_raw(
        quiet_bus.vault, VolunteerSignup, f"city.personal.community.volunteer-signup.{PERSON}", body, headers
    )
    ref = await quiet_bus.vault.ref(PERSON)
    assert subject.endswith(ref) and sealed_headers[H_PERSON] == ref and NAME.encode() not in sealed
    assert H_PERSON not in headers  # the caller's template is left alone
    assert await seal_raw(quiet_bus.vault, VolunteerSignup, subject, sealed, sealed_headers) == (
        subject,
        sealed,
        sealed_headers,
    )
    await quiet_bus.publish_raw(subject, sealed, sealed_headers)
    await eventually(lambda: len(got) == 1)
    assert got[0].data.name == NAME and got[0].provenance == "synthetic"


def test_the_vault_names_its_subjects_and_broadcast() -> None:
    assert vault_subject("p-" + "0" * 24) == "citybus.personal.keys.p-" + "0" * 24
    assert ERASED_SUBJECT.startswith("citybus.personal.")


async def test_the_vault_is_write_once_a_publish_over_the_pepper_or_a_key_is_refused(quiet_bus: Bus) -> None:
    """Every producer of sealed contracts may publish on the vault's subjects (to create a key).
    One that publishes over the pepper (or a key) without the create-only header must be refused by
    the stream: else every ref changes, an erasure finds no key under the new ref, and the old
    key — still in the vault, never destroyed — keeps the person's sealed messages readable."""
    from bus.personal import rights
    from bus.personal.stored import PersonalStreams, Vault
    from bus.personal.vault import PEPPER_SUBJECT

    await quiet_bus.publish_durable(signup())
    ref = await quiet_bus.vault.ref(PERSON)
    pepper = (await quiet_bus.js.get_last_msg(VAULT_STREAM, PEPPER_SUBJECT)).data
    key = (await quiet_bus.js.get_last_msg(VAULT_STREAM, vault_subject(ref))).data
    for subject in (PEPPER_SUBJECT, vault_subject(ref)):
        with pytest.raises(Exception):  # noqa: B017, PT011 - refused by the stream, whichever error
            await quiet_bus.js.publish(subject, b"\x00" * 32)
    assert (await quiet_bus.js.get_last_msg(VAULT_STREAM, PEPPER_SUBJECT)).data == pepper
    assert (await quiet_bus.js.get_last_msg(VAULT_STREAM, vault_subject(ref))).data == key
    # and so an erasure by a process that reads the pepper afresh still finds and destroys the key
    other = Bus(metrics=quiet_bus.metrics, source="/tests/other")
    await other.connect(quiet_bus.nc.connected_url.geturl())
    try:
        receipt = await rights.erase(other, [PersonalStreams(other), Vault(other)], PERSON)
        erased: Counter[str] = Counter()
        for line in receipt.places:  # a line per personal stream: one place may have several
            erased[line.place] += line.erased
        assert erased == {"stream": 1, "key": 1}
    finally:
        await other.drain()


def test_nonces_are_never_reused_and_a_forked_child_draws_its_own() -> None:
    """A nonce used twice under one key breaks AES-GCM: the batch is popped, and cleared in a child."""
    import os

    from bus.personal import seal

    drawn = [seal._nonce() for _ in range(2000)]
    assert len(set(drawn)) == len(drawn) and {len(n) for n in drawn} == {12}
    seal._nonce()  # the parent holds a batch now
    parent_batch = list(seal._nonces)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first nonce must come from a fresh read, not the parent's batch
        os.write(write, seal._nonce())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 12)
    assert child not in parent_batch
