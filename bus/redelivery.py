"""What a durable consumer handled lately, so that a redelivery after a failover is not handled twice.

On a cluster, JetStream replicates a consumer's acknowledgements through the consumer's own Raft
group after its leader took them. When that leader dies before an acknowledgement is committed, the
next leader still counts the message as unacknowledged and delivers it again after ``ack_wait``,
although the handler ran and the bus acknowledged it: ``tests/test_failover.py`` and
``bench/failover.py`` saw one fetched batch (37 to 64 messages) come again in about half the runs
that killed the consumer's leader, while the publishers stored every message exactly once.

Decisions, and why:

- **Remembered in the consumer, not prevented by a double ack.** ``ack_sync`` (which nats-server
  answers once the acknowledgement is committed) does not stop the redelivery: an acknowledgement
  the dying leader had not committed is lost either way, and the double ack only tells the client
  so. With it the same runs still redelivered 37 and 48 messages (each one whose double ack had
  failed), and it costs a round trip and a Raft commit on every message: 0.55x to 0.6x the consume
  throughput of a plain ack on R3 (20,000 messages, two rounds). The consumer instead remembers the
  stream sequences it handled and acknowledges a redelivery of one of them again without calling
  the handler.
- **By stream sequence, not by ``ce-id``.** A redelivery is the same stored message, so the same
  sequence. Two stored messages with one ``ce-id`` (a replay's duplicate fault: replayed messages
  carry no ``Nats-Msg-Id``) are two messages, and a handler sees both, as on a single server.
- **Looked up only where a redelivery can be**: a message delivered before (count above 1), or
  one older than the newest handled (a leader that lost the delivery too delivers it as new).
  Any other message costs two integer comparisons.
- **A ring of :data:`REMEMBERED` sequences** (256 kB a consumer, searched only on a redelivery).
  A failover's redeliveries are the acknowledgements of the last second or two before the leader
  died (a consumer here took up to about 12,000 messages a second); an older redelivery is
  handled again. Nothing survives a restart of the process: handlers stay idempotent (a message
  handled just before a crash comes again), this only keeps a failover from reaching them.
"""

from __future__ import annotations

from array import array
from typing import Any, Final

from bus.pipeline import StreamPolicy, delivery_count, stream_sequence

__all__ = ["REMEMBERED", "Handled", "RememberingPolicy"]

REMEMBERED: Final = 32_768
"""How many of the latest handled stream sequences a durable consumer remembers."""


class Handled:
    """The stream sequences a durable consumer handled lately (a ring), and the redeliveries of
    them it acknowledged without handling them again (:attr:`skipped`)."""

    __slots__ = ("_next", "_ring", "newest", "skipped")

    def __init__(self, size: int = REMEMBERED) -> None:
        self._ring = array("q", bytes(8 * size))  # 0 is no stream sequence: an empty place
        self._next = 0
        self.newest = 0
        """The highest stream sequence handled."""
        self.skipped = 0
        """Redeliveries of handled messages acknowledged without calling the handler."""

    def remember(self, msg: Any) -> None:
        """``msg`` was handled and acknowledged."""
        seq = stream_sequence(msg)
        if seq is None:
            return
        ring, place = self._ring, self._next
        ring[place] = seq
        self._next = place + 1 if place + 1 < len(ring) else 0
        if seq > self.newest:
            self.newest = seq

    def again(self, msg: Any) -> bool:
        """Whether ``msg`` is a redelivery of a message handled already."""
        seq = stream_sequence(msg)
        if seq is None or (seq > self.newest and delivery_count(msg) <= 1):
            return False
        return seq in self._ring


class RememberingPolicy(StreamPolicy):
    """A durable consumer's :class:`~bus.pipeline.StreamPolicy` that remembers what it acknowledged."""

    def __init__(self, *args: Any, handled: Handled, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handled = handled

    async def handled(self, msg: Any, result: Any) -> None:
        """Acknowledge it, and remember it was handled."""
        await super().handled(msg, result)
        self._handled.remember(msg)
