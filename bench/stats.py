"""Numbers from measurements: percentiles, medians of repeated runs, and the top of a cProfile.

The percentile is the "inclusive" one (linear between the two nearest ranks, as
``statistics.quantiles(method="inclusive")`` and NumPy's default have it), so that p99.9 of a
few thousand latencies is a number between two measured ones rather than an extrapolation.
"""

from __future__ import annotations

import math
import pstats
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import bus
from bench.common import ROOT

__all__ = ["Profiled", "median", "percentile", "place", "top_functions"]

LIBRARY = Path(bus.__file__).resolve().parent.parent
"""The checkout citybus is imported from: this one, or another one that :mod:`bench.compare` measures."""


def percentile(values: Sequence[float], percent: float) -> float:
    """The ``percent`` percentile of ``values`` (0 <= percent <= 100)."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 <= percent <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {percent:g}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * percent / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """The median of repeated measurements (a run disturbed by the machine's neighbours counts once)."""
    return statistics.median(values)


Profiled = tuple[str, float, float, int]
"""(function, own share of the profile, cumulative seconds, calls) of one profiled function."""


def top_functions(
    stats: pstats.Stats,
    count: int = 10,
    *,
    by: Literal["own", "cumulative"] = "own",
    where: Callable[[str], bool] = lambda _: True,
) -> list[Profiled]:
    """The ``count`` functions of a profile with the most own (or cumulative) time, among those whose
    place (as :func:`place` names it) ``where`` accepts."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(own for _cc, _nc, own, _cum, _callers in raw.values()) or 1.0
    rows = [
        (place(*key), own, cumulative, calls) for key, (_cc, calls, own, cumulative, _callers) in raw.items()
    ]
    rows = [row for row in rows if where(row[0])]
    rows.sort(key=lambda row: row[1] if by == "own" else row[2], reverse=True)
    return [(name, own / total, cumulative, calls) for name, own, cumulative, calls in rows[:count]]


def place(filename: str, line: int, function: str) -> str:
    """A profiled function as a reader finds it: ``bus/bus.py:404 publish``, a library's path inside
    site-packages, or a built-in's name."""
    if filename == "~":
        return function  # a built-in: "<method 'poll' of 'select.epoll' objects>"
    path = Path(filename)
    for root in (ROOT, LIBRARY):
        if path.is_relative_to(root):
            return f"{path.relative_to(root)}:{line} {function}"
    parts = path.parts
    # a library: its path inside site-packages, or the standard library module's name
    start = parts.index("site-packages") + 1 if "site-packages" in parts else len(parts) - 1
    return f"{'/'.join(parts[start:])}:{line} {function}"
