"""The archive's errors, under :class:`bus.errors.CityBusError`.

::

    ArchiveError
     ├── ArchiveSchemaError (ValueError)          a table does not fit its contract (or cannot)
     ├── ArchiveUnavailableError (ConnectionError) PostgreSQL cannot be reached or refuses the login
     └── ArchiveRefusedError (ValueError)          PostgreSQL refused to store one message

Every message names the database only as :func:`~adapters.postgres.config.redact_dsn` prints it.
"""

from __future__ import annotations

from bus.errors import CityBusError

__all__ = ["ArchiveError", "ArchiveRefusedError", "ArchiveSchemaError", "ArchiveUnavailableError"]


class ArchiveError(CityBusError):
    """Root of the PostgreSQL archive's errors."""


class ArchiveSchemaError(ArchiveError, ValueError):
    """A table in the database does not fit its contract — a retyped or removed field that kept
    its version — or a contract cannot become a table. A breaking change is a new major version,
    which the archive keeps in a table of its own."""


class ArchiveUnavailableError(ArchiveError, ConnectionError):
    """PostgreSQL could not be reached, or refused the connection, when the archive started."""


class ArchiveRefusedError(ArchiveError, ValueError):
    """PostgreSQL refused to store one message (a value it cannot hold); the message is retried
    and, after ``max_deliver`` deliveries, goes to the dead letters with this reason."""
