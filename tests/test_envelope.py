"""The CloudEvents envelope in NATS headers, and the codec of contract bodies."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from strategies import instances

from bus import ContractViolation, MissingHeaderError, Provenance
from bus.codec import Codec, encode
from bus.envelope import (
    CONTENT_TYPES,
    build_headers,
    format_time,
    new_event_id,
    parse_headers,
    shared_headers,
)
from contracts import BeachObservation, Contract, default_registry

OSLO_SUMMER = timezone(timedelta(hours=2))


def headers(**changes: str | None) -> dict[str, str]:
    """Complete headers of a beach observation, with some changed or (``None``) removed."""
    base = build_headers(
        BeachObservation.__contract__,
        event_id="e1",
        source="/sensors/vicotee",
        time=datetime(2018, 8, 29, 10, 0, tzinfo=OSLO_SUMMER),
        provenance=Provenance.SENSOR,
    )
    for name, value in changes.items():
        key = name.replace("_", "-")
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


# -- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", sorted(CONTENT_TYPES.values()))
def test_headers_round_trip(content_type: str) -> None:
    moment = datetime(2018, 8, 29, 10, 0, 0, 123456, tzinfo=OSLO_SUMMER)
    event_id = new_event_id()
    built = build_headers(
        BeachObservation.__contract__,
        event_id=event_id,
        source="/sensors/vicotee",
        time=moment,
        provenance=Provenance.RECORDED,
        content_type=content_type,
    )
    envelope = parse_headers(built, "city.public.environment.beach-observation.x")
    assert envelope.id == event_id
    assert envelope.source == "/sensors/vicotee"
    assert envelope.type == "environment.beach-observation.v1"
    assert envelope.time == moment
    assert envelope.subject == "city.public.environment.beach-observation.x"
    assert envelope.provenance == "recorded"
    assert envelope.content_type == content_type


def test_headers_are_cloudevents_binary_mode() -> None:
    built = headers()
    assert built["ce-specversion"] == "1.0"
    assert built["ce-time"] == "2018-08-29T08:00:00.000000Z"  # UTC with a Z
    assert built["ce-dataschema"] == "urn:citybus:contract:environment.beach-observation:v1"
    assert built["content-type"] == "application/json"
    assert built["Nats-Msg-Id"] == built["ce-id"] == "e1"  # JetStream dedupes on the event id


def test_event_ids_are_unique() -> None:
    assert len({new_event_id() for _ in range(1000)}) == 1000


def test_time_and_provenance_are_optional_when_reading() -> None:
    envelope = parse_headers(headers(ce_time=None, ce_provenance=None, content_type=None), "s")
    assert envelope.time is None
    assert envelope.provenance == ""
    assert envelope.content_type == "application/json"


@pytest.mark.parametrize(
    ("given_headers", "message"),
    [
        (None, "no headers"),
        ({}, "no headers"),
        (headers(ce_id=None), "missing CloudEvents header.*ce-id"),
        (headers(ce_source=None, ce_type=None), "ce-source, ce-type"),
        (headers(ce_specversion=None), "ce-specversion"),
        (headers(ce_specversion="0.3"), "ce-specversion is '0.3'; citybus speaks CloudEvents 1.0"),
        (headers(ce_id=""), "ce-id"),
        (headers(ce_time="yesterday"), "ce-time 'yesterday' is not an RFC 3339 timestamp"),
        (headers(ce_time="2018-08-29T10:00:00"), "ce-time '2018-08-29T10:00:00' has no timezone"),
    ],
)
def test_incomplete_or_malformed_headers_are_refused(given_headers: Any, message: str) -> None:
    with pytest.raises(MissingHeaderError, match=message) as info:
        parse_headers(given_headers, "s")
    assert info.value.reason == "missing-header"
    assert isinstance(info.value, ContractViolation)


def test_format_time_is_utc_with_z() -> None:
    assert format_time(datetime(2018, 8, 29, 10, 0, tzinfo=OSLO_SUMMER)) == "2018-08-29T08:00:00.000000Z"
    assert format_time(datetime(2018, 8, 29, 8, 0, tzinfo=UTC)) == "2018-08-29T08:00:00.000000Z"


def test_format_time_rejects_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2018, 8, 29, 10, 0))


# -- the codec ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", sorted(CONTENT_TYPES.values()))
@pytest.mark.parametrize("cls", list(default_registry()), ids=lambda c: c.__contract__.name)
def test_codec_round_trips_every_example(cls: type[Contract], content_type: str) -> None:
    example = cls.example()
    codec = Codec(cls)
    assert codec.decode(codec.encode(example, content_type), content_type) == example


@settings(max_examples=50, deadline=None)
@given(instances(BeachObservation))
def test_codec_round_trips_any_valid_reading(reading: BeachObservation) -> None:
    codec = Codec(BeachObservation)
    for content_type in CONTENT_TYPES.values():
        assert codec.decode(encode(reading, content_type), content_type) == reading


@pytest.mark.parametrize("content_type", ["application/vnd.msgpack", "application/x-msgpack"])
def test_codec_reads_msgpack_aliases(content_type: str) -> None:
    example = BeachObservation.example()
    assert Codec(BeachObservation).decode(encode(example, "application/msgpack"), content_type) == example


def test_codec_reads_json_with_parameters() -> None:
    example = BeachObservation.example()
    body = encode(example)
    assert Codec(BeachObservation).decode(body, "application/json; charset=utf-8") == example


def test_invalid_body_names_contract_and_field() -> None:
    body = msgspec.json.encode({**BeachObservation.__contract__.example, "water_temperature": "warm"})
    with pytest.raises(
        ContractViolation, match=r"environment.beach-observation: .*\$.water_temperature"
    ) as info:
        Codec(BeachObservation).decode(body)
    assert info.value.reason == "invalid-body"


def test_body_that_is_not_json_is_invalid_body() -> None:
    with pytest.raises(ContractViolation, match="body is not valid application/json") as info:
        Codec(BeachObservation).decode(b'{"site": ')
    assert info.value.reason == "invalid-body"


def test_unsupported_content_type_is_refused() -> None:
    body = encode(BeachObservation.example())
    with pytest.raises(ContractViolation, match="unsupported content-type 'text/csv'") as info:
        Codec(BeachObservation).decode(body, "text/csv")
    assert info.value.reason == "unsupported-encoding"


def test_encoding_in_an_unsupported_content_type_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported content type 'text/csv'"):
        encode(BeachObservation.example(), "text/csv")


def test_event_ids_are_random_hex_and_a_forked_child_never_repeats_its_parents() -> None:
    first = new_event_id()  # the parent now holds a batch of ids it has not used
    assert len(first) == 32 and int(first, 16) >= 0
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        os.close(read)
        os.write(write, "".join(new_event_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    child = {text[i : i + 32] for i in range(0, len(text), 32)}
    parent = {new_event_id() for _ in range(1000)}
    assert len(child) == 10 and not child & parent and first not in child


def test_shared_headers_are_build_headers_less_what_each_message_adds() -> None:
    """One writer of the envelope: the template a fast publisher copies is build_headers' own."""
    info = BeachObservation.__contract__
    full = build_headers(
        info, event_id="e", source="/s", time=datetime(2026, 1, 1, tzinfo=UTC), provenance="sensor"
    )
    shared = shared_headers(info.type, source="/s", provenance=Provenance.SENSOR, dataschema=info.dataschema)
    assert shared == {k: v for k, v in full.items() if k not in ("ce-id", "ce-time", "Nats-Msg-Id")}
    unknown = shared_headers("x.unknown.v1", source="/s", provenance="recorded", dataschema=None)
    assert "ce-dataschema" not in unknown and unknown["ce-type"] == "x.unknown.v1"
