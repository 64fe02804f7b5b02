"""Live updates by Server-Sent Events: ``GET /api/v1/stream?subject=P[&subject=P2…]``.

Each ``subject`` is a subject pattern or a contract name (:mod:`adapters.gateway.selection`); none
means everything the caller may read. The answer is a ``text/event-stream``
(:mod:`adapters.gateway.eventstream`): ``retry: 2000``, the starting position vector, then one
``event: message`` per stored message (``data:`` its CloudEvents JSON, ``id:`` the position vector),
and a ``: heartbeat`` comment whenever the stream has been idle for ``heartbeat`` seconds.

A client that reconnects with ``Last-Event-ID`` (the header, or ``?lastEventId=`` for clients that
cannot set headers) first gets what was stored after those positions, then live messages again.

Decisions, and why:

* **Listen first, then catch up, then drop what was already sent.** The listener is registered
  before the stored messages are read, so nothing stored during the catch-up is lost; a live item
  at or before the position a stream has reached is a duplicate and is skipped. The positions the
  feed had reached when the listener was registered (:meth:`Feed.positions`) are where the live
  items start, so a gap is counted up to them and no further.
* **A gap is said, not hidden.** At most ``catch_up`` stored messages are replayed; when more were
  missed, the client gets ``event: gap`` with how many it skipped per stream (counted, not
  estimated; past :data:`COUNT_READS` reads a lower bound, marked ``"more": true``) and the id
  jumps past them, then live messages. A client that must not miss anything
  reads the history API or a NATS consumer instead.
* **Bounded per client, twice.** The feed's listener queue holds ``queue`` messages; when it
  overflows, the feed closes the listener ("slow consumer") rather than grow. And a write that
  cannot complete for ``heartbeat`` seconds (a client that stopped reading: the socket's buffers
  are full) drops the client too, so a stuck client holds at most aiohttp's and the kernel's
  socket buffers. A dropped client gets ``event: dropped`` with the reason when it can still be
  written, and every drop is counted (``citybus_gateway_sse_dropped_total{reason}``).
* **The token is checked again at each heartbeat interval**, busy or idle, so a revoked token's
  open streams end within ``heartbeat`` seconds (``event: dropped``, reason ``revoked token``).
* **Nothing outlives its client.** Whatever ends a stream (the client leaving, which aiohttp turns
  into ``CancelledError`` or ``ConnectionResetError``; a drop; the gateway stopping), the listener
  is closed and the client count given back in one ``finally``. When the gateway stops, its open
  streams end at once (``gateway stopping``) rather than hold the server's shutdown.
* **Headers for proxies.** ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` so that a
  reverse proxy (nginx) neither caches nor buffers the stream; ``max_clients`` streams at most, the
  next one is told to come back (503 with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from adapters.gateway.app import STATE, GatewayState
from adapters.gateway.eventstream import (
    HEARTBEAT,
    MalformedEventIdError,
    event_frame,
    id_frame,
    parse_positions,
    retry_frame,
)
from adapters.gateway.feeds import Feed, Listener, ListenerClosed
from adapters.gateway.selection import SubjectRefusedError, select
from adapters.gateway.stored import Item
from adapters.gateway.who import Caller, Refusal, problem
from bus import subjects
from bus.reading import next_stored

__all__ = ["COUNT_READS", "PATH", "RETRY", "RETRY_AFTER", "count_stored", "routes"]

PATH = "/api/v1/stream"
"""Where the stream is served."""

RETRY = 2000
"""Milliseconds a client waits before reconnecting (the ``retry:`` line)."""

RETRY_AFTER = 10
"""Seconds a client refused for too many clients is told to wait (``Retry-After``)."""

_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

COUNT_READS = 100_000
"""At most this many stored messages are read to count a gap (then it is "at least")."""

_BATCH = 64
"""At most this many queued messages are written at once."""

_UNTIMED = 32 * 1024
"""Below this many bytes waiting in the socket's buffer (asyncio pauses writers at 64 KiB) a write
returns at once, so it needs no timeout of its own."""
_SLOW = "slow consumer"
_REVOKED = "revoked token"
_STOPPING = "gateway stopping"


@dataclass
class _Clients:
    """The streams open on one gateway: their listeners (for ``max_clients``, and to end them)."""

    listeners: set[Listener] = field(default_factory=set)


_CLIENTS = web.AppKey("sse clients", _Clients)


class _Dropped(Exception):
    """Ends a stream: ``label`` for the metric, ``reason`` for the client and the log."""

    def __init__(self, label: str, reason: str, *, writable: bool) -> None:
        super().__init__(reason)
        self.label = label
        self.reason = reason
        self.writable = writable


def routes(app: web.Application) -> None:
    """Add the stream's route to the gateway's application, and end the open streams when it stops."""
    app[_CLIENTS] = _Clients()
    app.router.add_get(PATH, stream)
    app.on_shutdown.append(_stopping)


async def _stopping(app: web.Application) -> None:
    """The gateway stops: every open stream ends now (``event: dropped``, ``gateway stopping``),
    rather than hold the server's shutdown until its client leaves."""
    for listener in list(app[_CLIENTS].listeners):
        listener.close(_STOPPING)


