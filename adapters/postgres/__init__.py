"""The PostgreSQL archive: every message of the chosen contracts, stored once, in typed tables.

::

    [adapters.archive]
    adapter = "postgres-archive"
    dsn = "postgresql://citybus@127.0.0.1:5432/citybus"
    contracts = ["environment.beach-observation", "environment.weather-observed"]

One table per contract version (:mod:`~adapters.postgres.table`), created and migrated from the
contract (:mod:`~adapters.postgres.migrate`), written in batches whose messages are acknowledged
only after the commit (:mod:`~adapters.postgres.writer`).
"""

from adapters.postgres.archive import PostgresArchive
from adapters.postgres.config import DEFAULT_DSN, ArchiveConfig, redact_dsn
from adapters.postgres.errors import (
    ArchiveError,
    ArchiveRefusedError,
    ArchiveSchemaError,
    ArchiveUnavailableError,
)
from adapters.postgres.migrate import Migration, ensure_tables
from adapters.postgres.table import Column, Table
from adapters.postgres.writer import ArchiveStats, BatchWriter

__all__ = [
    "ArchiveConfig",
    "ArchiveError",
    "ArchiveRefusedError",
    "ArchiveSchemaError",
    "ArchiveStats",
    "ArchiveUnavailableError",
    "BatchWriter",
    "Column",
    "DEFAULT_DSN",
    "Migration",
    "PostgresArchive",
    "Table",
    "ensure_tables",
    "redact_dsn",
]
