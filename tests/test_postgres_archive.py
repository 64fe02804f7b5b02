"""The PostgreSQL archive against a real nats-server and a real PostgreSQL: typed tables made and
migrated from the contracts, every message stored once, nothing lost across a database restart.

The shared PostgreSQL (see ``tests/pg.py``) holds one schema per test, dropped afterwards; the
restart test runs a server of its own. Without PostgreSQL the tests skip (fail in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
import nats.js.errors
import psycopg
import pytest
import structlog
import structlog.testing
from conftest import require_service
from msgspec import Meta
from pg import SHARED_DSN, PrivatePostgres, free_port, query, server_binaries, unreachable
from psycopg import sql

import adapters.postgres
from adapters.base import check_declaration
from adapters.discovery import discover
from adapters.instances import parse_instance
from adapters.postgres import (
    ArchiveConfig,
    ArchiveSchemaError,
    ArchiveStats,
    ArchiveUnavailableError,
    BatchWriter,
    PostgresArchive,
    Table,
    ensure_tables,
    redact_dsn,
)
from adapters.testing import AdapterHarness
from bus import Bus, ConfigError, Event, Provenance
from bus.envelope import Envelope
from bus.subjects import contract_subject, stream_name
from contracts import (
    AirQualityObserved,
    BeachObservation,
    Contract,
    GeoPoint,
    Registry,
    contract,
    measure,
)

BEACH = "environment.beach-observation"
BEACH_TABLE = "environment_beach_observation_v1"


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
async def pg_dsn() -> str:
    """The shared PostgreSQL, or a skip (a failure under CITYBUS_REQUIRE_SERVICES=1)."""
    reason = await unreachable(SHARED_DSN)
    if reason is not None:
        require_service("PostgreSQL", f"nothing accepts connections at {redact_dsn(SHARED_DSN)} ({reason})")
    return SHARED_DSN


@pytest.fixture
async def schema(pg_dsn: str) -> AsyncIterator[str]:
    """A schema of the test's own in the shared database, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    await query(pg_dsn, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def beach(site: str, n: int = 0, **changes: Any) -> BeachObservation:
    """A beach observation at ``site``; ``n`` varies the values."""
    values: dict[str, Any] = {
        "site": site,
        "observed_at": datetime(2018, 8, 29, 10, tzinfo=UTC) + timedelta(minutes=n),
        "water_temperature": round(14.0 + n * 0.1, 2),
        "air_temperature": None if n % 3 == 0 else 18.5,
        "uv_index": None,
        "battery": 90.0 - n % 50,
        "device": None if n % 2 else f"vicotee-{site}-1",
        "depth": 0.5,
        "location": GeoPoint.at(59.7409, 10.2138) if n % 4 == 0 else None,
    }
    values.update(changes)
    return BeachObservation(**values)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail the test (not a timing assertion) if it never does."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the condition lives in PostgreSQL, not in an event
            await asyncio.sleep(0.05)


async def count(dsn: str, schema: str, site: str, table: str = BEACH_TABLE) -> int:
    statement = sql.SQL("SELECT count(*) FROM {} WHERE site = %s").format(sql.Identifier(schema, table))
    rows = await query(dsn, statement, [site])
    return int(rows[0][0])


@dataclass
class Running:
    """An archive under test, and the harness that runs it (which records the dead letters)."""

    harness: AdapterHarness
    adapter: PostgresArchive

    @property
    def stats(self) -> ArchiveStats:
        return self.adapter.stats


@contextlib.asynccontextmanager
async def archive(
    bus: Bus | None,
    dsn: str,
    schema: str,
    *,
    contracts: tuple[str, ...] = (BEACH,),
    instance: str | None = None,
    **options: Any,
) -> AsyncIterator[Running]:
    """A running archive; its durable consumers are deleted afterwards."""
    instance = instance or f"archive-{uuid.uuid4().hex[:10]}"
    config = {
        "dsn": dsn,
        "schema": schema,
        "contracts": list(contracts),
        "batch_wait": 0.05,
        "retry_delay": 0.05,
        **options,
    }
    try:
        async with AdapterHarness(PostgresArchive, config, bus=bus, instance=instance) as harness:
            assert isinstance(harness.adapter, PostgresArchive)
            yield Running(harness, harness.adapter)
    finally:
        if bus is not None:
            for cls in PostgresArchive(msgspec.convert(config, ArchiveConfig)).consumed():
                info = cls.__contract__
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await bus.js.delete_consumer(
                        stream_name(info.classification, info.domain),
                        f"{instance}-{info.event}-v{info.version}",
                    )


