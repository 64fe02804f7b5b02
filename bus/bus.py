"""The :class:`Bus`: one NATS connection per process, speaking contracts instead of bytes.

A message goes out as a contract instance and comes in as an :class:`~bus.envelope.Event` of the
contract the subscriber asked for. In between, the bus builds the subject, the CloudEvents headers
and the body; on the way in it checks the headers, decodes and validates the body with a decoder
built once per subscription, and sends anything that does not fit to the dead letters — a handler
never sees an invalid message, and no message disappears silently.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import time as _time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext

from bus import subjects
from bus.codec import Codec, encode
from bus.deadletters import DeadLetters
from bus.envelope import (
    CONTENT_TYPES,
    Envelope,
    Event,
    Provenance,
    build_headers,
    new_event_id,
    parse_headers,
)
from bus.errors import (
    CityBusError,
    ContractViolation,
    NoRespondersError,
    NotConnectedError,
    PermissionDeniedError,
    PublishTimeoutError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from bus.jetstream import ConsumerSettings, DurableConsumer, StreamSettings, provision_streams
from bus.logs import CURRENT_EVENT
from bus.metrics import ContractMetrics, Metrics
from bus.wire import BadHeaders, Client
from contracts import Contract, Registry, default_registry

__all__ = [
    "Bus",
    "Handler",
    "PublishAck",
    "RawHandler",
    "RawMessage",
    "Responder",
    "Subscription",
    "redact_url",
]

C = TypeVar("C", bound=Contract)
R = TypeVar("R", bound=Contract)

Handler = Callable[[Event[C]], Awaitable[None]]
"""An async function that takes one typed event."""
Responder = Callable[[Event[C]], Awaitable[Contract]]
"""An async function that answers a request with a contract instance."""

_ERROR_HEADER = "citybus-error"
# nats-py reports the server's -ERR 'Permissions Violation for Publish to "subject"' (lower case).
_PERMISSION_DENIED = re.compile(
    r'permissions violation for (publish|subscription) to "([^"]*)"', re.IGNORECASE
)
# Errors from nats-py that mean "not now, try again": the server is restarting or unreachable.
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.FlushTimeoutError,
    asyncio.TimeoutError,
)


@functools.lru_cache(maxsize=8192)
def _checked_subject(subject: str) -> str:
    """A subject to publish on, checked once (a replay publishes on the same few hundred again and again)."""
    return subjects.validate_pattern(subject)


_SECRET_PARAMETER = re.compile(r"(?i)(key|token|secret|password|passwd|auth|client_?id|signature|sig)")


def redact_url(url: str) -> str:
    """``url`` with any user name, password or token replaced by ``***``, for logs and messages:
    the user information, and the value of every query parameter whose name says it is a secret
    (``apikey``, ``access_token``, ``client_id`` …)."""
    parts = []
    for server in url.split(","):
        parsed = urlsplit(server.strip())
        if parsed.username or parsed.password:
            parsed = parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2])
        if parsed.query:
            pairs = [p.partition("=") for p in parsed.query.split("&")]
            query = "&".join(
                f"{name}{eq}{'***' if eq and _SECRET_PARAMETER.search(name) else value}"
                for name, eq, value in pairs
            )
            parsed = parsed._replace(query=query)
        parts.append(parsed.geturl())
    return ",".join(parts)


async def _check_reachable(url: str, timeout: float) -> None:
    """Fail fast when no server of ``url`` accepts connections.

    nats-py retries a failed first connect as often as it reconnects — forever, here — so a
    mistyped URL or a dead server would hang instead of saying so.
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    problems = []
    for server in servers:
        parsed = urlsplit(server if "://" in server else f"nats://{server}")
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            problems.append(f"{host}:{port}: {getattr(exc, 'strerror', None) or type(exc).__name__}")
            continue
        writer.close()
        return
    why = "; ".join(problems) or "no address given"
    raise ServerUnavailableError(
        f"no NATS server answered at {redact_url(url)} ({why}): start one, "
        "or leave the URL unset so citybus starts its embedded server"
    )


async def _check_accepted(url: str, timeout: float, options: dict[str, Any]) -> None:
    """Fail fast when the server refuses us (credentials, TLS): one attempt, no reconnects.

    The real connection then reconnects forever; were it the first to try, a wrong password would
    be retried forever instead of reported.
    """
    try:
        probe = await nats.connect(
            url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=timeout, **options
        )
    except Exception as exc:  # nats-py raises its own errors, OSError or TimeoutError here
        raise ServerUnavailableError(
            f"the NATS server at {redact_url(url)} refused the connection: {exc or type(exc).__name__}; "
            "check the credentials and TLS settings in the URL or configuration"
        ) from exc
    await probe.close()


class _AckError(msgspec.Struct):
    code: int = 0
    description: str = ""


