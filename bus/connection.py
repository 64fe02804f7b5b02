"""The NATS connection under a :class:`~bus.Bus`: connecting, probing, watching, and what errors mean.

Everything nats-py tells citybus about the connection arrives here and leaves as citybus's own
errors and metrics: the two probes that make a first connect fail fast (:func:`check_reachable`,
:func:`check_accepted`), the callbacks that count disconnects and map the server's permission
errors (:meth:`Connection.refusal`), and the watchdog that notices a connection that no longer reads.

Decisions, and why:

- The transport is any object shaped like nats-py's client where citybus uses it.
  :meth:`Connection.connect` makes a real one (:class:`bus.wire.Client`); :meth:`Connection.adopt`
  takes one that is already open, which is how :class:`bus.memory.MemoryBus` runs the real bus over
  its in-process fake without overriding anything of :class:`~bus.Bus`.
- Refusals are remembered per subject (lower-cased, as nats-py reports them) with the loop time,
  and announced to listeners, so a publish waiting for an acknowledgement that will never come
  stops waiting one round trip after the refusal instead of at its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext

from bus.errors import (
    NoRespondersError,
    NotConnectedError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from bus.metrics import Metrics
from bus.urls import redact_url, server_list
from bus.wire import Client

__all__ = [
    "TRANSIENT",
    "Connection",
    "Subscription",
    "check_accepted",
    "check_reachable",
    "redact_url",
    "server_list",
]

# nats-py reports the server's -ERR 'Permissions Violation for Publish to "subject"' (lower case).
_PERMISSION_DENIED = re.compile(
    r'permissions violation for (publish|subscription) to "([^"]*)"', re.IGNORECASE
)

TRANSIENT = (
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
"""Errors from nats-py that mean "not now, try again": the server is restarting or unreachable."""


def _never_raising(callback: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``callback`` made safe for nats-py: an exception out of a callback ends nats-py's reading
    and reconnecting for good (seen with a log written to a closed stream: the connection stayed
    down). A failure is written to standard error as a last resort, never raised."""

    async def guarded(*args: Any) -> None:
        try:
            await callback(*args)
        except Exception as exc:  # noqa: BLE001 - see the docstring: raising here kills the connection
            with contextlib.suppress(Exception):
                sys.stderr.write(f"citybus: a NATS connection callback failed: {exc!r}\n")

    return guarded


async def check_reachable(url: str, timeout: float) -> None:
    """Fail fast when no server of ``url`` accepts connections.

    nats-py retries a failed first connect as often as it reconnects — forever, here — so a
    mistyped URL or a dead server would hang instead of saying so.
    """
    servers = server_list(url)
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


async def check_accepted(url: str, timeout: float, options: dict[str, Any]) -> None:
    """Fail fast when the server refuses us (credentials, TLS): one attempt, no reconnects.

    The real connection then reconnects forever; were it the first to try, a wrong password would
    be retried forever instead of reported.
    """

    async def reported_below(exc: Exception) -> None:
        """nats-py's own callback would log the refusal with a traceback; it is raised instead."""

    try:
        probe = await nats.connect(
            server_list(url),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=timeout,
            error_cb=reported_below,
            **options,
        )
    except Exception as exc:  # nats-py raises its own errors, OSError or TimeoutError here
        raise ServerUnavailableError(
            f"the NATS server at {redact_url(url)} refused the connection: {exc or type(exc).__name__}; "
            "check the credentials and TLS settings in the URL or configuration"
        ) from exc
    await probe.close()


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