def event_of(data: Contract, event_id: str | None = None) -> Event[Contract]:
    """A received event as the consumer hands it to the archive."""
    envelope = Envelope(
        id=event_id or uuid.uuid4().hex,
        source="/tests",
        type=data.__contract__.type,
        time=datetime.now(UTC),
        subject=contract_subject(data),
        provenance="manual",
        content_type="application/json",
    )
    return Event(data, envelope)


# -- configuration ----------------------------------------------------------------------------


def test_the_package_exports_a_sorted_all_and_the_entry_point_finds_the_adapter() -> None:
    assert adapters.postgres.__all__ == sorted(adapters.postgres.__all__)
    assert all(hasattr(adapters.postgres, name) for name in adapters.postgres.__all__)
    assert discover().adapters["postgres-archive"] is PostgresArchive
    assert check_declaration(PostgresArchive).kind() == "sink"


def test_config_names_the_contracts_it_archives() -> None:
    instance = parse_instance(
        "archive", PostgresArchive, {"contracts": [BEACH, "environment.air-quality-observed@1"]}
    )
    config = instance.config
    assert isinstance(config, ArchiveConfig)
    assert (config.schema, config.batch_size, config.batch_wait) == ("citybus", 100, 0.2)
    archive = PostgresArchive(config)
    assert archive.consumed() == (BeachObservation, AirQualityObserved)
    assert archive.consumer_settings().max_in_flight >= config.batch_size


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"contracts": ["environment.no-such-thing"]}, "unknown contract environment.no-such-thing; known"),
        ({"contracts": ["environment.no-such-thing"]}, "environment.beach-observation@1"),
        ({"contracts": [f"{BEACH}@7"]}, f"unknown contract {BEACH}@7"),
        ({"contracts": []}, "contracts is empty"),
        ({"contracts": [BEACH, f"{BEACH}@1"]}, "lists environment.beach-observation.v1 twice"),
        ({"contracts": [BEACH], "batch_size": 0}, "key batch_size"),
        ({"contracts": [BEACH], "schema": "Drop Table"}, "schema 'Drop Table' must be"),
        ({"contracts": [BEACH], "bacth_size": 10}, "unknown key 'bacth_size'"),
        ({"dsn": "postgresql://127.0.0.1/citybus"}, "contracts"),
    ],
)
def test_config_errors_name_the_problem(table: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match="postgres-archive") as info:
        parse_instance("archive", PostgresArchive, table)
    assert expected in str(info.value)


def test_a_dsn_is_never_shown_with_its_password() -> None:
    url = "postgresql://citybus:s3cret@db.example:5432/archive?sslmode=require"
    assert "s3cret" not in redact_dsn(url)
    assert "host=db.example" in redact_dsn(url) and "user=citybus" in redact_dsn(url)
    assert "s3cret" not in redact_dsn("host=db.example password=s3cret dbname=archive")
    with pytest.raises(ConfigError) as info:
        parse_instance(
            "archive", PostgresArchive, {"contracts": [BEACH], "dsn": "host=x password=s3cret port"}
        )
    assert "s3cret" not in str(info.value)


# -- the table a contract becomes -------------------------------------------------------------


class Mood(enum.Enum):
    CALM = "calm"
    ROUGH = "rough"