async def stream(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/stream``: live messages as Server-Sent Events (see the module doc)."""
    state = request.app[STATE]
    caller = state.caller(request)
    feed = await state.feed(caller)
    try:
        patterns = select(
            request.query.getall("subject", []),
            state.registry,
            feed.classifications,
            token=caller.token is not None,
        )
        resume = _resume(request, feed)
    except SubjectRefusedError as exc:
        headers = {"WWW-Authenticate": 'Bearer realm="citybus"'} if exc.status == 401 else None
        return problem(exc.status, exc.title, str(exc), headers=headers)
    except MalformedEventIdError as exc:
        return problem(400, "Malformed Last-Event-ID", str(exc))
    clients = request.app[_CLIENTS]
    if len(clients.listeners) >= state.max_clients:
        return problem(
            503,
            "Too many clients",
            f"the gateway streams to {state.max_clients} clients at most; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER)},
        )
    listener = feed.listen(patterns, state.config.queue)
    clients.listeners.add(listener)
    state.metrics.sse_clients.inc()
    try:
        return await _Stream(request, state, caller, feed, listener).serve(patterns, resume)
    finally:
        listener.close("client gone")
        clients.listeners.discard(listener)
        state.metrics.sse_clients.dec()


def _resume(request: web.Request, feed: Feed) -> dict[str, int] | None:
    """The positions to resume after (only the streams this feed follows), or ``None``."""
    text = request.headers.get("Last-Event-ID")
    if text is None:
        text = request.query.get("lastEventId")
    if text is None or not text.strip():
        return None
    followed = set(feed.streams)
    return {s: seq for s, seq in parse_positions(text).items() if s in followed}


async def count_stored(
    feed: Feed, stream: str, patterns: Sequence[str], after: int, until: int
) -> tuple[int, bool]:
    """How many messages matching ``patterns`` ``stream`` holds in (``after``, ``until``], and
    whether that is the exact count (``False``: at least that many; counting stopped).

    When a pattern covers the whole stream (``city.public.>`` over ``CITY_PUBLIC_ENVIRONMENT``),
    the count is the span of sequences from the first message still stored: one read. Otherwise the
    matching messages are read one by one, filtered by the server when one pattern applies, and at
    most :data:`COUNT_READS` of them: a client cannot make the gateway read a whole stream.
    """
    stream_filter = feed.stream_filter(stream)
    if stream_filter is None or until <= after:
        return 0, True
    relevant = [p for p in patterns if subjects.overlaps(p, stream_filter)]
    if not relevant:
        return 0, True
    whole = any(subjects.intersection(p, stream_filter) == stream_filter for p in relevant)
    scan = stream_filter if whole or len(relevant) > 1 else relevant[0]
    count, position = 0, after
    for _ in range(1 if whole else COUNT_READS):
        try:
            found = await next_stored(feed.bus, stream, scan, position + 1)
        except LookupError:
            return count, False
        if found is None or found.seq > until:
            return count, True
        if whole:
            return until - found.seq + 1, True
        position = found.seq
        if any(subjects.matches(p, found.subject) for p in relevant):
            count += 1
    return count, position >= until


class _Stream:
    """One client's stream, from its first frame to its end."""

    def __init__(
        self, request: web.Request, state: GatewayState, caller: Caller, feed: Feed, listener: Listener
    ) -> None:
        self.request = request
        self.state = state
        self.caller = caller
        self.feed = feed
        self.listener = listener
        self.heartbeat = state.config.heartbeat
        self.mark = feed.positions()
        """Where the listener's live items start, per stream."""
        self.positions = dict(self.mark)
        """The last position sent to the client, per stream."""
        self.response = web.StreamResponse(headers=_HEADERS)
        self.response.force_close()  # a stream ends its connection: nothing follows it

    async def serve(self, patterns: Sequence[str], resume: Mapping[str, int] | None) -> web.StreamResponse:
        """Stream until the client leaves or is dropped; the response, to return to aiohttp."""
        log = self.state.log.bind(sse=self.request.remote, user=self.caller.user)
        try:
            await self.response.prepare(self.request)
            # A position past what a stream holds is not from this stream's history (it was made
            # anew: a fresh data directory, a recreated stream): skipping everything up to it would
            # silence the client until the new sequences pass the old ones. Such a stream starts
            # from now, and the client is told.
            ahead = sorted(s for s, seq in (resume or {}).items() if seq > self.mark.get(s, 0))
            resume = {s: seq for s, seq in (resume or {}).items() if s not in ahead}
            self.positions.update(resume)
            first = retry_frame(RETRY)
            if ahead:
                reset = {"streams": ahead, "reason": "Last-Event-ID is ahead of what the stream holds"}
                first += event_frame("reset", json.dumps(reset).encode(), self.positions)
            await self._write(first + id_frame(self.positions))
            if resume:
                await self._catch_up(patterns, resume)
            await self._pump()
        except _Dropped as drop:
            self.state.metrics.sse_dropped.labels(drop.label).inc()
            log.info("sse client dropped", reason=drop.reason)
            await self._end(drop)
        except ConnectionError:
            pass  # the client left while a frame was written
        return self.response

    async def _write(self, frame: bytes) -> None:
        """Write, or drop the client when it has not taken the frame after a heartbeat interval."""
        transport = self.request.transport
        if transport is not None and transport.get_write_buffer_size() + len(frame) < _UNTIMED:
            # Below aiohttp's drain limit the write returns at once: no timer needed.
            await self.response.write(frame)
            return
        try:
            async with asyncio.timeout(self.heartbeat):
                await self.response.write(frame)
        except TimeoutError:
            reason = self.listener.closed or f"{_SLOW}: not reading ({self.heartbeat:g} s on one write)"
            raise _Dropped(reason.partition(":")[0], reason, writable=False) from None

    async def _end(self, drop: _Dropped) -> None:
        if drop.writable:
            body = json.dumps({"reason": drop.reason}).encode()
            with contextlib.suppress(_Dropped, ConnectionError):
                await self._write(event_frame("dropped", body))
                return
        transport = self.request.transport
        if transport is not None:
            transport.abort()  # what it did not read will never be read: free it now

    async def _catch_up(self, patterns: Sequence[str], resume: Mapping[str, int]) -> None:
        limit = self.state.config.catch_up
        wanted = {s: seq for s, seq in resume.items() if seq < self.mark.get(s, 0)}
        items = await self.feed.catch_up(patterns, wanted, limit) if wanted and limit else []
        for start in range(0, len(items), _BATCH):
            await self._send(items[start : start + _BATCH])
        if limit and len(items) < limit:
            return
        skipped: dict[str, int] = {}
        complete = True
        for stream, after in wanted.items():
            reached = self.positions.get(stream, after)
            if reached < self.mark[stream]:
                count, exact = await count_stored(self.feed, stream, patterns, reached, self.mark[stream])
                self.positions[stream] = self.mark[stream]
                complete = complete and exact
                if count:
                    skipped[stream] = count
        if skipped:
            gap: dict[str, object] = {"skipped": sum(skipped.values()), "streams": skipped}
            if not complete:
                gap["more"] = True
            await self._write(event_frame("gap", json.dumps(gap).encode(), self.positions))

    def _frame(self, item: Item) -> bytes:
        """The item's frame, or nothing when it was sent already (caught up before it came live)."""
        if item.seq <= self.positions.get(item.stream, 0):
            return b""
        self.positions[item.stream] = item.seq
        return event_frame("message", item.event, self.positions)

    async def _send(self, items: Sequence[Item]) -> None:
        frames = b"".join(self._frame(item) for item in items)
        if frames:
            await self._write(frames)

    async def _pump(self) -> None:
        """Live items until the client is dropped or leaves; heartbeats and token checks between."""
        try:
            await self._live()
        except ListenerClosed as exc:
            reason = str(exc)
            raise _Dropped(reason.partition(":")[0], reason, writable=True) from None

    async def _live(self) -> None:
        # No timer per wait: the feeds' ticker pokes every listener each heartbeat interval
        # (Listener.batch returns [] then), when the token is checked again and an idle stream
        # gets its heartbeat.
        wrote = False
        while True:
            items = await self.listener.batch(_BATCH)
            if items:
                await self._send(items)
                wrote = True
                continue
            self._check_token()
            if not wrote:
                await self._write(HEARTBEAT)
            wrote = False

    def _check_token(self) -> None:
        if self.caller.token is None:
            return
        try:
            self.state.caller(self.request)
        except Refusal:
            raise _Dropped(
                _REVOKED, f"{_REVOKED}: {self.caller.token} is no longer valid", writable=True
            ) from None
