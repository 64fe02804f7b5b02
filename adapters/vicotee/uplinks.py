"""LoRaWAN uplinks as network servers publish them over MQTT, read into one :class:`Uplink`.

A Vicotee unit's VicPack frame reaches the bus inside the JSON uplink message of its network
server, base64-encoded. Three shapes are read, told apart by their top-level keys:

``tts-v3``, The Things Stack v3 (has ``end_device_ids``)
    ``end_device_ids.device_id`` and ``.dev_eui``, ``received_at``, ``uplink_message.frm_payload``,
    ``.f_port`` and ``.rx_metadata[]`` (``rssi``, ``snr``).
``chirpstack-v4``, ChirpStack v4 (has ``deviceInfo``)
    ``deviceInfo.deviceName`` and ``.devEui``, ``time``, ``data``, ``fPort`` and ``rxInfo[]``
    (``rssi``, ``snr``).
``ttn-v2``, The Things Network v2 (has ``dev_id`` or ``hardware_serial``; retired, still in old
recordings)
    ``dev_id``, ``hardware_serial`` (the DevEUI), ``metadata.time``, ``payload_raw``, ``port`` and
    ``metadata.gateways[]`` (``rssi``, ``snr``).

Every other key is ignored. :func:`parse_uplink` is pure and raises :class:`UplinkError` and
nothing else, whose ``reason`` is the dead-letter reason: for any bytes a device or network server
sends, a body nested thousands of levels deep included (``not-json``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta

from bus.codec import decode_bytes
from bus.errors import CityBusError, UndecodableError

__all__ = ["Network", "Uplink", "UplinkError", "parse_uplink"]

Network: TypeAlias = Literal["tts-v3", "ttn-v2", "chirpstack-v4"]
Reason: TypeAlias = Literal["not-json", "unknown-shape", "bad-payload"]
_Time = Annotated[datetime, Meta(tz=True)]


class UplinkError(CityBusError, ValueError):
    """A message that is not a LoRaWAN uplink this adapter reads; it goes to the dead letters.

    ``reason`` is ``not-json`` (the bytes are not JSON), ``unknown-shape`` (JSON, but not an uplink
    of The Things Stack v3, The Things Network v2 or ChirpStack v4) or ``bad-payload`` (the shape
    is known but a field is missing or wrong; the message names it).
    """

    def __init__(self, message: str, *, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason


class Uplink(msgspec.Struct, frozen=True, kw_only=True):
    """One uplink of one device, whichever network server delivered it."""

    network: Annotated[Network, Meta(description="The network server's message shape")]
    device_id: Annotated[str, Meta(description="The device's id on its network server")]
    dev_eui: Annotated[str | None, Meta(description="The device's LoRaWAN DevEUI, as sent (hex)")]
    received_at: Annotated[_Time, Meta(description="When the network server received the uplink")]
    frame: Annotated[bytes, Meta(description="The application payload: a VicPack frame")]
    f_port: Annotated[int | None, Meta(description="The LoRaWAN FPort, if the message says")] = None
    rssi: Annotated[float | None, Meta(description="RSSI at the gateway that heard it best, dBm")] = None
    snr: Annotated[float | None, Meta(description="SNR at that same gateway, dB")] = None


# -- the three shapes -----------------------------------------------------------------------------


class _Gateway(msgspec.Struct, frozen=True):
    """One gateway's reception; all three networks call the fields ``rssi`` and ``snr``."""

    rssi: float | None = None
    snr: float | None = None


class _TtsIds(msgspec.Struct, frozen=True):
    device_id: str
    dev_eui: str | None = None  # absent for a device activated by personalisation without an EUI


class _TtsMessage(msgspec.Struct, frozen=True):
    frm_payload: bytes
    f_port: int | None = None  # protobuf JSON leaves out a zero FPort
    rx_metadata: list[_Gateway] = []


class _TtsUplink(msgspec.Struct, frozen=True):
    end_device_ids: _TtsIds
    received_at: _Time
    uplink_message: _TtsMessage


class _TtnMetadata(msgspec.Struct, frozen=True):
    time: _Time
    gateways: list[_Gateway] = []


class _TtnUplink(msgspec.Struct, frozen=True):
    dev_id: str
    payload_raw: bytes
    metadata: _TtnMetadata
    hardware_serial: str | None = None
    port: int | None = None