def test_columns_follow_the_contracts_types() -> None:
    registry = Registry()

    @contract(
        "testing.everything",
        version=3,
        classification="internal",
        key="name",
        example={"name": "x", "count": 1, "at": "2024-05-01T10:00:00+02:00", "kind": "a"},
        registry=registry,
    )
    class Everything(Contract, frozen=True, kw_only=True):
        """Every kind of field, to see the column each becomes."""

        name: Annotated[str, Meta(description="A name")]
        count: int
        at: Annotated[datetime, Meta(tz=True)]
        kind: Literal["a", "b"]
        level: Literal[1, 2] = 1
        ratio: Annotated[float, measure("A share", unit="%", ge=0, le=100)] | None = None
        flag: bool = False
        day: date | None = None
        naive: datetime | None = None
        mood: Mood = Mood.CALM
        tags: list[str] = []
        scores: dict[str, int] = {}
        place: GeoPoint | None = None
        either: str | int | None = None
        ident: uuid.UUID | None = None
        amount: Decimal | None = None
        blob: bytes | None = None

    table = Table.from_contract(Everything, "s")
    assert table.name == "testing_everything_v3"
    columns = {c.name: (c.type, c.nullable) for c in table.columns}
    assert columns == {
        "ce_id": ("text", False),
        "ce_source": ("text", False),
        "ce_type": ("text", False),
        "ce_time": ("timestamp with time zone", True),
        "ce_provenance": ("text", True),
        "subject": ("text", False),
        "name": ("text", False),
        "count": ("bigint", False),
        "at": ("timestamp with time zone", False),
        "kind": ("text", False),
        "level": ("bigint", False),
        "ratio": ("double precision", True),
        "flag": ("boolean", False),
        "day": ("date", True),
        "naive": ("timestamp with time zone", True),
        "mood": ("text", False),
        "tags": ("jsonb", False),
        "scores": ("jsonb", False),
        "place": ("jsonb", True),
        "either": ("jsonb", True),
        "ident": ("uuid", True),
        "amount": ("numeric", True),
        "blob": ("bytea", True),
        "stored_at": ("timestamp with time zone", False),
    }
    assert table.column("ratio").comment == "A share (unit %)"
    assert table.column("name").comment == "A name"
    assert "Every kind of field" in table.comment and "testing.everything v3 (internal)" in table.comment

    row = dict(
        zip(
            [c.name for c in table.written],
            table.row(
                event_of(
                    Everything(
                        name="x",
                        count=2,
                        at=datetime(2024, 5, 1, tzinfo=UTC),
                        kind="b",
                        mood=Mood.ROUGH,
                        tags=["a"],
                        place=GeoPoint.at(59.7, 10.2),
                        either=3,
                    )
                )
            ),
            strict=True,
        )
    )
    assert row["mood"] == "rough"
    assert msgspec.json.decode(row["tags"]) == ["a"]
    assert msgspec.json.decode(row["place"]) == {"type": "Point", "coordinates": [10.2, 59.7]}
    assert row["either"] == "3" and row["ratio"] is None and row["subject"].endswith(".x")


def test_a_field_named_like_an_envelope_column_is_refused() -> None:
    registry = Registry()

    @contract("testing.clash", version=1, classification="public", key="subject", example={"subject": "a"},
              registry=registry)  # fmt: skip
    class Clash(Contract, frozen=True, kw_only=True):
        """A contract with a field the archive needs for itself."""

        subject: str

    with pytest.raises(ArchiveSchemaError, match="'subject' has the name of an envelope column"):
        Table.from_contract(Clash, "s")


async def test_the_table_has_typed_columns_constraints_and_comments(
    bus: Bus, pg_dsn: str, schema: str
) -> None:
    async with archive(bus, pg_dsn, schema, contracts=(BEACH, "environment.air-quality-observed")):
        rows = await query(
            pg_dsn,
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %s",
            [schema],
        )
    columns = {(t, c): (kind, nullable == "YES") for t, c, kind, nullable in rows}
    air = "environment_air_quality_observed_v1"
    expected = {
        (BEACH_TABLE, "ce_id"): ("text", False),
        (BEACH_TABLE, "ce_time"): ("timestamp with time zone", True),
        (BEACH_TABLE, "subject"): ("text", False),
        (BEACH_TABLE, "stored_at"): ("timestamp with time zone", False),
        (BEACH_TABLE, "site"): ("text", False),
        (BEACH_TABLE, "observed_at"): ("timestamp with time zone", False),
        (BEACH_TABLE, "water_temperature"): ("double precision", False),
        (BEACH_TABLE, "air_temperature"): ("double precision", True),
        (BEACH_TABLE, "device"): ("text", True),
        (BEACH_TABLE, "location"): ("jsonb", True),
        (air, "component"): ("text", False),
        (air, "index"): ("bigint", True),
        (air, "averaging_period"): ("bigint", False),
        (air, "station_type"): ("text", True),
    }
    assert {key: columns.get(key) for key in expected} == expected
    assert len([c for t, c in columns if t == BEACH_TABLE]) == 7 + len(BeachObservation.__struct_fields__)

    qualified = f"{schema}.{BEACH_TABLE}"
    [(primary_key,)] = await query(
        pg_dsn,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary",
        [qualified],
    )
    assert primary_key == "ce_id"
    [(table_comment, column_comment)] = await query(
        pg_dsn,
        "SELECT obj_description(%s::regclass, 'pg_class'),"
        " col_description(%s::regclass, (SELECT attnum FROM pg_attribute"
        "   WHERE attrelid = %s::regclass AND attname = 'water_temperature'))",
        [qualified, qualified, qualified],
    )
    assert "environment.beach-observation v1 (public)" in table_comment
    assert "Drammen's bathing sites" in table_comment
    assert column_comment == "Temperature of the bathing water (unit CEL)"


