"""Dead letters: where a message goes when it cannot be handed to its consumer.

A dead letter is itself a contract (:class:`contracts.DeadLetter`, internal), published on
``city.internal.citybus.dead-letter.<reason>`` and stored by the ``CITY_INTERNAL_CITYBUS`` stream,
so operators can read, count and replay them with the same tools as any other message. A dead
letter carries its original's payload, so that of a personal message (one on a ``city.personal.``
subject, or of a personal contract) is a :class:`contracts.PersonalDeadLetter`, published on
``city.personal.citybus.personal-dead-letter.<reason>`` where only readers of personal data see it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import nats.errors

from bus.durable import PublishAck
from bus.envelope import H_ID, H_MSG_ID, H_PROVENANCE, H_TYPE, Provenance
from bus.errors import CityBusError
from bus.metrics import Metrics
from bus.pipeline import Message, loggable_subject
from bus.subjects import ROOT
from bus.wire import BadHeaders, escape_block
from contracts import Classification, Contract, Registry
from contracts.citybus import DeadLetter, PersonalDeadLetter

if TYPE_CHECKING:
    from bus.tracing import Tracing

__all__ = [
    "DETAIL_LIMIT",
    "HEADERS_LIMIT",
    "HEADER_BLOCK",
    "LOG_LIMIT",
    "PAYLOAD_LIMIT",
    "DeadLetters",
    "LetterPublisher",
    "letter_id",
]

HEADER_BLOCK = "citybus-header-block"
"""The key under which a dead letter's ``original_headers`` keep a header block that could not be
read, as escaped text (``bad-header``)."""


class LetterPublisher(Protocol):
    """How dead letters leave: durably, and plainly when JetStream cannot store them (a
    :class:`~bus.Bus` is one)."""

    async def publish_durable(
        self, instance: Contract, *, event_id: str | None, provenance: Provenance | None, timeout: float
    ) -> PublishAck:
        """Publish and wait until a stream stored it."""
        ...

    async def publish(
        self, instance: Contract, *, event_id: str | None, provenance: Provenance | None
    ) -> str:
        """Publish at most once."""
        ...


# How long a dead letter may wait for JetStream before it is published without the acknowledgement.
_STORE_TIMEOUT = 5.0

PAYLOAD_LIMIT = 512 * 1024
"""The most bytes of an original a dead letter keeps: NATS's default message limit is 1 MiB, and a
dead letter carries the bytes as base64."""

HEADERS_LIMIT = 64 * 1024
"""The most bytes the original's headers take in a dead letter (as JSON). With the payload's
base64 (at most 683 KiB) and the detail, a dead letter stays well within NATS's 1 MiB."""

DETAIL_LIMIT = 8 * 1024
"""The most characters of a detail (an exception's text may quote a whole payload)."""

LOG_LIMIT = 4 * 1024
"""The most characters of the payload, and of all headers, a log line carries."""

_json = msgspec.json.Encoder()


