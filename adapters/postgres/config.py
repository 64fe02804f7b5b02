"""The archive's configuration: where PostgreSQL is, which contracts to keep, how to batch.

::

    [adapters.archive]
    adapter = "postgres-archive"
    dsn = "postgresql://citybus@db.drammen.internal:5432/citybus"   # password: PGPASSWORD or ~/.pgpass
    contracts = ["environment.beach-observation", "environment.weather-observed@1"]
    schema = "citybus"
    batch_size = 100
    batch_wait = 0.2

The DSN may carry a password, but it is never logged or put in an error message: everything the
archive says about its database goes through :func:`redact_dsn`. libpq's own ways to pass a password
(``PGPASSWORD``, ``~/.pgpass``) keep it out of the configuration file altogether.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
import psycopg
from msgspec import Meta
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from contracts import Contract, Registry, UnknownContractError, default_registry

__all__ = [
    "ArchiveConfig",
    "DEFAULT_DSN",
    "redact_dsn",
    "resolve_contracts",
    "scrub",
]

DEFAULT_DSN = "postgresql://127.0.0.1:5432/citybus"
"""A database of its own on the local server; the archive creates its schema and tables in it."""

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ArchiveConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[adapters.<instance>]`` section of a ``postgres-archive`` instance."""

    contracts: list[str]
    """The contracts to archive, by name (the newest version) or ``name@version``; one table each."""
    dsn: str = DEFAULT_DSN
    """The libpq connection string or ``postgresql://`` URL of the database (never logged as is)."""
    schema: Annotated[str, Meta(min_length=1, max_length=63)] = "citybus"
    """The PostgreSQL schema that holds the tables; created if missing."""
    batch_size: Annotated[int, Meta(ge=1, le=10_000)] = 100
    """At most this many messages are written in one transaction."""
    batch_wait: Annotated[float, Meta(ge=0, le=60)] = 0.2
    """Seconds a batch waits for more messages after its first, before it is written anyway."""
    retry_delay: Annotated[float, Meta(ge=0, le=3600)] = 1.0
    """Seconds before a message PostgreSQL refused is delivered again, and the first wait before
    reconnecting to a lost database (it doubles up to 30 s)."""
    max_deliver: Annotated[int, Meta(ge=1, le=1000)] = 5
    """Deliveries of a message PostgreSQL keeps refusing before it goes to the dead letters."""
    ack_wait: Annotated[float, Meta(gt=0, le=86_400)] = 120.0
    """Seconds JetStream waits for the acknowledgement of a message in hand before delivering it
    again. Messages stay in hand while the database is unreachable, so this is generous."""
    timeout: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    """Seconds to connect, or to write one batch, before the connection is taken as lost."""

    def __post_init__(self) -> None:
        if not self.contracts:
            raise ValueError("contracts is empty: name at least one contract to archive")
        resolve_contracts(self.contracts)
        if not _IDENTIFIER.match(self.schema):
            raise ValueError(
                f"schema {self.schema!r} must be a lower-case PostgreSQL identifier "
                "(letters, digits and _, not starting with a digit)"
            )
        try:
            conninfo_to_dict(self.dsn)
        except psycopg.Error:
            # libpq's message quotes the string, password included: say what is wrong without it.
            raise ValueError(
                "dsn is neither a libpq connection string (host=… dbname=…) nor a postgresql:// URL"
            ) from None

    @property
    def redacted_dsn(self) -> str:
        """The DSN without its password, for logs and error messages."""
        return redact_dsn(self.dsn)


def resolve_contracts(names: list[str], registry: Registry | None = None) -> tuple[type[Contract], ...]:
    """The contract classes ``names`` stand for; :class:`ValueError` naming every unknown one."""
    registry = registry if registry is not None else default_registry()
    found: list[type[Contract]] = []
    unknown: list[str] = []
    for name in names:
        try:
            cls = registry.get(name)
        except UnknownContractError:
            unknown.append(name)
            continue
        if cls in found:
            raise ValueError(f"contracts lists {cls.__contract__.type} twice")
        found.append(cls)
    if unknown:
        known = ", ".join(f"{c.__contract__.name}@{c.__contract__.version}" for c in registry)
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(f"unknown contract{plural} {', '.join(unknown)}; known contracts: {known}")
    return tuple(found)


def redact_dsn(dsn: str) -> str:
    """``dsn`` as ``host=… port=… dbname=… user=…``, without any password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(unparsable dsn)"
    params.pop("password", None)
    return make_conninfo("", **params) or "(libpq defaults)"


def scrub(text: str, dsn: str) -> str:
    """``text`` (an error message from libpq, say) with the DSN's password replaced by ``***``."""
    secrets = set()
    try:
        secrets.add(str(conninfo_to_dict(dsn).get("password") or ""))
    except psycopg.Error:
        pass
    try:
        secrets.add(urlsplit(dsn).password or "")
    except ValueError:
        pass
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