# -- storing ----------------------------------------------------------------------------------


async def test_every_message_is_stored_once_with_its_values_and_envelope(
    bus: Bus, pg_dsn: str, schema: str, entity: str
) -> None:
    sent: dict[str, tuple[BeachObservation, datetime]] = {}
    async with archive(bus, pg_dsn, schema, batch_size=10):
        for n in range(25):
            observation = beach(entity, n)
            moment = datetime(2024, 6, 1, 12, tzinfo=UTC) + timedelta(seconds=n)
            ack = await bus.publish_durable(
                observation, provenance=Provenance.SENSOR, source="/tests/beach", time=moment
            )
            sent[ack.event_id] = (observation, moment)
        await wait_until(lambda: _has(pg_dsn, schema, entity, 25))
        statement = sql.SQL(
            "SELECT ce_id, ce_source, ce_type, ce_time, ce_provenance, subject, stored_at,"
            " site, observed_at, water_temperature, air_temperature, uv_index, battery, device, depth,"
            " location FROM {} WHERE site = %s"
        ).format(sql.Identifier(schema, BEACH_TABLE))
        rows = await query(pg_dsn, statement, [entity])

    assert sorted(r[0] for r in rows) == sorted(sent)
    for ce_id, source, ce_type, ce_time, provenance, subject, stored_at, *values in rows:
        observation, moment = sent[ce_id]
        assert (source, ce_type, ce_time, provenance) == (
            "/tests/beach",
            "environment.beach-observation.v1",
            moment,
            "sensor",
        )
        assert subject == f"city.public.environment.beach-observation.{entity}"
        assert stored_at is not None
        expected = msgspec.json.decode(msgspec.json.encode(observation))
        assert values[:7] == [
            observation.site,
            observation.observed_at,
            observation.water_temperature,
            observation.air_temperature,
            observation.uv_index,
            observation.battery,
            observation.device,
        ]
        assert values[7] == observation.depth
        assert values[8] == expected.get("location")


async def _has(dsn: str, schema: str, site: str, n: int) -> bool:
    return await count(dsn, schema, site) >= n


async def test_a_batch_commits_before_its_messages_are_acknowledged_and_a_redelivery_is_a_no_op(
    pg_dsn: str, schema: str, entity: str
) -> None:
    config = ArchiveConfig(contracts=[BEACH], dsn=pg_dsn, schema=schema, batch_size=5, batch_wait=30)
    writer = BatchWriter(config, [Table.from_contract(BeachObservation, schema)], log=structlog.get_logger())
    await writer.start()
    events = [event_of(beach(entity, n)) for n in range(5)]

    async def handled(event: Event[Contract]) -> None:
        await writer.store(event)  # the consumer acks when this returns: the row must be there
        statement = sql.SQL("SELECT count(*) FROM {} WHERE ce_id = %s").format(
            sql.Identifier(schema, BEACH_TABLE)
        )
        assert await query(pg_dsn, statement, [event.id]) == [(1,)]

    try:
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(writer.run())
            # batch_wait is long: a batch closes when it is full, so five messages are one batch.
            await asyncio.gather(*(handled(e) for e in events))
            assert (writer.stats.batches, writer.stats.stored) == (1, 5)
            # Delivered again (a lost ack, a second consumer): the same rows, nothing added.
            await asyncio.gather(*(handled(e) for e in events))
            assert (writer.stats.batches, writer.stats.stored, writer.stats.duplicates) == (2, 5, 5)
            running.cancel()
    finally:
        await writer.close()
    assert await count(pg_dsn, schema, entity) == 5


