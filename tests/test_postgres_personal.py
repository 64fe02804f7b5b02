"""The archive place against a real nats-server and a real PostgreSQL: a sealed contract is archived
sealed (the ref and the ciphertext, never a value), an export opens a person's rows with their key
and finds their identifiers in rows in the clear, an erasure deletes both, retention deletes what
expired. Without PostgreSQL the tests skip (fail under CITYBUS_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from pg import query
from psycopg import sql

from adapters.postgres import ArchiveConfig, Table, ensure_tables
from adapters.postgres.personal import ArchivePlace, places
from bus import Bus
from bus.config import load_config
from bus.personal.places import Person, installed_places
from bus.personal.seal import Unreadable
from contracts import DeadLetter
from contracts.community import SIGNUP_RETENTION, VolunteerSignup
from sandbox.personal import RecordingsPlace
from tests.test_postgres_archive import archive, event_of, pg_dsn, schema, wait_until
from tests.test_sandbox_personal import EMAIL, NAME, PHONE, signup

__all__ = ["pg_dsn", "schema"]  # fixtures, imported for this module's tests

SIGNUPS = "community_volunteer_signup_v1"


async def rows(dsn: str, schema: str, table: str = SIGNUPS) -> list[str]:
    """Every row of a table as PostgreSQL's text of it: what a dump would hold."""
    statement = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, table))
    return [r[0] for r in await query(dsn, statement)]


async def person(bus: Bus) -> Person:
    volunteer = f"v-{os.urandom(6).hex()}"
    found = await bus.vault.key(volunteer)
    assert found is not None
    return Person(id=volunteer, ref=found[0], key=found[1], identifiers=(NAME, EMAIL, PHONE))


async def dead_letter_naming(dsn: str, schema: str, email: str) -> None:
    """A dead letter stored in the clear whose detail quotes an e-mail address (an internal table)."""
    table = Table.from_contract(DeadLetter, schema)
    letter = DeadLetter(
        reason="handler-error",
        detail=f"the mail server refused {email.upper()}",
        original_subject="city.internal.community.newsletter.x",
        original_headers={},
        payload=b"{}",
        failed_at=datetime.now(UTC),
    )
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await ensure_tables(conn, [table])
        row = table.row(event_of(letter))
        await conn.execute(table.insert_statement(), [[value] for value in row])


async def test_a_sealed_contract_is_archived_sealed_and_its_person_exported_and_erased(
    quiet_bus: Bus, pg_dsn: str, schema: str
) -> None:
    who, other = await person(quiet_bus), await person(quiet_bus)
    async with archive(quiet_bus, pg_dsn, schema, contracts=("community.volunteer-signup",)):
        await quiet_bus.publish(signup(who.id), provenance="manual")
        await quiet_bus.publish(signup(who.id, status="changed"), provenance="manual")
        await quiet_bus.publish(signup(other.id, name="Ola Demolund", email=None), provenance="manual")

        async def stored() -> bool:
            return len(await rows(pg_dsn, schema)) == 3

        await wait_until(stored)
    columns = await query(
        pg_dsn,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        [schema, SIGNUPS],
    )
    assert {c[0] for c in columns} >= {"person", "sealed", "content_type", "ce_id"}
    assert not {c[0] for c in columns} & {"name", "email", "phone", "volunteer_id"}  # never the values
    for text in await rows(pg_dsn, schema):
        for identifier in (NAME, EMAIL, PHONE, who.id, other.id):
            assert identifier not in text
    # a row's text shows the bytea column in hex, where no name could ever be found: its bytes too
    bodies = await query(pg_dsn, sql.SQL("SELECT sealed FROM {}").format(sql.Identifier(schema, SIGNUPS)))
    assert len(bodies) == 3
    for (body,) in bodies:
        for identifier in (NAME, EMAIL, PHONE, who.id, other.id):
            assert identifier.encode() not in bytes(body)
    await dead_letter_naming(pg_dsn, schema, EMAIL)
    place = ArchivePlace(
        ArchiveConfig(contracts=["community.volunteer-signup"], dsn=pg_dsn, schema=schema), instance="archive"
    )

    found = await place.export(who)
    sealed = [f for f in found if f.type == "community.volunteer-signup.v1"]
    assert len(found) == 3 and len(sealed) == 2
    assert all(f.readable and f.data["name"] == NAME and f.data["volunteer_id"] == who.id for f in sealed)
    assert {f.data["status"] for f in sealed} == {"confirmed", "changed"}
    (letter,) = [f for f in found if f.type == "citybus.dead-letter.v1"]
    assert EMAIL.upper() in letter.data["detail"]  # found case-folded, as it is stored
    before = await query(
        pg_dsn,
        sql.SQL("SELECT sealed FROM {} WHERE person = %s").format(sql.Identifier(schema, SIGNUPS)),
        [who.ref],
    )  # a copy taken before the erasure (a backup)

    receipts = await place.erase(who)
    assert sorted((r.location, r.found, r.erased) for r in receipts) == [
        (f"archive: {schema}.citybus_dead_letter_v1", 1, 1),
        (f"archive: {schema}.{SIGNUPS}", 2, 2),
    ]
    assert all(r.how.startswith("deleted") for r in receipts)
    assert await place.export(who) == []
    assert len(await rows(pg_dsn, schema)) == 1  # the other person's sign-up stays
    assert len(await place.export(other)) == 1
    # the backup: once the key is destroyed nothing opens it
    await quiet_bus.vault.destroy(who.ref)
    for (body,) in before:
        with pytest.raises(Unreadable):
            await quiet_bus.vault.open(who.ref, bytes(body), "community.volunteer-signup.v1")


