"""Answering requests: the responder's side of request/reply (:meth:`bus.Bus.serve`).

A request comes in through the one pipeline (:mod:`bus.pipeline`) like any message; the
responder's answer goes back to the request's reply subject, once. A request that does not fit is
dead-lettered and refused, a responder that raises is refused (:class:`bus.pipeline.ReplyPolicy`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from bus import subjects
from bus.connection import Subscription
from bus.envelope import Event
from bus.pipeline import LetterSink, Policy, ReplyPolicy, Route, Step
from contracts import Contract

__all__ = ["Host", "is_inbox", "serve"]

_INBOX = "_INBOX."


def is_inbox(reply: str | None) -> bool:
    """Whether ``reply`` is a requester's inbox (``_INBOX.…``), the only place an answer may go."""
    if not reply:
        return False
    return reply.startswith(_INBOX) and ">" not in reply and "*" not in reply


C = TypeVar("C", bound=Contract)


class Host(Protocol):
    """What serving needs of its bus (a :class:`~bus.Bus`)."""

    @property
    def nc(self) -> Any:
        """The NATS connection."""

    @property
    def dead_letters(self) -> LetterSink:
        """Where refused requests go."""

    @property
    def log(self) -> Any:
        """Its logger."""

    def _prepare(self, instance: Contract) -> tuple[str, str, bytes, dict[str, str]]:
        """The subject, body and headers of an answer."""

    def receiver(
        self, route: Route, contract: type[Contract] | None, handle: Step, policy: Policy
    ) -> Callable[[Any], Awaitable[None]]:
        """The pipeline callback for one route."""


async def serve(
    bus: Host,
    contract: type[C],
    responder: Callable[[Event[C]], Awaitable[Contract]],
    *,
    queue: str = "",
    entity: str = "*",
) -> Subscription:
    """Answer requests of ``contract`` on ``bus`` with what ``responder`` returns (see :meth:`Bus.serve`)."""
    nc = bus.nc
    subject = subjects.request_filter(contract, entity)
    route = Route("serve", subject, contract.__contract__.type, queue)

    async def handle(event: Event[C], msg: Any) -> None:
        if not is_inbox(msg.reply):
            # The reply subject is the asker's to choose, and the broker does not check it: answered
            # there, a roster or an export would be published on whatever the responder may publish
            # (a public stream's subject, stored for everyone and found by no erasure). Not answered.
            bus.log.warning(
                "request not answered: its reply subject is not an inbox", contract=route.contract
            )
            return
        _, _, body, headers = bus._prepare(await responder(event))
        await nc.publish(msg.reply, body, headers=headers)

    async def error_reply(msg: Any, headers: dict[str, str]) -> None:
        if is_inbox(msg.reply):
            await nc.publish(msg.reply, b"", headers=headers)

    policy = ReplyPolicy(bus.dead_letters, route=route, log=bus.log, reply=error_reply)
    sub = await nc.subscribe(subject, queue=queue, cb=bus.receiver(route, contract, handle, policy))
    return Subscription(sub, sub.subject)
