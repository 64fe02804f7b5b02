"""Identifiers made from names in city data."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.naming import slug
from bus.subjects import entity_token


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Bangeløkka", "bangelokka"),
        ("Rosenkrantzgata ved Vårveien", "rosenkrantzgata-ved-varveien"),
        ("Bærum kommune", "baerum-kommune"),
        ("Årvolldammen", "arvolldammen"),
        ("Bergen - Florida", "bergen-florida"),
        ("SN50540:0", "sn50540-0"),
        ("  ", ""),
    ],
)
def test_names_become_slugs_as_norwegians_spell_them(name: str, expected: str) -> None:
    assert slug(name) == expected


@given(st.text(max_size=200))
def test_every_slug_is_a_valid_subject_token(name: str) -> None:
    made = slug(name)
    assert len(made) <= 64
    if made:
        assert entity_token(made) == made
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", made)
