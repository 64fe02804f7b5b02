"""Sealing a personal message's body with its person's key: AES-256-GCM, the type as associated data.

A sealed body is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``. The message's ``ce-type``
is authenticated with it, so a sealed body cannot be passed off as another contract's. Sealing is
what makes erasure reach copies citybus can no longer rewrite (a recording handed to a pilot, a
backup): once the key is destroyed, no copy can be opened (crypto-shredding). The cipher is the
``cryptography`` package's AES-GCM, which wraps OpenSSL's.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bus.envelope import H_PERSON

__all__ = ["H_PERSON", "KEY_BYTES", "OVERHEAD", "Unreadable", "new_key", "open_body", "seal_body"]


KEY_BYTES: Final = 32
_NONCE: Final = 12
_TAG: Final = 16
OVERHEAD: Final = _NONCE + _TAG
"""How many bytes sealing adds to a body."""


class Unreadable(Exception):
    """A sealed body cannot be opened: its key was destroyed, or it is not what it says it is."""


def new_key() -> bytes:
    """A fresh random key for one person."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


_NONCE_BATCH: Final = 256
_nonces: list[bytes] = []


def _nonce() -> bytes:
    """96 random bits from the operating system's CSPRNG, read 256 nonces at a time (a system call
    per message showed in the profile of sealing). Random nonces are safe far beyond any person's
    number of messages (2^32 per key). Popped, so threads never share one; a forked child starts with
    an empty batch, never its parent's — a nonce used twice under one key would break AES-GCM."""
    while True:
        try:
            return _nonces.pop()
        except IndexError:
            block = os.urandom(_NONCE * _NONCE_BATCH)
            _nonces.extend(block[i : i + _NONCE] for i in range(0, len(block), _NONCE))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_nonces.clear)


def seal_body(cipher: AESGCM, plaintext: bytes, ce_type: str) -> bytes:
    """``plaintext`` sealed under ``cipher`` (a person's key), bound to ``ce_type``."""
    nonce = _nonce()
    return nonce + cipher.encrypt(nonce, plaintext, ce_type.encode())


def open_body(cipher: AESGCM, body: bytes, ce_type: str) -> bytes:
    """The plaintext of a sealed ``body``; :class:`Unreadable` if it is not sealed under this key
    for this type (or was altered)."""
    if len(body) < OVERHEAD:
        raise Unreadable(f"a sealed body has at least {OVERHEAD} bytes, this one {len(body)}")
    try:
        return cipher.decrypt(body[:_NONCE], body[_NONCE:], ce_type.encode())
    except InvalidTag:
        raise Unreadable("the body does not open with the person's key (destroyed, or altered)") from None
