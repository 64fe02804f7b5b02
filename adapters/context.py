"""The context an adapter runs in: its only way to the bus.

The context publishes only the contracts the adapter declared, subscribes it (in a queue group
named after its instance, so replicas share the work), binds its logger, counts its metrics, gives
it a clock, and lets it say when it is ready. Everything it subscribes is unsubscribed when its
``run`` ends, so a restarted adapter starts clean.

Decisions, and why:

* **A message's ``ce-time`` is the instance's clock's** (``ctx.clock.now()``) unless the adapter
  passes ``time=`` (a reading's own time). On the wall clock that is what the bus would stamp; on
  a replay's clock it is the replayed time, so a product in the sandbox says "advice at 14:00"
  of the replayed day, in step with the data it read, not the wall clock's moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from adapters.clock import Clock, WallClock
from adapters.metrics import InstanceMetrics
from bus import Bus, ConsumerSettings, Event, PublishAck, RawHandler, RawMessage, Subscription, subjects
from bus.config import Config
from bus.envelope import Provenance
from bus.errors import CityBusError, ConfigError, ContractViolation
from bus.personal.opening import Opener, seal_raw
from bus.pipeline import EventReader, Message
from bus.reading import Follower, StoredMessage
from bus.store import KeyValueStore, open_store
from bus.streams_config import StreamsConfig
from contracts import Contract

__all__ = ["ActingForOthersError", "Context", "UndeclaredContractError"]

C = TypeVar("C", bound=Contract)


class UndeclaredContractError(CityBusError, PermissionError):
    """An adapter tried to publish or subscribe a contract it did not declare."""


class ActingForOthersError(CityBusError, PermissionError):
    """An adapter asked for a connection as another user without acting for others."""


class Context:
    """What an adapter instance gets from the runtime. Created by the supervisor or a test harness."""

    def __init__(
        self,
        *,
        bus: Bus,
        adapter: str,
        instance: str,
        consumes: tuple[type[Contract], ...],
        produces: tuple[type[Contract], ...],
        metrics: InstanceMetrics,
        logger: Any,
        clock: Clock | None = None,
        on_ready: Callable[[], None] | None = None,
        consumer_settings: ConsumerSettings | None = None,
        connect_as: Callable[[str], Awaitable[Bus]] | None = None,
        credentials: Path | None = None,
        account: str = "CITY",
        links: dict[str, str] | None = None,
        answers: tuple[type[Contract], ...] = (),
        personal: Config | None = None,
        streams: StreamsConfig | None = None,
    ) -> None:
        self._bus = bus
        self._streams = streams
        """The resolved ``[streams]``: the replicas and placement of the instance's key-value buckets."""
        self._personal = personal
        self._connect_as = connect_as
        self.credentials = credentials
        """Where ``citybus up`` keeps the credentials (under access control), for an adapter that
        acts for others (the gateway reads its bearer tokens there); else ``None``."""
        self.adapter = adapter
        self.instance = instance
        self.account = account
        self._links = links if links is not None else {}
        """The broker account the instance runs in (``CITY`` or ``SANDBOX``)."""
        self._consumes = frozenset(consumes)
        self._produces = frozenset(produces)
        self._answers = frozenset(answers)
        self.metrics = metrics
        self.log = logger.bind(adapter=adapter, instance=instance)
        self.clock: Clock = clock or WallClock()
        self._on_ready = on_ready
        self._consumer_settings = consumer_settings or ConsumerSettings()
        self.source = f"/adapters/{instance}"
        self._subscriptions: list[Subscription] = []
        self._stopped = asyncio.Event()
        self.is_ready = False

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry the bus's and adapters' metrics live in, for metrics of the
        adapter's own (register each family once per registry: an adapter is restarted as a new object)."""
        return self._bus.metrics.registry

    # -- lifecycle ----------------------------------------------------------------------------

    def ready(self) -> None:
        """Say that the adapter is ready (connected, subscribed, serving)."""
        if not self.is_ready:
            self.is_ready = True
            self.log.info("adapter ready")
            if self._on_ready is not None:
                self._on_ready()

    def announce(self, name: str, url: str) -> None:
        """Say what the adapter serves and where (``ctx.announce("web", "http://…")``): ``citybus
        up`` prints it with its other addresses once everything is ready."""
        self._links[name] = url

    async def wait_stopped(self) -> None:
        """Wait until the adapter is asked to stop (it is cancelled then; this never returns early)."""
        await self._stopped.wait()

    async def close(self) -> None:
        """Unsubscribe everything the adapter subscribed. Called when its ``run`` ends."""
        subs, self._subscriptions = self._subscriptions, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the connection may already be gone
                self.log.debug("unsubscribe failed", subject=sub.subject, error=repr(exc))

    async def connect_as(self, user: str) -> Bus:
        """A new connection as ``user`` (``public``, ``internal``) of this instance's account, for an
        adapter that serves other users (``acts_for = True``): what it reads through it, the broker
        allowed that user. The caller owns it and closes it (``await bus.drain()``).

        Raises :class:`ActingForOthersError` when the runtime gives this adapter no such connections,
        and what connecting raises (missing credentials, a refusing server).
        """
        if self._connect_as is None:
            raise ActingForOthersError(
                f"adapter {self.adapter}: connect_as needs `acts_for = True` on the adapter class and a "
                "runtime that connects users (citybus up, or a harness given a real server)"
            )
        return await self._connect_as(user)

    def personal_data(self) -> tuple[Bus, Config]:
        """The connection and the configuration of the privacy service (``privacy = True`` on the
        adapter class): it reads and erases stored personal messages, which no contract describes,
        and finds the places upper packages keep them in with the configuration
        (:mod:`bus.personal.rights`). Any other adapter gets :class:`UndeclaredContractError`."""
        if self._personal is None:
            raise UndeclaredContractError(
                f"adapter {self.adapter}: only the privacy service (`privacy = True`) reaches stored "
                "personal data"
            )
        return self._bus, self._personal

    # -- publishing ---------------------------------------------------------------------------

    def _check_produces(self, instance: Contract) -> None:
        if type(instance) not in self._produces:
            declared = ", ".join(sorted(c.__contract__.name for c in self._produces)) or "none"
            raise UndeclaredContractError(
                f"adapter {self.adapter} ({self.instance}) may not publish {instance.__contract__.name}: "
                f"it declares that it produces {declared}"
            )

    async def publish(
        self,
        instance: Contract,
        *,
        provenance: Provenance | str,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """Publish one message of a declared contract; returns its ``ce-id``. Its ``ce-time`` is
        ``time``, else the instance's clock's now (the replayed time on a replay's clock)."""
        self._check_produces(instance)
        event = await self._bus.publish(
            instance,
            provenance=provenance,
            event_id=event_id,
            time=self.clock.now() if time is None else time,
            source=self.source,
        )
        self.metrics.published(instance.__contract__.type)
        return event

    async def publish_durable(
        self,
        instance: Contract,
        *,
        provenance: Provenance | str,
        event_id: str | None = None,
        time: datetime | None = None,
        timeout: float = 30.0,
    ) -> PublishAck:
        """Publish and wait for JetStream to store it (retried through reconnects); ``ce-time`` as
        :meth:`publish` stamps it."""
        self._check_produces(instance)
        ack = await self._bus.publish_durable(
            instance,
            provenance=provenance,
            event_id=event_id,
            time=self.clock.now() if time is None else time,
            source=self.source,
            timeout=timeout,
        )
        self.metrics.published(instance.__contract__.type)
        return ack

    # -- subscribing --------------------------------------------------------------------------

    def _check_consumes(self, contract: type[Contract]) -> None:
        if contract not in self._consumes:
            declared = ", ".join(sorted(c.__contract__.name for c in self._consumes)) or "none"
            raise UndeclaredContractError(
                f"adapter {self.adapter} ({self.instance}) may not subscribe to "
                f"{contract.__contract__.name}: it declares that it consumes {declared}"
            )

    def _counted(self, contract: type[C], handler: Callable[[Event[C]], Awaitable[None]]) -> Any:
        count = self.metrics.received
        ce_type = contract.__contract__.type

        async def counted(event: Event[C]) -> None:
            count(ce_type)
            await handler(event)

        return counted

    async def subscribe(
        self,
        contract: type[C],
        handler: Callable[[Event[C]], Awaitable[None]],
        *,
        queue: str | None = None,
        entity: str = "*",
    ) -> Subscription:
        """Receive a declared contract as typed events (at most once, core NATS).

        Instances of one adapter share the work in a queue group named after the instance.
        """
        self._check_consumes(contract)
        sub = await self._bus.subscribe(
            contract,
            self._counted(contract, handler),
            queue=self.instance if queue is None else queue,
            entity=entity,
        )
        self._subscriptions.append(sub)
        return sub

    async def consume(
        self,
        contract: type[C],
        handler: Callable[[Event[C]], Awaitable[None]],
        *,
        durable: str | None = None,
        entity: str = "*",
        settings: ConsumerSettings | None = None,
    ) -> None:
        """Consume a declared contract from its JetStream stream, at least once, until cancelled.

        Each message is acknowledged after ``handler`` returns and retried when it raises; after
        ``max_deliver`` tries it goes to the dead letters.

        The durable consumer is named by one rule, :func:`bus.subjects.durable_name` (the instance
        and the contract: ``archive-beach-observation-v1``), the name the broker lets this instance
        use and no other. ``durable`` may repeat that name; another one raises
        :class:`~bus.errors.ConfigError` at once, without access control too, so that an adapter
        behaves the same with and without it.

        Every process of the instance (``citybus up``, ``citybus adapters run`` here or on another
        machine) binds to that one consumer, which hands each message to one of them; a process
        applies its ``settings`` to it when it starts (:data:`bus.jetstream.SETTLED`).
        """
        self._check_consumes(contract)
        name = subjects.durable_name(self.instance, contract)
        if durable is not None and durable != name:
            raise ConfigError(
                f"instance {self.instance}: ctx.consume({contract.__contract__.name}, durable={durable!r}): "
                f"an adapter's durable consumer of a contract is named {name!r} (its instance and the "
                "contract; the broker grants that name and no other): leave durable out"
            )
        consumer = self._bus.consume(
            contract,
            self._counted(contract, handler),
            durable=name,
            entity=entity,
            settings=settings or self._consumer_settings,
        )
        await consumer.start()
        try:
            await consumer.run()
        finally:
            consumer.stop()

    async def serve(
        self,
        contract: type[C],
        responder: Callable[[Event[C]], Awaitable[Contract]],
        *,
        queue: str | None = None,
    ) -> Subscription:
        """Answer requests of a contract the adapter declares in ``answers`` with the instance
        ``responder`` returns, which must be of a contract it produces.

        Instances of one adapter share the requests in a queue group named after the instance. A
        request that does not fit its contract, or a responder that raises, is refused (the
        requester gets :class:`~bus.errors.RequestRefusedError` naming the reason) and dead-lettered.
        """
        if contract not in self._answers:
            declared = ", ".join(sorted(c.__contract__.name for c in self._answers)) or "none"
            raise UndeclaredContractError(
                f"adapter {self.adapter} ({self.instance}) may not answer {contract.__contract__.name}: "
                f"it declares that it answers {declared}"
            )
        count = self.metrics.received
        ce_type = contract.__contract__.type

        async def answer(event: Event[C]) -> Contract:
            count(ce_type)
            reply = await responder(event)
            self._check_produces(reply)
            self.metrics.published(reply.__contract__.type, 1)
            return reply

        sub = await self._bus.serve(contract, answer, queue=self.instance if queue is None else queue)
        self._subscriptions.append(sub)
        # the server has the subscription before the adapter says it is ready: a request sent at
        # once from another connection finds its responder
        await self._bus.flush()
        return sub

    # -- state ------------------------------------------------------------------------------

    async def person_ref(self, person: str) -> str:
        """The pseudonymous ref (``p-`` and 24 hex digits) the key vault names ``person`` by: the same
        in every process and on every subject and header, and nothing to read the person back from.
        What an adapter keeps about a person outside sealed messages names them by it."""
        return await self._bus.vault.ref(person)

    async def person_key(self, person: str) -> str:
        """The ref of ``person``, once their key exists in the vault (created if it did not): a
        ref an adapter keeps outside sealed messages then always has a key until an erasure
        destroys it (:meth:`person_erased`)."""
        ref, _ = await self._bus.vault.cipher(person)
        return ref

    async def person_erased(self, ref: str) -> bool:
        """Whether the key named ``ref`` is gone from the vault: the person was erased (also when
        this process did not hear the announcement, being down at the time)."""
        return await self._bus.vault.cipher_of(ref) is None

    async def key_value(self, name: str) -> KeyValueStore:
        """The instance's own key-value bucket ``name``, created if missing: records changed by
        compare-and-set, shared by the replicas of the instance (:mod:`bus.store`). The broker lets
        an instance keep the buckets its adapter declares in ``stores`` and no other. On a cluster
        the bucket has as many copies as the most replicated classification (``[streams]``)."""
        bucket = subjects.store_bucket(self.instance, name)
        about = f"state of {self.instance} ({name})"
        return await open_store(self._bus, bucket, description=about, streams=self._streams)

    def recall(
        self,
        contract: type[C],
        handler: Callable[[int, Event[C]], Awaitable[None]],
        *,
        after_seq: int = 0,
    ) -> Follower:
        """A reader of what was stored of a contract this adapter produces: every stored message
        after ``after_seq``, in stored order, then each new one as it is stored, handed to
        ``handler`` with its stream sequence. ``await reader.catch_up()`` reads what is stored now;
        ``await reader.run()`` goes on following until cancelled.

        How a service rebuilds its state after a restart, and how replicas keep in step. The broker
        lets an instance read back the contracts its adapter declares in ``recalls``. A sealed
        personal message is opened with its person's key, and skipped once that key is destroyed
        (erased); a stored message that does not fit its contract is logged (with its sequence,
        never its content) and skipped.
        """
        if contract not in self._produces:
            raise UndeclaredContractError(
                f"adapter {self.adapter} ({self.instance}) may not read back {contract.__contract__.name}: "
                "it reads back only contracts it produces"
            )
        read = EventReader(contract, self._bus.registry)
        info = contract.__contract__
        opener = Opener(self._bus.vault, info.type, self._bus.metrics) if info.sealed else None
        log = self.log

        async def handle(stored: StoredMessage) -> None:
            message: Message | None = RawMessage(stored.subject, stored.data, stored.headers)
            try:
                if opener is not None:  # a sealed contract: opened with the person's key
                    message = await opener(message)
                if message is None:  # erased (its key destroyed): counted by the opener, skipped
                    return
                event = read(message)
            except ContractViolation as exc:
                log.warning("stored message skipped", stream=stored.stream, seq=stored.seq, reason=exc.reason)
                return
            await handler(stored.seq, event)

        stream = subjects.stream_name(info.classification, info.domain)
        return Follower(
            self._bus,
            stream,
            handle,
            subject_filter=subjects.contract_filter(contract),
            after_seq=after_seq,
            on_error=lambda why: log.warning("reading back failed", stream=stream, error=why),
        )

    async def subscribe_raw(
        self, subject: str, handler: RawHandler, *, queue: str | None = None
    ) -> Subscription:
        """Receive raw messages on a subject (device uplinks, vendor payloads) to translate."""
        sub = await self._bus.subscribe_raw(subject, handler, queue=self.instance if queue is None else queue)
        self._subscriptions.append(sub)
        return sub

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Publish bytes that are not a contract (a bridged MQTT message, a device command) on a subject."""
        await self._bus.publish_raw(subject, data, headers)

    async def seal_raw(
        self, subject: str, data: bytes, headers: dict[str, str]
    ) -> tuple[str, bytes, dict[str, str]]:
        """A contract message that travels as bytes (a replayed recording), sealed with its person's
        key when its ``ce-type`` is a sealed personal contract (:mod:`bus.personal`), as
        :meth:`publish` seals what it sends; anything else comes back unchanged."""
        cls = self._bus.registry.by_type(headers.get("ce-type", ""))
        if cls is None or not cls.__contract__.sealed:
            return subject, data, headers
        return await seal_raw(self._bus.vault, cls, subject, data, headers)

    def count_published(self, contract: str, count: int) -> None:
        """Count ``count`` messages of ``contract`` (its CloudEvents type) sent with :meth:`publish_raw`
        as published, in the bus's ``citybus_messages_published_total`` and the adapter's own, as
        :meth:`publish` counts its messages: for a fast path that counts per batch, not per message."""
        self._bus.metrics.published.labels(contract).inc(count)
        self.metrics.published(contract, count)

    async def dead_letter(self, raw: RawMessage, *, reason: str, detail: str, contract: str = "") -> None:
        """Send an input the adapter cannot translate to the dead letters, with the reason."""
        self.metrics.dead_lettered(reason)
        await self._bus.dead_letters.send(
            raw, reason=reason, detail=detail, contract=contract, consumer=self.instance
        )
