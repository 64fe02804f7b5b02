"""The places citybus itself keeps personal data in: its personal streams, personal dead letters, the vault.

* :class:`PersonalStreams` — every JetStream stream of a personal classification in the account
  (``CITY_PERSONAL_COMMUNITY`` …), from the contract registry. A message is the person's when its
  ``citybus-person`` header is their ref (sealed), when a subject token is their ref or id, or —
  for a message that was never sealed — when its body holds their id or an identifier.
* :class:`PersonalDeadLetters` — the dead letters of personal messages
  (``citybus.personal-dead-letter``): the person's when the original's headers name their ref, its
  subject their ref or id, or its payload, detail or headers their id or an identifier. A sealed
  payload is opened for export while the key exists.
* :class:`Vault` — the person's key: erased last, which makes every sealed copy anywhere unreadable.

Erasing a stored message is JetStream's erase (``MSG.DELETE``, the record overwritten on disk),
never a purge, which only drops it from the stream's index (:mod:`bus.personal.scan`). Retention is
judged by when the stream stored a message, not by its ``ce-time``: a replayed message carries the
recorded day's time, and a sender's clock is not the city's.
"""

from __future__ import annotations

from contextlib import aclosing
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bus import subjects
from bus.envelope import H_CONTENT_TYPE, H_PERSON, H_TIME, H_TYPE
from bus.personal.places import Person, in_clear
from bus.personal.scan import Stored, erase, scan
from bus.personal.seal import Unreadable, open_body
from bus.personal.vault import VAULT_STREAM
from contracts import Classification, Contract, ErasedPlace, FoundMessage, PersonalDeadLetter, Registry

if TYPE_CHECKING:
    from bus.bus import Bus

__all__ = ["ERASED_HOW", "PersonalDeadLetters", "PersonalStreams", "Vault", "readable_data"]

ERASED_HOW: Final = "deleted and overwritten"
_MSGPACK: Final = ("application/msgpack", "application/vnd.msgpack", "application/x-msgpack")
_letter = msgspec.json.Decoder(PersonalDeadLetter)
_letter_msgpack = msgspec.msgpack.Decoder(PersonalDeadLetter)


def readable_data(body: bytes, content_type: str) -> Any:
    """A body as an export shows it: decoded JSON or msgpack, else its text."""
    try:
        if content_type in _MSGPACK:
            return msgspec.to_builtins(msgspec.msgpack.decode(body))
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return body.decode("utf-8", "backslashreplace")


def _opened(who: Person, cipher: AESGCM | None, body: bytes, headers: dict[str, str]) -> tuple[Any, bool]:
    """What an export shows of a body and whether it could be read: opened with the person's key
    when it is sealed for them, as it is when it was never sealed."""
    content_type = headers.get(H_CONTENT_TYPE, "")
    if headers.get(H_PERSON) and headers[H_PERSON] != who.ref and in_clear(body, content_type):
        return readable_data(body, content_type), True  # claims a seal it does not have
    if headers.get(H_PERSON):
        if cipher is None or headers[H_PERSON] != who.ref:
            return None, False
        try:
            body = open_body(cipher, body, headers.get(H_TYPE, ""))
        except Unreadable:
            return None, False
    return readable_data(body, content_type), True


def _time(headers: dict[str, str], stored: datetime) -> datetime:
    try:
        return datetime.fromisoformat(headers[H_TIME])
    except (KeyError, ValueError):
        return stored


def _cipher(who: Person) -> AESGCM | None:
    return None if who.key is None else AESGCM(who.key)


