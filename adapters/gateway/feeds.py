"""What one NATS user may read, kept live in memory: the gateway serves every caller from the feed
of the user the caller maps to.

A :class:`Feed` holds a connection as one user (``public``, ``internal``) of the gateway's account.
It reads every stream of the classes that user reads: first each subject's last message (the
entity's last value, however old), then — with a :class:`bus.reading.Follower` per stream — what was
stored in the last ``history`` seconds and everything stored from then on. It keeps the last item
and a short history per entity, and hands each new item to the :class:`Listener` values of the SSE
clients whose patterns match it.

Decisions, and why:

* **The broker decides, not the gateway.** A feed reads as its user; what that user may not read,
  the server refuses (the stream reads fail, and :attr:`Feed.errors` says so). The gateway's own
  checks (401 for internal data without a token, 403 for personal) only give a caller a clear
  answer early: the gateway's own NATS user may read nothing at all.
* **One feed per user, not per caller.** A thousand browsers on the public page share the public
  feed: one reader per stream, one decoded and encoded copy of each message, fanned out to bounded
  queues.
* **Bounded everywhere.** History per entity is capped by age and count; a listener's queue is
  bounded, and a listener that falls behind is closed with a reason instead of growing memory
  (the SSE handler then tells its client it was dropped). History filling on start is not sent to
  listeners: only what is stored after the feed started is "live".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.gateway.config import GatewayConfig
from adapters.gateway.metrics import GatewayMetrics
from adapters.gateway.stored import Decoders, Item
from bus import subjects
from bus.bus import Bus
from bus.errors import CityBusError
from bus.reading import (
    Follower,
    StoredMessage,
    last_stored,
    next_stored,
    start_since,
    stream_bounds,
    stream_subjects,
)
from contracts import Classification, Contract, Registry

__all__ = ["READS", "Feed", "Feeds", "Listener", "ListenerClosed"]

READS: Final[Mapping[str, frozenset[Classification]]] = {
    "public": frozenset({Classification.PUBLIC}),
    "internal": frozenset({Classification.PUBLIC, Classification.INTERNAL}),
}
"""The users the gateway reads as, and the classes each reads (the broker's rights for them, see
:mod:`bus.access.policy`). Personal data has no user here: the gateway never serves it."""

_IN_FLIGHT: Final = 32
"""Last-message reads in flight at once when a feed starts."""


class ListenerClosed(CityBusError):
    """A listener was closed; ``str()`` is the reason (``slow consumer: …``, ``gateway stopping``)."""


class Listener:
    """Live items matching some patterns, for one SSE client, in a bounded queue.

    A deque and an event rather than an :class:`asyncio.Queue` and a waiter task per call: waiting
    in :meth:`get` takes nothing until it returns, so a caller may wait under a timeout (the SSE
    heartbeat) without losing the item that arrives as the timeout fires, and no task is created
    per message for thousands of clients.
    """

    def __init__(self, feed: Feed, patterns: Sequence[str], queue_size: int) -> None:
        self.feed = feed
        self.patterns = tuple(patterns)
        self.queue_size = queue_size
        self._items: deque[Item] = deque()
        self._ready = asyncio.Event()
        self._poked = False
        self.closed: str | None = None
        """Why it was closed, or ``None`` while open."""

    def wants(self, subject: str) -> bool:
        """Whether an item on ``subject`` is for this listener."""
        return any(subjects.matches(p, subject) for p in self.patterns)

    def offer(self, item: Item) -> None:
        """Queue ``item``; a full queue closes the listener (its client is too slow)."""
        if self.closed is not None:
            return
        if len(self._items) >= self.queue_size:
            self.close(f"slow consumer: {self.queue_size} messages waiting")
            return
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Item:
        """The next item; raises :class:`ListenerClosed` once closed (queued items are dropped)."""
        while True:
            if self.closed is not None:
                raise ListenerClosed(self.closed)
            if self._items:
                return self._items.popleft()
            self._ready.clear()
            await self._ready.wait()

    def offer_many(self, items: Sequence[Item]) -> None:
        """Queue ``items`` with one wake-up; a full queue closes the listener (its client is too slow)."""
        if self.closed is not None or not items:
            return
        if len(self._items) + len(items) > self.queue_size:
            self.close(f"slow consumer: {self.queue_size} messages waiting")
            return
        self._items.extend(items)
        self._ready.set()

    def poke(self) -> None:
        """Say that a heartbeat interval passed: a waiting :meth:`batch` returns ``[]``."""
        self._poked = True
        self._ready.set()

    async def batch(self, limit: int) -> list[Item]:
        """The items waiting — at least one, at most ``limit`` — or ``[]`` once :meth:`poke` said a
        heartbeat interval passed; raises :class:`ListenerClosed` once closed.

        One wait for a burst, and no timer per wait: thousands of clients each waiting under a
        timeout of their own cost a timer each per message; one ticker pokes them all
        (:class:`Feeds`)."""
        while True:
            if self.closed is not None:
                raise ListenerClosed(self.closed)
            if self._items:
                items = self._items
                if len(items) <= limit:
                    self._items = deque()
                    return list(items)
                return [items.popleft() for _ in range(limit)]
            if self._poked:
                self._poked = False
                return []
            self._ready.clear()
            await self._ready.wait()

    def pending(self) -> int:
        """Items waiting."""
        return len(self._items)

    def close(self, reason: str) -> None:
        """Close it (idempotent), drop what it holds and stop feeding it."""
        if self.closed is None:
            self.closed = reason
            self._items.clear()
            self.feed.forget(self)
            self._ready.set()


@dataclass
class _Entity:
    last: Item | None = None
    history: deque[Item] = field(default_factory=deque)


class Feed:
    """What one NATS user may read (see the module doc). Created and started by :class:`Feeds`."""

    def __init__(
        self,
        user: str,
        bus: Bus,
        registry: Registry,
        config: GatewayConfig,
        *,
        metrics: GatewayMetrics,
        logger: Any,
        decoders: Decoders | None = None,
    ) -> None:
        self.user = user
        self.bus = bus
        self.registry = registry
        self.config = config
        self.metrics = metrics
        self.log = logger.bind(feed=user)
        self.classifications: frozenset[Classification] = READS.get(user, frozenset({Classification.PUBLIC}))
        self.decoders = decoders or Decoders(registry)
        pairs = sorted(
            {
                (c.__contract__.classification, c.__contract__.domain)
                for c in registry
                if c.__contract__.classification in self.classifications
            }
        )
        self._filters: dict[str, str] = {
            subjects.stream_name(cls, domain): subjects.domain_filter(cls, domain) for cls, domain in pairs
        }
        self.streams: tuple[str, ...] = tuple(self._filters)
        self._entities: dict[tuple[type[Contract], str], _Entity] = {}
        self._listeners: dict[tuple[str, ...], set[Listener]] = {}
        """Listeners by their patterns: a message is matched once per set of patterns, not once per
        client (a thousand browsers on the page ask for the same few)."""
        self._pending: list[Item] = []
        """Live items read but not yet handed to listeners (see :meth:`_hand_over`)."""
        self._live: dict[str, int] = {}
        """Per stream, the last sequence at start: what comes after it is sent to listeners."""
        self._followers: dict[str, Follower] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.errors: dict[str, str] = {}
        """Stream → why it cannot be read as this user (the broker refused, or it does not exist)."""

    # -- reading ----------------------------------------------------------------------------------

    def contracts(self) -> list[type[Contract]]:
        """The contracts of which at least one entity was seen, in the registry's order."""
        seen = {contract for contract, _ in self._entities}
        return [c for c in self.registry if c in seen]

    def entities(self, contract: type[Contract]) -> list[Item]:
        """The last item of every entity of ``contract``, by entity."""
        found = [e.last for (c, _), e in self._entities.items() if c is contract and e.last is not None]
        return sorted(found, key=lambda item: item.entity)

    def last(self, contract: type[Contract], entity: str) -> Item | None:
        """The last item of one entity, or ``None``."""
        kept = self._entities.get((contract, entity))
        return kept.last if kept is not None else None

    def history(self, contract: type[Contract], entity: str, since: float | None = None) -> list[Item]:
        """The kept recent items of one entity stored at or after ``since`` (epoch), oldest first."""
        kept = self._entities.get((contract, entity))
        if kept is None:
            return []
        items = list(kept.history)
        if not items and kept.last is not None:
            items = [kept.last]
        return [i for i in items if since is None or i.stored >= since]

    def positions(self) -> dict[str, int]:
        """Per followed stream, the sequence after which a listener opened now gets every item:
        the last one read, or — while the history is still being read — the last one stored at
        start (earlier ones are never sent to listeners)."""
        return {name: max(f.position, self._live.get(name, 0)) for name, f in self._followers.items()}

    def stream_filter(self, stream: str) -> str | None:
        """The subject pattern of a stream this feed follows, or ``None``."""
        return self._filters.get(stream)

    # -- listening --------------------------------------------------------------------------------

    def listen(self, patterns: Sequence[str], queue_size: int) -> Listener:
        """A listener for live items matching any of ``patterns``."""
        listener = Listener(self, patterns, queue_size)
        self._listeners.setdefault(listener.patterns, set()).add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        """Stop feeding ``listener`` (called by :meth:`Listener.close`)."""
        group = self._listeners.get(listener.patterns)
        if group is not None:
            group.discard(listener)
            if not group:
                del self._listeners[listener.patterns]

    def poke(self) -> None:
        """Poke every listener: a heartbeat interval passed (:meth:`Listener.poke`)."""
        for group in tuple(self._listeners.values()):
            for listener in tuple(group):
                listener.poke()

    @property
    def listeners(self) -> int:
        """Listeners open now."""
        return sum(len(group) for group in self._listeners.values())

    async def catch_up(self, patterns: Sequence[str], after: Mapping[str, int], limit: int) -> list[Item]:
        """Items matching ``patterns`` stored after the positions ``after`` (stream → sequence; a
        stream not named is not caught up), oldest first by stored time, at most ``limit``.

        Each pattern is asked of the server as the filter of the read (``next_by_subj``), so the
        server skips what does not match: the reads are bounded by ``limit`` per pattern and
        stream, however sparse the pattern is in a long stream."""
        found: dict[tuple[str, int], Item] = {}
        complete_to: dict[str, int] = {}
        """Per stream, where a pattern stopped at the limit: items after it are left out, so what
        is returned of each stream is all of it up to some position (a resumable prefix)."""
        for stream, seq in after.items():
            stream_filter = self._filters.get(stream)
            if stream_filter is None:
                continue
            narrowed = {subjects.intersection(p, stream_filter) for p in patterns}
            for pattern in sorted(p for p in narrowed if p is not None):
                position, read = seq, 0
                while True:
                    if read >= limit:
                        complete_to[stream] = min(position, complete_to.get(stream, position))
                        break
                    try:
                        stored = await next_stored(self.bus, stream, pattern, position + 1)
                    except LookupError as exc:
                        self.errors[stream] = str(exc)
                        break
                    if stored is None:
                        break
                    position, read = stored.seq, read + 1
                    item = self._decode(stored)
                    if item is not None:
                        found[item.position] = item
        kept = [i for i in found.values() if i.seq <= complete_to.get(i.stream, i.seq)]
        items = sorted(kept, key=lambda i: (i.stored, i.stream, i.seq))
        return items[:limit]

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read every entity's last value, then follow each stream (history, then live)."""
        gate = asyncio.Semaphore(_IN_FLIGHT)
        since = time.time() - self.config.history
        for stream, stream_filter in self._filters.items():
            try:
                held = await stream_subjects(self.bus, stream, stream_filter)
                _, last_seq = await stream_bounds(self.bus, stream)
                start = await start_since(self.bus, stream, stream_filter, since) if held else last_seq + 1
            except LookupError as exc:
                self.errors[stream] = str(exc)
                self.log.info("stream not readable as this user", stream=stream, reason=str(exc))
                continue
            self._live[stream] = last_seq
            lasts = await asyncio.gather(*(self._last(gate, stream, s) for s in held))
            for item in lasts:
                if item is not None:  # its history comes from the follower, in order
                    self._keep(item, history=False)
            follower = Follower(
                self.bus,
                stream,
                self._stored,
                subject_filter=stream_filter,
                after_seq=start - 1,
                on_error=functools.partial(self._stream_error, stream),
                on_caught_up=self._hand_over,
            )
            self._followers[stream] = follower
            await follower.catch_up()  # the history window, before the feed is handed out
            self._tasks.append(asyncio.create_task(follower.run(), name=f"gateway {self.user} {stream}"))

    async def close(self) -> None:
        """Stop following, close every listener, and close the connection."""
        for group in tuple(self._listeners.values()):
            for listener in tuple(group):
                listener.close("gateway stopping")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.bus.drain()

    # -- internals --------------------------------------------------------------------------------

    async def _last(self, gate: asyncio.Semaphore, stream: str, subject: str) -> Item | None:
        async with gate:
            try:
                stored = await last_stored(self.bus, stream, subject)
            except LookupError as exc:
                self.errors[stream] = str(exc)
                return None
        return self._decode(stored) if stored is not None else None

    def _stream_error(self, stream: str, why: str) -> None:
        self.errors[stream] = why
        self.metrics.feed_errors.labels(self.user, stream).inc()
        self.log.warning("stream read failed", stream=stream, reason=why)

    def _decode(self, stored: StoredMessage) -> Item | None:
        try:
            return self.decoders.item(stored)
        except CityBusError as exc:
            self.metrics.invalid.labels(stored.stream).inc()
            self.log.debug(
                "stored message not served", subject=stored.subject, seq=stored.seq, reason=str(exc)
            )
            return None

    async def _stored(self, stored: StoredMessage) -> None:
        self.errors.pop(stored.stream, None)
        item = self._decode(stored)
        if item is None:
            return
        self._keep(item, history=True)
        if stored.seq > self._live.get(stored.stream, 0):
            self._pending.append(item)

    def _hand_over(self) -> None:
        """Hand the live items read so far to the listeners that want them: once per round of
        reading (a burst of messages wakes each client once, not once per message)."""
        items, self._pending = self._pending, []
        if not items:
            return
        for patterns, group in tuple(self._listeners.items()):
            wanted = [i for i in items if any(subjects.matches(p, i.subject) for p in patterns)]
            if wanted:
                for listener in tuple(group):
                    listener.offer_many(wanted)

    def _keep(self, item: Item, *, history: bool) -> None:
        key = (item.contract, item.entity)
        kept = self._entities.get(key)
        if kept is None:
            kept = self._entities[key] = _Entity()
        if kept.last is None or (item.stream, item.seq) >= (kept.last.stream, kept.last.seq):
            kept.last = item
        if history and (not kept.history or item.seq > kept.history[-1].seq):
            kept.history.append(item)
            horizon = time.time() - self.config.history
            while kept.history and (
                len(kept.history) > self.config.history_max or kept.history[0].stored < horizon
            ):
                kept.history.popleft()


