"""The one way in: every received message is read, counted and handled here, or dead-lettered.

Whatever delivered it — a core subscription, a request to :meth:`bus.Bus.serve`, a durable
consumer's fetch, a raw subscription — a message takes the same steps, built once per subscription
by :func:`receiver`:

1. **read** (:class:`EventReader`): the header block must be readable (:func:`bad_header`), the
   CloudEvents headers complete, the ``ce-type`` the expected one, the ``ce-source`` not one
   reserved to other subjects (:mod:`bus.origin`, when the bus has a guard), the body valid for the
   contract (one :class:`~bus.codec.Codec` per subscription). A raw subscription only checks the block.
2. **admit**: the policy may refuse a message before its handler (a durable consumer refuses one
   delivered more often than it allows).
3. **count** (received, latency) and **log context** (the event id in
   :data:`~bus.logs.CURRENT_EVENT`, on every line the handler logs).
4. **handle**: the handler, wrapped by the middleware (:data:`Middleware`) in the order given, so
   a new concern — tracing, a header, a metric — is added in one place and shows on every kind.
5. **settle** (:class:`Policy`): what a rejected message, a failed handler and a handled message
   mean for this kind of delivery — a dead letter; for a request, an error reply; for JetStream,
   also the ack, nak (with a delay) or term (:class:`StreamPolicy`).

Decisions, and why:

- The middleware chain is composed when the subscription is made, not per message: with no
  middleware the handler is called directly, so a concern that is off costs nothing.
- A read raises :class:`~bus.errors.ContractViolation` and nothing else, whatever the bytes: a
  receive path that met another error would lose the message (a subscription) or die on it at
  every redelivery (a durable consumer).
"""

from __future__ import annotations

import time as _time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from bus.codec import Codec
from bus.control import BAD_REQUEST, FAILED, error_headers
from bus.envelope import Envelope, Event, parse_headers
from bus.errors import ContractViolation
from bus.logs import CURRENT_EVENT
from bus.metrics import ContractMetrics
from bus.origin import SourceGuard
from bus.wire import BadHeaders
from contracts import Classification, Contract, Registry

__all__ = [
    "DeadLetterPolicy",
    "EventReader",
    "LetterSink",
    "Message",
    "Middleware",
    "Policy",
    "RawMessage",
    "ReplyPolicy",
    "Route",
    "Step",
    "StreamPolicy",
    "bad_header",
    "delivery_count",
    "loggable_subject",
    "pending_count",
    "read_raw",
    "receiver",
    "stream_sequence",
]

C = TypeVar("C", bound=Contract)


