"""``bus.store``: compare-and-set records in a JetStream key-value bucket, on a real nats-server."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.js import api

from bus import Bus, MemoryBus, Metrics
from bus.errors import ConfigError
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


async def test_a_bucket_made_here_keeps_its_own_keys_only(bus: Bus) -> None:
    """Without access control an instance makes its bucket itself, as the provisioner would."""
    store = await open_store(bus, f"test-{uuid.uuid4().hex[:8]}", description="state of a test")
    config = (await bus.js.stream_info(f"KV_{store.bucket}")).config
    assert config.subjects == [f"$KV.{store.bucket}.>"] and config.description == "state of a test"
    assert config.max_msgs_per_subject == 1 and config.storage == api.StorageType.FILE and config.deny_delete


async def test_a_bucket_over_other_subjects_is_refused_with_what_to_do(bus: Bus) -> None:
    """As an instance of an earlier citybus could make it, to read others' subjects."""
    bucket = f"test-{uuid.uuid4().hex[:8]}"
    forged = api.StreamConfig(name=f"KV_{bucket}", subjects=[f"elsewhere-{bucket}.>"], max_msgs_per_subject=1)
    await bus.js.add_stream(forged)
    refused = rf"captures \['elsewhere-{bucket}.>'\].*nats stream rm KV_{bucket}"
    with pytest.raises(ConfigError, match=refused):
        await open_store(bus, bucket)


async def test_the_in_memory_bus_says_it_keeps_no_stores() -> None:
    memory = MemoryBus(metrics=Metrics())
    await memory.connect()
    try:
        with pytest.raises(StoreError, match="needs a real nats-server"):
            await open_store(memory, "places")
    finally:
        await memory.drain()
