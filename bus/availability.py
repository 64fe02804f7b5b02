"""Why a stream did not store a durable publish, and how long to keep trying while it cannot.

On a NATS cluster a stream stores a message once its leader has it on a majority of the stream's
replicas. With too few nodes up (two of three dead) a stream has no leader, or a leader without a
quorum, and no durable publish can succeed until the nodes return; core publish/subscribe on the
surviving nodes goes on. :func:`diagnose` tells which it is, from the stream's own state
(``$JS.API.STREAM.INFO``), for the error a durable publish raises when it gives up
(:class:`~bus.errors.JetStreamUnavailableError`); :class:`Outages` remembers the streams that say
they cannot store, so that the next durable publishes to them give up early.

Decisions, and why:

- **Diagnosed when a publish gives up, within its timeout** (its last :data:`DIAGNOSIS` seconds,
  at most a quarter of it). The attempts alone cannot tell "no leader" from "no such stream" (both
  are a 503, no responders), nor a leader waiting for its replicas from a slow one (both are a
  timeout); the stream's info can, and a node answers it from its own view without a leader.
- **What the attempts saw, where the info is not readable.** A producer under access control may
  not read a stream's state, and with most nodes down no node may answer: the error then says
  what the attempts saw and the likely causes, and nothing is remembered.
- **A known outage fails fast** (a circuit breaker). The first durable publish to a stream that
  cannot store waits out its whole timeout: a leader election after one node's death takes
  seconds (nats-server's election timeouts are 4 to 9 s), and a publish should ride it out. If
  the stream's own state then says it has no leader or no quorum, or JetStream says it is
  unavailable, the stream is remembered, and each later publish to it gives up after
  :data:`PROBE` seconds without an acknowledgement, until one is stored. A source adapter
  publishing every second is told so at once instead of blocking 30 s on each message, and its
  first publish after the nodes return goes through. Only on the stream's own word: a lost
  connection (one server restarting) or an unreadable state keeps the whole timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Literal, NamedTuple

import msgspec

from bus import subjects
from bus.connection import TRANSIENT, Connection
from bus.errors import CityBusError, PermissionDeniedError

__all__ = ["DIAGNOSIS", "PROBE", "RESUME", "Diagnosis", "Outages", "Seen", "diagnose", "from_info"]

DIAGNOSIS: Final = 1.0
"""The longest a publish that gives up spends asking the stream why (see the module)."""
PROBE: Final = 1.0
"""Seconds a durable publish to a stream in a known outage waits for an acknowledgement."""

Seen = Literal["nobody", "unconfirmed", "disconnected"]
"""What the last attempt of a publish met: no server storing the subject (a 503), no acknowledgement
in time, or no connection."""

RESUME: Final = (
    "Bring its nodes back: durable publishing to it resumes by itself once a majority is up (core "
    "publish/subscribe works meanwhile)"
)


class _Peer(msgspec.Struct):
    name: str = ""
    current: bool = False
    offline: bool = False


class _Cluster(msgspec.Struct):
    leader: str | None = None
    replicas: list[_Peer] = msgspec.field(default_factory=list)


class _Config(msgspec.Struct):
    num_replicas: int = 1


class _ApiError(msgspec.Struct):
    code: int = 0
    description: str = ""


class _Info(msgspec.Struct):
    """The parts of JetStream's stream info that say whether the stream can store."""

    config: _Config = msgspec.field(default_factory=_Config)
    cluster: _Cluster | None = None
    error: _ApiError | None = None


_INFO: Final = msgspec.json.Decoder(_Info)


class Diagnosis(NamedTuple):
    """Why a stream did not store a message."""

    why: str
    """What is wrong and what to do, as a clause of the error's message."""
    unavailable: bool
    """The stream cannot store now (no leader, no quorum, no answer): an outage, not a mistake."""
    confirmed: bool
    """The stream's (or JetStream's) own state says so: later publishes give up early."""


def _names(peers: list[str]) -> str:
    return ", ".join(peers) + (" is" if len(peers) == 1 else " are")


