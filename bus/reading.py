"""Reading what JetStream stored, as a client: last message per subject, the next one after a
position, and following a stream from a point in the past into the live present.

The HTTP gateway (``adapters/gateway``) serves the city's data to people who do not speak NATS, and it
does so as the NATS user each caller maps to, so the broker keeps deciding who sees what. These are
the few stream reads it needs, here in ``bus`` because adapters never talk to nats-py themselves:

* :func:`stream_subjects` — the subjects a stream holds and how many messages of each
  (``$JS.API.STREAM.INFO`` with a ``subjects_filter``);
* :func:`last_stored` — a subject's last stored message (``STREAM.MSG.GET`` with ``last_by_subj``);
* :func:`next_stored` — the first message at or after a sequence matching a filter
  (``next_by_subj``): how a reader resumes where it left off;
* :func:`start_since` — where to start reading to get everything stored since a time;
* :class:`Follower` — every stored message after a position, then live ones as they are stored,
  each with its stream sequence.

Decisions, and why:

* **Stored order and positions, not core subscriptions.** A core subscription sees a message once,
  without a position; a reader that reconnects (a browser's ``Last-Event-ID``) must name where it
  was. The stream sequence is that name, so everything here carries it.
* **Read-only reads, no consumers.** Following a stream is "the next message after my position"
  (``STREAM.MSG.GET`` with ``next_by_subj``), woken by a core subscription. A user allowed to create
  consumers could name any deliver subject and have the server re-publish stored messages where
  the user may not publish; a message get answers only the asker. One request per message is cheap
  at the city's rates, and the reader's position is simply the last sequence it read.
* **Errors say what is wrong.** A stream this login may not read, or that does not exist, raises
  :class:`LookupError` with the reason; the caller decides whether that is an error or an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import nats.errors
import nats.js.errors

from bus import subjects
from bus.bus import Bus

__all__ = [
    "Follower",
    "StoredMessage",
    "last_stored",
    "next_stored",
    "start_since",
    "stream_bounds",
    "stream_subjects",
]

_TIMEOUT: Final = 2.0


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as a stream stored it."""

    stream: str
    seq: int
    """Its sequence in the stream: a position a reader can resume after."""
    subject: str
    headers: Mapping[str, str]
    data: bytes
    time: float
    """When the stream stored it (epoch seconds)."""


