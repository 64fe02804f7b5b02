"""The key vault: one key per person, kept in a JetStream stream, destroyed to erase them everywhere.

Every personal message about a person is sealed with that person's key (:mod:`bus.personal.seal`).
The keys live in the account's stream ``CITYBUS_PERSONAL_KEYS``, one message per person on
``citybus.personal.keys.<ref>``; the *ref* (``p-`` and 24 hex digits) is an HMAC-SHA256 of the
person's id under the vault's *pepper*, a random secret kept in the same stream. The ref is all
that appears outside a sealed body (the subject of a message about the person, the
``citybus-person`` header), so a recording or an archive row names nobody: linking a ref back to a
person takes the pepper and the person's id.

Destroying a key deletes its message with JetStream's *erase* (``STREAM.MSG.DELETE`` without
``no_erase``): the server overwrites the stored record with random bytes rather than marking it
deleted, so the key is gone from the disk too, not only from the stream's index. Then the ref is
broadcast on ``citybus.personal.erased`` and every process drops it from its cache.

Decisions, and why:

* **A stream, not a KV bucket.** A KV bucket is a stream with conventions; using the stream's API
  directly keeps the broker's permissions to exactly the operations the vault needs (``MSG.GET``,
  a publish that only creates, ``MSG.DELETE`` for the privacy service), and lets a key be
  erased rather than only tombstoned.
* **Create only if absent.** A key is published with ``Nats-Expected-Last-Subject-Sequence: 0``:
  two processes creating the same person's key at once end with one key, never two.
* **Cached per process, briefly.** Opening a message must not cost a round trip; a cached key lives
  at most :data:`CACHE_SECONDS` even if the broadcast of its destruction were missed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import nats.errors
import nats.js.errors
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.js import api

from bus.errors import CityBusError
from bus.personal.seal import KEY_BYTES, Unreadable, new_key, open_body, seal_body

__all__ = [
    "CACHE_SECONDS",
    "ERASED_SUBJECT",
    "KEYS_FILTER",
    "PEPPER_SUBJECT",
    "REF_PATTERN",
    "VAULT_STREAM",
    "KeyVault",
    "MemoryVault",
    "VaultError",
    "vault_stream_config",
    "vault_subject",
]

VAULT_STREAM: Final = "CITYBUS_PERSONAL_KEYS"
KEYS_FILTER: Final = "citybus.personal.keys.*"
PEPPER_SUBJECT: Final = "citybus.personal.pepper"
ERASED_SUBJECT: Final = "citybus.personal.erased"
REF_PATTERN: Final = r"^p-[0-9a-f]{24}$"
CACHE_SECONDS: Final = 60.0
_EXPECT_NEW: Final = {"Nats-Expected-Last-Subject-Sequence": "0"}
_WRONG_LAST_SEQUENCE: Final = 10071
_STREAM_NOT_FOUND: Final = 10059


class VaultError(CityBusError):
    """The key vault cannot be used: not provisioned, not permitted, or not answering."""


class _KeyRecord(msgspec.Struct, frozen=True):
    key: bytes
    created: datetime


_encode_record = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(_KeyRecord).decode


def vault_subject(ref: str) -> str:
    """Where the key of the person named ``ref`` is kept."""
    return f"citybus.personal.keys.{ref}"


def vault_stream_config(
    replicas: int = 1, storage: str = "file", placement: api.Placement | None = None
) -> api.StreamConfig:
    """The vault's stream: one message per subject, never discarded for lack of room; ``replicas``
    and ``placement`` are personal data's (``[streams]``)."""
    return api.StreamConfig(
        name=VAULT_STREAM,
        description="citybus personal keys: one per person, destroyed to erase them (crypto-shredding)",
        subjects=[KEYS_FILTER, PEPPER_SUBJECT],
        retention=api.RetentionPolicy.LIMITS,
        # A full vault refuses a new key (the publish fails, loudly) rather than dropping an old one.
        discard=api.DiscardPolicy.NEW,
        max_msgs_per_subject=1,
        # Write-once, kept by the broker: every producer of sealed contracts may publish here (to
        # create a key), and a publish over the pepper or a key (without the create-only header)
        # would change every ref or lose a key without erasing it. The stream refuses it.
        discard_new_per_subject=True,
        num_replicas=replicas,
        placement=placement,
        storage=api.StorageType(storage),
        allow_direct=False,
        deny_delete=False,
        deny_purge=False,
    )


