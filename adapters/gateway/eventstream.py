"""The ``text/event-stream`` wire format of the gateway's live updates, and its position vectors.

A frame is a few ``field: value`` lines and a blank line (the WHATWG HTML "server-sent events"
format). The gateway writes five kinds:

* ``retry: 2000`` once, first: how long a browser waits before it reconnects;
* ``id: <positions>`` alone, right after: it sets the client's last event id without dispatching
  an event (the spec sets the id before it drops an event with no data), so a client that
  disconnects before its first message still resumes from where it connected;
* ``id: <positions>`` + ``event: message`` + ``data: <CloudEvents JSON>`` per message;
* ``event: gap`` / ``event: dropped`` with a small JSON body;
* ``: heartbeat``, a comment every client ignores, sent when the stream is idle.

Decisions, and why:

* **The id is a position vector, not one number.** A client may follow subjects of several
  JetStream streams (``city.public.>`` spans one stream per domain), and each stream has its own
  sequence. ``CITY_PUBLIC_ENVIRONMENT:123,CITY_PUBLIC_MOBILITY:77`` holds the last sequence of
  every stream, so one ``Last-Event-ID`` resumes them all; a single number or a timestamp would
  either mix sequences or lose messages stored in the same second.
* **Strict parsing, one-line errors.** A ``Last-Event-ID`` comes from a client that may be
  anything; a malformed one is refused (HTTP 400) with what is wrong, never half-read: resuming
  from a guess would silently lose or repeat messages. Its size is bounded (a vector lists at
  most :data:`MAX_STREAMS` streams) so that a hostile header costs nothing to reject.
* **Bytes, built once per frame.** Frames are concatenated bytes; the message body is the
  :class:`~adapters.gateway.stored.Item`'s ``event``, encoded once for every client. A body with
  line breaks (never the case for compact JSON) is split into several ``data:`` lines, as the
  format requires, rather than corrupting the stream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bus.errors import CityBusError

__all__ = [
    "HEARTBEAT",
    "MAX_STREAMS",
    "MalformedEventIdError",
    "event_frame",
    "format_positions",
    "id_frame",
    "parse_positions",
    "retry_frame",
]

MAX_STREAMS = 64
"""The most streams one position vector may name (the bus has one stream per class and domain)."""

HEARTBEAT = b": heartbeat\n\n"
"""The comment frame sent on an idle stream, so that proxies and the client know it is alive."""

# JetStream stream names: no whitespace, '.', '*', '>', path separators; citybus's are
# CITY_<CLASS>_<DOMAIN>. Sequences are unsigned 64-bit integers.
_STREAM = re.compile(r"[A-Za-z0-9_-]{1,255}")
_SEQ = re.compile(r"[0-9]{1,20}")
_MAX_SEQ = 2**64 - 1


class MalformedEventIdError(CityBusError, ValueError):
    """A ``Last-Event-ID`` that is not a position vector (``STREAM:seq,STREAM:seq``)."""


def parse_positions(text: str) -> dict[str, int]:
    """The stream positions of a ``Last-Event-ID``: ``{"CITY_PUBLIC_ENVIRONMENT": 123, …}``.

    An empty or blank id means "nothing seen yet" (a browser sends none then). Raises
    :class:`MalformedEventIdError` saying what is wrong otherwise.
    """
    text = text.strip()
    if not text:
        return {}
    parts = text.split(",")
    if len(parts) > MAX_STREAMS:
        raise MalformedEventIdError(
            f"Last-Event-ID names {len(parts)} streams; at most {MAX_STREAMS} (it is the id of an event)"
        )
    positions: dict[str, int] = {}
    for part in parts:
        stream, colon, seq = part.strip().partition(":")
        if not colon or not _STREAM.fullmatch(stream) or not _SEQ.fullmatch(seq):
            shown = part if len(part) <= 80 else part[:77] + "..."
            raise MalformedEventIdError(
                f"Last-Event-ID: {shown!r} is not STREAM:sequence "
                "(send back the id of the last event received, e.g. CITY_PUBLIC_ENVIRONMENT:123)"
            )
        if stream in positions:
            raise MalformedEventIdError(f"Last-Event-ID names stream {stream} twice")
        value = int(seq)
        if value > _MAX_SEQ:
            raise MalformedEventIdError(f"Last-Event-ID: sequence {seq} of {stream} is out of range")
        positions[stream] = value
    return positions


def format_positions(positions: Mapping[str, int]) -> str:
    """The position vector as an event id: streams sorted by name, ``STREAM:seq`` comma-separated."""
    return ",".join(f"{stream}:{seq}" for stream, seq in sorted(positions.items()))


def retry_frame(milliseconds: int) -> bytes:
    """The frame that sets the client's reconnection delay."""
    return b"retry: %d\n\n" % milliseconds


def id_frame(positions: Mapping[str, int]) -> bytes:
    """A frame that only sets the client's last event id (no event is dispatched)."""
    return b"id: " + format_positions(positions).encode() + b"\n\n"


def event_frame(event: str, data: bytes, positions: Mapping[str, int] | None = None) -> bytes:
    """One event: ``id:`` (when ``positions`` is given), ``event:`` and ``data:`` lines."""
    head = b"" if positions is None else b"id: " + format_positions(positions).encode() + b"\n"
    if b"\n" in data or b"\r" in data:
        body = b"".join(b"data: " + line + b"\n" for line in data.splitlines())
    else:
        body = b"data: " + data + b"\n"
    return head + b"event: " + event.encode() + b"\n" + body + b"\n"
