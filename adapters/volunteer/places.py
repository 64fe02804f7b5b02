"""The ledger of places: who holds a place on which opportunity, changed only by compare-and-set.

Each opportunity is one record of the platform's key-value bucket (``ctx.key_value("places")``,
:mod:`bus.store`), keyed by its id: the public :class:`~contracts.Opportunity` as it stands (places
left and status kept in step) and the places taken, each named by the volunteer's pseudonymous
*ref* from the key vault (``ctx.person_ref``) — never the volunteer's id, name or contact, so the
bucket holds no personal data in clear.

Decisions, and why:

* **Compare-and-set, not a lock server.** A change is computed from the record at a revision and
  written only if the record is still at that revision (JetStream's
  ``Nats-Expected-Last-Subject-Sequence``); the loser reads again and recomputes. So two platform
  processes sharing the bucket cannot give away one place twice: at most ``places`` refs are ever
  written, whatever the interleaving.
* **A lock per opportunity as well**, within a process: requests for one opportunity are taken
  one after another (their publishes stay in order), and a process does not race itself — a
  conflict then only ever comes from another process.
* **The last record read is cached** and tried first: a process that is alone writes each change
  in one round trip; a conflict refreshes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec

from bus.store import KeyValueStore, StoreConflict, StoreError
from contracts import Opportunity

__all__ = ["Entry", "Places"]

T = TypeVar("T")

_ATTEMPTS: Final = 100
"""Compare-and-set attempts before giving up: each lost one means another writer succeeded."""


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One opportunity in the ledger: its public state and the refs holding its places."""

    opportunity: Opportunity
    taken: tuple[str, ...] = ()
    """The refs (``p-…``) of the volunteers holding a place, sorted."""

    def with_taken(self, taken: tuple[str, ...]) -> Entry:
        """This entry with ``taken`` as the places taken, places left and status in step."""
        return Entry(opportunity=public_state(self.opportunity, len(taken)), taken=tuple(sorted(taken)))


def public_state(opportunity: Opportunity, taken: int) -> Opportunity:
    """``opportunity`` with its places left and status for ``taken`` places taken."""
    left = max(opportunity.places - taken, 0)
    status = "cancelled" if opportunity.status == "cancelled" else ("full" if left == 0 else "open")
    return msgspec.structs.replace(opportunity, places_left=left, status=status)


_ENCODE = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder(Entry)


class Places:
    """The ledger over one key-value bucket."""

    def __init__(self, store: KeyValueStore, on_conflict: Callable[[], None] | None = None) -> None:
        self.store = store
        self.conflicts = 0
        """Compare-and-sets lost to another writer so far."""
        self._on_conflict = on_conflict
        self._cache: dict[str, tuple[Entry, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, opportunity_id: str) -> asyncio.Lock:
        """The lock that takes this process's requests for one opportunity one at a time."""
        lock = self._locks.get(opportunity_id)
        if lock is None:
            lock = self._locks[opportunity_id] = asyncio.Lock()
        return lock

    async def read(self, opportunity_id: str) -> tuple[Entry | None, int | None]:
        """The opportunity's entry and revision as the bucket holds it now."""
        record = await self.store.get(opportunity_id)
        if record is None:
            self._cache.pop(opportunity_id, None)
            return None, None
        entry = _DECODE.decode(record.value)
        self._cache[opportunity_id] = (entry, record.revision)
        return entry, record.revision

    async def entry(self, opportunity_id: str) -> Entry | None:
        """The opportunity's entry (the last one read, or read now)."""
        cached = self._cache.get(opportunity_id)
        if cached is not None:
            return cached[0]
        return (await self.read(opportunity_id))[0]

    async def change(
        self, opportunity_id: str, compute: Callable[[Entry | None], tuple[Entry | None, T]]
    ) -> tuple[Entry | None, T]:
        """Apply ``compute`` to the opportunity's entry by compare-and-set.

        ``compute`` gets the entry (``None``: no such opportunity) and returns the entry to write
        (``None``: write nothing) and an outcome; it is called again on the fresh entry whenever
        another writer got there first. Returns the entry as it then stands, and the outcome.
        """
        cached = self._cache.get(opportunity_id)
        entry, revision = cached if cached is not None else await self.read(opportunity_id)
        for _ in range(_ATTEMPTS):
            new, outcome = compute(entry)
            if new is None:
                return entry, outcome
            try:
                written = await self.store.put(opportunity_id, _ENCODE.encode(new), revision=revision)
            except StoreConflict:
                self.conflicts += 1
                if self._on_conflict is not None:
                    self._on_conflict()
                entry, revision = await self.read(opportunity_id)
                continue
            self._cache[opportunity_id] = (new, written)
            return new, outcome
        raise StoreError(
            f"opportunity {opportunity_id}: {_ATTEMPTS} compare-and-sets in a row lost to other writers"
        )

    async def load(self) -> list[Entry]:
        """Every opportunity in the ledger (read at start, so places left are known at once)."""
        entries = []
        for key in await self.store.keys():
            entry, _ = await self.read(key)
            if entry is not None:
                entries.append(entry)
        return entries
