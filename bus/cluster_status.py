"""``citybus status`` on a NATS cluster: its nodes, and the streams without quorum.

Contributed like any package's rows (entry point ``citybus.status``, name ``nats-cluster``), read
from the scraped ``citybus_cluster_*`` and ``citybus_stream_*`` families of
:mod:`bus.cluster_monitor`; without a cluster there are none, and the tables are left out.
"""

from __future__ import annotations

import msgspec

from bus.status import Scrape, Section, yes_no

__all__ = ["ClusterNodeRow", "NoQuorumRow", "status_sections"]


class ClusterNodeRow(msgspec.Struct, frozen=True, kw_only=True):
    """One node of the cluster (connections and routes ``None`` while it does not answer)."""

    node: str
    up: bool
    connections: int | None
    routes: int | None
    meta_leader: bool


class NoQuorumRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stream without a leader, or whose leader sees no majority of current replicas."""

    account: str
    stream: str
    leader: str | None


def status_sections(scrape: Scrape) -> list[Section]:
    """The ``citybus.status`` entry point: the cluster's nodes and its streams without quorum."""
    up = scrape.gauges("citybus_cluster_node_up", ("node",))
    if not up:
        return []
    connections = scrape.gauges("citybus_cluster_node_connections", ("node",))
    routes = scrape.gauges("citybus_cluster_node_routes", ("node",))
    meta = scrape.gauges("citybus_cluster_meta_leader", ("node",))
    nodes = [
        ClusterNodeRow(
            node=key[0],
            up=value == 1.0,
            connections=int(connections[key]) if key in connections else None,
            routes=int(routes[key]) if key in routes else None,
            meta_leader=meta.get(key, 0.0) == 1.0,
        )
        for key, value in sorted(up.items())
    ]
    leaders = {
        (a, s): n for (a, s, n), value in scrape.gauges("citybus_stream_leader", _LEADER).items() if value
    }
    quorum = scrape.gauges("citybus_stream_quorum", ("account", "stream"))
    lost = [
        NoQuorumRow(account=account, stream=stream, leader=leaders.get((account, stream)))
        for (account, stream), value in sorted(quorum.items())
        if value == 0.0
    ]
    return [
        Section(
            key="cluster_nodes",
            title="NATS cluster nodes",
            columns=("NODE", "UP", "CONNECTIONS", "ROUTES", "META LEADER"),
            cells=[
                (
                    n.node,
                    yes_no(n.up),
                    _number(n.connections),
                    _number(n.routes),
                    "yes" if n.meta_leader else "",
                )
                for n in nodes
            ],
            rows=nodes,
        ),
        Section(
            key="streams_without_quorum",
            title="streams without quorum",
            columns=("ACCOUNT", "STREAM", "LEADER"),
            cells=[(r.account, r.stream, r.leader or "NONE") for r in lost],
            rows=lost,
            empty="none",
        ),
    ]


_LEADER = ("account", "stream", "node")


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)
