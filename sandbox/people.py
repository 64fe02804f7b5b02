"""Generated people: names, e-mail addresses, phone numbers and volunteer ids that are no one's.

The sandbox never holds a real person. Where it needs people — the volunteers of the recorded
Drammen day (:mod:`sandbox.drammen.volunteers`), the stand-ins a pseudonymising recording puts in
place of real ones (:mod:`sandbox.pseudonyms`) — it makes them here, from a seeded random generator
or from a digest, so the same seed (or the same pseudonym) always gives the same person.

Why what is made here belongs to nobody:

* **Names** pair a common Norwegian given name (which on its own names no one) with a family name
  built on a Norwegian word for "example", "test" or "made up" (``Eksempel``, ``Prøve``, ``Fiktiv``,
  ``Oppdikt``, ``Tenkt``, ``Demo``) and a place-name ending (``-sen``, ``-dal``, ``-rud`` …):
  *Ingrid Eksempelsen*, *Jonas Fiktivrud*. They are not drawn from a list of real people's names, and
  a Norwegian reader sees at once that they are placeholders, as *Ola Nordmann* is.
* **E-mail addresses** are under ``example.invalid``: ``.invalid`` is reserved by RFC 2606 and
  RFC 6761 and never resolves, so no message can reach anyone.
* **Phone numbers** are in the range the UK's Ofcom keeps for drama, +44 7700 900000–900999: never
  given to a subscriber (no such range is known for Norway, so a Norwegian-looking number might
  ring someone).
* **Volunteer ids** are ``v-`` and 12 random hex digits from the generator: they mean nothing
  outside the recording.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = [
    "EMAIL_DOMAIN",
    "PHONE_RANGE",
    "SyntheticPerson",
    "synthetic_email",
    "synthetic_name",
    "synthetic_person",
    "synthetic_phone",
    "synthetic_volunteer_id",
]

EMAIL_DOMAIN: Final = "example.invalid"
"""The domain of every generated e-mail address (RFC 2606's reserved ``.invalid``)."""
PHONE_RANGE: Final = "+447700900"
"""The first digits of every generated phone number (Ofcom's drama range, 000–999 after it)."""

_GIVEN: Final = (
    "Aksel", "Amalie", "Emil", "Frida", "Henrik", "Ingrid", "Jonas", "Kari", "Lars", "Maja",
    "Nora", "Ola", "Sigrid", "Sofie", "Thea", "Tobias",
)  # fmt: skip
_STEMS: Final = ("Eksempel", "Prøve", "Fiktiv", "Oppdikt", "Tenkt", "Demo")
"""Norwegian for example, test, fictional, made-up, imagined, demo: what marks a name as nobody's."""
_ENDINGS: Final = ("sen", "dal", "rud", "vik", "lund", "stad", "berg", "haug")
_ASCII: Final = str.maketrans({"æ": "ae", "ø": "o", "å": "a", "Æ": "Ae", "Ø": "O", "Å": "A"})


@dataclass(frozen=True, slots=True)
class SyntheticPerson:
    """A generated person: an id, a name and the ways to reach them, none of them anyone's."""

    volunteer_id: str
    name: str
    email: str
    phone: str


def synthetic_name(draw: random.Random) -> str:
    """A generated full name, *Given Stem-ending* (``Ingrid Eksempelsen``)."""
    given = draw.choice(_GIVEN)
    family = draw.choice(_STEMS) + draw.choice(_ENDINGS)
    return f"{given} {family}"


def synthetic_email(name: str, number: int) -> str:
    """An address for a generated name under ``example.invalid``; ``number`` keeps two people with
    the same name apart."""
    local = ".".join(name.translate(_ASCII).lower().split())
    return f"{local}.{number}@{EMAIL_DOMAIN}"


def synthetic_phone(number: int) -> str:
    """A phone number (E.164) in Ofcom's drama range: the last three digits are ``number`` mod 1000."""
    return f"{PHONE_RANGE}{number % 1000:03d}"


def synthetic_volunteer_id(draw: random.Random) -> str:
    """A volunteer id, ``v-`` and 12 hex digits."""
    return f"v-{draw.getrandbits(48):012x}"


def synthetic_person(draw: random.Random) -> SyntheticPerson:
    """A whole generated person, every part drawn from ``draw``."""
    volunteer_id = synthetic_volunteer_id(draw)
    name = synthetic_name(draw)
    number = draw.randrange(1000)
    return SyntheticPerson(volunteer_id, name, synthetic_email(name, number), synthetic_phone(number))
