"""What flows, entity by entity: each contract's entities with location, rate and last value, from JetStream.

``citybus entities`` and the ops endpoint ``GET /entities`` answer "what is on the bus, where, and
how often?" without tailing a whole loop: JetStream already holds every stored message of every
subject. For each stream (one per classification and domain) :func:`list_entities` asks
``$JS.API.STREAM.INFO`` with a ``subjects_filter`` — the stored message count of every subject, and
the stream's first and last stored time — and then, per subject, the last message
(``$JS.API.STREAM.MSG.GET`` with ``last_by_subj``, nats-py's ``get_last_msg``). The entity is the
subject's last token, the contract the message's ``ce-type``, the location the body's ``location``
(a GeoJSON point, approximate ones marked as such).

Decisions, and why:

* **Rate** is a subject's stored messages per hour over the stream's stored window (first to last
  stored message, wall-clock time of storing): what really flowed through the bus, at whatever
  speed a replay ran. A stream holding one message, or several stored in the same instant, has no
  window and no rate (``None``), rather than a division by zero dressed as a number.
* **Classification decides what is listed**, on top of what the broker allows the connection.
  ``values`` names the classes whose last value and location are shown; the others are listed
  by entity, count and rate only. The command, logged in as the operator, lists public and
  internal entities (the operator may read both live); the ops endpoint, which anyone who reaches
  the ops port can read without logging in, shows values of public entities only. Personal
  streams are never asked for: a personal subject can name a person, which is why the operator
  may not read their state at all.
* **A stream the connection may not read, or that does not exist** (an account without it) is
  reported in :attr:`Listing.unreadable` with the reason, not as an error: the rest is still an
  answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec
import nats.errors
import nats.js.errors

from bus import subjects
from bus.bus import Bus
from bus.envelope import H_PROVENANCE, H_TIME, H_TYPE
from contracts import Classification, Contract, Registry

__all__ = ["Entity", "EntityReader", "Listing", "list_entities", "render"]

_TIMEOUT: Final = 2.0
_IN_FLIGHT: Final = 32
"""Last-message requests in flight at once: a stream of thousands of subjects is read in waves,
not with thousands of requests at the server in the same instant."""
_ANY: Final = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity of one contract: its subject's stored messages and its last value."""

    contract: str
    """The contract's name (``environment.beach-observation``)."""
    classification: str
    entity: str
    """The subject's last token (``bragernes-strand``)."""
    subject: str
    messages: int
    """Messages of the subject the stream holds."""
    rate: float | None
    """Stored messages per hour over the stream's stored window; ``None`` without a window."""
    last_time: str | None
    """The last message's ``ce-time``."""
    provenance: str | None
    location: dict[str, Any] | None
    """The last message's ``location`` (a GeoJSON point), when shown and present."""
    value: Any = None
    """The last message's body, when shown."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "entity": self.entity,
            "subject": self.subject,
            "messages": self.messages,
            "rate_per_hour": None if self.rate is None else round(self.rate, 3),
            "last_time": self.last_time,
            "provenance": self.provenance,
            "location": self.location,
            "value": self.value,
        }


@dataclass
class Listing:
    """What :func:`list_entities` found: entities per contract, and the streams it could not read."""

    contracts: dict[str, list[Entity]] = field(default_factory=dict)
    classifications: dict[str, str] = field(default_factory=dict)
    """Each listed contract's classification."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Stream name → why it could not be read."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``citybus entities --json``, ``GET /entities``)."""
        return {
            "contracts": {
                name: {
                    "classification": self.classifications[name],
                    "entities": [e.as_dict() for e in rows],
                }
                for name, rows in sorted(self.contracts.items())
            },
            "unreadable": dict(sorted(self.unreadable.items())),
        }


def _contract_of(registry: Registry, kind: str, subject: str) -> type[Contract] | None:
    found = registry.by_type(kind) if kind else None
    if found is not None:
        return found
    return next((c for c in registry if subjects.matches(subjects.contract_filter(c), subject)), None)


def _hours(state: dict[str, Any]) -> float | None:
    try:
        first = datetime.fromisoformat(state["first_ts"])
        last = datetime.fromisoformat(state["last_ts"])
    except (KeyError, TypeError, ValueError):
        return None
    hours = (last - first).total_seconds() / 3600
    return hours if hours > 0 else None


async def _stream_state(bus: Bus, stream: str, subject_filter: str) -> dict[str, Any]:
    """The stream's state with per-subject counts (raises LookupError with the reason)."""
    request = json.dumps({"subjects_filter": subject_filter}).encode()
    try:
        reply = await bus.nc.request(subjects.js_api("STREAM", "INFO", stream), request, timeout=_TIMEOUT)
    except nats.errors.NoRespondersError:
        raise LookupError("JetStream does not answer on this connection") from None
    except (nats.errors.TimeoutError, TimeoutError):
        raise LookupError("no answer (this login may not read it)") from None
    answer = json.loads(reply.data)
    if "error" in answer:
        raise LookupError(str(answer["error"].get("description", answer["error"])))
    state: dict[str, Any] = answer.get("state", {})
    return state


