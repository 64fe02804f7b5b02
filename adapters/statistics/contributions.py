"""What each person contributed to a data set in a period, kept by their ref only.

A volunteer's :class:`~contracts.VolunteerActivity` adds hours to a cell of the volunteer-hours
table (district × activity) for the period the activity is in. :class:`Contributions` keeps them in
the service's key-value bucket ``contributions`` (``ctx.key_value("contributions")``), one record
per data set, period and person, key ``<dataset>.<period>.<ref>``: the person's pseudonymous ref
from the key vault (``ctx.person_ref``), never their volunteer id, name or contact. The record maps
each item (an opportunity) to the group it counts in and its value::

    {"beach-cleanup-sota": {"group": ["danvik", "lifting"], "value": 3.0, "at": 1535796000.0}}

Decisions, and why:

* **Per item, so repeats and withdrawals are idempotent.** A message delivered twice sets the
  same item to the same value; a withdrawal (``withdrawn``) marks its item withdrawn, and a
  withdrawn item counts for nothing. A release sums a person's items per group.
* **The message's time orders them.** Two service processes share the durable consumer of the
  activity stream, and one process handles messages concurrently, so a sign-up and its withdrawal
  may be applied in either order. Each item keeps the time of the message that set it (``at``,
  its ``ce-time``) and an older message never overwrites a newer one; a withdrawal that comes
  first leaves a withdrawn item, which the late sign-up then does not revive.
* **Compare-and-set** (:mod:`bus.store`), like the budget: two processes changing one person's
  record never lose each other's change.
* **Forgetting a person** (erasure) empties every record of their ref: their contributions count
  in no later release. The key (named by a ref whose key is destroyed, which names no one any more)
  stays, empty; the bucket keeps no history (one revision per key).
* **Where an opportunity counts is kept beside it** (:class:`Opportunities`, key
  ``opportunity.<id>``: its district, activity and whether it was cancelled — public facts). The
  public :class:`~contracts.Opportunity` stream is read by a durable consumer, which two processes
  share and which does not deliver again after a restart, so what it said must be kept where every
  process finds it. Its keys have two parts, a person's record's three: they never mix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Final

import msgspec

from adapters.statistics.periods import Period, PeriodError
from bus.store import KeyValueStore, StoreConflict, StoreError

__all__ = [
    "Contributions",
    "Item",
    "Opportunities",
    "Where",
    "key",
]

_ATTEMPTS: Final = 100
"""Compare-and-set attempts before giving up: each lost one means another writer succeeded."""


class Item(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One item of a person's record: what it adds to which group, and as of when."""

    group: tuple[str, ...] = ()
    """One value per dimension of the data set."""
    value: float = 0.0
    """What it adds (hours)."""
    at: float = 0.0
    """The time of the message that set it (epoch seconds): an older message does not change it."""
    withdrawn: bool = False
    """True once withdrawn: it counts for nothing."""


_ENCODE = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder(dict[str, Item])
_EMPTY: Final = b"{}"


def key(dataset: str, period: str, ref: str) -> str:
    """The key of a person's record of a data set and period."""
    return f"{dataset}.{period}.{ref}"


def _parts(name: str) -> tuple[str, str, str] | None:
    parts = name.split(".")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


