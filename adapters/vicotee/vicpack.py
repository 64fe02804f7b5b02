"""VicPack, the payload Vicotee's sensors send: a pure decoder, and a builder for tests and the sandbox.

Drammen's beach units (a probe in the water, a thermometer and a UV sensor on land) send one VicPack
frame per uplink over LoRaWAN or NB-IoT::

    0xFA  version  packet-id  request-id  N  N x [type, value: u32 big-endian]  0xCE  [CRC-16/ARC]

:func:`decode` checks the framing and the CRC, then turns every package into a named, scaled
:class:`Reading`, grouped by the sensor whose ``driver_info`` package (type 0x01) came before it.
A frame that is not valid raises :class:`VicPackError`, whose ``reason`` is the dead-letter reason;
:func:`decode` raises nothing else, whatever the bytes. A package type the format does not define is
kept raw and flagged (``known=False``, listed in :attr:`Frame.unknown`), never dropped or guessed.

Units are UCUM codes, written as the contracts write them, so an adapter passes them on unchanged:
``V`` volt, ``CEL`` degree Celsius, ``%`` relative humidity, ``[g]`` standard gravity (UCUM's
``g`` is the gram), ``dB``, ``lx`` lux, ``[ppm]``, ``mm``, ``ms``, ``s``, ``us`` microsecond,
``Pa``, ``C`` coulomb and ``1`` for the dimensionless UV index. Values without a unit (GPIO,
switch, counters, codes, versions) have ``unit=None``.

Sampling time: the format gives types 0x02 and 0x03 as the high and low parts of "epoch seconds"
without saying how they combine. Here ``sampled_at = high << 32 | low`` when a group has both, the
low part alone when only it came, and ``None`` when the low part is missing. The offset (0x04, in
microseconds) stays a reading of its own; it is not added in.
"""

from __future__ import annotations

import base64
import binascii
import enum
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Final, Literal, NamedTuple, TypeAlias

import msgspec
from msgspec import Meta

from bus.errors import CityBusError

__all__ = [
    "DRIVERS",
    "Frame",
    "Group",
    "PackageType",
    "Reading",
    "SoftwareVersion",
    "SwitchInterrupt",
    "TofDistance",
    "Value",
    "VicPackError",
    "VocAirQuality",
    "battery_raw",
    "build_frame",
    "crc16_arc",
    "decode",
    "driver_info",
    "parse_payload",
    "reference_voltage_raw",
    "sampling_time_packages",
    "swap16",
    "temperature_raw",
    "uv_index_raw",
]

START: Final = 0xFA
END: Final = 0xCE
HEADER_SIZE: Final = 5
PACKAGE_SIZE: Final = 5
CRC_SIZE: Final = 2
U32_MAX: Final = 0xFFFF_FFFF

U8 = Annotated[int, Meta(ge=0, le=0xFF)]
U32 = Annotated[int, Meta(ge=0, le=U32_MAX)]

Reason: TypeAlias = Literal["empty", "bad-start", "truncated", "length", "bad-end", "crc", "encoding"]


