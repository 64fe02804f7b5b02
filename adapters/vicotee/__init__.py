"""Vicotee's sensors on the bus: the VicPack payload their beach units send, and the ``citybus
vicpack`` command to look inside a frame.

:mod:`adapters.vicotee.vicpack` decodes a frame into readings grouped by sensor (no I/O) and builds
frames for tests and the sandbox; every invalid frame raises :class:`VicPackError` with the
dead-letter reason.
"""

from adapters.vicotee.vicpack import (
    DRIVERS,
    Frame,
    Group,
    PackageType,
    Reading,
    SoftwareVersion,
    SwitchInterrupt,
    TofDistance,
    Value,
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