class _ChirpStackDevice(msgspec.Struct, frozen=True, rename="camel"):
    dev_eui: str
    device_name: str = ""


class _ChirpStackUplink(msgspec.Struct, frozen=True, rename="camel"):
    device_info: _ChirpStackDevice
    time: _Time
    data: bytes
    f_port: int | None = None
    rx_info: list[_Gateway] = []


_LABELS: Final[dict[Network, str]] = {
    "tts-v3": "The Things Stack v3",
    "ttn-v2": "The Things Network v2",
    "chirpstack-v4": "ChirpStack v4",
}
_KEYS: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_TTS: Final = msgspec.json.Decoder(_TtsUplink)
_TTN: Final = msgspec.json.Decoder(_TtnUplink)
_CHIRPSTACK: Final = msgspec.json.Decoder(_ChirpStackUplink)


def _network(keys: dict[str, msgspec.Raw]) -> Network | None:
    if "end_device_ids" in keys:
        return "tts-v3"
    if "deviceInfo" in keys:
        return "chirpstack-v4"
    if "dev_id" in keys or "hardware_serial" in keys:
        return "ttn-v2"
    return None


def _best(gateways: list[_Gateway]) -> tuple[float | None, float | None]:
    """RSSI and SNR of the gateway that heard the uplink best (highest RSSI)."""
    heard = [(g.rssi, g.snr) for g in gateways if g.rssi is not None]
    return max(heard, key=lambda pair: pair[0] or 0.0) if heard else (None, None)


def _tts(data: bytes) -> Uplink:
    message = decode_bytes(_TTS, data)
    up = message.uplink_message
    rssi, snr = _best(up.rx_metadata)
    return Uplink(
        network="tts-v3",
        device_id=message.end_device_ids.device_id,
        dev_eui=message.end_device_ids.dev_eui,
        received_at=message.received_at,
        frame=up.frm_payload,
        f_port=up.f_port,
        rssi=rssi,
        snr=snr,
    )


def _chirpstack(data: bytes) -> Uplink:
    message = decode_bytes(_CHIRPSTACK, data)
    device = message.device_info
    rssi, snr = _best(message.rx_info)
    return Uplink(
        network="chirpstack-v4",
        device_id=device.device_name or device.dev_eui,
        dev_eui=device.dev_eui,
        received_at=message.time,
        frame=message.data,
        f_port=message.f_port,
        rssi=rssi,
        snr=snr,
    )


def _ttn(data: bytes) -> Uplink:
    message = decode_bytes(_TTN, data)
    rssi, snr = _best(message.metadata.gateways)
    return Uplink(
        network="ttn-v2",
        device_id=message.dev_id,
        dev_eui=message.hardware_serial,
        received_at=message.metadata.time,
        frame=message.payload_raw,
        f_port=message.port,
        rssi=rssi,
        snr=snr,
    )


_PARSERS: Final[dict[Network, Callable[[bytes], Uplink]]] = {
    "tts-v3": _tts,
    "ttn-v2": _ttn,
    "chirpstack-v4": _chirpstack,
}


def parse_uplink(data: bytes) -> Uplink:
    """Read one uplink message of any of the three shapes; raise :class:`UplinkError` if it is none."""
    try:
        keys = decode_bytes(_KEYS, data)
    except UndecodableError as exc:
        if exc.kind == "shape":
            raise UplinkError(
                "the message is JSON but not an object, so not a LoRaWAN uplink", reason="unknown-shape"
            ) from None
        detail = exc.__cause__ if exc.kind == "syntax" else exc  # msgspec's words, or "nested too deeply"
        raise UplinkError(f"the message is not JSON: {detail}", reason="not-json") from None
    network = _network(keys)
    if network is None:
        shown = ", ".join(sorted(keys)[:10]) or "none"
        raise UplinkError(
            "not an uplink of The Things Stack v3 (end_device_ids), ChirpStack v4 (deviceInfo) or "
            f"The Things Network v2 (dev_id, hardware_serial); its top-level keys: {shown}",
            reason="unknown-shape",
        )
    try:
        return _PARSERS[network](data)
    except UndecodableError as exc:  # a shape that does not fit, or a string that is not UTF-8
        raise UplinkError(f"{_LABELS[network]} uplink: {exc}", reason="bad-payload") from None
