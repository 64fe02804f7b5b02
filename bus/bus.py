"""The :class:`Bus`: one NATS connection per process, speaking contracts instead of bytes.

A message goes out as a contract instance and comes in as an :class:`~bus.envelope.Event` of the
contract the subscriber asked for. In between, the bus builds the subject, the CloudEvents headers
and the body; on the way in every message takes the one pipeline (:mod:`bus.pipeline`): headers
checked, body decoded and validated with a decoder built once per subscription, counted, handled,
and anything that does not fit sent to the dead letters — a handler never sees an invalid message,
and no message disappears silently.

This module is the facade only. The connection (connecting, probes, the watchdog, what nats-py's
errors mean) is :mod:`bus.connection`; durable publishing :mod:`bus.durable`; dead letters
:mod:`bus.deadletters`; durable consumers :mod:`bus.jetstream`; streams :mod:`bus.provision`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import subjects
from bus.codec import encode
from bus.connection import TRANSIENT, Connection, Subscription, redact_url
from bus.control import raise_for_refusal
from bus.deadletters import DeadLetters
from bus.durable import DurablePublisher, Prepared, PublishAck
from bus.envelope import CONTENT_TYPES, Event, Provenance, build_headers, new_event_id
from bus.errors import CityBusError, NotConnectedError
from bus.jetstream import ConsumerSettings, DurableConsumer, StreamSettings
from bus.metrics import ContractMetrics, Metrics
from bus.origin import SourceGuard
from bus.personal.opening import Opener, seal_prepared
from bus.personal.vault import KeyVault
from bus.pipeline import (
    DeadLetterPolicy,
    EventReader,
    Middleware,
    Policy,
    RawMessage,
    Route,
    Step,
    read_raw,
    receiver,
)
from bus.provision import provision_streams as provision
from bus.serving import serve
from contracts import Contract, Registry, default_registry

if TYPE_CHECKING:
    from bus.tracing import Tracing

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
RawHandler = Callable[[RawMessage], Awaitable[None]]
"""An async function that takes one raw message."""


@functools.lru_cache(maxsize=8192)
def _checked_subject(subject: str) -> str:
    """A subject to publish on, checked once (a replay publishes on the same few hundred again and again)."""
    return subjects.validate_pattern(subject)


class Bus:
    """A contract-typed NATS connection.

    :param registry: the contracts this bus knows (the built-in ones by default).
    :param metrics: where to count; a fresh registry of its own by default.
    :param source: the CloudEvents ``source`` of what this process publishes.
    :param provenance: the provenance stamped on what it publishes unless a publish says otherwise.
    :param encoding: ``json`` (default) or ``msgpack`` for bodies.
    :param max_in_flight_bytes: publish backpressure: after this many bytes the publisher waits
        until the server has taken them (a flush), so a fast producer cannot bury its own connection.
    :param middleware: wraps the handling of every message received from now on, whatever
        delivers it (:data:`bus.pipeline.Middleware`); :attr:`middleware` can be added to later.
    :param tracing: OpenTelemetry spans for what this bus sends, handles and dead-letters
        (:mod:`bus.tracing`); none by default, at no cost.
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
        middleware: Sequence[Middleware] = (),
        tracing: Tracing | None = None,
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
        self.middleware: list[Middleware] = list(middleware)
        """What wraps every handler of a subscription made from now on (:mod:`bus.pipeline`)."""
        self.source_guard: SourceGuard | None = None
        """Reserved ``ce-source`` values that subscriptions made from now on check (:mod:`bus.origin`)."""
        self.connection = Connection(name=name, metrics=self.metrics, log=self.log)
        self._durable = DurablePublisher(self.connection, self.metrics, request_timeout)
        self._max_in_flight = max_in_flight_bytes
        self._unflushed = 0
        self._publishers: dict[type[Contract], ContractMetrics] = {}
        self.dead_letters = DeadLetters(self, registry=self.registry, metrics=self.metrics, log=self.log)
        self.vault = KeyVault(self, log=self.log)
        """The personal key vault (:mod:`bus.personal`): seals and opens personal messages."""
        self.tracing = tracing
        if tracing is not None:  # outermost: its span covers every other middleware and the handler
            self.middleware.insert(0, tracing.middleware)
            self.dead_letters.tracing = tracing

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
        reader task runs and the server answers a ping within ``stall_timeout``. Raises
        :class:`~bus.errors.ServerUnavailableError` if no server answers the first time.
        """
        await self.connection.connect(
            url,
            connect_timeout=connect_timeout,
            reconnect_wait=reconnect_wait,
            drain_timeout=drain_timeout,
            watch_interval=watch_interval,
            stall_timeout=stall_timeout,
            **options,
        )

    @property
    def request_timeout(self) -> float:
        """How long a request, or one attempt of a durable publish, waits for its answer."""
        return self._durable.request_timeout

    @request_timeout.setter
    def request_timeout(self, value: float) -> None:
        self._durable.request_timeout = value

    @property
    def url(self) -> str:
        """The URL this bus connected to (empty before :meth:`connect`)."""
        return self.connection.url

    @property
    def user(self) -> str:
        """The user this bus connects as (``ACCOUNT/name``), or empty for an anonymous connection."""
        return self.connection.user

    @user.setter
    def user(self, value: str) -> None:
        self.connection.user = value

    @property
    def refused_subscriptions(self) -> set[str]:
        """Subscriptions the broker refused (the user may not read them); known after a flush."""
        return self.connection.refused_subscriptions

    @property
    def closed(self) -> bool:
        """True once the connection is closed for good (or was never opened): no reconnect will come."""
        return self.connection.closed

    @property
    def connected(self) -> bool:
        """True while the connection is up (not while reconnecting)."""
        return self.connection.connected

    @property
    def nc(self) -> NATS:
        """The underlying nats-py client, for the parts of ``bus`` that need it."""
        return self.connection.nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the connection."""
        return self.connection.js

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until the server has received everything published so far."""
        await self.connection.flush(timeout)
        self._unflushed = 0

    async def drain(self) -> None:
        """Stop subscriptions after their pending messages, flush publishes, and close. Idempotent."""
        await self.connection.drain()

    async def close(self) -> None:
        """Close at once, dropping what has not been handled."""
        await self.connection.close()

    # -- publishing ---------------------------------------------------------------------------

    def _prepare(
        self,
        instance: Contract,
        *,
        event_id: str | None = None,
        source: str | None = None,
        provenance: Provenance | str | None = None,
        time: datetime | None = None,
        encoding: str | None = None,
    ) -> Prepared:
        content_type = CONTENT_TYPES[encoding] if encoding else self.content_type
        info = instance.__contract__
        headers = build_headers(
            info,
            event_id=event_id or new_event_id(),
            source=source or self.source,
            time=time or datetime.now(UTC),
            provenance=provenance or self.provenance,
            content_type=content_type,
        )
        subject = subjects.contract_subject(instance)
        if self.tracing is not None and not info.sealed:  # sealed: stamped once the subject names no one
            self.tracing.stamp(subject, headers, info.type)
        return info.type, subject, encode(instance, content_type), headers

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
        prepared = self._prepare(
            instance, event_id=event_id, source=source, provenance=provenance, time=time, encoding=encoding
        )
        if instance.__contract__.sealed:
            prepared = await seal_prepared(self.vault, instance, prepared, self.tracing)
        _, subject, body, headers = prepared
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
            except TRANSIENT:
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
        prepared = self._prepare(
            instance, event_id=event_id, source=source, provenance=provenance, time=time, encoding=encoding
        )
        if instance.__contract__.sealed:
            prepared = await seal_prepared(self.vault, instance, prepared, self.tracing)
        ack = await self._durable.publish(prepared, timeout)
        self._publisher_metrics(type(instance)).published.inc()
        return ack

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
        Raises :class:`~bus.errors.PublishTimeoutError` (saying how many are unacknowledged) when
        time is up, :class:`~bus.errors.PermissionDeniedError` when the broker refuses the subject.
        """
        if window < 1:
            raise ValueError("window must be at least 1")
        items = list(instances)
        prepared = [self._prepare(i, source=source, provenance=provenance) for i in items]
        for n, instance in enumerate(items):
            if instance.__contract__.sealed:
                prepared[n] = await seal_prepared(self.vault, instance, prepared[n], self.tracing)
        acks = await self._durable.publish_many(prepared, timeout, window)
        for instance in items:
            self._publisher_metrics(type(instance)).published.inc()
        return acks

    async def publish_raw(self, subject: str, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Publish bytes that are not a contract (a device uplink, a control message)."""
        _checked_subject(subject)
        if self.tracing is not None:
            headers = self.tracing.stamped(subject, headers)
        try:
            # nats-py reads the headers and keeps nothing of them: no copy needed.
            await self.nc.publish(subject, data, headers=cast(dict[str, str], headers) if headers else None)
        except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionClosedError) as exc:
            raise NotConnectedError(f"NATS is not connected: {subject} was not sent") from exc

    # -- receiving ----------------------------------------------------------------------------

    def receiver(
        self,
        route: Route,
        contract: type[Contract] | None,
        handle: Step,
        policy: Policy,
        direct: Callable[[Any], Awaitable[Any]] | None = None,
    ) -> Callable[[Any], Awaitable[None]]:
        """The callback taking one message of ``route`` through the pipeline (:mod:`bus.pipeline`):
        read as ``contract`` (``None``: raw), counted, handled through :attr:`middleware`, settled
        by ``policy``. Every receive path of the bus is made here."""
        read = read_raw if contract is None else EventReader(contract, self.registry, self.source_guard)
        metrics = None if contract is None else self.metrics.contract(route.contract)
        sealed = contract is not None and contract.__contract__.sealed
        op = Opener(self.vault, route.contract, self.metrics) if sealed else None
        return receiver(
            route, read, handle, policy, metrics=metrics, middleware=self.middleware, direct=direct, opener=op
        )

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
        route = Route("subscribe", subject, contract.__contract__.type, queue)

        async def handle(event: Event[C], msg: Any) -> None:
            await handler(event)

        policy = DeadLetterPolicy(self.dead_letters, route=route, log=self.log)
        receive = self.receiver(route, contract, handle, policy, direct=handler)
        sub = await self.nc.subscribe(subject, queue=queue, cb=receive)
        return Subscription(sub, subject)

    async def subscribe_raw(self, subject: str, handler: RawHandler, *, queue: str = "") -> Subscription:
        """Receive raw messages on a subject pattern (for adapters that translate native formats).

        A handler that raises is logged and its message dead-lettered (reason ``handler-error``).
        """
        subjects.validate_pattern(subject)
        route = Route("raw", subject, "", queue)

        async def handle(raw: RawMessage, msg: Any) -> None:
            await handler(raw)

        policy = DeadLetterPolicy(self.dead_letters, route=route, log=self.log)
        receive = self.receiver(route, None, handle, policy, direct=handler)
        sub = await self.nc.subscribe(subject, queue=queue, cb=receive)
        return Subscription(sub, subject)

    async def serve(
        self,
        contract: type[C],
        responder: Responder[C],
        *,
        queue: str = "",
        entity: str = "*",
    ) -> Subscription:
        """Answer requests of ``contract`` with the contract instance ``responder`` returns.

        A request that does not fit is dead-lettered and refused (:func:`bus.control.error_headers`:
        the requester raises :class:`~bus.errors.RequestRefusedError` naming the reason); a
        responder that raises is logged and refused so too.
        """
        return await serve(self, contract, responder, queue=queue, entity=entity)

    async def request_raw(
        self, subject: str, data: bytes = b"", *, timeout: float | None = None
    ) -> RawMessage:
        """Send bytes as a request (a control request) and wait for the first reply, as it came.

        Raises :class:`~bus.errors.RequestRefusedError` when the responder refuses the request, and
        :class:`~bus.errors.PermissionDeniedError` within a round trip when the broker refuses the
        subject (not after the timeout, as if the responder were slow).
        """
        subjects.validate_pattern(subject)
        wait = timeout if timeout is not None else self.request_timeout
        msg = await self.connection.request(subject, data, None, wait, watch_refusal=True)
        raise_for_refusal(msg.headers, subject)
        return RawMessage(msg.subject, bytes(msg.data), msg.headers)

    async def request(
        self, instance: Contract, response: type[R], *, timeout: float | None = None
    ) -> Event[R]:
        """Send ``instance`` as a request and wait for one reply of contract ``response``;
        :class:`~bus.errors.RequestRefusedError` (naming the reason) when the responder refuses."""
        _, _, body, headers = self._prepare(instance)
        subject = subjects.request_subject(instance)
        wait = timeout if timeout is not None else self.request_timeout
        msg = await self.connection.request(subject, body, headers, wait, watch_refusal=True)
        self._publisher_metrics(type(instance)).published.inc()
        raise_for_refusal(msg.headers, subject)
        return EventReader(response, self.registry)(msg)

    # -- JetStream ----------------------------------------------------------------------------

    async def provision_streams(self, settings: StreamSettings | None = None) -> list[str]:
        """Create or update the streams of every contract (:mod:`bus.provision`); return their names."""
        try:
            return await provision(self.js, self.registry, settings, self.log, self.metrics)
        except nats.js.errors.APIError as exc:
            raise CityBusError(f"JetStream refused the streams' settings: {exc.description or exc}") from exc
        except TRANSIENT as exc:
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
