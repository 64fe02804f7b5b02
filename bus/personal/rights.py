"""A person's rights over their data: access (GDPR art. 15), erasure (art. 17), and retention.

:func:`export` asks every place (:mod:`bus.personal.places`) what it holds about a person and
returns it as one :class:`~contracts.PersonalExport`. :func:`erase` exports first — the opened
messages tell the person's name, e-mail and phone, so copies that were never sealed are found by
them too — then has every place erase, the key vault last, and returns an
:class:`~contracts.ErasureReceipt`. :func:`expire` has every place erase what outlived its
contract's retention. Each erasure that erased something (a request always) leaves an internal
:class:`~contracts.ErasureRecord`, with counts and no person in it.

Decisions, and why:

* **The key is destroyed even when a place failed.** A place that could not erase (an archive
  that is down) still holds only sealed bodies, which the destroyed key makes unreadable; keeping
  the key to retry would keep the data readable. The receipt says ``complete = False`` and names
  the place and its error, so the erasure can be finished there.
* **A place that raises does not stop the others**, and its error is reported, not logged with
  its text: an error message may quote the value that could not be stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec

from bus.config import Config
from bus.errors import CityBusError
from bus.personal.places import Logs, Person, PersonalPlace, installed_places
from bus.personal.stored import PersonalDeadLetters, PersonalStreams, Vault
from contracts import ErasedPlace, ErasureReceipt, ErasureRecord, FoundMessage, PersonalExport, Registry

if TYPE_CHECKING:
    from bus.bus import Bus

__all__ = [
    "IDENTIFYING_FIELDS",
    "BadPerson",
    "check_person",
    "distinctive",
    "erase",
    "expire",
    "export",
    "learned_identifiers",
    "person",
    "person_patterns",
    "places",
]

IDENTIFYING_FIELDS: Final = ("name", "email", "phone")
"""Fields whose values identify a person in the data of a message about them: what an erasure
learns from the opened messages and searches for in copies that were never sealed."""

_CASE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class BadPerson(CityBusError, ValueError):
    """A person id that does not look like the ids the personal contracts carry."""


def person_patterns(registry: Registry) -> dict[str, str]:
    """The pattern each personal contract's person field must match, by contract name."""
    patterns: dict[str, str] = {}
    for cls in registry:
        info = cls.__contract__
        if info.person is None:
            continue
        found = msgspec.inspect.type_info(cls)
        assert isinstance(found, msgspec.inspect.StructType)
        for f in found.fields:
            if f.name == info.person:
                kind = f.type
                while isinstance(kind, msgspec.inspect.Metadata | msgspec.inspect.UnionType):
                    if isinstance(kind, msgspec.inspect.Metadata):
                        kind = kind.type
                    else:
                        kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
                if isinstance(kind, msgspec.inspect.StrType) and kind.pattern:
                    patterns[info.name] = kind.pattern
    return patterns


def check_person(registry: Registry, person_id: str) -> str:
    """``person_id`` if it fits the person field of some personal contract; else :class:`BadPerson`
    saying what ids look like."""
    patterns = person_patterns(registry)
    if not patterns or any(re.search(p, person_id) for p in patterns.values()):
        return person_id
    sealed = {c.__contract__.name for c in registry if c.__contract__.sealed}
    example = min(patterns.items(), key=lambda item: (item[0] not in sealed, item[0]))
    raise BadPerson(
        f"{person_id!r} does not look like a person id: personal data names a person by a pseudonymous "
        f"id matching {example[1]} ({example[0]}), e.g. v-3f9c2a7e51d0; a name or an e-mail goes "
        "after --identifier"
    )


def places(config: Config, bus: Bus) -> tuple[list[PersonalPlace], list[str]]:
    """Every place of personal data: citybus's own (personal streams, personal dead letters, the
    logs), the installed packages' (``citybus.personal``), and the key vault, last. Also a line for
    each package whose places did not load."""
    upper, problems = installed_places(config, bus)
    own: list[PersonalPlace] = [PersonalStreams(bus), PersonalDeadLetters(bus), Logs()]
    return [*own, *upper, Vault(bus)], problems


async def person(bus: Bus, person_id: str, identifiers: Iterable[str] = ()) -> Person:
    """The person as the places need them: their ref and key from the vault (the key, if any)."""
    ref = await bus.vault.ref(person_id)
    found = await bus.vault.key(person_id, create=False)
    return Person(person_id, ref, None if found is None else found[1], tuple(identifiers))


async def _each(places: Sequence[PersonalPlace], call: str, *args: Any) -> tuple[list[Any], list[str]]:
    """What calling ``call`` on every place gives, and a note per place that raised."""
    results: list[Any] = []
    notes: list[str] = []
    for place in places:
        try:
            results.extend(await getattr(place, call)(*args))
        except Exception as exc:  # a place's trouble is reported, and the others still run
            notes.append(f"{place.name}: {type(exc).__name__}: {exc}")
            if call == "erase":
                results.append(
                    ErasedPlace(place=place.name, location="", error=f"{type(exc).__name__}: {exc}")
                )
    return results, notes


