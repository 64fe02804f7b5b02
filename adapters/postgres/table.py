"""A contract as a PostgreSQL table: typed columns derived from its msgspec type information.

One table per contract and major version, ``<schema>.<domain>_<event>_v<version>`` (``-`` becomes
``_``): ``environment.beach-observation`` v1 is ``citybus.environment_beach_observation_v1``. The
CloudEvents attributes come first, then one column per field, then ``stored_at``:

============================  ==============================  ===============================
contract type                 column type                     notes
============================  ==============================  ===============================
``str``                       ``text``
``int``                       ``bigint``
``float``                     ``double precision``
``bool``                      ``boolean``
``datetime`` (aware)          ``timestamp with time zone``    naive: ``timestamp``
``date`` / ``time``           ``date`` / ``time``
``timedelta``                 ``interval``
``uuid.UUID`` / ``Decimal``   ``uuid`` / ``numeric``
``bytes``                     ``bytea``
``Literal`` / ``Enum``        ``text`` (``bigint`` if ints)   the value, as on the wire
list, dict, tuple, Struct…    ``jsonb``                       as msgspec encodes it to JSON
``X | None``                  as ``X``, nullable              any other union: ``jsonb``
============================  ==============================  ===============================

A field that cannot be ``None`` is ``NOT NULL``. Column names are the fields' names on the wire.
The descriptions and units of the fields become column comments, the docstring the table comment.

**A sealed contract** (personal data about one person, :attr:`contracts.ContractInfo.sealed`) has
no field columns: its rows keep the message as it travelled, sealed with the person's key
(``sealed``, ``bytea``), the person's vault ref (``person``) and the inner ``content_type``, and
never the opened values. Erasing the person destroys the key, which leaves every row of theirs — in
the table, its backups and the WAL — unreadable; the archive's place (:mod:`adapters.postgres.personal`)
deletes the rows too, and opens them with the key for an export.
"""

from __future__ import annotations

import enum
import inspect as pyinspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi
from psycopg import sql

from adapters.postgres.errors import ArchiveSchemaError
from bus import Event
from contracts import Contract

__all__ = [
    "Column",
    "ENVELOPE_COLUMNS",
    "SEALED_COLUMNS",
    "Table",
    "column_type",
    "table_name",
]

TEXT = "text"
BIGINT = "bigint"
JSONB = "jsonb"
TIMESTAMPTZ = "timestamp with time zone"
MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1

Convert = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _json(value: Any) -> Any:
    return None if value is None else msgspec.json.encode(value).decode()


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an archive table."""

    name: str
    type: str
    """The type as PostgreSQL's ``format_type`` prints it (``double precision``, ``jsonb``…)."""
    nullable: bool
    comment: str
    field: str | None = None
    """The contract field it holds; ``None`` for the envelope columns."""
    convert: Convert = _same
    """From the field's Python value to what psycopg sends."""

    @property
    def definition(self) -> sql.Composable:
        """``name type [NOT NULL]`` for ``CREATE TABLE``."""
        return sql.SQL("{} {}{}").format(
            sql.Identifier(self.name), sql.SQL(self.type), sql.SQL("" if self.nullable else " NOT NULL")
        )


ENVELOPE_COLUMNS: tuple[Column, ...] = (
    Column("ce_id", TEXT, False, "CloudEvents id (ce-id) of the message; each is stored once"),
    Column("ce_source", TEXT, False, "CloudEvents source (ce-source): who published the message"),
    Column("ce_type", TEXT, False, "CloudEvents type (ce-type): the contract and its major version"),
    Column("ce_time", TIMESTAMPTZ, True, "CloudEvents time (ce-time): when the message was published"),
    Column(
        "ce_provenance",
        TEXT,
        True,
        "Where the values come from (ce-provenance): sensor, manual, vendor, recorded or synthetic",
    ),
    Column("subject", TEXT, False, "The NATS subject the message travelled on"),
)
STORED_AT = Column("stored_at", TIMESTAMPTZ, False, "When the archive stored the message")
SEALED_COLUMNS: tuple[Column, ...] = (
    Column("person", TEXT, False, "The vault ref of the person the message is about (citybus-person)"),
    Column("content_type", TEXT, False, "How the sealed message is encoded inside (content-type)"),
    Column("sealed", "bytea", False, "The message as it travelled: sealed with the person's key"),
)
"""The columns of a sealed contract's table, after the envelope's."""
_RESERVED = {c.name for c in (*ENVELOPE_COLUMNS, STORED_AT)}

