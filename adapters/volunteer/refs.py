"""Pseudonymous refs of volunteers, for the ledger of places: ``p-<24 hex>``.

A ref is HMAC-SHA256(pepper, volunteer id), cut to 24 hex digits — the same shape as the key
vault's refs (``bus.personal``). Until the bus's vault serves them, the platform keeps a pepper of
its own: 32 random bytes in its bucket under :data:`PEPPER_KEY`, written once by compare-and-set
so that every replica uses the same one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from bus.store import KeyValueStore, StoreConflict

__all__ = ["PEPPER_KEY", "Pseudonyms"]

PEPPER_KEY: Final = "_pepper"
"""The bucket key of the pepper (no opportunity id starts with ``_``)."""


class Pseudonyms:
    """Refs of volunteer ids under one pepper."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper

    @classmethod
    async def of(cls, store: KeyValueStore) -> Pseudonyms:
        """The pseudonyms of ``store``'s pepper, made and kept there if it has none yet."""
        record = await store.get(PEPPER_KEY)
        if record is None:
            try:
                await store.put(PEPPER_KEY, secrets.token_bytes(32), revision=None)
            except StoreConflict:
                pass  # another replica wrote it first: use that one
            record = await store.get(PEPPER_KEY)
            assert record is not None
        return cls(record.value)

    async def ref(self, person: str) -> str:
        """The ref of ``person``: the same for the same id, and nothing to read the id back from."""
        digest = hmac.new(self._pepper, person.encode(), hashlib.sha256).hexdigest()
        return f"p-{digest[:24]}"