class Connection:
    """One NATS connection: opened once, reconnected forever, watched, and closed.

    :param name: the connection's name on the server.
    :param metrics: where disconnects, stalls, errors and refusals are counted.
    :param log: a structlog logger.
    """

    def __init__(self, *, name: str, metrics: Metrics, log: Any) -> None:
        self.name = name
        self.metrics = metrics
        self.log = log
        self.url = ""
        self.user = ""
        """The user this connection logs in as (``ACCOUNT/name``), or empty for an anonymous one."""
        self.refused_subscriptions: set[str] = set()
        """Subscriptions the broker refused (the user may not read them); known after a flush."""
        self.refusal_listeners: set[Any] = set()
        """Called with each refused subject (lower-cased) as the refusal arrives."""
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._closing = False
        self._stalled = False
        self._reconnections = 0
        """Times nats-py made the connection again (a ping sent before one is never answered)."""
        self._watchdog: asyncio.Task[None] | None = None
        self._denied: dict[str, float] = {}
        """Subjects the broker refused to take from this connection (lower-cased: nats-py lower-cases
        the server's error text), and when (loop time)."""
        self._lost: asyncio.Future[None] | None = None

    # -- opening ------------------------------------------------------------------------------

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
        """Connect to NATS at ``url`` (see :meth:`bus.Bus.connect`)."""
        log = self.log.bind(url=redact_url(url), user=self.user or None)
        await check_reachable(url, connect_timeout)
        await check_accepted(url, connect_timeout, options)
        self._closing = False
        try:
            settings: dict[str, Any] = {
                "name": self.name,
                "connect_timeout": connect_timeout,
                "reconnect_time_wait": reconnect_wait,
                "max_reconnect_attempts": -1,
                "allow_reconnect": True,
                "drain_timeout": drain_timeout,
                **self._callbacks(log),
            }
            nc = Client()  # nats-py's, reading headers faster (bus/wire.py)
            await nc.connect(server_list(url), **settings, **options)
        except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
            raise ServerUnavailableError(
                f"no NATS server answered at {redact_url(url)} ({exc or type(exc).__name__}): start one, or "
                "leave the URL unset so citybus starts its embedded server"
            ) from exc
        self.adopt(nc, url)
        self._watchdog = asyncio.get_running_loop().create_task(
            self._watch(nc, watch_interval, stall_timeout, log), name=f"{self.name} watchdog"
        )
        log.info("nats connected")

    def adopt(self, transport: Any, url: str) -> None:
        """Use ``transport``, an open connection shaped like nats-py's client (an in-memory fake)."""
        self._stop_watchdog()
        self._closing = False
        self._nc = transport
        self._js = transport.jetstream()
        self.url = url
        self._stalled = False
        self.metrics.link(id(self), True)

    def _callbacks(self, log: Any) -> dict[str, Any]:
        """nats-py's callbacks: disconnects and reconnects counted, errors and refusals mapped."""

        async def on_disconnect() -> None:
            if self._closing:
                self.metrics.link(id(self), None)
                return  # our own drain or close, not a lost connection
            self.metrics.link(id(self), False)
            self.metrics.disconnects.inc()
            if self._lost is not None and not self._lost.done():
                self._lost.set_result(None)
            log.warning("nats disconnected")

        async def on_reconnect() -> None:
            self._reconnections += 1
            self._stalled = False
            self.metrics.link(id(self), True)
            self.metrics.reconnects.inc()
            # At the disconnect's level: who reads warnings only (`citybus tail`) sees the outage end
            # too, and on which server of a cluster the connection went on.
            server = self._nc.connected_url if self._nc is not None else None
            log.warning("nats reconnected", server=redact_url(server.geturl()) if server else None)

        async def on_error(exc: Exception) -> None:
            self.on_error(exc, log)

        async def on_closed() -> None:
            # Closed by us: forgotten. Closed by the server for good (a revoked user): down until
            # someone closes or replaces this connection.
            self.metrics.link(id(self), None if self._closing else False)
            log.debug("nats connection closed")

        return {
            "disconnected_cb": _never_raising(on_disconnect),
            "reconnected_cb": _never_raising(on_reconnect),
            "error_cb": _never_raising(on_error),
            "closed_cb": _never_raising(on_closed),
        }

    def on_error(self, exc: Exception, log: Any) -> None:
        """What an asynchronous error from nats-py means: a slow consumer, a refusal, or other."""
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.metrics.slow_consumers.inc()
            log.warning("slow consumer: messages dropped", subject=exc.subject, sid=exc.sid)
            return
        text = str(exc) or type(exc).__name__
        denied = _PERMISSION_DENIED.search(text)
        if denied is None:
            self.metrics.nats_errors.inc()
            log.warning("nats error", error=text)
            return
        operation, subject = denied.group(1).lower(), denied.group(2)
        self.metrics.permission_denials.labels(operation).inc()
        if operation == "publish":
            subject = subject.lower()  # already, from nats-py 2.x; whatever a later one does
            self._denied[subject] = asyncio.get_running_loop().time()
            for listener in list(self.refusal_listeners):
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

    # -- refusals -----------------------------------------------------------------------------

    def lost(self) -> asyncio.Future[None]:
        """Done at the connection's next loss: a reply awaited on it will not come (a durable publish
        then sends again at once, after the reconnect, instead of at its request timeout)."""
        if self._lost is None or self._lost.done():
            self._lost = asyncio.get_running_loop().create_future()
        return self._lost

    def refused_since(self, subject: str, since: float) -> bool:
        """Whether the broker refused a publish to ``subject`` at or after ``since`` (loop time).

        Compared without case, as nats-py reports it: a subject differing only in case refused in
        the same moment would be taken for this one, and the caller told of a refusal that is real.
        """
        return self._denied.get(subject.lower(), -1.0) >= since

    def refusal(self, subject: str) -> PermissionDeniedError:
        """The error for a publish to ``subject`` the broker refused."""
        return PermissionDeniedError(
            f"the broker refused {subject} from {self.user or 'this connection'}: its user may not publish "
            "there (`citybus auth show` lists what each user may do)"
        )

    # -- requests -----------------------------------------------------------------------------

    async def request(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        *,
        watch_refusal: bool = False,
    ) -> Msg:
        """Send a request and wait for the first reply; nats-py's errors as citybus's.

        With ``watch_refusal``, a refusal of the subject by the broker ends the wait within a round
        trip (:class:`PermissionDeniedError`), not after the timeout, as if the responder were slow.
        """
        nc = self.nc
        started = asyncio.get_running_loop().time()
        reply = asyncio.ensure_future(nc.request(subject, data, timeout=timeout, headers=headers))
        try:
            if watch_refusal:
                # The server answers a refused publish with -ERR before the PONG of a PING sent
                # after it (two flushes: nats-py writes a flush's PING ahead of what it buffers).
                for _ in range(2):
                    done, _pending = await asyncio.wait({reply}, timeout=0)
                    if done:
                        break
                    try:
                        await nc.flush(timeout=max(1, round(timeout)))
                    except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError):
                        break
                if not reply.done() and self.refused_since(subject, started):
                    raise self.refusal(subject)
            return await reply
        except nats.errors.NoRespondersError as exc:
            raise NoRespondersError(f"nobody serves {subject}") from exc
        except nats.errors.TimeoutError as exc:
            if self.refused_since(subject, started):
                raise self.refusal(subject) from exc
            raise RequestTimeoutError(f"no reply on {subject} within {timeout} s") from exc
        finally:
            if not reply.done():
                reply.cancel()

    # -- watching -----------------------------------------------------------------------------

    async def _watch(self, nc: NATS, interval: float, stall_timeout: float, log: Any) -> None:
        """Notice a connection that no longer reads, say so, and reconnect it.

        nats-py reads in one task; should it end (an exception from its parser) or hang, nothing
        arrives any more — messages, acknowledgements, replies — while the client still says it is
        connected, until its own ping check fires minutes later. Here, each ``interval``: the
        reader task must be running and a ping answered within ``stall_timeout``. Otherwise the
        connection counts as down (:attr:`connected`, ``citybus_nats_connected``, ``/readyz``), the
        stall is counted and logged, and nats-py is told the connection is stale: it reconnects,
        with a new reader. The task belongs to this connection: :meth:`drain` and :meth:`close` end it.
        """
        while not nc.is_closed:
            await asyncio.sleep(interval)
            if not nc.is_connected or self._closing:
                continue  # reconnecting (nats-py's own business), or closing
            reader: asyncio.Task[None] | None = getattr(nc, "_reading_task", None)
            reconnections = self._reconnections
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
            # A ping sent on a connection lost meanwhile is never answered (nats-py forgets it on
            # reconnecting): after a failover that is no stall, and a forced reconnect would cut the
            # connection the failover had just made.
            if not nc.is_connected or self._closing or self._reconnections != reconnections:
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

    # -- state --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection is closed for good (or was never opened): no reconnect will come."""
        return self._nc is None or self._nc.is_closed

    @property
    def connected(self) -> bool:
        """True while the connection is up (not while reconnecting, nor while stalled)."""
        return self._nc is not None and self._nc.is_connected and not self._stalled

    @property
    def nc(self) -> NATS:
        """The transport: nats-py's client (or a fake shaped like it)."""
        if self._nc is None:
            raise NotConnectedError("the bus is not connected: call `await bus.connect(url)` first")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the connection."""
        if self._js is None:
            raise NotConnectedError("the bus is not connected: call `await bus.connect(url)` first")
        return self._js

    # -- closing ------------------------------------------------------------------------------

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until the server has received everything published so far."""
        try:
            # nats-py 2.16 writes the flush's PING straight to the socket, possibly ahead of commands
            # still in its own buffer: the second round trip starts after the first has drained it.
            await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]
            await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]
        except TRANSIENT as exc:
            raise NotConnectedError(f"NATS did not confirm the flush: {exc or type(exc).__name__}") from exc

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