def _cancelled() -> None:
    """Re-raise a cancellation that nats-py swallowed (its flush ignores ``CancelledError``, and a
    request answers one with ``TimeoutError``): a reader being stopped must stop, not go on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _refused(stream: str, exc: nats.js.errors.APIError) -> str:
    """Why JetStream refused a read of ``stream``: a cluster short of a majority of its nodes
    answers 503 "JetStream system temporarily unavailable" until they are back."""
    return f"JetStream refused reading {stream}: {exc.description or exc}"


async def _api(bus: Bus, subject: str, request: dict[str, Any]) -> dict[str, Any]:
    try:
        reply = await bus.nc.request(subject, json.dumps(request).encode(), timeout=_TIMEOUT)
    except nats.errors.NoRespondersError:
        raise LookupError("JetStream does not answer on this connection") from None
    except (nats.errors.TimeoutError, TimeoutError):
        _cancelled()
        raise LookupError("no answer (this login may not read it)") from None
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def stream_subjects(bus: Bus, stream: str, subject_filter: str = ">") -> dict[str, int]:
    """The subjects ``stream`` holds that match ``subject_filter``, each with its message count.

    Raises :class:`LookupError` with the reason when the stream cannot be read.
    """
    answer = await _api(bus, subjects.js_api("STREAM", "INFO", stream), {"subjects_filter": subject_filter})
    if "error" in answer:
        raise LookupError(str(answer["error"].get("description", answer["error"])))
    found = answer.get("state", {}).get("subjects") or {}
    return {str(k): int(v) for k, v in found.items()}


def _stored(stream: str, raw: Any) -> StoredMessage:
    moment = raw.time if isinstance(raw.time, datetime) else None
    return StoredMessage(
        stream=stream,
        seq=int(raw.seq or 0),
        subject=str(raw.subject or ""),
        headers=dict(raw.headers or {}),
        data=bytes(raw.data or b""),
        time=moment.timestamp() if moment is not None else 0.0,
    )


async def last_stored(bus: Bus, stream: str, subject: str) -> StoredMessage | None:
    """The last message ``stream`` stored on ``subject``, or ``None`` when it holds none."""
    try:
        raw = await bus.js.get_last_msg(stream, subject)
    except nats.js.errors.NotFoundError:
        return None
    except nats.js.errors.APIError as exc:
        raise LookupError(_refused(stream, exc)) from None
    except (nats.errors.TimeoutError, TimeoutError):
        _cancelled()
        raise LookupError(f"no answer reading {stream} (this login may not read it)") from None
    return _stored(stream, raw)


async def next_stored(bus: Bus, stream: str, subject_filter: str, seq: int) -> StoredMessage | None:
    """The first message of ``stream`` at or after ``seq`` whose subject matches ``subject_filter``
    (a pattern), or ``None`` when there is none yet."""
    try:
        raw = await bus.js.get_msg(stream, seq=max(1, seq), subject=subject_filter, next=True)
    except nats.js.errors.NotFoundError:
        return None
    except nats.js.errors.APIError as exc:
        raise LookupError(_refused(stream, exc)) from None
    except (nats.errors.TimeoutError, TimeoutError):
        _cancelled()
        raise LookupError(f"no answer reading {stream} (this login may not read it)") from None
    return _stored(stream, raw)


async def stream_bounds(bus: Bus, stream: str) -> tuple[int, int]:
    """The first and last sequence ``stream`` holds (``(0, 0)`` when it is empty)."""
    answer = await _api(bus, subjects.js_api("STREAM", "INFO", stream), {})
    if "error" in answer:
        raise LookupError(str(answer["error"].get("description", answer["error"])))
    state = answer.get("state", {})
    return int(state.get("first_seq") or 0), int(state.get("last_seq") or 0)


async def start_since(bus: Bus, stream: str, stream_filter: str, since: float) -> int:
    """A sequence to read ``stream`` from (with :func:`next_stored`) so as to get every message
    stored at or after ``since`` (epoch seconds) and none before.

    A binary search: stored times never decrease along a stream's sequence. ``stream_filter`` is
    the pattern of the stream's own subjects (every message matches it).
    """
    first, last = await stream_bounds(bus, stream)
    low, high = max(first, 1), last + 1
    while low < high:
        middle = (low + high) // 2
        found = await next_stored(bus, stream, stream_filter, middle)
        if found is None or found.time >= since:
            high = middle
        else:
            low = found.seq + 1
    return low


class Follower:
    """Reads one stream in stored order, from a position into the live present, handing each
    message matching its filter to ``handler``; :meth:`run` until cancelled.

    It asks for the next message after its position (``next_by_subj``) until there is none (telling
    ``on_caught_up`` then, and every ``batch`` messages on the way), then
    waits for the doorbell: a core subscription on the stream's subjects that only says "something
    was stored" (or ``poll`` seconds, in case one was missed while the connection was down). Only the
    read-only ``STREAM.MSG.GET`` is used, never a consumer (a client that may create consumers may
    name any deliver subject, and so re-publish stored messages where it may not publish).
    """

    def __init__(
        self,
        bus: Bus,
        stream: str,
        handler: Callable[[StoredMessage], Awaitable[None]],
        *,
        subject_filter: str,
        after_seq: int = 0,
        poll: float = 1.0,
        on_error: Callable[[str], None] | None = None,
        on_caught_up: Callable[[], None] | None = None,
        batch: int = 64,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.subject_filter = subject_filter
        self.position = after_seq
        """The last sequence handed over (or skipped); the next read asks for the one after it."""
        self._handler = handler
        self._poll = poll
        self._on_error = on_error
        self._on_caught_up = on_caught_up
        self._batch = batch
        self._bell = asyncio.Event()
        self.error: str | None = None
        """Why the last read failed, until one succeeds again."""

    async def _ring(self, _msg: Any) -> None:
        self._bell.set()

    async def run(self) -> None:
        """Follow until cancelled."""
        sub = await self.bus.nc.subscribe(self.subject_filter, cb=self._ring)
        try:
            while True:
                self._bell.clear()
                await self.catch_up()
                _cancelled()
                bell = asyncio.ensure_future(self._bell.wait())
                try:
                    await asyncio.wait({bell}, timeout=self._poll)
                finally:
                    bell.cancel()
        finally:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await sub.unsubscribe()

    async def catch_up(self) -> None:
        """Hand over every message stored after :attr:`position` until there is none; then, and
        after every ``batch`` messages, call ``on_caught_up`` (a reader handing messages on in
        bursts rather than one by one)."""
        handed = 0
        try:
            while True:
                _cancelled()
                try:
                    found = await next_stored(self.bus, self.stream, self.subject_filter, self.position + 1)
                except LookupError as exc:
                    self._failed(str(exc))
                    return
                if self.error is not None:
                    self.error = None
                if found is None:
                    return
                self.position = found.seq
                await self._handler(found)
                handed += 1
                if handed % self._batch == 0 and self._on_caught_up is not None:
                    self._on_caught_up()
        finally:
            if handed and self._on_caught_up is not None:
                self._on_caught_up()

    def _failed(self, why: str) -> None:
        if why != self.error:
            self.error = why
            if self._on_error is not None:
                self._on_error(why)
