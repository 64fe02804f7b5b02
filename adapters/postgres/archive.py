"""The ``postgres-archive`` adapter: every message of the chosen contracts, kept in PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from adapters.base import Adapter
from adapters.postgres.config import ArchiveConfig, resolve_contracts
from adapters.postgres.table import Table
from adapters.postgres.writer import ArchiveStats, BatchWriter
from bus import ConsumerSettings
from contracts import Contract

if TYPE_CHECKING:
    from adapters.context import Context

__all__ = ["PostgresArchive"]


class PostgresArchive(Adapter[ArchiveConfig]):
    """Archive sink: stores every message of the configured contracts in PostgreSQL, one typed
    table per contract version, each message once.

    Each contract is consumed durably (JetStream, at least once) and written in batches; a message
    is acknowledged only after the transaction holding it has committed, and rows are keyed by
    ``ce_id``, so a redelivered message is not stored twice. See :mod:`adapters.postgres.writer`
    for the batching and what happens when PostgreSQL goes away, and :mod:`adapters.postgres.table`
    for the table layout.
    """

    name = "postgres-archive"
    Config = ArchiveConfig
    # The contracts come from the configuration: see consumed().
    consumes = ()
    produces = ()
    durable = True  # every contract through ctx.consume

    def __init__(self, config: ArchiveConfig) -> None:
        super().__init__(config)
        self.stats = ArchiveStats()
        """Counts of this run: batches, messages stored and skipped as duplicates, errors."""

    def consumed(self) -> tuple[type[Contract], ...]:
        """The configured contracts."""
        return resolve_contracts(self.config.contracts)

    def consumer_settings(self) -> ConsumerSettings:
        """How the durable consumers deliver: enough messages in flight to fill two batches (one
        being written, one gathering), the configured retries, and a generous ``ack_wait``."""
        c = self.config
        return ConsumerSettings(
            max_deliver=c.max_deliver,
            retry_delay=c.retry_delay,
            ack_wait=max(c.ack_wait, c.batch_wait + 2 * c.timeout),
            max_in_flight=2 * c.batch_size,
        )

    async def run(self, ctx: Context) -> None:
        """Create or migrate the tables, then consume and write until cancelled."""
        contracts = self.consumed()
        tables = [Table.from_contract(c, self.config.schema) for c in contracts]
        writer = BatchWriter(
            self.config,
            tables,
            log=ctx.log,
            stats=self.stats,
            application_name=f"citybus {ctx.instance}",
        )
        settings = self.consumer_settings()
        try:
            await writer.start()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(writer.run(), name=f"{ctx.instance} writer")
                consumers = [
                    tg.create_task(
                        ctx.consume(contract, writer.store, settings=settings),
                        name=f"{ctx.instance} {contract.__contract__.type}",
                    )
                    for contract in contracts
                ]
                ctx.log.info("archiving", tables=[t.label for t in tables], batch_size=self.config.batch_size)
                ctx.ready()
                try:
                    await ctx.wait_stopped()
                finally:
                    # The consumers stop first, while the writer still commits what they hold.
                    for consumer in consumers:
                        consumer.cancel()
                    await asyncio.wait(consumers)
        except ExceptionGroup as group:
            # One failure (a table that does not fit, say) cancels the rest: report it plainly.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            await writer.close()
