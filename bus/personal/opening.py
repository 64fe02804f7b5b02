"""Sealing personal messages on the way out, and opening them on the way in.

A subscription to a sealed contract (:attr:`contracts.ContractInfo.sealed`) puts an
:class:`Opener` in front of its reader (:func:`bus.pipeline.receiver`): the body is opened with the
key of the person the ``citybus-person`` header names, and the reader sees the plaintext. What the
pipeline settles (acknowledges, dead-letters) is still the message as it travelled, so a dead
letter keeps the sealed body, never the opened one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from bus import subjects
from bus.durable import Prepared
from bus.envelope import H_PERSON, H_TYPE
from bus.errors import ContractViolation
from bus.metrics import Metrics
from bus.personal.seal import Unreadable, open_body
from bus.personal.vault import KeyVault
from contracts import Contract

if TYPE_CHECKING:  # bus.tracing loads OpenTelemetry, which only tracing needs
    from bus.tracing import Tracing

__all__ = ["Opened", "Opener", "seal_prepared", "seal_raw"]


@dataclass(frozen=True, slots=True)
class Opened:
    """A sealed message, opened: the plaintext ``data`` and the ``sealed`` body as it travelled."""

    subject: str
    data: bytes
    headers: Mapping[str, str] | None
    reply: str
    sealed: bytes


class Opener:
    """Opens the sealed messages of one contract: the opened message, or ``None`` when it can no
    longer be opened (its key was destroyed: it is erased, and counted as such).

    A message of the contract that arrives unsealed is refused (:class:`ContractViolation`,
    ``not-sealed``): whoever sent it bypassed the bus, and consumers must be able to rely on
    personal data being erasable.
    """

    __slots__ = ("contract", "unreadable", "vault")

    def __init__(self, vault: KeyVault, contract: str, metrics: Metrics) -> None:
        self.vault = vault
        self.contract = contract
        self.unreadable = metrics.personal_unreadable.labels(contract)

    async def __call__(self, msg: Any) -> Opened | None:
        headers = msg.headers or {}
        ref = headers.get(H_PERSON)
        if not ref:
            raise ContractViolation(
                f"{self.contract} is personal data about one person and must be sealed with that "
                f"person's key ({H_PERSON} header missing): publish it through citybus",
                reason="not-sealed",
            )
        body = msg.data if isinstance(msg.data, bytes) else bytes(msg.data)
        vault = self.vault
        cipher = vault.cached(ref) or await vault.cipher_of(ref)
        if cipher is None:  # destroyed: the message is erased
            self.unreadable.inc()
            return None
        try:
            data = open_body(cipher, body, headers.get(H_TYPE, ""))
        except Unreadable as exc:
            raise ContractViolation(f"the sealed body of {self.contract}: {exc}", reason="bad-seal") from None
        return Opened(msg.subject, data, msg.headers, msg.reply or "", body)


async def seal_prepared(
    vault: KeyVault, instance: Contract, prepared: Prepared, tracing: Tracing | None = None
) -> Prepared:
    """A prepared message of ``instance`` (a sealed contract: :attr:`~contracts.ContractInfo.sealed`)
    sealed with the key of the person it is about.

    The body is replaced by its sealed form and ``citybus-person`` names the person's ref; when the
    contract's key is the person, the subject's entity is the ref too, so no subject names anyone.
    ``tracing`` stamps the message's span only then, so no span's destination names the person."""
    info = instance.__contract__
    ce_type, subject, body, headers = prepared
    ref, sealed = await vault.seal(str(getattr(instance, info.person or "")), body, ce_type)
    headers[H_PERSON] = ref
    if info.key == info.person:  # the entity is the subject's last token
        subject = f"{subject.rpartition('.')[0]}.{ref}"
    if tracing is not None:
        tracing.stamp(subject, headers, ce_type)
    return ce_type, subject, sealed, headers


async def seal_raw(
    vault: KeyVault, cls: type[Contract], subject: str, data: bytes, headers: dict[str, str]
) -> tuple[str, bytes, dict[str, str]]:
    """A message of the sealed contract ``cls`` that travels as bytes (a replayed recording of
    synthetic people), sealed as :meth:`bus.Bus.publish` would have: the person is read from the
    body, which is then sealed, and the subject's entity becomes the ref when it is the person.

    A body that already carries ``citybus-person`` is sealed already and returned unchanged; one that
    is not the contract (:class:`ContractViolation`) cannot be sealed for anyone and is returned
    unchanged too, for its consumers to refuse (``not-sealed``) into the personal dead letters.
    """
    info = cls.__contract__
    if H_PERSON in headers or not info.sealed:
        return subject, data, headers
    try:
        person = msgspec.json.decode(data) if data else None
    except msgspec.DecodeError:
        return subject, data, headers
    if not isinstance(person, dict) or not isinstance(value := person.get(info.person or ""), str):
        return subject, data, headers
    ref, sealed = await vault.seal(value, data, headers.get(H_TYPE, info.type))
    headers = {**headers, H_PERSON: ref}
    if info.key == info.person:
        subject = subjects.contract_filter(cls, ref)
    return subject, sealed, headers
