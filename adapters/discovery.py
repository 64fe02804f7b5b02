"""Finding adapters: Python entry points in the group ``citybus.adapters``.

A company's adapter is a pip-installable package that declares, in its ``pyproject.toml``::

    [project.entry-points."citybus.adapters"]
    my-adapter = "my_package.adapter:MyAdapter"

A broken entry point — an import error, a missing attribute, a bad declaration — is reported by
name with the reason and does not stop the others from loading.

Decisions, and why:

* **A contract only an adapter's module declares is said, not refused.** It works inside
  ``citybus up`` and ``adapters run`` (they import the adapter, so its ``@contract`` registers), but
  ``citybus tail``, ``contracts list``, ``publish`` and the ops endpoints never import adapters and
  do not know it: the product seems to work until someone looks at its output. Discovery lists each
  such contract (:class:`UndeclaredContract`) with the ``citybus.contracts`` entry point to add, and
  the commands that discover adapters say it in one warning line. A contract counts as declared when
  it is the city's, was loaded from a ``citybus.contracts`` entry point (:func:`contracts.package_of`),
  or sits in a module such an entry point names (so the answer does not depend on whether this
  process has loaded the installed contracts yet).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from adapters.base import Adapter, AdapterDeclarationError, check_declaration
from contracts import CONTRACTS_GROUP, Contract, package_of

__all__ = ["GROUP", "Discovery", "DiscoveryProblem", "UndeclaredContract", "discover"]

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


@dataclass(frozen=True, slots=True)
class UndeclaredContract:
    """A contract an adapter consumes or produces that no ``citybus.contracts`` entry point brings
    (nor is it the city's): only processes that import the adapter know it."""

    adapter: str
    contract: str
    """The contract's name (``acme.beach-advice``)."""
    module: str
    """The module that declares it: what the entry point to add names."""

    def __str__(self) -> str:
        company = self.contract.partition(".")[0]
        return (
            f"adapter {self.adapter}: contract {self.contract} (declared in {self.module}) is in no "
            f"citybus.contracts entry point, so citybus tail, contracts list, publish and the ops "
            f'endpoints do not know it; add [project.entry-points."citybus.contracts"] '
            f'{company} = "{self.module}" to the package\'s pyproject.toml and reinstall it '
            f"(docs/contracts.md)"
        )


@dataclass(slots=True)
class Discovery:
    """The installed adapters by name, the entry points that failed, and the contracts that only
    an adapter's module declares."""

    adapters: dict[str, type[Adapter[Any]]] = field(default_factory=dict)
    problems: list[DiscoveryProblem] = field(default_factory=list)
    distributions: dict[str, str] = field(default_factory=dict)
    undeclared: list[UndeclaredContract] = field(default_factory=list)

    def undeclared_of(self, adapters: Collection[str]) -> list[UndeclaredContract]:
        """The undeclared contracts of the named adapters only (those a command runs)."""
        return [u for u in self.undeclared if u.adapter in adapters]


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
    points = list(entry_points(group=CONTRACTS_GROUP))
    for name, cls in sorted(found.adapters.items()):
        for used in dict.fromkeys((*cls.consumes, *cls.produces)):
            if package_of(used) is None and not _named_by(points, used):
                found.undeclared.append(UndeclaredContract(name, used.__contract__.name, used.__module__))
    return found


def _named_by(points: Sequence[EntryPoint], cls: type[Contract]) -> bool:
    """Whether one of the ``citybus.contracts`` entry points brings ``cls``: it names the class, or
    the module that declares it or a module above that one."""
    module = cls.__module__
    for ep in points:
        if ep.attr:
            if (ep.module, ep.attr) == (module, cls.__qualname__):
                return True
        elif module == ep.module or module.startswith(ep.module + "."):
            return True
    return False
