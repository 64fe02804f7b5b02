"""The privacy budget of each data set and period, spent only by compare-and-set.

A release of personal data under differential privacy spends epsilon (its privacy loss); what a
data set may spend in one period is its *budget*. :class:`Budget` keeps one record per data set and
period in the service's key-value bucket ``budget`` (``ctx.key_value("budget")``, :mod:`bus.store`),
key ``<dataset>.<period>``: epsilon and delta spent so far, how many releases were made, whether
the scheduled final release was made and when the last release was. A release asks
:meth:`Budget.spend` first, and publishes only if it got :class:`Spent`; :class:`Refused` says why
not.

Decisions, and why:

* **Compare-and-set, so two processes cannot overspend.** The spend is computed from the record
  at a revision and written only if the record is still at that revision; the loser reads again
  and decides again. Whatever the interleaving of two service processes sharing the bucket, the
  epsilons written add up to at most the budget (see the two-process test).
* **Spent before released.** The budget is spent, then the table computed and published: a
  process that fails in between has spent budget on nothing — the safe side, a release is never
  published without its spend recorded.
* **The record numbers the releases** of a data set and period (``release`` 1, 2, …), for public
  data too (they spend nothing, epsilon 0), so two processes never publish the same number.
* **A scheduled release is made once.** Every process of the service keeps the same schedule; the
  final release of a period (``final=True``) is refused as already made when the record says so,
  and a provisional one (``unless_after``) when another process released since — so two processes
  make one release, not two, and spend the budget once.
* **A little tolerance for floating point**: 0.1 + 0.2 spent of a budget of 0.3 is within it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec

from bus.store import KeyValueStore, StoreConflict, StoreError

__all__ = [
    "Budget",
    "BudgetRecord",
    "Refused",
    "Spent",
]

_ATTEMPTS: Final = 100
"""Compare-and-set attempts before giving up: each lost one means another writer succeeded."""

_TOLERANCE: Final = 1e-9
"""Epsilon spent beyond the budget by at most this much (floating point) is within it."""


class BudgetRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What a data set spent in one period (one record of the bucket)."""

    spent: float = 0.0
    """Epsilon spent so far."""
    delta: float = 0.0
    """Delta spent so far (basic composition: the sum of the releases' deltas)."""
    releases: int = 0
    """Releases made so far (the last one's number)."""
    final: bool = False
    """Whether the scheduled final release (after the period ended) was made."""
    released_at: float = 0.0
    """When the last release was made (epoch seconds, on the service's clock); 0: never."""


@dataclass(frozen=True, slots=True)
class Spent:
    """The release may go ahead: its number and what is spent now, this release included."""

    release: int
    epsilon: float
    spent: float
    delta: float
    budget: float


@dataclass(frozen=True, slots=True)
class Refused:
    """No release: why, for a person, and whether it was the budget (``exceeded``) or that the
    scheduled release was already made by another process (``exceeded`` false)."""

    reason: str
    epsilon: float
    spent: float
    budget: float
    exceeded: bool


_ENCODE = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder(BudgetRecord)


def _key(dataset: str, period: str) -> str:
    return f"{dataset}.{period}"


class Budget:
    """The budget ledger over one key-value bucket."""

    def __init__(self, store: KeyValueStore, on_conflict: Callable[[], None] | None = None) -> None:
        self.store = store
        self.conflicts = 0
        """Compare-and-sets lost to another writer so far."""
        self._on_conflict = on_conflict

    async def _read(self, key: str) -> tuple[BudgetRecord, int | None]:
        found = await self.store.get(key)
        if found is None or not found.value:
            return BudgetRecord(), None if found is None else found.revision
        return _DECODE.decode(found.value), found.revision

    async def record(self, dataset: str, period: str) -> BudgetRecord:
        """What ``dataset`` spent in ``period`` so far (an empty record if nothing)."""
        return (await self._read(_key(dataset, period)))[0]

    async def spend(
        self,
        dataset: str,
        period: str,
        epsilon: float,
        delta: float,
        budget: float,
        *,
        final: bool = False,
        at: float = 0.0,
        unless_after: float | None = None,
    ) -> Spent | Refused:
        """Spend ``epsilon`` and ``delta`` of ``dataset``'s ``budget`` in ``period`` for one release.

        :param final: the scheduled final release: refused if it was made already.
        :param at: now, on the service's clock (epoch seconds), recorded as the last release's time.
        :param unless_after: a scheduled provisional release: refused if a release was made after
            this time (another process made it).
        """
        key = _key(dataset, period)
        record, revision = await self._read(key)
        for _ in range(_ATTEMPTS):
            if final and record.final:
                return Refused(
                    f"the final release of {dataset} for {period} was already made",
                    epsilon,
                    record.spent,
                    budget,
                    exceeded=False,
                )
            if unless_after is not None and record.releases and record.released_at > unless_after:
                return Refused(
                    f"{dataset} for {period} was released since (release {record.releases})",
                    epsilon,
                    record.spent,
                    budget,
                    exceeded=False,
                )
            spent = record.spent + epsilon
            if epsilon > 0 and spent > budget + _TOLERANCE:
                left = max(budget - record.spent, 0.0)
                return Refused(
                    f"the privacy budget of {dataset} for {period} would be exceeded: a release spends "
                    f"epsilon {epsilon:g}, {record.spent:g} of {budget:g} is spent ({left:g} left)",
                    epsilon,
                    record.spent,
                    budget,
                    exceeded=True,
                )
            new = BudgetRecord(
                spent=spent,
                delta=record.delta + delta,
                releases=record.releases + 1,
                final=record.final or final,
                released_at=max(at, record.released_at),
            )
            try:
                await self.store.put(key, _ENCODE.encode(new), revision=revision)
            except StoreConflict:
                self.conflicts += 1
                if self._on_conflict is not None:
                    self._on_conflict()
                record, revision = await self._read(key)
                continue
            return Spent(
                release=new.releases, epsilon=epsilon, spent=new.spent, delta=new.delta, budget=budget
            )
        raise StoreError(f"budget {key}: {_ATTEMPTS} compare-and-sets in a row lost to other writers")
