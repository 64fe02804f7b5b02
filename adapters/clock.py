"""Clocks for adapters: the wall clock in production, a replayed clock in the sandbox.

:class:`BusClock` follows the time a replay publishes on ``citybus.clock.<instance>``.

An adapter that asks ``ctx.clock.now()`` and sleeps with ``ctx.clock.sleep()`` instead of
``datetime.now()`` and ``asyncio.sleep()`` runs unchanged on replayed time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, Protocol

import msgspec

from bus import Bus, RawMessage, Subscription
from bus.codec import decode_bytes
from bus.errors import UndecodableError
from bus.subjects import clock_subject

__all__ = ["BusClock", "Clock", "ClockTick", "ReplayState", "WallClock"]


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


ReplayState = Literal["starting", "playing", "paused", "finished"]
"""What a replay is doing (its clock moves only while ``playing``)."""


class ClockTick(msgspec.Struct, frozen=True, kw_only=True):
    """The time a replay says it is, published on ``citybus.clock.<instance>`` every
    ``clock_interval`` seconds and at every change (a pause, a seek, a new speed), as JSON."""

    time: datetime
    """The replayed time at the moment of the tick (UTC)."""
    speed: float
    """How many seconds of replayed time pass in one real second while playing (0: as fast as possible)."""
    state: ReplayState
    epoch: int = 0
    """Counts the replay's seeks: a follower's clock jumps (and its sleeps move along) when it changes."""


_TICK: Final = msgspec.json.Decoder(ClockTick)


class BusClock:
    """The time a replay keeps, as it publishes it on ``citybus.clock.<instance>``.

    An instance in ``SANDBOX`` (``account = "sandbox"``, or ``clock = "sandbox"``) gets this clock
    unless it says ``clock = "wall"``: its ``ctx.clock.now()`` is the replayed time, and
    ``ctx.clock.sleep(3600)`` lasts one hour of the replay — a minute at 60×, for ever while it is
    paused. Between ticks the time is extrapolated at the replay's speed;
    before the first tick it is the wall clock's.
    """

    def __init__(self, bus: Bus, instance: str, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._bus = bus
        self.instance = instance
        self._mono = monotonic
        self._tick: ClockTick | None = None
        self._at = 0.0
        self._jumped = timedelta(0)  # the sum of the jumps the replay's time made (seeks, loops)
        self._changed = asyncio.Event()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Follow the replay's clock subject."""
        if self._subscription is None:
            self._subscription = await self._bus.subscribe_raw(clock_subject(self.instance), self._on_tick)

    async def close(self) -> None:
        """Stop following it."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _on_tick(self, raw: RawMessage) -> None:
        try:
            tick = decode_bytes(_TICK, raw.data)
        except UndecodableError:  # anyone allowed to publish here may send anything, 100 000 "[" too
            return  # not a clock tick: the time stays what it was
        if self._tick is not None and tick.epoch != self._tick.epoch:
            self._jumped += tick.time - self.now()  # a seek: sleeps keep what they had left
        self._tick = tick
        self._at = self._mono()
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def last_tick(self) -> ClockTick | None:
        """The replay's latest tick (``None`` before the first)."""
        return self._tick

    @property
    def following(self) -> bool:
        """Whether a tick has arrived (else :meth:`now` is the wall clock's)."""
        return self._tick is not None

    async def wait_following(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the replay's first tick; return whether it came."""
        try:
            async with asyncio.timeout(timeout):
                while self._tick is None:
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def _rate(self) -> float:
        tick = self._tick
        return tick.speed if tick is not None and tick.state == "playing" else 0.0

    def now(self) -> datetime:
        """The replayed time now (UTC)."""
        tick = self._tick
        if tick is None:
            return datetime.now(UTC)
        return tick.time + timedelta(seconds=(self._mono() - self._at) * self._rate())

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` of replayed time have passed (counted from the replay's first tick
        when it has not ticked yet; a seek moves the end of the sleep with it)."""
        while self._tick is None:
            await self._changed.wait()
        target = self.now() + timedelta(seconds=seconds)
        jumped = self._jumped
        while (left := (target - self.now()).total_seconds()) > 0 or self._jumped != jumped:
            if self._jumped != jumped:
                target += self._jumped - jumped
                jumped = self._jumped
                continue
            rate = self._rate()
            changed = self._changed
            try:  # wake at the expected moment, or at the next tick (a pause, a seek, a new speed)
                await asyncio.wait_for(changed.wait(), left / rate if rate > 0 else None)
            except TimeoutError:
                pass
