"""JetStream: durable pull consumers over the streams provisioned from the contract registry.

The streams themselves (one per classification and domain) are made by :mod:`bus.provision`.
A :class:`DurableConsumer` fetches only as many messages as it has free handler slots, acks after
the handler succeeds, retries a failure after a delay, and dead-letters a message once it has
been delivered ``max_deliver`` times.

A fetch that fails because the connection is away, or because a cluster is electing the
consumer's leader (503), is tried again after :data:`FETCH_RETRY`: a constant 0.5 s (no growth),
because nats-py reconnects by itself and a consumer should resume within half a second of it, not
after a wait that grew while the server was down.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, Protocol, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from bus import subjects
from bus.backoff import Backoff
from bus.config import ConsumerConfig, StreamsConfig
from bus.envelope import Event
from bus.errors import CityBusError
from bus.pipeline import LetterSink, Policy, Route, Step, pending_count
from bus.redelivery import Handled, RememberingPolicy
from contracts import Contract

__all__ = [
    "FETCH_RETRY",
    "SETTLED",
    "ConsumerHost",
    "ConsumerSettings",
    "DurableConsumer",
    "StreamSettings",
]

FETCH_RETRY: Final = Backoff(initial=0.5, maximum=0.5)
"""The wait before fetching again after a fetch failed on a lost connection (see the module)."""

_FETCH_AGAIN: Final = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.ServiceUnavailableError,  # 503: no consumer leader right now (a cluster electing one)
)
"""Fetch failures that mean "not now": the fetch is tried again after :data:`FETCH_RETRY`."""

C = TypeVar("C", bound=Contract)


StreamSettings = StreamsConfig
"""Limits of every provisioned stream: the ``[streams]`` section of ``citybus.toml`` itself, so a
field added there reaches the bus without a copy to keep in step."""

ConsumerSettings = ConsumerConfig
"""How a durable consumer delivers, retries and gives up: the ``[consumer]`` section itself."""


SETTLED: Final = ("ack_policy", "ack_wait", "max_deliver", "max_ack_pending", "filter_subject")
"""The fields of a durable consumer's configuration that :class:`DurableConsumer` sets.

Decisions, and why: a durable consumer outlives the process that created it, and every process of
an instance (``citybus up`` and ``citybus adapters run`` of the same instance, here or on another
machine) binds to the same one. nats-py's ``pull_subscribe`` creates it when it is missing and
otherwise binds without a look at its settings, so a ``[consumer]`` change (a longer ``ack_wait``)
never reached a consumer that existed. Each process now compares these fields when it starts and,
where they differ, updates the consumer to its own settings with a warning naming old and new:
the configuration is the truth, and the process started last applies it. An update keeps the
consumer's place in the stream and the messages in flight (JetStream updates a consumer in place),
and only a start writes, never the steady state. Two processes started at the same moment, both
finding no consumer, both create it; JetStream applies identical requests as one, and the later of
two different ones as an update. Processes run with different settings would move the consumer
back and forth at each start, which the warning makes visible.
"""


def _same(current: Any, wanted: Any) -> bool:
    """Whether a consumer's setting on the server is the one wanted (seconds as floats: nearly)."""
    if isinstance(current, float | int) and isinstance(wanted, float | int):
        return abs(current - wanted) < 1e-6
    return bool(current == wanted)


class ConsumerHost(Protocol):
    """What a durable consumer needs of its bus: JetStream, metrics, a log, and the pipeline."""

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context to pull from."""
        ...

    @property
    def metrics(self) -> Any:
        """The bus's :class:`~bus.metrics.Metrics`."""
        ...

    @property
    def log(self) -> Any:
        """The bus's logger."""
        ...

    @property
    def dead_letters(self) -> LetterSink:
        """Where dead letters go."""
        ...

    def receiver(
        self,
        route: Route,
        contract: type[Contract] | None,
        handle: Step,
        policy: Policy,
        direct: Callable[[Any], Awaitable[Any]] | None = None,
    ) -> Callable[[Any], Awaitable[None]]:
        """The pipeline callback for one subscription (:meth:`bus.Bus.receiver`)."""
        ...


