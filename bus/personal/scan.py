"""Reading and erasing a stream's stored messages one by one: what the personal places are made of.

Finding a person's messages means reading every message of a personal stream: a sealed message
names its person in a header (``citybus-person``), and a copy that was never sealed (a dead letter
of a malformed message) names them only in its bytes. :func:`scan` reads a stream by sequence with
``$JS.API.STREAM.MSG.GET``, :data:`WINDOW` requests in flight at a time, and :func:`erase` deletes
messages with ``$JS.API.STREAM.MSG.DELETE``, whose default is to *erase*: the server overwrites the
stored record with random bytes, so the message is gone from the disk too, not only from the
stream's index (a purge only drops it from the index).

Decisions, and why:

* **``MSG.GET`` by sequence, not a consumer.** ``python -m bench.personal`` (20,000 sealed
  sign-ups, a local nats-server, two cores): with :data:`WINDOW` requests in flight ~17,600
  messages/s, one at a time ~4,200/s; an export of one person over that stream takes 1.3 s, an
  erasure 3.0 s. An ordered push consumer read ~70,000 messages/s in a one-off measurement, but
  creating one needs ``CONSUMER.CREATE`` on the personal streams, whose request may name any
  deliver subject: the privacy service could pour a personal stream onto a public subject.
  ``MSG.GET`` only answers the asker's own inbox, so the privacy service's rights stay
  read-by-sequence and delete. An erasure reads each personal stream twice (export, then erase:
  the identifiers it learns in between must be searched for in every unsealed message).
* **Gaps are skipped.** A sequence that was deleted answers "no message found" and is passed over.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import msgspec
import nats.errors

from bus import subjects
from bus.errors import CityBusError, PermissionDeniedError
from bus.wire import parse_header_lines

if TYPE_CHECKING:
    from bus.bus import Bus

__all__ = ["WINDOW", "ScanError", "Stored", "erase", "scan", "stream_bounds"]

WINDOW: Final = 128
"""``MSG.GET`` requests in flight at a time while a stream is read."""

_NO_MESSAGE: Final = 10037
_NOT_DELETED: Final = 10057  # "no message found" when deleting one that is gone
_STREAM_NOT_FOUND: Final = 10059
_TIMEOUT: Final = 5.0
_HEADER_LINE: Final = len(b"NATS/1.0\r\n")


class ScanError(CityBusError):
    """A stream could not be read or erased: not there, not permitted, or not answering."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored message as the stream keeps it."""

    stream: str
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes
    time: datetime
    """When the stream stored it (the server's clock, not the sender's ``ce-time``)."""

    @property
    def location(self) -> str:
        """``STREAM#seq``: where an export or a receipt says it was."""
        return f"{self.stream}#{self.seq}"


class _Error(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Message(msgspec.Struct):
    subject: str
    seq: int
    time: datetime
    data: str = ""
    hdrs: str = ""


class _Get(msgspec.Struct):
    message: _Message | None = None
    error: _Error | None = None


class _State(msgspec.Struct):
    first_seq: int = 0
    last_seq: int = 0
    messages: int = 0


class _Info(msgspec.Struct):
    state: _State | None = None
    error: _Error | None = None


class _Deleted(msgspec.Struct):
    success: bool = False
    error: _Error | None = None


_get = msgspec.json.Decoder(_Get).decode
_info = msgspec.json.Decoder(_Info).decode
_deleted = msgspec.json.Decoder(_Deleted).decode
_encode = msgspec.json.encode


async def _ask(bus: Bus, subject: str, body: bytes, *, watch: bool = True) -> bytes:
    """A JetStream API request; with ``watch``, a refusal by the broker is told at once (the
    first request of a kind), else straight through nats-py (twice as fast: the rest)."""
    try:
        if not watch:
            return bytes((await bus.nc.request(subject, body, timeout=_TIMEOUT)).data)
        reply = await bus.request_raw(subject, body, timeout=_TIMEOUT)
    except PermissionDeniedError as exc:
        raise ScanError(
            f"{exc}: only the privacy service's user reads and erases stored personal messages"
        ) from None
    except (TimeoutError, CityBusError, nats.errors.Error) as exc:
        raise ScanError(f"JetStream did not answer {subject}: {exc}") from None
    return reply.data


def _fail(stream: str, error: _Error, doing: str) -> ScanError:
    if error.err_code == _STREAM_NOT_FOUND:
        return ScanError(f"stream {stream} does not exist in this account (is it provisioned?)")
    return ScanError(f"JetStream refused to {doing} {stream}: {error.description} ({error.err_code})")


async def stream_bounds(bus: Bus, stream: str) -> tuple[int, int] | None:
    """The first and last sequence of ``stream``; ``None`` when it holds nothing or does not exist."""
    answer = _info(await _ask(bus, subjects.js_api("STREAM", "INFO", stream), b""))
    if answer.error is not None:
        if answer.error.err_code == _STREAM_NOT_FOUND:
            return None
        raise _fail(stream, answer.error, "describe")
    state = answer.state
    if state is None or state.messages == 0:
        return None
    return state.first_seq, state.last_seq


async def _one(bus: Bus, stream: str, seq: int, *, watch: bool = False) -> Stored | None:
    subject = subjects.js_api("STREAM", "MSG", "GET", stream)
    answer = _get(await _ask(bus, subject, _encode({"seq": seq}), watch=watch))
    if answer.error is not None:
        if answer.error.err_code == _NO_MESSAGE:
            return None  # deleted (or expired) meanwhile: a gap
        raise _fail(stream, answer.error, "read")
    msg = answer.message
    if msg is None:
        return None
    headers = parse_header_lines(base64.b64decode(msg.hdrs)[_HEADER_LINE:]) if msg.hdrs else {}
    return Stored(stream, msg.seq, msg.subject, headers, base64.b64decode(msg.data), msg.time)


async def scan(bus: Bus, stream: str, *, until: int | None = None) -> AsyncGenerator[Stored, None]:
    """Every message of ``stream`` from its first sequence to its last (or ``until``), in order."""
    bounds = await stream_bounds(bus, stream)
    if bounds is None:
        return
    first, last = bounds
    if until is not None:
        last = min(last, until)
    found = await _one(bus, stream, first, watch=True)
    if found is not None:
        yield found
    for start in range(first + 1, last + 1, WINDOW):
        window = range(start, min(start + WINDOW, last + 1))
        for found in await asyncio.gather(*(_one(bus, stream, seq) for seq in window)):
            if found is not None:
                yield found


async def erase(bus: Bus, stream: str, seqs: Iterable[int]) -> int:
    """Erase (delete and overwrite) the messages ``seqs`` of ``stream``; how many were still there."""
    subject = subjects.js_api("STREAM", "MSG", "DELETE", stream)
    erased = 0
    for seq in seqs:
        answer = _deleted(await _ask(bus, subject, _encode({"seq": seq})))
        if answer.error is not None:
            if (
                answer.error.err_code in (_NO_MESSAGE, _NOT_DELETED)
                and "no message" in answer.error.description
            ):
                continue  # gone already (retention, or another erasure)
            raise _fail(stream, answer.error, "erase from")
        erased += answer.success
    return erased
