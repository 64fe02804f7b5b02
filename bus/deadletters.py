"""Dead letters: where a message goes when it cannot be handed to its consumer.

A dead letter is itself a contract (:class:`contracts.DeadLetter`, internal), published on
``city.internal.citybus.dead-letter.<reason>`` and stored by the ``CITY_INTERNAL_CITYBUS`` stream,
so operators can read, count and replay them with the same tools as any other message. A dead
letter carries its original's payload, so that of a personal message (one on a ``city.personal.``
subject, or of a personal contract) is a :class:`contracts.PersonalDeadLetter`, published on
``city.personal.citybus.personal-dead-letter.<reason>`` where only readers of personal data see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import nats.errors

from bus.envelope import H_PROVENANCE, H_TYPE
from bus.errors import CityBusError
from bus.subjects import ROOT
from bus.wire import BadHeaders, escape_block
from contracts import Classification
from contracts.citybus import DeadLetter, PersonalDeadLetter

if TYPE_CHECKING:
    from bus.bus import Bus

__all__ = ["HEADER_BLOCK", "PAYLOAD_LIMIT", "DeadLetters", "Inbound"]

HEADER_BLOCK = "citybus-header-block"
"""The key under which a dead letter's ``original_headers`` keep a header block that could not be
read, as escaped text (``bad-header``)."""


class Inbound(Protocol):
    """What a dead letter needs of a received message (nats-py's ``Msg`` and ``RawMessage`` fit)."""

    @property
    def subject(self) -> str:
        """The subject it arrived on."""
        ...

    @property
    def data(self) -> bytes:
        """Its body as it arrived."""
        ...

    @property
    def headers(self) -> Mapping[str, str] | None:
        """Its headers as they arrived."""
        ...


# How long a dead letter may wait for JetStream before it is published without the acknowledgement.
_STORE_TIMEOUT = 5.0

PAYLOAD_LIMIT = 512 * 1024
"""The most bytes of an original a dead letter keeps: NATS's default message limit is 1 MiB, and a
dead letter carries the bytes as base64."""


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The original's headers as a dead letter keeps them; a header block that could not be read
    as its bytes, escaped (:func:`bus.wire.escape_block`)."""
    if type(headers) is BadHeaders:
        return {HEADER_BLOCK: escape_block(headers.raw)}
    return dict(headers or {})


class DeadLetters:
    """Sends dead letters for one bus, counting each by contract and reason."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def send(
        self,
        msg: Inbound,
        *,
        reason: str,
        detail: str,
        contract: str = "",
        consumer: str = "",
        deliveries: int = 1,
    ) -> bool:
        """Dead-letter a received message, keeping its subject, headers and body as they arrived.

        Returns whether JetStream stored the dead letter (see :meth:`publish`).
        """
        kind = PersonalDeadLetter if self._personal(msg, contract) else DeadLetter
        payload = bytes(msg.data)
        if len(payload) > PAYLOAD_LIMIT:  # base64 in a dead letter must fit in one NATS message
            detail += f" (the dead letter keeps the first {PAYLOAD_LIMIT} of {len(payload)} bytes)"
            payload = payload[:PAYLOAD_LIMIT]
        letter = kind(
            reason=reason,
            detail=detail,
            original_subject=msg.subject,
            original_headers=_headers(msg.headers),
            payload=payload,
            contract=contract,
            consumer=consumer,
            deliveries=deliveries,
            failed_at=datetime.now(UTC),
        )
        return await self.publish(letter)

    def _personal(self, msg: Inbound, contract: str) -> bool:
        """Whether the message may hold personal data: it came on a personal subject, or says (or
        was expected to be) a personal contract."""
        if msg.subject.startswith(f"{ROOT}.{Classification.PERSONAL.value}."):
            return True
        registry = self._bus.registry
        for ce_type in (contract, (msg.headers or {}).get(H_TYPE, "")):
            found = registry.by_type(ce_type) if ce_type else None
            if found is not None and found.__contract__.classification is Classification.PERSONAL:
                return True
        return False

    async def publish(self, letter: DeadLetter | PersonalDeadLetter) -> bool:
        """Store a dead letter durably; if JetStream cannot, publish it plainly and log it whole.

        Returns ``False`` when JetStream did not store it: a durable consumer then keeps the original
        (and tries again later) instead of terminating it.
        """
        bus = self._bus
        # A dead letter carries the values of its original, so it keeps the original's provenance.
        provenance = letter.original_headers.get(H_PROVENANCE) or bus.provenance
        bus.metrics.dead_lettered.labels(letter.contract or "unknown", letter.reason).inc()
        log = bus.log.bind(reason=letter.reason, subject=letter.original_subject, contract=letter.contract)
        if not isinstance(letter, PersonalDeadLetter):  # a handler's error text may quote personal values
            log = log.bind(detail=letter.detail)
        try:
            await bus.publish_durable(letter, provenance=provenance, timeout=_STORE_TIMEOUT)
        except (CityBusError, nats.errors.Error) as exc:
            if isinstance(letter, PersonalDeadLetter):  # personal data never goes to a log
                log.error("personal dead letter not stored by JetStream", error=str(exc))
            else:  # never lose it: the log line carries everything needed to recover the message
                log.error(
                    "dead letter not stored by JetStream",
                    error=str(exc),
                    headers=letter.original_headers,
                    payload=letter.payload.decode("utf-8", "backslashreplace"),
                )
            try:
                await bus.publish(letter, provenance=provenance)
            except (CityBusError, nats.errors.Error):
                pass
            return False
        log.warning("message dead-lettered")
        return True
