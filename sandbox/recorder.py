"""Recording live subjects: ``citybus record PATTERN... -o FILE``.

Every message on the subjects is written as it arrives (subject, body, headers; the original
``ce-time`` as its place on the replay clock), in chunks flushed at least every second, so a
recording stopped by Ctrl-C, a crash or a full disk is readable up to its last second.

**Personal data** — a recording may be handed to a pilot, so it never holds a person in the clear:

* **Personal requests and replies are never recorded** (``city.personal.rpc.>``, and a reply of a
  personal contract wherever it travels, an inbox included): they are not sealed (they are never
  stored on the bus either), so a recording would be the one place they were kept. A pattern that
  only covers them is refused.
* **Personal events are recorded as they travelled: sealed** (the default). Their bodies are
  ciphertext under the person's key, and each keeps its ``citybus-person`` header (the person's
  vault ref) as its channel's metadata, so an erasure finds a person's messages in the file and
  rewrites it without them — and once the person's key is destroyed, no copy of the file can be
  opened, one handed to a pilot included. A personal message that arrives unsealed (a dead letter
  carrying a personal payload, or anything that should not exist) is left out, never written in
  the clear.
* **``--pseudonymise``** (``pseudonymise=True``) records personal events readable, without anyone
  in them (:mod:`sandbox.pseudonyms`): the person's id becomes a keyed-hash pseudonym, names,
  e-mail addresses and phone numbers generated ones, ``ce-provenance`` ``pseudonymised``. That
  needs the plaintext, which only the key vault gives: the recorder opens a sealed message with
  the bus's vault, so it must log in as a user that may read the personal subjects and the keys —
  one that declares those contracts (``citybus record --user <instance>``); the broker refuses
  anyone else both. A message whose key is gone (erased) or that does not pseudonymise is left out.

Sealed is the default rather than pseudonymised because it is safe for every use of a recording
(a pilot can do nothing with a sealed body, the city can replay it onto its own bus, an erasure
reaches it) and needs no key; a recording made to hand to a pilot who must read the personal
messages is made with ``--pseudonymise``. Each file's MCAP metadata says which it is
(``personal_data``), and :class:`RecordReport` counts what was left out and why.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from bus import Bus, RawMessage
from bus.envelope import H_CONTENT_TYPE, H_PERSON, H_TYPE
from bus.personal.places import in_clear
from bus.personal.seal import Unreadable
from bus.subjects import classification_filter, matches, request_classification_filter, validate_pattern
from contracts import Classification, Contract, Registry
from sandbox.pseudonyms import NotPseudonymisable, Pseudonymiser
from sandbox.recording import RecordingWriter

__all__ = ["Opener", "PERSONAL_PSEUDONYMISED", "PERSONAL_SEALED", "RecordReport", "record", "vault_opener"]

Opener = Callable[[str, bytes, str], Awaitable[bytes | None]]
"""Opens a sealed body: ``(ref, body, ce-type)`` → the plaintext, or ``None`` when it cannot be
opened (the key destroyed). The recorder's default is the bus's key vault (:func:`vault_opener`)."""


def vault_opener(bus: Bus) -> Opener:
    """Opens sealed bodies with ``bus``'s key vault: what the recorder's user may read of it is what
    the broker allows (a user that declares the sealed contracts reads their keys)."""

    async def opened(ref: str, body: bytes, ce_type: str) -> bytes | None:
        try:
            return await bus.vault.open(ref, body, ce_type)
        except Unreadable:
            return None

    return opened


PERSONAL_SEALED: Final = (
    "sealed: personal events as they travelled, each body sealed with its person's key (header "
    "citybus-person in the channel metadata); an erasure destroys the key. Personal requests and "
    "replies are never recorded."
)
"""The ``personal_data`` metadata of a recording made by default."""
PERSONAL_PSEUDONYMISED: Final = (
    "pseudonymised: every person is replaced by a generated stand-in (ids by a keyed-hash pseudonym "
    "under a key discarded after the recording, names, e-mails and phones generated), provenance "
    "pseudonymised; times, tasks and skills are as they were. Personal requests and replies are "
    "never recorded."
)
"""The ``personal_data`` metadata of a ``--pseudonymise`` recording."""

_PERSONAL: Final = classification_filter(Classification.PERSONAL)
_PERSONAL_RPC: Final = request_classification_filter(Classification.PERSONAL)


@dataclass
class RecordReport:
    """What a recording took in: how many messages were written, and those left out by reason."""

    recorded: int = 0
    sealed: int = 0
    """Personal events written sealed."""
    pseudonymised: int = 0
    left_out: Counter[str] = field(default_factory=Counter)
    """Messages not written, by why: ``personal-request``, ``unsealed-personal``,
    ``unreadable`` (key destroyed), ``not-pseudonymisable``."""


def _refuse_personal_requests(patterns: list[str]) -> None:
    for pattern in patterns:
        validate_pattern(pattern)
        if matches(_PERSONAL_RPC, pattern):  # every subject the pattern covers is a personal request
            raise ValueError(
                f"{pattern}: personal requests and replies are never recorded; record the personal "
                "events instead (city.personal.>)"
            )


class _Personal:
    """Decides what becomes of one message on its way into the file."""

    def __init__(
        self, registry: Registry, pseudonymiser: Pseudonymiser | None, opener: Opener | None
    ) -> None:
        self._registry = registry
        self._pseudonymiser = pseudonymiser
        self._opener = opener
        self.report = RecordReport()

    def _contract(self, headers: Mapping[str, str]) -> type[Contract] | None:
        ce_type = headers.get(H_TYPE)
        return self._registry.by_type(ce_type) if ce_type else None

    async def __call__(self, raw: RawMessage) -> tuple[str, bytes, Mapping[str, str]] | None:
        """The message to write (subject, body, headers), or ``None`` to leave it out."""
        headers = raw.headers or {}
        contract = self._contract(headers)
        info = None if contract is None else contract.__contract__
        if matches(_PERSONAL_RPC, raw.subject) or (
            info is not None and info.classification is Classification.PERSONAL and info.exchange != "event"
        ):
            self.report.left_out["personal-request"] += 1
            return None
        personal = matches(_PERSONAL, raw.subject) or (
            info is not None and info.classification is Classification.PERSONAL
        )
        if not personal:
            return raw.subject, raw.data, headers
        ref = headers.get(H_PERSON)
        if self._pseudonymiser is None:
            if not ref or in_clear(raw.data, headers.get(H_CONTENT_TYPE, "")):  # a seal only claimed
                self.report.left_out["unsealed-personal"] += 1
                return None
            self.report.sealed += 1
            return raw.subject, raw.data, headers
        if contract is None or info is None or info.person is None:
            self.report.left_out["not-pseudonymisable"] += 1  # no person field to pseudonymise by
            return None
        body = raw.data
        if ref:
            opened = None if self._opener is None else await self._opener(ref, raw.data, info.type)
            if opened is None:
                self.report.left_out["unreadable"] += 1
                return None
            body = opened
        try:
            out = self._pseudonymiser.message(contract, raw.subject, body, headers)
        except NotPseudonymisable:
            self.report.left_out["not-pseudonymisable"] += 1
            return None
        self.report.pseudonymised += 1
        return out


async def record(
    bus: Bus,
    patterns: list[str],
    output: Path,
    *,
    stop: asyncio.Event,
    duration: float | None = None,
    limit: int | None = None,
    compression: Literal["zstd", "lz4", "none"] = "zstd",
    ready: asyncio.Event | None = None,
    pseudonymise: bool = False,
    opener: Opener | None = None,
    report: RecordReport | None = None,
) -> int:
    """Record what arrives on ``patterns`` into ``output`` until ``stop`` is set, ``duration``
    seconds have passed or ``limit`` messages were recorded; returns how many were recorded.

    Personal messages as the module doc says: sealed as they travelled, or with ``pseudonymise``
    replaced by pseudonymised ones (sealed ones opened with ``opener``, by default the bus's key
    vault: :func:`vault_opener`). ``report``, when given,
    is filled with what was recorded and left out.
    """
    _refuse_personal_requests(patterns)
    personal = _Personal(bus.registry, Pseudonymiser() if pseudonymise else None, opener or vault_opener(bus))
    if report is not None:
        personal.report = report
    metadata = {
        "recorded_by": "citybus record " + " ".join(patterns),
        "personal_data": PERSONAL_PSEUDONYMISED if pseudonymise else PERSONAL_SEALED,
    }
    done = asyncio.Event()
    with RecordingWriter(output, compression=compression, metadata=metadata) as writer:

        async def on_message(raw: RawMessage) -> None:
            if done.is_set():
                return
            kept = await personal(raw)
            if kept is None or done.is_set():
                return
            subject, data, headers = kept
            writer.add(subject, data, headers)
            personal.report.recorded = writer.count
            if limit is not None and writer.count >= limit:
                done.set()

        subscriptions = [await bus.subscribe_raw(p, on_message) for p in patterns]
        await bus.flush()
        if ready is not None:
            ready.set()
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(done.wait())]
        try:
            await asyncio.wait(waiters, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            done.set()
            for sub in subscriptions:
                await sub.unsubscribe()
        return writer.count
