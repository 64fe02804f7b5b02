"""The Vicotee beach adapter: LoRaWAN uplinks carrying VicPack frames in, beach observations out.

A network server (The Things Stack v3, ChirpStack v4, or The Things Network v2 in old recordings)
publishes each uplink as JSON over MQTT — straight into the bus through nats-server's own MQTT
listener (``server.mqtt = true``; topic ``a/b/c`` arrives as subject ``a.b.c``), or through a
bridge from the city's broker. For each uplink the adapter reads the JSON
(:mod:`~adapters.vicotee.uplinks`), finds the device in its configuration, decodes the VicPack frame
(:mod:`~adapters.vicotee.vicpack`) and publishes one :class:`~contracts.BeachObservation` with
provenance ``sensor`` (``synthetic`` with ``provenance = "synthetic"``, for generated uplinks).
Anything it cannot translate goes to the dead letters with the reason: ``not-json``,
``unknown-shape``, ``bad-payload``, ``unknown-device``, ``vicpack-<reason>`` (e.g. ``vicpack-crc``),
``no-water-reading`` or ``out-of-range``.

Configuration::

    [adapters.beach]
    adapter = "vicotee-beach"
    # subjects = ["v3.*.devices.*.up", "application.*.device.*.event.up", "*.devices.*.up"]

    [adapters.beach.devices.vicotee-bragernes-1]     # the device id on the network server...
    site = "bragernes-strand"
    water_slot = 1                                   # the driver_info slot of the water probe
    air_slot = 0                                     # the slot of the thermometer on land
    depth = 0.5                                      # metres below the surface (optional)

    [adapters.beach.devices.A84041000181C4D1]        # ...or its DevEUI, in any case
    site = "drammenselva-bragernes"
    water_slot = 1

Decisions, and why:

* **Default subjects** are where nats-server's MQTT listener puts each network server's uplink
  topic: The Things Stack ``v3/{app}@{tenant}/devices/{device}/up`` → ``v3.*.devices.*.up``;
  ChirpStack v4 ``application/{app}/device/{dev_eui}/event/up`` →
  ``application.*.device.*.event.up``; The Things Network v2 ``{app}/devices/{device}/up`` →
  ``*.devices.*.up``. The three have 5, 6 and 4 tokens, so no uplink matches two of them, and none
  matches a ``city.…`` subject.
* **Battery: not published.** The contract's ``battery`` is a charge in percent, but a unit reports
  only its voltage, and the cell is most likely lithium thionyl chloride (3.6 V), whose voltage stays
  flat for most of its life and falls only at the very end. A linear map from volts to percent would
  read near 100 % for years and then drop to 0 within weeks: a number that looks precise and says
  nothing. ``battery`` stays absent ("not measured") until a contract carries the voltage itself.
* **observed_at** is the frame's sampling time (the water probe's group, else any group's) when it
  is plausible — not more than 10 minutes after the network server received the uplink and not more
  than 30 days before — else the time the network server received it: a unit whose clock was never
  set reports 1970, and that must not be passed on as when the water was measured.
* **location** is the site's point (:mod:`~adapters.vicotee.sites`); an approximate one is marked
  so (``approximate``, its ``uncertainty`` in metres and its ``placement``), so that it cannot be
  taken for a surveyed one.
* **Temperatures** are rounded to 0.01 °C, the Si70xx's resolution being 0.0027 °C; a value the
  contract does not allow (a probe out of the water reading 60 °C) is dead-lettered as
  ``out-of-range`` rather than published.
* **The CloudEvents id** is derived from the uplink (network, device, receive time, frame), so an
  uplink delivered twice (MQTT QoS 1 is at least once) is dropped by JetStream's duplicate window.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta

from adapters.base import Adapter
from adapters.context import Context
from adapters.vicotee.sites import SITES
from adapters.vicotee.uplinks import Uplink, UplinkError, parse_uplink
from adapters.vicotee.vicpack import Frame, Group, VicPackError, decode
from bus import Provenance, RawMessage
from bus.errors import CityBusError
from bus.subjects import validate_pattern
from contracts import BeachObservation, validate

__all__ = [
    "BeachConfig",
    "DEFAULT_SUBJECTS",
    "DeviceConfig",
    "ObservationError",
    "VicoteeBeach",
    "observation_from",
]

DEFAULT_SUBJECTS: Final = ("v3.*.devices.*.up", "application.*.device.*.event.up", "*.devices.*.up")
"""Where nats-server's MQTT listener puts uplinks of The Things Stack v3, ChirpStack v4 and TTN v2."""

