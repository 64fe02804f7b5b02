"""Finding adapters: Python entry points in the group ``citybus.adapters``.

A company's adapter is a pip-installable package that declares, in its ``pyproject.toml``::

    [project.entry-points."citybus.adapters"]
    my-adapter = "my_package.adapter:MyAdapter"

A broken entry point — an import error, a missing attribute, a bad declaration — is reported by
name with the reason and does not stop the others from loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from adapters.base import Adapter, AdapterDeclarationError, check_declaration

__all__ = ["GROUP", "Discovery", "DiscoveryProblem", "discover"]

GROUP = "citybus.adapters"


@dataclass(frozen=True, slots=True)
class DiscoveryProblem:
    """An entry point that could not be loaded as an adapter."""

    name: str
    value: str
    distribution: str
    reason: str

    def __str__(self) -> str:
        return f"adapter entry point {self.name!r} ({self.value}, from {self.distribution}): {self.reason}"


@dataclass(slots=True)
class Discovery:
    """The installed adapters by name, and the entry points that failed."""

    adapters: dict[str, type[Adapter[Any]]] = field(default_factory=dict)
    problems: list[DiscoveryProblem] = field(default_factory=list)
    distributions: dict[str, str] = field(default_factory=dict)


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def discover(group: str = GROUP) -> Discovery:
    """Load every adapter entry point of ``group``."""
    found = Discovery()
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        dist = _distribution(ep)

        def problem(reason: str, ep: EntryPoint = ep, dist: str = dist) -> None:
            found.problems.append(DiscoveryProblem(ep.name, ep.value, dist, reason))

        try:
            loaded = ep.load()
        except AttributeError as exc:
            problem(f"missing attribute: {exc}")
            continue
        except Exception as exc:  # any import-time failure of third-party code is reported, not raised
            problem(f"import failed: {type(exc).__name__}: {exc}")
            continue
        try:
            cls = check_declaration(loaded)
        except AdapterDeclarationError as exc:
            problem(f"bad declaration: {exc}")
            continue
        if cls.name != ep.name:
            problem(f"the entry point is named {ep.name!r} but the adapter calls itself {cls.name!r}")
            continue
        if cls.name in found.adapters and found.adapters[cls.name] is not cls:
            problem(
                f"a second adapter named {cls.name!r} (the first is from {found.distributions[cls.name]})"
            )
            continue
        found.adapters[cls.name] = cls
        found.distributions[cls.name] = dist
    return found