async def test_replaying_the_whole_stream_into_the_archive_stores_nothing_twice(
    bus: Bus, pg_dsn: str, schema: str, entity: str
) -> None:
    async with archive(bus, pg_dsn, schema) as first:
        for n in range(20):
            await bus.publish_durable(beach(entity, n))
        await wait_until(lambda: _has(pg_dsn, schema, entity, 20))
    delivered = first.stats.stored + first.stats.duplicates
    [(stored,)] = await query(
        pg_dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, BEACH_TABLE))
    )
    assert stored == first.stats.stored

    # A second archive (its own durable consumer) gets every message of the stream again.
    async with archive(bus, pg_dsn, schema) as second:

        async def replayed() -> bool:
            return second.stats.stored + second.stats.duplicates >= delivered

        await wait_until(replayed)
    assert second.stats.stored == 0
    assert await count(pg_dsn, schema, entity) == 20
    assert await query(
        pg_dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, BEACH_TABLE))
    ) == [(stored,)]


async def test_a_message_postgresql_refuses_is_dead_lettered_and_the_others_are_stored(
    bus: Bus, pg_dsn: str, schema: str, entity: str
) -> None:
    async with archive(bus, pg_dsn, schema, max_deliver=2, batch_size=10) as running:
        await bus.publish_durable(beach(entity, 1))
        # Valid for the contract, but PostgreSQL text cannot hold a NUL character.
        refused = await bus.publish_durable(beach(entity, 2, device="nul\x00byte"))
        await bus.publish_durable(beach(entity, 3))

        async def dead_lettered() -> bool:
            return any(
                letter.original_headers.get("ce-id") == refused.event_id
                for letter in running.harness.dead_letters
            )

        await wait_until(dead_lettered)
        await wait_until(lambda: _has(pg_dsn, schema, entity, 2))
    [letter] = [
        letter
        for letter in running.harness.dead_letters
        if letter.original_headers.get("ce-id") == refused.event_id
    ]
    assert letter.reason == "max-deliver"
    assert f"PostgreSQL refused event {refused.event_id}" in letter.detail
    assert await count(pg_dsn, schema, entity) == 2


# -- migration --------------------------------------------------------------------------------


_EXAMPLE = {"site": "x", "observed_at": "2018-08-29T10:00:00+02:00", "water_temperature": 15}


@contract(BEACH, version=1, classification="public", key="site", example=_EXAMPLE, registry=Registry())
class FirstDraftBeachObservation(Contract, frozen=True, kw_only=True):
    """``environment.beach-observation`` v1 as it might have been first: three fields."""

    site: str
    observed_at: datetime
    water_temperature: float


@contract(
    BEACH,
    version=1,
    classification="public",
    key="site",
    example={**_EXAMPLE, "water_temperature": "15"},
    registry=Registry(),
)
class RetypedBeachObservation(Contract, frozen=True, kw_only=True):
    """``environment.beach-observation`` v1 with a field retyped (a breaking change)."""

    site: str
    observed_at: datetime
    water_temperature: str


async def test_a_new_optional_field_adds_its_column_and_keeps_the_old_rows(
    bus: Bus, pg_dsn: str, schema: str, entity: str
) -> None:
    old = Table.from_contract(FirstDraftBeachObservation, schema)
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        changes = await ensure_tables(conn, [old])
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (ce_id, ce_source, ce_type, subject, site, observed_at, water_temperature)"
                " VALUES ('old-1', '/tests', 'environment.beach-observation.v1', 's', %s, now(), 12.5)"
            ).format(old.ident),
            [entity],
        )
    assert changes.created == [f"{schema}.{BEACH_TABLE}"]

    async with archive(bus, pg_dsn, schema):
        ack = await bus.publish_durable(beach(entity, 1, depth=1.5))
        await wait_until(lambda: _has(pg_dsn, schema, entity, 2))

    rows = await query(
        pg_dsn,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s",
        [schema, BEACH_TABLE],
    )
    columns = {name: (kind, nullable) for name, kind, nullable in rows}
    assert columns["depth"] == ("double precision", "YES")
    assert columns["location"] == ("jsonb", "YES")
    assert columns["water_temperature"] == ("double precision", "NO")
    stored = await query(
        pg_dsn,
        sql.SQL("SELECT ce_id, water_temperature, depth FROM {} WHERE site = %s ORDER BY ce_id").format(
            old.ident
        ),
        [entity],
    )
    assert sorted(stored) == sorted([("old-1", 12.5, None), (ack.event_id, 14.1, 1.5)])