async def _entity(
    bus: Bus,
    registry: Registry,
    stream: str,
    subject: str,
    count: int,
    hours: float | None,
    show: bool,
    gate: asyncio.Semaphore,
) -> tuple[type[Contract] | None, Entity | None]:
    try:
        async with gate:
            last = await bus.js.get_last_msg(stream, subject)
    except (nats.js.errors.NotFoundError, nats.errors.TimeoutError, TimeoutError):
        last = None
    headers = (last.headers or {}) if last is not None else {}
    contract = _contract_of(registry, headers.get(H_TYPE, ""), subject)
    if contract is None:
        return None, None
    body: Any = None
    if show and last is not None and last.data:
        try:
            body = _ANY.decode(last.data)
        except msgspec.DecodeError:
            body = None  # msgpack or broken: shown without a value
    location = body.get("location") if isinstance(body, dict) else None
    info = contract.__contract__
    return contract, Entity(
        contract=info.name,
        classification=info.classification.value,
        entity=subject.rsplit(".", 1)[-1],
        subject=subject,
        messages=count,
        rate=None if hours is None else count / hours,
        last_time=headers.get(H_TIME),
        provenance=headers.get(H_PROVENANCE),
        location=location if isinstance(location, dict) else None,
        value=body if show else None,
    )


async def list_entities(
    bus: Bus,
    registry: Registry,
    *,
    contract: str | None = None,
    classifications: Iterable[Classification] = (Classification.PUBLIC, Classification.INTERNAL),
    values: Iterable[Classification] = (Classification.PUBLIC, Classification.INTERNAL),
) -> Listing:
    """The entities of every contract (or of ``contract``, a name) in the streams of ``classifications``.

    ``values``: the classes whose last value and location are shown. Raises
    :class:`~contracts.UnknownContractError` for an unknown contract name.
    """
    allowed = set(classifications) - {Classification.PERSONAL}  # see the module: never personal
    shown = set(values)
    chosen: type[Contract] | None = registry.get(contract) if contract else None
    listing = Listing()
    gate = asyncio.Semaphore(_IN_FLIGHT)
    for classification, domain in registry.domains():
        if classification not in allowed:
            continue
        if chosen is not None and (
            chosen.__contract__.classification,
            chosen.__contract__.domain,
        ) != (classification, domain):
            continue
        stream = subjects.stream_name(classification, domain)
        wanted = (
            subjects.contract_filter(chosen) if chosen else subjects.domain_filter(classification, domain)
        )
        try:
            state = await _stream_state(bus, stream, wanted)
        except LookupError as exc:
            listing.unreadable[stream] = str(exc)
            continue
        hours = _hours(state)
        counts: dict[str, int] = state.get("subjects") or {}
        show = classification in shown
        found = await asyncio.gather(
            *(
                _entity(bus, registry, stream, subject, count, hours, show, gate)
                for subject, count in sorted(counts.items())
            )
        )
        for cls, row in found:
            if cls is None or row is None:
                continue
            name = cls.__contract__.name
            listing.classifications[name] = cls.__contract__.classification.value
            listing.contracts.setdefault(name, []).append(row)
    for rows in listing.contracts.values():
        rows.sort(key=lambda e: e.entity)
    if chosen is not None:
        name = chosen.__contract__.name
        listing.contracts.setdefault(name, [])
        listing.classifications[name] = chosen.__contract__.classification.value
    return listing


# -- the command ----------------------------------------------------------------------------------


def _place(location: dict[str, Any] | None) -> str:
    if not location:
        return "-"
    lon, lat = location.get("coordinates", (None, None))
    text = f"{lat:.5f} N {lon:.5f} E"
    if location.get("approximate"):
        text += f" ~{location.get('uncertainty', 0):.0f} m"
    return text


def render(listing: Listing) -> list[str]:
    """The listing as text lines: per contract, one line per entity."""
    lines: list[str] = []
    for name, rows in sorted(listing.contracts.items()):
        lines.append(f"{name} ({listing.classifications[name]}): {len(rows)} entities")
        for row in rows:
            rate = "-" if row.rate is None else f"{row.rate:.1f}/h"
            value = "" if row.value is None else "  " + msgspec.json.encode(row.value).decode()[:120]
            lines.append(
                f"  {row.entity:<32} {row.messages:>6} msgs {rate:>10}  {_place(row.location):<32}"
                f" {row.last_time or '-'}{value}"
            )
    for stream, why in sorted(listing.unreadable.items()):
        lines.append(f"not read: {stream}: {why}")
    return lines


# -- the ops endpoint's reader --------------------------------------------------------------------


class EntityReader:
    """What ``GET /entities`` reads through: one connection per account, opened on first use.

    ``connect(account)`` opens it (``citybus up`` logs in as that account's operator, so the
    broker itself keeps personal streams out; without access control it hands out its own
    connection, ``owned=False``). Values are shown for public contracts only: the ops port has no
    login (see the module's decisions).
    """

    def __init__(
        self,
        connect: Callable[[str], Awaitable[Bus]],
        registry: Registry,
        default_account: str,
        *,
        owned: bool = True,
    ) -> None:
        self._connect = connect
        self._registry = registry
        self.default_account = default_account
        self._owned = owned
        self._buses: dict[str, Bus] = {}
        self._lock = asyncio.Lock()

    async def __call__(self, account: str | None, contract: str | None) -> tuple[str, Listing]:
        """The listing of ``account`` (default :attr:`default_account`), of one contract or all."""
        chosen = (account or self.default_account).upper()
        async with self._lock:
            bus = self._buses.get(chosen)
            if bus is None:
                bus = self._buses[chosen] = await self._connect(chosen)
        listing = await list_entities(
            bus,
            self._registry,
            contract=contract,
            classifications=(Classification.PUBLIC, Classification.INTERNAL),
            values=(Classification.PUBLIC,),
        )
        return chosen, listing

    async def close(self) -> None:
        """Close the connections it opened."""
        buses, self._buses = self._buses, {}
        if self._owned:
            for bus in buses.values():
                await bus.drain()