def _headers(headers: Mapping[str, str] | None) -> tuple[dict[str, str], str]:
    """The original's headers as a dead letter keeps them, and a note if they were cut.

    A header block that could not be read is kept as its bytes, escaped
    (:func:`bus.wire.escape_block`). Headers beyond :data:`HEADERS_LIMIT` bytes of JSON are cut:
    the first ones are kept whole, the one that crosses the limit cut, the rest dropped.
    """
    kept = {HEADER_BLOCK: escape_block(headers.raw)} if type(headers) is BadHeaders else dict(headers or {})
    size = len(_json.encode(kept))
    if size <= HEADERS_LIMIT:
        return kept, ""
    out: dict[str, str] = {}
    used = 2  # {}
    for name, value in kept.items():
        name = name[:1024]
        item = len(_json.encode(name)) + len(_json.encode(value)) + 2  # : and ,
        if used + item > HEADERS_LIMIT:
            room = HEADERS_LIMIT - used - len(_json.encode(name)) - 4  # : , ""
            if room > 0:
                out[name] = value[: room // 6]  # a character takes at most 6 bytes in JSON (\u001f)
            break
        out[name] = value
        used += item
    note = (
        f" (the dead letter keeps {HEADERS_LIMIT} of the {size} bytes of the original's headers: "
        f"{len(out)} of {len(kept)} headers, the last one cut)"
    )
    return out, note


def _bounded(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a note saying how much there was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut: {len(text)} characters in all]"


def letter_id(original_id: str, consumer: str, reason: str) -> str:
    """The ``ce-id`` of the dead letter of ``original_id``, rejected by ``consumer`` for ``reason``.

    Derived, not random: a message redelivered and dead-lettered again (its first dead letter
    stored, the acknowledgement lost) gets the same id, so JetStream's duplicate window stores it once.
    """
    digest = hashlib.sha256(f"citybus dead letter\0{original_id}\0{consumer}\0{reason}".encode())
    return digest.hexdigest()[:32]


def _original_id(msg: Message) -> str:
    """What identifies the original across redeliveries: its ``ce-id`` (or ``Nats-Msg-Id``), else
    for a message from a stream, the stream and sequence; else nothing (a fresh id is used)."""
    headers = msg.headers or {}
    found = headers.get(H_ID) or headers.get(H_MSG_ID)
    if found:
        return f"id:{found}"
    try:
        meta = msg.metadata  # type: ignore[attr-defined]  # nats-py's Msg from a stream
        return f"seq:{meta.stream}:{meta.sequence.stream}"
    except Exception:  # not a JetStream message (nats-py raises NotJSMessageError), or no metadata
        return ""


class DeadLetters:
    """Sends dead letters through ``publisher``, counting each by contract and reason.

    :param registry: tells which contracts are personal (their letters stay personal).
    """

    def __init__(self, publisher: LetterPublisher, *, registry: Registry, metrics: Metrics, log: Any) -> None:
        self._publisher = publisher
        self.tracing: Tracing | None = None
        """Spans for dead letters (:mod:`bus.tracing`), set by a bus with tracing on."""
        self._registry = registry
        self._metrics = metrics
        self._log = log

    async def send(
        self,
        msg: Message,
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
        if self.tracing is None:
            return await self._send(msg, reason, detail, contract, consumer, deliveries)
        with self.tracing.dead_letter(msg, reason, consumer):
            return await self._send(msg, reason, detail, contract, consumer, deliveries)

    async def _send(
        self, msg: Message, reason: str, detail: str, contract: str, consumer: str, deliveries: int
    ) -> bool:
        kind = PersonalDeadLetter if self._personal(msg, contract) else DeadLetter
        detail = _bounded(detail, DETAIL_LIMIT)
        payload = bytes(msg.data)
        if len(payload) > PAYLOAD_LIMIT:  # base64 in a dead letter must fit in one NATS message
            detail += f" (the dead letter keeps the first {PAYLOAD_LIMIT} of {len(payload)} bytes)"
            payload = payload[:PAYLOAD_LIMIT]
        headers, cut = _headers(msg.headers)
        original = _original_id(msg)
        letter = kind(
            reason=reason,
            detail=detail + cut,
            original_subject=msg.subject,
            original_headers=headers,
            payload=payload,
            contract=contract,
            consumer=consumer,
            deliveries=deliveries,
            failed_at=datetime.now(UTC),
        )
        return await self.publish(
            letter, event_id=letter_id(original, consumer, reason) if original else None
        )

    def _personal(self, msg: Message, contract: str) -> bool:
        """Whether the message may hold personal data: it came on a personal subject, or says (or
        was expected to be) a personal contract."""
        if msg.subject.startswith(f"{ROOT}.{Classification.PERSONAL.value}."):
            return True
        registry = self._registry
        for ce_type in (contract, (msg.headers or {}).get(H_TYPE, "")):
            found = registry.by_type(ce_type) if ce_type else None
            if found is not None and found.__contract__.classification is Classification.PERSONAL:
                return True
        return False

    async def publish(self, letter: DeadLetter | PersonalDeadLetter, *, event_id: str | None = None) -> bool:
        """Store a dead letter durably; if JetStream cannot, publish it plainly and log it.

        ``event_id`` is its ``ce-id`` (see :func:`letter_id`), a fresh one if not given. Counts
        the letter in ``citybus_dead_letters_total`` once JetStream has stored it (a duplicate it
        dropped is not counted again), else in ``citybus_dead_letters_unstored_total``. Returns
        ``False`` when JetStream did not store it: a durable consumer then keeps the original (and
        tries again later) instead of terminating it.
        """
        publisher = self._publisher
        labels = (letter.contract or "unknown", letter.reason)
        subject = letter.original_subject
        if isinstance(letter, PersonalDeadLetter):  # its entity token may name the person
            subject = loggable_subject(subject)
        log = self._log.bind(reason=letter.reason, subject=subject, contract=letter.contract)
        if not isinstance(letter, PersonalDeadLetter):  # a handler's error text may quote personal values
            log = log.bind(detail=_bounded(letter.detail, LOG_LIMIT))
        try:
            ack = await publisher.publish_durable(
                letter, event_id=event_id, provenance=_provenance(letter), timeout=_STORE_TIMEOUT
            )
        except (CityBusError, nats.errors.Error) as exc:
            self._metrics.dead_letters_unstored.labels(*labels).inc()
            if isinstance(letter, PersonalDeadLetter):  # personal data never goes to a log
                log.error("personal dead letter not stored by JetStream", error=str(exc))
            else:  # the log line shows what the message was, bounded: never a whole megabyte
                log.error(
                    "dead letter not stored by JetStream",
                    error=str(exc),
                    headers=_bounded(_json.encode(letter.original_headers).decode(), LOG_LIMIT),
                    payload=_bounded(letter.payload.decode("utf-8", "backslashreplace"), LOG_LIMIT),
                    payload_bytes=len(letter.payload),
                )
            try:
                await publisher.publish(letter, event_id=event_id, provenance=_provenance(letter))
            except (CityBusError, nats.errors.Error):
                pass
            return False
        if ack.duplicate:
            log.info("dead letter already stored", event_id=ack.event_id)
        else:
            self._metrics.dead_lettered.labels(*labels).inc()
            log.warning("message dead-lettered", event_id=ack.event_id)
        return True


def _provenance(letter: DeadLetter | PersonalDeadLetter) -> Provenance | None:
    """A dead letter carries the values of its original, so it keeps the original's provenance —
    when that is one citybus knows (a header of the sender's could be anything, of any length)."""
    try:
        return Provenance(letter.original_headers.get(H_PROVENANCE, ""))
    except ValueError:
        return None
