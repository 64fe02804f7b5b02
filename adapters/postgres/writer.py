"""The batch writer: messages gathered into batches, each written in one transaction.

How a message travels, and why nothing acknowledged is lost and nothing is stored twice::

    consumer ──► handler: store(event) ──► queue ──► writer: gather ≤ batch_size, ≤ batch_wait
                      │ awaits its future                  │ one transaction: INSERT … ON CONFLICT
                      ▼                                    ▼ COMMIT
                 returns → ack   ◄──────────── future resolved only after COMMIT
                 raises  → nak   ◄──────────── PostgreSQL refused that message

* A handler returns — and its message is acknowledged — only once the transaction holding its row
  has committed. A crash before that leaves the message unacknowledged, and JetStream delivers it
  again.
* Every row is keyed by ``ce_id`` and written with ``ON CONFLICT (ce_id) DO NOTHING``, so a message
  delivered again (after a lost acknowledgement, a crash, a second archive instance) is a no-op.
* A lost connection (PostgreSQL restarting, a failover, a full disk) is logged without the password,
  counted, and the same batch is retried after reconnecting with a backoff that doubles up to 30 s.
  Its messages stay in hand meanwhile and the consumer fetches no more than it can hold: backpressure
  rather than failed deliveries, which would send healthy messages to the dead letters after
  ``max_deliver`` tries.
* A batch PostgreSQL refuses (a value it cannot hold, such as a NUL character in a text) is written
  again row by row, each under a savepoint: the good rows commit, and only the refused messages fail
  their handler, to be retried and finally dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors

from adapters.postgres.config import ArchiveConfig, scrub
from adapters.postgres.errors import (
    ArchiveError,
    ArchiveRefusedError,
    ArchiveSchemaError,
    ArchiveUnavailableError,
)
from adapters.postgres.migrate import ensure_tables
from adapters.postgres.table import Table
from bus import Event
from bus.backoff import Backoff
from contracts import Contract

__all__ = ["ArchiveStats", "BatchWriter"]

MAX_RECONNECT_DELAY = 30.0
# Failover to a hot standby leaves the client on a read-only server: wait for the new primary.
_TRANSIENT_SQLSTATES = {"25006"}
# The table or schema is gone (dropped by hand, a restored database): create it again.
_MISSING = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn, psycopg.errors.InvalidSchemaName)


@dataclass(slots=True)
class ArchiveStats:
    """What an archive has done since it started."""

    batches: int = 0
    """Transactions committed."""
    stored: int = 0
    """Messages stored (new rows)."""
    duplicates: int = 0
    """Messages already stored, skipped by ``ON CONFLICT``."""
    refused: int = 0
    """Messages PostgreSQL refused (each is retried, then dead-lettered)."""
    connection_errors: int = 0
    """Failed connection attempts and connections lost."""
    reconnects: int = 0
    """Connections made again after one was lost."""


@dataclass(eq=False, slots=True)
class _Pending:
    table: Table
    row: tuple[Any, ...]
    event_id: str
    done: asyncio.Future[None]


def _mark_retrieved(future: asyncio.Future[None]) -> None:
    # A handler cancelled just as its batch failed never reads the exception: do not warn about it.
    if not future.cancelled():
        future.exception()


class BatchWriter:
    """Writes received messages to their tables in batches; see the module docstring."""

    def __init__(
        self,
        config: ArchiveConfig,
        tables: Iterable[Table],
        *,
        log: Any,
        stats: ArchiveStats | None = None,
        application_name: str = "citybus-archive",
    ) -> None:
        self.config = config
        self.tables = {t.contract: t for t in tables}
        self._inserts = {t.contract: t.insert_statement() for t in self.tables.values()}
        self.log = log.bind(database=config.redacted_dsn)
        self.stats = stats if stats is not None else ArchiveStats()
        self._application_name = application_name
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._prepared = False
        self._connected_once = False
        self._batch: list[_Pending] = []
        self._stopped = False
        initial = max(config.retry_delay, 0.05)
        # retry_delay may be set longer than 30 s: then it is the wait every time
        self._backoff = Backoff(initial=initial, maximum=max(initial, MAX_RECONNECT_DELAY))

    # -- connection ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and create or migrate the tables.

        Raises :class:`ArchiveUnavailableError` when PostgreSQL cannot be reached (the supervisor
        then restarts the archive with backoff) and :class:`ArchiveSchemaError` when a table does
        not fit its contract.
        """
        try:
            await self._connection()
        except ArchiveError:
            raise
        except Exception as exc:
            if not self._is_lost(exc):
                raise
            await self.close()
            raise ArchiveUnavailableError(
                f"cannot reach PostgreSQL at {self.config.redacted_dsn}: {self._say(exc)}"
            ) from None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            await self.close()
            async with asyncio.timeout(self.config.timeout):
                conn = await psycopg.AsyncConnection.connect(
                    self.config.dsn, autocommit=True, application_name=self._application_name
                )
            self._conn = conn
            # Rows never depend on it, but a naive timestamp must not depend on the server's zone.
            await conn.execute("SET TIME ZONE 'UTC'")
            self._prepared = False
            if self._connected_once:
                self.stats.reconnects += 1
                self.log.info("postgresql reconnected")
            else:
                self.log.info("postgresql connected")
            self._connected_once = True
        if not self._prepared:
            await self._prepare(conn)
        return conn

    async def _prepare(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            changes = await ensure_tables(conn, list(self.tables.values()))
        except psycopg.Error as exc:
            if self._is_lost(exc):
                raise
            raise ArchiveSchemaError(
                f"cannot create or migrate the archive tables in {self.config.redacted_dsn}: {self._say(exc)}"
            ) from None
        for table in changes.created:
            self.log.info("archive table created", table=table)
        for column in changes.added:
            self.log.info("archive column added", column=column)
        for column in changes.relaxed:
            self.log.info("archive column made nullable", column=column)
        self._prepared = True

    def _is_lost(self, exc: BaseException) -> bool:
        """True when ``exc`` means the connection, not the data: wait, reconnect, write again."""
        if isinstance(exc, TimeoutError | psycopg.OperationalError | psycopg.InterfaceError):
            return True
        if isinstance(exc, psycopg.Error) and exc.sqlstate in _TRANSIENT_SQLSTATES:
            return True
        conn = self._conn
        return conn is not None and (conn.closed or conn.broken)

    def _say(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, self.config.dsn)

    async def close(self) -> None:
        """Close the connection (a transaction in progress is rolled back: nothing was acked)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except psycopg.Error:
                pass  # it is going away either way

    # -- the handler side ---------------------------------------------------------------------

    async def store(self, event: Event[Contract]) -> None:
        """The consumer's handler: return once the event's row is committed, raise if refused."""
        if self._stopped:
            raise ArchiveError("the archive is stopping; the message will be delivered again")
        table = self.tables[type(event.data)]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_mark_retrieved)
        self._queue.put_nowait(_Pending(table, table.row(event), event.id, done))
        await done

    # -- the writer side ----------------------------------------------------------------------

    async def run(self) -> None:
        """Gather and write batches until cancelled.

        Whatever is still pending then fails its handler, so its message is delivered again soon
        (``retry_delay``) rather than after ``ack_wait``.
        """
        try:
            while True:
                self._batch = await self._gather()
                await self._write(self._batch)
                self._batch = []
        finally:
            self._stopped = True
            pending = self._batch
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            for p in pending:
                if not p.done.done():
                    p.done.set_exception(ArchiveError("the archive stopped before the message was stored"))

    async def _gather(self) -> list[_Pending]:
        """Up to ``batch_size`` pending messages, waiting at most ``batch_wait`` after the first."""
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.batch_wait
        while len(batch) < self.config.batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        """Write one batch until it is committed (or its refused messages are failed)."""
        retries = self._backoff.attempts()
        one_by_one = recreated = False
        while True:
            live = [p for p in batch if not p.done.done()]  # a cancelled handler's message is redelivered
            if not live:
                return
            try:
                conn = await self._connection()
                async with asyncio.timeout(self.config.timeout):
                    refused = await (
                        self._insert_each(conn, live) if one_by_one else self._insert(conn, live)
                    )
            except ArchiveError:
                raise
            except Exception as exc:
                if isinstance(exc, _MISSING) and not recreated and not self._is_lost(exc):
                    self.log.warning("archive table missing, creating it again", error=self._say(exc))
                    self._prepared = False
                    recreated = True
                elif self._is_lost(exc):
                    self.stats.connection_errors += 1
                    delay = retries.next()
                    self.log.warning(
                        "postgresql unavailable, will retry the batch",
                        error=self._say(exc),
                        batch=len(live),
                        retry_in=delay,
                    )
                    await self.close()
                    await asyncio.sleep(delay)
                elif isinstance(exc, psycopg.Error) and not one_by_one:
                    self.log.warning("batch refused, writing it row by row", error=self._say(exc))
                    one_by_one = True
                else:
                    raise
                continue
            self._resolve(live, refused)
            return

    async def _insert(self, conn: psycopg.AsyncConnection[Any], live: list[_Pending]) -> dict[_Pending, str]:
        """The whole batch in one transaction, one statement per table."""
        by_table: dict[type[Contract], list[_Pending]] = {}
        for p in live:
            by_table.setdefault(p.table.contract, []).append(p)
        stored = 0
        async with conn.transaction():
            for contract, pending in by_table.items():
                columns = [list(values) for values in zip(*(p.row for p in pending), strict=True)]
                cur = await conn.execute(self._inserts[contract], columns)
                stored += max(cur.rowcount, 0)
        self._count(len(live), stored)
        return {}

    async def _insert_each(
        self, conn: psycopg.AsyncConnection[Any], live: list[_Pending]
    ) -> dict[_Pending, str]:
        """The batch row by row, each under a savepoint; returns the refused ones with the reason."""
        refused: dict[_Pending, str] = {}
        stored = 0
        async with conn.transaction():
            for p in live:
                try:
                    async with conn.transaction():
                        cur = await conn.execute(self._inserts[p.table.contract], [[v] for v in p.row])
                except psycopg.Error as exc:
                    if self._is_lost(exc):
                        raise
                    refused[p] = self._say(exc)
                else:
                    stored += max(cur.rowcount, 0)
        self._count(len(live) - len(refused), stored)
        return refused

    def _count(self, written: int, stored: int) -> None:
        self.stats.batches += 1
        self.stats.stored += stored
        self.stats.duplicates += written - stored

    def _resolve(self, live: list[_Pending], refused: dict[_Pending, str]) -> None:
        """Committed: let the handlers return (and ack); refused: let them raise (and nak)."""
        for p in live:
            if p.done.done():
                continue
            reason = refused.get(p)
            if reason is None:
                p.done.set_result(None)
                continue
            self.stats.refused += 1
            self.log.warning(
                "message refused by postgresql", event_id=p.event_id, table=p.table.label, error=reason
            )
            p.done.set_exception(
                ArchiveRefusedError(f"PostgreSQL refused event {p.event_id} for {p.table.label}: {reason}")
            )