_Slot = Annotated[int, Meta(ge=0, le=255)]
_CLOCK_AHEAD: Final = timedelta(minutes=10)
_CLOCK_BEHIND: Final = timedelta(days=30)
_EVENT_IDS: Final = uuid.UUID("6f0e2b8c-52a4-4d3e-9a57-1c3b8d2f7e10")  # uuid5 namespace of this adapter


class DeviceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One beach unit: the site it measures and which of its sensor slots is which."""

    site: str
    """The site's slug; one of :data:`~adapters.vicotee.sites.SITES`."""
    water_slot: _Slot
    """The ``driver_info`` slot of the probe in the water (its 0x14 temperature is the water's)."""
    air_slot: _Slot | None = None
    """The slot of the thermometer on land; absent: the unit's air temperature is not published."""
    depth: Annotated[float, Meta(ge=0, le=100)] | None = None
    """How deep the probe hangs below the surface, in metres, if known."""

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise ValueError(f"unknown site {self.site!r}; known sites: {', '.join(SITES)}")
        if self.air_slot == self.water_slot:
            raise ValueError(f"water_slot and air_slot are both {self.water_slot}: one sensor cannot be both")


class BeachConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of the Vicotee beach adapter (see the module doc for an example)."""

    subjects: Annotated[list[str], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_SUBJECTS)
    )
    """The subjects uplinks arrive on (NATS wildcards allowed)."""
    devices: dict[str, DeviceConfig] = msgspec.field(default_factory=dict)
    """The units, keyed by device id or DevEUI (hex, any case, ``-`` or ``:`` between bytes allowed)."""
    provenance: Literal["sensor", "synthetic"] = "sensor"
    """The provenance of what is published: ``sensor`` for real units; ``synthetic`` when the
    uplinks are generated (the sandbox's recorded day makes its beach readings this way)."""

    def __post_init__(self) -> None:
        for subject in self.subjects:
            validate_pattern(subject)  # its ValueError says what is wrong
        seen: dict[str, str] = {}
        for key in self.devices:
            eui = _eui(key)
            if eui is not None and eui in seen:
                raise ValueError(f"devices {seen[eui]!r} and {key!r} are the same DevEUI")
            if eui is not None:
                seen[eui] = key

    def device(self, uplink: Uplink) -> DeviceConfig | None:
        """The configuration of the device that sent ``uplink``: by device id, else by DevEUI."""
        found = self.devices.get(uplink.device_id)
        if found is not None or uplink.dev_eui is None:
            return found
        eui = _eui(uplink.dev_eui)
        return next((d for key, d in self.devices.items() if eui is not None and _eui(key) == eui), None)


def _eui(text: str) -> str | None:
    """A DevEUI in one spelling (16 lower-case hex digits), or ``None`` if ``text`` is not one."""
    digits = text.replace("-", "").replace(":", "").lower()
    return digits if len(digits) == 16 and all(c in "0123456789abcdef" for c in digits) else None


# -- the mapping ----------------------------------------------------------------------------------

Reason: TypeAlias = Literal["no-water-reading", "out-of-range"]


class ObservationError(CityBusError, ValueError):
    """A valid frame that still makes no beach observation; ``reason`` is the dead-letter reason.

    ``no-water-reading``: no temperature in the configured water slot. ``out-of-range``: a value
    the contract does not allow (the message names the field).
    """

    def __init__(self, message: str, *, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def _temperature(frame: Frame, slot: int) -> tuple[float, Group] | None:
    for group in frame.groups:
        if group.slot == slot and group.enabled is not False:
            reading = group.reading("temperature")
            if reading is not None and isinstance(reading.value, float):
                return round(reading.value, 2), group
    return None


def _sampled_at(uplink: Uplink, frame: Frame, water: Group) -> datetime:
    """The frame's sampling time if it is plausible, else when the network server received it."""
    seconds = water.sampled_at
    if seconds is None:
        seconds = next((g.sampled_at for g in frame.groups if g.sampled_at is not None), None)
    if seconds is None:
        return uplink.received_at
    try:
        sampled = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return uplink.received_at
    received = uplink.received_at
    if received - _CLOCK_BEHIND <= sampled <= received + _CLOCK_AHEAD:
        return sampled
    return received


def _slots(frame: Frame) -> str:
    slots = [
        f"{g.slot} ({g.driver_name or f'driver {g.driver}'})" for g in frame.groups if g.slot is not None
    ]
    return ", ".join(slots) or "none"


def observation_from(uplink: Uplink, frame: Frame, device: DeviceConfig) -> BeachObservation:
    """The beach observation one decoded uplink makes; raises :class:`ObservationError` if none.

    Pure: the same uplink, frame and device always make the same observation.
    """
    water = _temperature(frame, device.water_slot)
    if water is None:
        raise ObservationError(
            f"device {uplink.device_id}: no temperature (0x14) in water_slot {device.water_slot}; "
            f"the frame's slots: {_slots(frame)}",
            reason="no-water-reading",
        )
    water_temperature, water_group = water
    air = _temperature(frame, device.air_slot) if device.air_slot is not None else None
    uv = next((r.value for g in frame.groups for r in g.readings if r.name == "uv_index"), None)
    site = SITES[device.site]
    observation = BeachObservation(
        site=site.slug,
        observed_at=_sampled_at(uplink, frame, water_group),
        water_temperature=water_temperature,
        air_temperature=air[0] if air is not None else None,
        uv_index=float(uv) if isinstance(uv, int | float) else None,
        device=uplink.device_id,
        depth=device.depth,
        location=site.location,
    )
    try:  # the constructor checked no constraint
        return validate(observation)
    except msgspec.ValidationError as exc:
        raise ObservationError(
            f"device {uplink.device_id}: a reading the contract does not allow: {exc}", reason="out-of-range"
        ) from None


# -- the adapter ----------------------------------------------------------------------------------


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class VicoteeBeach(Adapter[BeachConfig]):
    """Vicotee beach units: LoRaWAN uplinks with VicPack frames in, beach observations out."""

    name = "vicotee-beach"
    Config = BeachConfig
    produces = (BeachObservation,)

    def raw_subjects(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """It reads the configured uplink subjects, and publishes no raw subject."""
        return (tuple(self.config.subjects), ())

    async def run(self, ctx: Context) -> None:
        """Subscribe to the uplink subjects and translate every uplink until stopped."""
        if not self.config.devices:
            ctx.log.warning("no devices configured: every uplink will be dead-lettered as unknown-device")
        for subject in self.config.subjects:
            await ctx.subscribe_raw(subject, functools.partial(self._on_uplink, ctx))
        ctx.ready()
        await ctx.wait_stopped()

    async def _on_uplink(self, ctx: Context, raw: RawMessage) -> None:
        try:
            uplink, observation = self._translate(raw.data, ctx.instance)
        except _Rejected as rejected:
            await ctx.dead_letter(raw, reason=rejected.reason, detail=rejected.detail)
            return
        event_id = uuid.uuid5(
            _EVENT_IDS,
            f"{uplink.network}/{uplink.device_id}/{uplink.received_at.isoformat()}/{uplink.frame.hex()}",
        )
        await ctx.publish(
            observation,
            provenance=Provenance(self.config.provenance),
            time=observation.observed_at,
            event_id=str(event_id),
        )
        ctx.log.debug("beach observation", site=observation.site, device=uplink.device_id, rssi=uplink.rssi)

    def _translate(self, data: bytes, instance: str) -> tuple[Uplink, BeachObservation]:
        try:
            uplink = parse_uplink(data)
        except UplinkError as exc:
            raise _Rejected(exc.reason, str(exc)) from None
        device = self.config.device(uplink)
        if device is None:
            eui = f" (DevEUI {uplink.dev_eui})" if uplink.dev_eui else ""
            raise _Rejected(
                "unknown-device",
                f"device {uplink.device_id!r}{eui} is not configured: add it under "
                f"[adapters.{instance}.devices], e.g. "
                f'"{uplink.device_id}" = {{ site = "bragernes-strand", water_slot = 1 }}',
            )
        try:
            frame = decode(uplink.frame)
        except VicPackError as exc:
            raise _Rejected(f"vicpack-{exc.reason}", f"device {uplink.device_id}: {exc}") from None
        try:
            return uplink, observation_from(uplink, frame, device)
        except ObservationError as exc:
            raise _Rejected(exc.reason, str(exc)) from None
