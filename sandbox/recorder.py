"""Recording live subjects: ``citybus record PATTERN... -o FILE``.

Every message on the subjects is written as it arrives (subject, body, headers; the original
``ce-time`` as its place on the replay clock), in chunks flushed at least every second, so a
recording stopped by Ctrl-C, a crash or a full disk is readable up to its last second.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from bus import Bus, RawMessage
from bus.subjects import validate_pattern
from sandbox.recording import RecordingWriter

__all__ = ["record"]


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
) -> int:
    """Record what arrives on ``patterns`` into ``output`` until ``stop`` is set, ``duration``
    seconds have passed or ``limit`` messages were recorded; returns how many were recorded."""
    for pattern in patterns:
        validate_pattern(pattern)
    done = asyncio.Event()
    with RecordingWriter(output, compression=compression) as writer:

        async def on_message(raw: RawMessage) -> None:
            if done.is_set():
                return
            writer.add(raw.subject, raw.data, raw.headers)
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
