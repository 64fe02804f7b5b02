"""Publishing only what changed: an adapter that re-reads a whole document every poll.

:class:`LastSeen` remembers what was last published per entity, so a poll publishes only what is
new; :func:`stable_id` derives a message's ``ce-id`` from what it is, so a message published again
anyway (after a restart, which forgets :class:`LastSeen`) is dropped by JetStream's duplicate window.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["LastSeen", "stable_id"]


@dataclass
class LastSeen:
    """What was last published per entity, so a poll publishes only what changed.

    ``changed(key, value)`` is true (and remembers ``value``) when ``key`` is new or its value
    differs from the one remembered.
    """

    _values: dict[Hashable, Any] = field(default_factory=dict)

    def changed(self, key: Hashable, value: Any) -> bool:
        """Whether ``value`` is new for ``key``; remembers it either way."""
        if key in self._values and self._values[key] == value:
            return False
        self._values[key] = value
        return True

    def forget(self, key: Hashable) -> None:
        """Forget ``key`` (its next value counts as changed)."""
        self._values.pop(key, None)

    def __len__(self) -> int:
        return len(self._values)


_IDS: Final = uuid.UUID("3d9b4f0e-8c1a-4f57-b2e6-7a0c5d1e9f42")


def stable_id(*parts: object) -> str:
    """A ``ce-id`` made from what identifies a message, so re-publishing it is dropped as a duplicate.

    Use the adapter's name, the entity and the values that make the message what it is::

        stable_id("nilu-air-quality", station, component, observed_at.isoformat())
    """
    return uuid.uuid5(_IDS, "\x1f".join(str(p) for p in parts)).hex
