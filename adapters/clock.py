"""Clocks for adapters: the wall clock in production, a replayed clock in the sandbox.

An adapter that asks ``ctx.clock.now()`` and sleeps with ``ctx.clock.sleep()`` instead of
``datetime.now()`` and ``asyncio.sleep()`` runs unchanged on replayed time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "WallClock"]


class Clock(Protocol):
    """What an adapter may ask about time."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class WallClock:
    """Real time."""

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""
        await asyncio.sleep(seconds)