_SCALARS: dict[type[mi.Type], str] = {
    mi.StrType: TEXT,
    mi.IntType: BIGINT,
    mi.FloatType: "double precision",
    mi.BoolType: "boolean",
    mi.DateType: "date",
    mi.TimeDeltaType: "interval",
    mi.UUIDType: "uuid",
    mi.DecimalType: "numeric",
    mi.BytesType: "bytea",
    mi.ByteArrayType: "bytea",
    mi.MemoryViewType: "bytea",
}


def _values_type(values: list[Any]) -> str:
    if all(isinstance(v, str) for v in values):
        return TEXT
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return BIGINT
    return JSONB


def _strip(t: mi.Type) -> tuple[mi.Type, bool]:
    """The type without its metadata, and whether ``None`` is allowed."""
    nullable = False
    while True:
        if isinstance(t, mi.Metadata):
            t = t.type
        elif isinstance(t, mi.UnionType) and any(isinstance(m, mi.NoneType) for m in t.types):
            nullable = True
            rest = tuple(m for m in t.types if not isinstance(m, mi.NoneType))
            t = rest[0] if len(rest) == 1 else mi.UnionType(rest)
        else:
            return t, nullable


def column_type(t: mi.Type) -> tuple[str, bool, Convert]:
    """The column type of a msgspec type, whether it is nullable, and how values are converted."""
    t, nullable = _strip(t)
    if isinstance(t, mi.NoneType):
        return JSONB, True, _json
    scalar = _SCALARS.get(type(t))
    if scalar is not None:
        return scalar, nullable, _same
    if isinstance(t, mi.DateTimeType):
        return (TIMESTAMPTZ if t.tz is not False else "timestamp without time zone"), nullable, _same
    if isinstance(t, mi.TimeType):
        return ("time with time zone" if t.tz else "time without time zone"), nullable, _same
    if isinstance(t, mi.LiteralType):
        kind = _values_type(list(t.values))
        return kind, nullable, _json if kind == JSONB else _same
    if isinstance(t, mi.EnumType):
        kind = _values_type([m.value for m in t.cls])
        return kind, nullable, _json if kind == JSONB else _enum_value
    if isinstance(t, mi.UnionType):
        members = {column_type(m)[0] for m in t.types}
        if len(members) == 1 and JSONB not in members:  # e.g. Literal["a"] | Literal["b"]
            return members.pop(), nullable, _enum_value
    # Containers, nested Structs (GeoPoint), dataclasses, Any and mixed unions keep their shape.
    return JSONB, nullable, _json


def _describe(t: mi.Type) -> str:
    """The description and unit of a field, from its ``Meta`` (the outermost one that says)."""
    description = unit = None
    while True:
        if isinstance(t, mi.Metadata):
            schema = t.extra_json_schema or {}
            description = description or schema.get("description") or schema.get("title")
            unit = unit or (t.extra or {}).get("unit") or schema.get("x-unit")
            t = t.type
        elif isinstance(t, mi.UnionType):
            rest = [m for m in t.types if not isinstance(m, mi.NoneType)]
            if len(rest) != 1:
                break
            t = rest[0]
        else:
            break
    text = str(description or "")
    if unit:
        text = f"{text} (unit {unit})" if text else f"unit {unit}"
    return text


def table_name(contract: type[Contract]) -> str:
    """``<domain>_<event>_v<version>``, the table of a contract's major version."""
    info = contract.__contract__
    name = f"{info.domain}_{info.event}_v{info.version}".replace("-", "_")
    if len(name) > MAX_IDENTIFIER:
        raise ArchiveSchemaError(
            f"contract {info.type}: table name {name!r} is longer than the {MAX_IDENTIFIER} characters "
            "PostgreSQL allows"
        )
    return name


