"""Durable publishing: a message is sent until a JetStream stream says it stored it.

:class:`DurablePublisher` takes messages already prepared by the :class:`~bus.Bus` (subject, body,
CloudEvents headers) and publishes them with retries under one ``ce-id``, so JetStream's duplicate
window stores each exactly once, however often it was sent.

Decisions, and why:

- One message (:meth:`DurablePublisher.publish`) goes through nats-py's ``js.publish``, one round
  trip each. Many (:meth:`DurablePublisher.publish_many`) are pipelined through the publisher's own
  acknowledgement inbox, not nats-py's ``publish_async``: that keeps a slot and a future for a
  message whose publish failed (a full buffer while the server is away), and once its 4,000 slots
  are gone every later call hangs. Here every token is dropped when a pass ends, whatever happened.
- A refusal by the broker ends the wait at once (the connection's refusal listeners): the
  refusal comes one round trip after the publish, the timeout many seconds later.
- Between tries the wait is :data:`RETRY` (:class:`bus.backoff.Backoff`, 0.05 s doubling up to
  1 s): short, because a durable publish is usually waiting for a server that restarts in
  seconds, and bound by the caller's ``timeout``: a wait that would end past it is not begun.
- An acknowledgement awaited on a connection that is lost never comes: the message is sent again
  as soon as the connection is lost (:meth:`bus.connection.Connection.lost`; nats-py keeps it until
  the reconnect), not at the request timeout. A kill -9 of the node a publisher was connected to
  stopped its publishing for that timeout, 5 s, and now for about 0.1 s (``bench/failover.py``).
- JetStream's "duplicate message id is in process" (:data:`IN_PROCESS`) is no refusal: the
  message sent again (after a lost connection, say) meets its earlier try still being stored, and
  is tried again like any "not now". Taken for a refusal, it ended publishes with an error under a
  kill -9 of a node (``bench/failover.py``, 3 runs in 12).
- A publish that gives up says why, within its timeout: the stream has no leader or no quorum
  (:class:`~bus.errors.JetStreamUnavailableError`), does not exist, or the bus has no server
  (:func:`bus.availability.diagnose`, in the timeout's last second). A stream whose own state
  says it cannot store makes later publishes to it give up after a second until it stores again
  (:class:`bus.availability.Outages`): on a cluster that lost its majority, not every message
  waits out its whole timeout.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Final

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from bus import subjects
from bus.availability import DIAGNOSIS, PROBE, Diagnosis, Outages, Seen, diagnose
from bus.backoff import Backoff
from bus.connection import TRANSIENT, Connection
from bus.errors import CityBusError, JetStreamUnavailableError, NotConnectedError, PublishTimeoutError
from bus.metrics import Metrics

__all__ = ["IN_PROCESS", "RETRY", "DurablePublisher", "Prepared", "PublishAck"]

RETRY: Final = Backoff(initial=0.05, maximum=1.0)
"""The wait between tries of a durable publish (see the module's decisions)."""

Prepared = tuple[str, str, bytes, dict[str, str]]
"""A message ready to send: its contract's CloudEvents type, subject, body and headers."""


IN_PROCESS: Final = 10158
"""JetStream's error "duplicate message id is in process": a try of the same ``ce-id`` is being
stored right now (one sent before a connection was lost or a request timed out). Not a refusal:
tried again, the message is acknowledged as a duplicate once that try is stored, or stored if it
was lost with a leader."""


class _InProcess(Exception):
    """JetStream is storing an earlier try of this message (:data:`IN_PROCESS`): try again."""


class _AckError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
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


class DurablePublisher:
    """Publishes prepared messages over ``connection`` until JetStream acknowledges them.

    :param request_timeout: the longest one attempt waits for its acknowledgement.
    """

    def __init__(self, connection: Connection, metrics: Metrics, request_timeout: float) -> None:
        self._connection = connection
        self._metrics = metrics
        self.request_timeout = request_timeout
        self._ack_prefix: str | None = None
        self._ack_nc: object = None
        self._ack_futures: dict[str, asyncio.Future[Any]] = {}
        self._ack_tokens = itertools.count()
        self.outages = Outages(connection.log)
        """The streams in a known outage (:mod:`bus.availability`)."""

    @property
    def awaiting(self) -> int:
        """How many acknowledgements :meth:`publish_many` still waits for (0 between calls)."""
        return len(self._ack_futures)

    # -- one message --------------------------------------------------------------------------

    async def publish(self, message: Prepared, timeout: float) -> PublishAck:
        """Publish one message until a stream stores it or ``timeout`` ends (:class:`PublishTimeoutError`).

        Raises :class:`~bus.errors.PermissionDeniedError` when the broker refuses the subject.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        refused: asyncio.Future[None] = loop.create_future()
        key = message[1].lower()
        stream = subjects.stream_of(message[1])

        def on_refusal(denied: str) -> None:
            if denied == key and not refused.done():
                refused.set_result(None)

        listeners = self._connection.refusal_listeners
        listeners.add(on_refusal)
        try:
            ack = await self._publish_until(message, timeout, deadline, refused, stream)
        finally:
            listeners.discard(on_refusal)
            refused.cancel()
        if self.outages:
            self.outages.stored(stream)
        return ack

    async def _publish_until(
        self,
        message: Prepared,
        timeout: float,
        deadline: float,
        refused: asyncio.Future[None],
        stream: str | None,
    ) -> PublishAck:
        """:meth:`publish`'s retries; each attempt ends early when ``refused`` is set. Tries stop in
        time to ask ``stream`` why (:meth:`_unstored`), or after a probe in a known outage."""
        ce_type, subject, body, headers = message
        connection = self._connection
        loop = asyncio.get_running_loop()
        retries = RETRY.attempts()
        started = deadline - timeout
        tries_end = started + self.outages.probe([stream], timeout)
        if tries_end == deadline and stream is not None:
            tries_end -= min(DIAGNOSIS, timeout / 4)
        while True:
            remaining = tries_end - loop.time()
            try:
                attempt = asyncio.ensure_future(
                    connection.js.publish(
                        subject,
                        body,
                        timeout=max(0.1, min(self.request_timeout, remaining)),
                        headers=dict(headers),
                    )
                )
                try:
                    either: set[asyncio.Future[Any]] = {attempt, refused, connection.lost()}
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not attempt.done():
                        attempt.cancel()  # refused, the connection lost, or this call cancelled
                if refused.done() and not attempt.done():
                    raise connection.refusal(subject)
                if not attempt.done():  # the connection was lost: its acknowledgement cannot come
                    raise NotConnectedError(
                        f"the connection was lost while {subject} awaited its acknowledgement"
                    )
                try:
                    ack = attempt.result()
                except nats.js.errors.APIError as exc:
                    if exc.err_code == IN_PROCESS:
                        raise _InProcess from exc
                    raise
                return PublishAck(ack.stream, ack.seq, bool(ack.duplicate), headers["ce-id"])
            except (*TRANSIENT, NotConnectedError, nats.js.errors.ServiceUnavailableError, _InProcess) as exc:
                if connection.refused_since(subject, started):
                    raise connection.refusal(subject) from exc
                delay = retries.next()
                if connection.closed or loop.time() + delay >= tries_end:
                    raise await self._unstored(
                        f"no JetStream stream acknowledged {subject}",
                        timeout,
                        stream,
                        _seen(exc),
                        deadline,
                    ) from exc
                self._metrics.publish_retries.labels(ce_type).inc()
                await asyncio.sleep(delay)
            except nats.js.errors.APIError as exc:
                raise CityBusError(f"JetStream refused {subject}: {exc.description or exc}") from exc

    # -- many messages ------------------------------------------------------------------------

    async def publish_many(self, prepared: list[Prepared], timeout: float, window: int) -> list[PublishAck]:
        """Publish ``prepared`` pipelined, up to ``window`` awaiting acknowledgement at once
        (see :meth:`bus.Bus.publish_durable_many`); the acknowledgements in the same order."""
        if window < 1:
            raise ValueError("window must be at least 1")
        connection = self._connection
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        acks: list[PublishAck | None] = [None] * len(prepared)
        pending = list(range(len(prepared)))
        retries = RETRY.attempts()
        streams = {subjects.stream_of(p[1]) for p in prepared}
        # In a known outage, tries end after a probe unless something is stored meanwhile.
        tries_end = started + self.outages.probe(list(streams), timeout)
        if tries_end == deadline:
            tries_end -= min(DIAGNOSIS, timeout / 4)
        while True:
            failed = await self._publish_window(prepared, pending, acks, window, tries_end)
            if self.outages and len(failed) < len(pending):
                for stream in streams:
                    self.outages.stored(stream)
                tries_end = max(tries_end, deadline - min(DIAGNOSIS, timeout / 4))
            if not failed:
                break
            refused = [prepared[i][1] for i in failed if connection.refused_since(prepared[i][1], started)]
            if refused:
                raise connection.refusal(refused[0])
            delay = retries.next()
            if connection.closed or loop.time() + delay >= tries_end:
                subject = prepared[failed[0]][1]
                raise await self._unstored(
                    f"{len(failed)} of {len(prepared)} messages were not acknowledged by a JetStream stream",
                    timeout,
                    subjects.stream_of(subject),
                    "unconfirmed" if connection.connected else "disconnected",
                    deadline,
                )
            for index in failed:
                self._metrics.publish_retries.labels(prepared[index][0]).inc()
            await asyncio.sleep(delay)
            pending = failed
        return [ack for ack in acks if ack is not None]

    async def _unstored(
        self, what: str, timeout: float, stream: str | None, seen: Seen, deadline: float
    ) -> PublishTimeoutError:
        """The error of a publish that gives up: ``what`` did not happen within ``timeout``, and why
        (asked of ``stream`` until ``deadline``); a stream in a confirmed outage is remembered."""
        if stream is None:
            return PublishTimeoutError(
                f"{what} within {timeout:g} s: is the server up and the stream provisioned? (a contract "
                "installed after citybus up started: `citybus contracts provision`)"
            )
        known = self.outages.why(stream)
        if known is not None:
            return JetStreamUnavailableError(
                f"{what} within {min(timeout, PROBE):g} s: {known}", stream=stream
            )
        wait = max(deadline - asyncio.get_running_loop().time(), 0.1)
        diagnosis: Diagnosis = await diagnose(self._connection, stream, seen, wait)
        self.outages.failed(stream, diagnosis)
        text = f"{what} within {timeout:g} s: {diagnosis.why}"
        if diagnosis.unavailable:
            return JetStreamUnavailableError(text, stream=stream)
        return PublishTimeoutError(text)

    async def _ack_inbox(self) -> str:
        """The inbox where JetStream acknowledges :meth:`publish_many`'s messages, one subscription
        for the connection's life (nats-py subscribes again after a reconnect)."""
        nc = self._connection.nc
        if self._ack_prefix is None or self._ack_nc is not nc:  # a new connection: a new inbox
            prefix = nc.new_inbox()
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

            await nc.subscribe(f"{prefix}.*", cb=on_ack)
            self._ack_prefix, self._ack_nc = prefix, nc
        return self._ack_prefix

    async def _publish_window(
        self,
        prepared: list[Prepared],
        pending: list[int],
        acks: list[PublishAck | None],
        window: int,
        deadline: float,
    ) -> list[int]:
        """One pass of :meth:`publish_many` over ``pending``; returns the unacknowledged.

        Each message is published with a reply subject in the acknowledgement inbox
        (:meth:`_ack_inbox`). Per message only a future and a callback; a wait only when the window
        is full, and once at the end. An acknowledgement that does not come within a request
        timeout is given up for this pass, and the message sent again. While the connection is
        down, nothing more is pushed into nats-py's buffer: the rest waits for the next pass.
        """
        loop = asyncio.get_running_loop()
        prefix = await self._ack_inbox()
        futures = self._ack_futures
        connection = self._connection
        nc = connection.nc
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
                    future.set_exception(connection.refusal(refused))

        def on_lost(_: asyncio.Future[None]) -> None:
            give_up_waiting()  # acknowledgements on the lost connection will not come: sent again

        lost = connection.lost()
        lost.add_done_callback(on_lost)
        connection.refusal_listeners.add(on_refusal)
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
                except TRANSIENT:
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
            lost.remove_done_callback(on_lost)
            connection.refusal_listeners.discard(on_refusal)
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
                if ack.error.err_code == IN_PROCESS:
                    failed.append(index)
                    continue
                refused = prepared[index][1]
                raise CityBusError(f"JetStream refused {refused}: {ack.error.description or ack.error}")
            acks[index] = PublishAck(ack.stream, ack.seq, ack.duplicate, prepared[index][3]["ce-id"])
        return sorted(failed)


def _seen(exc: BaseException) -> Seen:
    """What an attempt that failed with ``exc`` met (:data:`bus.availability.Seen`)."""
    if isinstance(
        exc,
        nats.js.errors.NoStreamResponseError
        | nats.errors.NoRespondersError
        | nats.js.errors.ServiceUnavailableError,
    ):
        return "nobody"
    if isinstance(
        exc, nats.errors.TimeoutError | asyncio.TimeoutError | nats.errors.FlushTimeoutError | _InProcess
    ):
        return "unconfirmed"
    return "disconnected"
