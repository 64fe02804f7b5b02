"""Names from city data made into identifiers (``Bangeløkka`` → ``bangelokka``), and checking them."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["check_slug", "slug"]

# Letters NFKD does not take apart: Norwegian, Danish, Icelandic and German ones, as Norwegians spell
# them without the letter (Bærum → baerum, Tromsø → tromso, Ålesund → alesund).
_LETTERS: Final = str.maketrans({"æ": "ae", "ø": "o", "å": "a", "ð": "d", "þ": "th", "ß": "ss", "œ": "oe"})
_NOT_SLUG: Final = re.compile(r"[^a-z0-9]+")
_SLUG: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # contracts.Slug, as a pattern


def slug(text: str, *, max_length: int = 64) -> str:
    """The lower-case kebab-case identifier of a name, safe as a subject token; ``""`` if nothing is left.

    >>> slug("Rosenkrantzgata ved Vårveien")
    'rosenkrantzgata-ved-varveien'
    >>> slug("Bergen - Florida")
    'bergen-florida'
    """
    folded = unicodedata.normalize("NFKD", text.lower().translate(_LETTERS))
    ascii_only = folded.encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("-", ascii_only).strip("-")[:max_length].strip("-")


def check_slug(text: str, what: str) -> None:
    """Raise :class:`ValueError` saying how to write ``text`` if it is not a valid slug.

    ``what`` names the setting, e.g. ``"stations: 'Manglerud' ="``; the message suggests a spelling.
    """
    if _SLUG.match(text) and len(text) <= 64:
        return
    suggestion = slug(text)
    hint = f": write {suggestion!r}" if suggestion else ""
    raise ValueError(
        f"{what} {text!r} is not a slug (lower-case letters, digits and single dashes, "
        f"at most 64 characters){hint}"
    )
