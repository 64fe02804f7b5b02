"""An in-memory bus for tests: the real :class:`~bus.Bus` over an in-process connection.

:class:`MemoryBus` *is* a :class:`~bus.Bus` — publishing, subjects, headers, validation, dead
letters, metrics, request/reply, durable consumers with retries and dedupe all run the same code —
with the NATS connection's transport replaced by :class:`MemoryConnection` (handed to
:meth:`bus.connection.Connection.adopt`; nothing of the bus is overridden), which routes messages between
subscriptions in the same process and keeps JetStream streams in lists. Adapter authors use it
(through :mod:`adapters.testing`) to test without a server; citybus runs its own bus tests against
both.

What it does not simulate: the network (no reconnects, no slow consumers), ack timeouts (a message
is redelivered only when nacked), and stream limits.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import nats.errors
import nats.js.errors
from nats.js import api

from bus import subjects
from bus.bus import Bus
from bus.personal.vault import MemoryVault

__all__ = ["MemoryBus", "MemoryConnection"]

Callback = Callable[[Any], Awaitable[None]]
_json = msgspec.json.Encoder()


@dataclass(slots=True)
class MemoryMsg:
    """A delivered message, shaped like nats-py's ``Msg`` where citybus reads it."""

    subject: str
    data: bytes
    headers: dict[str, str] | None
    reply: str = ""
    _delivery: _Delivery | None = None

    @property
    def metadata(self) -> Any:
        """JetStream delivery metadata (``num_delivered``, ``num_pending``), for messages from a durable
        consumer."""
        if self._delivery is None:
            raise nats.errors.NotJSMessageError
        return self._delivery

    async def ack(self) -> None:
        """Acknowledge: the consumer is done with the message."""
        self._settle("ack")

    async def nak(self, delay: float | None = None) -> None:
        """Ask for redelivery, after ``delay`` seconds."""
        self._settle("nak", delay or 0.0)

    async def term(self) -> None:
        """Never redeliver."""
        self._settle("term")

    def _settle(self, how: str, delay: float = 0.0) -> None:
        if self._delivery is None:
            raise nats.errors.NotJSMessageError
        self._delivery.consumer.settle(self._delivery, how, delay)


@dataclass(slots=True)
class _Stored:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None


@dataclass(slots=True)
class _Stream:
    config: api.StreamConfig
    messages: list[_Stored] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def wake(self) -> None:
        """Wake every fetch waiting for a new message."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def matches(self, subject: str) -> bool:
        return any(subjects.matches(f, subject) for f in self.config.subjects or ())


@dataclass(slots=True)
class _Delivery:
    consumer: _Consumer
    seq: int
    num_delivered: int
    num_pending: int = 0  # the stream's matching messages not yet delivered, as JetStream counts them


class _Consumer:
    """A durable consumer's state: where it is in the stream and what waits for redelivery."""

    def __init__(self, stream: _Stream, subject: str) -> None:
        self.stream = stream
        self.subject = subject
        self.cursor = 0  # index into stream.messages of the next new message
        self.deliveries: dict[int, int] = {}  # seq -> times delivered
        self.redeliver: list[tuple[float, int]] = []  # (due on the loop clock, seq)
        self.pending: set[int] = set()

    def settle(self, delivery: _Delivery, how: str, delay: float) -> None:
        self.pending.discard(delivery.seq)
        if how == "nak":
            due = asyncio.get_running_loop().time() + delay
            self.redeliver.append((due, delivery.seq))

    def take(self, batch: int) -> list[MemoryMsg]:
        now = asyncio.get_running_loop().time()
        msgs: list[MemoryMsg] = []
        due = sorted(r for r in self.redeliver if r[0] <= now)
        for item in due[:batch]:
            self.redeliver.remove(item)
            msgs.append(self._deliver(item[1]))
        by_seq = {m.seq: m for m in self.stream.messages}
        while len(msgs) < batch and self.cursor < len(self.stream.messages):
            stored = self.stream.messages[self.cursor]
            self.cursor += 1
            if subjects.matches(self.subject, stored.subject):
                msgs.append(self._deliver(stored.seq, by_seq))
        return msgs

    def next_due(self) -> float | None:
        return min((r[0] for r in self.redeliver), default=None)

    def _deliver(self, seq: int, by_seq: dict[int, _Stored] | None = None) -> MemoryMsg:
        stored = (by_seq or {m.seq: m for m in self.stream.messages})[seq]
        count = self.deliveries[seq] = self.deliveries.get(seq, 0) + 1
        self.pending.add(seq)
        waiting = sum(
            1 for m in self.stream.messages[self.cursor :] if subjects.matches(self.subject, m.subject)
        )
        return MemoryMsg(
            stored.subject,
            stored.data,
            dict(stored.headers or {}),
            "$JS.ACK.memory",
            _Delivery(self, seq, count, waiting),
        )


