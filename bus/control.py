"""Control services: requests to a running component, its answers, and how it says no.

A control service (the replay's ``pause``, ``seek`` …) answers requests on
``citybus.control.<component>.<instance>.<verb>`` (:func:`bus.subjects.control_subject`). Requests
and answers are msgspec Structs encoded as JSON; an empty request body means "no arguments". A
reply is either the answer Struct, or a refusal: an empty body with the NATS service error headers
``Nats-Service-Error`` (what is wrong, in words for a person) and ``Nats-Service-Error-Code``
(``400``: the request is wrong; ``404``: no such verb; ``500``: the service failed)::

    # the service, for each request
    body, headers = answer(lambda: handle(verb, raw.data))
    await ctx.publish_raw(raw.reply, body, headers)

    # the requester
    status = await request(bus, subject, SeekRequest(position=60), ReplayStatus)

:func:`request` turns a refusal into :class:`~bus.errors.RequestRefusedError`, and an answer that is
not the expected Struct into a :class:`~bus.errors.CityBusError` saying so: a caller never reads a
``dict``.

Decisions, and why:

* **Errors one way, in headers.** A refusal once came as a ``{"error": …}`` body from the replay and
  as a ``citybus-error`` header from :meth:`bus.Bus.serve`; a reader had to know which. The
  headers are those of the NATS micro protocol, so ``nats req`` and any NATS client library show a
  citybus refusal as the error it is, and an answer body is always the answer type.
* **The NATS micro conventions, not** ``nats.micro`` **itself** (for now). ``nats.micro`` wants the
  raw nats-py client and subscribes for itself, while a component reaches the bus through its
  adapter context (``ctx.subscribe_raw``): counted, permission-checked, and the same over the
  in-memory bus of the adapter harness, where there is no nats-py client. Its ``$SRV`` discovery
  would also need new broker permissions for every control user — subscribe to ``$SRV.PING``,
  ``$SRV.INFO``, ``$SRV.STATS`` and ``$SRV.*.<service>.>`` (``bus/access/`` grants a control
  component only ``citybus.control.<component>.<name>.*``) — and then any such user could answer
  discovery in another's name, while the instances are already listed by ``citybus status``. What
  ``nats.micro`` would bring besides (endpoint statistics) the metrics already show. Because the
  wire conventions are the same, moving a service onto ``nats.micro`` later changes no requester.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TypeVar

import msgspec
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER

from bus.codec import decode_bytes
from bus.errors import CityBusError, RequestRefusedError, UndecodableError

__all__ = [
    "BAD_REQUEST",
    "ERROR_CODE_HEADER",
    "ERROR_HEADER",
    "FAILED",
    "UNKNOWN_VERB",
    "Refusal",
    "answer",
    "decode_request",
    "error_headers",
    "raise_for_refusal",
    "request",
]

BAD_REQUEST: Final = "400"
"""The request is wrong (its body, a value out of range): the requester can fix it."""
UNKNOWN_VERB: Final = "404"
"""The service has no such verb."""
FAILED: Final = "500"
"""The service failed while handling a request that was right."""

S = TypeVar("S", bound=msgspec.Struct)

_ENCODER: Final = msgspec.json.Encoder()


class Refusal(Exception):
    """Raised by a control handler to refuse a request; :func:`answer` sends it as the error headers.

    (Not a :class:`~bus.errors.CityBusError`: it never reaches a user of this process. The requester
    gets it as :class:`~bus.errors.RequestRefusedError`.)
    """

    def __init__(self, description: str, code: str = BAD_REQUEST) -> None:
        super().__init__(description)
        self.description = description
        self.code = code


def error_headers(code: str, description: str) -> dict[str, str]:
    """The headers of a refusal (``Nats-Service-Error`` and ``-Code``), as NATS micro services send them."""
    return {ERROR_HEADER: description.replace("\r", " ").replace("\n", " "), ERROR_CODE_HEADER: code}


def decode_request(decoder: msgspec.json.Decoder[S], data: bytes) -> S:
    """A request body decoded (an empty one as ``{}``), or a :class:`Refusal` saying what is wrong."""
    try:
        return decode_bytes(decoder, data if data.strip() else b"{}")
    except UndecodableError as exc:  # whatever the requester sent: it gets a reply saying what is wrong
        raise Refusal(str(exc) if exc.kind == "shape" else f"the request body is {exc}") from None


def answer(handle: Callable[[], msgspec.Struct]) -> tuple[bytes, dict[str, str] | None]:
    """Run one request's handler: its answer encoded (no headers), or the headers of its refusal.

    A :class:`Refusal` or a :class:`ValueError` (a value the handler would not take) is refused
    with their words; any other exception is a bug of the service and propagates.
    """
    try:
        result = handle()
    except Refusal as exc:
        return b"", error_headers(exc.code, exc.description)
    except ValueError as exc:
        return b"", error_headers(BAD_REQUEST, str(exc))
    return _ENCODER.encode(result), None


def raise_for_refusal(headers: Mapping[str, str] | None, subject: str) -> None:
    """Raise :class:`~bus.errors.RequestRefusedError` when a reply on ``subject`` is a refusal."""
    if not headers:
        return
    description = headers.get(ERROR_HEADER)
    code = headers.get(ERROR_CODE_HEADER)
    if description is None and code is None:
        return
    description = description or "(no description)"
    raise RequestRefusedError(
        f"the responder on {subject} refused the request ({code or FAILED}): {description}",
        code=code or FAILED,
        description=description,
    )


class _Reply(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, str] | None: ...


class Requester(Protocol):
    """What :func:`request` needs of a bus: :meth:`bus.Bus.request_raw`."""

    async def request_raw(self, subject: str, data: bytes = ..., *, timeout: float | None = ...) -> Any:
        """Send ``data`` to ``subject`` and return the first reply."""
        ...


async def request(
    bus: Requester,
    subject: str,
    body: msgspec.Struct | None,
    answer_type: type[S],
    *,
    timeout: float | None = None,
) -> S:
    """Send one control request (``body``; ``None``: no arguments) and return its answer, typed.

    Raises :class:`~bus.errors.RequestRefusedError` when the service refuses, and the bus's errors
    when nobody serves the subject, nobody answers in time or the broker refuses it.
    """
    reply: _Reply = await bus.request_raw(
        subject, b"" if body is None else _ENCODER.encode(body), timeout=timeout
    )
    raise_for_refusal(reply.headers, subject)
    try:
        return decode_bytes(msgspec.json.Decoder(answer_type), reply.data)
    except UndecodableError as exc:
        raise CityBusError(
            f"the answer on {subject} is not a {answer_type.__name__} ({exc}): is the responder "
            "a citybus of another version?"
        ) from None
