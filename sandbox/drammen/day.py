"""The recorded day's frame: Tuesday 2018-08-28 in Drammen, and what the builder feeds its adapters.

Everything the builder generates is tied to this one day, 00:00 to 24:00 Europe/Oslo (CEST,
UTC+2: no clock change that day). A generated input is one of two things, each stamped with the
moment it appears on the day:

* a :class:`FileVersion` — a new version of a file that a polled source reads (a GBFS
  ``station_status``, a Frost response …), written into the build's input folder at ``at``;
* an :class:`UplinkMessage` — a raw message a device sends at ``at`` (a Vicotee unit's LoRaWAN
  uplink as The Things Stack publishes it), published on the builder's bus.

Seeds: every generator gets a random generator of its own, seeded from the build's seed and the
generator's name (:func:`rng`), so changing one generator never changes what another makes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

__all__ = [
    "DAY",
    "END",
    "FileVersion",
    "OSLO",
    "START",
    "UplinkMessage",
    "at",
    "every",
    "local_hours",
    "rng",
    "utc_text",
]

DAY: Final = date(2018, 8, 28)
"""The recorded day: the date of the real SIRI-ET snapshot, a Tuesday."""
OSLO: Final = ZoneInfo("Europe/Oslo")
START: Final = datetime.combine(DAY, time(0), OSLO)
"""00:00 in Drammen (2018-08-27T22:00Z)."""
END: Final = datetime.combine(DAY + timedelta(days=1), time(0), OSLO)
"""24:00 in Drammen: the first moment not in the recording."""


@dataclass(frozen=True, slots=True)
class FileVersion:
    """A version of a polled source's file, written at ``at`` (its name is the file's, in the
    build's input folder)."""

    at: datetime
    name: str
    body: bytes


@dataclass(frozen=True, slots=True)
class UplinkMessage:
    """A raw device message sent at ``at`` on ``subject``."""

    at: datetime
    subject: str
    body: bytes


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A moment of the day, local time (``hour`` 0–23)."""
    return datetime.combine(DAY, time(hour, minute, second), OSLO)


def every(step: timedelta, *, start: datetime = START, end: datetime = END) -> Iterator[datetime]:
    """The moments ``start``, ``start + step`` … before ``end``."""
    moment = start
    while moment < end:
        yield moment
        moment += step


def local_hours(moment: datetime) -> float:
    """Hours since local midnight of the recorded day (may be negative or beyond 24 for other days)."""
    return (moment - START).total_seconds() / 3600.0


def utc_text(moment: datetime, *, millis: bool = False) -> str:
    """``moment`` in UTC as ISO 8601 with ``Z`` (with ``.000`` milliseconds, as Frost writes it)."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.000Z" if millis else f"{text}Z"


def rng(seed: int, name: str) -> random.Random:
    """The random generator of one generator: seeded from the build's seed and its name."""
    return random.Random(f"citybus-drammen-day/{seed}/{name}")
