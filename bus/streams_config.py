"""The ``[streams]`` section: limits, replicas and placement of the streams citybus provisions.

On one server every stream has one copy. On a cluster, ``replicas = 3`` keeps each stream on three
nodes, so one node may die without losing a message or stopping durable publishes; personal and
internal data may need that where public data does not, so replicas and placement tags may be given
per classification::

    [streams]
    replicas = { public = 1, internal = 3, personal = 3 }
    placement_tags = { personal = ["site:city-hall"] }

Decisions, and why:

* **0 means "as the cluster allows".** The default ``replicas = 0`` becomes 1 on one server and the
  local cluster's size (at most 3) under ``citybus up --cluster N`` (:meth:`StreamsConfig.resolved`):
  a laptop and a cluster then both work without editing the file. An external cluster's size is
  not known to citybus, so there 0 means 1, and the deployment guide (``docs/cluster.md``) says to
  set ``replicas`` explicitly.
* **Never lowered by surprise.** How an existing stream is brought in step with this section —
  raised at once, never lowered unless ``allow_lower`` says so, refusals explained — is
  :mod:`bus.provision`'s.
* **A class left out takes the default.** ``{personal = 3}`` keeps public and internal streams at the
  resolved default, so naming only the class that needs more is enough.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["MAX_AUTO_REPLICAS", "StreamsConfig"]

Class = Literal["public", "internal", "personal"]
_Replicas = Annotated[int, msgspec.Meta(ge=0, le=5)]

MAX_AUTO_REPLICAS = 3
"""``replicas = 0`` on a local cluster: three copies survive one lost node; five cost more than they add."""


class StreamsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Limits, replicas and placement of the JetStream streams provisioned from the contract registry.

    The bus takes this Struct itself, as :class:`bus.StreamSettings` (one name for each side).
    """

    max_age: Annotated[float, msgspec.Meta(ge=0)] = 7 * 24 * 3600.0
    """Seconds a message is kept; 0 keeps messages forever (within the other limits)."""
    max_bytes: Annotated[int, msgspec.Meta(ge=-1)] = 1 << 30
    """Bytes a stream may hold before the oldest messages go; -1 is unlimited."""
    max_msgs: Annotated[int, msgspec.Meta(ge=-1)] = -1
    """Messages a stream may hold before the oldest go; -1 is unlimited."""
    duplicate_window: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    """Seconds within which a republished ``Nats-Msg-Id`` (the CloudEvents id) is dropped."""
    replicas: _Replicas | dict[Class, _Replicas] = 0
    """Copies of each stream on a cluster (JetStream allows at most 5): a number for every stream, or
    a table per classification (``{public = 1, personal = 3}``); 0 is automatic (see the module)."""
    placement_cluster: str = ""
    """The cluster (``cluster.name`` of its servers) streams are placed in; empty lets JetStream choose."""
    placement_tags: list[str] | dict[Class, list[str]] = msgspec.field(default_factory=list)
    """Server tags (``server_tags`` in a node's configuration) a stream's replicas must all carry: a
    list for every stream, or a table per classification."""
    storage: Literal["file", "memory"] = "file"
    """Where streams live: ``file`` survives restarts, ``memory`` is faster and does not."""
    allow_lower: bool = False
    """Apply a configured value lower than an existing stream's (replicas, max_bytes, max_msgs, max_age,
    duplicate_window), which drops copies or data; off, the stream keeps its larger value and a warning
    says so (:mod:`bus.provision`). ``citybus contracts provision --allow-lower`` turns it on once."""

    def replicas_for(self, classification: str) -> int:
        """How many copies a stream of ``classification`` gets (0: not resolved yet, see :meth:`resolved`)."""
        if isinstance(self.replicas, int):
            return self.replicas
        return int(self.replicas.get(classification, 0))  # type: ignore[call-overload]

    def tags_for(self, classification: str) -> list[str]:
        """The placement tags of a stream of ``classification`` (empty: anywhere)."""
        if isinstance(self.placement_tags, list):
            return list(self.placement_tags)
        return list(self.placement_tags.get(classification, []))  # type: ignore[call-overload]

    @property
    def most_replicas(self) -> int:
        """The most copies any classification gets: for state that is as precious as any data
        (the key-value buckets of services, the personal key vault)."""
        if isinstance(self.replicas, int):
            return self.replicas
        return max(self.replicas.values(), default=0)

    def resolved(self, cluster_size: int = 1) -> StreamsConfig:
        """This section with every automatic (0) replica count made concrete for ``cluster_size`` nodes.

        A class missing from a per-classification table gets the automatic count too, so the
        result's :meth:`replicas_for` is never 0.
        """
        auto = max(1, min(cluster_size, MAX_AUTO_REPLICAS))
        if isinstance(self.replicas, int):
            return msgspec.structs.replace(self, replicas=self.replicas or auto)
        table: dict[Class, int] = {
            c: self.replicas.get(c, 0) or auto for c in ("public", "internal", "personal")
        }
        return msgspec.structs.replace(self, replicas=table)
