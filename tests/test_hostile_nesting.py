"""Bodies nested 100 000 levels deep, sent to every decoder outside the bus's own (issue 12, item 4).

msgspec follows nested arrays and objects recursively — even the value of an unknown field it
skips — so ``[[[[…`` past the interpreter's recursion limit raises ``RecursionError``, which no
site caught. Each site must treat such a body as its usual bad input: a dead letter with its
reason (adapters), an error reply (control requests), a tick ignored (the clock), a body left as
it is (time shift, fault injection, recording). Over a real nats-server where there is a bus.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.air import NiluAirQuality, split_records
from adapters.bathing import split_records as split_bathing
from adapters.bikes.osm import station_information_from_osm
from adapters.clock import BusClock
from adapters.polling import SourceFormatError
from adapters.testing import AdapterHarness
from adapters.vicotee import VicoteeBeach, parse_uplink
from adapters.weather.locationforecast import parse_compact
from bus import Bus, RawMessage
from bus.codec import decode_bytes
from bus.envelope import build_headers
from bus.errors import RequestRefusedError, UndecodableError
from bus.subjects import clock_subject, contract_subject, control_subject
from contracts import BeachObservation
from sandbox.adapter import SandboxReplay
from sandbox.control import control_request
from sandbox.faults import CorruptFault, FaultInjector, FaultPlan, Outgoing
from sandbox.recording import RecordingWriter, read_messages
from sandbox.timeshift import TimeShifter
from tests.conftest import wait_for
from tests.http_files import FileServer

DEPTH = 100_000
JSON_ARRAYS = b"[" * DEPTH
"""Nested JSON arrays, never closed: the decoder recurses before it finds the end."""
MSGPACK_ARRAYS = b"\x91" * DEPTH
"""msgpack arrays of one item each, 100 000 deep."""
T0 = datetime(2018, 8, 29, 10, 0, tzinfo=UTC)


def in_a_field(value: bytes, **fields: Any) -> bytes:
    """A JSON object with ``fields`` and an unknown field ``x`` holding ``value`` (skipped, recursively)."""
    return msgspec.json.encode(fields)[:-1] + (b"," if fields else b"") + b'"x":' + value + b"}"


def beach() -> BeachObservation:
    return BeachObservation(site="bragernes-strand", observed_at=T0, water_temperature=17.5, device="v-1")


# -- the one rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decoder", "data"),
    [
        (msgspec.json.Decoder(), JSON_ARRAYS),
        (msgspec.json.Decoder(BeachObservation), in_a_field(JSON_ARRAYS, site="x")),
        (msgspec.msgpack.Decoder(), MSGPACK_ARRAYS),
    ],
    ids=["json", "json-unknown-field", "msgpack"],
)
def test_decode_bytes_turns_any_nesting_into_one_error(decoder: Any, data: bytes) -> None:
    with pytest.raises(UndecodableError, match="nested too deeply") as caught:
        decode_bytes(decoder, data)
    assert caught.value.kind == "depth" and caught.value.reason == "invalid-body"
    assert isinstance(caught.value.__cause__, RecursionError)


# -- polling adapters: a dead letter, and the adapter goes on -------------------------------------


async def test_a_polled_document_nested_deeply_is_dead_lettered_and_the_adapter_goes_on(
    bus: Bus, http_files: FileServer
) -> None:
    url = http_files.serve("/aq/utd", JSON_ARRAYS)
    config = {"source": {"url": url}}
    async with AdapterHarness(NiluAirQuality, config, bus=bus) as harness:
        await wait_for(lambda: len(harness.dead_letters) == 1 or harness.error is not None)
        assert harness.error is None  # the adapter did not die (to be restarted, and die again)
        [letter] = harness.dead_letters
        assert letter.reason == "not-json"
        assert "nested too deeply" in letter.detail
        assert letter.payload == JSON_ARRAYS


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (split_records, JSON_ARRAYS),
        (split_bathing, JSON_ARRAYS),
        (parse_compact, in_a_field(JSON_ARRAYS)),
        (
            lambda body: station_information_from_osm(body, last_updated=T0, version="2.3"),
            in_a_field(JSON_ARRAYS),
        ),
    ],
    ids=["nilu", "yr-bathing", "locationforecast", "osm-racks"],
)
def test_every_document_parser_refuses_deep_nesting_with_its_reason(parse: Any, body: bytes) -> None:
    with pytest.raises(SourceFormatError, match="nested too deeply") as caught:
        parse(body)
    assert caught.value.reason


# -- LoRaWAN uplinks from MQTT devices ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [in_a_field(JSON_ARRAYS), in_a_field(JSON_ARRAYS, end_device_ids={"device_id": "x"})],
    ids=["unknown", "tts-v3"],
)
async def test_a_deeply_nested_uplink_is_dead_lettered_not_json(bus: Bus, body: bytes) -> None:
    subject = "v3.drammen-beach@drammen.devices.vicotee-bragernes-1.up"
    config = {"devices": {"vicotee-bragernes-1": {"site": "bragernes-strand", "water_slot": 1}}}
    async with AdapterHarness(VicoteeBeach, config, bus=bus) as harness:
        await harness.publish_raw(subject, body)
        await wait_for(lambda: len(harness.dead_letters) == 1)
        [letter] = harness.dead_letters
        assert (letter.reason, letter.original_subject, letter.payload) == ("not-json", subject, body)
        assert "nested too deeply" in letter.detail
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_uplink(body)


# -- the clock a replay publishes -----------------------------------------------------------------


async def test_a_deeply_nested_clock_tick_is_ignored_and_the_next_one_followed(bus: Bus, entity: str) -> None:
    handler_errors: list[RawMessage] = []

    async def on_letter(raw: RawMessage) -> None:
        if b"handler-error" in raw.data:
            handler_errors.append(raw)

    await bus.subscribe_raw("city.>", on_letter)  # wherever the dead letters go
    clock = BusClock(bus, entity)
    await clock.start()
    try:
        subject = clock_subject(entity)
        await bus.publish_raw(subject, in_a_field(JSON_ARRAYS, time=T0.isoformat(), speed=1.0, state="x"))
        tick = {"time": (T0 + timedelta(days=1)).isoformat(), "speed": 0.0, "state": "paused"}
        await bus.publish_raw(subject, msgspec.json.encode(tick))
        await wait_for(lambda: clock.following)
        assert clock.now() == T0 + timedelta(days=1)
        await bus.nc.flush()
        await asyncio.sleep(0.1)  # a dead letter of the bad tick would have come by now
        assert handler_errors == []
    finally:
        await clock.close()


# -- sandbox control requests ---------------------------------------------------------------------


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "beach.mcap"
    with RecordingWriter(path) as writer:
        for step in range(6):
            instance = beach()
            at = T0 + timedelta(minutes=10 * step)
            headers = build_headers(
                BeachObservation.__contract__, event_id=f"b-{step}", source="/t", time=at, provenance="sensor"
            )
            writer.add(contract_subject(instance), msgspec.json.encode(instance), headers)
    return path


@pytest.mark.parametrize(
    "body",
    [JSON_ARRAYS, in_a_field(JSON_ARRAYS), in_a_field(JSON_ARRAYS, position=1.0)],
    ids=["arrays", "unknown-field", "with-a-position"],
)
async def test_a_deeply_nested_control_request_gets_an_error_reply(
    bus: Bus, recording: Path, body: bytes
) -> None:
    config = {"files": [str(recording)], "speed": 1.0, "loop": True}
    async with AdapterHarness(SandboxReplay, config, bus=bus, instance="nested") as harness:
        with pytest.raises(RequestRefusedError) as refused:
            await harness.bus.request_raw(control_subject("replay", "nested", "seek"), body, timeout=5)
        assert refused.value.description and refused.value.code == "400"
        status = await control_request(harness.bus, "nested", "status")  # the replay still answers
        assert status.instance == "nested"


# -- what the sandbox does to recorded bodies -----------------------------------------------------

NESTED_BEACH = in_a_field(JSON_ARRAYS, site="bragernes-strand", observed_at=T0.isoformat())


def test_time_shift_leaves_a_deeply_nested_body_as_it_is() -> None:
    shift = TimeShifter().shift(BeachObservation.__contract__.type)
    assert shift is not None
    assert shift(NESTED_BEACH, timedelta(days=1)) == NESTED_BEACH
    assert shift(JSON_ARRAYS, timedelta(days=1)) == JSON_ARRAYS


@pytest.mark.parametrize("fault", ["garble", "retype", "truncate", "stuck"])
def test_faults_apply_to_a_deeply_nested_body_without_raising(fault: str) -> None:
    if fault == "stuck":
        plan = FaultPlan.loads('[[faults]]\nkind = "stuck"\nstart = 0\nduration = 3600\n')
    else:
        plan = FaultPlan(faults=[CorruptFault(probability=1.0, mode=fault)])  # type: ignore[arg-type]
    headers = build_headers(
        BeachObservation.__contract__, event_id="deep", source="/t", time=T0, provenance="sensor"
    )
    subject = contract_subject(beach())
    injector = FaultInjector(plan, origin=T0, truth=io.StringIO())
    for step in range(2):
        at = T0 + timedelta(minutes=step)
        [(_, out)] = injector.apply(Outgoing(subject=subject, data=NESTED_BEACH, headers=headers, time=at))
        assert out.subject == subject


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(JSON_ARRAYS, ""), (MSGPACK_ARRAYS, "application/msgpack")],
    ids=["json", "msgpack"],
)
def test_a_deeply_nested_body_is_recorded_as_the_bytes_it_is(
    tmp_path: Path, body: bytes, content_type: str
) -> None:
    path = tmp_path / "deep.mcap"
    headers = {"ce-time": T0.isoformat()} | ({"content-type": content_type} if content_type else {})
    with RecordingWriter(path) as writer:
        writer.add("city.internal.raw.deep", body, headers)
    [message] = list(read_messages(path))
    assert message.data == body
