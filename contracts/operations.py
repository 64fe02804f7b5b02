"""Contracts of the operations domain: how the city's own devices are doing, for municipal IT."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from contracts.base import Classification, Contract, contract, measure
from contracts.fields import Slug, Timestamp

__all__ = ["DeviceState", "DeviceStatus"]

DeviceState = Literal["ok", "degraded", "offline"]


@contract(
    "operations.device-status",
    version=1,
    classification=Classification.INTERNAL,
    key="device",
    example={
        "device": "vicotee-bragernes-strand-1",
        "site": "bragernes-strand",
        "state": "ok",
        "last_seen": "2018-08-29T10:00:00+02:00",
        "battery": 87.0,
        "rssi": -97.0,
        "snr": 6.5,
        "firmware": "2.4.1",
    },
)
class DeviceStatus(Contract, frozen=True, kw_only=True):
    """The health of one of the city's sensors, so municipal IT can fix it before data goes missing.

    Published by the adapter that reads the device whenever it hears from it, and by a watchdog
    when it has not heard from it for too long (``offline``). Internal: radio figures and
    firmware versions are of no use to the public and of some use to an attacker.
    """

    device: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_:-]*$",
            max_length=128,
            description="The device's id, e.g. vicotee-bragernes-strand-1",
        ),
    ]
    site: Annotated[Slug, Meta(description="Where the device is installed, e.g. bragernes-strand")] | None = (
        None
    )
    state: Annotated[DeviceState, Meta(description="ok, degraded (e.g. low battery, weak radio) or offline")]
    last_seen: Annotated[Timestamp, Meta(description="When the device was last heard from")]
    battery: Annotated[float, measure("Charge left in the battery", unit="%", ge=0, le=100)] | None = None
    rssi: Annotated[float, measure("Received signal strength", unit="dB[mW]", ge=-200, le=50)] | None = None
    snr: (
        Annotated[float, measure("Signal-to-noise ratio of the last uplink", unit="dB", ge=-50, le=50)] | None
    ) = None
    firmware: (
        Annotated[str, Meta(max_length=64, description="Firmware version the device reports")] | None
    ) = None
