"""Pseudonymising personal messages for a recording made for pilots: ``citybus record --pseudonymise``.

A pseudonymised message is the original with every person in it replaced by a stand-in: the
person's id (``volunteer_id``) by a keyed-hash pseudonym, their name, e-mail address and phone
number by generated ones (:mod:`sandbox.people`), and ``ce-provenance`` set to ``pseudonymised``.
The message still validates against its contract, so a pilot's service reads it as it would the
real one, and the same person gets the same stand-in throughout one recording, so what one
volunteer did still hangs together.

Decisions, and why:

* **The key is the recording's own and is never kept.** A pseudonym is
  ``v-`` + HMAC-SHA256(key, person id), 24 hex digits, under a random 256-bit key made for one
  recording and dropped when it ends: it is written nowhere, so nobody — not the city either —
  can link a pseudonym back to a person or across two recordings. The stand-in's name, address and
  phone are drawn from that same digest. (A key kept by the city would let it re-identify the
  people of a file handed away; with nothing to re-identify by, the file is the pilot's to keep,
  and an erasure has nothing in it to find.)
* **Every string is looked at, not only the fields that say so.** Fields named ``name``,
  ``email`` and ``phone`` beside a person's id get that person's stand-ins; elsewhere in the
  message (a free-text reason, a roster's entries) each of those original values is replaced
  wherever it appears, and any other string that looks like an e-mail address, an E.164 phone
  number or a volunteer id is replaced too.
* **What is left is said, not hidden.** Times, tasks, skills and consent stay as they were: a
  pilot needs them, and with them a person who knows when someone signed up for what might still
  single them out. Pseudonymised data of this kind is still handled as personal (a pilot never
  gets it through the bus; the file is given by hand, under the pilot's agreement).
* **What cannot be pseudonymised is left out**: a body that does not decode, or no longer
  validates once its people are replaced, is not recorded (:class:`Pseudonymiser` raises
  :class:`NotPseudonymisable` and the recorder counts it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from bus.envelope import H_CONTENT_TYPE, H_PROVENANCE, JSON, MSGPACK, Provenance
from bus.subjects import contract_subject
from contracts import Contract
from sandbox.people import SyntheticPerson, synthetic_email, synthetic_name, synthetic_phone

__all__ = ["PSEUDONYMISED", "NotPseudonymisable", "Pseudonymiser"]

PSEUDONYMISED: Final = Provenance.PSEUDONYMISED.value
"""The ``ce-provenance`` of a pseudonymised message."""

_ID_FIELDS: Final = ("volunteer_id",)
_CONTACT: Final = ("name", "email", "phone")
_EMAIL: Final = re.compile(r"[^@\s\"<>,;]+@[^@\s\"<>,;]+\.[A-Za-z]{2,}")
_PHONE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_VOLUNTEER: Final = re.compile(r"\bv-[0-9a-f]{8,32}\b")


class NotPseudonymisable(ValueError):
    """A personal message that cannot be pseudonymised (so it is not recorded)."""


class Pseudonymiser:
    """Replaces the people of personal messages by stand-ins, the same one for the same person,
    under a key of its own (random unless given: a test gives one to know the pseudonyms)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)
        self._people: dict[str, SyntheticPerson] = {}
        self._made: set[str] = set()
        """Every value a stand-in has: never replaced again when found in a text."""
        self.count = 0
        """How many messages it pseudonymised."""

    def pseudonym(self, person: str) -> str:
        """The pseudonymous id standing in for ``person``: ``v-`` and 24 hex digits."""
        return self.stand_in(person).volunteer_id

    def stand_in(self, person: str) -> SyntheticPerson:
        """The generated person standing in for ``person`` in this recording."""
        found = self._people.get(person)
        if found is None:
            digest = hmac.new(self._key, person.encode(), hashlib.sha256).digest()
            draw = random.Random(digest)
            name = synthetic_name(draw)
            number = draw.randrange(1000)
            found = SyntheticPerson(
                f"v-{digest[:12].hex()}", name, synthetic_email(name, number), synthetic_phone(number)
            )
            self._people[person] = found
            self._made.update((found.volunteer_id, found.name, found.email, found.phone))
        return found

    def _again(self, kind: str, found: re.Match[str]) -> str:
        """What replaces a value found by pattern in a text (unless a stand-in made it)."""
        text = found[0]
        if text in self._made:
            return text
        stand_in = self.stand_in(text if kind == "volunteer_id" else f"{kind}:{text}")
        return str(getattr(stand_in, kind))

    def message(
        self, contract: type[Contract], subject: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[str, bytes, dict[str, str]]:
        """The pseudonymised subject, body (JSON) and headers of one message of ``contract``;
        ``body`` is the plaintext (a sealed message is opened first)."""
        content_type = headers.get(H_CONTENT_TYPE, JSON)
        try:
            if content_type == MSGPACK:
                document = msgspec.msgpack.decode(body)
            else:
                document = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise NotPseudonymisable(f"{subject}: the body does not decode: {exc}") from None
        originals: dict[str, str] = {}
        self._gather(document, contract.__contract__.person, originals)
        replaced = self._replace(document, None, originals)
        try:
            instance = msgspec.convert(replaced, type=contract)
        except msgspec.ValidationError as exc:
            raise NotPseudonymisable(f"{subject}: pseudonymised, it breaks its contract: {exc}") from None
        out = {k: v for k, v in headers.items() if not k.startswith("citybus-")}  # the person's ref
        out[H_PROVENANCE] = PSEUDONYMISED
        out[H_CONTENT_TYPE] = JSON
        self.count += 1
        # the subject is made again: where it named the person (by id or by ref) it names the pseudonym
        return contract_subject(instance), msgspec.json.encode(instance), out

    def _gather(self, value: Any, person_field: str | None, originals: dict[str, str]) -> None:
        """Every person's values in ``value`` and what stands in for each, into ``originals``."""
        if isinstance(value, dict):
            person = next(
                (value[f] for f in (person_field, *_ID_FIELDS) if f and isinstance(value.get(f), str)), None
            )
            if person is not None:
                stand_in = self.stand_in(person)
                originals[person] = stand_in.volunteer_id
                for field in _CONTACT:
                    original = value.get(field)
                    if isinstance(original, str) and original:
                        originals[original] = getattr(stand_in, field)
            for item in value.values():
                self._gather(item, person_field, originals)
        elif isinstance(value, list):
            for item in value:
                self._gather(item, person_field, originals)

    def _replace(self, value: Any, field: str | None, originals: Mapping[str, str]) -> Any:
        if isinstance(value, dict):
            return {k: self._replace(v, k, originals) for k, v in value.items()}
        if isinstance(value, list):
            return [self._replace(item, field, originals) for item in value]
        if not isinstance(value, str):
            return value
        if value in originals:
            return originals[value]
        if field in _CONTACT and value:  # a contact of someone not named by an id: still nobody's
            return getattr(self.stand_in(f"{field}:{value}"), field)
        for original in sorted(originals, key=len, reverse=True):  # longest first: a name in a sentence
            if original in value:
                value = value.replace(original, originals[original])
        value = _EMAIL.sub(lambda m: self._again("email", m), value)
        value = _PHONE.sub(lambda m: self._again("phone", m), value)
        return _VOLUNTEER.sub(lambda m: self._again("volunteer_id", m), value)
