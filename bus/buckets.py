"""Key-value buckets made and scaled up: what the account's provisioner does for each declared store.

A service keeps its state in JetStream key-value buckets (:mod:`bus.store`), one stream each
(``KV_<bucket>`` over ``$KV.<bucket>.>``). :func:`provision_buckets` creates the buckets an
account's users declare (``stores``) and brings existing ones in step with ``[streams]``; it runs
as the account's ``provisioner``, after the streams: ``citybus up`` for its configured instances,
``citybus contracts provision`` for a running one, ``citybus sandbox join`` for the instance it
joins. :func:`ensure_bucket` is the one way a bucket is made, whoever makes it.

Decisions, and why:

* **The provisioner makes buckets, not their instances** (under access control). A
  ``STREAM.CREATE`` request carries the stream's configuration in its body, which the broker does
  not check: an instance allowed to create its bucket could create it over any subject of its
  account and read what it captured (:mod:`bus.access.provisioner`). Without access control there
  is no provisioner and nothing to protect, and an instance makes its bucket itself
  (:func:`bus.store.open_store`), as tests and the in-process harness rely on.
* **The stream nats-py would make, with its placement.** One revision per key, a full bucket
  refusing writes (discard new) rather than dropping records, rollups allowed, no deletes of its
  messages, a two-minute duplicate window: the stream nats-py's ``create_key_value`` sends, on
  file storage. Made here rather than by ``create_key_value`` because that drops the placement of
  its ``KeyValueConfig`` (nats-py 2.16): a bucket of personal data would land on any node.
* **Replicated like the data it serves.** A bucket is a service's state (the volunteer platform's
  places, the statistics budget), which can hold personal data: it gets
  :attr:`~bus.streams_config.StreamsConfig.most_replicas` copies and personal data's placement. An
  existing bucket's replicas and placement are brought in step as a stream's are
  (:func:`bus.provision.ensure_stream`: raised, never lowered silently, a move before a scale);
  its other settings are its own and left alone.
* **A bucket over other subjects is refused, not repaired.** Before this version an instance could
  create its bucket's stream itself, with any subjects: one that captures more than
  ``$KV.<bucket>.>`` may hold data its instance may not read, which only an operator can judge, so
  provisioning stops with an error that says how to look and what to delete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from bus import subjects
from bus.bus import Bus
from bus.errors import CityBusError, ConfigError, NotConnectedError
from bus.metrics import Metrics
from bus.provision import ensure_stream, placement_for
from bus.streams_config import StreamsConfig

__all__ = ["DUPLICATE_WINDOW", "bucket_config", "ensure_bucket", "provision_buckets"]

DUPLICATE_WINDOW = 120.0
"""Seconds a bucket's stream remembers message ids: nats-py's (and the nats CLI's) for key-value."""

_SETTING = "streams.replicas"
"""The setting a bucket's replicas come from (the most of any classification), in error messages."""


def bucket_config(bucket: str, settings: StreamsConfig | None, description: str = "") -> api.StreamConfig:
    """The stream of a new bucket ``bucket`` with ``settings``' replicas and placement (see the module)."""
    layout = settings or StreamsConfig()
    return api.StreamConfig(
        name=subjects.store_stream(bucket),
        description=description or f"citybus key-value store {bucket}",
        subjects=[subjects.store_filter(bucket)],
        allow_rollup_hdrs=True,
        deny_delete=True,
        discard=api.DiscardPolicy.NEW,
        duplicate_window=DUPLICATE_WINDOW,
        max_consumers=-1,
        max_msgs=-1,
        max_msgs_per_subject=1,
        num_replicas=layout.most_replicas or 1,
        placement=placement_for(layout, "personal"),
        storage=api.StorageType.FILE,
    )


async def ensure_bucket(
    js: JetStreamContext,
    bucket: str,
    settings: StreamsConfig | None,
    *,
    log: Any,
    metrics: Metrics | None = None,
    description: str = "",
) -> None:
    """Create the bucket ``bucket`` if it is missing; bring an existing one's replicas and placement in
    step with ``settings`` (``None``: leave it as it is). :class:`~bus.errors.ConfigError` for a
    refusal the configuration can fix and for a bucket's stream over other subjects; other refusals
    are nats-py's ``APIError``."""
    stream, layout = subjects.store_stream(bucket), settings or StreamsConfig()
    try:
        have: api.StreamConfig = (await js.stream_info(stream)).config
    except nats.js.errors.NotFoundError:
        wanted = bucket_config(bucket, settings, description)
        await ensure_stream(
            js, wanted, replicas_setting=_SETTING, allow_lower=layout.allow_lower, log=log, metrics=metrics
        )
        return
    own = [subjects.store_filter(bucket)]
    if list(have.subjects or ()) != own:
        raise ConfigError(
            f"stream {stream} is key-value store {bucket}'s but captures {have.subjects} instead of {own}: "
            "an instance of an earlier citybus could create it over any subject, and it may hold messages "
            f"its instance may not read. As the account's operator, look at it (nats stream info {stream}), "
            f"delete it (nats stream rm {stream}) and provision again"
        )
    if settings is None:
        return
    scaled = dataclasses.replace(
        have, num_replicas=layout.most_replicas or 1, placement=placement_for(layout, "personal")
    )
    await ensure_stream(
        js,
        scaled,
        replicas_setting=_SETTING,
        allow_lower=layout.allow_lower,
        log=log,
        metrics=metrics,
        only_if_changed=True,
    )


async def provision_buckets(bus: Bus, buckets: Iterable[str], settings: StreamsConfig | None) -> list[str]:
    """Create or scale up each of ``buckets`` on ``bus`` (an account's provisioner), as
    :func:`ensure_bucket` does with ``settings`` (``None``: the defaults); return their streams."""
    names = []
    for bucket in buckets:
        try:
            await ensure_bucket(bus.js, bucket, settings or StreamsConfig(), log=bus.log, metrics=bus.metrics)
        except nats.js.errors.APIError as exc:
            raise CityBusError(
                f"JetStream refused the key-value store {bucket}: {exc.description or exc}"
            ) from exc
        except (nats.errors.TimeoutError, TimeoutError, nats.errors.NoRespondersError) as exc:
            raise NotConnectedError(
                f"JetStream did not answer provisioning the key-value store {bucket} ({type(exc).__name__}): "
                f"may {bus.user or 'this user'} provision it? An instance added since citybus up started "
                "needs `citybus auth generate` first"
            ) from exc
        names.append(subjects.store_stream(bucket))
    return names
