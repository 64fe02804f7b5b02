"""Vicotee's sensors on the bus: the VicPack payload their beach units send, the ``vicotee-beach``
adapter that turns their LoRaWAN uplinks into beach observations, and the ``citybus vicpack``
command to look inside a frame.

:mod:`adapters.vicotee.vicpack` decodes a frame into readings grouped by sensor (no I/O) and builds
frames for tests and the sandbox; every invalid frame raises :class:`VicPackError` with the
dead-letter reason. :mod:`~adapters.vicotee.uplinks` reads the uplink JSON of The Things Stack v3,
ChirpStack v4 and The Things Network v2; :mod:`~adapters.vicotee.sites` lists the pilot's bathing
sites; :mod:`~adapters.vicotee.adapter` is :class:`VicoteeBeach`.
"""

from adapters.vicotee.adapter import (
    DEFAULT_SUBJECTS,
    BeachConfig,
    DeviceConfig,
    ObservationError,
    VicoteeBeach,
    observation_from,
)
from adapters.vicotee.sites import SITES, Site
from adapters.vicotee.uplinks import Network, Uplink, UplinkError, parse_uplink
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
    "BeachConfig",
    "DEFAULT_SUBJECTS",
    "DRIVERS",
    "DeviceConfig",
    "Frame",
    "Group",
    "Network",
    "ObservationError",
    "PackageType",
    "Reading",
    "SITES",
    "Site",
    "SoftwareVersion",
    "SwitchInterrupt",
    "TofDistance",
    "Uplink",
    "UplinkError",
    "Value",
    "VicPackError",
    "VicoteeBeach",
    "VocAirQuality",
    "battery_raw",
    "build_frame",
    "crc16_arc",
    "decode",
    "driver_info",
    "observation_from",
    "parse_payload",
    "parse_uplink",
    "reference_voltage_raw",
    "sampling_time_packages",
    "swap16",
    "temperature_raw",
    "uv_index_raw",
]
