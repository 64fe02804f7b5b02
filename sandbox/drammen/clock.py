"""The builder's clock: virtual time that moves only when the builder moves it.

Every polled adapter runs the same loop: poll its source, then ``await ctx.clock.sleep(delay)``.
On this clock a sleep parks the loop until the builder calls :meth:`DayClock.advance_to` with a
moment at or past its wake-up time, and :meth:`~DayClock.wait_parked` then waits until every loop
it woke has polled and parked again. So the builder can write the next version of a source's file,
move the clock to when it appears, and know that the adapter has read it and published what it
made of it before going on — a whole day in a few seconds, with the same result every time, and
with the adapters' own polling code doing the reading.

How many loops must be parked for the adapters to be idle is for the builder to say
(:meth:`~DayClock.wait_parked`): a loop still working is indistinguishable from one that is gone,
so the clock does not guess.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import datetime, timedelta

__all__ = ["DayClock"]


class DayClock:
    """A :class:`~adapters.clock.Clock` whose time the builder moves (see the module doc)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware start")
        self._now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._parked = asyncio.Event()

    def now(self) -> datetime:
        """The clock's current moment."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Park until the builder moves the clock ``seconds`` (at least 0) past now."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        wake = self._now + timedelta(seconds=max(0.0, seconds))
        heapq.heappush(self._sleepers, (wake, next(self._order), future))
        self._parked.set()
        await future

    @property
    def parked(self) -> int:
        """How many loops are parked now."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def wait_parked(self, count: int, timeout: float) -> None:
        """Wait until ``count`` loops are parked; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while self.parked < count:
                self._parked.clear()
                await self._parked.wait()

    def advance_to(self, moment: datetime) -> int:
        """Move to ``moment`` and wake every loop due by then; returns how many were woken. Then
        :meth:`wait_parked` for them to poll and park again. Time never goes back."""
        if moment < self._now:
            raise ValueError(
                f"the clock is at {self._now.isoformat()}; it cannot go back to {moment.isoformat()}"
            )
        self._now = moment
        woken = 0
        while self._sleepers and self._sleepers[0][0] <= moment:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():  # a cancelled loop's sleep is simply dropped
                future.set_result(None)
                woken += 1
        self._sleepers = [entry for entry in self._sleepers if not entry[2].done()]
        heapq.heapify(self._sleepers)
        return woken
