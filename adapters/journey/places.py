"""Reading a place as a traveller types it: a stop place id, a stop name, or ``LAT,LON``.

Names are matched forgivingly: case, accents and the Norwegian letters do not matter (``æ`` is
``ae``, ``ø`` is ``o``, ``å`` is ``a``), nor a trailing *stasjon*; a name that several stop places
share (``Oslo S`` by rail, and by the replacement buses), or that begins a longer one (``Trondheim``
and ``Trondheim S``), is the one with the most train calls, then the busiest. A name that matches
nothing gets the nearest names the feed knows, for the one line that says what to type instead.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

from adapters.journey.feed import Feed
from adapters.journey.moving import Point

__all__ = ["Endpoint", "Places", "UnknownPlaceError", "normalise"]

_COORDINATE = re.compile(r"^\s*(-?\d{1,2}(?:\.\d+)?)\s*,\s*(-?\d{1,3}(?:\.\d+)?)\s*$")
_LETTERS = str.maketrans({"æ": "ae", "ø": "o", "å": "a", "ß": "ss"})
_NOISE = ("stasjon", "station", "stasjonen", "st")


class UnknownPlaceError(LookupError):
    """No place matches the text; ``suggestions`` are the nearest names the feed knows."""

    def __init__(self, text: str, suggestions: list[str]) -> None:
        self.text = text
        self.suggestions = suggestions
        hint = f": did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"no stop place is called {text!r}{hint}")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a journey starts or ends: a stop place (``place``) or a coordinate (``place`` ``None``)."""

    name: str
    point: Point
    place: int | None = None


def normalise(name: str) -> str:
    """A name as matching sees it: lower case, Norwegian letters spelled out, no accents or
    punctuation, single spaces."""
    text = unicodedata.normalize("NFKD", name.casefold().translate(_LETTERS))
    text = "".join(c if c.isalnum() else " " for c in text if not unicodedata.combining(c))
    return " ".join(text.split())


def _core(name: str) -> str:
    words = normalise(name).split()
    while len(words) > 1 and words[-1] in _NOISE:
        words.pop()
    return " ".join(words)


class Places:
    """The feed's places by name, normalised once: what :meth:`resolve` reads a traveller's text with."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.cores = [_core(place.name) for place in feed.places]
        self.by_core: dict[str, list[int]] = {}
        for index, core in enumerate(self.cores):
            self.by_core.setdefault(core, []).append(index)

    def busiest(self, indices: list[int]) -> int:
        """The place with the most train calls among ``indices``, then the most calls."""
        feed = self.feed
        return max(indices, key=lambda i: (feed.rail_calls[i], feed.departures_at[i], -i))

    def find(self, text: str) -> int:
        """The place a name means; :class:`UnknownPlaceError` with the nearest names if none."""
        query = _core(text)
        if not query:
            raise UnknownPlaceError(text, [])
        # the name itself, or a longer name of the same place ("Trondheim" and "Trondheim S")
        named = [
            *self.by_core.get(query, ()),
            *(i for i, c in enumerate(self.cores) if c.startswith(query + " ")),
        ]
        if named:
            return self.busiest(named)
        prefixed = [i for i, core in enumerate(self.cores) if core.startswith(query)]
        if prefixed:
            return self.busiest(prefixed)
        words = query.split()
        tokens = [
            i
            for i, core in enumerate(self.cores)
            if all(any(part.startswith(word) for part in core.split()) for word in words)
        ]
        if tokens:
            return self.busiest(tokens)
        raise UnknownPlaceError(text, self.nearest(query))

    def nearest(self, query: str, count: int = 5) -> list[str]:
        """Up to ``count`` names close to a normalised ``query``."""
        close = difflib.get_close_matches(query, list(self.by_core), n=count, cutoff=0.6)
        return [self.feed.places[self.busiest(self.by_core[core])].name for core in close]

    def resolve(self, text: str) -> Endpoint:
        """The endpoint ``text`` names; :class:`UnknownPlaceError` if none, ``ValueError`` for a
        coordinate off the globe."""
        text = text.strip()
        found = _COORDINATE.match(text)
        if found:
            lat, lon = float(found.group(1)), float(found.group(2))
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(
                    f"{text!r} is not a coordinate: LAT,LON with latitude -90..90, longitude -180..180"
                )
            return Endpoint(f"{lat:.5f},{lon:.5f}", Point(lat, lon))
        place = self.feed.place(text)
        if place is None:
            place = self.feed.places[self.find(text)]
        return Endpoint(place.name, Point(place.lat, place.lon), place.index)
