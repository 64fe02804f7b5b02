"""A record the parsers could not turn into a call or a stop place, kept for its dead letter.

Both parsers are pure: they do no I/O and publish nothing. A whole document that does not parse
raises :class:`~adapters.polling.SourceFormatError`; a single bad record inside a good document (a
``stop_times.txt`` row with a time like ``7:6O``, a SIRI call without a ``StopPointRef``) comes back
as a :class:`Rejected` beside the good records, so the adapter can dead-letter it on its own and
publish the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rejected"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """One bad record: its dead-letter reason, what is wrong and where, and its bytes."""

    reason: str
    """The dead-letter reason, in kebab case (``bad-stop-time``, ``no-stop-point`` …)."""
    detail: str
    """What is wrong and where (member and line, or journey and call), so a user can act."""
    payload: bytes
    """The record as it was in the document: a CSV header and row, or an XML element."""