def _names(places: Sequence[PersonalPlace]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.name for p in places))


async def export(
    bus: Bus,
    places: Sequence[PersonalPlace],
    person_id: str,
    identifiers: Iterable[str] = (),
    case: str = "export",
) -> PersonalExport:
    """Every personal message about ``person_id`` from every place, opened where the key allows."""
    who = await person(bus, person_id, identifiers)
    return await _export(places, who, case)


async def _export(places: Sequence[PersonalPlace], who: Person, case: str) -> PersonalExport:
    found, notes = await _each(places, "export", who)
    return PersonalExport(
        case=case,
        person=who.id,
        generated_at=datetime.now(UTC),
        places=_names(places),
        messages=tuple(found),
        complete=not notes,
        notes=tuple(notes),
    )


def distinctive(field: str, text: str) -> bool:
    """Whether a value the person typed (their ``name``, ``email`` or ``phone``) is distinctive
    enough to be searched for as a substring in every copy in the clear, as an erasure does.

    A name is free text: one like "community" or "city" is a substring of every message's type or
    subject, and searching for it would erase other people's messages (and whole tables of the
    archive). So a learned name is searched for only when it is a full name (two words or more,
    which machine text such as types and subjects never holds); an e-mail when it has an ``@``;
    a phone when it has eight digits or more. Anything else can still be given as an identifier
    by whoever handles the request (``--identifier``), who sees what it is."""
    text = text.strip()
    if field == "email":
        return "@" in text and len(text) >= 6
    if field == "phone":
        return sum(c.isdigit() for c in text) >= 8
    words = [w for w in text.split() if len(w) >= 2]
    return len(words) >= 2 and len(text) >= 5


def learned_identifiers(person_id: str, messages: Iterable[FoundMessage]) -> tuple[str, ...]:
    """The names, e-mails and phones found beside ``person_id`` in the opened messages (at any
    depth: a roster entry about them counts, one about someone else does not), those that are
    :func:`distinctive` only."""
    learned: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if person_id in value.values():
                for key in IDENTIFYING_FIELDS:
                    text = value.get(key)
                    if isinstance(text, str) and distinctive(key, text):
                        learned[text] = None
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    for message in messages:
        walk(message.data)
    return tuple(learned)


async def erase(
    bus: Bus,
    places: Sequence[PersonalPlace],
    person_id: str,
    identifiers: Iterable[str] = (),
    case: str = "erasure",
) -> ErasureReceipt:
    """Erase ``person_id`` everywhere: export first (to learn the identifiers unsealed copies hold),
    every place erases, the key last (even when a place failed), then the record is published (a
    record that cannot be is a line of the receipt, with why)."""
    who = await person(bus, person_id, identifiers)
    exported = await _export(places, who, case)
    more = learned_identifiers(person_id, exported.messages)
    who = Person(who.id, who.ref, who.key, tuple(dict.fromkeys((*who.identifiers, *more))))
    ordered = [p for p in places if p.name != "key"] + [p for p in places if p.name == "key"]
    lines, _ = await _each(ordered, "erase", who)
    receipt = ErasureReceipt(
        case=case,
        person=who.id,
        erased_at=datetime.now(UTC),
        places=tuple(lines),
        complete=all(not line.error and line.erased == line.found for line in lines),
    )
    try:
        await _record(bus, case, "request", receipt.erased_at, receipt.places, receipt.complete)
    except (CityBusError, TimeoutError) as exc:  # the erasure is done: its receipt must still be given
        unrecorded = ErasedPlace(place="record", location=ErasureRecord.__contract__.name, error=str(exc))
        return msgspec.structs.replace(receipt, places=(*receipt.places, unrecorded))
    return receipt


async def expire(bus: Bus, places: Sequence[PersonalPlace], now: datetime) -> tuple[list[ErasedPlace], bool]:
    """Erase, in every place, what outlived its retention at ``now``: the lines of the places that
    erased something (or failed), and whether every place could do it. Recorded when anything was."""
    lines, notes = await _each(places, "expire", now)
    if lines:
        case = "retention-" + _CASE_UNSAFE.sub("-", now.astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%S"))
        await _record(bus, case, "retention", datetime.now(UTC), tuple(lines), not notes)
    return lines, not notes


async def _record(
    bus: Bus, case: str, reason: str, at: datetime, places: tuple[ErasedPlace, ...], complete: bool
) -> None:
    """Publish the erasure's record: counts per place, no person."""
    record = ErasureRecord(
        case=_CASE_UNSAFE.sub("-", case)[:64],
        reason=reason,  # type: ignore[arg-type]  # "request" or "retention", checked by the callers
        erased_at=at,
        places=tuple(msgspec.structs.replace(p, error="failed" if p.error else "") for p in places),
        complete=complete,
    )
    await bus.publish_durable(record)
