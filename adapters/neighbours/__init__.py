"""The ``beach-neighbours`` service adapter: each bathing site's nearest weather and air-quality
stations, computed from the locations on the bus (:mod:`~adapters.neighbours.adapter`)."""

from adapters.neighbours.adapter import BeachNeighboursService, NeighboursConfig, nearest

__all__ = ["BeachNeighboursService", "NeighboursConfig", "nearest"]
