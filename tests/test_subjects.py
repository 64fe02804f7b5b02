"""Subjects: where each message travels, and which wildcards see it."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec import Meta

from bus.subjects import (
    contract_filter,
    contract_subject,
    dead_letter_subject,
    domain_filter,
    entity_token,
    event_token,
    is_pattern,
    matches,
    request_filter,
    request_subject,
    stream_name,
    validate_pattern,
)
from contracts import BeachObservation, Classification, Contract, Registry, contract

V2 = Registry()


@contract(
    "environment.beach-observation",
    version=2,
    classification=Classification.PUBLIC,
    key="site",
    example={"site": "sota-fjordpark", "water_temperature": 18.5},
    registry=V2,
)
class BeachObservationV2(Contract, frozen=True, kw_only=True):
    """A bathing-water reading in a breaking new shape, published beside version 1."""

    site: Annotated[str, Meta(description="The bathing site")]
    water_temperature: Annotated[float, Meta(description="Water temperature in degrees Celsius")]


def beach(site: str = "bragernes-strand") -> BeachObservation:
    return msgspec.convert({**BeachObservation.__contract__.example, "site": site}, BeachObservation)


# -- data subjects --------------------------------------------------------------------------------


def test_an_instance_travels_on_class_domain_event_and_entity() -> None:
    assert contract_subject(beach()) == "city.public.environment.beach-observation.bragernes-strand"


def test_contract_filter_covers_every_entity_or_one() -> None:
    assert contract_filter(BeachObservation) == "city.public.environment.beach-observation.*"
    assert contract_filter(BeachObservation, "sota-fjordpark") == (
        "city.public.environment.beach-observation.sota-fjordpark"
    )
    assert contract_filter(BeachObservation, "a.b") == "city.public.environment.beach-observation.a_b"


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("bragernes-strand", "bragernes-strand"),
        ("a.b", "a_b"),
        ("a*", "a_"),
        ("a>b", "a_b"),
        ("Blektjern nord", "Blektjern_nord"),
        ("tab\tand\nnewline", "tab_and_newline"),
        ("..*> ", "_"),
        ("", "_"),
        (42, "42"),
        ("Åsgårdstrand", "Åsgårdstrand"),
    ],
)
def test_entity_token_replaces_what_nats_forbids(value: object, token: str) -> None:
    assert entity_token(value) == token


@given(st.one_of(st.text(), st.integers(), st.floats()))
def test_entity_token_is_always_one_usable_token(value: object) -> None:
    token = entity_token(value)
    assert token
    assert not any(c.isspace() or c in ".*>" for c in token)
    assert validate_pattern(f"city.public.environment.beach-observation.{token}")
    assert not is_pattern(token)


def test_version_1_uses_the_bare_event_name() -> None:
    assert event_token(BeachObservation.__contract__) == "beach-observation"


def test_version_2_travels_beside_version_1_on_its_own_subjects() -> None:
    v2 = BeachObservationV2(site="sota-fjordpark", water_temperature=18.5)
    assert event_token(BeachObservationV2.__contract__) == "beach-observation-v2"
    assert contract_subject(v2) == "city.public.environment.beach-observation-v2.sota-fjordpark"
    assert not matches(contract_filter(BeachObservation), contract_subject(v2))
    assert not matches(contract_filter(BeachObservationV2), contract_subject(beach()))
    # Both versions still land in the one stream of their domain.
    stream_filter = domain_filter(Classification.PUBLIC, "environment")
    assert matches(stream_filter, contract_subject(v2))
    assert matches(stream_filter, contract_subject(beach()))


# -- requests -------------------------------------------------------------------------------------


def test_request_subjects_carry_the_rpc_token_after_the_class() -> None:
    assert request_subject(beach()) == "city.public.rpc.environment.beach-observation.bragernes-strand"
    assert request_filter(BeachObservation) == "city.public.rpc.environment.beach-observation.*"
    assert request_filter(BeachObservation, "x y") == "city.public.rpc.environment.beach-observation.x_y"
    assert matches(request_filter(BeachObservation), request_subject(beach()))


def test_requests_stay_out_of_the_domain_stream() -> None:
    stream_filter = domain_filter(Classification.PUBLIC, "environment")
    assert stream_filter == "city.public.environment.>"
    assert not matches(stream_filter, request_subject(beach()))
    assert matches(stream_filter, contract_subject(beach()))


def test_class_permission_covers_requests_too() -> None:
    assert matches("city.public.>", request_subject(beach()))
    assert not matches("city.internal.>", request_subject(beach()))


# -- streams and dead letters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("classification", "domain", "name"),
    [
        (Classification.PUBLIC, "environment", "CITY_PUBLIC_ENVIRONMENT"),
        (Classification.INTERNAL, "citybus", "CITY_INTERNAL_CITYBUS"),
        (Classification.PERSONAL, "community", "CITY_PERSONAL_COMMUNITY"),
        (Classification.PUBLIC, "city-bikes", "CITY_PUBLIC_CITY_BIKES"),
    ],
)
def test_stream_names(classification: Classification, domain: str, name: str) -> None:
    assert stream_name(classification, domain) == name


def test_dead_letters_are_internal_and_carry_the_reason() -> None:
    assert dead_letter_subject("invalid-body") == "city.internal.citybus.dead-letter.invalid-body"
    assert dead_letter_subject("a.b") == "city.internal.citybus.dead-letter.a_b"
    assert matches(domain_filter(Classification.INTERNAL, "citybus"), dead_letter_subject("x"))


# -- patterns -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [">", "*", "city.>", "city.*.environment.>", "city.public.environment.beach-observation.x"],
)
def test_valid_patterns_are_returned_unchanged(pattern: str) -> None:
    assert validate_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("city.>.public", "'>' may only be the last token"),
        ("city..public", "token 2 is empty"),
        ("", "token 1 is empty"),
        ("city.", "token 2 is empty"),
        ("city.pub lic", "token 2 is empty or contains whitespace"),
        ("city.pub*", "token 2 is empty or contains whitespace, '*' or '>'"),
        ("city.a>", "token 2"),
    ],
)
def test_invalid_patterns_say_which_token_is_wrong(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")) as info:
        validate_pattern(pattern)
    assert repr(pattern) in str(info.value)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("city.>", True), ("city.*.x", True), ("city.public.x", False), (">", True), ("city", False)],
)
def test_is_pattern(subject: str, expected: bool) -> None:
    assert is_pattern(subject) is expected


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("city.public.x", "city.public.x", True),
        ("city.public.x", "city.public.y", False),
        ("city.*.x", "city.public.x", True),
        ("city.*.x", "city.public.x.y", False),
        ("city.*", "city", False),
        ("city.>", "city.public", True),
        ("city.>", "city.public.x.y", True),
        ("city.>", "city", False),
        (">", "city", True),
        ("*", "city", True),
        ("*", "city.public", False),
        ("city.public", "city.public.x", False),
        ("city.public.x", "city.public", False),
        ("*.public.>", "city.public.environment.a", True),
    ],
)
def test_matches_follows_nats_wildcards(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected
