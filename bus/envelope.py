"""The CloudEvents 1.0 envelope, in binary mode, carried in NATS headers.

Attributes travel as ``ce-*`` headers (the CloudEvents NATS binding), the body is the contract
encoded by msgspec, and ``content-type`` says how. ``Nats-Msg-Id`` repeats ``ce-id`` so JetStream
drops a duplicate of a message it already stored. ``ce-provenance`` (a CloudEvents extension
attribute) says where the value comes from: a sensor, a person, a vendor, a recording or a generator.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Generic, NamedTuple, Protocol, TypeVar

from bus.errors import MissingHeaderError
from contracts import Contract

__all__ = [
    "CONTENT_TYPES",
    "Envelope",
    "Event",
    "Provenance",
    "build_headers",
    "format_time",
    "new_event_id",
    "parse_headers",
    "shared_headers",
]

SPECVERSION = "1.0"
H_SPECVERSION = "ce-specversion"
H_ID = "ce-id"
H_SOURCE = "ce-source"
H_TYPE = "ce-type"
H_TIME = "ce-time"
H_DATASCHEMA = "ce-dataschema"
H_PROVENANCE = "ce-provenance"
H_CONTENT_TYPE = "content-type"
H_MSG_ID = "Nats-Msg-Id"
H_PERSON = "citybus-person"
"""Names the person a sealed personal message is about, by their vault ref (:mod:`bus.personal`)."""

JSON = "application/json"
MSGPACK = "application/msgpack"
CONTENT_TYPES = {"json": JSON, "msgpack": MSGPACK}

_REQUIRED = (H_SPECVERSION, H_ID, H_SOURCE, H_TYPE)


class Provenance(enum.StrEnum):
    """Where a message's values come from; every message says so."""

    SENSOR = "sensor"
    MANUAL = "manual"
    VENDOR = "vendor"
    RECORDED = "recorded"
    SYNTHETIC = "synthetic"
    PSEUDONYMISED = "pseudonymised"
    """Real values about people, with every person replaced by a generated stand-in (a recording
    made for pilots with ``citybus record --pseudonymise``)."""


_ID_BATCH = 256
_ids: list[str] = []


def new_event_id() -> str:
    """A fresh, globally unique ``ce-id``: 128 random bits, 32 hex digits.

    Random from the operating system's CSPRNG (as ``uuid4``), but read 256 ids at a time: one
    system call per id measured as a quarter of preparing a message. Unpredictable, so nobody can
    publish ahead with an id a producer will use (JetStream would drop the producer's message as a
    duplicate). A forked child starts with an empty batch, never its parent's.
    """
    while True:
        try:
            return _ids.pop()  # atomic: threads sharing the batch never get the same id
        except IndexError:
            block = os.urandom(16 * _ID_BATCH).hex()
            _ids.extend(block[i : i + 32] for i in range(0, len(block), 32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.clear)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as CloudEvents wants ``time``."""
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None:
            raise ValueError("ce-time needs a timezone-aware datetime")
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # without "+00:00"


class _Described(Protocol):
    """What the envelope needs to know of a message's kind (a :class:`ContractInfo` has it)."""

    @property
    def type(self) -> str: ...
    @property
    def dataschema(self) -> str: ...


def build_headers(
    info: _Described,
    *,
    event_id: str,
    source: str,
    time: datetime,
    provenance: Provenance | str,
    content_type: str = JSON,
) -> dict[str, str]:
    """The NATS headers of one message of a contract: the one writer of the envelope.

    (One dict display, no helper calls: this runs for every message a :class:`~bus.Bus` publishes.
    A publisher that stamps many messages of one kind copies :func:`shared_headers` instead.)
    """
    return {
        H_SPECVERSION: SPECVERSION,
        H_ID: event_id,
        H_SOURCE: source,
        H_TYPE: info.type,
        H_TIME: format_time(time),
        H_DATASCHEMA: info.dataschema,
        H_PROVENANCE: str(provenance),
        H_CONTENT_TYPE: content_type,
        H_MSG_ID: event_id,
    }


class _Kind(NamedTuple):
    type: str
    dataschema: str


_PER_MESSAGE: Final = (H_ID, H_TIME, H_MSG_ID)
_ANY_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)


def shared_headers(
    ce_type: str,
    *,
    source: str,
    provenance: Provenance | str,
    dataschema: str | None,
    content_type: str = JSON,
) -> dict[str, str]:
    """The headers every message of one type from one source shares: :func:`build_headers`'s,
    without ``ce-id``, ``ce-time`` and ``Nats-Msg-Id``, which a publisher adds to a copy for each
    message (the replay: ~80,000 a second, a template per recorded channel).

    ``dataschema`` is ``None`` for a type no registered contract describes (a recording may hold one):
    then there is no ``ce-dataschema``.
    """
    headers = build_headers(
        _Kind(ce_type, dataschema or ""),
        event_id="",
        source=source,
        time=_ANY_TIME,
        provenance=provenance,
        content_type=content_type,
    )
    for name in _PER_MESSAGE:
        del headers[name]
    if dataschema is None:
        del headers[H_DATASCHEMA]
    return headers


@dataclass(frozen=True, slots=True)
class Envelope:
    """The CloudEvents attributes of a received message."""

    id: str
    source: str
    type: str
    time: datetime | None
    subject: str
    provenance: str
    content_type: str
    person: str = ""
    """The ref of the person a sealed personal message is about (``citybus-person``); empty for the rest."""


def parse_headers(headers: Mapping[str, str] | None, subject: str) -> Envelope:
    """Read the envelope from a message's headers; raise :class:`MissingHeaderError` if incomplete."""
    if not headers:
        raise MissingHeaderError("the message has no headers: it is not a CloudEvents message")
    missing = [h for h in _REQUIRED if not headers.get(h)]
    if missing:
        raise MissingHeaderError(f"missing CloudEvents header(s): {', '.join(missing)}")
    if headers[H_SPECVERSION] != SPECVERSION:
        raise MissingHeaderError(
            f"ce-specversion is {headers[H_SPECVERSION]!r}; citybus speaks CloudEvents {SPECVERSION}"
        )
    raw_time = headers.get(H_TIME)
    time: datetime | None = None
    if raw_time:
        try:
            time = datetime.fromisoformat(raw_time)
        except ValueError:
            raise MissingHeaderError(f"ce-time {raw_time!r} is not an RFC 3339 timestamp") from None
        if time.tzinfo is None:
            raise MissingHeaderError(f"ce-time {raw_time!r} has no timezone")
    return Envelope(
        id=headers[H_ID],
        source=headers[H_SOURCE],
        type=headers[H_TYPE],
        time=time,
        subject=subject,
        provenance=headers.get(H_PROVENANCE, ""),
        content_type=headers.get(H_CONTENT_TYPE, JSON),
        person=headers.get(H_PERSON, ""),
    )


C_co = TypeVar("C_co", bound=Contract, covariant=True)


@dataclass(frozen=True, slots=True)
class Event(Generic[C_co]):
    """A received message: the decoded contract instance and its envelope."""

    data: C_co
    envelope: Envelope
    sealed: bytes | None = None
    """A sealed personal message's body as it travelled (ciphertext), for those that store it as such
    (an archive); ``None`` for the rest."""

    @property
    def id(self) -> str:
        """The ``ce-id``."""
        return self.envelope.id

    @property
    def subject(self) -> str:
        """The subject it arrived on."""
        return self.envelope.subject

    @property
    def provenance(self) -> str:
        """Where its values come from (``sensor``, ``recorded``, …)."""
        return self.envelope.provenance