class Feeds:
    """The feeds of one gateway, one per user, started on first use and closed with the gateway."""

    def __init__(
        self,
        connect: Callable[[str], Awaitable[Bus]],
        registry: Registry,
        config: GatewayConfig,
        *,
        metrics: GatewayMetrics,
        logger: Any,
    ) -> None:
        self._connect = connect
        self.registry = registry
        self.config = config
        self.metrics = metrics
        self.log = logger
        self._decoders = Decoders(registry)
        self._feeds: dict[str, asyncio.Task[Feed]] = {}
        self._ticker: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        """Poke every listener of every feed each heartbeat interval (see :meth:`Listener.batch`)."""
        while True:
            await asyncio.sleep(self.config.heartbeat)
            for feed in tuple(self.started()):
                feed.poke()

    async def of(self, user: str) -> Feed:
        """The feed of ``user`` (``public``, ``internal``), started if it is not yet.

        Raises :class:`~bus.errors.CityBusError` when the gateway reads as no such user, and what
        connecting raises (missing credentials, a refusing server); a failed start is tried again
        by the next caller.
        """
        if user not in READS:
            raise CityBusError(f"the gateway reads as {', '.join(READS)}, not as {user!r}")
        task = self._feeds.get(user)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._feeds[user] = asyncio.create_task(self._start(user), name=f"gateway feed {user}")
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="gateway heartbeat")
        return await asyncio.shield(task)

    def started(self) -> Iterable[Feed]:
        """The feeds started so far."""
        for task in self._feeds.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                yield task.result()

    async def _start(self, user: str) -> Feed:
        bus = await self._connect(user)
        feed = Feed(
            user,
            bus,
            self.registry,
            self.config,
            metrics=self.metrics,
            logger=self.log,
            decoders=self._decoders,
        )
        try:
            await feed.start()
        except BaseException:
            await feed.close()
            raise
        self.log.info("feed started", user=user, streams=len(feed.streams), unreadable=feed.errors or None)
        return feed

    async def close(self) -> None:
        """Close every feed."""
        tasks, self._feeds = list(self._feeds.values()), {}
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for task in tasks:
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                feed = await task
                await feed.close()
