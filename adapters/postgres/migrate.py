"""Creating and migrating the archive tables from their contracts.

A compatible evolution of a contract — a new optional field with a default — migrates its table
by itself: the next start adds the column (``ALTER TABLE … ADD COLUMN IF NOT EXISTS``), nullable,
since the rows stored before the field existed have no value for it. A breaking change (a removed,
renamed or retyped field) is a new major version of the contract, and a new major version is a new
table (``…_v2``) beside the old one, which keeps its history. A table that no longer fits a contract
that kept its version is refused with :class:`ArchiveSchemaError` rather than bent to fit.

Several archives may start at once against one database: the DDL runs in one transaction under an
advisory lock, so they neither race on ``CREATE TABLE`` nor see a half-made table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from adapters.postgres.errors import ArchiveSchemaError
from adapters.postgres.table import Column, Table

__all__ = [
    "ExistingColumn",
    "LOCK_KEY",
    "Migration",
    "ensure_tables",
    "table_columns",
]

LOCK_KEY = 0x63_69_74_79_62_75_73  # "citybus": the advisory lock of the archive's DDL


@dataclass(slots=True)
class Migration:
    """What :func:`ensure_tables` changed."""

    created: list[str] = field(default_factory=list)
    """Tables created (``schema.table``)."""
    added: list[str] = field(default_factory=list)
    """Columns added to existing tables (``schema.table.column``)."""
    relaxed: list[str] = field(default_factory=list)
    """Columns whose ``NOT NULL`` was dropped because their field became optional."""


@dataclass(frozen=True, slots=True)
class ExistingColumn:
    """A column as the database has it."""

    type: str
    not_null: bool
    has_default: bool


async def table_columns(conn: psycopg.AsyncConnection[Any], table: Table) -> dict[str, ExistingColumn]:
    """The columns the table has in the database (empty when it does not exist)."""
    cur = await conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef"
        " FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        [table.ident.as_string(conn)],
    )
    return {
        name: ExistingColumn(kind, not_null, has_default)
        for name, kind, not_null, has_default in await cur.fetchall()
    }


async def _has_unique_ce_id(conn: psycopg.AsyncConnection[Any], table: Table) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indnkeyatts = 1 AND a.attname = 'ce_id'",
        [table.ident.as_string(conn)],
    )
    return await cur.fetchone() is not None


def _add_column(table: Table, column: Column) -> sql.Composed:
    default = sql.SQL(" DEFAULT now()") if column.name == "stored_at" else sql.SQL("")
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}").format(
        table.ident, sql.Identifier(column.name), sql.SQL(column.type), default
    )


async def _migrate(
    conn: psycopg.AsyncConnection[Any], table: Table, existing: dict[str, ExistingColumn], changes: Migration
) -> None:
    problems = []
    for column in table.columns:
        have = existing.get(column.name)
        if have is None:
            await conn.execute(_add_column(table, column))
            changes.added.append(f"{table.label}.{column.name}")
        elif have.type != column.type:
            problems.append(f"column {column.name} is {have.type} but the contract says {column.type}")
        elif have.not_null and column.nullable:
            await conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
                    table.ident, sql.Identifier(column.name)
                )
            )
            changes.relaxed.append(f"{table.label}.{column.name}")
    expected = {c.name for c in table.columns}
    for name, have in existing.items():
        if name not in expected and have.not_null and not have.has_default:
            problems.append(f"column {name} is NOT NULL but no field of the contract fills it")
    if not problems and not await _has_unique_ce_id(conn, table):
        problems.append("ce_id is not its primary key")
    if problems:
        info = table.contract.__contract__
        raise ArchiveSchemaError(
            f"table {table.label} does not fit contract {info.type}: {'; '.join(problems)}. "
            f"A removed, renamed or retyped field needs a new major version (v{info.version + 1}), "
            "which is archived in a table of its own"
        )


async def _comment(conn: psycopg.AsyncConnection[Any], table: Table) -> None:
    await conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table.ident, sql.Literal(table.comment)))
    for column in table.columns:
        await conn.execute(
            sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                sql.Identifier(table.schema, table.name, column.name), sql.Literal(column.comment or None)
            )
        )


async def ensure_tables(conn: psycopg.AsyncConnection[Any], tables: list[Table]) -> Migration:
    """Create the schemas and tables that are missing and migrate the ones that exist.

    Runs in one transaction; raises :class:`ArchiveSchemaError` for a table that does not fit its
    contract, and lets psycopg's errors through (the caller tells a lost connection from the rest).
    """
    changes = Migration()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        for schema in sorted({t.schema for t in tables}):
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for table in tables:
            existing = await table_columns(conn, table)
            if existing:
                await _migrate(conn, table, existing, changes)
            else:
                await conn.execute(table.create_statement())
                changes.created.append(table.label)
            await conn.execute(table.index_statement())
            await _comment(conn, table)
    return changes