class _Ack(msgspec.Struct):
    """JetStream's answer to a publish: where it stored the message, or why it did not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _AckError | None = None


_ACK = msgspec.json.Decoder(_Ack)


class PublishAck:
    """JetStream's acknowledgement of a durable publish."""

    __slots__ = ("stream", "seq", "duplicate", "event_id")

    def __init__(self, stream: str, seq: int, duplicate: bool, event_id: str) -> None:
        self.stream = stream
        self.seq = seq
        self.duplicate = duplicate
        self.event_id = event_id

    def __repr__(self) -> str:
        return f"PublishAck(stream={self.stream!r}, seq={self.seq}, duplicate={self.duplicate})"


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message that is not (yet) a contract: a device uplink, a vendor payload, a raw subject."""

    subject: str
    data: bytes
    headers: Mapping[str, str] | None = None
    reply: str = ""
    """Where a request wants its answer (``publish_raw`` to it); empty for a plain message."""


RawHandler = Callable[[RawMessage], Awaitable[None]]
"""An async function that takes one raw message."""


def bad_header(msg: Msg | RawMessage) -> None:
    """Raise :class:`ContractViolation` ``bad-header`` when the message's header block could not be
    read (:class:`~bus.wire.BadHeaders`): nothing of it can be trusted, whatever reads it."""
    headers = msg.headers
    if type(headers) is BadHeaders:
        raise ContractViolation(
            f"the NATS header block cannot be read ({headers.error}); its bytes are kept in the "
            "dead letter's original_headers as citybus-header-block",
            reason="bad-header",
        )


class Subscription:
    """A live typed subscription; :meth:`unsubscribe` or :meth:`drain` to end it."""

    def __init__(self, sub: NatsSubscription, subject: str) -> None:
        self._sub = sub
        self.subject = subject

    async def unsubscribe(self) -> None:
        """Stop receiving at once."""
        await self._sub.unsubscribe()

    async def drain(self) -> None:
        """Stop receiving, after handling what has already arrived."""
        await self._sub.drain()  # type: ignore[no-untyped-call]


class Bus:
    """A contract-typed NATS connection.

    :param registry: the contracts this bus knows (the built-in ones by default).
    :param metrics: where to count; a fresh registry of its own by default.
    :param source: the CloudEvents ``source`` of what this process publishes.
    :param provenance: the provenance stamped on what it publishes unless a publish says otherwise.
    :param encoding: ``json`` (default) or ``msgpack`` for bodies.
    :param max_in_flight_bytes: publish backpressure: after this many bytes the publisher waits
        until the server has taken them (a flush), so a fast producer cannot bury its own connection.
    """

    def __init__(
        self,
        *,
        registry: Registry | None = None,
        metrics: Metrics | None = None,
        logger: Any = None,
        name: str = "citybus",
        source: str = "/citybus",
        provenance: Provenance | str = Provenance.MANUAL,
        encoding: str = "json",
        max_in_flight_bytes: int = 1_048_576,
        request_timeout: float = 5.0,
    ) -> None:
        if encoding not in CONTENT_TYPES:
            raise ValueError(f"encoding {encoding!r} is not one of {', '.join(CONTENT_TYPES)}")
        self.registry = registry if registry is not None else default_registry()
        self.metrics = metrics if metrics is not None else Metrics()
        self.log = (logger if logger is not None else structlog.get_logger()).bind(component="bus")
        self.name = name
        self.source = source
        self.provenance = Provenance(provenance)
        self.content_type = CONTENT_TYPES[encoding]
        self.request_timeout = request_timeout
        self._max_in_flight = max_in_flight_bytes
        self._unflushed = 0
        self._nc: NATS | None = None
        self._closing = False
        self._stalled = False
        self._watchdog: asyncio.Task[None] | None = None
        self._js: JetStreamContext | None = None
        self._publishers: dict[type[Contract], ContractMetrics] = {}
        self.dead_letters = DeadLetters(self)
        self.url = ""
        self.user = ""
        """The user this bus connected as (``ACCOUNT/name``), or empty for an anonymous connection."""
        self._denied: dict[str, float] = {}
        """Subjects the broker refused to take from this connection (lower-cased: nats-py lower-cases
        the server's error text), and when (loop time)."""
        self._refusal_listeners: set[Callable[[str], None]] = set()
        """Called with each refused subject (lower-cased) as the refusal arrives: a publish waiting
        for its acknowledgement stops waiting."""
        self._ack_prefix: str | None = None
        self._ack_futures: dict[str, asyncio.Future[Any]] = {}
        self._ack_tokens = itertools.count()
        self.refused_subscriptions: set[str] = set()
        """Subscriptions the broker refused (the user may not read them); known after a flush."""

    # -- connection ---------------------------------------------------------------------------

    async def connect(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        reconnect_wait: float = 1.0,
        drain_timeout: float = 10.0,
        watch_interval: float = 1.0,
        stall_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        """Connect to NATS at ``url``, and keep reconnecting forever once connected.

        Every ``watch_interval`` seconds a watchdog checks that the connection still reads: its
        reader task runs and the server answers a ping within ``stall_timeout`` (see :meth:`_watch`).
        Raises :class:`ServerUnavailableError` if no server answers the first time.
        """
        log = self.log.bind(url=redact_url(url), user=self.user or None)

        async def on_disconnect() -> None:
            if self._closing:
                self.metrics.link(id(self), None)
                return  # our own drain or close, not a lost connection
            self.metrics.link(id(self), False)
            self.metrics.disconnects.inc()
            log.warning("nats disconnected")

        async def on_reconnect() -> None:
            self._stalled = False
            self.metrics.link(id(self), True)
            self.metrics.reconnects.inc()
            log.info("nats reconnected")

        async def on_error(exc: Exception) -> None:
            if isinstance(exc, nats.errors.SlowConsumerError):
                self.metrics.slow_consumers.inc()
                log.warning("slow consumer: messages dropped", subject=exc.subject, sid=exc.sid)
                return
            text = str(exc) or type(exc).__name__
            denied = _PERMISSION_DENIED.search(text)
            if denied is not None:
                operation, subject = denied.group(1).lower(), denied.group(2)
                self.metrics.permission_denials.labels(operation).inc()
                if operation == "publish":
                    subject = subject.lower()  # already, from nats-py 2.x; whatever a later one does
                    self._denied[subject] = asyncio.get_running_loop().time()
                    for listener in list(self._refusal_listeners):
                        listener(subject)
                else:
                    self.refused_subscriptions.add(subject)
                log.warning(
                    "the broker refused: permissions violation",
                    operation=operation,
                    subject=subject,
                    user=self.user or None,
                    hint="`citybus auth show` lists what each user may do",
                )
                return
            self.metrics.nats_errors.inc()
            log.warning("nats error", error=text)

        async def on_closed() -> None:
            # Closed by us: forgotten. Closed by the server for good (a revoked user): down until
            # someone closes or replaces this bus.
            self.metrics.link(id(self), None if self._closing else False)
            log.debug("nats connection closed")

        await _check_reachable(url, connect_timeout)
        await _check_accepted(url, connect_timeout, options)
        self._closing = False
        try:
            settings: dict[str, Any] = {
                "name": self.name,
                "connect_timeout": connect_timeout,
                "reconnect_time_wait": reconnect_wait,
                "max_reconnect_attempts": -1,
                "allow_reconnect": True,
                "drain_timeout": drain_timeout,
                "disconnected_cb": on_disconnect,
                "reconnected_cb": on_reconnect,
                "error_cb": on_error,
                "closed_cb": on_closed,
            }
            nc = Client()  # nats-py's, reading headers faster (bus/wire.py)
            await nc.connect(url, **settings, **options)
            self._nc = nc
        except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
            raise ServerUnavailableError(
                f"no NATS server answered at {redact_url(url)} ({exc or type(exc).__name__}): start one, or "
                "leave the URL unset so citybus starts its embedded server"
            ) from exc
        self._js = self._nc.jetstream()
        self._ack_prefix = None  # a new connection: its acknowledgement inbox is made on first use
        self.url = url
        self._stalled = False
        self.metrics.link(id(self), True)
        self._stop_watchdog()
        self._watchdog = asyncio.get_running_loop().create_task(
            self._watch(nc, watch_interval, stall_timeout, log), name=f"{self.name} watchdog"
        )
        log.info("nats connected")

    async def _watch(self, nc: NATS, interval: float, stall_timeout: float, log: Any) -> None:
        """Notice a connection that no longer reads, say so, and reconnect it.

        nats-py reads in one task; should it end (an exception from its parser) or hang, nothing
        arrives any more — messages, acknowledgements, replies — while the client still says it is
        connected, until its own ping check fires minutes later. Here, each ``interval``: the
        reader task must be running and a ping answered within ``stall_timeout``. Otherwise the
        connection counts as down (:attr:`connected`, ``citybus_nats_connected``, ``/readyz``), the
        stall is counted and logged, and nats-py is told the connection is stale: it reconnects,
        with a new reader. The task belongs to this bus: :meth:`drain` and :meth:`close` end it.
        """
        while not nc.is_closed:
            await asyncio.sleep(interval)
            if not nc.is_connected or self._closing:
                continue  # reconnecting (nats-py's own business), or closing
            reader: asyncio.Task[None] | None = getattr(nc, "_reading_task", None)
            if reader is not None and reader.done():
                why = "its reader task has ended"
            else:
                try:
                    await nc.flush(timeout=stall_timeout)  # type: ignore[arg-type]
                    continue
                except nats.errors.FlushTimeoutError:
                    why = f"the server did not answer a ping within {stall_timeout:g} s"
                except nats.errors.Error:
                    continue  # closed or reconnecting meanwhile
            if not nc.is_connected or self._closing:
                continue
            self._stalled = True
            self.metrics.link(id(self), False)
            self.metrics.stalls.inc()
            log.error("nats connection stalled: reconnecting", why=why)
            await nc.force_reconnect()  # a new socket and a new reader task

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()

    @property
    def closed(self) -> bool:
        """True once the connection is closed for good (or was never opened): no reconnect will come."""
        return self._nc is None or self._nc.is_closed

    @property
    def connected(self) -> bool:
        """True while the connection is up (not while reconnecting)."""
        return self._nc is not None and self._nc.is_connected and not self._stalled

    @property
    def nc(self) -> NATS:
        """The underlying nats-py client, for the parts of ``bus`` that need it."""
        if self._nc is None:
            raise NotConnectedError("the bus is not connected: call `await bus.connect(url)` first")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the connection."""
        if self._js is None:
            raise NotConnectedError("the bus is not connected: call `await bus.connect(url)` first")
        return self._js

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until the server has received everything published so far."""
        try:
            # nats-py 2.16 writes the flush's PING straight to the socket, possibly ahead of commands
            # still in its own buffer: the second round trip starts after the first has drained it.
            await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]
            await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]
        except _TRANSIENT as exc:
            raise NotConnectedError(f"NATS did not confirm the flush: {exc or type(exc).__name__}") from exc
        self._unflushed = 0

    async def drain(self) -> None:
        """Stop subscriptions after their pending messages, flush publishes, and close. Idempotent."""
        nc = self._nc
        if nc is None or nc.is_closed or self._closing:
            return
        self._closing = True
        self._stop_watchdog()
        try:
            # Handlers still finishing their pending messages may publish (or dead-letter) meanwhile.
            await nc.drain()
        except (TimeoutError, nats.errors.ConnectionClosedError, nats.errors.FlushTimeoutError):
            await nc.close()
        finally:
            self._nc = self._js = None
        self.metrics.link(id(self), None)

    async def close(self) -> None:
        """Close at once, dropping what has not been handled."""
        nc, self._nc, self._js = self._nc, None, None
        self._stop_watchdog()
        if nc is not None and not nc.is_closed:
            self._closing = True
            await nc.close()
        self.metrics.link(id(self), None)

    # -- publishing ---------------------------------------------------------------------------

    def _prepare(
        self,
        instance: Contract,
        *,
        event_id: str | None,
        source: str | None,
        provenance: Provenance | str | None,
        time: datetime | None,
        encoding: str | None,
    ) -> tuple[str, bytes, dict[str, str]]:
        content_type = CONTENT_TYPES[encoding] if encoding else self.content_type
        headers = build_headers(
            instance.__contract__,
            event_id=event_id or new_event_id(),
            source=source or self.source,
            time=time or datetime.now(UTC),
            provenance=provenance or self.provenance,
            content_type=content_type,
        )
        return subjects.contract_subject(instance), encode(instance, content_type), headers

    def _publisher_metrics(self, cls: type[Contract]) -> ContractMetrics:
        cm = self._publishers.get(cls)
        if cm is None:
            cm = self._publishers[cls] = self.metrics.contract(cls.__contract__.type)
        return cm

    async def publish(
        self,
        instance: Contract,
        *,
        event_id: str | None = None,
        source: str | None = None,
        provenance: Provenance | str | None = None,
        time: datetime | None = None,
        encoding: str | None = None,
    ) -> str:
        """Publish one message (at most once, core NATS). Returns its ``ce-id``.

        JetStream streams still store it when they cover its subject; use :meth:`publish_durable`
        to wait for that acknowledgement.
        """
        subject, body, headers = self._prepare(
            instance, event_id=event_id, source=source, provenance=provenance, time=time, encoding=encoding
        )
        nc = self.nc
        try:
            await nc.publish(subject, body, headers=headers)
        except nats.errors.OutboundBufferLimitError as exc:
            raise NotConnectedError(
                "NATS is disconnected and the reconnect buffer is full: the message was not sent"
            ) from exc
        except nats.errors.ConnectionClosedError as exc:
            raise NotConnectedError("the NATS connection is closed: the message was not sent") from exc
        self._publisher_metrics(type(instance)).published.inc()
        # Backpressure: bound what is written but not yet taken by the server.
        self._unflushed += len(body)
        if self._unflushed >= self._max_in_flight and nc.is_connected:
            self._unflushed = 0
            try:
                await nc.flush(timeout=10)
            except _TRANSIENT:
                pass  # the connection is going down; the reconnect buffer takes over
        return headers["ce-id"]

    async def publish_durable(
        self,
        instance: Contract,
        *,
        event_id: str | None = None,
        source: str | None = None,
        provenance: Provenance | str | None = None,
        time: datetime | None = None,
        encoding: str | None = None,
        timeout: float = 30.0,
    ) -> PublishAck:
        """Publish and wait until a JetStream stream has stored the message.

        While the server is unreachable or restarting, the publish is retried with the same
        ``ce-id`` until ``timeout``; JetStream's duplicate window stores it exactly once.
        """
        subject, body, headers = self._prepare(
            instance, event_id=event_id, source=source, provenance=provenance, time=time, encoding=encoding
        )
        ack = await self._publish_acked(subject, body, headers, type(instance), timeout)
        self._publisher_metrics(type(instance)).published.inc()
        return ack

    async def _publish_acked(
        self, subject: str, body: bytes, headers: dict[str, str], cls: type[Contract], timeout: float
    ) -> PublishAck:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        refused: asyncio.Future[None] = loop.create_future()
        key = subject.lower()

        def on_refusal(denied: str) -> None:
            if denied == key and not refused.done():
                refused.set_result(None)

        self._refusal_listeners.add(on_refusal)
        try:
            return await self._publish_acked_until(subject, body, headers, cls, timeout, deadline, refused)
        finally:
            self._refusal_listeners.discard(on_refusal)
            refused.cancel()

    async def _publish_acked_until(
        self,
        subject: str,
        body: bytes,
        headers: dict[str, str],
        cls: type[Contract],
        timeout: float,
        deadline: float,
        refused: asyncio.Future[None],
    ) -> PublishAck:
        """:meth:`_publish_acked`'s retries; each attempt ends early when ``refused`` is set: the
        broker's refusal comes one round trip after the publish, the timeout many seconds later."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            remaining = deadline - loop.time()
            try:
                if self._js is None:
                    raise NotConnectedError("the bus is not connected")
                attempt = asyncio.ensure_future(
                    self._js.publish(
                        subject,
                        body,
                        timeout=max(0.1, min(self.request_timeout, remaining)),
                        headers=dict(headers),
                    )
                )
                try:
                    either: set[asyncio.Future[Any]] = {attempt, refused}
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not attempt.done():
                        attempt.cancel()  # refused, or this call cancelled
                if refused.done() and not attempt.done():
                    raise self._refusal(subject)
                ack = attempt.result()
                return PublishAck(ack.stream, ack.seq, bool(ack.duplicate), headers["ce-id"])
            except nats.js.errors.APIError as exc:
                raise CityBusError(f"JetStream refused {subject}: {exc.description or exc}") from exc
            except (*_TRANSIENT, NotConnectedError) as exc:
                if self._refused_since(subject, deadline - timeout):
                    raise self._refusal(subject) from exc
                if self._nc is None or self._nc.is_closed or loop.time() + delay >= deadline:
                    raise PublishTimeoutError(
                        f"no JetStream stream acknowledged {subject} within {timeout:.0f} s "
                        f"({type(exc).__name__}): is the server up and the stream provisioned?"
                    ) from exc
                self.metrics.publish_retries.labels(cls.__contract__.type).inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _refused_since(self, subject: str, since: float) -> bool:
        """Whether the broker refused a publish to ``subject`` at or after ``since`` (loop time).

        Compared without case, as nats-py reports it: a subject differing only in case refused in
        the same moment would be taken for this one, and the caller told of a refusal that is real.
        """
        return self._denied.get(subject.lower(), -1.0) >= since

    def _refusal(self, subject: str) -> PermissionDeniedError:
        return PermissionDeniedError(
            f"the broker refused {subject} from {self.user or 'this connection'}: its user may not publish "
            "there (`citybus auth show` lists what each user may do)"
        )

    async def publish_durable_many(
        self,
        instances: Iterable[Contract],
        *,
        source: str | None = None,
        provenance: Provenance | str | None = None,
        timeout: float = 30.0,
        window: int = 1024,
    ) -> list[PublishAck]:
        """Publish many messages durably, pipelined: up to ``window`` wait for their acknowledgement
        at once, instead of one round trip each (:meth:`publish_durable`).

        Returns the acknowledgements in the order of ``instances``. What JetStream has not
        acknowledged — a server restarting, a lost acknowledgement — is published again with the
        same ``ce-id`` until ``timeout``; the duplicate window stores each message exactly once.
        Raises :class:`PublishTimeoutError` (saying how many are unacknowledged) when time is up,
        :class:`PermissionDeniedError` when the broker refuses the subject.
        """
        if window < 1:
            raise ValueError("window must be at least 1")
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        prepared = [
            (
                type(instance),
                *self._prepare(
                    instance, event_id=None, source=source, provenance=provenance, time=None, encoding=None
                ),
            )
            for instance in instances
        ]
        acks: list[PublishAck | None] = [None] * len(prepared)
        pending = list(range(len(prepared)))
        delay = 0.05
        while True:
            failed = await self._publish_window(prepared, pending, acks, window, deadline)
            if not failed:
                break
            refused = [prepared[i][1] for i in failed if self._refused_since(prepared[i][1], started)]
            if refused:
                raise self._refusal(refused[0])
            if self._nc is None or self._nc.is_closed or loop.time() + delay >= deadline:
                raise PublishTimeoutError(
                    f"{len(failed)} of {len(prepared)} messages were not acknowledged by a JetStream stream "
                    f"within {timeout:.0f} s: is the server up and the stream provisioned?"
                )
            for index in failed:
                self.metrics.publish_retries.labels(prepared[index][0].__contract__.type).inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            pending = failed
        for cls, *_ in prepared:
            self._publisher_metrics(cls).published.inc()
        return [ack for ack in acks if ack is not None]

    async def _ack_inbox(self) -> str:
        """The inbox where JetStream acknowledges :meth:`publish_durable_many`'s messages, one
        subscription for the connection's life (nats-py subscribes again after a reconnect)."""
        if self._ack_prefix is None:
            prefix = self.nc.new_inbox()
            futures = self._ack_futures
            start = len(prefix) + 1

            async def on_ack(msg: Msg) -> None:
                future = futures.pop(msg.subject[start:], None)
                if future is None or future.done():
                    return
                if not msg.data:  # a status: 503, no stream took it (the server restarting, say)
                    future.set_exception(nats.js.errors.NoStreamResponseError())
                    return
                try:
                    future.set_result(_ACK.decode(msg.data))
                except msgspec.DecodeError as exc:
                    future.set_exception(CityBusError(f"JetStream's acknowledgement is not JSON: {exc}"))

            await self.nc.subscribe(f"{prefix}.*", cb=on_ack)
            self._ack_prefix = prefix
        return self._ack_prefix

    async def _publish_window(
        self,
        prepared: list[tuple[type[Contract], str, bytes, dict[str, str]]],
        pending: list[int],
        acks: list[PublishAck | None],
        window: int,
        deadline: float,
    ) -> list[int]:
        """One pass of :meth:`publish_durable_many` over ``pending``; returns the unacknowledged.

        Each message is published with a reply subject in the bus's own acknowledgement inbox
        (:meth:`_ack_inbox`), not with nats-py's ``publish_async``: that keeps a slot and a future
        for a message whose publish failed (a full buffer while the server is away), and once its
        4,000 slots are gone every later call hangs. Here every token is dropped when the pass ends,
        whatever happened. Per message only a future and a callback; a wait only when the window is
        full, and once at the end. An acknowledgement that does not come within a request timeout is
        given up for this pass, and the message sent again. While the connection is down, nothing
        more is pushed into nats-py's buffer: the rest waits for the next pass.
        """
        loop = asyncio.get_running_loop()
        prefix = await self._ack_inbox()
        futures = self._ack_futures
        nc = self.nc
        # A counter and an event, not asyncio.Semaphore: its locked() measured as a cost per message.
        inflight = 0
        freed = asyncio.Event()
        sent: list[tuple[int, str, asyncio.Future[Any]]] = []
        failed: list[int] = []

        def release(_: asyncio.Future[Any]) -> None:
            nonlocal inflight
            inflight -= 1
            freed.set()

        def give_up_waiting() -> None:
            for _, token, future in sent:
                futures.pop(token, None)
                future.cancel()  # frees its place (release); counted as failed below

        def on_refusal(denied: str) -> None:
            # The broker refused a subject: its acknowledgements will never come, stop waiting.
            for index, token, future in sent:
                refused = prepared[index][1]
                if refused.lower() == denied and not future.done():
                    futures.pop(token, None)
                    future.set_exception(self._refusal(refused))

        self._refusal_listeners.add(on_refusal)
        try:
            for index in pending:
                while inflight >= window:
                    freed.clear()
                    wait = min(self.request_timeout, deadline - loop.time())
                    try:
                        await asyncio.wait_for(freed.wait(), max(wait, 0.001))
                    except TimeoutError:
                        give_up_waiting()
                        await asyncio.sleep(0)  # the cancelled futures' callbacks run
                if not nc.is_connected:
                    failed.append(index)
                    continue
                _, subject, body, headers = prepared[index]
                token = str(next(self._ack_tokens))
                future: asyncio.Future[Any] = loop.create_future()
                futures[token] = future
                try:
                    await nc.publish(subject, body, reply=f"{prefix}.{token}", headers=headers)
                except _TRANSIENT:
                    futures.pop(token, None)
                    failed.append(index)
                    continue
                inflight += 1
                future.add_done_callback(release)
                sent.append((index, token, future))
            waiting = [future for _, _, future in sent if not future.done()]
            if waiting:
                wait = min(self.request_timeout, deadline - loop.time())
                await asyncio.wait(waiting, timeout=max(wait, 0.001))
        finally:
            self._refusal_listeners.discard(on_refusal)
            give_up_waiting()  # what is still unacknowledged now (or after an error) is not waited for
        for index, _, future in sent:
            if future.cancelled():
                failed.append(index)
                continue
            exc = future.exception()
            if exc is not None:
                if isinstance(exc, CityBusError):
                    raise exc
                failed.append(index)
                continue
            ack: _Ack = future.result()
            if ack.error is not None:
                refused = prepared[index][1]
                raise CityBusError(f"JetStream refused {refused}: {ack.error.description or ack.error}")
            acks[index] = PublishAck(ack.stream, ack.seq, ack.duplicate, prepared[index][3]["ce-id"])
        return sorted(failed)

    # -- subscribing --------------------------------------------------------------------------

    def _check(self, msg: Msg, codec: Codec[C], expected: str) -> Event[C]:
        """Headers, contract and body of a received message, or :class:`ContractViolation`.

        Raises nothing else, whatever the bytes: a receive path that met another error would lose
        the message (a subscription) or die on it at every redelivery (a durable consumer).
        """
        try:
            bad_header(msg)
            envelope: Envelope = parse_headers(msg.headers, msg.subject)
            if envelope.type != expected:
                known = self.registry.by_type(envelope.type)
                raise ContractViolation(
                    f"expected {expected}, got ce-type {envelope.type!r}"
                    + ("" if known else " (not a known contract)"),
                    reason="wrong-contract" if known else "unknown-type",
                )
            return Event(codec.decode(msg.data, envelope.content_type), envelope)
        except ContractViolation:
            raise
        except Exception as exc:  # a decoder's failure nobody foresaw: still the message's fault
            raise ContractViolation(
                f"the message cannot be read: {type(exc).__name__}: {exc}", reason="invalid-body"
            ) from exc

    def _receiver(
        self, cls: type[C], handler: Callable[[Event[C]], Awaitable[Any]], group: str
    ) -> Callable[[Msg], Awaitable[None]]:
        """The nats-py callback for one subscription: check, count, hand over, time."""
        codec = Codec(cls)
        expected = cls.__contract__.type
        cm = self.metrics.contract(expected)
        dead_letters = self.dead_letters
        log = self.log

        async def receive(msg: Msg) -> None:
            try:
                event = self._check(msg, codec, expected)
            except ContractViolation as exc:
                cm.invalid(exc.reason)
                await dead_letters.send(
                    msg, reason=exc.reason, detail=str(exc), contract=expected, consumer=group
                )
                return
            cm.received.inc()
            sent = event.envelope.time
            if sent is not None:
                cm.latency.observe(max(0.0, _time.time() - sent.timestamp()))
            started = _time.perf_counter()
            # The event id on every line the handler logs (bus.logs.add_event_id): one context
            # variable, cheaper per message than binding structlog's.
            token = CURRENT_EVENT.set(event.id)
            try:
                await handler(event)
            except Exception as exc:
                cm.handler_errors.inc()
                log.exception("handler failed", contract=expected, subject=msg.subject, event_id=event.id)
                await dead_letters.send(
                    msg,
                    reason="handler-error",
                    detail=f"{type(exc).__name__}: {exc}",
                    contract=expected,
                    consumer=group,
                )
            finally:
                CURRENT_EVENT.reset(token)
                cm.handler_duration.observe(_time.perf_counter() - started)

        return receive

    async def subscribe(
        self,
        contract: type[C],
        handler: Handler[C],
        *,
        queue: str = "",
        entity: str = "*",
    ) -> Subscription:
        """Receive every message of ``contract`` (or of one ``entity``) as typed events.

        With ``queue``, subscribers sharing the name share the work: each message goes to one.
        A message that does not fit the contract goes to the dead letters instead of ``handler``;
        a handler that raises is logged, counted and its message dead-lettered too.
        """
        subject = subjects.contract_filter(contract, entity)
        sub = await self.nc.subscribe(subject, queue=queue, cb=self._receiver(contract, handler, queue))
        return Subscription(sub, subject)

    async def subscribe_raw(self, subject: str, handler: RawHandler, *, queue: str = "") -> Subscription:
        """Receive raw messages on a subject pattern (for adapters that translate native formats).

        A handler that raises is logged and its message dead-lettered (reason ``handler-error``).
        """
        subjects.validate_pattern(subject)
        log = self.log

        async def receive(msg: Msg) -> None:
            raw = RawMessage(msg.subject, bytes(msg.data), msg.headers, msg.reply or "")
            try:
                bad_header(raw)
            except ContractViolation as exc:
                await self.dead_letters.send(raw, reason=exc.reason, detail=str(exc), consumer=queue)
                return
            try:
                await handler(raw)
            except Exception as exc:
                log.exception("raw handler failed", subject=msg.subject)
                await self.dead_letters.send(
                    raw, reason="handler-error", detail=f"{type(exc).__name__}: {exc}", consumer=queue
                )

        sub = await self.nc.subscribe(subject, queue=queue, cb=receive)
        return Subscription(sub, subject)

    async def publish_raw(self, subject: str, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Publish bytes that are not a contract (a device uplink, a control message)."""
        _checked_subject(subject)
        try:
            # nats-py reads the headers and keeps nothing of them: no copy needed.
            await self.nc.publish(subject, data, headers=cast(dict[str, str], headers) if headers else None)
        except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionClosedError) as exc:
            raise NotConnectedError(f"NATS is not connected: {subject} was not sent") from exc

    async def serve(
        self,
        contract: type[C],
        responder: Responder[C],
        *,
        queue: str = "",
        entity: str = "*",
    ) -> Subscription:
        """Answer requests of ``contract`` with the contract instance ``responder`` returns."""
        nc = self.nc

        async def answer(event: Event[C], msg: Msg) -> None:
            reply = await responder(event)
            _, body, headers = self._prepare(
                reply, event_id=None, source=None, provenance=None, time=None, encoding=None
            )
            await nc.publish(msg.reply, body, headers=headers)

        codec = Codec(contract)
        expected = contract.__contract__.type
        cm = self.metrics.contract(expected)

        async def receive(msg: Msg) -> None:
            try:
                event = self._check(msg, codec, expected)
            except ContractViolation as exc:
                cm.invalid(exc.reason)
                await self.dead_letters.send(msg, reason=exc.reason, detail=str(exc), contract=expected)
                if msg.reply:
                    await nc.publish(msg.reply, b"", headers={_ERROR_HEADER: f"{exc.reason}: {exc}"})
                return
            cm.received.inc()
            try:
                await answer(event, msg)
            except Exception as exc:
                cm.handler_errors.inc()
                self.log.exception("responder failed", contract=expected, event_id=event.id)
                if msg.reply:
                    await nc.publish(msg.reply, b"", headers={_ERROR_HEADER: f"handler-error: {exc}"})

        sub = await nc.subscribe(subjects.request_filter(contract, entity), queue=queue, cb=receive)
        return Subscription(sub, sub.subject)

    async def request_raw(
        self, subject: str, data: bytes = b"", *, timeout: float | None = None
    ) -> RawMessage:
        """Send bytes as a request (a control request) and wait for the first reply, as it came.

        Raises :class:`PermissionDeniedError` within a round trip when the broker refuses the
        subject (not after the timeout, as if the responder were slow).
        """
        subjects.validate_pattern(subject)
        wait = timeout if timeout is not None else self.request_timeout
        nc = self.nc
        started = asyncio.get_running_loop().time()
        reply = asyncio.ensure_future(nc.request(subject, data, timeout=wait))
        try:
            # The server answers a refused publish with -ERR before the PONG of a PING sent after
            # it (two flushes: nats-py writes a flush's PING ahead of what it still buffers).
            for _ in range(2):
                done, _pending = await asyncio.wait({reply}, timeout=0)
                if done:
                    break
                try:
                    await nc.flush(timeout=max(1, round(wait)))
                except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError):
                    break
            if not reply.done() and self._refused_since(subject, started):
                raise self._refusal(subject)
            msg = await reply
        except nats.errors.NoRespondersError as exc:
            raise NoRespondersError(f"nobody serves {subject}") from exc
        except nats.errors.TimeoutError as exc:
            if self._refused_since(subject, started):
                raise self._refusal(subject) from exc
            raise RequestTimeoutError(f"no reply on {subject} within {wait} s") from exc
        finally:
            if not reply.done():
                reply.cancel()
        return RawMessage(msg.subject, bytes(msg.data), msg.headers)

    async def request(
        self, instance: Contract, response: type[R], *, timeout: float | None = None
    ) -> Event[R]:
        """Send ``instance`` as a request and wait for one reply of contract ``response``."""
        _, body, headers = self._prepare(
            instance, event_id=None, source=None, provenance=None, time=None, encoding=None
        )
        subject = subjects.request_subject(instance)
        wait = timeout if timeout is not None else self.request_timeout
        try:
            msg = await self.nc.request(subject, body, timeout=wait, headers=headers)
        except nats.errors.NoRespondersError as exc:
            raise NoRespondersError(f"nobody serves {subject}") from exc
        except nats.errors.TimeoutError as exc:
            raise RequestTimeoutError(f"no reply on {subject} within {wait} s") from exc
        self._publisher_metrics(type(instance)).published.inc()
        if msg.headers and _ERROR_HEADER in msg.headers:
            raise CityBusError(
                f"the responder on {subject} refused the request: {msg.headers[_ERROR_HEADER]}"
            )
        return self._check(msg, Codec(response), response.__contract__.type)

    # -- JetStream ----------------------------------------------------------------------------

    async def provision_streams(self, settings: StreamSettings | None = None) -> list[str]:
        """Create or update the JetStream streams of every registered contract; return their names."""
        try:
            return await provision_streams(self, self.registry, settings or StreamSettings())
        except nats.js.errors.APIError as exc:
            raise CityBusError(
                f"JetStream refused the stream configuration: {exc.description or exc}"
            ) from exc
        except _TRANSIENT as exc:
            raise NotConnectedError(
                f"JetStream did not answer ({type(exc).__name__}): is JetStream enabled on the server?"
            ) from exc

    def consume(
        self,
        contract: type[C],
        handler: Handler[C],
        *,
        durable: str,
        entity: str = "*",
        settings: ConsumerSettings | None = None,
    ) -> DurableConsumer[C]:
        """A durable consumer of ``contract``: run its ``run()`` in your TaskGroup.

        Each message is acked after ``handler`` returns, retried after ``retry_delay`` when it
        raises, and dead-lettered after ``max_deliver`` deliveries.
        """
        return DurableConsumer(
            self, contract, handler, durable=durable, entity=entity, settings=settings or ConsumerSettings()
        )
