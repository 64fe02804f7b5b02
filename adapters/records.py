"""A record a parser could not translate, kept for its dead letter.

Source parsers are pure: they do no I/O and publish nothing. A whole document that does not parse
raises :class:`~adapters.polling.SourceFormatError`; a single bad record inside a good document (a
``stop_times.txt`` row with a time like ``7:6O``, a SIRI call without a ``StopPointRef``, a forecast
step with a temperature of 900 °C) comes back as a :class:`Rejected` beside the good records, so
the adapter dead-letters it on its own (:func:`dead_letter_rejected`) and publishes the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.context import Context
    from adapters.polling import Document

__all__ = ["Rejected", "dead_letter_rejected"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """One bad record: its dead-letter reason, what is wrong and where, and its bytes."""

    reason: str
    """The dead-letter reason, in kebab case (``bad-stop-time``, ``no-stop-point`` …)."""
    detail: str
    """What is wrong and where (member and line, or journey and call), so a user can act."""
    payload: bytes
    """The record as it was in the document: a CSV header and row, an XML element, a JSON object."""


async def dead_letter_rejected(
    ctx: Context, document: Document, rejected: Iterable[Rejected], *, prefix: str = ""
) -> None:
    """Dead-letter each rejected record of ``document`` on its own; ``prefix`` starts each detail."""
    for record in rejected:
        detail = f"{prefix}{record.detail}"
        await ctx.dead_letter(document.raw(record.payload), reason=record.reason, detail=detail)
