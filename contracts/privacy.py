"""Contracts of a person's rights over their data (domain ``citybus``): access, erasure, and its record.

A citizen may ask what citybus holds about them (GDPR art. 15) and that it be erased (art. 17).
Both are asked by request/reply of the bus's privacy service, naming the person by the
pseudonymous id the personal contracts carry (``person=``), and optionally by the values that
identify them (a name, an email), so that copies which were never sealed — a dead letter of a
malformed message — are found too. Requests name a *case*, never the person, on their subject.
Every erasure, asked or by retention, leaves an internal record without the person in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from contracts.base import Classification, Contract, contract
from contracts.fields import Timestamp

__all__ = [
    "ErasedPlace",
    "ErasureReceipt",
    "ErasureRecord",
    "ErasureRequest",
    "FoundMessage",
    "PersonalExport",
    "PersonalExportRequest",
]

_CASE = r"^[A-Za-z0-9_-]{1,64}$"
Case = Annotated[str, Meta(pattern=_CASE, description="The case number the request is handled under")]
Person = Annotated[
    str, Meta(min_length=1, max_length=128, description="The person's pseudonymous id (e.g. v-3f9c2a7e51d0)")
]
Identifiers = Annotated[
    tuple[Annotated[str, Meta(min_length=3, max_length=254)], ...],
    Meta(
        max_length=16,
        description="Values that identify the person (name, email, phone), searched for in data that was "
        "never sealed",
    ),
]


@contract(
    "citybus.personal-export-request",
    version=1,
    classification=Classification.PERSONAL,
    key="case",
    reply="citybus.personal-export",
    example={
        "case": "dpo-2026-0042",
        "person": "v-3f9c2a7e51d0",
        "identifiers": ["kari.nordmann@example.no"],
    },
)
class PersonalExportRequest(Contract, frozen=True, kw_only=True):
    """Someone asks, for a person, every personal message citybus holds about them (GDPR art. 15)."""

    case: Case
    person: Person
    identifiers: Identifiers = ()


class FoundMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One personal message about the person, where it was found, and what it says."""

    place: Annotated[str, Meta(description="Where: stream, dead-letters, archive, recording")]
    location: Annotated[str, Meta(description="Where exactly: a stream and sequence, a table row, a file")]
    subject: Annotated[str, Meta(description="The subject it was sent on")] = ""
    type: Annotated[str, Meta(description="Its CloudEvents type (contract and version)")] = ""
    time: Annotated[Timestamp | None, Meta(description="When it was sent")] = None
    data: Annotated[Any, Meta(description="The message, opened with the person's key")] = None
    readable: Annotated[bool, Meta(description="False when it can no longer be opened (key destroyed)")] = (
        True
    )


@contract(
    "citybus.personal-export",
    version=1,
    classification=Classification.PERSONAL,
    key="case",
    answers="citybus.personal-export-request",
    example={
        "case": "dpo-2026-0042",
        "person": "v-3f9c2a7e51d0",
        "generated_at": "2026-12-07T12:00:00Z",
        "places": ["stream", "dead-letters", "archive", "recording"],
        "messages": [
            {
                "place": "stream",
                "location": "CITY_PERSONAL_COMMUNITY#17",
                "subject": "city.personal.community.volunteer-signup.p-6f1d0c2b9a8e7d6c5b4a3f2e",
                "type": "community.volunteer-signup.v1",
                "time": "2018-08-29T19:42:10+02:00",
                "data": {"volunteer_id": "v-3f9c2a7e51d0", "name": "Kari Nordmann"},
            }
        ],
    },
)
class PersonalExport(Contract, frozen=True, kw_only=True):
    """Every personal message about one person that citybus holds, from every place it keeps them."""

    case: Case
    person: Person
    generated_at: Annotated[datetime, Meta(tz=True, description="When the export was made")]
    places: Annotated[tuple[str, ...], Meta(description="The places searched")] = ()
    messages: Annotated[tuple[FoundMessage, ...], Meta(description="What was found")] = ()
    complete: Annotated[bool, Meta(description="False when a place could not be searched: see notes")] = True
    notes: Annotated[tuple[str, ...], Meta(description="What could not be searched, and why")] = ()


@contract(
    "citybus.erasure-request",
    version=1,
    classification=Classification.PERSONAL,
    key="case",
    reply="citybus.erasure-receipt",
    example={"case": "dpo-2026-0043", "person": "v-3f9c2a7e51d0", "identifiers": ["Kari Nordmann"]},
)
class ErasureRequest(Contract, frozen=True, kw_only=True):
    """Someone asks that everything citybus keeps about a person be erased (GDPR art. 17)."""

    case: Case
    person: Person
    identifiers: Identifiers = ()


class ErasedPlace(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What an erasure did in one place."""

    place: Annotated[str, Meta(description="stream, dead-letters, archive, recording, key, logs")]
    location: Annotated[str, Meta(description="Which stream, table, file or vault")]
    found: Annotated[int, Meta(ge=0, description="Messages about the person found there")] = 0
    erased: Annotated[int, Meta(ge=0, description="Of those, how many are gone")] = 0
    how: Annotated[
        str, Meta(description="How: deleted and overwritten, deleted, rewritten, key destroyed")
    ] = ""
    error: Annotated[str, Meta(description="Why it could not be done, if it could not")] = ""


@contract(
    "citybus.erasure-receipt",
    version=1,
    classification=Classification.PERSONAL,
    key="case",
    answers="citybus.erasure-request",
    example={
        "case": "dpo-2026-0043",
        "person": "v-3f9c2a7e51d0",
        "erased_at": "2026-12-07T12:00:00Z",
        "places": [
            {
                "place": "stream",
                "location": "CITY_PERSONAL_COMMUNITY",
                "found": 3,
                "erased": 3,
                "how": "deleted and overwritten",
            },
            {
                "place": "key",
                "location": "CITYBUS_PERSONAL_KEYS",
                "found": 1,
                "erased": 1,
                "how": "destroyed",
            },
        ],
        "complete": True,
    },
)
class ErasureReceipt(Contract, frozen=True, kw_only=True):
    """Where a person's data was and that it is gone: one line per place citybus keeps data."""

    case: Case
    person: Person
    erased_at: Annotated[datetime, Meta(tz=True, description="When the erasure finished")]
    places: Annotated[tuple[ErasedPlace, ...], Meta(description="Every place searched")] = ()
    complete: Annotated[bool, Meta(description="True when every place found was erased")] = True


@contract(
    "citybus.erasure-record",
    version=1,
    classification=Classification.INTERNAL,
    key="case",
    example={
        "case": "retention-2026-12-07T12-00",
        "reason": "retention",
        "erased_at": "2026-12-07T12:00:00Z",
        "places": [{"place": "stream", "location": "CITY_PERSONAL_COMMUNITY", "found": 12, "erased": 12}],
        "complete": True,
    },
)
class ErasureRecord(Contract, frozen=True, kw_only=True):
    """An erasure took place: the accountability record, which names no person.

    Kept (internal) so the city can show that erasure requests were carried out and retention
    was kept, without keeping who was erased.
    """

    case: Case
    reason: Annotated[Literal["request", "retention"], Meta(description="Asked by a person, or retention")]
    erased_at: Annotated[datetime, Meta(tz=True, description="When the erasure finished")]
    places: Annotated[tuple[ErasedPlace, ...], Meta(description="What was erased where (counts only)")] = ()
    complete: Annotated[bool, Meta(description="True when every place found was erased")] = True