async def test_retention_deletes_the_rows_that_outlived_it(quiet_bus: Bus, pg_dsn: str, schema: str) -> None:
    who = await person(quiet_bus)
    now = datetime.now(UTC)
    async with archive(quiet_bus, pg_dsn, schema, contracts=("community.volunteer-signup",)):
        await quiet_bus.publish(
            signup(who.id), provenance="manual", time=now - SIGNUP_RETENTION - timedelta(days=1)
        )
        await quiet_bus.publish(
            signup(who.id, status="changed"), provenance="manual", time=now - timedelta(days=3)
        )

        async def stored() -> bool:
            return len(await rows(pg_dsn, schema)) == 2

        await wait_until(stored)
    place = ArchivePlace(ArchiveConfig(contracts=["community.volunteer-signup"], dsn=pg_dsn, schema=schema))
    receipts = await place.expire(now)
    assert [(r.location, r.found) for r in receipts] == [(f"archive: {schema}.{SIGNUPS}", 1)]
    (left,) = await place.export(who)
    assert left.data["status"] == "changed"
    assert await place.expire(now) == []


async def test_an_unreachable_archive_says_so_without_its_password(quiet_bus: Bus) -> None:
    config = ArchiveConfig(
        contracts=["community.volunteer-signup"],
        dsn="postgresql://citybus:secret@127.0.0.1:1/citybus",
        timeout=2,
    )
    with pytest.raises(Exception, match="cannot reach PostgreSQL") as raised:
        await ArchivePlace(config).export(await person(quiet_bus))
    assert "secret" not in str(raised.value)


async def test_the_archives_and_recordings_are_registered_places(quiet_bus: Bus, tmp_path: Path) -> None:
    toml = tmp_path / "citybus.toml"
    toml.write_text(
        f'[sandbox]\nrecordings = ["{tmp_path}"]\n'
        '[adapters.archive]\nadapter = "postgres-archive"\ncontracts = ["community.volunteer-signup"]\n'
        '[adapters.old-archive]\nadapter = "postgres-archive"\nenabled = false\n'
        'contracts = ["environment.beach-observation"]\n'
    )
    config = load_config(toml, environ={})
    (only,) = places(config, quiet_bus)
    assert isinstance(only, ArchivePlace) and only.instance == "archive"
    found, problems = installed_places(config, quiet_bus)
    assert problems == []
    assert sorted(type(p).__name__ for p in found if isinstance(p, ArchivePlace | RecordingsPlace)) == [
        "ArchivePlace",
        "RecordingsPlace",
    ]


def test_a_sealed_contracts_table_holds_no_value_and_refuses_an_unsealed_message() -> None:
    table = Table.from_contract(VolunteerSignup, "citybus")
    assert [c.name for c in table.written][-3:] == ["person", "content_type", "sealed"]
    assert not {c.name for c in table.columns} & set(VolunteerSignup.__struct_fields__)
    assert "person" in table.index_statement().as_string(None)
    with pytest.raises(ValueError, match="arrived unsealed: not archived in the clear"):
        table.row(event_of(signup("v-0123456789ab")))


async def test_a_row_whose_sender_claims_a_future_time_still_expires(
    quiet_bus: Bus, pg_dsn: str, schema: str
) -> None:
    """Retention is judged by when citybus stored a message, not by the sender's ``ce-time``
    (docs/privacy.md): a sign-up published with a time ten years ahead must not stay in the archive
    for ten years and its retention."""
    who = await person(quiet_bus)
    now = datetime.now(UTC)
    async with archive(quiet_bus, pg_dsn, schema, contracts=("community.volunteer-signup",)):
        await quiet_bus.publish(signup(who.id), provenance="manual", time=now + timedelta(days=3650))

        async def stored() -> bool:
            return len(await rows(pg_dsn, schema)) == 1

        await wait_until(stored)
    place = ArchivePlace(ArchiveConfig(contracts=["community.volunteer-signup"], dsn=pg_dsn, schema=schema))
    receipts = await place.expire(now + SIGNUP_RETENTION + timedelta(days=1))
    assert [(r.location, r.found) for r in receipts] == [(f"archive: {schema}.{SIGNUPS}", 1)]