class DurableConsumer(Generic[C]):
    """A durable JetStream pull consumer delivering typed events to a handler.

    Create it with :meth:`bus.Bus.consume`, then run :meth:`run` inside the caller's TaskGroup;
    :meth:`stop` ends it after the messages in hand are handled.

    Delivery is at least once. A redelivery of a message it handled lately (after a cluster lost
    the consumer's leader before its acknowledgement was replicated) is acknowledged again without
    calling the handler: :mod:`bus.redelivery` says why there, and not by a double ack.
    """

    def __init__(
        self,
        host: ConsumerHost,
        contract: type[C],
        handler: Callable[[Event[C]], Awaitable[Any]],
        *,
        durable: str,
        entity: str = "*",
        settings: ConsumerSettings,
    ) -> None:
        self._host = host
        self.contract = contract
        self.durable = durable
        self.subject = subjects.contract_filter(contract, entity)
        info = contract.__contract__
        self.stream = subjects.stream_name(info.classification, info.domain)
        self.settings = settings
        self._pending = host.metrics.consumer_pending.labels(durable, self.stream)
        self._stopping = asyncio.Event()
        self._sub: Any = None
        self.log = host.log.bind(consumer=durable, contract=info.type)
        route = Route("consume", self.subject, info.type, durable)
        self._handled = Handled()
        policy = RememberingPolicy(
            host.dead_letters,
            handled=self._handled,
            route=route,
            log=self.log,
            max_deliver=settings.max_deliver,
            retry_delay=settings.retry_delay,
        )

        async def handle(event: Event[C], msg: Msg) -> Any:
            return await handler(event)

        self._handle = host.receiver(route, contract, handle, policy, direct=handler)

    async def start(self) -> None:
        """Create (or bind to) the durable consumer on the server."""
        s = self.settings
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            # citybus counts deliveries itself, so that the last failure is dead-lettered instead
            # of the server silently giving up on the message.
            max_deliver=-1,
            ack_wait=s.ack_wait,
            filter_subject=self.subject,
            max_ack_pending=max(s.max_in_flight * 4, 256),
        )
        js = self._host.js
        try:
            await self._apply_settings(js, config)
            self._sub = await js.pull_subscribe(
                self.subject, durable=self.durable, stream=self.stream, config=config
            )
        except nats.js.errors.NotFoundError as exc:
            raise CityBusError(
                f"stream {self.stream} does not exist: provision the streams first (citybus up does)"
            ) from exc

    async def _apply_settings(self, js: JetStreamContext, config: api.ConsumerConfig) -> None:
        """Bring a durable consumer that exists with other settings to this process's, saying what
        changed (see :data:`SETTLED`); a missing one is left to ``pull_subscribe`` to create."""
        if not hasattr(js, "consumer_info"):  # the in-memory bus's JetStream keeps no settings
            return
        try:
            current = (await js.consumer_info(self.stream, self.durable)).config
        except nats.js.errors.NotFoundError:
            return
        changed = {
            name: f"{getattr(current, name)} -> {getattr(config, name)}"
            for name in SETTLED
            if not _same(getattr(current, name), getattr(config, name))
        }
        if not changed:
            return
        self.log.warning(
            "durable consumer settings changed",
            changed=changed,
            fix="if this instance runs in several processes, give them the same [consumer] settings",
        )
        await js.add_consumer(self.stream, config.evolve(name=self.durable))

    def stop(self) -> None:
        """Ask :meth:`run` to return once the messages in hand are handled."""
        self._stopping.set()

    async def run(self) -> None:
        """Fetch and handle until :meth:`stop`; messages in hand are finished before returning."""
        if self._sub is None:
            await self.start()
        try:
            await self._consume()
        finally:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass  # the connection is already gone; the durable consumer stays on the server
        self.log.info("consumer stopped")

    @property
    def redeliveries_skipped(self) -> int:
        """Redeliveries of messages handled already, acknowledged again without the handler."""
        return self._handled.skipped

    async def _handle_one(self, msg: Msg) -> None:
        """One message through the pipeline; its failure is logged, never the end of :meth:`run`."""
        try:
            if self._handled.again(msg):
                self._handled.skipped += 1
                await msg.ack()
                return
            await self._handle(msg)
        except (TimeoutError, nats.errors.Error) as exc:
            # The ack, nak or term did not reach the server: JetStream redelivers after
            # ack_wait, so the message is handled again rather than lost.
            self.log.warning("acknowledgement failed", error=type(exc).__name__)
        except Exception:
            # Never the end of run(): the message is redelivered after ack_wait, and dead-lettered
            # once it has been delivered max_deliver times.
            self.log.exception("handling a message failed; it will be redelivered")

    async def _consume(self) -> None:
        """``max_in_flight`` workers handle what the fetch loop puts in hand; stopping lets them
        finish it."""
        pool = _Workers(self._handle_one, self.settings.max_in_flight)
        async with asyncio.TaskGroup() as tg:
            for _ in range(pool.size):
                tg.create_task(pool.work())
            try:
                await self._fetch_loop(pool)
            finally:
                pool.close()

    async def _fetch_loop(self, pool: _Workers) -> None:
        """Fetch no more messages than there are free handler slots.

        The next pull request goes out once half the slots are free (or nothing in hand waits for a
        worker), so its round trip overlaps the handling of the rest of the batch.

        A fetch that fails because the connection is away, or because the consumer has no leader
        for a moment (JetStream answers 503 while a cluster elects one after a node died), is tried
        again after :data:`FETCH_RETRY`; the first failure of a run of them is a warning, the end
        of it an info line with how long it lasted.

        A cancellation that an await below lost is honoured at the next turn: Python 3.11's
        ``asyncio.wait_for`` (under nats-py's requests, such as the consumer lookup of
        :meth:`start`) drops one that arrives together with its result, and the consumer would
        then fetch forever (a consumer stopped right after its start hung now and then). The task
        still counts the request (``Task.cancelling()``), so it is read here.
        """
        limit = pool.size
        fetch_retries = FETCH_RETRY.attempts()
        task = asyncio.current_task()
        failing_since: float | None = None
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await pool.room((limit + 1) // 2)
            try:
                msgs = await self._fetch(limit - pool.in_hand)
            except (TimeoutError, nats.errors.TimeoutError):
                self._pending.set(0)  # nothing came within the fetch's wait: nothing is waiting
                fetch_retries.reset()
                continue
            except _FETCH_AGAIN as exc:
                delay = fetch_retries.next()
                if failing_since is None:
                    failing_since = loop.time()
                    self.log.warning("fetch failed, retrying", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                continue
            if failing_since is not None:
                self.log.info("fetching again", failed_for=round(loop.time() - failing_since, 2))
                failing_since = None
            fetch_retries.reset()
            if msgs:  # how many of the stream's messages are still to come to this consumer
                self._pending.set(pending_count(msgs[-1]))
                pool.put(msgs)

    async def _fetch(self, batch: int) -> list[Msg]:
        """One pull request, in a task of its own.

        nats-py's ``fetch`` can swallow a cancellation that arrives together with a message, which
        would keep a stopping consumer fetching forever. Awaiting it through ``asyncio.wait`` keeps
        the cancellation here, where it is honoured; the fetch is cancelled with it, and what it had
        fetched is redelivered after ``ack_wait``.
        """
        fetch = asyncio.ensure_future(self._sub.fetch(batch=batch, timeout=1.0))
        try:
            await asyncio.wait({fetch})
        except asyncio.CancelledError:
            fetch.cancel()
            fetch.add_done_callback(_forget)  # its end (a closed connection, say) is nobody's business
            raise
        msgs: list[Msg] = fetch.result()
        return msgs


class _Workers:
    """A fixed set of worker tasks handling the messages in hand, in the order they were fetched.

    Decisions, and why: a task per message (and a semaphore) cost more per message than the
    pipeline's own steps; a worker takes the next message in hand as soon as it is done with one,
    without a trip through the event loop, and an idle worker is woken only when there is a message
    for it. ``in_hand`` counts the messages fetched and not yet handled: never more than ``size``.
    """

    __slots__ = ("_closing", "_handle", "_idle", "_inbox", "_room", "_room_for", "in_hand", "size")

    def __init__(self, handle: Callable[[Msg], Awaitable[None]], size: int) -> None:
        self._handle = handle
        self.size = size
        self.in_hand = 0
        self._inbox: deque[Msg] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()
        self._room: asyncio.Future[None] | None = None
        self._room_for = 0
        self._closing = False

    def put(self, msgs: list[Msg]) -> None:
        """Hand over fetched messages (no more than the free slots), waking idle workers for them."""
        self.in_hand += len(msgs)
        self._inbox.extend(msgs)
        idle = self._idle
        for _ in range(min(len(msgs), len(idle))):
            _wake(idle.popleft())

    async def room(self, free: int) -> None:
        """Return once ``free`` slots are free, or at least one is and every message in hand is
        with a worker (a fetch then cannot wait on handlers that wait for more messages)."""
        while self.size - self.in_hand < free and (self._inbox or self.in_hand >= self.size):
            self._room_for = free
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    def close(self) -> None:
        """No more messages: workers finish what is in hand, then return."""
        self._closing = True
        while self._idle:
            _wake(self._idle.popleft())
        if self._room is not None:
            _wake(self._room)

    def _wake_room(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            _wake(room)

    async def work(self) -> None:
        """One worker: handle messages in hand until :meth:`close`."""
        inbox, idle, handle = self._inbox, self._idle, self._handle
        loop = asyncio.get_running_loop()
        while True:
            while inbox:
                msg = inbox.popleft()
                if not inbox and self._room is not None:  # every message in hand is with a worker
                    self._wake_room()
                try:
                    await handle(msg)
                finally:
                    self.in_hand -= 1
                    if self._room is not None and (self.size - self.in_hand >= self._room_for or not inbox):
                        self._wake_room()
            if self._closing:
                return
            wake: asyncio.Future[None] = loop.create_future()
            idle.append(wake)
            await wake


def _forget(task: asyncio.Task[Any]) -> None:
    """Take a given-up task's exception, so that asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
