"""The rights engine's pure parts: who a message names, what an erasure learns, what an id looks like,
and an export cut to what one reply carries."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.privacy.adapter import fitting
from bus.personal.places import Person
from bus.personal.rights import BadPerson, check_person, learned_identifiers
from bus.personal.seal import new_key, seal_body
from contracts import FoundMessage, PersonalExport, default_registry

WHO = Person("v-0a1b2c3d4e5f", "p-" + "ab" * 12, None, ("Ingrid Testesen", "ingrid@example.invalid"))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"name": "INGRID TESTESEN"}', True),  # without regard to case
        ('{"email": "ingrid@example.invalid"}', True),
        ('{"volunteer_id": "v-0a1b2c3d4e5f"}', True),
        ('{"name": "Ingrid Annensen"}', False),
        ("", False),
    ],
)
def test_a_body_names_the_person_by_id_or_identifier(text: str, named: bool) -> None:
    assert WHO.named_in(text) is named


def test_a_subject_names_the_person_by_a_whole_token() -> None:
    assert WHO.named_by(f"city.personal.community.volunteer-signup.{WHO.ref}")
    assert WHO.named_by("city.personal.community.volunteer-signup.v-0a1b2c3d4e5f")
    assert not WHO.named_by("city.personal.community.volunteer-signup.v-0a1b2c3d4e5f0")


def test_an_erasure_learns_identifiers_only_beside_the_persons_id() -> None:
    roster = {
        "entries": [
            {"volunteer_id": "v-0a1b2c3d4e5f", "name": "Ingrid Testesen", "phone": "+4791234567"},
            {"volunteer_id": "v-99aa88bb77cc", "name": "Per Annensen", "email": "per@example.invalid"},
        ]
    }
    found = [FoundMessage(place="stream", location="S#1", data=roster)]
    assert learned_identifiers("v-0a1b2c3d4e5f", found) == ("Ingrid Testesen", "+4791234567")


def test_a_person_id_must_look_like_one() -> None:
    assert check_person(default_registry(), "v-0a1b2c3d4e5f") == "v-0a1b2c3d4e5f"
    for wrong in ("Ingrid Testesen", "ingrid@example.invalid", "v-XYZ"):
        with pytest.raises(BadPerson, match="does not look like a person id"):
            check_person(default_registry(), wrong)


def test_an_export_too_large_for_one_reply_is_cut_and_says_so() -> None:
    messages = tuple(
        FoundMessage(place="stream", location=f"S#{i}", data={"note": "x" * 1000}) for i in range(100)
    )
    export = PersonalExport(
        case="dpo-1", person="v-0a1b2c3d4e5f", generated_at=datetime.now(UTC), messages=messages
    )
    assert fitting(export, 1 << 20) is export
    cut = fitting(export, 20_000)
    assert len(msgspec.json.encode(cut)) <= 20_000 and 0 < len(cut.messages) < 100
    assert not cut.complete and "citybus personal export v-0a1b2c3d4e5f" in cut.notes[-1]


def test_a_person_opens_what_was_sealed_for_them_and_nothing_else() -> None:
    key = new_key()
    sealed = seal_body(AESGCM(key), b'{"name": "Ingrid"}', "community.volunteer-signup.v1")
    who = Person("v-0a1b2c3d4e5f", "p-" + "ab" * 12, key)
    assert who.open(sealed, "community.volunteer-signup.v1") == b'{"name": "Ingrid"}'
    assert who.open(sealed, "community.volunteer-activity.v1") is None  # bound to its type
    assert Person(who.id, who.ref, None).open(sealed, "community.volunteer-signup.v1") is None
    assert Person(who.id, who.ref, new_key()).open(sealed, "community.volunteer-signup.v1") is None


@pytest.mark.parametrize(
    ("field", "text", "searched"),
    [
        ("name", "Ingrid Testesen", True),
        ("name", "Community", False),  # a substring of every community message's type
        ("name", "city", False),
        ("name", "community.volunteer-signup", False),
        ("email", "per@example.invalid", True),
        ("email", "personal", False),
        ("phone", "+4791234567", True),
        ("phone", "112", False),
    ],
)
def test_an_erasure_learns_only_identifiers_distinctive_enough_to_search_for(
    field: str, text: str, searched: bool
) -> None:
    found = [
        FoundMessage(place="stream", location="S#1", data={"volunteer_id": "v-0a1b2c3d4e5f", field: text})
    ]
    assert (learned_identifiers("v-0a1b2c3d4e5f", found) == (text,)) is searched