def from_info(stream: str, document: bytes) -> Diagnosis:
    """What JetStream's answer to ``$JS.API.STREAM.INFO.<stream>`` says about why ``stream`` did not
    store a message (:class:`msgspec.DecodeError` if it is no such answer)."""
    info = _INFO.decode(document)
    if info.error is not None:
        if info.error.code == 404:
            return Diagnosis(
                f"stream {stream} does not exist: provision the streams (`citybus contracts provision`; "
                "citybus up does it when it starts)",
                False,
                False,
            )
        if info.error.code == 503:
            return Diagnosis(
                "JetStream is unavailable in the cluster (no meta leader: most of its nodes are down or "
                f"cannot reach each other). {RESUME}",
                True,
                True,
            )
        return Diagnosis(f"JetStream answered about stream {stream}: {info.error.description}", False, False)
    cluster, replicas = info.cluster, info.config.num_replicas
    if cluster is None or replicas <= 1:
        return Diagnosis(
            f"stream {stream} exists and did not confirm in time: is its server overloaded or restarting?",
            False,
            False,
        )
    quorum = replicas // 2 + 1
    behind = [p.name for p in cluster.replicas if p.offline or not p.current]
    if not cluster.leader:
        return Diagnosis(
            f"stream {stream} has no leader: one is elected once {quorum} of its {replicas} replicas are up "
            "and reach each other, seconds after a node died; if it lasts, too few nodes are up (no "
            f"quorum; not current: {', '.join(behind) or 'none'}). {RESUME}",
            True,
            True,
        )
    if replicas - len(behind) < quorum:
        return Diagnosis(
            f"stream {stream}'s leader {cluster.leader} has no quorum: storing takes {quorum} of its "
            f"{replicas} replicas, and {_names(behind)} not current. {RESUME}",
            True,
            True,
        )
    return Diagnosis(
        f"stream {stream} has a leader ({cluster.leader}) and a quorum, but did not confirm in time: a "
        "node may have died a moment ago (the cluster notices within seconds), or the servers are "
        "overloaded",
        False,
        False,
    )


async def diagnose(connection: Connection, stream: str, seen: Seen, timeout: float) -> Diagnosis:
    """Why ``stream`` did not store a message whose last attempt met ``seen``; asks for the
    stream's info, waiting at most ``timeout`` seconds."""
    if connection.closed:
        return Diagnosis("the bus's NATS connection is closed: connect it again", False, False)
    if seen == "disconnected" or not connection.connected:
        return Diagnosis(
            f"no NATS server is connected (the bus keeps reconnecting to {connection.url}): is the "
            "server, or a majority of the cluster, up?",
            False,
            False,
        )
    unreadable = "nobody answered"
    try:
        reply: Any = await connection.request(
            subjects.js_api("STREAM", "INFO", stream), b"", None, timeout, watch_refusal=True
        )
        return from_info(stream, reply.data)
    except PermissionDeniedError:
        unreadable = "this user may not read it"
    except (CityBusError, msgspec.DecodeError, *TRANSIENT):
        pass
    which = f"(the stream's state could not tell which: {unreadable})"
    if seen == "nobody":
        return Diagnosis(
            f"no server stores messages for stream {stream} now (no responders): it has no leader, "
            f"with too few of the cluster's nodes up (no quorum), or it does not exist (`citybus "
            f"contracts provision`) {which}. {RESUME}",
            True,
            False,
        )
    return Diagnosis(
        f"stream {stream}'s leader did not confirm that it stored the message: it waits for a majority "
        f"of the stream's replicas (too few nodes up: no quorum), or it is overloaded {which}",
        True,
        False,
    )


class Outages:
    """The streams whose own state said they cannot store, since when, and why (see the module)."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._known: dict[str, tuple[float, str]] = {}

    def __bool__(self) -> bool:
        return bool(self._known)

    def probe(self, streams: list[str | None], timeout: float) -> float:
        """How long a publish to ``streams`` waits for its first acknowledgement: :data:`PROBE`
        when every one of them is in a known outage, else its whole ``timeout``."""
        known = self._known
        if known and streams and all(s in known for s in streams):
            return min(timeout, PROBE)
        return timeout

    def why(self, stream: str) -> str | None:
        """Why ``stream`` cannot store, with how long it has not, if it is in a known outage."""
        if stream not in self._known:
            return None
        since, why = self._known[stream]
        down = asyncio.get_running_loop().time() - since
        return (
            f"{why} (known for {down:.0f} s: durable publishes to {stream} give up after {PROBE:g} s "
            "until it stores again)"
        )

    def failed(self, stream: str, diagnosis: Diagnosis) -> None:
        """A publish to ``stream`` gave up for ``diagnosis``; a confirmed outage is remembered."""
        if not diagnosis.confirmed or stream in self._known:
            return
        self._known[stream] = (asyncio.get_running_loop().time(), diagnosis.why)
        self._log.warning(
            "stream cannot store: durable publishes to it give up early until it does",
            stream=stream,
            why=diagnosis.why,
            probe=PROBE,
        )

    def stored(self, stream: str | None) -> None:
        """``stream`` stored a message: its outage, if any, is over."""
        if stream in self._known:
            since, _ = self._known.pop(stream)
            down = asyncio.get_running_loop().time() - since
            self._log.info("stream stores again", stream=stream, unavailable_for=round(down, 2))
