"""The Vicotee beach adapter: uplinks of three network servers in, beach observations out.

Frames are built with the VicPack builder around Drammen's manual reading of 2018-08-29 (15.7 °C at
Bragernes strand); the uplink JSON follows each network server's documented message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

import adapters.vicotee as vicotee
from adapters.discovery import discover
from adapters.instances import parse_instance
from adapters.testing import AdapterHarness
from adapters.vicotee import (
    DEFAULT_SUBJECTS,
    SITES,
    BeachConfig,
    DeviceConfig,
    ObservationError,
    Uplink,
    UplinkError,
    VicoteeBeach,
    battery_raw,
    build_frame,
    decode,
    driver_info,
    observation_from,
    parse_uplink,
    reference_voltage_raw,
    sampling_time_packages,
    temperature_raw,
    uv_index_raw,
)
from bus import Bus, Metrics
from bus.errors import ConfigError
from bus.server import EmbeddedServer
from contracts import BeachObservation
from contracts.fields import GeoPoint

SI7050 = 1  # driver id of the Si7050 temperature sensor
RESOLUTION = 175.72 / 65536  # one Si70xx step, in °C
SAMPLED = datetime(2018, 8, 29, 8, 0, tzinfo=UTC)
RECEIVED = "2018-08-29T08:00:04.123456789Z"  # The Things Stack writes nanoseconds
RECEIVED_AT = datetime(2018, 8, 29, 8, 0, 4, 123457, tzinfo=UTC)

CONFIG: dict[str, Any] = {
    "devices": {
        "vicotee-bragernes-1": {"site": "bragernes-strand", "water_slot": 1, "air_slot": 0, "depth": 0.5},
        "A8-40-41-00-01-81-C4-D2": {"site": "sota-fjordpark", "water_slot": 1, "air_slot": 0},
        "vicotee-drammenselva-1": {"site": "drammenselva-bragernes", "water_slot": 2},
    }
}


def beach_frame(
    *,
    water: float | None = 15.7,
    air: float = 17.9,
    uv: float = 3,
    sampled: datetime | None = SAMPLED,
    water_slot: int = 1,
    crc: bool = True,
) -> bytes:
    """A frame shaped as a beach unit most likely sends it (see the VicPack notes)."""
    packages = [(0x01, driver_info(SI7050, 0)), (0x14, temperature_raw(air))]
    if water is not None:
        packages += [(0x01, driver_info(SI7050, water_slot)), (0x14, temperature_raw(water))]
        if sampled is not None:
            packages += sampling_time_packages(int(sampled.timestamp()))
    packages += [(0x36, reference_voltage_raw(1.2)), (0x08, battery_raw(3.58)), (0x20, uv_index_raw(uv))]
    return build_frame(packages, packet_id=17, crc=crc)


def b64(frame: bytes) -> str:
    return base64.b64encode(frame).decode()


def tts_v3(frame: bytes, *, device: str = "vicotee-bragernes-1", received: str = RECEIVED) -> bytes:
    """An uplink as The Things Stack v3 publishes it on ``v3/{app}@{tenant}/devices/{device}/up``."""
    return json.dumps(
        {
            "end_device_ids": {
                "device_id": device,
                "application_ids": {"application_id": "drammen-beach"},
                "dev_eui": "A84041000181C4D1",
                "dev_addr": "260B1234",
            },
            "correlation_ids": ["as:up:01H0ABCDEF"],
            "received_at": received,
            "uplink_message": {
                "session_key_id": "AYa1b2c3",
                "f_port": 2,
                "f_cnt": 412,
                "frm_payload": b64(frame),
                "rx_metadata": [
                    {"gateway_ids": {"gateway_id": "drammen-rådhus"}, "rssi": -112, "snr": -4.5},
                    {"gateway_ids": {"gateway_id": "drammen-bragernes"}, "rssi": -87, "snr": 9.25},
                ],
                "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9}}},
                "received_at": "2018-08-29T08:00:04.100000000Z",
            },
        }
    ).encode()


def chirpstack_v4(frame: bytes, *, dev_eui: str = "a84041000181c4d2") -> bytes:
    """An uplink as ChirpStack v4 publishes it on ``application/{id}/device/{dev_eui}/event/up``."""
    return json.dumps(
        {
            "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
            "time": "2018-08-29T08:00:04.5+00:00",
            "deviceInfo": {
                "tenantName": "Drammen kommune",
                "applicationId": "0b5f4c7e-7b3a-4ad5-8d7c-2a1f8d1c9e00",
                "applicationName": "badetemperatur",
                "deviceName": "sota-1",
                "devEui": dev_eui,
            },
            "devAddr": "01e2f3a4",
            "dr": 3,
            "fCnt": 88,
            "fPort": 2,
            "data": b64(frame),
            "rxInfo": [{"gatewayId": "0016c001ff10a235", "rssi": -101, "snr": 2.0}],
        }
    ).encode()


def ttn_v2(frame: bytes) -> bytes:
    """An uplink as The Things Network v2 published it on ``{app}/devices/{device}/up``."""
    return json.dumps(
        {
            "app_id": "drammen-beach",
            "dev_id": "vicotee-drammenselva-1",
            "hardware_serial": "A84041000181C4D3",
            "port": 2,
            "counter": 1201,
            "payload_raw": b64(frame),
            "metadata": {
                "time": "2018-08-31T11:00:02.81Z",
                "frequency": 868.1,
                "gateways": [{"gtw_id": "eui-b827ebfffe000001", "rssi": -95, "snr": 7.5}],
            },
        }
    ).encode()


TTS_SUBJECT = "v3.drammen-beach@drammen.devices.vicotee-bragernes-1.up"
CHIRPSTACK_SUBJECT = "application.0b5f4c7e-7b3a-4ad5-8d7c-2a1f8d1c9e00.device.a84041000181c4d2.event.up"
TTN_SUBJECT = "drammen-beach.devices.vicotee-drammenselva-1.up"


@pytest.fixture
async def harness() -> AsyncIterator[AdapterHarness]:
    async with AdapterHarness(VicoteeBeach, CONFIG) as h:
        yield h


# -- uplinks in, observations out -----------------------------------------------------------------


async def test_tts_v3_uplink_becomes_a_beach_observation(harness: AdapterHarness) -> None:
    await harness.publish_raw(TTS_SUBJECT, tts_v3(beach_frame()))
    [event] = await harness.wait_for(BeachObservation)
    obs = event.data
    assert obs.site == "bragernes-strand"
    assert obs.water_temperature == pytest.approx(15.7, abs=RESOLUTION)
    assert obs.air_temperature == pytest.approx(17.9, abs=RESOLUTION)
    assert obs.uv_index == 3.0
    assert obs.device == "vicotee-bragernes-1"
    assert obs.depth == 0.5
    assert obs.observed_at == SAMPLED  # the frame's sampling time, not the receive time
    assert obs.location == GeoPoint.at(59.7409, 10.2138)
    assert obs.battery is None  # volts are not a charge: see the adapter's docstring
    assert event.provenance == "sensor"
    assert event.envelope.time == SAMPLED
    assert event.subject == "city.public.environment.beach-observation.bragernes-strand"
    assert harness.dead_letters == []


async def test_chirpstack_v4_uplink_finds_its_device_by_dev_eui_in_any_spelling(
    harness: AdapterHarness,
) -> None:
    await harness.publish_raw(CHIRPSTACK_SUBJECT, chirpstack_v4(beach_frame(water=16.6, air=19.2, uv=5)))
    [event] = await harness.wait_for(BeachObservation)
    obs = event.data
    assert obs.site == "sota-fjordpark"
    assert obs.device == "sota-1"
    assert obs.water_temperature == pytest.approx(16.6, abs=RESOLUTION)
    assert obs.air_temperature == pytest.approx(19.2, abs=RESOLUTION)
    assert obs.uv_index == 5.0
    # Sota's coordinates are approximate: published, and marked so, never passed off as measured
    assert obs.location is not None and obs.location.approximate
    assert obs.location.uncertainty == SITES["sota-fjordpark"].uncertainty > 0
    assert obs.location.placement == SITES["sota-fjordpark"].note
    assert event.provenance == "sensor"


async def test_ttn_v2_uplink_without_sampling_time_is_observed_when_received(harness: AdapterHarness) -> None:
    frame = beach_frame(water=17.3, water_slot=2, sampled=None)
    await harness.publish_raw(TTN_SUBJECT, ttn_v2(frame))
    [event] = await harness.wait_for(BeachObservation)
    obs = event.data
    assert obs.site == "drammenselva-bragernes"
    assert obs.water_temperature == pytest.approx(17.3, abs=RESOLUTION)
    assert obs.air_temperature is None  # no air_slot configured for this unit
    assert obs.observed_at == datetime(2018, 8, 31, 11, 0, 2, 810000, tzinfo=UTC)


async def test_an_uplink_delivered_twice_keeps_its_event_id(harness: AdapterHarness) -> None:
    # MQTT QoS 1 delivers at least once; the same ce-id lets JetStream drop the duplicate.
    for _ in range(2):
        await harness.publish_raw(TTS_SUBJECT, tts_v3(beach_frame()))
    first, second = await harness.wait_for(BeachObservation, count=2)
    assert first.id == second.id
    await harness.publish_raw(TTS_SUBJECT, tts_v3(beach_frame(), received="2018-08-29T09:00:04Z"))
    third = (await harness.wait_for(BeachObservation, count=3))[2]
    assert third.id != first.id


async def test_generated_uplinks_come_out_synthetic() -> None:
    # The sandbox's recorded day feeds generated frames through the adapter: its readings are not
    # a real unit's, and their provenance must say so.
    async with AdapterHarness(VicoteeBeach, {**CONFIG, "provenance": "synthetic"}) as harness:
        await harness.publish_raw(TTS_SUBJECT, tts_v3(beach_frame()))
        [event] = await harness.wait_for(BeachObservation)
    assert event.provenance == "synthetic"
    assert event.data.water_temperature == pytest.approx(15.7, abs=RESOLUTION)
    assert event.envelope.time == SAMPLED


# -- what becomes a dead letter -------------------------------------------------------------------


async def dead_letter(harness: AdapterHarness, subject: str, data: bytes) -> tuple[str, str]:
    await harness.publish_raw(subject, data)
    await harness.settle()
    assert harness.published(BeachObservation) == []
    [letter] = harness.dead_letters
    assert letter.original_subject == subject
    assert letter.payload == data
    return letter.reason, letter.detail


async def test_unknown_device_is_dead_lettered_saying_where_to_add_it(harness: AdapterHarness) -> None:
    uplink = tts_v3(beach_frame(), device="vicotee-new-9")
    reason, detail = await dead_letter(harness, "v3.drammen-beach@drammen.devices.vicotee-new-9.up", uplink)
    assert reason == "unknown-device"
    assert "'vicotee-new-9'" in detail
    assert "A84041000181C4D1" in detail
    assert "[adapters.test.devices]" in detail


async def test_frame_with_a_bad_crc_is_dead_lettered_as_vicpack_crc(harness: AdapterHarness) -> None:
    frame = bytearray(beach_frame())
    frame[-1] ^= 0xFF
    reason, detail = await dead_letter(harness, TTS_SUBJECT, tts_v3(bytes(frame)))
    assert reason == "vicpack-crc"
    assert "CRC mismatch" in detail and "vicotee-bragernes-1" in detail


@pytest.mark.parametrize(
    ("data", "reason", "named"),
    [
        (b"\xfa\x01\x11\x00", "not-json", "not JSON"),
        (b"[1, 2]", "unknown-shape", "not an object"),
        (b'{"hello": "world"}', "unknown-shape", "hello"),
        (
            b'{"end_device_ids": {"device_id": "x"}, "received_at": "2018-08-29T08:00:04Z", '
            b'"uplink_message": {"f_port": 2}}',
            "bad-payload",
            "frm_payload",
        ),
        (tts_v3(b"").replace(RECEIVED.encode(), b"2018-08-29T08:00:04"), "bad-payload", "received_at"),
    ],
    ids=["binary", "array", "other-json", "no-frm-payload", "naive-time"],
)
async def test_what_is_not_an_uplink_is_dead_lettered(
    harness: AdapterHarness, data: bytes, reason: str, named: str
) -> None:
    got_reason, detail = await dead_letter(harness, TTS_SUBJECT, data)
    assert got_reason == reason
    assert named in detail


async def test_frame_without_the_water_slot_is_dead_lettered(harness: AdapterHarness) -> None:
    reason, detail = await dead_letter(harness, TTS_SUBJECT, tts_v3(beach_frame(water=None)))
    assert reason == "no-water-reading"
    assert "water_slot 1" in detail
    assert "0 (SI7050 temperature)" in detail  # the slots the frame did have


async def test_a_reading_the_contract_forbids_is_dead_lettered_not_published(harness: AdapterHarness) -> None:
    reason, detail = await dead_letter(harness, TTS_SUBJECT, tts_v3(beach_frame(water=60.0)))
    assert reason == "out-of-range"
    assert "water_temperature" in detail


# -- the mapping, without a bus -------------------------------------------------------------------


def uplink(frame: bytes, received_at: datetime = RECEIVED_AT) -> Uplink:
    return Uplink(network="tts-v3", device_id="dev", dev_eui=None, received_at=received_at, frame=frame)


BRAGERNES = DeviceConfig(site="bragernes-strand", water_slot=1, air_slot=0)


@pytest.mark.parametrize(
    "sampled",
    [datetime(1970, 1, 1, 0, 5, tzinfo=UTC), datetime(2018, 8, 29, 9, 0, tzinfo=UTC)],
    ids=["clock-never-set", "an-hour-ahead"],
)
def test_an_implausible_sampling_time_gives_way_to_the_receive_time(sampled: datetime) -> None:
    obs = observation_from(
        uplink(beach_frame(sampled=sampled)), decode(beach_frame(sampled=sampled)), BRAGERNES
    )
    assert obs.observed_at == RECEIVED_AT


def test_observation_from_is_pure_and_rounds_to_the_sensor_resolution() -> None:
    frame = beach_frame(water=15.7)
    first = observation_from(uplink(frame), decode(frame), BRAGERNES)
    assert first == observation_from(uplink(frame), decode(frame), BRAGERNES)
    assert first.water_temperature == round(first.water_temperature, 2)
    assert first.depth is None


def test_observation_from_raises_with_the_reason() -> None:
    frame = beach_frame()
    with pytest.raises(ObservationError, match="water_slot 5") as info:
        observation_from(uplink(frame), decode(frame), DeviceConfig(site="blektjern", water_slot=5))
    assert info.value.reason == "no-water-reading"


# -- parsing uplinks ------------------------------------------------------------------------------


def test_each_shape_is_read_into_one_uplink() -> None:
    frame = beach_frame()
    tts = parse_uplink(tts_v3(frame))
    assert tts == Uplink(
        network="tts-v3",
        device_id="vicotee-bragernes-1",
        dev_eui="A84041000181C4D1",
        received_at=RECEIVED_AT,
        frame=frame,
        f_port=2,
        rssi=-87,  # the gateway that heard it best, and that gateway's SNR
        snr=9.25,
    )
    chirpstack = parse_uplink(chirpstack_v4(frame))
    assert (chirpstack.network, chirpstack.device_id, chirpstack.dev_eui) == (
        "chirpstack-v4",
        "sota-1",
        "a84041000181c4d2",
    )
    assert (chirpstack.frame, chirpstack.f_port, chirpstack.rssi, chirpstack.snr) == (frame, 2, -101, 2.0)
    ttn = parse_uplink(ttn_v2(frame))
    assert (ttn.network, ttn.device_id, ttn.dev_eui, ttn.f_port, ttn.rssi) == (
        "ttn-v2",
        "vicotee-drammenselva-1",
        "A84041000181C4D3",
        2,
        -95,
    )


def test_an_uplink_without_radio_metadata_has_none() -> None:
    data = json.loads(tts_v3(beach_frame()))
    del data["uplink_message"]["rx_metadata"]
    up = parse_uplink(json.dumps(data).encode())
    assert (up.rssi, up.snr) == (None, None)


def test_a_bad_base64_payload_names_the_field() -> None:
    with pytest.raises(UplinkError, match=r"ChirpStack v4 uplink: Invalid base64.*\$\.data") as info:
        parse_uplink(chirpstack_v4(b"").replace(b'"data": ""', b'"data": "not base64!"'))
    assert info.value.reason == "bad-payload"


@given(st.binary(max_size=200))
def test_any_bytes_are_an_uplink_or_an_uplink_error(data: bytes) -> None:
    try:
        parse_uplink(data)
    except UplinkError as exc:
        assert exc.reason in ("not-json", "unknown-shape", "bad-payload")


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "end_device_ids": _json,
            "deviceInfo": _json,
            "dev_id": _json,
            "uplink_message": _json,
            "received_at": _json,
            "time": _json,
            "data": _json,
        },
    )
)
def test_any_json_object_is_an_uplink_or_an_uplink_error(message: dict[str, Any]) -> None:
    try:
        parse_uplink(json.dumps(message).encode())
    except UplinkError as exc:
        assert exc.reason in ("unknown-shape", "bad-payload")


# -- configuration --------------------------------------------------------------------------------


def config_error(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_instance("beach", VicoteeBeach, table)
    return str(info.value)


def test_config_defaults_to_the_subjects_network_servers_publish_on() -> None:
    config = parse_instance("beach", VicoteeBeach, {"adapter": "vicotee-beach"}).config
    assert config == BeachConfig(subjects=list(DEFAULT_SUBJECTS), devices={})


def test_unknown_site_names_the_known_sites() -> None:
    message = config_error({"devices": {"dev1": {"site": "copacabana", "water_slot": 1}}})
    assert "[adapters.beach] (vicotee-beach)" in message
    assert "key devices" in message and "unknown site 'copacabana'" in message
    for slug in SITES:
        assert slug in message


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"devics": {}}, "unknown key 'devics'"),
        ({"devices": {"dev1": {"site": "blektjern", "water_slot": 1, "probe": 2}}}, "probe"),
        ({"devices": {"dev1": {"site": "blektjern"}}}, "water_slot"),
        ({"devices": {"dev1": {"site": "blektjern", "water_slot": 1, "air_slot": 1}}}, "both 1"),
        (
            {"devices": {"dev1": {"site": "blektjern", "water_slot": 256}}},
            "water_slot: Expected `int` <= 255",
        ),
        (
            {
                "devices": {
                    k: {"site": "blektjern", "water_slot": 1}
                    for k in ("A84041000181C4D1", "a8:40:41:00:01:81:c4:d1")
                }
            },
            "the same DevEUI",
        ),
        ({"subjects": ["v3.>.up"]}, "'>' may only be the last token"),
        ({"subjects": []}, "subjects"),
        ({"provenance": "vendor"}, "key provenance: Invalid enum value 'vendor'"),
    ],
    ids=[
        "unknown-key",
        "unknown-device-key",
        "no-water-slot",
        "same-slots",
        "slot-range",
        "same-eui",
        "bad-subject",
        "no-subjects",
        "provenance",
    ],
)
def test_config_errors_name_the_key(table: dict[str, Any], named: str) -> None:
    assert named in config_error(table)


# -- the package ----------------------------------------------------------------------------------


def test_the_adapter_is_installed_under_its_name() -> None:
    assert discover().adapters["vicotee-beach"] is VicoteeBeach
    assert VicoteeBeach.kind() == "source"


def test_package_all_is_sorted_and_complete() -> None:
    assert vicotee.__all__ == sorted(vicotee.__all__)
    assert [name for name in vicotee.__all__ if not hasattr(vicotee, name)] == []


def test_the_pilot_sites_are_in_drammen_and_only_bragernes_is_exact() -> None:
    assert {"blektjern", "landfalltjern", "vannverksdammen", "stordammen", "sota-fjordpark"} < set(SITES)
    assert {"bragernes-strand", "drammenselva-bragernes"} < set(SITES)
    for slug, site in SITES.items():
        assert site.slug == slug
        assert 59.68 < site.latitude < 59.78 and 10.05 < site.longitude < 10.30, slug
        msgspec.convert({"location": msgspec.to_builtins(site.location)}, dict[str, GeoPoint])
    assert [s.slug for s in SITES.values() if not s.approximate] == ["bragernes-strand"]
    assert {s.kind for s in SITES.values()} == {"lake", "fjord", "river"}


# -- over a real nats-server, uplinks arriving by MQTT --------------------------------------------


@pytest.fixture
async def mqtt_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path, mqtt_port=0) as server:
        yield server


@pytest.mark.slow
async def test_an_uplink_published_over_mqtt_comes_out_as_a_beach_observation(
    mqtt_server: EmbeddedServer,
) -> None:
    bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests")
    await bus.connect(mqtt_server.url, reconnect_wait=0.1)
    try:
        await bus.provision_streams()
        async with AdapterHarness(VicoteeBeach, CONFIG, bus=bus) as harness:
            assert mqtt_server.mqtt_port is not None
            async with aiomqtt.Client("127.0.0.1", mqtt_server.mqtt_port, identifier="tts-drammen") as client:
                await client.publish(
                    "v3/drammen-beach@drammen/devices/vicotee-bragernes-1/up", tts_v3(beach_frame()), qos=1
                )
            [event] = await harness.wait_for(BeachObservation, timeout=10)
    finally:
        await bus.drain()
    assert event.data.site == "bragernes-strand"
    assert event.data.water_temperature == pytest.approx(15.7, abs=RESOLUTION)
    assert event.provenance == "sensor"
    assert event.subject == "city.public.environment.beach-observation.bragernes-strand"
