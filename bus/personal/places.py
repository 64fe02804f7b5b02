"""Where citybus keeps personal data, and what finding, exporting and erasing a person there means.

A *place* (:class:`PersonalPlace`) is one kind of store that can hold personal messages: the
personal JetStream streams, the personal dead letters, the key vault, the logs — and, from upper
packages, the PostgreSQL archive and the sandbox's recordings. The rights engine
(:mod:`bus.personal.rights`) asks every place to export what it holds about a :class:`Person`, to
erase it, and to erase what outlived its retention; a place answers in the privacy contracts'
words (:class:`~contracts.FoundMessage`, :class:`~contracts.ErasedPlace`).

Upper packages contribute places through the entry-point group ``citybus.personal``
(:data:`PLACES_GROUP`): each entry point names a factory ``places(config, bus)`` returning the
places it keeps with that configuration (:data:`PlacesFactory`); :func:`installed_places` calls
them, as ``citybus.checks`` and ``citybus.access`` are found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Final, Protocol

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bus.config import Config
from bus.personal.seal import Unreadable, open_body
from contracts import ErasedPlace, FoundMessage

if TYPE_CHECKING:
    from bus.bus import Bus

__all__ = [
    "LOGS_HOW",
    "in_clear",
    "PLACES_GROUP",
    "Logs",
    "Person",
    "PersonalPlace",
    "PlacesFactory",
    "installed_places",
]

PLACES_GROUP: Final = "citybus.personal"
"""The entry-point group of upper packages' places: each a :data:`PlacesFactory`."""

LOGS_HOW: Final = "citybus writes no personal values to its logs"

_MSGPACK_TYPES: Final = ("application/msgpack", "application/vnd.msgpack", "application/x-msgpack")


def in_clear(body: bytes, content_type: str = "") -> bool:
    """Whether a body is in the clear: it decodes whole as JSON (or msgpack, when it says so).

    A ``citybus-person`` header is only a claim: a producer that bypassed the bus can send a body
    in the clear under any ref (one that names nobody). A sealed body is random bytes to anyone
    without its key and practically never decodes whole, so a body that does is searched for the
    person's id and identifiers as any unsealed copy is; ciphertext never is (a short identifier
    would match random bytes now and then, and erase someone else's message)."""
    try:
        if content_type in _MSGPACK_TYPES:
            msgspec.msgpack.decode(body)
        else:
            msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Person:
    """The person a request is about, as the places need them.

    ``id`` is the pseudonymous id the personal contracts carry (``v-3f9c2a7e51d0``); ``ref`` its
    vault ref (``p-`` and 24 hex digits), what subjects and the ``citybus-person`` header show;
    ``key`` the person's key to open what is found (``None`` once destroyed, or if there never was
    one); ``identifiers`` the values that name them in data that was never sealed (name, e-mail,
    phone), searched for without regard to case.
    """

    id: str
    ref: str
    key: bytes | None
    identifiers: tuple[str, ...] = ()
    needles: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The id and the identifiers, case-folded: what an unsealed copy is searched for."""

    def __post_init__(self) -> None:
        found = {v.casefold() for v in (self.id, *self.identifiers) if v.strip()}
        object.__setattr__(self, "needles", tuple(sorted(found)))

    def named_in(self, text: str) -> bool:
        """Whether ``text`` holds the person's id or one of their identifiers (case-folded)."""
        folded = text.casefold()
        return any(needle in folded for needle in self.needles)

    def named_in_clear(self, body: bytes, content_type: str = "") -> bool:
        """Whether ``body``, which says it is sealed for someone else, is in fact in the clear
        (:func:`in_clear`) and names the person."""
        return in_clear(body, content_type) and self.named_in(body.decode("utf-8", "replace"))

    def open(self, body: bytes, ce_type: str) -> bytes | None:
        """A body sealed for this person (with ``ce_type``), opened; ``None`` when it cannot be: the
        key was destroyed, or the body is not sealed for them."""
        if self.key is None:
            return None
        try:
            return open_body(AESGCM(self.key), body, ce_type)
        except Unreadable:
            return None

    def named_by(self, subject: str) -> bool:
        """Whether a subject names the person: one of its tokens is their ref or their id."""
        tokens = subject.split(".")
        return self.ref in tokens or self.id in tokens


class PersonalPlace(Protocol):
    """One place where citybus keeps personal data.

    ``name`` is what exports and receipts call it (``stream``, ``dead-letters``, ``archive``,
    ``recording``, ``key``, ``logs``). Each method does its whole work or raises: the rights engine
    reports a place that raised as not searched (export) or not erased (erasure), and goes on with
    the others.
    """

    name: str

    async def export(self, who: Person) -> list[FoundMessage]:
        """Every message about ``who`` this place holds, opened with their key where it can be."""
        ...

    async def erase(self, who: Person) -> list[ErasedPlace]:
        """Erase every message about ``who`` here; one line per location (stream, table, file)."""
        ...

    async def expire(self, now: datetime) -> list[ErasedPlace]:
        """Erase what outlived its contract's retention at ``now``; a line per location that held any."""
        ...


PlacesFactory = Callable[[Config, "Bus"], Sequence[PersonalPlace]]
"""What a ``citybus.personal`` entry point names: the places its package keeps, for a
configuration and a connected bus (``def places(config: Config, bus: Bus) -> list[PersonalPlace]``);
an empty list when the package keeps nothing with that configuration."""


class Logs:
    """The logs: citybus writes them to standard error and never a personal value, so there is
    nothing to export or erase; the receipt says so (tests/test_privacy_logs.py checks it)."""

    name = "logs"

    async def export(self, who: Person) -> list[FoundMessage]:
        """Nothing: no log line holds a personal value."""
        return []

    async def erase(self, who: Person) -> list[ErasedPlace]:
        """One line saying why there is nothing to erase."""
        return [ErasedPlace(place=self.name, location="standard error", how=LOGS_HOW)]

    async def expire(self, now: datetime) -> list[ErasedPlace]:
        """Nothing to expire."""
        return []


def installed_places(config: Config, bus: Bus) -> tuple[list[PersonalPlace], list[str]]:
    """The places of the installed upper packages (:data:`PLACES_GROUP`), in entry-point name order,
    and a line for each entry point that could not load or make its places."""
    places: list[PersonalPlace] = []
    problems: list[str] = []
    for ep in sorted(entry_points(group=PLACES_GROUP), key=lambda e: e.name):
        try:
            factory: PlacesFactory = ep.load()
            places.extend(factory(config, bus))
        except Exception as exc:  # one package's trouble must not hide the other places
            problems.append(f"{ep.name} ({ep.value}): {type(exc).__name__}: {exc}")
    return places, problems
