"""The SSE stream's parsing parts, without a server: position vectors, frames, subject selection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.gateway.eventstream import (
    HEARTBEAT,
    MAX_STREAMS,
    MalformedEventIdError,
    event_frame,
    format_positions,
    id_frame,
    parse_positions,
    retry_frame,
)
from adapters.gateway.selection import MAX_PATTERNS, SubjectRefusedError, select
from bus import subjects
from contracts import Classification, default_registry

PUBLIC = frozenset({Classification.PUBLIC})
INTERNAL = frozenset({Classification.PUBLIC, Classification.INTERNAL})

# -- position vectors ------------------------------------------------------------------------------


def test_a_position_vector_round_trips_sorted_by_stream() -> None:
    positions = {"CITY_PUBLIC_MOBILITY": 77, "CITY_PUBLIC_ENVIRONMENT": 123}
    text = format_positions(positions)
    assert text == "CITY_PUBLIC_ENVIRONMENT:123,CITY_PUBLIC_MOBILITY:77"
    assert parse_positions(text) == positions


def test_an_empty_last_event_id_means_nothing_seen() -> None:
    assert parse_positions("") == {}
    assert parse_positions("   ") == {}
    assert format_positions({}) == ""


@given(st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_-]{0,30}", fullmatch=True), st.integers(0, 2**64 - 1)))
def test_every_vector_the_gateway_writes_parses_back(positions: dict[str, int]) -> None:
    assert parse_positions(format_positions(positions)) == positions


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("123", "is not STREAM:sequence"),
        ("CITY_PUBLIC_ENVIRONMENT", "is not STREAM:sequence"),
        ("CITY_PUBLIC_ENVIRONMENT:", "is not STREAM:sequence"),
        ("CITY_PUBLIC_ENVIRONMENT:-1", "is not STREAM:sequence"),
        ("CITY_PUBLIC_ENVIRONMENT:1e3", "is not STREAM:sequence"),
        ("CITY.PUBLIC:1", "is not STREAM:sequence"),
        ("A:1,,B:2", "is not STREAM:sequence"),
        ("A:1,A:2", "names stream A twice"),
        ("A:99999999999999999999", "out of range"),
        (",".join(f"S{i}:1" for i in range(MAX_STREAMS + 1)), f"at most {MAX_STREAMS}"),
    ],
)
def test_a_malformed_last_event_id_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(MalformedEventIdError, match=says):
        parse_positions(text)


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_with_one_error(text: str) -> None:
    try:
        positions = parse_positions(text)
    except MalformedEventIdError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(seq >= 0 for seq in positions.values())


# -- frames ----------------------------------------------------------------------------------------


def test_a_message_frame_carries_the_vector_the_event_and_the_json() -> None:
    frame = event_frame("message", b'{"id":"1"}', {"B": 2, "A": 1})
    assert frame == b'id: A:1,B:2\nevent: message\ndata: {"id":"1"}\n\n'


def test_a_body_with_line_breaks_becomes_several_data_lines() -> None:
    assert event_frame("gap", b"one\ntwo\r\nthree") == b"event: gap\ndata: one\ndata: two\ndata: three\n\n"


def test_the_control_frames() -> None:
    assert retry_frame(2000) == b"retry: 2000\n\n"
    assert id_frame({"A": 3}) == b"id: A:3\n\n"
    assert HEARTBEAT == b": heartbeat\n\n"


# -- subject selection -----------------------------------------------------------------------------

REGISTRY = default_registry()


def test_a_contract_name_is_its_subjects_as_tail_reads_it() -> None:
    beach = REGISTRY.get("environment.beach-observation")
    expected = [subjects.contract_filter(beach)]
    assert select(["environment.beach-observation"], REGISTRY, PUBLIC, token=False) == expected
    assert select(["environment.beach-observation@1"], REGISTRY, PUBLIC, token=False) == expected
    assert subjects.resolve_pattern("environment.beach-observation", REGISTRY) == expected[0]


def test_a_pattern_is_kept_and_duplicates_are_dropped() -> None:
    chosen = select(
        ["city.public.environment.beach-observation.*", "city.public.>", "city.public.>"],
        REGISTRY,
        PUBLIC,
        token=False,
    )
    assert chosen == ["city.public.environment.beach-observation.*", "city.public.>"]


def test_no_subject_is_everything_the_caller_reads() -> None:
    assert select([], REGISTRY, PUBLIC, token=False) == ["city.public.>"]
    assert select([], REGISTRY, INTERNAL, token=True) == ["city.public.>", "city.internal.>"]


def test_a_wildcard_classification_is_narrowed_to_what_the_caller_reads() -> None:
    assert select([">"], REGISTRY, PUBLIC, token=False) == ["city.public.>"]
    assert select(["city.*.mobility.>"], REGISTRY, INTERNAL, token=True) == [
        "city.public.mobility.>",
        "city.internal.mobility.>",
    ]


@pytest.mark.parametrize(
    ("text", "readable", "token", "status", "says"),
    [
        ("city.personal.>", INTERNAL, True, 403, "never served"),
        ("community.volunteer-signup", INTERNAL, True, 403, "never served"),
        ("city.internal.>", PUBLIC, False, 401, "needs a bearer token"),
        ("operations.device-status", PUBLIC, False, 401, "needs a bearer token"),
        ("city.internal.>", PUBLIC, True, 403, "may not read internal"),
        ("environment.beach-observaton", PUBLIC, False, 400, "did you mean"),
        ("environment.beach-observation@9", PUBLIC, False, 400, "beach-observation"),
        ("nosuch", PUBLIC, False, 400, "a subject pattern has a wildcard"),
        ("city.>.x", PUBLIC, False, 400, "'>' may only be the last token"),
        ("city..x", PUBLIC, False, 400, "empty"),
        ("sensors.a.b", PUBLIC, False, 400, "is not city data"),
        ("citybus.control.>", PUBLIC, False, 400, "is not city data"),
        ("city.secret.>", PUBLIC, False, 400, "is no classification"),
        ("city.*", PUBLIC, False, 400, "matches no data subject"),
        ("city." + "a" * 300, PUBLIC, False, 400, "at most"),
    ],
)
def test_a_refused_subject_gets_a_status_and_what_to_do(
    text: str, readable: frozenset[Classification], token: bool, status: int, says: str
) -> None:
    with pytest.raises(SubjectRefusedError, match=says) as caught:
        select([text], REGISTRY, readable, token=token)
    assert caught.value.status == status
    assert "\n" not in str(caught.value)


def test_too_many_subjects_are_refused() -> None:
    with pytest.raises(SubjectRefusedError, match=f"at most {MAX_PATTERNS}"):
        select(["city.public.>"] * (MAX_PATTERNS + 1), REGISTRY, PUBLIC, token=False)
