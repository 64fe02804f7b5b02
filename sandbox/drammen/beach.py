"""Generated uplinks of Drammen's Vicotee beach units: one unit per pilot site, hourly.

The pilot's units sent a VicPack frame an hour over LoRaWAN; none of their readings is in the
project, so the recorded day's come from here and go through the ``vicotee-beach`` adapter the way
real ones would: a frame built with :func:`~adapters.vicotee.build_frame`, inside the JSON uplink
The Things Stack v3 publishes on ``v3/drammen-beach@drammen/devices/<device>/up`` (the subject
``v3.drammen-beach@drammen.devices.<device>.up`` through nats-server's MQTT listener).

The units: one per site of :data:`~adapters.vicotee.SITES` — the six bathing sites, each with the
water probe (slot 1), the air thermometer on land (slot 0) and the UV sensor, and the second sensor
out in the river at Bragernes, which has the water probe only. Each unit samples at its own minute
past the hour (seeded) and the network server receives the uplink 2–6 s later.

The values:

* **Water** is anchored on the manual readings of 2018-08-29: Bragernes strand 15.7 °C, the river
  16.4 °C, the fjord at Sota 16.6 °C. No reading of the forest lakes is known; small lakes in the
  forest warm more than the river fed from the mountains, so theirs are set a little warmer,
  17.0–17.6 °C. Around that mean each follows a small daily curve, coolest in the early morning and
  warmest at 17:00 (±0.1 °C in the river's current, ±0.3 °C at the shallow city beach and the
  fjord, ±0.5 °C in the lakes), with seeded noise of a few hundredths.
* **Air** is the day's weather (:mod:`~sandbox.drammen.weather`), 1.5 °C cooler at the Konnerud
  lakes 200–300 m up, with noise of 0.2 °C; **UV** is the day's UV index (the sun over Drammen, less
  what cloud takes) with a little noise, 0 at night; the frame carries it in whole numbers.
* Battery about 3.58 V (the adapter does not publish it; a real frame carries it).
"""

from __future__ import annotations

import base64
import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from adapters.vicotee import (
    battery_raw,
    build_frame,
    driver_info,
    reference_voltage_raw,
    sampling_time_packages,
    temperature_raw,
    uv_index_raw,
)
from sandbox.drammen.day import UplinkMessage, at
from sandbox.drammen.weather import DayWeather

__all__ = ["APPLICATION", "UNITS", "Unit", "device_config", "uplinks"]

APPLICATION: Final = "drammen-beach@drammen"
"""The application on The Things Stack (``{application}@{tenant}``)."""
_SI7050: Final = 1  # driver id of the Si7050 temperature sensor
_WATER_SLOT: Final = 1
_AIR_SLOT: Final = 0


@dataclass(frozen=True, slots=True)
class Unit:
    """One beach unit: its site, the water it measures and whether it has the sensors on land."""

    site: str
    water_mean: float
    """The day's mean water temperature, °C."""
    water_swing: float
    """Half the daily range of the water temperature, °C."""
    on_land: bool = True
    """Has the air thermometer and the UV sensor."""
    air_offset: float = 0.0
    """Air temperature against the town's, °C (the lakes lie higher)."""

    @property
    def device(self) -> str:
        """The unit's device id on the network server."""
        return f"vicotee-{self.site}-1"


UNITS: Final = (
    Unit("blektjern", 17.3, 0.5, air_offset=-1.5),
    Unit("bragernes-strand", 15.7, 0.3),
    Unit("drammenselva-bragernes", 16.4, 0.1, on_land=False),
    Unit("landfalltjern", 17.0, 0.5, air_offset=-1.2),
    Unit("sota-fjordpark", 16.6, 0.3),
    Unit("stordammen", 17.2, 0.5, air_offset=-1.5),
    Unit("vannverksdammen", 17.6, 0.5, air_offset=-1.5),
)
"""One unit per pilot site; sorted by site."""


def device_config() -> dict[str, dict[str, Any]]:
    """The ``vicotee-beach`` adapter's ``devices`` table for :data:`UNITS`."""
    table: dict[str, dict[str, Any]] = {}
    for unit in UNITS:
        entry: dict[str, Any] = {"site": unit.site, "water_slot": _WATER_SLOT}
        if unit.on_land:
            entry["air_slot"] = _AIR_SLOT
        table[unit.device] = entry
    return table


def _water(unit: Unit, moment: datetime) -> float:
    hour = moment.hour + moment.minute / 60
    return unit.water_mean + unit.water_swing * math.cos(2 * math.pi * (hour - 17) / 24)


def _frame(unit: Unit, sampled: datetime, weather: DayWeather, rng: random.Random, counter: int) -> bytes:
    packages: list[tuple[int, int]] = []
    if unit.on_land:
        air = weather.at(sampled).temperature + unit.air_offset + rng.gauss(0, 0.2)
        packages += [(0x01, driver_info(_SI7050, _AIR_SLOT)), (0x14, temperature_raw(air))]
    water = _water(unit, sampled) + rng.gauss(0, 0.03)
    packages += [(0x01, driver_info(_SI7050, _WATER_SLOT)), (0x14, temperature_raw(water))]
    packages += sampling_time_packages(int(sampled.timestamp()))
    packages += [(0x36, reference_voltage_raw(1.2)), (0x08, battery_raw(3.58 + rng.gauss(0, 0.005)))]
    if unit.on_land:
        uv = weather.uv_index(sampled)
        if uv > 0:
            uv = max(0.0, uv + rng.gauss(0, 0.15))
        packages.append((0x20, uv_index_raw(uv)))
    return build_frame(packages, packet_id=counter % 256)


def _uplink(unit: Unit, received: datetime, frame: bytes, counter: int, rng: random.Random) -> bytes:
    stamp = received.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"  # nanoseconds, as TTS writes
    message = {
        "end_device_ids": {
            "device_id": unit.device,
            "application_ids": {"application_id": APPLICATION.split("@")[0]},
        },
        "received_at": stamp,
        "uplink_message": {
            "f_port": 2,
            "f_cnt": counter,
            "frm_payload": base64.b64encode(frame).decode(),
            "rx_metadata": [
                {
                    "gateway_ids": {"gateway_id": "drammen-sandbox"},
                    "rssi": round(rng.uniform(-115, -85)),
                    "snr": round(rng.uniform(-5, 10), 1),
                }
            ],
            "received_at": stamp,
        },
    }
    return json.dumps(message, ensure_ascii=False).encode()


def uplinks(weather: DayWeather, rng: random.Random) -> list[UplinkMessage]:
    """The day's uplinks: every unit, every hour, in time order."""
    messages = []
    for unit in UNITS:
        minute = rng.randrange(60)
        for hour in range(24):
            sampled = at(hour, minute)
            received = sampled + timedelta(seconds=rng.uniform(2, 6))
            received = received.replace(microsecond=received.microsecond // 1000 * 1000)
            counter = 1000 + hour
            frame = _frame(unit, sampled, weather, rng, counter)
            # the MQTT topic v3/{application}/devices/{device}/up as nats-server's MQTT listener maps it
            subject = f"v3.{APPLICATION}.devices.{unit.device}.up"
            messages.append(UplinkMessage(received, subject, _uplink(unit, received, frame, counter, rng)))
    return sorted(messages, key=lambda m: (m.at, m.subject))