class VicPackError(CityBusError, ValueError):
    """A payload that is not a valid VicPack frame; such a frame goes to the dead letters, not on.

    ``reason`` is a short token for metrics and dead letters: ``empty``, ``bad-start``,
    ``truncated``, ``length``, ``bad-end`` or ``crc`` from :func:`decode`, and ``encoding`` from
    :func:`parse_payload`. The message says exactly what is wrong with the bytes.
    """

    def __init__(self, message: str, *, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason


class PackageType(enum.IntEnum):
    """The package types the format defines; the lower-case member name is the reading's name."""

    DRIVER_INFO = 0x01
    SAMPLING_TIME_HIGH = 0x02
    SAMPLING_TIME_LOW = 0x03
    SAMPLING_TIME_OFFSET = 0x04
    BATTERY_ON_DIE = 0x07
    BATTERY = 0x08
    INTERNAL_TEMPERATURE = 0x0B
    CHARGE = 0x13
    TEMPERATURE = 0x14
    RELATIVE_HUMIDITY = 0x15
    ACCELERATION_X = 0x17
    ACCELERATION_Y = 0x18
    ACCELERATION_Z = 0x19
    SWITCH_INTERRUPT = 0x1A
    SOUND_PRESSURE_LEVEL = 0x1D
    VISIBLE_LIGHT = 0x1E
    UV_INDEX = 0x20
    CO2 = 0x21
    DISTANCE = 0x22
    SAMPLE_RATE = 0x23
    GPIO = 0x2A
    VOC_AIR_QUALITY = 0x2B
    VOC_TEMPERATURE = 0x2C
    VOC_HUMIDITY = 0x2D
    VOC_PRESSURE = 0x2E
    TOF_DISTANCE = 0x31
    VOLTAGE = 0x34
    VOLTAGE_DIFFERENCE = 0x35
    REFERENCE_VOLTAGE = 0x36
    SOFTWARE_VERSION = 0x7C
    PACKET_ACK = 0x7E
    ERROR_CODE = 0x7F


DRIVERS: Final[Mapping[int, str]] = {
    0: "none",
    1: "SI7050 temperature",
    2: "SI7020 humidity",
    3: "switch",
    4: "internal ADC",
    5: "LTC1864L ADC",
    6: "4-20 mA loop",
    7: "UART",
    8: "accelerometer",
    9: "digital microphone",
    10: "ambient light",
    11: "CO2 module",
    12: "custom 1",
    13: "custom 2",
    14: "custom 3",
    15: "custom 4",
    16: "debug",
    17: "environmental",
    18: "GPS",
    19: "terminal",
    20: "time-of-flight",
    21: "PIR",
    22: "capacitive",
    23: "sonar",
}
"""Driver ids of ``driver_info`` packages and the sensor each stands for."""


# -- the decoded frame ----------------------------------------------------------------------------


class SwitchInterrupt(msgspec.Struct, frozen=True, kw_only=True):
    """A switch input fired: which pin, and the level it read (type 0x1A)."""

    pin: Annotated[int, Meta(ge=0, le=0xFF_FFFF)]
    value: U8


class VocAirQuality(msgspec.Struct, frozen=True, kw_only=True):
    """The VOC sensor's air-quality index and the state of its algorithm (type 0x2B)."""

    index: Annotated[int, Meta(ge=0, le=0x3FFF)]
    state: Annotated[int, Meta(ge=0, le=3)]


class TofDistance(msgspec.Struct, frozen=True, kw_only=True):
    """A time-of-flight distance in millimetres and the state of the measurement (type 0x31)."""

    distance: Annotated[int, Meta(ge=0, le=0x1FFF, extra={"unit": "mm"})]
    state: Annotated[int, Meta(ge=0, le=7)]


class SoftwareVersion(msgspec.Struct, frozen=True, kw_only=True):
    """The version of the application software on the device (type 0x7C)."""

    major: U8
    minor: U8
    patch: U8


Value: TypeAlias = int | float | SwitchInterrupt | VocAirQuality | TofDistance | SoftwareVersion
"""A reading's value: a count or raw value, a scaled quantity, or a small composite."""


class Reading(msgspec.Struct, frozen=True, kw_only=True):
    """One package of a frame: what the sensor measured, in ``unit``, and the raw value it came from.

    ``known`` is false for a type the format does not define; then ``name`` is ``"unknown"`` and
    ``value`` is the raw value, unscaled.
    """

    type: Annotated[U8, Meta(description="The package type code, e.g. 0x14 (20) for temperature")]
    name: Annotated[str, Meta(description="The type's name, e.g. temperature; unknown if undefined")]
    raw: Annotated[U32, Meta(description="The 4 value bytes as a big-endian unsigned integer")]
    value: Annotated[Value, Meta(description="The value as the format defines it, scaled to unit")]
    unit: Annotated[str | None, Meta(description="UCUM code of value, None if it has none")]
    known: Annotated[bool, Meta(description="False if the format does not define this type")]


class Group(msgspec.Struct, frozen=True, kw_only=True):
    """The readings of one sensor (slot): a ``driver_info`` package and the packages after it.

    Packages that come before any ``driver_info`` form a leading group whose driver fields are all
    ``None``. ``driver_name`` is also ``None`` for a driver id the format does not list.
    """

    driver: Annotated[U8 | None, Meta(description="Driver id from driver_info, e.g. 1 for SI7050")]
    driver_name: Annotated[str | None, Meta(description="The sensor the driver id stands for")]
    slot: Annotated[U8 | None, Meta(description="The slot the sensor sits in on the device")]
    index: Annotated[U8 | None, Meta(description="Index of the sensor on its driver")]
    enabled: Annotated[bool | None, Meta(description="Whether the sensor is enabled")]
    raw: Annotated[U32 | None, Meta(description="The driver_info value as sent")]
    sampled_at: Annotated[
        int | None,
        Meta(description="When the group was sampled, epoch seconds (high << 32 | low)", extra={"unit": "s"}),
    ]
    readings: tuple[Reading, ...]

    def reading(self, name: str) -> Reading | None:
        """The first reading called ``name`` (e.g. ``"temperature"``) in this group, if any."""
        return next((r for r in self.readings if r.name == name), None)


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded uplink of a Vicotee unit: its readings, grouped by sensor, and how it was checked."""

    version: Annotated[U8, Meta(description="Format version; 1 in every frame seen")]
    packet_id: Annotated[U8, Meta(description="The device's packet counter")]
    request_id: Annotated[U8, Meta(description="The request answered; 0 for an unsolicited uplink")]
    crc: Annotated[Literal["ok", "absent"], Meta(description="ok if a CRC came and matched")]
    unknown: Annotated[tuple[int, ...], Meta(description="Undefined package types in the frame")]
    groups: tuple[Group, ...]

    def packages(self) -> list[tuple[int, int]]:
        """The ``(type, raw value)`` packages in the order they were sent."""
        found: list[tuple[int, int]] = []
        for group in self.groups:
            if group.raw is not None:
                found.append((int(PackageType.DRIVER_INFO), group.raw))
            found.extend((r.type, r.raw) for r in group.readings)
        return found

    def to_builtins(self) -> dict[str, Any]:
        """The frame as dicts, lists, numbers and strings, ready for ``json.dumps``."""
        # Through JSON rather than msgspec.to_builtins, which keeps tuples as tuples.
        data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return data


# -- the formulas ---------------------------------------------------------------------------------


def swap16(v: int) -> int:
    """The low 16 bits of ``v`` with their two bytes swapped (little-endian 16-bit types)."""
    return ((v >> 8) & 0xFF) | ((v & 0xFF) << 8)


def _int16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x1_0000 if v & 0x8000 else v


def _int32(v: int) -> int:
    v &= U32_MAX
    return v - 0x1_0000_0000 if v & 0x8000_0000 else v


def _raw(v: int) -> int:
    return v


def _si70xx_temperature(v: int) -> float:
    return v * 175.72 / 65536 - 46.85


def _acceleration(v: int) -> float:
    # Python's >> on a negative int is an arithmetic shift, as the device's C code does.
    return (_int16(v) >> 6) * 0.0039


def _visible_light(v: int) -> float:
    m = swap16(v)
    return 0.01 * (1 << (m >> 12)) * (m & 0xFFF)


def _voc_air_quality(v: int) -> VocAirQuality:
    m = swap16(v)
    return VocAirQuality(index=m & 0x3FFF, state=(m >> 14) & 3)


def _tof_distance(v: int) -> TofDistance:
    m = swap16(v)
    return TofDistance(distance=m & 0x1FFF, state=(m >> 13) & 7)


class _Kind(NamedTuple):
    unit: str | None
    convert: Callable[[int], Value]


_KINDS: Final[Mapping[int, _Kind]] = {
    PackageType.SAMPLING_TIME_HIGH: _Kind("s", _raw),
    PackageType.SAMPLING_TIME_LOW: _Kind("s", _raw),
    PackageType.SAMPLING_TIME_OFFSET: _Kind("us", _raw),
    PackageType.BATTERY_ON_DIE: _Kind("V", lambda v: v / 1000),
    PackageType.BATTERY: _Kind("V", lambda v: v / 1_000_000),
    PackageType.INTERNAL_TEMPERATURE: _Kind("CEL", lambda v: _int16(v) / 100),
    PackageType.CHARGE: _Kind("C", lambda v: v & 0xFFFF),
    PackageType.TEMPERATURE: _Kind("CEL", _si70xx_temperature),
    PackageType.RELATIVE_HUMIDITY: _Kind("%", lambda v: v * 125 / 65536 - 6),
    PackageType.ACCELERATION_X: _Kind("[g]", _acceleration),
    PackageType.ACCELERATION_Y: _Kind("[g]", _acceleration),
    PackageType.ACCELERATION_Z: _Kind("[g]", _acceleration),
    PackageType.SWITCH_INTERRUPT: _Kind(None, lambda v: SwitchInterrupt(pin=v >> 8, value=v & 0xFF)),
    PackageType.SOUND_PRESSURE_LEVEL: _Kind("dB", _raw),
    PackageType.VISIBLE_LIGHT: _Kind("lx", _visible_light),
    PackageType.UV_INDEX: _Kind("1", _raw),
    PackageType.CO2: _Kind("[ppm]", _raw),
    PackageType.DISTANCE: _Kind("mm", _raw),
    PackageType.SAMPLE_RATE: _Kind("ms", _raw),
    PackageType.GPIO: _Kind(None, _raw),
    PackageType.VOC_AIR_QUALITY: _Kind(None, _voc_air_quality),
    PackageType.VOC_TEMPERATURE: _Kind("CEL", lambda v: swap16(v) / 10),
    PackageType.VOC_HUMIDITY: _Kind("%", lambda v: swap16(v) / 100),
    PackageType.VOC_PRESSURE: _Kind("Pa", lambda v: swap16(v) * 10),
    PackageType.TOF_DISTANCE: _Kind("mm", _tof_distance),
    PackageType.VOLTAGE: _Kind("V", lambda v: swap16(v) * 3 / 65536),
    PackageType.VOLTAGE_DIFFERENCE: _Kind("V", lambda v: swap16(v) * 3 / 32768),
    PackageType.REFERENCE_VOLTAGE: _Kind("V", lambda v: swap16(v) * 3 / 65536),
    PackageType.SOFTWARE_VERSION: _Kind(
        None, lambda v: SoftwareVersion(major=(v >> 16) & 0xFF, minor=(v >> 8) & 0xFF, patch=v & 0xFF)
    ),
    PackageType.PACKET_ACK: _Kind(None, _raw),
    # The device sends the negated index into its error list: 0 none, 1 generic, 2 no resources,
    # 3 invalid value, 4 timeout, ...
    PackageType.ERROR_CODE: _Kind(None, lambda v: -_int32(v)),
}


def _reading(code: int, v: int) -> Reading:
    kind = _KINDS.get(code)
    if kind is None:
        return Reading(type=code, name="unknown", raw=v, value=v, unit=None, known=False)
    name = PackageType(code).name.lower()
    return Reading(type=code, name=name, raw=v, value=kind.convert(v), unit=kind.unit, known=True)


def _group(info: int | None, readings: list[Reading]) -> Group:
    high = low = None
    for r in readings:
        if r.type == PackageType.SAMPLING_TIME_HIGH:
            high = r.raw
        elif r.type == PackageType.SAMPLING_TIME_LOW:
            low = r.raw
    sampled_at = low if high is None or low is None else high << 32 | low
    if info is None:
        return Group(
            driver=None,
            driver_name=None,
            slot=None,
            index=None,
            enabled=None,
            raw=None,
            sampled_at=sampled_at,
            readings=tuple(readings),
        )
    return Group(
        driver=info >> 24,
        driver_name=DRIVERS.get(info >> 24),
        slot=(info >> 16) & 0xFF,
        index=(info >> 8) & 0xFF,
        enabled=(info & 0xFF) != 0,
        raw=info,
        sampled_at=sampled_at,
        readings=tuple(readings),
    )


# -- decoding -------------------------------------------------------------------------------------


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC of ``data``: polynomial 0x8005 reflected (0xA001), init 0, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _fail(reason: Reason, message: str) -> VicPackError:
    return VicPackError(message, reason=reason)


def decode(frame: bytes) -> Frame:
    """Check one VicPack frame and decode its packages; raises :class:`VicPackError` and nothing else."""
    data = bytes(frame)
    size = len(data)
    if size == 0:
        raise _fail("empty", "frame is empty")
    if data[0] != START:
        raise _fail("bad-start", f"first byte is 0x{data[0]:02X}, not 0xFA")
    if size < HEADER_SIZE:
        raise _fail("truncated", f"frame is {size} bytes, shorter than the {HEADER_SIZE}-byte header")
    count = data[4]
    end = HEADER_SIZE + PACKAGE_SIZE * count  # offset of the 0xCE
    if size < end + 1:
        raise _fail(
            "truncated",
            f"frame is {size} bytes, too short for N={count} packages: with the end byte they need {end + 1}",
        )
    if size not in (end + 1, end + 1 + CRC_SIZE):
        raise _fail(
            "length",
            f"frame is {size} bytes but N={count} packages need {end + 1} (without CRC) "
            f"or {end + 1 + CRC_SIZE} (with CRC)",
        )
    if data[end] != END:
        raise _fail("bad-end", f"byte at offset {end} is 0x{data[end]:02X}, not 0xCE")
    crc: Literal["ok", "absent"] = "absent"
    if size == end + 1 + CRC_SIZE:
        sent = int.from_bytes(data[end + 1 :], "big")
        computed = crc16_arc(data[: end + 1])
        if sent != computed:
            raise _fail("crc", f"CRC mismatch: frame says 0x{sent:04X}, computed 0x{computed:04X}")
        crc = "ok"

    # One (driver_info value, readings) pair per group; the first is the leading group.
    pairs: list[tuple[int | None, list[Reading]]] = [(None, [])]
    unknown: list[int] = []
    for offset in range(HEADER_SIZE, end, PACKAGE_SIZE):
        code = data[offset]
        v = int.from_bytes(data[offset + 1 : offset + PACKAGE_SIZE], "big")
        if code == PackageType.DRIVER_INFO:
            pairs.append((v, []))
            continue
        reading = _reading(code, v)
        if not reading.known and code not in unknown:
            unknown.append(code)
        pairs[-1][1].append(reading)
    if not pairs[0][1]:
        del pairs[0]
    return Frame(
        version=data[1],
        packet_id=data[2],
        request_id=data[3],
        crc=crc,
        unknown=tuple(unknown),
        groups=tuple(_group(info, readings) for info, readings in pairs),
    )


def parse_payload(text: str) -> bytes:
    """The bytes of a frame given as hex (spaces and ``0x`` allowed) or base64 (standard or URL-safe).

    Text made only of hex digits is read as hex: a frame in base64 starts with ``+`` or ``-`` (0xFA),
    which hex never contains. Raises :class:`VicPackError` (reason ``encoding``) if it is neither.
    """
    tokens = text.split()
    if not tokens:
        raise _fail("encoding", "no payload: expected the frame as hex or base64")
    hex_text = "".join(t[2:] if t[:2] in ("0x", "0X") else t for t in tokens)
    if hex_text and all(c in string.hexdigits for c in hex_text):
        if len(hex_text) % 2:
            raise _fail("encoding", f"odd number of hex digits ({len(hex_text)}): a byte is two digits")
        return bytes.fromhex(hex_text)
    b64 = "".join(tokens).replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise _fail("encoding", f"{shown!r} is neither hex nor base64") from None


# -- building -------------------------------------------------------------------------------------


def _check(name: str, value: int, top: int) -> int:
    if not 0 <= value <= top:
        raise ValueError(f"{name} {value} is out of range 0..{top}")
    return value


def build_frame(
    packages: Iterable[tuple[int, int]],
    *,
    packet_id: int = 0,
    request_id: int = 0,
    version: int = 1,
    crc: bool = True,
) -> bytes:
    """A VicPack frame of ``(type, raw value)`` packages, with a CRC unless ``crc=False``.

    Raises :class:`ValueError` for a field out of range (more than 255 packages included).
    """
    items = list(packages)
    body = bytearray([START])
    body.append(_check("version", version, 0xFF))
    body.append(_check("packet_id", packet_id, 0xFF))
    body.append(_check("request_id", request_id, 0xFF))
    body.append(_check("number of packages", len(items), 0xFF))
    for code, value in items:
        body.append(_check("package type", code, 0xFF))
        body += _check("package value", value, U32_MAX).to_bytes(4, "big")
    body.append(END)
    if crc:
        body += crc16_arc(bytes(body)).to_bytes(CRC_SIZE, "big")
    return bytes(body)


def driver_info(driver: int, slot: int, index: int = 0, *, enabled: bool = True) -> int:
    """The value of a ``driver_info`` package (type 0x01) that starts the group of one sensor."""
    for name, value in (("driver", driver), ("slot", slot), ("index", index)):
        _check(name, value, 0xFF)
    return driver << 24 | slot << 16 | index << 8 | int(enabled)


def temperature_raw(celsius: float) -> int:
    """The raw value of a Si70xx temperature (type 0x14) nearest to ``celsius``."""
    raw = round((celsius + 46.85) * 65536 / 175.72)
    if not 0 <= raw <= 0xFFFF:
        raise ValueError(f"{celsius} °C is outside what a Si70xx reports (-46.85 to 128.87 °C)")
    return raw


def battery_raw(volts: float) -> int:
    """The raw value of a battery voltage (type 0x08, microvolts) nearest to ``volts``."""
    return _check("battery microvolts", round(volts * 1_000_000), U32_MAX)


def reference_voltage_raw(volts: float) -> int:
    """The raw value of a reference voltage (type 0x36; 0x34 alike) nearest to ``volts`` (0 to 3 V)."""
    m = round(volts * 65536 / 3)
    if not 0 <= m <= 0xFFFF:
        raise ValueError(f"{volts} V is outside the 0 to 3 V a reference voltage reports")
    return swap16(m)


def uv_index_raw(index: float) -> int:
    """The raw value of a UV index (type 0x20); the wire carries whole numbers, so it is rounded."""
    return _check("UV index", round(index), U32_MAX)


def sampling_time_packages(seconds: int) -> list[tuple[int, int]]:
    """The sampling time high and low packages (0x02, 0x03) for ``seconds`` since the epoch."""
    _check("sampling time", seconds, 2**64 - 1)
    return [
        (int(PackageType.SAMPLING_TIME_HIGH), seconds >> 32),
        (int(PackageType.SAMPLING_TIME_LOW), seconds & U32_MAX),
    ]
