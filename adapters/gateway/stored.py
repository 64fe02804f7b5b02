"""One stored message as the gateway serves it: decoded strictly with its contract, encoded once.

Decisions, and why:

* **Strict decoding before serving.** A stream stores whatever a publisher with the right to a
  subject sent, including a message that does not fit its contract (the consumers dead-letter it;
  the stream keeps it). The gateway decodes each message with its contract's typed decoder
  (:class:`bus.codec.Codec`: bounded depth, every failure one error) and serves only those that fit,
  re-encoded by msgspec; the others are counted and skipped. What a browser or an NGSI-LD tool
  receives is always an instance of the contract.
* **Encoded once.** The CloudEvents JSON of a message (:attr:`Item.event`) is built when the message
  is read and reused by every response and every SSE client: serving a last value is a dictionary
  lookup and a write, which is what makes thousands of requests a second possible on one core.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from bus import subjects
from bus.codec import Codec
from bus.envelope import JSON, parse_headers
from bus.errors import CityBusError
from bus.reading import StoredMessage
from contracts import Contract, GeoPoint, Registry

__all__ = ["Decoders", "Item"]


@dataclass(frozen=True, slots=True)
class Item:
    """One stored message of one entity, ready to serve."""

    stream: str
    seq: int
    subject: str
    contract: type[Contract]
    entity: str
    """The subject's last token (``bragernes-strand``)."""
    id: str
    source: str
    type: str
    time: str
    """Its ``ce-time`` (RFC 3339), or the stored time when it has none."""
    provenance: str | None
    stored: float
    """When the stream stored it (epoch seconds)."""
    data: Contract
    location: tuple[float, float] | None
    """``(lat, lon)`` of the body's ``location`` when it is a point."""
    event: bytes
    """The message as CloudEvents JSON (structured mode), with the citybus extension attributes."""

    @property
    def name(self) -> str:
        """The contract's name (``environment.beach-observation``)."""
        return self.contract.__contract__.name

    @property
    def classification(self) -> str:
        """``public`` or ``internal`` (the gateway never serves personal data)."""
        return self.contract.__contract__.classification.value

    @property
    def position(self) -> tuple[str, int]:
        """``(stream, sequence)``: where a reader that saw it resumes."""
        return self.stream, self.seq


def _location(data: Contract) -> tuple[float, float] | None:
    point = getattr(data, "location", None)
    if isinstance(point, GeoPoint) and len(point.coordinates) >= 2:
        lon, lat = point.coordinates[0], point.coordinates[1]
        return float(lat), float(lon)
    return None


class Decoders:
    """Decodes stored messages into :class:`Item` values, one codec per contract, built once."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._codecs: dict[type[Contract], Codec[Any]] = {}

    def contract_of(self, headers: Mapping[str, str]) -> type[Contract] | None:
        """The contract a message's ``ce-type`` names, if the registry knows it."""
        return self.registry.by_type(headers.get("ce-type", ""))

    def item(self, stored: StoredMessage) -> Item:
        """``stored`` as an item; raises :class:`~bus.errors.CityBusError` (with the reason) when it
        is no valid message of a known contract on its contract's subjects."""
        envelope = parse_headers(stored.headers, stored.subject)
        contract = self.registry.by_type(envelope.type)
        if contract is None:
            raise CityBusError(f"unknown ce-type {envelope.type!r}")
        info = contract.__contract__
        if not subjects.matches(subjects.contract_filter(contract), stored.subject):
            raise CityBusError(f"{envelope.type} on {stored.subject}, not its contract's subjects")
        entity = stored.subject.rsplit(".", 1)[-1]
        codec = self._codecs.get(contract)
        if codec is None:
            codec = self._codecs[contract] = Codec(contract)
        data = codec.decode(stored.data, envelope.content_type or JSON)
        body = msgspec.json.encode(data)
        time = stored.headers.get("ce-time") or _rfc3339(stored.time)
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": envelope.id,
            "source": envelope.source,
            "type": envelope.type,
            "time": time,
            "subject": stored.subject,
            "datacontenttype": JSON,
            "dataschema": stored.headers.get("ce-dataschema"),
            "provenance": envelope.provenance or None,
            "contract": info.name,
            "contractversion": info.version,
            "classification": info.classification.value,
            "entity": entity,
            "sequence": f"{stored.stream}:{stored.seq}",
            "data": msgspec.Raw(body),
        }
        return Item(
            stream=stored.stream,
            seq=stored.seq,
            subject=stored.subject,
            contract=contract,
            entity=entity,
            id=envelope.id,
            source=envelope.source,
            type=envelope.type,
            time=time,
            provenance=envelope.provenance or None,
            stored=stored.time,
            data=data,
            location=_location(data),
            event=msgspec.json.encode({k: v for k, v in event.items() if v is not None}),
        )


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