class KeyVault:
    """One process's door to the vault: refs, keys (cached), sealing, opening and destroying.

    ``host`` is what gives the vault a NATS connection (a :class:`~bus.Bus`): anything with ``nc``
    and ``js`` properties. Nothing is asked of the server until a key is first needed.
    """

    def __init__(self, host: Any, *, log: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._host = host
        self._log = log
        self._clock = clock
        self._pepper: bytes | None = None
        self._refs: dict[str, str] = {}
        self._ciphers: dict[str, tuple[AESGCM, float]] = {}
        self._lock = asyncio.Lock()
        self._listening = False

    # -- refs ---------------------------------------------------------------------------------

    async def ref(self, person: str) -> str:
        """The ref naming ``person`` outside sealed bodies (``p-`` and 24 hex digits)."""
        ref = self._refs.get(person)
        if ref is None:
            pepper = self._pepper or await self._load_pepper()
            digest = hmac.new(pepper, person.encode(), hashlib.sha256).hexdigest()
            ref = self._refs[person] = f"p-{digest[:24]}"
        return ref

    async def _load_pepper(self) -> bytes:
        async with self._lock:
            if self._pepper is None:
                found = await self._get(PEPPER_SUBJECT)
                if found is None:
                    await self._create(PEPPER_SUBJECT, new_key())
                    found = await self._get(PEPPER_SUBJECT)
                    if found is None:
                        raise VaultError("the vault's pepper was created but cannot be read back")
                self._pepper = found[1]
            return self._pepper

    # -- keys ---------------------------------------------------------------------------------

    async def cipher(self, person: str, *, create: bool = True) -> tuple[str, AESGCM | None]:
        """The ref of ``person`` and the cipher of their key (created if there is none and
        ``create``; ``None`` if there is none and not ``create``)."""
        ref = await self.ref(person)
        cipher = await self.cipher_of(ref)
        if cipher is None and create:
            await self._create(vault_subject(ref), _encode_record(_KeyRecord(new_key(), datetime.now(UTC))))
            cipher = await self.cipher_of(ref)
            if cipher is None:
                raise VaultError(f"the key of {ref} was created but cannot be read back")
        return ref, cipher

    async def key(self, person: str, *, create: bool = True) -> tuple[str, bytes] | None:
        """The ref and raw key of ``person`` (created if absent and ``create``)."""
        ref = await self.ref(person)
        if create:
            await self.cipher(person)
        found = await self._get(vault_subject(ref))
        return None if found is None else (ref, _decode_record(found[1]).key)

    def cached(self, ref: str) -> AESGCM | None:
        """The cipher of the key named ``ref`` if this process holds it fresh, without asking the
        vault (``None``: ask :meth:`cipher_of`). The per-message path of sealing and opening."""
        cached = self._ciphers.get(ref)
        if cached is not None and self._clock() - cached[1] < CACHE_SECONDS:
            return cached[0]
        return None

    async def cipher_of(self, ref: str) -> AESGCM | None:
        """The cipher of the key named ``ref``, or ``None`` when there is none (destroyed)."""
        cipher = self.cached(ref)
        if cipher is not None:
            return cipher
        now = self._clock()
        await self._listen()
        found = await self._get(vault_subject(ref))
        if found is None:
            self._ciphers.pop(ref, None)
            return None
        record = _decode_record(found[1])
        if len(record.key) != KEY_BYTES:
            raise VaultError(f"the key of {ref} in the vault is {len(record.key)} bytes, not {KEY_BYTES}")
        cipher = AESGCM(record.key)
        self._ciphers[ref] = (cipher, now)
        return cipher

    async def seal(self, person: str, plaintext: bytes, ce_type: str) -> tuple[str, bytes]:
        """``plaintext`` sealed with ``person``'s key (created on first use), and the ref."""
        ref = self._refs.get(person)
        cipher = None if ref is None else self.cached(ref)
        if ref is not None and cipher is not None:  # a person this process knows: no await at all
            return ref, seal_body(cipher, plaintext, ce_type)
        ref, cipher = await self.cipher(person)
        assert cipher is not None  # created when absent
        return ref, seal_body(cipher, plaintext, ce_type)

    async def open(self, ref: str, body: bytes, ce_type: str) -> bytes:
        """The plaintext of a body sealed for ``ref``; :class:`Unreadable` when it cannot be opened."""
        cipher = await self.cipher_of(ref)
        if cipher is None:
            raise Unreadable(f"the key of {ref} was destroyed")
        return open_body(cipher, body, ce_type)

    async def destroy(self, ref: str) -> bool:
        """Destroy the key named ``ref``: erase its stored record, forget it, and tell every process.

        Returns whether there was a key to destroy."""
        destroyed = False
        while (found := await self._get(vault_subject(ref))) is not None:
            await self._erase(found[0])
            destroyed = True
        self.forget(ref)
        await self._announce(ref)
        return destroyed

    def forget(self, ref: str) -> None:
        """Drop ``ref``'s key from this process's cache (its destruction was announced)."""
        self._ciphers.pop(ref, None)

    async def _listen(self) -> None:
        """Follow the announcements of destroyed keys (once; best effort where not permitted)."""
        if self._listening:
            return
        self._listening = True

        async def erased(msg: Any) -> None:
            self.forget(msg.data.decode("ascii", "replace"))

        try:
            await self._host.nc.subscribe(ERASED_SUBJECT, cb=erased)
        except nats.errors.Error as exc:  # the cache's lifetime still bounds a missed announcement
            if self._log is not None:
                self._log.warning("cannot follow destroyed keys", error=str(exc))

    # -- the stream (what an in-memory vault replaces) ------------------------------------------

    async def _erase(self, seq: int) -> None:
        try:
            await self._host.js.delete_msg(VAULT_STREAM, seq)  # erases: the record is overwritten
        except nats.js.errors.NotFoundError:
            pass  # destroyed by someone else meanwhile

    async def _announce(self, ref: str) -> None:
        await self._host.nc.publish(ERASED_SUBJECT, ref.encode())

    async def _get(self, subject: str) -> tuple[int, bytes] | None:
        try:
            msg = await self._host.js.get_last_msg(VAULT_STREAM, subject)
        except nats.js.errors.NotFoundError as exc:
            if exc.err_code == _STREAM_NOT_FOUND:
                raise VaultError(_NOT_PROVISIONED) from None
            return None
        except nats.js.errors.ServiceUnavailableError:
            raise VaultError(_NOT_PROVISIONED + " (JetStream did not answer)") from None
        except nats.errors.TimeoutError:
            raise VaultError("the key vault did not answer in time: is JetStream up?") from None
        except nats.errors.NoRespondersError:
            raise VaultError(_NOT_PROVISIONED + " (no JetStream in this account)") from None
        if msg.seq is None or msg.data is None:
            return None
        return msg.seq, msg.data

    async def _create(self, subject: str, data: bytes) -> None:
        try:
            await self._host.js.publish(subject, data, headers=_EXPECT_NEW)
        except nats.js.errors.APIError as exc:
            if exc.err_code != _WRONG_LAST_SEQUENCE:  # anything but "another process made it first"
                raise VaultError(f"cannot store a key in the vault: {exc.description or exc}") from None
        except nats.errors.NoRespondersError:
            raise VaultError(_NOT_PROVISIONED) from None


_NOT_PROVISIONED = (
    f"the personal key vault (stream {VAULT_STREAM}) is not provisioned in this account: "
    "`citybus up` provisions it with the streams, or run `citybus contracts provision`"
)


class MemoryVault(KeyVault):
    """A vault in this process's memory, for the in-memory bus (:class:`bus.memory.MemoryBus`)."""

    def __init__(self) -> None:
        super().__init__(None)
        self._records: dict[str, tuple[int, bytes]] = {}
        self._seq = 0
        self._listening = True

    async def _get(self, subject: str) -> tuple[int, bytes] | None:
        return self._records.get(subject)

    async def _create(self, subject: str, data: bytes) -> None:
        if subject not in self._records:
            self._seq += 1
            self._records[subject] = (self._seq, data)

    async def _erase(self, seq: int) -> None:
        for subject, (stored, _) in list(self._records.items()):
            if stored == seq:
                del self._records[subject]

    async def _announce(self, ref: str) -> None:
        pass
