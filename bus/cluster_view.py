"""What a NATS cluster looks like from its nodes' monitoring endpoints: nodes, meta leader, streams.

:func:`cluster_view` is a pure function of what each node answered on ``/varz``, ``/routez`` and
``/jsz?accounts=true&streams=true`` (or that it did not answer), so the rules below are read in
one place; :mod:`bus.cluster_monitor` does the reading, the metrics and the health check.

Decisions, and why:

* **A stream is seen through its leader.** Every node that holds a replica lists the stream, but
  only the leader knows whether its followers are current (a follower lists the others as "not
  current", its own view of nothing). A node counts as the leader only if it says so itself: the
  followers of a dead leader name it for a few seconds more.
* **Our own reads overrule a stale leader.** nats-server keeps calling a crashed follower
  "current" for up to 10 s (its Raft lost-quorum interval) and, measured on 2.15.1, never marks a
  SIGKILLed node "offline" (only one that shut down cleanly: 70 s after a kill it still did not).
  So a replica is *offline* when the leader says so, when its node's own endpoint does not answer,
  or when the leader has not heard from it for :data:`SILENT_AFTER` seconds; *current* when the
  leader says it is; *lagging* otherwise (alive, but behind).
* **Quorum is a leader and a majority current** (the leader counts): ``2`` of ``R3``, ``3`` of
  ``R5``, ``1`` of ``R1``. A stream no readable node leads has no quorum. A stream that a node
  listed earlier but no readable node lists now (an R1 stream whose node died) is remembered
  without quorum, until every configured node answers and none lists it: then it was deleted.
* **A node is known** from the configured endpoints and from the peers the readable nodes name
  (meta group, routes, stream replicas). A configured node is up when its endpoint answers; a peer
  without an endpoint here is up while a readable node has a route to it (routes are live TCP
  connections, gone the moment a node dies).
* **Routes are peers, not connections.** nats-server pools several route connections per peer
  (``/varz`` ``routes`` is 8 in a healthy three-node cluster); what an operator asks is "does this
  node reach the others", so a node's routes are the distinct peers ``/routez`` lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "SILENT_AFTER",
    "ClusterView",
    "NodeRead",
    "NodeView",
    "ReplicaView",
    "StreamView",
    "cluster_view",
    "node_name",
]

SILENT_AFTER: Final = 10.0
"""Seconds without a word from a replica after which it is offline (nats-server's lost-quorum interval)."""

State = Literal["current", "lagging", "offline"]
StreamKey = tuple[str, str]
"""(account, stream)."""


@dataclass(frozen=True)
class NodeRead:
    """One configured node's answers, or ``None`` for each that did not come (the node is down)."""

    url: str
    varz: dict[str, Any] | None = None
    routez: dict[str, Any] | None = None
    jsz: dict[str, Any] | None = None

    @property
    def answered(self) -> bool:
        """Whether all three documents came."""
        return self.varz is not None and self.routez is not None and self.jsz is not None


@dataclass(frozen=True)
class NodeView:
    """One node: up or not, and when readable its client connections and the peers it routes to."""

    name: str
    up: bool
    url: str | None = None
    """Its monitoring endpoint, if configured here."""
    connections: int | None = None
    routes: int | None = None
    meta_leader: bool = False


@dataclass(frozen=True)
class ReplicaView:
    """One replica of a stream as its leader sees it (the leader is one too: current, lag 0)."""

    node: str
    state: State
    lag: int = 0


@dataclass(frozen=True)
class StreamView:
    """One stream: its leader (``None``: no readable node leads it), replicas and quorum."""

    account: str
    name: str
    leader: str | None
    replicas: tuple[ReplicaView, ...]
    quorum: bool
    size: int
    """How many replicas it has (0 when no readable node lists it any more)."""

    @property
    def why(self) -> str:
        """Why it has no quorum, in words (empty when it has)."""
        if self.quorum:
            return ""
        if self.leader is None:
            return "no leader" if self.size else "no readable node holds it"
        current = sum(r.state == "current" for r in self.replicas)
        return f"{current} of {self.size} replicas current"


@dataclass(frozen=True)
class ClusterView:
    """The cluster at one moment (``answered`` false: no node answered, nothing below is known)."""

    nodes: tuple[NodeView, ...]
    streams: tuple[StreamView, ...]
    answered: bool
    remembered: frozenset[StreamKey] = field(default_factory=frozenset)
    """The streams to remember for the next read (see the module doc)."""

    def node(self, name: str) -> NodeView | None:
        """The node called ``name``, if known."""
        return next((n for n in self.nodes if n.name == name), None)

    def problems(self, streams: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
        """What is wrong, in words: (what fails durable work, what only degrades the cluster).

        ``streams`` limits the streams judged to those names (in any account); ``None``: all.
        """
        if not self.answered:
            return [], ["no node of the NATS cluster answers on its monitoring endpoint"]
        judged = None if streams is None else set(streams)
        failing, degraded = [], []
        for node in self.nodes:
            if not node.up:
                degraded.append(f"node {node.name} is down" + (f" ({node.url})" if node.url else ""))
        if not any(n.meta_leader for n in self.nodes):
            degraded.append("the JetStream meta group has no leader: no stream can be created or changed")
        behind: dict[str, int] = {}
        down = {n.name for n in self.nodes if not n.up}  # said above, once per node
        for stream in self.streams:
            if judged is not None and stream.name not in judged:
                continue
            if not stream.quorum:
                failing.append(f"stream {stream.account}/{stream.name} has no quorum ({stream.why})")
            for replica in stream.replicas:
                if replica.state != "current" and replica.node not in down:
                    behind[replica.node] = behind.get(replica.node, 0) + 1
        degraded += [f"{count} stream replicas on {node} are not current" for node, count in behind.items()]
        return failing, degraded


def cluster_view(
    reads: Sequence[NodeRead],
    names: Mapping[str, str],
    remembered: Iterable[StreamKey] = (),
) -> ClusterView:
    """The cluster from every configured node's answers; ``names`` maps an endpoint to its node's
    name where known (given, or learned from an earlier ``/varz``); ``remembered`` are the streams
    an earlier view listed."""
    readable = {str(r.varz.get("server_name", r.url)): r for r in reads if r.answered and r.varz}
    down = [node_name(names, r.url) for r in reads if not r.answered]
    unanswered = [NodeView(name=n, up=False, url=r) for n, r in zip(down, _unanswered(reads), strict=True)]
    if not readable:
        return ClusterView(
            nodes=tuple(unanswered), streams=(), answered=False, remembered=frozenset(remembered)
        )
    routed = {name: _peers(read.routez or {}) for name, read in readable.items()}
    peers = set().union(*routed.values()) | _named_peers(readable.values())
    up = set(readable) | {p for p in peers if p not in down and any(p in r for r in routed.values())}
    meta = _meta_leader(readable, up)
    nodes = [
        NodeView(
            name=name,
            up=True,
            url=read.url,
            connections=int((read.varz or {}).get("connections") or 0),
            routes=len(routed[name]),
            meta_leader=name == meta,
        )
        for name, read in readable.items()
    ]
    nodes += unanswered
    known = {n.name for n in nodes}
    nodes += [NodeView(name=p, up=p in up, meta_leader=p == meta) for p in sorted(peers - known)]
    streams = _streams(readable, up)
    everyone = len(readable) == len(reads)
    for key in set(remembered) - set(streams):
        if not everyone:  # nobody readable lists it, but a node that might is down
            streams[key] = StreamView(
                account=key[0], name=key[1], leader=None, replicas=(), quorum=False, size=0
            )
    return ClusterView(
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        streams=tuple(streams[k] for k in sorted(streams)),
        answered=True,
        remembered=frozenset(streams),
    )


def _unanswered(reads: Sequence[NodeRead]) -> list[str]:
    return [r.url for r in reads if not r.answered]


def node_name(names: Mapping[str, str], url: str) -> str:
    """The name of the node at ``url``: its server name where known, else its endpoint's host and port."""
    return names.get(url) or url.split("://", 1)[-1].rstrip("/")


def _peers(routez: dict[str, Any]) -> set[str]:
    return {str(r["remote_name"]) for r in routez.get("routes") or [] if r.get("remote_name")}


def _named_peers(reads: Iterable[NodeRead]) -> set[str]:
    """Every server name the meta group and the streams' replica lists mention."""
    found: set[str] = set()
    for read in reads:
        meta = (read.jsz or {}).get("meta_cluster") or {}
        found.update(str(r["name"]) for r in meta.get("replicas") or [] if r.get("name"))
        for _account, stream in _stream_details(read.jsz or {}):
            replicas = (stream.get("cluster") or {}).get("replicas") or []
            found.update(str(r["name"]) for r in replicas if r.get("name"))
    return {name for name in found if not name.startswith("Server name unknown")}


def _meta_leader(readable: Mapping[str, NodeRead], up: set[str]) -> str | None:
    """The meta leader as it says itself; else the one the readable nodes agree on, if it is up."""
    named = set()
    for name, read in readable.items():
        leader = ((read.jsz or {}).get("meta_cluster") or {}).get("leader")
        if leader == name:
            return name
        named.add(leader)
    if len(named) == 1 and (leader := next(iter(named))) and leader in up and leader not in readable:
        return str(leader)
    return None


def _stream_details(jsz: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            yield str(account.get("name", "")), stream


def _streams(readable: Mapping[str, NodeRead], up: set[str]) -> dict[StreamKey, StreamView]:
    seen: dict[StreamKey, dict[str, dict[str, Any]]] = {}
    for name, read in readable.items():
        for account, stream in _stream_details(read.jsz or {}):
            seen.setdefault((account, str(stream.get("name", ""))), {})[name] = stream.get("cluster") or {}
    return {key: _stream(key, views, up) for key, views in seen.items()}


def _stream(key: StreamKey, views: dict[str, dict[str, Any]], up: set[str]) -> StreamView:
    """One stream from each readable node's ``cluster`` block of it (node → block)."""
    size = max(1 + len(v.get("replicas") or []) for v in views.values())
    majority = size // 2 + 1
    led = [(node, v) for node, v in views.items() if v.get("leader") == node]
    if led:
        # Two nodes claiming it for a moment (a leader that has not noticed it was replaced): the
        # newer leadership wins.
        leader, block = max(led, key=lambda item: str(item[1].get("leader_since", "")))
        replicas = [ReplicaView(node=leader, state="current")]
        replicas += [_replica(r, up) for r in block.get("replicas") or []]
        current = sum(r.state == "current" for r in replicas)
        return StreamView(
            account=key[0],
            name=key[1],
            leader=leader,
            replicas=tuple(sorted(replicas, key=lambda r: r.node)),
            quorum=current >= majority,
            size=size,
        )
    # No readable node leads it. Its leader may be a node not read here (a peer without an endpoint
    # in the list): then the followers that name it, and it, must be a majority.
    named = {str(v.get("leader") or "") for v in views.values()}
    leader = next(iter(named)) if len(named) == 1 else ""
    if leader and leader in up and leader not in views:
        following = sum(v.get("leader") == leader for v in views.values())
        if following + 1 >= majority:
            return StreamView(account=key[0], name=key[1], leader=leader, replicas=(), quorum=True, size=size)
    return StreamView(account=key[0], name=key[1], leader=None, replicas=(), quorum=False, size=size)


def _replica(replica: dict[str, Any], up: set[str]) -> ReplicaView:
    node = str(replica.get("name", ""))
    silent = float(replica.get("active") or 0) / 1e9  # nanoseconds since the leader heard from it
    lag = int(replica.get("lag") or 0)
    if replica.get("offline") or node not in up or (silent > SILENT_AFTER and not replica.get("current")):
        return ReplicaView(node=node, state="offline", lag=lag)
    return ReplicaView(node=node, state="current" if replica.get("current") else "lagging", lag=lag)