class Contributions:
    """The persons' contributions over one key-value bucket."""

    def __init__(self, store: KeyValueStore, on_conflict: Callable[[], None] | None = None) -> None:
        self.store = store
        self._on_conflict = on_conflict
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _read(self, name: str) -> tuple[dict[str, Item], int | None]:
        found = await self.store.get(name)
        if found is None:
            return {}, None
        return (_DECODE.decode(found.value) if found.value else {}), found.revision

    async def _change(self, name: str, compute: Callable[[dict[str, Item]], dict[str, Item] | None]) -> bool:
        """Apply ``compute`` (``None``: nothing to write) by compare-and-set; whether it wrote."""
        async with self._lock(name):  # this process does not race itself
            record, revision = await self._read(name)
            for _ in range(_ATTEMPTS):
                new = compute(record)
                if new is None:
                    return False
                try:
                    await self.store.put(name, _ENCODE.encode(new) if new else _EMPTY, revision=revision)
                except StoreConflict:
                    if self._on_conflict is not None:
                        self._on_conflict()
                    record, revision = await self._read(name)
                    continue
                return True
        raise StoreError(f"contributions {name}: {_ATTEMPTS} compare-and-sets in a row lost to other writers")

    async def put(
        self,
        dataset: str,
        period: str,
        ref: str,
        item: str,
        group: tuple[str, ...],
        value: float,
        *,
        at: float,
        withdrawn: bool = False,
    ) -> bool:
        """Set (or withdraw) one item of the person's record, unless a newer message set it;
        whether what it counts changed (a repeat with a later time only moves the item's time)."""
        new_item = Item(group=group, value=value, at=at, withdrawn=withdrawn)
        changed = False

        def apply(record: dict[str, Item]) -> dict[str, Item] | None:
            nonlocal changed
            old = record.get(item)
            if old is not None and old.at >= at:
                changed = False
                return None
            changed = old is None or msgspec.structs.replace(old, at=at) != new_item
            return {**record, item: new_item}

        await self._change(key(dataset, period, ref), apply)
        return changed

    async def of(self, dataset: str, period: str, ref: str) -> dict[str, Item]:
        """The person's items in the data set and period that count (not withdrawn)."""
        record, _ = await self._read(key(dataset, period, ref))
        return {name: item for name, item in record.items() if not item.withdrawn}

    async def keys(self) -> list[tuple[str, str, str]]:
        """(dataset, period, ref) of every record in the bucket (empty ones included)."""
        return [parts for name in await self.store.keys() if (parts := _parts(name)) is not None]

    async def period(self, dataset: str, period: str) -> dict[str, dict[str, Item]]:
        """Every person's counting items in the data set and period, by ref."""
        found: dict[str, dict[str, Item]] = {}
        for d, p, ref in await self.keys():
            if (d, p) == (dataset, period):
                items = await self.of(d, p, ref)
                if items:
                    found[ref] = items
        return found

    async def periods(self, dataset: str) -> set[str]:
        """The periods of the data set anyone contributed to (records that are not empty)."""
        return {p for d, p, _ in await self.keys() if d == dataset}

    async def refs(self) -> set[str]:
        """The refs of every person with a record that is not empty."""
        found = set()
        for d, p, ref in await self.keys():
            if ref not in found and (await self._read(key(d, p, ref)))[0]:
                found.add(ref)
        return found

    async def expire(self, dataset: str, before: datetime) -> int:
        """Empty every record of ``dataset`` whose period ended at or before ``before`` (kept no longer
        than the activity it was counted from); how many were not empty."""
        expired = 0
        for d, p, r in await self.keys():
            try:
                ended = Period.parse(p).end
            except PeriodError:
                continue  # not a period this service writes: not its to judge
            if d == dataset and ended <= before:
                if await self._change(key(d, p, r), lambda record: {} if record else None):
                    expired += 1
        return expired

    async def forget(self, ref: str) -> int:
        """Empty every record of ``ref`` (the person was erased); how many were not empty."""
        forgotten = 0
        for d, p, r in await self.keys():
            if r == ref and await self._change(key(d, p, r), lambda record: {} if record else None):
                forgotten += 1
        return forgotten


class Where(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where an opportunity's hours count: its district and activity, and whether it was cancelled."""

    district: str
    activity: str
    starts: float = 0.0
    """When it starts (epoch seconds): the period whose table lists its cell."""
    cancelled: bool = False
    at: float = 0.0
    """The time of the message that said so (epoch seconds): an older one does not change it."""


_WHERE = msgspec.json.Decoder(Where)


class Opportunities:
    """Where each opportunity counts, over the same bucket (keys ``opportunity.<id>``)."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store
        self._known: dict[str, Where] = {}

    async def get(self, opportunity_id: str, *, fresh: bool = False) -> Where | None:
        """Where the opportunity counts (the last one read, unless ``fresh``), if known."""
        known = self._known.get(opportunity_id)
        if known is not None and not fresh:
            return known
        found = await self.store.get(f"opportunity.{opportunity_id}")
        if found is None or not found.value:
            return None
        where = self._known[opportunity_id] = _WHERE.decode(found.value)
        return where

    async def put(self, opportunity_id: str, where: Where) -> bool:
        """Record where the opportunity counts, unless a newer message said otherwise; whether it
        changed anything."""
        name = f"opportunity.{opportunity_id}"
        for _ in range(_ATTEMPTS):
            found = await self.store.get(name)
            old = _WHERE.decode(found.value) if found is not None and found.value else None
            if old is not None and (old.at > where.at or old == where):
                self._known[opportunity_id] = old
                return False
            try:
                await self.store.put(
                    name, _ENCODE.encode(where), revision=None if found is None else found.revision
                )
            except StoreConflict:
                continue
            self._known[opportunity_id] = where
            return True
        raise StoreError(f"{name}: {_ATTEMPTS} compare-and-sets in a row lost to other writers")

    async def load(self) -> dict[str, Where]:
        """Every opportunity and where it counts, as the bucket says now."""
        found = {}
        for name in await self.store.keys():
            head, _, opportunity_id = name.partition(".")
            if head == "opportunity" and "." not in opportunity_id:
                where = await self.get(opportunity_id, fresh=True)
                if where is not None:
                    found[opportunity_id] = where
        return found
