"""The replay's control service: its verbs, their requests and its answer.

A running replay answers on ``citybus.control.replay.<instance>.<verb>`` (the conventions of every
control service: :mod:`bus.control`):

========  ===============================  ===========================================
verb      request body                     does
========  ===============================  ===========================================
status    (none)                           nothing: says what the replay is doing
pause     (none)                           stops the replay clock
resume    (none)                           starts it again
seek      :class:`SeekRequest`             jumps to ``position`` seconds into the window
speed     :class:`SpeedRequest`            replays ``speed`` × real time (0: at once)
========  ===============================  ===========================================

Every verb answers with the replay's :class:`~sandbox.replay.ReplayStatus`; a wrong request gets a
refusal (``Nats-Service-Error``, code ``400``, or ``404`` for a verb it does not know), which
:func:`control_request` raises as :class:`~bus.errors.RequestRefusedError`.
"""

from __future__ import annotations

from typing import Final

import msgspec

from bus import control
from bus.control import Refusal
from bus.subjects import control_subject
from sandbox.replay import Replayer, ReplayStatus

__all__ = ["VERBS", "NoArguments", "SeekRequest", "SpeedRequest", "control_request", "handle"]

VERBS: Final = ("status", "pause", "resume", "seek", "speed")


class NoArguments(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The request of ``status``, ``pause`` and ``resume``: an empty body (or ``{}``)."""


class SeekRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Jump the replay to a position in its window."""

    position: float
    """Seconds from the start of the replayed window (the replay says how long it is)."""


class SpeedRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Replay at another speed from now on."""

    speed: float
    """× real time, 0 to 1,000,000 (0: as fast as possible)."""


_SEEK: Final = msgspec.json.Decoder(SeekRequest)
_SPEED: Final = msgspec.json.Decoder(SpeedRequest)
_NONE: Final = msgspec.json.Decoder(NoArguments)


def handle(replayer: Replayer, verb: str, data: bytes) -> ReplayStatus:
    """Do what one request asks of ``replayer`` and return its status; :class:`~bus.control.Refusal`
    (or :class:`ValueError`, a value the replayer will not take) for a wrong request."""
    if verb == "seek":
        if not data.strip():
            raise Refusal('seek needs {"position": seconds from the start of the window}')
        return replayer.seek(control.decode_request(_SEEK, data).position)
    if verb == "speed":
        if not data.strip():
            raise Refusal('speed needs {"speed": factor} (0: as fast as possible)')
        return replayer.set_speed(control.decode_request(_SPEED, data).speed)
    if verb not in VERBS:
        raise Refusal(f"unknown verb {verb!r}; verbs: {', '.join(VERBS)}", control.UNKNOWN_VERB)
    control.decode_request(_NONE, data)
    if verb == "pause":
        return replayer.pause()
    if verb == "resume":
        return replayer.resume()
    return replayer.status()


async def control_request(
    bus: control.Requester,
    instance: str,
    verb: str,
    request: SeekRequest | SpeedRequest | None = None,
    *,
    timeout: float | None = None,
) -> ReplayStatus:
    """Send one control request to the running replay ``instance`` and return its status.

    Raises :class:`~bus.errors.RequestRefusedError` when the replay refuses the request.
    """
    return await control.request(
        bus, control_subject("replay", instance, verb), request, ReplayStatus, timeout=timeout
    )