class _PullSubscription:
    def __init__(self, consumer: _Consumer) -> None:
        self._consumer = consumer

    async def fetch(self, batch: int = 1, timeout: float | None = 5) -> list[MemoryMsg]:
        consumer = self._consumer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or 0)
        while True:
            msgs = consumer.take(batch)
            if msgs:
                return msgs
            now = loop.time()
            if now >= deadline:
                raise nats.errors.TimeoutError
            wait = deadline - now
            due = consumer.next_due()
            if due is not None:
                wait = min(wait, max(0.0, due - now))
            waiter: asyncio.Future[None] = loop.create_future()
            consumer.stream.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, wait)
            except TimeoutError:
                pass

    async def unsubscribe(self) -> None:
        return None


class MemoryJetStream:
    """The part of nats-py's ``JetStreamContext`` that citybus uses, over in-memory streams."""

    def __init__(self, connection: MemoryConnection) -> None:
        self._connection = connection
        self.streams: dict[str, _Stream] = {}
        self._consumers: dict[tuple[str, str], _Consumer] = {}
        self._seq = itertools.count(1)

    async def stream_info(self, name: str, subjects_filter: str | None = None) -> Any:
        stream = self.streams.get(name)
        if stream is None:
            raise nats.js.errors.NotFoundError
        counts: dict[str, int] = {}
        for m in stream.messages:
            if subjects_filter is None or subjects.matches(subjects_filter, m.subject):
                counts[m.subject] = counts.get(m.subject, 0) + 1
        state = api.StreamState(
            messages=len(stream.messages),
            bytes=sum(len(m.data) for m in stream.messages),
            first_seq=0,
            last_seq=0,
            consumer_count=0,
            subjects=counts,
        )
        return api.StreamInfo(config=stream.config, state=state)

    async def add_stream(self, config: api.StreamConfig) -> None:
        self.streams[cast(str, config.name)] = _Stream(config)

    async def update_stream(self, config: api.StreamConfig) -> None:
        self.streams[cast(str, config.name)].config = config

    def store(self, subject: str, data: bytes, headers: dict[str, str] | None) -> api.PubAck | None:
        """Store a message in the stream that captures ``subject``; ``None`` if no stream does."""
        for name, stream in self.streams.items():
            if stream.matches(subject):
                msg_id = (headers or {}).get("Nats-Msg-Id")
                if msg_id and msg_id in stream.ids:
                    return api.PubAck(stream=name, seq=stream.ids[msg_id], duplicate=True)
                seq = next(self._seq)
                stream.messages.append(_Stored(seq, subject, data, headers))
                if msg_id:
                    stream.ids[msg_id] = seq
                self._connection.notify(stream)
                return api.PubAck(stream=name, seq=seq, duplicate=False)
        return None

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> api.PubAck:
        ack = self.store(subject, payload, headers)
        if ack is None:
            raise nats.js.errors.NoStreamResponseError
        if not ack.duplicate:
            await self._connection.deliver(subject, payload, headers, "")
        return ack

    async def pull_subscribe(
        self,
        subject: str,
        durable: str | None = None,
        stream: str | None = None,
        config: Any = None,
    ) -> _PullSubscription:
        if stream is None or stream not in self.streams:
            raise nats.js.errors.NotFoundError
        key = (stream, durable or f"ephemeral-{next(self._seq)}")
        consumer = self._consumers.get(key)
        if consumer is None:
            consumer = self._consumers[key] = _Consumer(self.streams[stream], subject)
        return _PullSubscription(consumer)


class _Subscription:
    """A core subscription: a queue and the task that hands its messages to the callback in order."""

    def __init__(self, connection: MemoryConnection, subject: str, queue: str, cb: Callback) -> None:
        self.subject = subject
        self.queue = queue
        self._connection = connection
        self._cb = cb
        self._inbox: asyncio.Queue[MemoryMsg] = asyncio.Queue()
        self.busy = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            msg = await self._inbox.get()
            try:
                await self._cb(msg)
            except Exception:
                pass  # nats-py ignores errors of a callback too; the bus's callback handles its own
            finally:
                self.busy -= 1
                if self.busy == 0:
                    self.idle.set()

    def put(self, msg: MemoryMsg) -> None:
        self.busy += 1
        self.idle.clear()
        self._inbox.put_nowait(msg)

    async def unsubscribe(self) -> None:
        self._connection.remove(self)
        self._task.cancel()

    async def drain(self) -> None:
        self._connection.remove(self)
        await self.idle.wait()
        self._task.cancel()


