"""``bus.store``: compare-and-set records in a JetStream key-value bucket, on a real nats-server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bus import Bus, MemoryBus, Metrics
from bus.store import StoreConflict, StoreError, open_store

pytestmark = pytest.mark.slow


async def test_a_record_changes_only_from_the_revision_it_was_read_at(bus: Bus) -> None:
    store = await open_store(bus, f"test-{uuid.uuid4().hex[:8]}")
    assert await store.get("walk") is None
    first = await store.put("walk", b"one", revision=None)
    with pytest.raises(StoreConflict):
        await store.put("walk", b"again", revision=None)  # it has a record now
    second = await store.put("walk", b"two", revision=first)
    with pytest.raises(StoreConflict):
        await store.put("walk", b"stale", revision=first)  # someone else's change came first
    record = await store.get("walk")
    assert record is not None and (record.value, record.revision) == (b"two", second)
    await store.put("run", b"x", revision=None)
    assert sorted(await store.keys()) == ["run", "walk"]
    again = await open_store(bus, store.bucket)  # binds to the bucket that is there
    assert (await again.get("walk")) == record


async def test_concurrent_writers_each_win_once_per_revision(bus: Bus) -> None:
    store = await open_store(bus, f"test-{uuid.uuid4().hex[:8]}")
    revision = await store.put("count", b"0", revision=None)
    results = await asyncio.gather(
        *(store.put("count", str(n).encode(), revision=revision) for n in range(20)), return_exceptions=True
    )
    assert sum(isinstance(r, int) for r in results) == 1
    assert sum(isinstance(r, StoreConflict) for r in results) == 19


async def test_the_in_memory_bus_says_it_keeps_no_stores() -> None:
    memory = MemoryBus(metrics=Metrics())
    await memory.connect()
    try:
        with pytest.raises(StoreError, match="needs a real nats-server"):
            await open_store(memory, "places")
    finally:
        await memory.drain()
