"""Statistics (issue 19): how long one release of a table takes, by mechanism and size.

No target (the issue sets none): the figures say what a release costs the statistics service's
process, which computes one per data set and period at the end of a period, more often with
provisional releases or analysts' requests.

Each size is a generated city: persons over districts × activities, each person giving hours to
one to three cells (the engine bounds them to ``max_contributions``), as the service hands them to
:func:`adapters.statistics.engine.release` (already summed per person and cell). The sparse size
(3,000 persons over 1,600 cells) is the hard one for complementary suppression: most cells are
too small. Each mechanism
releases the same contributions, margins included, several times; the median is the figure.
The calibration of differential privacy (scales and threshold from OpenDP's maps, a binary search
of the threshold) is measured apart, cold: the engine caches it per policy and table shape, so a
service pays it once.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from adapters.statistics import engine
from adapters.statistics.engine import Contribution, Policy, release
from bench.common import Options, Spec
from bench.report import Case, Figure, Row
from bench.stats import median

__all__ = ["CASES", "Size", "main", "measure"]

TITLE: Final = "Statistics: one release of a table, by mechanism and size"
DIMENSIONS: Final = ("district", "activity")
POLICIES: Final = {
    "none": Policy("none", k=0),
    "k-anonymity": Policy("k-anonymity", k=5),
    "differential-privacy": Policy("differential-privacy", k=5, epsilon=1.0, delta=1e-6),
}


@dataclass(frozen=True)
class Size:
    """A generated city: how many persons, districts and activities."""

    persons: int
    districts: int
    activities: int


SIZES: Final = (Size(500, 5, 3), Size(3_000, 40, 40), Size(20_000, 20, 30))
SMOKE_SIZES: Final = (Size(200, 5, 3), Size(300, 10, 10), Size(2_000, 10, 10))


def city(size: Size, seed: int = 19) -> list[Contribution]:
    """The contributions of a generated city of ``size``."""
    rng = random.Random(seed)
    districts = [f"district-{i}" for i in range(size.districts)]
    activities = [f"activity-{i}" for i in range(size.activities)]
    given = []
    for person in range(size.persons):
        home = rng.choice(districts)
        for activity in rng.sample(activities, rng.randint(1, min(3, len(activities)))):
            given.append(Contribution(f"p-{person:06x}", (home, activity), rng.randint(1, 16) / 2))
    return given


def measure(size: Size, repeats: int) -> list[Row]:
    """One row per mechanism: the median release time and what the table held."""
    given = city(size)
    rows = []
    for name, policy in POLICIES.items():
        seconds = []
        table = release(given, DIMENSIONS, policy)  # warm: the calibration is cached per policy
        for _ in range(repeats):
            started = time.perf_counter()
            table = release(given, DIMENSIONS, policy)
            seconds.append(time.perf_counter() - started)
        released = sum(row.status == "released" for row in table.rows)
        rows.append(
            Row(
                {
                    "persons": f"{size.persons:,}",
                    "cells": f"{size.districts} × {size.activities}",
                    "contributions": f"{len(given):,}",
                    "mechanism": name,
                    "rows": f"{len(table.rows):,}",
                    "released": f"{released:,}",
                    "release ms (median)": f"{median(seconds) * 1e3:,.1f}",
                    "repeats": f"{repeats}",
                }
            )
        )
    return rows


def calibration_ms(repeats: int) -> float:
    """The median cold calibration of a differentially private two-dimensional table."""
    seconds = []
    for _ in range(repeats):
        engine._calibrate.cache_clear()
        started = time.perf_counter()
        engine.plan(POLICIES["differential-privacy"], DIMENSIONS)
        seconds.append(time.perf_counter() - started)
    return median(seconds) * 1e3


def statistics_case(options: Options) -> Case:
    """The case: every size, every mechanism, and the cold calibration."""
    sizes, repeats = (SMOKE_SIZES, 3) if options.smoke else (SIZES, 15)
    case = Case(TITLE, "`adapters.statistics.engine.release`, in the bench's process")
    for size in sizes:
        case.rows += measure(size, repeats)
    cold = calibration_ms(repeats)
    case.notes.append(
        "Calibrating differential privacy (OpenDP's maps, the threshold's binary search), cold: "
        f"{cold:.1f} ms median; cached per policy and table shape afterwards."
    )
    largest = case.rows[-1].cells
    case.figures.append(
        Figure(
            "release ms, largest table, DP",
            float(largest["release ms (median)"].replace(",", "")),
            "ms",
            False,
        )
    )
    return case


CASES: Final = [Spec("statistics", TITLE, statistics_case)]


def main() -> int:
    """``python -m bench.statistics``: the case alone, printed."""
    parser = argparse.ArgumentParser(prog="python -m bench.statistics", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, few repeats")
    args = parser.parse_args()
    case = statistics_case(Options(smoke=args.smoke, work=Path(".")))
    for row in case.rows:
        sys.stdout.write("  ".join(f"{key}: {value}" for key, value in row.cells.items()) + "\n")
    sys.stdout.write("\n".join(case.notes) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