class _StoredPlace:
    """A place made of stored messages in JetStream streams: scan, match, export, erase, expire."""

    name = ""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def streams(self) -> list[tuple[str, timedelta | None]]:
        """The streams searched, each with the shortest retention of what this place keeps there
        (``None``: nothing it expires): a sweep stops at the first message younger than that."""
        raise NotImplementedError

    def mine(self, msg: Stored) -> bool:
        """Whether this place (not another over the same stream) holds ``msg``."""
        return True

    def about(self, who: Person, msg: Stored) -> bool:
        """Whether ``msg`` is about ``who``."""
        raise NotImplementedError

    def found(self, who: Person, cipher: AESGCM | None, msg: Stored) -> FoundMessage:
        """What an export shows of ``msg``."""
        raise NotImplementedError

    def retention(self, msg: Stored) -> timedelta | None:
        """How long ``msg`` may be kept (``None``: this place does not expire it)."""
        raise NotImplementedError

    async def _matching(self, who: Person) -> list[tuple[str, list[Stored]]]:
        found = []
        for stream, _ in self.streams():
            found.append(
                (stream, [m async for m in scan(self.bus, stream) if self.mine(m) and self.about(who, m)])
            )
        return found

    async def export(self, who: Person) -> list[FoundMessage]:
        """Every stored message about ``who``, opened with their key where sealed."""
        cipher = _cipher(who)
        return [self.found(who, cipher, m) for _, msgs in await self._matching(who) for m in msgs]

    async def erase(self, who: Person) -> list[ErasedPlace]:
        """Erase every stored message about ``who``: a line per stream, also where none was found."""
        lines = []
        for stream, msgs in await self._matching(who):
            erased = await erase(self.bus, stream, [m.seq for m in msgs])
            lines.append(
                ErasedPlace(place=self.name, location=stream, found=len(msgs), erased=erased, how=ERASED_HOW)
            )
        return lines

    async def expire(self, now: datetime) -> list[ErasedPlace]:
        """Erase the messages older than their retention; a line per stream that held any."""
        lines = []
        for stream, shortest in self.streams():
            if shortest is None:
                continue
            expired = []
            async with aclosing(scan(self.bus, stream)) as messages:
                async for msg in messages:
                    if msg.time > now - shortest:
                        break  # stored in order: this and every later message are within any retention
                    kept_for = self.retention(msg) if self.mine(msg) else None
                    if kept_for is not None and msg.time <= now - kept_for:
                        expired.append(msg.seq)
            if expired:
                erased = await erase(self.bus, stream, expired)
                lines.append(
                    ErasedPlace(
                        place=self.name, location=stream, found=len(expired), erased=erased, how=ERASED_HOW
                    )
                )
        return lines


class PersonalStreams(_StoredPlace):
    """Every personal stream of the account but the dead letters' subjects (:class:`PersonalDeadLetters`)."""

    name = "stream"

    def __init__(self, bus: Bus, registry: Registry | None = None) -> None:
        super().__init__(bus)
        self.registry = registry if registry is not None else bus.registry
        self._letters = subjects.contract_filter(PersonalDeadLetter)

    def _contracts(self) -> dict[str, list[type[Contract]]]:
        by_stream: dict[str, list[type[Contract]]] = {}
        for cls in self.registry:
            info = cls.__contract__
            if info.classification is Classification.PERSONAL:
                by_stream.setdefault(subjects.stream_name(info.classification, info.domain), []).append(cls)
        return by_stream

    def _retentions(self) -> dict[str, list[timedelta]]:
        """The retentions of each personal stream's stored contracts (the dead letters' aside)."""
        by_stream: dict[str, list[timedelta]] = {}
        for stream, contracts in sorted(self._contracts().items()):
            kept = [c.__contract__.retention for c in contracts if c is not PersonalDeadLetter]
            by_stream[stream] = [k for k in kept if k is not None]
        return by_stream

    def streams(self) -> list[tuple[str, timedelta | None]]:
        """Each personal stream and the shortest retention of its stored contracts."""
        return [(stream, min(kept) if kept else None) for stream, kept in self._retentions().items()]

    def mine(self, msg: Stored) -> bool:
        """Everything but the personal dead letters."""
        return not subjects.matches(self._letters, msg.subject)

    def about(self, who: Person, msg: Stored) -> bool:
        """Sealed for their ref, named by the subject, or (never sealed) named in the body."""
        sealed_for = msg.headers.get(H_PERSON)
        if sealed_for:
            return (
                sealed_for == who.ref
                or who.named_by(msg.subject)
                or who.named_in_clear(msg.data, msg.headers.get(H_CONTENT_TYPE, ""))
            )
        return who.named_by(msg.subject) or who.named_in(msg.data.decode("utf-8", "replace"))

    def found(self, who: Person, cipher: AESGCM | None, msg: Stored) -> FoundMessage:
        """The message opened, with its subject, type and time."""
        data, readable = _opened(who, cipher, msg.data, msg.headers)
        return FoundMessage(
            place=self.name,
            location=msg.location,
            subject=msg.subject,
            type=msg.headers.get(H_TYPE, ""),
            time=_time(msg.headers, msg.time),
            data=data,
            readable=readable,
        )

    def retention(self, msg: Stored) -> timedelta | None:
        """Its contract's retention; for a message of no known contract, the longest of the
        stream's: it is kept no longer than any of the stream's own may be."""
        cls = self.registry.by_type(msg.headers.get(H_TYPE, ""))
        if cls is not None and cls.__contract__.retention is not None:
            return cls.__contract__.retention
        kept = self._retentions().get(msg.stream)
        return max(kept) if kept else None


