"""Compare-and-set records in a JetStream key-value bucket: state several processes may change.

A service that hands out something scarce (the volunteer platform's places) must not give it away
twice, even when two replicas answer at once. A :class:`KeyValueStore` keeps one record per key in
a JetStream key-value bucket (file storage, the last revision only) and changes it only by
compare-and-set: :meth:`KeyValueStore.put` names the revision the change was computed from, and
JetStream refuses it (:class:`StoreConflict`) when another writer got there first — the caller
reads again and recomputes. Adapters open their own buckets through ``ctx.key_value(name)``
(:func:`bus.subjects.store_bucket`), which the access model grants that instance and no other.

Decisions, and why:

* **Here in ``bus``**, because adapters never talk to nats-py: nats-py's key-value client and
  its errors stay behind this border, wrapped in citybus's own.
* **Replicated like the data it serves.** Given ``[streams]``, a bucket is created with
  :attr:`~bus.streams_config.StreamsConfig.most_replicas` copies and personal data's placement (a
  service's state can hold personal data), and an existing bucket with fewer copies is scaled up
  the way a stream is (:func:`bus.provision.ensure_stream`: never lowered silently). Under access
  control an instance's user may not update its bucket (see :func:`_scale`): a warning names the
  operator's command, and the bucket works on with the copies it has.
* **Keys are listed from the stream's state** (``STREAM.INFO`` with a subjects filter), not by a
  watcher: a watcher is a consumer, and a user that may create consumers may name any deliver
  subject.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import api
from nats.js.kv import KeyValue

from bus import subjects
from bus.bus import Bus
from bus.errors import CityBusError, NotConnectedError
from bus.provision import ensure_stream, placement_for, reconcile, refusal
from bus.reading import stream_subjects
from bus.streams_config import StreamsConfig

__all__ = ["KeyValueStore", "Record", "StoreConflict", "StoreError", "open_store"]


class StoreError(CityBusError):
    """A key-value store could not be opened, read or written; the message says why."""


class StoreConflict(StoreError):
    """A compare-and-set lost: the record changed since the revision it was computed from."""


@dataclass(frozen=True, slots=True)
class Record:
    """One key's value and the revision it has (what a change names to compare and set)."""

    value: bytes
    revision: int


class KeyValueStore:
    """One JetStream key-value bucket, read and changed by compare-and-set."""

    def __init__(self, bus: Bus, bucket: str, kv: KeyValue) -> None:
        self.bus = bus
        self.bucket = bucket
        self._kv = kv

    async def get(self, key: str) -> Record | None:
        """The key's record, or ``None`` when it has none (never written, or deleted)."""
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.TimeoutError, TimeoutError) as exc:
            raise StoreError(f"the key-value store {self.bucket} did not answer reading {key!r}") from exc
        return Record(bytes(entry.value or b""), int(entry.revision or 0))

    async def put(self, key: str, value: bytes, *, revision: int | None) -> int:
        """Write ``value`` if the key is still at ``revision`` (``None``: if it has no record yet);
        return the new revision. :class:`StoreConflict` when another writer changed it first."""
        try:
            if revision is None:
                return int(await self._kv.create(key, value))
            return int(await self._kv.update(key, value, last=revision))
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise StoreConflict(f"{self.bucket}/{key} changed since revision {revision}") from exc
        except nats.js.errors.APIError as exc:
            if exc.err_code == 10071:  # JSStreamWrongLastSequenceErrF: the same conflict, raw
                raise StoreConflict(f"{self.bucket}/{key} changed since revision {revision}") from exc
            raise StoreError(f"the key-value store {self.bucket} refused {key!r}: {exc.description}") from exc
        except (nats.errors.TimeoutError, TimeoutError) as exc:
            raise StoreError(f"the key-value store {self.bucket} did not answer writing {key!r}") from exc

    async def keys(self) -> list[str]:
        """Every key that holds a record, in no particular order."""
        prefix = subjects.store_filter(self.bucket)[:-1]
        try:
            found = await stream_subjects(self.bus, subjects.store_stream(self.bucket), prefix + ">")
        except LookupError as exc:
            raise StoreError(f"cannot list the key-value store {self.bucket}: {exc}") from exc
        return [subject[len(prefix) :] for subject in found]


async def open_store(
    bus: Bus, bucket: str, *, description: str = "", streams: StreamsConfig | None = None
) -> KeyValueStore:
    """The bucket ``bucket``, created (file storage, one revision per key) if it does not exist.

    ``streams`` (the resolved ``[streams]``) gives it its replicas and placement, and scales up an
    existing bucket with fewer copies; without it a new bucket has one copy and an existing one is
    left as it is. :class:`~bus.errors.ConfigError` when the cluster cannot hold those copies."""
    js = bus.js
    layout = streams or StreamsConfig()
    replicas, placement = layout.most_replicas or 1, placement_for(layout, "personal")
    if not hasattr(js, "key_value"):  # the in-memory bus's JetStream has streams, not key-value stores
        raise StoreError(
            f"the key-value store {bucket} needs a real nats-server: the in-memory bus keeps none "
            "(in a test: AdapterHarness(..., bus=a connected Bus))"
        )
    try:
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            config: dict[str, Any] = {"bucket": bucket, "history": 1, "storage": api.StorageType.FILE}
            config.update(replicas=replicas, placement=placement)
            kv = await js.create_key_value(api.KeyValueConfig(description=description or None, **config))
        else:
            if streams is not None:
                await _scale(bus, bucket, replicas, placement, streams.allow_lower)
    except nats.js.errors.APIError as exc:
        asked = api.StreamConfig(
            name=subjects.store_stream(bucket), num_replicas=replicas, placement=placement
        )
        problem = refusal(exc, asked, "streams.replicas")
        if problem is not None:
            raise problem from exc
        raise StoreError(f"JetStream refused the key-value store {bucket}: {exc.description or exc}") from exc
    except (nats.errors.TimeoutError, TimeoutError, nats.errors.NoRespondersError) as exc:
        raise NotConnectedError(
            f"JetStream did not answer opening the key-value store {bucket} ({type(exc).__name__}): "
            "is JetStream enabled, and may this user keep the store?"
        ) from exc
    return KeyValueStore(bus, bucket, kv)


async def _scale(
    bus: Bus, bucket: str, replicas: int, placement: api.Placement | None, allow_lower: bool
) -> None:
    """Bring an existing bucket's replicas and placement in step (see the module)."""
    js, stream = bus.js, subjects.store_stream(bucket)
    have = (await js.stream_info(stream)).config
    wanted = dataclasses.replace(have, num_replicas=replicas, placement=placement)
    if bus.user:
        # Under access control an instance may create its bucket but not update it: an update
        # could point the bucket's stream at other subjects and read them (bus/access/tenancy.py).
        if reconcile(have, wanted, allow_lower=allow_lower)[0] != have:
            bus.log.warning(
                "key-value store not scaled",
                bucket=bucket,
                replicas=have.num_replicas,
                configured=replicas,
                reason="under access control an instance may not update its bucket",
                fix=f"run `nats stream edit {stream} --replicas {replicas}` as an operator of the account",
            )
        return
    await ensure_stream(
        js,
        wanted,
        replicas_setting="streams.replicas",
        allow_lower=allow_lower,
        log=bus.log,
        metrics=bus.metrics,
        only_if_changed=True,
    )