class MemoryConnection:
    """The part of nats-py's client that citybus uses, routing messages within the process."""

    def __init__(self) -> None:
        self._subs: list[_Subscription] = []
        self._js = MemoryJetStream(self)
        self._rr = itertools.count()
        self._inboxes = itertools.count()
        self.is_connected = True
        self.is_closed = False
        self.is_draining_pubs = False

    def jetstream(self) -> MemoryJetStream:
        """The in-memory JetStream of this connection."""
        return self._js

    def notify(self, stream: _Stream) -> None:
        """A stream got a message: wake its consumers."""
        stream.wake()

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        """Publish: store it if a stream captures the subject, and deliver it to subscribers.

        With a ``reply`` subject, as from the server: the stream that stored it acknowledges there
        (JetStream's ``PubAck``), or, when nothing at all takes it, an empty "no responders" status.
        """
        if self.is_closed:
            raise nats.errors.ConnectionClosedError
        subjects.validate_pattern(subject)
        ack = self._js.store(subject, payload, headers)
        delivered = await self.deliver(subject, payload, headers, reply)
        if reply and ack is not None:
            answer = {"stream": ack.stream, "seq": ack.seq, "duplicate": ack.duplicate}
            await self.deliver(reply, _json.encode(answer), None, "")
        elif reply and not delivered:
            await self.deliver(reply, b"", {"Status": "503"}, "")

    def new_inbox(self) -> str:
        """A fresh inbox subject, as nats-py makes them."""
        return f"_INBOX.memory.{next(self._inboxes)}"

    async def deliver(self, subject: str, data: bytes, headers: dict[str, str] | None, reply: str) -> int:
        """Hand a message to every matching subscription, one member per queue group."""
        groups: dict[str, list[_Subscription]] = {}
        delivered = 0
        for sub in list(self._subs):
            if not subjects.matches(sub.subject, subject):
                continue
            if sub.queue:
                groups.setdefault(sub.queue, []).append(sub)
            else:
                sub.put(MemoryMsg(subject, data, dict(headers) if headers else None, reply))
                delivered += 1
        for members in groups.values():
            members[next(self._rr) % len(members)].put(
                MemoryMsg(subject, data, dict(headers) if headers else None, reply)
            )
            delivered += 1
        return delivered

    async def subscribe(self, subject: str, queue: str = "", cb: Callback | None = None) -> _Subscription:
        """Subscribe a callback to a subject pattern, optionally in a queue group."""
        if cb is None:
            raise ValueError("the memory connection delivers to callbacks only")
        sub = _Subscription(self, subjects.validate_pattern(subject), queue, cb)
        self._subs.append(sub)
        return sub

    def remove(self, sub: _Subscription) -> None:
        """Forget a subscription."""
        if sub in self._subs:
            self._subs.remove(sub)

    async def request(
        self, subject: str, payload: bytes = b"", timeout: float = 5, headers: dict[str, str] | None = None
    ) -> MemoryMsg:
        """Deliver a request and wait for the first reply."""
        inbox = self.new_inbox()
        answer: asyncio.Future[MemoryMsg] = asyncio.get_running_loop().create_future()

        async def on_reply(msg: MemoryMsg) -> None:
            if not answer.done():
                answer.set_result(msg)

        sub = await self.subscribe(inbox, cb=on_reply)
        try:
            if await self.deliver(subject, payload, headers, inbox) == 0:
                raise nats.errors.NoRespondersError
            try:
                return await asyncio.wait_for(answer, timeout)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
        finally:
            await sub.unsubscribe()

    async def flush(self, timeout: float = 5) -> None:
        """Wait until every subscription has handled what was delivered to it (and what that caused)."""
        async with asyncio.timeout(timeout):
            while busy := [s for s in self._subs if s.busy]:
                for sub in busy:
                    await sub.idle.wait()

    async def drain(self) -> None:
        """Handle what was delivered, then close."""
        await self.flush()
        await self.close()

    async def close(self) -> None:
        """Close: subscriptions stop at once."""
        self.is_closed = True
        self.is_connected = False
        for sub in list(self._subs):
            await sub.unsubscribe()


class MemoryBus(Bus):
    """A :class:`~bus.Bus` connected to an in-process :class:`MemoryConnection` instead of NATS.

    ``await bus.connect()`` needs no URL; ``await bus.flush()`` waits until every subscriber has
    handled what was published, so a test can assert right after it.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.vault = MemoryVault()

    async def connect(self, url: str = "memory://", **options: Any) -> None:
        """Connect to a fresh in-memory connection and provision the streams of the registry."""
        self.connection.adopt(MemoryConnection(), url)
        await self.provision_streams()