class PersonalDeadLetters(_StoredPlace):
    """The personal dead letters (``citybus.personal-dead-letter``), wherever their stream is."""

    name = "dead-letters"

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        info = PersonalDeadLetter.__contract__
        self._stream = subjects.stream_name(info.classification, info.domain)
        self._filter = subjects.contract_filter(PersonalDeadLetter)
        self._retention = info.retention

    def streams(self) -> list[tuple[str, timedelta | None]]:
        """The stream the personal dead letters are stored in."""
        return [(self._stream, self._retention)]

    def mine(self, msg: Stored) -> bool:
        """The dead letters' subjects only."""
        return subjects.matches(self._filter, msg.subject)

    @staticmethod
    def _letter(msg: Stored) -> PersonalDeadLetter | None:
        try:
            if msg.headers.get(H_CONTENT_TYPE, "") in _MSGPACK:
                return _letter_msgpack.decode(msg.data)
            return _letter.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            return None

    def about(self, who: Person, msg: Stored) -> bool:
        """Its original was sealed for them, its subject names them, or it names them in its text."""
        letter = self._letter(msg)
        if letter is None:  # not a dead letter citybus wrote: search all its bytes
            return who.named_by(msg.subject) or who.named_in(msg.data.decode("utf-8", "replace"))
        headers = letter.original_headers
        sealed_for = headers.get(H_PERSON)
        if sealed_for == who.ref:
            return True
        # The detail (an error's text) and the headers are plaintext even when the payload is sealed.
        text = [letter.detail, *headers.values()]
        if not sealed_for:
            text.append(letter.payload.decode("utf-8", "replace"))
        elif who.named_in_clear(letter.payload, headers.get(H_CONTENT_TYPE, "")):
            return True  # claims a seal it does not have: the payload is in the clear
        return who.named_by(letter.original_subject) or any(who.named_in(t) for t in text)

    def found(self, who: Person, cipher: AESGCM | None, msg: Stored) -> FoundMessage:
        """The letter's reason and detail, and its original opened where it can be."""
        letter = self._letter(msg)
        if letter is None:
            data, readable = _opened(who, cipher, msg.data, msg.headers)
            return FoundMessage(
                place=self.name, location=msg.location, subject=msg.subject, time=msg.time, data=data
            )
        original, readable = _opened(who, cipher, letter.payload, dict(letter.original_headers))
        return FoundMessage(
            place=self.name,
            location=msg.location,
            subject=letter.original_subject,
            type=letter.original_headers.get(H_TYPE, letter.contract),
            time=letter.failed_at,
            data={"reason": letter.reason, "detail": letter.detail, "message": original},
            readable=readable,
        )

    def retention(self, msg: Stored) -> timedelta | None:
        """A personal dead letter's own retention."""
        return self._retention


class Vault:
    """The person's key in the vault: destroying it makes every sealed copy anywhere unreadable —
    a stream's, a dead letter's, an archive row's, a recording's handed away. Erased last."""

    name = "key"

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def export(self, who: Person) -> list[FoundMessage]:
        """Nothing: a key is not a message about the person."""
        return []

    async def erase(self, who: Person) -> list[ErasedPlace]:
        """Destroy the key (its record erased), and tell every process to forget it."""
        destroyed = int(await self.bus.vault.destroy(who.ref))
        how = "destroyed: every sealed copy, anywhere, can no longer be opened"
        return [
            ErasedPlace(place=self.name, location=VAULT_STREAM, found=destroyed, erased=destroyed, how=how)
        ]

    async def expire(self, now: datetime) -> list[ErasedPlace]:
        """Nothing: a key lives as long as its person's data may (erased with them)."""
        return []
