"""The VicPack decoder against the format description, by hand-computed numbers and by hypothesis.

Every expected value below was worked out by hand from the formula of its type (the arithmetic is in
the comment beside it), not by running the decoder. Frames are built with :func:`build_frame`, whose
bytes are pinned by a literal frame. The CRCs written out here were computed with ``reference_crc``
below, a second, bit-by-bit implementation of the catalogue definition of CRC-16/ARC (MSB-first with
reflected input and output), which also has the catalogue's check value.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import inspect
import io
import json
import types
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adapters.vicotee
from adapters.vicotee import (
    DRIVERS,
    Frame,
    PackageType,
    Reading,
    SoftwareVersion,
    SwitchInterrupt,
    TofDistance,
    VicPackError,
    VocAirQuality,
    battery_raw,
    build_frame,
    crc16_arc,
    decode,
    driver_info,
    parse_payload,
    reference_voltage_raw,
    sampling_time_packages,
    swap16,
    temperature_raw,
    uv_index_raw,
)
from adapters.vicotee.cli import register
from bus.config import Config

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one(code: int, value: int) -> Reading:
    """The single reading of a frame holding one package."""
    frame = decode(build_frame([(code, value)]))
    assert len(frame.groups) == 1 and len(frame.groups[0].readings) == 1
    return frame.groups[0].readings[0]


def reason_of(data: bytes) -> tuple[str, str]:
    with pytest.raises(VicPackError) as caught:
        decode(data)
    return caught.value.reason, str(caught.value)


# -- every package type ---------------------------------------------------------------------------

# (type, raw value, name, value, unit); floats are compared to 1e-12.
SCALARS = [
    (0x02, 0x0000_0000, "sampling_time_high", 0, "s"),
    (0x03, 0x5B86_6EA0, "sampling_time_low", 1_535_536_800, "s"),  # 2018-08-29T10:00:00Z
    (0x04, 250_000, "sampling_time_offset", 250_000, "us"),
    (0x07, 3300, "battery_on_die", 3.3, "V"),  # 3300 / 1000
    (0x08, 3_600_000, "battery", 3.6, "V"),  # 3 600 000 / 1e6
    (0x0B, 0x0000_0A28, "internal_temperature", 26.0, "CEL"),  # int16(2600) / 100
    (0x0B, 0xFFFF_FF38, "internal_temperature", -2.0, "CEL"),  # int16(0xFF38) = -200; / 100
    (0x0B, 0x1234_FF38, "internal_temperature", -2.0, "CEL"),  # only the low 16 bits count
    (0x13, 0x0001_0010, "charge", 16, "C"),  # uint16: 0x0010
    # 27196 * 175.72 = 4 778 881.12; / 65536 = 72.92 - 4/65536 = 72.91993896484375; - 46.85
    (0x14, 0x6A3C, "temperature", 26.06993896484375, "CEL"),
    # 23040 / 65536 = 0.3515625; * 175.72 = 61.7765625; - 46.85
    (0x14, 0x5A00, "temperature", 14.9265625, "CEL"),
    (0x14, 0x0000, "temperature", -46.85, "CEL"),
    (0x15, 0x8000, "relative_humidity", 56.5, "%"),  # 32768 * 125 / 65536 = 62.5; - 6
    (0x17, 0x0000_4000, "acceleration_x", 0.9984, "[g]"),  # 16384 >> 6 = 256; * 0.0039
    (0x18, 0x0000_C000, "acceleration_y", -0.9984, "[g]"),  # int16 = -16384; >> 6 = -256
    (0x19, 0x0000_FFC1, "acceleration_z", -0.0039, "[g]"),  # int16 = -63; arithmetic >> 6 = -1
    (0x1D, 65, "sound_pressure_level", 65, "dB"),
    (0x1E, 0x0000_9021, "visible_light", 16.0, "lx"),  # m = 0x2190: 0.01 * 2**2 * 0x190 (400)
    (0x1E, 0x0000_FF0F, "visible_light", 40.95, "lx"),  # m = 0x0FFF: 0.01 * 2**0 * 4095
    (0x1E, 0x0000_01F0, "visible_light", 327.68, "lx"),  # m = 0xF001: 0.01 * 2**15 * 1
    (0x1E, 0xABCD_9021, "visible_light", 16.0, "lx"),  # the high two bytes are not part of m
    (0x20, 5, "uv_index", 5, "1"),
    (0x21, 415, "co2", 415, "[ppm]"),
    (0x22, 1234, "distance", 1234, "mm"),
    (0x23, 60_000, "sample_rate", 60_000, "ms"),
    (0x2A, 0b1010, "gpio", 10, None),
    (0x2C, 0xEB00, "voc_temperature", 23.5, "CEL"),  # swap16 = 0x00EB = 235; / 10
    (0x2D, 0xC611, "voc_humidity", 45.5, "%"),  # swap16 = 0x11C6 = 4550; / 100
    (0x2E, 0x9427, "voc_pressure", 101_320, "Pa"),  # swap16 = 0x2794 = 10132; * 10
    (0x34, 0x0080, "voltage", 1.5, "V"),  # swap16 = 0x8000 = 32768; * 3 / 65536
    (0x35, 0x0040, "voltage_difference", 1.5, "V"),  # swap16 = 0x4000 = 16384; * 3 / 32768
    (0x36, 0x00C0, "reference_voltage", 2.25, "V"),  # swap16 = 0xC000 = 49152; * 3 / 65536
    (0x7E, 42, "packet_ack", 42, None),
    (0x7F, 0x0000_0000, "error_code", 0, None),  # no error
    (0x7F, 0xFFFF_FFFC, "error_code", 4, None),  # int32 = -4; negated: 4, timeout
    (0x7F, 0x8000_0000, "error_code", 2**31, None),  # int32 = -2**31
]


@pytest.mark.parametrize(("code", "raw", "name", "value", "unit"), SCALARS)
def test_every_scalar_type_is_named_scaled_and_given_its_unit(
    code: int, raw: int, name: str, value: float, unit: str | None
) -> None:
    reading = one(code, raw)
    assert (reading.type, reading.name, reading.raw, reading.unit, reading.known) == (
        code,
        name,
        raw,
        unit,
        True,
    )
    assert reading.value == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert isinstance(reading.value, type(value))


COMPOSITES = [
    (0x1A, 0x0000_0301, "switch_interrupt", SwitchInterrupt(pin=3, value=1), None),  # pin v>>8, value v&FF
    (0x1A, 0x0102_03FF, "switch_interrupt", SwitchInterrupt(pin=0x010203, value=0xFF), None),
    # swap16(0x6440) = 0x4064 = 0b01 << 14 | 100
    (0x2B, 0x6440, "voc_air_quality", VocAirQuality(index=100, state=1), None),
    (0x2B, 0xFFFF, "voc_air_quality", VocAirQuality(index=0x3FFF, state=3), None),
    # swap16(0xDC45) = 0x45DC = 0b010 << 13 | 1500
    (0x31, 0xDC45, "tof_distance", TofDistance(distance=1500, state=2), "mm"),
    (0x7C, 0x0001_0203, "software_version", SoftwareVersion(major=1, minor=2, patch=3), None),
    (0x7C, 0xFF01_0203, "software_version", SoftwareVersion(major=1, minor=2, patch=3), None),
]


@pytest.mark.parametrize(("code", "raw", "name", "value", "unit"), COMPOSITES)
def test_composite_types_decode_into_their_parts(
    code: int, raw: int, name: str, value: object, unit: str | None
) -> None:
    reading = one(code, raw)
    assert (reading.name, reading.value, reading.unit, reading.known) == (name, value, unit, True)


def test_the_tables_cover_every_type_the_format_defines() -> None:
    tested = {code for code, *_ in SCALARS + COMPOSITES} | {PackageType.DRIVER_INFO}
    assert tested == set(PackageType)
    assert [m.name.lower() for m in PackageType] == [
        "driver_info",
        "sampling_time_high",
        "sampling_time_low",
        "sampling_time_offset",
        "battery_on_die",
        "battery",
        "internal_temperature",
        "charge",
        "temperature",
        "relative_humidity",
        "acceleration_x",
        "acceleration_y",
        "acceleration_z",
        "switch_interrupt",
        "sound_pressure_level",
        "visible_light",
        "uv_index",
        "co2",
        "distance",
        "sample_rate",
        "gpio",
        "voc_air_quality",
        "voc_temperature",
        "voc_humidity",
        "voc_pressure",
        "tof_distance",
        "voltage",
        "voltage_difference",
        "reference_voltage",
        "software_version",
        "packet_ack",
        "error_code",
    ]


def test_swap16_swaps_the_low_two_bytes() -> None:
    assert swap16(0x1234) == 0x3412
    assert swap16(0xABCD_1234) == 0x3412
    assert swap16(swap16(0xBEEF)) == 0xBEEF


def test_an_unknown_type_is_kept_raw_and_flagged() -> None:
    frame = decode(build_frame([(0x99, 0xDEAD_BEEF), (0x14, 0x6A3C), (0x99, 1), (0x05, 7)]))
    assert frame.unknown == (0x99, 0x05)
    first, temperature, again, other = frame.groups[0].readings
    assert first == Reading(
        type=0x99, name="unknown", raw=0xDEAD_BEEF, value=0xDEAD_BEEF, unit=None, known=False
    )
    assert temperature.known and temperature.name == "temperature"
    assert (again.known, again.value, other.known, other.value) == (False, 1, False, 7)
    assert decode(build_frame([(0x14, 0x6A3C)])).unknown == ()


# -- sensor groups --------------------------------------------------------------------------------


def test_driver_info_starts_a_group_that_holds_the_packages_after_it() -> None:
    frame = decode(
        build_frame(
            [
                (0x08, 3_600_000),  # before any driver_info: the leading group
                (0x01, 0x0100_0001),  # driver 1, slot 0, index 0, enabled
                (0x14, 0x6A3C),
                (0x15, 0x8000),
                (0x01, 0x1701_0200),  # driver 23 (sonar), slot 1, index 2, disabled
                (0x22, 1234),
                (0x01, 0xFF02_0302),  # driver 255 is not in the table; any non-zero byte enables
            ]
        )
    )
    lead, air, sonar, odd = frame.groups
    assert (lead.driver, lead.driver_name, lead.slot, lead.index, lead.enabled, lead.raw) == (None,) * 6
    assert [r.name for r in lead.readings] == ["battery"]
    assert (air.driver, air.driver_name, air.slot, air.index, air.enabled) == (
        1,
        "SI7050 temperature",
        0,
        0,
        True,
    )
    assert [r.name for r in air.readings] == ["temperature", "relative_humidity"]
    assert (sonar.driver, sonar.driver_name, sonar.slot, sonar.index, sonar.enabled) == (
        23,
        "sonar",
        1,
        2,
        False,
    )
    assert [r.name for r in sonar.readings] == ["distance"]
    assert (odd.driver, odd.driver_name, odd.slot, odd.index, odd.enabled, odd.readings) == (
        255,
        None,
        2,
        3,
        True,
        (),
    )
    assert air.reading("relative_humidity") == air.readings[1]
    assert air.reading("distance") is None


def test_a_frame_that_starts_with_driver_info_has_no_leading_group() -> None:
    frame = decode(build_frame([(0x01, driver_info(1, 0)), (0x14, 0x6A3C)]))
    assert [g.slot for g in frame.groups] == [0]
    assert decode(build_frame([])).groups == ()


def test_the_driver_table_is_the_formats() -> None:
    assert len(DRIVERS) == 24 and sorted(DRIVERS) == list(range(24))
    assert (DRIVERS[0], DRIVERS[1], DRIVERS[6], DRIVERS[12], DRIVERS[15], DRIVERS[23]) == (
        "none",
        "SI7050 temperature",
        "4-20 mA loop",
        "custom 1",
        "custom 4",
        "sonar",
    )


@pytest.mark.parametrize(
    ("packages", "sampled_at"),
    [
        ([(0x02, 0), (0x03, 0x5B86_6EA0)], 1_535_536_800),
        ([(0x02, 1), (0x03, 2)], 4_294_967_298),  # 1 << 32 | 2
        ([(0x03, 0x5B86_6EA0)], 1_535_536_800),  # only the low part
        ([(0x02, 1)], None),  # a high part alone is no time
        ([(0x04, 500)], None),  # the offset is a reading of its own
        ([], None),
    ],
)
def test_sampling_time_parts_combine_into_sampled_at(
    packages: list[tuple[int, int]], sampled_at: int | None
) -> None:
    frame = decode(build_frame([(0x01, driver_info(1, 0)), *packages, (0x14, 0x6A3C)]))
    assert frame.groups[0].sampled_at == sampled_at


# -- the frame ------------------------------------------------------------------------------------

BEACH = bytes.fromhex(
    "fa 01 07 00 07"  # start, version 1, packet 7, request 0, N = 7
    " 01 01000001"  # driver_info: SI7050, slot 0 (air), index 0, enabled
    " 14 00006a3c"  # temperature 26.06993896484375 °C
    " 01 01010001"  # driver_info: SI7050, slot 1 (water), index 0, enabled
    " 14 00005a00"  # temperature 14.9265625 °C
    " 36 000000c0"  # reference voltage 2.25 V
    " 08 0036ee80"  # battery 3 600 000 µV
    " 20 00000004"  # UV index 4
    " ce cbeb"  # end, CRC-16/ARC
)


def reflect(value: int, bits: int) -> int:
    return int(format(value, f"0{bits}b")[::-1], 2)


def reference_crc(data: bytes) -> int:
    """CRC-16/ARC as the catalogue defines it: poly 0x8005 MSB-first, input and output reflected."""
    crc = 0
    for b in data:
        crc ^= reflect(b, 8) << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return reflect(crc, 16)


def test_crc16_arc_has_the_catalogues_check_value() -> None:
    assert crc16_arc(b"123456789") == reference_crc(b"123456789") == 0xBB3D
    assert crc16_arc(b"") == 0
    assert crc16_arc(BEACH[:-2]) == 0xCBEB


@given(st.binary(max_size=64))
def test_crc16_arc_agrees_with_the_reference_definition(data: bytes) -> None:
    assert crc16_arc(data) == reference_crc(data)


def test_a_typical_beach_frame_decodes_to_air_water_voltage_battery_and_uv() -> None:
    frame = decode(BEACH)
    assert (frame.version, frame.packet_id, frame.request_id, frame.crc, frame.unknown) == (1, 7, 0, "ok", ())
    air, water = frame.groups
    assert (air.driver_name, air.slot, water.driver_name, water.slot) == (
        "SI7050 temperature",
        0,
        "SI7050 temperature",
        1,
    )
    assert air.readings == (
        Reading(type=0x14, name="temperature", raw=0x6A3C, value=26.06993896484375, unit="CEL", known=True),
    )
    values = {r.name: (r.value, r.unit) for r in water.readings}
    assert values == {
        "temperature": (pytest.approx(14.9265625), "CEL"),
        "reference_voltage": (2.25, "V"),
        "battery": (3.6, "V"),
        "uv_index": (4, "1"),
    }


def test_build_frame_writes_the_beach_frame_byte_for_byte() -> None:
    packages = [
        (0x01, driver_info(1, 0)),
        (0x14, temperature_raw(26.07)),
        (0x01, driver_info(1, 1)),
        (0x14, temperature_raw(14.9265625)),
        (0x36, reference_voltage_raw(2.25)),
        (0x08, battery_raw(3.6)),
        (0x20, uv_index_raw(4)),
    ]
    assert build_frame(packages, packet_id=7) == BEACH
    assert decode(BEACH).packages() == packages


def test_a_frame_without_crc_decodes_with_crc_absent() -> None:
    frame = decode(BEACH[:-2])
    assert frame.crc == "absent"
    assert frame.groups == decode(BEACH).groups
    assert build_frame(decode(BEACH).packages(), packet_id=7, crc=False) == BEACH[:-2]


def test_a_frame_keeps_its_version_packet_and_request_id() -> None:
    frame = decode(build_frame([(0x20, 3)], version=2, packet_id=255, request_id=9))
    assert (frame.version, frame.packet_id, frame.request_id) == (2, 255, 9)


# -- invalid frames -------------------------------------------------------------------------------

ONE = bytes.fromhex("fa 01 00 00 01 14 00006a3c ce 42d0")  # one temperature package, with CRC


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"", "empty", "frame is empty"),
        (b"\x00" + ONE[1:], "bad-start", "first byte is 0x00, not 0xFA"),
        (bytes.fromhex("ce01"), "bad-start", "first byte is 0xCE, not 0xFA"),
        (ONE[:3], "truncated", "frame is 3 bytes, shorter than the 5-byte header"),
        (
            ONE[:5],
            "truncated",
            "frame is 5 bytes, too short for N=1 packages: with the end byte they need 11",
        ),
        (
            ONE[:10],
            "truncated",
            "frame is 10 bytes, too short for N=1 packages: with the end byte they need 11",
        ),
        (ONE[:12], "length", "frame is 12 bytes but N=1 packages need 11 (without CRC) or 13 (with CRC)"),
        (
            ONE + b"\x00",
            "length",
            "frame is 14 bytes but N=1 packages need 11 (without CRC) or 13 (with CRC)",
        ),
        (
            ONE[:4] + b"\x02" + ONE[5:],
            "truncated",
            "frame is 13 bytes, too short for N=2 packages: with the end byte they need 16",
        ),
        (
            ONE[:4] + b"\x00" + ONE[5:],
            "length",
            "frame is 13 bytes but N=0 packages need 6 (without CRC) or 8 (with CRC)",
        ),
        (ONE[:10] + b"\x00" + ONE[11:], "bad-end", "byte at offset 10 is 0x00, not 0xCE"),
        (ONE[:11] + b"\x42\xd1", "crc", "CRC mismatch: frame says 0x42D1, computed 0x42D0"),
        (ONE[:6] + b"\x01" + ONE[7:], "crc", "CRC mismatch: frame says 0x42D0, computed 0x82ED"),
    ],
    ids=lambda v: f"{len(v)}-bytes" if isinstance(v, bytes) else v if len(v) < 12 else "",
)
def test_an_invalid_frame_says_exactly_what_is_wrong(data: bytes, reason: str, message: str) -> None:
    assert reason_of(data) == (reason, message)


def test_vicpack_error_is_a_citybus_value_error() -> None:
    from bus.errors import CityBusError

    with pytest.raises(VicPackError) as caught:
        decode(b"\x00")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, CityBusError)


# -- payload text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        BEACH.hex(),
        BEACH.hex().upper(),
        BEACH.hex(" "),
        "0x" + BEACH.hex(),
        " ".join(f"0x{b:02X}" for b in BEACH),
        f"  {BEACH.hex()}\n",
        "+gEHAAcBAQAAARQAAGo8AQEBAAEUAABaADYAAADACAA27oAgAAAABM7L6w==",  # base64, as uplinks carry it
        "+gEHAAcBAQAAARQAAGo8AQEBAAEUAABaADYAAADACAA27oAgAAAABM7L6w",  # without padding
        base64.urlsafe_b64encode(BEACH).decode(),
        "+gEHAAcBAQAAARQAAGo8AQEBAAEUAABaADYAAADA\nCAA27oAgAAAABM7L6w==",  # wrapped
    ],
)
def test_parse_payload_reads_hex_and_base64(text: str) -> None:
    assert parse_payload(text) == BEACH


@pytest.mark.parametrize("text", ["", "   ", "fa0", "0xfa 0x1", "not a frame!", "fa:01", "+gE=x", "ß"])
def test_parse_payload_rejects_what_is_neither(text: str) -> None:
    with pytest.raises(VicPackError) as caught:
        parse_payload(text)
    assert caught.value.reason == "encoding"


# -- building -------------------------------------------------------------------------------------


def test_value_helpers_invert_the_formulas() -> None:
    assert driver_info(1, 0) == 0x0100_0001
    assert driver_info(23, 1, 2, enabled=False) == 0x1701_0200
    assert temperature_raw(26.06993896484375) == 0x6A3C
    assert temperature_raw(-46.85) == 0
    assert battery_raw(3.6) == 3_600_000
    assert reference_voltage_raw(2.25) == 0x00C0  # m = 0xC000, little-endian in the last two bytes
    assert reference_voltage_raw(0) == 0
    assert uv_index_raw(3.4) == 3 and uv_index_raw(6) == 6
    assert sampling_time_packages(1_535_536_800) == [(0x02, 0), (0x03, 0x5B86_6EA0)]
    assert sampling_time_packages(4_294_967_298) == [(0x02, 1), (0x03, 2)]


@pytest.mark.parametrize(
    "call",
    [
        lambda: temperature_raw(130.0),
        lambda: temperature_raw(-47.0),
        lambda: reference_voltage_raw(3.0),
        lambda: reference_voltage_raw(-0.1),
        lambda: battery_raw(-1.0),
        lambda: uv_index_raw(-1),
        lambda: driver_info(256, 0),
        lambda: sampling_time_packages(-1),
        lambda: build_frame([(0x100, 0)]),
        lambda: build_frame([(0x14, 2**32)]),
        lambda: build_frame([(0x14, -1)]),
        lambda: build_frame([(0x20, 1)] * 256),
        lambda: build_frame([], packet_id=256),
    ],
)
def test_the_builder_refuses_values_out_of_range(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_temperature_raw_recovers_every_si70xx_value(raw: int) -> None:
    value = one(0x14, raw).value
    assert isinstance(value, float)
    assert temperature_raw(value) == raw


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_reference_voltage_raw_recovers_every_value(m: int) -> None:
    raw = swap16(m)
    value = one(0x36, raw).value
    assert isinstance(value, float)
    assert reference_voltage_raw(value) == raw


# -- hypothesis: round trip and fuzzing -----------------------------------------------------------

package_types = st.one_of(st.sampled_from([int(t) for t in PackageType]), st.integers(0, 0xFF))
packages = st.lists(st.tuples(package_types, st.integers(0, 0xFFFF_FFFF)), max_size=20)
byte = st.integers(0, 0xFF)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    return build_frame(draw(packages), packet_id=draw(byte), request_id=draw(byte), crc=draw(st.booleans()))


@FUZZ
@given(packages, byte, byte, st.booleans())
def test_decode_gives_back_what_build_frame_was_given(
    items: list[tuple[int, int]], packet_id: int, request_id: int, crc: bool
) -> None:
    frame = decode(build_frame(items, packet_id=packet_id, request_id=request_id, crc=crc))
    assert frame.packages() == items
    assert (frame.packet_id, frame.request_id, frame.crc) == (
        packet_id,
        request_id,
        "ok" if crc else "absent",
    )
    known = {int(t) for t in PackageType}
    assert frame.unknown == tuple(dict.fromkeys(code for code, _ in items if code not in known))
    names = [r.name for g in frame.groups for r in g.readings]
    assert names == [PackageType(c).name.lower() if c in known else "unknown" for c, _ in items if c != 0x01]
    assert json.loads(json.dumps(frame.to_builtins()))["packet_id"] == packet_id


def decode_or_reject(data: bytes) -> Frame | None:
    try:
        return decode(data)
    except VicPackError as exc:
        assert exc.reason in {"empty", "bad-start", "truncated", "length", "bad-end", "crc"}
        assert str(exc)
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_vicpack_error(data: bytes) -> None:
    decode_or_reject(data)


@FUZZ
@given(st.binary(max_size=120).map(lambda b: b"\xfa\x01" + b))
def test_bytes_with_the_start_byte_decode_or_raise_vicpack_error(data: bytes) -> None:
    decode_or_reject(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(frames()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if operation == "insert":
            data.insert(at, draw(byte))
        elif at == len(data):
            continue
        elif operation == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "delete":
            del data[at]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_frames_decode_or_raise_vicpack_error(data: bytes) -> None:
    decode_or_reject(data)


@FUZZ
@given(packages, st.data())
def test_any_single_bit_flip_in_a_frame_with_crc_is_caught(
    items: list[tuple[int, int]], data: st.DataObject
) -> None:
    frame = bytearray(build_frame(items))
    frame[data.draw(st.integers(0, len(frame) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(VicPackError):
        decode(bytes(frame))


@FUZZ
@given(st.text(max_size=200))
def test_parse_payload_returns_bytes_or_raises_vicpack_error(text: str) -> None:
    try:
        assert isinstance(parse_payload(text), bytes)
    except VicPackError as exc:
        assert exc.reason == "encoding"


@FUZZ
@given(frames())
def test_parse_payload_reads_any_frame_as_hex_or_base64(frame: bytes) -> None:
    assert parse_payload(frame.hex(" ")) == frame
    assert parse_payload(base64.b64encode(frame).decode()) == frame
    assert parse_payload(base64.urlsafe_b64encode(frame).decode().rstrip("=")) == frame


# -- the command ----------------------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="citybus")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status = args.func(args, Config())
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_decode_prints_the_frame_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(["vicpack", "decode", BEACH.hex(" ")], capsys)
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert (data["packet_id"], data["request_id"], data["crc"], data["unknown"]) == (7, 0, "ok", [])
    air, water = data["groups"]
    assert (air["driver_name"], air["slot"], water["slot"]) == ("SI7050 temperature", 0, 1)
    assert air["readings"][0] | {"value": None} == {
        "type": 0x14,
        "name": "temperature",
        "raw": 0x6A3C,
        "value": None,
        "unit": "CEL",
        "known": True,
    }
    assert air["readings"][0]["value"] == pytest.approx(26.06993896484375)
    assert [(r["name"], r["unit"]) for r in water["readings"]] == [
        ("temperature", "CEL"),
        ("reference_voltage", "V"),
        ("battery", "V"),
        ("uv_index", "1"),
    ]
    assert out.startswith("{\n  ")  # indented


def test_decode_reads_base64_and_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = run(["vicpack", "decode", base64.b64encode(BEACH).decode()], capsys)
    assert status == 0 and json.loads(out) == decode(BEACH).to_builtins()
    monkeypatch.setattr("sys.stdin", io.StringIO(BEACH[:-2].hex() + "\n"))
    status, out, _ = run(["vicpack", "decode", "-"], capsys)
    assert status == 0 and json.loads(out)["crc"] == "absent"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (ONE[:11].hex() + "42d1", "CRC mismatch: frame says 0x42D1, computed 0x42D0"),
        ("00" + ONE[1:].hex(), "first byte is 0x00, not 0xFA"),
        ("hello", "'hello' is neither hex nor base64"),
    ],
)
def test_a_bad_frame_prints_the_reason_and_exits_1(
    payload: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(["vicpack", "decode", payload], capsys)
    assert (status, out, err) == (1, "", f"citybus: invalid VicPack frame: {message}\n")


def test_citybus_runs_the_command_once_its_entry_point_is_installed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if "vicpack" not in {ep.name for ep in entry_points(group="citybus.commands")}:
        pytest.skip("the citybus.commands entry point 'vicpack' is not in the installed metadata yet")
    from bus.cli import main

    monkeypatch.chdir(tmp_path)  # no stray citybus.toml
    assert main(["vicpack", "decode", BEACH.hex()]) == 0
    assert json.loads(capsys.readouterr().out)["packet_id"] == 7
    assert main(["vicpack", "decode", "fa"]) == 1
    assert capsys.readouterr().err == (
        "citybus: invalid VicPack frame: frame is 1 bytes, shorter than the 5-byte header\n"
    )


# -- the package ----------------------------------------------------------------------------------


def test_package_all_is_sorted_and_lists_exactly_the_public_names() -> None:
    package = adapters.vicotee
    assert package.__all__ == sorted(set(package.__all__))
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(package.__all__) == public
    # The package also re-exports the adapter, the uplink parser and the sites.
    assert set(importlib.import_module("adapters.vicotee.vicpack").__all__) <= set(package.__all__)


@pytest.mark.parametrize("name", ["adapters.vicotee", "adapters.vicotee.vicpack", "adapters.vicotee.cli"])
def test_every_public_name_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)
    assert (module.__doc__ or "").strip()
    assert [n for n in module.__all__ if not hasattr(module, n)] == []
    undocumented = []
    for public in module.__all__:
        value = getattr(module, public)
        if not (inspect.isclass(value) or inspect.isfunction(value)) or value.__module__ != name:
            continue
        if not (value.__doc__ or "").strip():
            undocumented.append(public)
        if inspect.isclass(value):
            undocumented += [
                f"{public}.{attr}"
                for attr, member in vars(value).items()
                if not attr.startswith("_") and inspect.isfunction(member) and not member.__doc__
            ]
    assert undocumented == []
