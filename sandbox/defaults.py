"""What the sandbox adds to ``citybus up``'s default instances: the data it ships for them.

Registered in the entry-point group ``citybus.defaults`` (:data:`adapters.runtime.DEFAULTS_GROUP`),
so an adapter finds the sandbox's files without importing the sandbox: the journey planner plans on
the NSB timetable the recorded Drammen day was built from.
"""

from __future__ import annotations

from typing import Any

from sandbox.drammen.build import SOURCES

__all__ = ["TIMETABLE", "sections"]

TIMETABLE = SOURCES / "transport" / "entur_nsb_gtfs_2018.zip"
"""The GTFS feed of NSB's trains, 2018-08-18 .. 2018-12-08 (Entur, NLOD 2.0)."""


def sections() -> dict[str, dict[str, Any]]:
    """Default instance → the keys the sandbox adds to its section."""
    return {"journey-planner": {"timetable": {"file": str(TIMETABLE)}}}
