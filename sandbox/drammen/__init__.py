"""The recorded Drammen day that ships with citybus, and the builder that makes it.

:func:`build_day` (``python -m sandbox.drammen.build -o FILE``) runs citybus's own source adapters
over Tuesday 2018-08-28 in Drammen — the real trains and bike racks, and generated beach sensors,
weather, air quality and bike counts, marked ``synthetic`` — and records what they publish into
``sandbox/data/drammen-2018-08-28.mcap`` (:data:`RECORDING`). :mod:`~sandbox.drammen.build` says
how; the generators (:mod:`~sandbox.drammen.bikes`, :mod:`~sandbox.drammen.beach`,
:mod:`~sandbox.drammen.frost`, :mod:`~sandbox.drammen.forecast`, :mod:`~sandbox.drammen.air`, all
on :mod:`~sandbox.drammen.weather` and :mod:`~sandbox.drammen.sun`) say what they make and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.drammen.build import (
        ATTRIBUTION,
        BUILDER_VERSION,
        RECORDING,
        SEED,
        BuildError,
        BuildReport,
        build_day,
        main,
    )

__all__ = [
    "ATTRIBUTION",
    "BUILDER_VERSION",
    "BuildError",
    "BuildReport",
    "RECORDING",
    "SEED",
    "build_day",
    "main",
]


def __getattr__(name: str) -> Any:
    # The builder is imported on first use, not with the package: ``python -m sandbox.drammen.build``
    # runs it as ``__main__``, and importing it here as well would load it twice.
    if name in __all__:
        from sandbox.drammen import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