async def test_archives_starting_together_create_each_table_once(pg_dsn: str, schema: str) -> None:
    tables = [Table.from_contract(BeachObservation, schema), Table.from_contract(AirQualityObserved, schema)]

    async def prepare() -> list[str]:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            return (await ensure_tables(conn, tables)).created

    created = await asyncio.gather(*(prepare() for _ in range(4)))
    assert sorted(t for c in created for t in c) == sorted(t.label for t in tables)
    assert sum(map(len, created)) == 2  # one creator each, whoever got the lock first


async def test_a_retyped_field_that_kept_its_version_is_refused(bus: Bus, pg_dsn: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await ensure_tables(conn, [Table.from_contract(RetypedBeachObservation, schema)])
    with pytest.raises(ArchiveSchemaError) as info:
        async with archive(bus, pg_dsn, schema):
            pass
    message = str(info.value)
    assert "column water_temperature is text but the contract says double precision" in message
    assert "new major version (v2)" in message


# -- a database that goes away ----------------------------------------------------------------


async def test_an_unreachable_database_is_reported_without_its_password() -> None:
    dsn = f"postgresql://citybus:pw-{uuid.uuid4().hex}@127.0.0.1:{free_port()}/citybus"
    password = dsn.split(":")[2].split("@")[0]
    with structlog.testing.capture_logs() as logs, pytest.raises(ArchiveUnavailableError) as info:
        async with archive(None, dsn, "citybus", timeout=5):
            pass
    assert "cannot reach PostgreSQL at" in str(info.value) and "host=127.0.0.1" in str(info.value)
    assert password not in str(info.value)
    assert password not in repr(logs)


@pytest.mark.slow
async def test_a_postgresql_restart_loses_nothing_and_stores_nothing_twice(bus: Bus, entity: str) -> None:
    bindir = server_binaries()
    if bindir is None:
        require_service(
            "PostgreSQL server binaries", "no initdb and pg_ctl in /usr/lib/postgresql/*/bin or PATH"
        )
        return
    password = f"pw-{uuid.uuid4().hex}"  # trust authentication ignores it; the logs must not show it
    sent: list[str] = []

    async def publish(n: int) -> None:
        for _ in range(n):
            ack = await bus.publish_durable(beach(entity, len(sent)))
            sent.append(ack.event_id)

    async with PrivatePostgres(bindir) as pg:
        dsn = pg.dsn(password)
        with structlog.testing.capture_logs() as logs:
            async with archive(bus, dsn, "citybus", batch_size=10, timeout=5) as running:
                await publish(20)
                async with asyncio.TaskGroup() as tg:  # a restart while messages keep coming
                    tg.create_task(pg.restart())
                    tg.create_task(publish(20))
                await publish(10)
                await pg.stop()  # an outage: messages arrive while nothing can be stored
                await publish(20)
                await pg.start()
                await publish(10)
                await wait_until(lambda: _has(dsn, "citybus", entity, len(sent)), timeout=120)
                stats = running.stats
        statement = "SELECT ce_id FROM citybus.environment_beach_observation_v1 WHERE site = %s"
        stored = [ce_id for (ce_id,) in await query(dsn, statement, [entity])]

    assert len(sent) == 80
    assert sorted(stored) == sorted(sent)  # every message, each once
    assert stats.connection_errors >= 1 and stats.reconnects >= 1
    assert any(entry["event"] == "postgresql unavailable, will retry the batch" for entry in logs)
    assert password not in repr(logs)
