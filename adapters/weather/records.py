"""A record of a good document that could not be translated, kept to be dead-lettered on its own.

Both MET parsers are pure: they return what they translated together with what they had to reject,
and the adapter sends each rejected record to the dead letters with its reason while it publishes
the rest. A document that does not parse at all raises
:class:`~adapters.polling.SourceFormatError` instead, and the poller dead-letters the whole of it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rejected"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """One record the parser could not translate: its bytes, the dead-letter reason and what was wrong."""

    raw: bytes
    """The record as it came (a forecast step, a Frost observation in its data item)."""
    reason: str
    """The dead-letter reason, in kebab case (``out-of-range``, ``failed-quality-control`` …)."""
    detail: str
    """What exactly was wrong, naming the record and the field."""
