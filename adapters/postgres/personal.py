"""The archive place: a person's rows in the PostgreSQL archive, for export, erasure and retention
(:mod:`bus.personal.places`, registered as the ``archive`` entry point of ``citybus.personal``).

One place per configured ``postgres-archive`` instance, over the tables of its schema that can
hold personal data: those of personal and internal contracts (a public contract cannot name a
person: the contract registry refuses it), which are the ones an erasure reads through.

* **Sealed tables** (:data:`~adapters.postgres.table.SEALED_COLUMNS`) name the person by their ref:
  an export selects ``person = ref`` and opens each row with the person's key; an erasure deletes
  those rows. Their bytes were ciphertext all along, so the copies PostgreSQL keeps after a
  ``DELETE`` (dead tuples until vacuumed, the WAL, backups) are unreadable once the key is destroyed.
* **Rows in the clear** (a table of an internal contract, or rows stored before sealing) are found
  by the person's id and identifiers anywhere in the row's text, case-folded as
  :meth:`~bus.personal.places.Person.named_in` does; an erasure deletes them and vacuums the table,
  so their tuples do not linger in its pages.
* **Retention**: rows of a contract with a :attr:`~contracts.ContractInfo.retention` older than it
  (by the earlier of ``ce_time`` and ``stored_at``: a sender's clock ahead of the city's cannot
  keep a row longer) are deleted.

Each method opens a connection of its own for the request: erasure and export are rare, and the
archive's writer keeps its connection for the writing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import msgspec
import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import sql

from adapters.instances import parse_instance
from adapters.postgres.archive import PostgresArchive
from adapters.postgres.config import ArchiveConfig, scrub
from adapters.postgres.errors import ArchiveUnavailableError
from adapters.postgres.table import table_name
from bus import Bus
from bus.config import Config
from bus.envelope import MSGPACK
from bus.personal.places import Person, PersonalPlace
from bus.personal.seal import Unreadable, open_body
from contracts import Classification, Contract, ErasedPlace, FoundMessage, Registry, default_registry

__all__ = ["PLACE", "ArchivePlace", "places"]

PLACE: Final = "archive"
_SEARCHED: Final = (Classification.PERSONAL, Classification.INTERNAL)


def _like(needles: Iterable[str]) -> list[str]:
    """``LIKE`` patterns that find each (case-folded) needle anywhere in a text."""
    escaped = (n.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for n in needles)
    return [f"%{n}%" for n in escaped]


class ArchivePlace:
    """The ``archive`` place over one archive's database and schema."""

    name = PLACE

    def __init__(self, config: ArchiveConfig, *, instance: str = "archive", registry: Registry | None = None):
        self.config = config
        self.instance = instance
        self._registry = registry or default_registry()

    # -- the tables ----------------------------------------------------------------------------

    def _contracts(self) -> dict[str, type[Contract]]:
        """The contracts whose tables may hold personal data, by table name."""
        return {table_name(c): c for c in self._registry if c.__contract__.classification in _SEARCHED}

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            async with asyncio.timeout(self.config.timeout):
                conn = await psycopg.AsyncConnection.connect(
                    self.config.dsn, autocommit=True, application_name=f"citybus {self.instance} personal"
                )
        except (OSError, TimeoutError, psycopg.Error) as exc:
            text = scrub(
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, self.config.dsn
            )
            raise ArchiveUnavailableError(
                f"cannot reach PostgreSQL at {self.config.redacted_dsn}: {text}"
            ) from None
        await conn.execute("SET TIME ZONE 'UTC'")
        return conn

    async def _tables(self, conn: psycopg.AsyncConnection[Any]) -> list[tuple[str, type[Contract], bool]]:
        """(table, contract, sealed) of every table in the schema that may hold personal data."""
        cur = await conn.execute(
            "SELECT c.relname, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
            " AND a.attname = 'sealed' AND NOT a.attisdropped)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
            [self.config.schema],
        )
        contracts = self._contracts()
        return [(name, contracts[name], sealed) for name, sealed in await cur.fetchall() if name in contracts]

    def _ident(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.config.schema, table)

    def _location(self, table: str) -> str:
        return f"{self.instance}: {self.config.schema}.{table}"

    # -- the place -----------------------------------------------------------------------------

    async def export(self, who: Person) -> list[FoundMessage]:
        """Every row about ``who``: sealed ones opened with their key, clear ones as stored."""
        cipher = None if who.key is None else AESGCM(who.key)
        found: list[FoundMessage] = []
        async with await self._connect() as conn:
            for table, _contract, sealed in await self._tables(conn):
                ident = self._ident(table)
                if sealed:
                    cur = await conn.execute(
                        sql.SQL(
                            "SELECT ce_id, ce_type, ce_time, subject, content_type, sealed FROM {}"
                            " WHERE person = %s ORDER BY ce_time, ce_id"
                        ).format(ident),
                        [who.ref],
                    )
                    for ce_id, ce_type, ce_time, subject, content_type, body in await cur.fetchall():
                        data, readable = _opened(cipher, bytes(body), ce_type, content_type)
                        found.append(
                            FoundMessage(
                                place=PLACE,
                                location=f"{self._location(table)} ce_id {ce_id}",
                                subject=subject,
                                type=ce_type,
                                time=ce_time,
                                data=data,
                                readable=readable,
                            )
                        )
                if not who.needles:
                    continue
                cur = await conn.execute(
                    sql.SQL(
                        "SELECT ce_id, ce_type, ce_time, subject, to_jsonb(t) FROM {} t"
                        " WHERE lower(t::text) LIKE ANY(%s){} ORDER BY ce_time, ce_id"
                    ).format(ident, sql.SQL(" AND person IS DISTINCT FROM %s") if sealed else sql.SQL("")),
                    [_like(who.needles), who.ref] if sealed else [_like(who.needles)],
                )
                for ce_id, ce_type, ce_time, subject, row in await cur.fetchall():
                    found.append(
                        FoundMessage(
                            place=PLACE,
                            location=f"{self._location(table)} ce_id {ce_id}",
                            subject=subject,
                            type=ce_type,
                            time=ce_time,
                            data=row,
                        )
                    )
        return found

    async def erase(self, who: Person) -> list[ErasedPlace]:
        """Delete every row about ``who``; a line per table that held any."""
        receipts: list[ErasedPlace] = []
        async with await self._connect() as conn:
            for table, _contract, sealed in await self._tables(conn):
                ident = self._ident(table)
                by_ref = clear = 0
                if sealed:
                    cur = await conn.execute(
                        sql.SQL("DELETE FROM {} WHERE person = %s").format(ident), [who.ref]
                    )
                    by_ref = max(cur.rowcount, 0)
                if who.needles:
                    cur = await conn.execute(
                        sql.SQL("DELETE FROM {} t WHERE lower(t::text) LIKE ANY(%s)").format(ident),
                        [_like(who.needles)],
                    )
                    clear = max(cur.rowcount, 0)
                if clear:  # values in the clear: their dead tuples must not stay in the table's pages
                    await conn.execute(sql.SQL("VACUUM {}").format(ident))
                if by_ref or clear:
                    parts = [f"{by_ref} sealed (unreadable once the key is destroyed)"] if by_ref else []
                    parts += [f"{clear} in the clear (the table vacuumed)"] if clear else []
                    receipts.append(
                        ErasedPlace(
                            place=PLACE,
                            location=self._location(table),
                            found=by_ref + clear,
                            erased=by_ref + clear,
                            how="deleted: " + ", ".join(parts),
                        )
                    )
        return receipts

    async def expire(self, now: datetime) -> list[ErasedPlace]:
        """Delete the rows older than their contract's retention; a line per table that held any."""
        receipts: list[ErasedPlace] = []
        async with await self._connect() as conn:
            for table, contract, _sealed in await self._tables(conn):
                retention = contract.__contract__.retention
                if retention is None:
                    continue
                cur = await conn.execute(
                    # the earlier of the sender's time and the archive's: a ce-time ahead of the
                    # clock (a sender's wrong clock, or a hostile one) cannot keep a row longer
                    sql.SQL("DELETE FROM {} WHERE least(ce_time, stored_at) < %s").format(self._ident(table)),
                    [now - retention],
                )
                if cur.rowcount > 0:
                    receipts.append(
                        ErasedPlace(
                            place=PLACE,
                            location=self._location(table),
                            found=cur.rowcount,
                            erased=cur.rowcount,
                            how=f"deleted: older than the contract's retention ({retention.days} days)",
                        )
                    )
        return receipts


def _opened(cipher: AESGCM | None, body: bytes, ce_type: str, content_type: str) -> tuple[Any, bool]:
    """A sealed row's message decoded, and whether it could be opened."""
    if cipher is None:
        return None, False
    try:
        plain = open_body(cipher, body, ce_type)
    except Unreadable:
        return None, False
    try:
        return (
            msgspec.msgpack.decode(plain) if content_type == MSGPACK else msgspec.json.decode(plain)
        ), True
    except msgspec.DecodeError:
        return plain.decode("utf-8", errors="replace"), True


def places(config: Config, bus: Bus) -> list[PersonalPlace]:
    """The ``citybus.personal`` entry point of ``adapters``: one place per configured archive."""
    found: list[PersonalPlace] = []
    for name, table in config.adapters.items():
        if table.get("adapter", name) != PostgresArchive.name or table.get("enabled") is False:
            continue
        archive = parse_instance(name, PostgresArchive, table).config
        assert isinstance(archive, ArchiveConfig)
        found.append(ArchivePlace(archive, instance=name, registry=bus.registry))
    return found
