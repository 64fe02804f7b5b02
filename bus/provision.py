"""Provisioning: the registry's streams, the key vault and key-value buckets, made as ``[streams]`` says.

One stream per classification and domain (``CITY_PUBLIC_ENVIRONMENT`` holds
``city.public.environment.>``), with the configured limits, a duplicate window so a republished
``ce-id`` is stored once, the replicas of its classification (``streams.replicas``) and its
placement (``streams.placement_cluster``, ``streams.placement_tags``). A stream that is missing is
created; one that exists is brought in step with the configuration — except where that would lower
what protects its data. The personal key vault (:mod:`bus.personal.vault`) is provisioned with the
streams, with the replicas and placement of personal data; a key-value bucket
(:func:`bus.store.open_store`) goes through :func:`ensure_stream` too.

Decisions, and why:

* **Nothing that protects data is lowered silently.** On a stream that exists, a configured value
  smaller than the stream's — ``replicas``, ``max_bytes``, ``max_msgs``, ``max_age`` or
  ``duplicate_window`` — would drop copies, drop stored messages, or forget ids already stored (a
  producer retrying after a failover would store its message twice) the moment it is applied; a
  typo or a per-classification table missing a class does that as surely as intent. So the stream
  keeps its larger value, each kept setting is logged as a warning (stream, setting, both values,
  what to do) and shown by ``citybus_stream_setting_kept``, and the configured value is applied only
  on request: ``citybus contracts provision --allow-lower``, once, or ``streams.allow_lower = true``
  for a deployment whose file is to be the authority. -1 (``max_bytes``, ``max_msgs``) and 0
  (``max_age``) mean unlimited, the largest. Raising is applied: JetStream scales a stream up and
  copies its messages to the new replicas.
* **Storage is refused before asking.** JetStream cannot turn a file stream into a memory one or
  back (err 10052); the error says so and what to do, instead of the server's words.
* **A move before a scale.** A changed placement moves a stream (JetStream copies it to the new
  peers before it leaves the old ones, so a move is applied), but JetStream refuses to move and
  scale in one update (10123) and refuses any update while a move runs (10124): the move goes
  first, and the replica change is left for the next provisioning, with a warning saying so.
* **The server's refusals say what to fix.** ``replicas > 1`` on a server that is not clustered
  (10074), more replicas than nodes (10005 "no suitable peers"), placement tags no node carries
  (10005 "tags not matched"), no room (10005 "insufficient storage", 10023): each is a
  :class:`~bus.errors.ConfigError` naming the stream, the setting and the fix. The codes were read
  from nats-server 2.x, not from its documentation.
* **Key-value buckets: the most replicas, personal placement.** A bucket is a service's state (the
  volunteer platform's places, the statistics budget), which can hold personal data, so it gets
  :attr:`~bus.streams_config.StreamsConfig.most_replicas` and personal data's placement tags.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final

import nats.js.errors
from nats.js import JetStreamContext, api

from bus import subjects
from bus.config import Config
from bus.connection import server_list
from bus.errors import ConfigError
from bus.metrics import Metrics
from bus.personal.vault import VAULT_STREAM, vault_stream_config
from bus.streams_config import StreamsConfig
from contracts import Registry

__all__ = [
    "PROTECTED",
    "UNAVAILABLE_FOR",
    "Kept",
    "client_streams",
    "ensure_stream",
    "placement_for",
    "provision_streams",
    "reconcile",
    "refusal",
    "stream_config",
]

UNAVAILABLE_FOR: Final = 10.0
"""Seconds :func:`provision_streams` waits out JetStream answering 503 "temporarily unavailable"."""

PROTECTED: Final[dict[str, float | None]] = {
    "num_replicas": None,
    "max_bytes": -1,
    "max_msgs": -1,
    "max_age": 0,
    "duplicate_window": None,
}
"""The stream settings never lowered silently, each with its value meaning "unlimited" (if any)."""

_SETTING: Final = {"num_replicas": "replicas"}
"""How ``[streams]`` names a JetStream setting where the names differ."""

_ALLOW_LOWER: Final = "citybus contracts provision --allow-lower (or streams.allow_lower = true)"


@dataclass(frozen=True, slots=True)
class Kept:
    """A setting of an existing stream that the configuration asks to lower."""

    stream: str
    setting: str
    """The ``[streams]`` name (``replicas``, ``max_bytes`` …)."""
    existing: Any
    configured: Any


def client_streams(config: Config, url: str, *, external: bool) -> StreamsConfig:
    """``[streams]`` as a client command (``citybus contracts provision``, a sandbox join) provisions
    it: automatic replicas resolved as the running ``citybus up`` resolved them — one per node of its
    ``url`` (at most 3) — or 1 against a server given by URL (``external``), as the runtime does."""
    size = 1 if external else max(config.server.cluster_size, len(server_list(url)))
    return config.streams.resolved(size)


def placement_for(settings: StreamsConfig, classification: str) -> api.Placement | None:
    """Where a stream of ``classification`` must live (``None``: wherever JetStream chooses)."""
    tags = settings.tags_for(classification)
    if not (settings.placement_cluster or tags):
        return None
    return api.Placement(cluster=settings.placement_cluster or None, tags=tags or None)


def stream_config(
    name: str, subject: str, description: str, settings: StreamsConfig, classification: str
) -> api.StreamConfig:
    """The configuration of one stream of the registry, of ``classification``."""
    return api.StreamConfig(
        name=name,
        description=description,
        subjects=[subject],
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        max_age=settings.max_age,
        max_bytes=settings.max_bytes,
        max_msgs=settings.max_msgs,
        duplicate_window=settings.duplicate_window,
        num_replicas=settings.replicas_for(classification) or 1,
        placement=placement_for(settings, classification),
        storage=api.StorageType(settings.storage),
    )


def _size(value: float, unlimited: float | None) -> float:
    return math.inf if value == unlimited else value


def reconcile(
    existing: api.StreamConfig, wanted: api.StreamConfig, *, allow_lower: bool
) -> tuple[api.StreamConfig, list[Kept]]:
    """``wanted`` as it may be applied to a stream configured ``existing``, and the settings it
    lowers (kept at ``existing``'s value unless ``allow_lower``). A setting left ``None`` in
    ``wanted`` (the server's default) is not compared."""
    keep: dict[str, Any] = {}
    lowered: list[Kept] = []
    for field, unlimited in PROTECTED.items():
        have, want = getattr(existing, field), getattr(wanted, field)
        if have is None or want is None or _size(want, unlimited) >= _size(have, unlimited):
            continue
        lowered.append(Kept(str(wanted.name), _SETTING.get(field, field), have, want))
        if not allow_lower:
            keep[field] = have
    return dataclasses.replace(wanted, **keep), lowered


def _where(placement: api.Placement | None) -> tuple[str, tuple[str, ...]]:
    if placement is None:
        return "", ()
    return placement.cluster or "", tuple(sorted(placement.tags or ()))


async def ensure_stream(
    js: JetStreamContext,
    wanted: api.StreamConfig,
    *,
    replicas_setting: str,
    allow_lower: bool,
    log: Any,
    metrics: Metrics | None = None,
    only_if_changed: bool = False,
) -> None:
    """Create the stream ``wanted`` describes, or bring the existing one in step (see the module).

    ``replicas_setting`` names the setting its replicas come from in error messages
    (``streams.replicas.personal``). ``only_if_changed`` leaves a stream that needs no change
    untouched (a key-value bucket's user may read it, not update it).
    Raises :class:`~bus.errors.ConfigError` for a refusal the configuration can fix; other refusals
    are nats-py's ``APIError``."""
    name = str(wanted.name)
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        await _ask(js.add_stream(wanted), wanted, replicas_setting)
        log.info("stream created", stream=name, replicas=wanted.num_replicas)
        return
    have: api.StreamConfig = info.config
    if have.storage is not None and wanted.storage is not None and have.storage != wanted.storage:
        raise _storage_error(name, have.storage, wanted.storage)
    config, lowered = reconcile(have, wanted, allow_lower=allow_lower)
    for k in lowered:
        if allow_lower:
            log.warning(
                "stream setting lowered", stream=name, setting=k.setting, was=k.existing, to=k.configured
            )
        else:
            log.warning(
                "stream setting kept",
                stream=name,
                setting=k.setting,
                existing=k.existing,
                configured=k.configured,
                fix=f"the stream keeps the larger value; to lower it (drops data or copies): {_ALLOW_LOWER}",
            )
    if metrics is not None:
        kept = {k.setting for k in lowered if not allow_lower}
        for setting in (_SETTING.get(f, f) for f in PROTECTED):
            if setting in kept:
                metrics.stream_setting_kept.labels(name, setting).set(1)
            else:
                with contextlib.suppress(KeyError):  # never kept: no series to clear
                    metrics.stream_setting_kept.remove(name, setting)
    moving = _where(have.placement) != _where(config.placement)
    if moving and config.num_replicas != have.num_replicas:
        log.warning(
            "stream moves before it scales",
            stream=name,
            replicas=have.num_replicas,
            configured=config.num_replicas,
            fix="JetStream moves and scales a stream in separate steps: provision again once the move "
            "is done (citybus contracts provision)",
        )
        config = dataclasses.replace(config, num_replicas=have.num_replicas)
    if only_if_changed and config == have:
        return
    try:
        await _ask(js.update_stream(config), config, replicas_setting)
    except nats.js.errors.APIError as exc:
        if exc.err_code != 10124:  # JSStreamMoveInProgressF
            raise
        log.warning("stream is moving: its settings are applied by the next provisioning", stream=name)
        return
    if (config.num_replicas or 1) > (have.num_replicas or 1):
        log.info("stream replicas raised", stream=name, was=have.num_replicas, now=config.num_replicas)
    if moving:
        log.info("stream moving", stream=name, placement=config.placement)


async def _ask(request: Any, config: api.StreamConfig, replicas_setting: str) -> Any:
    """Await a stream request, turning a refusal the configuration can fix into a ConfigError."""
    try:
        return await request
    except nats.js.errors.APIError as exc:
        problem = refusal(exc, config, replicas_setting)
        if problem is None:
            raise
        raise problem from exc


def refusal(
    exc: nats.js.errors.APIError, config: api.StreamConfig, replicas_setting: str
) -> ConfigError | None:
    """What to fix when JetStream refused ``config``; ``None`` for a refusal that is not the
    configuration's (see the module for the codes)."""
    what, n, text = f"stream {config.name}", config.num_replicas or 1, exc.description or ""
    cluster, tags = _where(config.placement)
    room = f"{n} replica(s) of up to {config.max_bytes} bytes (streams.max_bytes)"
    if exc.err_code == 10074:  # JSStreamReplicasNotSupportedErr
        return ConfigError(
            f"{replicas_setting} = {n} for {what}, but the NATS server is not clustered: one server "
            f"keeps one copy. Set {replicas_setting} = 1 (or 0: automatic), or run a cluster "
            "(`citybus up --cluster 3`, or nats.url naming the nodes of one)"
        )
    if exc.err_code == 10005 and "tags not matched" in text:  # JSClusterNoPeersErrF
        return ConfigError(
            f"{what} must be placed on nodes tagged {list(tags)} (streams.placement_tags), and the cluster "
            f"has not {n} such node(s) up: give nodes these tags (server_tags in each node's configuration), "
            "or change streams.placement_tags"
        )
    if exc.err_code == 10005 and "insufficient storage" in text:
        return ConfigError(
            f"JetStream has no room for {what}: {room}. Lower streams.max_bytes, or give the nodes more "
            "JetStream storage (max_file_store, max_memory_store)"
        )
    if exc.err_code == 10005:
        where = f" of cluster {cluster!r} (streams.placement_cluster)" if cluster else ""
        return ConfigError(
            f"{replicas_setting} = {n} for {what}, but JetStream found no {n} node(s){where} up to hold "
            f"them: set {replicas_setting} to at most the cluster's nodes (3 under `citybus up "
            "--cluster 3`), start the nodes that are missing, or check the placement settings"
        )
    if exc.err_code == 10023:  # JSInsufficientResourcesErr
        return ConfigError(
            f"JetStream has not the resources for {what}: {room}. Lower streams.max_bytes or "
            f"{replicas_setting}, or raise the account's JetStream limits"
        )
    if exc.err_code == 10052 and "storage" in text:  # JSStreamInvalidConfigF, storage type changed
        return _storage_error(str(config.name), None, config.storage)
    if exc.err_code == 10052:  # the same code for any setting the server finds invalid
        return ConfigError(f"JetStream refused the settings of {what}: {text} (the [streams] section)")
    return None


def _storage_error(name: str, have: Any, want: Any) -> ConfigError:
    kept = f" is kept in {api.StorageType(have).value} storage, and" if have is not None else ""
    return ConfigError(
        f"stream {name}{kept} JetStream cannot change a stream's storage to {api.StorageType(want).value} "
        "(streams.storage). Set streams.storage back, or move the data yourself: back the stream up "
        "(nats stream backup), delete it, provision again and restore what you need"
    )


def _replicas_setting(settings: StreamsConfig, classification: str) -> str:
    return "streams.replicas" if isinstance(settings.replicas, int) else f"streams.replicas.{classification}"


async def provision_streams(
    js: JetStreamContext,
    registry: Registry,
    settings: StreamsConfig | None,
    log: Any,
    metrics: Metrics | None = None,
) -> list[str]:
    """Create or update one stream per classification and domain (and the key vault where the
    registry seals personal data) as ``settings`` say (``None``: the defaults); return their names.

    JetStream answers 503 ("temporarily unavailable") for a moment after a server started or
    reloaded its configuration (a ``citybus sandbox join`` reloads it just before provisioning):
    that answer is waited out, up to :data:`UNAVAILABLE_FOR` seconds, as any other is not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + UNAVAILABLE_FOR
    while True:
        try:
            return await _provision(js, registry, settings or StreamsConfig(), log, metrics)
        except nats.js.errors.ServiceUnavailableError:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def _provision(
    js: JetStreamContext, registry: Registry, settings: StreamsConfig, log: Any, metrics: Metrics | None
) -> list[str]:
    names = []
    allow_lower = settings.allow_lower
    for classification, domain in registry.domains():
        name = subjects.stream_name(classification, domain)
        config = stream_config(
            name,
            subjects.domain_filter(classification, domain),
            f"citybus {classification.value} {domain} messages",
            settings,
            classification.value,
        )
        setting = _replicas_setting(settings, classification.value)
        await ensure_stream(
            js, config, replicas_setting=setting, allow_lower=allow_lower, log=log, metrics=metrics
        )
        names.append(name)
    if any(cls.__contract__.sealed for cls in registry):
        # The personal key vault (bus.personal.vault): where the registry has personal data to seal.
        vault = vault_stream_config(
            settings.replicas_for("personal") or 1, settings.storage, placement_for(settings, "personal")
        )
        setting = _replicas_setting(settings, "personal")
        await ensure_stream(
            js, vault, replicas_setting=setting, allow_lower=allow_lower, log=log, metrics=metrics
        )
        names.append(VAULT_STREAM)
    return names