@dataclass(frozen=True, slots=True)
class Table:
    """The archive table of one contract: its columns and the statements that write it."""

    schema: str
    name: str
    contract: type[Contract]
    columns: tuple[Column, ...]
    """Every column, in table order, ``stored_at`` last."""
    comment: str

    @classmethod
    def from_contract(cls, contract: type[Contract], schema: str) -> Table:
        """Derive the table from the contract's fields; :class:`ArchiveSchemaError` if impossible."""
        info = contract.__contract__
        if info.sealed:
            comment = (
                f"citybus archive of {info.name} v{info.version} ({info.classification.value}, sealed: "
                "each row holds the message sealed with its person's key, never its values)"
            )
            return cls(
                schema,
                table_name(contract),
                contract,
                (*ENVELOPE_COLUMNS, *SEALED_COLUMNS, STORED_AT),
                comment,
            )
        struct = mi.type_info(contract)
        assert isinstance(struct, mi.StructType)
        fields: list[Column] = []
        for field in struct.fields:
            name = field.encode_name
            if name in _RESERVED:
                raise ArchiveSchemaError(
                    f"contract {info.type}: field {name!r} has the name of an envelope column"
                )
            if len(name) > MAX_IDENTIFIER:
                raise ArchiveSchemaError(f"contract {info.type}: field name {name!r} is too long")
            kind, nullable, convert = column_type(field.type)
            fields.append(Column(name, kind, nullable, _describe(field.type), field.name, convert))
        doc = pyinspect.cleandoc(contract.__doc__ or "")
        comment = f"citybus archive of {info.name} v{info.version} ({info.classification.value}). {doc}"
        return cls(schema, table_name(contract), contract, (*ENVELOPE_COLUMNS, *fields, STORED_AT), comment)

    @property
    def ident(self) -> sql.Identifier:
        """The schema-qualified table name."""
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        """``schema.table`` for logs."""
        return f"{self.schema}.{self.name}"

    @property
    def written(self) -> tuple[Column, ...]:
        """The columns an insert sets (all but ``stored_at``, which the database fills in)."""
        return self.columns[:-1]

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        return next(c for c in self.columns if c.name == name)

    def create_statement(self) -> sql.Composed:
        """``CREATE TABLE IF NOT EXISTS`` with every column and the ``ce_id`` primary key."""
        definitions = [c.definition for c in self.columns[:-1]]
        definitions.append(sql.SQL("stored_at timestamp with time zone NOT NULL DEFAULT now()"))
        definitions.append(sql.SQL("PRIMARY KEY (ce_id)"))
        return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            self.ident, sql.SQL(", ").join(definitions)
        )

    @property
    def sealed(self) -> bool:
        """Whether its rows hold sealed messages (:data:`SEALED_COLUMNS`) rather than values."""
        return self.contract.__contract__.sealed

    def index_statement(self) -> sql.Composed:
        """An index for the usual question to an archive: one entity's history in time (a sealed
        table's: one person's, what an export or erasure asks)."""
        key = self.contract.__contract__.key
        column = "person" if self.sealed else next((c.name for c in self.columns if c.field == key), key)
        index = f"{self.name[: MAX_IDENTIFIER - len('_by_entity')]}_by_entity"
        return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, ce_time)").format(
            sql.Identifier(index), self.ident, sql.Identifier(column)
        )

    def insert_statement(self) -> sql.Composed:
        """One statement for a whole batch: a column of values per parameter, unnested into rows.

        Set-based, one round trip whatever the batch size; ``ON CONFLICT (ce_id) DO NOTHING``
        makes a redelivered message (or a duplicate inside the batch) a no-op.
        """
        columns = self.written
        return sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest({}) ON CONFLICT (ce_id) DO NOTHING").format(
            self.ident,
            sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
            sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(c.type)) for c in columns),
        )

    def row(self, event: Event[Contract]) -> tuple[Any, ...]:
        """The values of one received message, in the order of :attr:`written`."""
        envelope = event.envelope
        head = (
            envelope.id,
            envelope.source,
            envelope.type,
            envelope.time,
            envelope.provenance or None,
            envelope.subject,
        )
        if self.sealed:
            if event.sealed is None or not envelope.person:
                raise ValueError(
                    f"{envelope.type} is sealed personal data and arrived unsealed: not archived in the clear"
                )
            return (*head, envelope.person, envelope.content_type, event.sealed)
        data = event.data
        fields = self.written[len(ENVELOPE_COLUMNS) :]
        return head + tuple(c.convert(getattr(data, c.field or c.name)) for c in fields)