class Message(Protocol):
    """A received message as the pipeline reads it and the dead letters keep it (nats-py's ``Msg``,
    the in-memory one and :class:`RawMessage` fit): the one shape of an arrived message in ``bus``."""

    @property
    def subject(self) -> str:
        """The subject it arrived on."""
        ...

    @property
    def data(self) -> bytes:
        """Its body as it arrived."""
        ...

    @property
    def headers(self) -> Mapping[str, str] | None:
        """Its headers as they arrived."""
        ...

    @property
    def reply(self) -> str:
        """Where a request wants its answer; empty for a plain message."""
        ...


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message that is not (yet) a contract: a device uplink, a vendor payload, a raw subject."""

    subject: str
    data: bytes
    headers: Mapping[str, str] | None = None
    reply: str = ""
    """Where a request wants its answer (``publish_raw`` to it); empty for a plain message."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a pipeline delivers, for middleware to know: ``kind`` is ``subscribe``, ``serve``,
    ``consume`` or ``raw``; ``contract`` the expected ``ce-type`` (empty for raw); ``consumer`` the
    queue group or durable name."""

    kind: str
    subject: str
    contract: str = ""
    consumer: str = ""


Step = Callable[[Any, Any], Awaitable[Any]]
"""A handling step: takes the item (an :class:`~bus.envelope.Event`, or a :class:`RawMessage` for a
raw subscription) and the message as it arrived; returns what the handler returned."""

Middleware = Callable[[Route, Step], Step]
"""Wraps a subscription's handling step, once, when the subscription is made: returns the step to
call instead (which calls the one it was given)."""


class LetterSink(Protocol):
    """Where the pipeline sends what it cannot deliver (:class:`bus.deadletters.DeadLetters`)."""

    async def send(
        self,
        msg: Any,
        *,
        reason: str,
        detail: str,
        contract: str = "",
        consumer: str = "",
        deliveries: int = 1,
    ) -> bool:
        """Dead-letter ``msg``; whether JetStream stored the letter."""
        ...


class Policy(Protocol):
    """What settles a message: after a rejection, a failed handler, or success."""

    admit: Callable[[Any], Awaitable[bool]] | None
    """Asked before the handler (``None``: every valid message is admitted)."""

    async def rejected(self, msg: Any, reason: str, detail: str) -> None:
        """The message cannot be read as the contract (``reason`` as in dead letters)."""
        ...

    async def failed(self, msg: Any, item: Any, exc: Exception) -> None:
        """The handler raised ``exc`` (called inside the ``except``: ``log.exception`` works)."""
        ...

    @property
    def handled(self) -> Callable[[Any, Any], Awaitable[None]] | None:
        """Called once the handler returned its result (``None``: nothing more to do, not awaited)."""
        ...


def bad_header(msg: Message | RawMessage) -> None:
    """Raise :class:`ContractViolation` ``bad-header`` when the message's header block could not be
    read (:class:`~bus.wire.BadHeaders`): nothing of it can be trusted, whatever reads it."""
    headers = msg.headers
    if type(headers) is BadHeaders:
        raise ContractViolation(
            f"the NATS header block cannot be read ({headers.error}); its bytes are kept in the "
            "dead letter's original_headers as citybus-header-block",
            reason="bad-header",
        )


class EventReader(Generic[C]):
    """Reads messages of one contract: headers, ``ce-type`` and body, with one codec built once."""

    __slots__ = ("codec", "expected", "guard", "registry")

    def __init__(self, contract: type[C], registry: Registry, guard: SourceGuard | None = None) -> None:
        self.codec = Codec(contract)
        self.expected = contract.__contract__.type
        self.registry = registry
        self.guard = guard or None
        """Reserved ``ce-source`` values (:mod:`bus.origin`): one on another subject is ``forged-source``."""

    def __call__(self, msg: Message) -> Event[C]:
        """The message as a typed event, or :class:`ContractViolation` (and nothing else)."""
        try:
            bad_header(msg)
            envelope: Envelope = parse_headers(msg.headers, msg.subject)
            if envelope.type != self.expected:
                known = self.registry.by_type(envelope.type)
                raise ContractViolation(
                    f"expected {self.expected}, got ce-type {envelope.type!r}"
                    + ("" if known else " (not a known contract)"),
                    reason="wrong-contract" if known else "unknown-type",
                )
            if self.guard is not None:
                self.guard.check(msg.subject, envelope.source)
            return Event(
                self.codec.decode(msg.data, envelope.content_type), envelope, getattr(msg, "sealed", None)
            )
        except ContractViolation:
            raise
        except Exception as exc:  # a decoder's failure nobody foresaw: still the message's fault
            raise ContractViolation(
                f"the message cannot be read: {type(exc).__name__}: {exc}", reason="invalid-body"
            ) from exc


def read_raw(msg: Message) -> RawMessage:
    """A raw message as it came, once its header block is known readable."""
    raw = RawMessage(msg.subject, bytes(msg.data), msg.headers, msg.reply or "")
    bad_header(raw)
    return raw


def receiver(
    route: Route,
    read: Callable[[Any], Any],
    handle: Step,
    policy: Policy,
    *,
    metrics: ContractMetrics | None,
    middleware: Sequence[Middleware] = (),
    direct: Callable[[Any], Awaitable[Any]] | None = None,
    opener: Callable[[Any], Awaitable[Any]] | None = None,
) -> Callable[[Any], Awaitable[None]]:
    """The callback that takes one message of ``route`` through the pipeline (see the module).

    ``read`` turns a message into the item handed on (an :class:`EventReader` for a contract,
    :func:`read_raw`); ``metrics`` counts a contract's messages (``None`` for raw ones). ``direct``,
    the user's handler that ``handle`` wraps, is called itself when no middleware is installed: one
    coroutine less a message (measured: the typed subscriber's ceiling is a few of them).

    ``opener`` opens a sealed personal message before it is read (:class:`bus.personal.opening.Opener`):
    it returns the opened message, ``None`` for one that is erased (settled as handled, never handed
    on), or raises :class:`ContractViolation` for one that must be rejected. The policy always
    settles the message as it arrived.
    """
    step = handle
    for wrap in reversed(middleware):
        step = wrap(route, step)
    plain = direct if direct is not None and not middleware else None
    admit = policy.admit
    rejected, failed, handled = policy.rejected, policy.failed, policy.handled
    typed = metrics is not None
    cm: Any = metrics

    async def receive(msg: Any) -> None:
        try:
            if opener is None:
                item = read(msg)
            else:
                opened = await opener(msg)
                if opened is None:
                    if handled is not None:
                        await handled(msg, None)
                    return
                item = read(opened)
        except ContractViolation as exc:
            if typed:
                cm.invalid(exc.reason)
            await rejected(msg, exc.reason, str(exc))
            return
        if admit is not None and not await admit(msg):
            return
        if typed:
            cm.received.inc()
            sent = item.envelope.time
            if sent is not None:
                cm.latency.observe(max(0.0, _time.time() - sent.timestamp()))
            # The event id on every line the handler logs (bus.logs.add_event_id): one context
            # variable, cheaper per message than binding structlog's.
            token = CURRENT_EVENT.set(item.id)
        started = _time.perf_counter()
        try:
            result = await (plain(item) if plain is not None else step(item, msg))
        except Exception as exc:
            if typed:
                cm.handler_errors.inc()
            await failed(msg, item, exc)
            return
        finally:
            if typed:
                CURRENT_EVENT.reset(token)
                cm.handler_duration.observe(_time.perf_counter() - started)
        if handled is not None:
            await handled(msg, result)

    return receive


# -- JetStream delivery metadata ----------------------------------------------------------------


def _ack_token(msg: Any, v1: int, v2: int) -> int | None:
    """Token ``v1`` (of the 9-token form) or ``v2`` (of the 11- or 12-token form) of a JetStream
    reply subject, as an int; ``None`` when the reply is not one.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``, or, from
    servers that add them, ``$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>...``
    with a random token after the pending count. Stream and consumer names hold no dots.
    """
    reply = msg.reply
    if reply and reply.startswith("$JS.ACK."):
        tokens = reply.split(".")
        n = len(tokens)
        if n == 9:
            return int(tokens[v1])
        if n >= 11:
            return int(tokens[v2])
    return None


def delivery_count(msg: Any) -> int:
    """How many times JetStream has delivered ``msg`` (this time included).

    Read from the reply subject's tokens: ``msg.metadata`` builds a dataclass with sequence pairs
    and a timestamp for every message, and only this count is needed. Anything else (the in-memory
    bus's messages, a reply form not known here) falls back to ``msg.metadata``.
    """
    count = _ack_token(msg, 4, 6)
    return msg.metadata.num_delivered if count is None else count


def stream_sequence(msg: Any) -> int | None:
    """The stream sequence of a message a durable consumer delivered, from its reply subject;
    ``None`` for one that has no JetStream reply (the in-memory bus's)."""
    return _ack_token(msg, 5, 7)


def pending_count(msg: Any) -> int:
    """How many of the stream's messages are still to come to the consumer that delivered ``msg``."""
    count = _ack_token(msg, 8, 10)
    return msg.metadata.num_pending if count is None else count


# -- policies ----------------------------------------------------------------------------------


def _personal(subject: str) -> bool:
    tokens = subject.split(".", 2)
    return len(tokens) > 2 and tokens[1] == Classification.PERSONAL.value


def loggable_subject(subject: str) -> str:
    """A subject as a log line may show it: a personal one without its entity token, which can name
    a person (their ref, or their id in a message sent around the bus); others as they are."""
    if not _personal(subject):
        return subject
    return subject.rpartition(".")[0] + ".*"


def _log_failure(log: Any, event: str, msg: Any, exc: Exception, **keys: Any) -> None:
    """Log a handler's failure: with its traceback, or — for a personal message, whose error text
    may quote a name or an e-mail — with the error's type and where it was raised only."""
    if not _personal(msg.subject):
        log.exception(event, subject=msg.subject, **keys)
        return
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    log.error(event, subject=loggable_subject(msg.subject), error=type(exc).__name__, at=where, **keys)


class DeadLetterPolicy:
    """A core subscription's: a rejected message or a failed handler is dead-lettered."""

    admit: Callable[[Any], Awaitable[bool]] | None = None

    def __init__(self, dead_letters: LetterSink, *, route: Route, log: Any) -> None:
        self.dead_letters = dead_letters
        self.route = route
        self.log = log

    async def rejected(self, msg: Any, reason: str, detail: str) -> None:
        """Dead-letter it with the reason."""
        route = self.route
        await self.dead_letters.send(
            msg, reason=reason, detail=detail, contract=route.contract, consumer=route.consumer
        )

    async def failed(self, msg: Any, item: Any, exc: Exception) -> None:
        """Log the handler's error and dead-letter the message (``handler-error``)."""
        route = self.route
        _log_failure(self.log, "handler failed", msg, exc, contract=route.contract or None, kind=route.kind)
        await self.dead_letters.send(
            msg,
            reason="handler-error",
            detail=f"{type(exc).__name__}: {exc}",
            contract=route.contract,
            consumer=route.consumer,
        )

    handled: Callable[[Any, Any], Awaitable[None]] | None = None
    """Nothing more to do once the handler returned: skipped, not awaited, on the hot path."""


class ReplyPolicy(DeadLetterPolicy):
    """A request's: a rejected request is dead-lettered and refused (``400``, ``<reason>: <detail>``);
    a responder's failure is refused too (``500``): the requester sees why, nothing is lost.

    The refusal is the one of every citybus request (:func:`bus.control.error_headers`): an empty
    body with the NATS service error headers, raised on the requester's side as
    :class:`~bus.errors.RequestRefusedError`."""

    def __init__(self, dead_letters: LetterSink, *, route: Route, log: Any, reply: Step) -> None:
        super().__init__(dead_letters, route=route, log=log)
        self._reply = reply

    async def rejected(self, msg: Any, reason: str, detail: str) -> None:
        """Dead-letter it, then tell the requester why."""
        await self.dead_letters.send(msg, reason=reason, detail=detail, contract=self.route.contract)
        if msg.reply:
            await self._reply(msg, error_headers(BAD_REQUEST, f"{reason}: {detail}"))

    async def failed(self, msg: Any, item: Any, exc: Exception) -> None:
        """Log the responder's error and answer with it."""
        _log_failure(self.log, "responder failed", msg, exc, contract=self.route.contract)
        if msg.reply:
            await self._reply(msg, error_headers(FAILED, f"handler-error: {type(exc).__name__}: {exc}"))


class StreamPolicy(DeadLetterPolicy):
    """A durable consumer's: besides the dead letter, JetStream is told what became of the message.

    Handled: ack. Rejected, or delivered more than ``max_deliver`` times: dead-lettered, then term
    once the dead letter is stored (else nak after a delay: the message is kept and tried again).
    A failed handler: nak after ``retry_delay``, until the ``max_deliver``-th delivery fails.
    """

    def __init__(
        self, dead_letters: LetterSink, *, route: Route, log: Any, max_deliver: int, retry_delay: float
    ) -> None:
        super().__init__(dead_letters, route=route, log=log)
        self.max_deliver = max_deliver
        self.retry_delay = retry_delay
        self.admit = self._admit

    async def _give_up(self, msg: Any, reason: str, detail: str) -> None:
        """Dead-letter the message; terminate it only once its dead letter is safe."""
        route = self.route
        stored = await self.dead_letters.send(
            msg,
            reason=reason,
            detail=detail,
            contract=route.contract,
            consumer=route.consumer,
            deliveries=delivery_count(msg),
        )
        if stored:
            await msg.term()
        else:
            await msg.nak(delay=max(self.retry_delay, 5.0))

    async def _admit(self, msg: Any) -> bool:
        deliveries = delivery_count(msg)
        if deliveries <= self.max_deliver:
            return True
        # Delivered again after a crash or an ack timeout on its last allowed delivery.
        await self._give_up(msg, "max-deliver", f"delivered {deliveries} times without success")
        return False

    async def rejected(self, msg: Any, reason: str, detail: str) -> None:
        """Dead-letter it and terminate it (it will never fit)."""
        await self._give_up(msg, reason, detail)

    async def failed(self, msg: Any, item: Any, exc: Exception) -> None:
        """Retry after ``retry_delay``, or give up on the last allowed delivery."""
        deliveries = delivery_count(msg)
        event_id = getattr(item, "id", None)
        error = type(exc).__name__ if _personal(msg.subject) else repr(exc)  # its text may be personal
        if deliveries >= self.max_deliver:
            self.log.error("handler failed, giving up", event_id=event_id, error=error)
            detail = f"handler failed {deliveries} times; last: {type(exc).__name__}: {exc}"
            await self._give_up(msg, "max-deliver", detail)
        else:
            self.log.warning(
                "handler failed, will retry", event_id=event_id, delivery=deliveries, error=error
            )
            await msg.nak(delay=self.retry_delay)

    async def handled(self, msg: Any, result: Any) -> None:
        """Acknowledge it."""
        await msg.ack()
