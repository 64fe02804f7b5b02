"""The contract registry: every contract citybus knows, by name, version and CloudEvents type.

Contracts of other packages (a company's adapter package) arrive through the entry-point group
``citybus.contracts``: each entry point names a module whose ``@contract`` declarations register
themselves on import (or a contract class itself). :func:`load_installed_contracts` imports them, so
every command and endpoint knows installed contracts without ``contracts`` importing anyone, and
remembers which package (distribution) each came from (:func:`package_of`).

Decisions, and why:

* **The city's domains are the city's.** A package's contract whose domain is one of the city's
  (``environment``, ``mobility``, … — every domain a contract of ``contracts/`` uses — and the
  reserved ``city``, ``citybus``, ``rpc``, ``sandbox``) is refused when it loads: consumers of
  ``city.public.environment.>`` trust that what they read is the city's, and a package must not be
  able to add to it or shadow a city contract with a new version. A company names its contracts
  after itself (``acme.beach-advice``). The check is made where a package's contracts enter citybus
  (here), not in :func:`~contracts.contract`, which cannot tell a company's module from a test's.
* **A broken package costs its own contracts, never the command.** A package that fails to import
  (or whose contract is declared wrongly, or collides with another's) is rolled back: whatever it
  registered before failing is removed again, so no half of it is served, and one line names the
  package and the reason. The city's contracts and every other package keep working.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from contracts.base import Classification, Contract

__all__ = [
    "CITY_PACKAGE",
    "CONTRACTS_GROUP",
    "RESERVED_DOMAINS",
    "Registry",
    "UnknownContractError",
    "city_domains",
    "default_registry",
    "installed_packages",
    "load_installed_contracts",
    "package_name",
    "package_of",
]

CONTRACTS_GROUP = "citybus.contracts"

CITY_PACKAGE = "citybus"
"""What :func:`package_of` answers for the city's own contracts (those declared in ``contracts/``)."""

RESERVED_DOMAINS = frozenset({"city", "citybus", "rpc", "sandbox"})
"""Domains no package may use, beside those of the city's contracts: the subject root, the bus's own
messages, the request namespace and the sandbox."""

# Which installed package each of its contracts came from (classes are process-wide, so is this).
_PACKAGES: dict[type[Contract], str] = {}


class UnknownContractError(LookupError):
    """No contract of that name (and version) is registered."""


class Registry:
    """A set of contracts, looked up by name, ``name@version`` or CloudEvents type."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[Contract]] = {}
        self.refused: dict[str, list[str]] = {}
        """Per installed package, why (some of) its contracts were not loaded into this registry."""

    def add(self, cls: type[Contract]) -> None:
        """Register a declared contract; registering a different class under one type is an error."""
        info = cls.__contract__
        existing = self._by_type.get(info.type)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"contract {info.name} v{info.version} is declared twice: "
                f"{existing.__module__}.{existing.__qualname__} and {cls.__module__}.{cls.__qualname__}"
            )
        self._by_type[info.type] = cls

    def remove(self, cls: type[Contract]) -> None:
        """Forget ``cls`` (a no-op when it is not registered)."""
        if self._by_type.get(cls.__contract__.type) is cls:
            del self._by_type[cls.__contract__.type]

    def of_package(self, package: str) -> Registry:
        """A registry of the contracts here that ``package`` brought (``citybus``: the city's own)."""
        wanted = package_name(package)
        selected = Registry()
        for cls in self:
            if package_of(cls) == wanted:
                selected.add(cls)
        selected.refused = {k: v for k, v in self.refused.items() if k == wanted}
        return selected

    def __iter__(self) -> Iterator[type[Contract]]:
        return iter(sorted(self._by_type.values(), key=_sort_key))

    def __len__(self) -> int:
        return len(self._by_type)

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and any(c is cls for c in self._by_type.values())

    def by_type(self, ce_type: str) -> type[Contract] | None:
        """The contract whose CloudEvents type is ``ce_type``, or ``None``."""
        return self._by_type.get(ce_type)

    def get(self, name: str, version: int | None = None) -> type[Contract]:
        """A contract by name (newest version unless one is given); ``name@2`` also works."""
        if version is None and "@" in name:
            name, _, v = name.partition("@")
            try:
                version = int(v.lstrip("v"))
            except ValueError:
                raise UnknownContractError(f"bad contract version in {name}@{v}") from None
        versions = [c for c in self._by_type.values() if c.__contract__.name == name]
        if version is not None:
            versions = [c for c in versions if c.__contract__.version == version]
        if not versions:
            wanted = name if version is None else f"{name} v{version}"
            close = self.suggest(name)
            if close and version is None:
                raise UnknownContractError(f"unknown contract {wanted}; did you mean {' or '.join(close)}?")
            known = ", ".join(self.names())
            raise UnknownContractError(f"unknown contract {wanted}; known contracts: {known}")
        return max(versions, key=lambda c: c.__contract__.version)

    def names(self) -> list[str]:
        """Every registered contract name, sorted (once however many versions it has)."""
        return sorted({c.__contract__.name for c in self._by_type.values()})

    def suggest(self, name: str, limit: int = 3) -> list[str]:
        """The registered names closest to a misspelt ``name`` (best first), or none.

        Close means a typo of the whole name, or of its event alone (``beach-observation``,
        ``weather.forecast``, a misspelt domain): names sharing only a domain are not suggested.
        """

        def score(candidate: str) -> float:
            event = candidate.partition(".")[2]
            return max(
                _similarity(name, candidate) if _similarity(name, candidate) >= 0.8 else 0.0,
                _similarity(name.rpartition(".")[2], event),
                _similarity(name.replace(".", "-"), event),
            )

        scored = sorted(((score(n), n) for n in self.names()), reverse=True)
        if not scored or scored[0][0] < 0.75:
            return []
        # Those about as close as the best: a typo has one answer, not every name of its domain.
        return [n for s, n in scored[:limit] if s >= scored[0][0] - 0.05]

    def domains(self) -> list[tuple[Classification, str]]:
        """Every (classification, domain) pair in use: one JetStream stream each."""
        pairs = {(c.__contract__.classification, c.__contract__.domain) for c in self}
        return sorted(pairs)


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _sort_key(cls: type[Contract]) -> tuple[str, int]:
    return (cls.__contract__.name, cls.__contract__.version)


_DEFAULT = Registry()


def default_registry() -> Registry:
    """The registry that :func:`contracts.contract` adds to unless told otherwise."""
    return _DEFAULT


def package_name(name: str) -> str:
    """A distribution's name as packaging compares them (``TestCo_Widgets`` is ``testco-widgets``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def package_of(cls: type[Contract]) -> str | None:
    """The package a contract came from: :data:`CITY_PACKAGE` for the city's own, the distribution
    for one loaded from the ``citybus.contracts`` group, else ``None`` (declared by other code, such
    as a test)."""
    if cls.__module__ == "contracts" or cls.__module__.startswith("contracts."):
        return CITY_PACKAGE
    return _PACKAGES.get(cls)


def city_domains(registry: Registry | None = None) -> frozenset[str]:
    """The domains reserved for the city: those of its own contracts, and :data:`RESERVED_DOMAINS`."""
    target = registry if registry is not None else _DEFAULT
    own = {c.__contract__.domain for c in target if package_of(c) == CITY_PACKAGE}
    return RESERVED_DOMAINS | own


def installed_packages() -> list[str]:
    """The installed distributions with an entry point in the ``citybus.contracts`` group, sorted."""
    return sorted({_distribution(ep) for ep in entry_points(group=CONTRACTS_GROUP)})


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return package_name(dist.name) if dist is not None else f"(entry point {ep.name})"


def load_installed_contracts(registry: Registry | None = None) -> list[str]:
    """Import the contracts installed in the ``citybus.contracts`` entry-point group.

    An entry point names a module (its ``@contract`` declarations register in the default registry
    as it is imported) or one contract class (added to ``registry``, the default one unless given).
    Importing twice is harmless. Returns one warning line per problem, naming the package, so that
    a broken package costs its own contracts and not the command: the caller says them. The same
    lines are kept, per package, in ``registry.refused``.
    """
    target = registry if registry is not None else _DEFAULT
    reserved = city_domains(_DEFAULT)
    warnings = []
    for ep in sorted(entry_points(group=CONTRACTS_GROUP), key=lambda e: (_distribution(e), e.name)):
        package = _distribution(ep)
        before = {*_DEFAULT, *target}
        try:
            loaded = ep.load()
            if isinstance(loaded, type) and issubclass(loaded, Contract):
                if not hasattr(loaded, "__contract__"):
                    raise TypeError(f"{loaded.__qualname__} is not declared with @contract")
                target.add(loaded)
        except Exception as exc:  # a broken package must not take every command down
            for cls in {*_DEFAULT, *target} - before:  # no half of it stays
                _DEFAULT.remove(cls)
                target.remove(cls)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            problem = f"package {package}: its contracts ({ep.name} = {ep.value}) failed to load: {reason}"
            target.refused.setdefault(package, []).append(problem)
            warnings.append(problem)
            continue
        for cls in _brought(loaded, {*_DEFAULT, *target} - before):
            _PACKAGES.setdefault(cls, package)
            domain = cls.__contract__.domain
            if domain in reserved and package_of(cls) != CITY_PACKAGE:
                _DEFAULT.remove(cls)
                target.remove(cls)
                problem = (
                    f"package {package}: contract {cls.__contract__.name} refused: the domain {domain!r} "
                    f"is the city's; name a package's contracts after the company, e.g. "
                    f"'acme.{cls.__contract__.event}'"
                )
                target.refused.setdefault(package, []).append(problem)
                warnings.append(problem)
    return warnings


def _brought(loaded: object, new: set[type[Contract]]) -> set[type[Contract]]:
    """The contracts an entry point brought: those it registered now, or (imported before) those
    declared in its module and the modules under it, or the class it names."""
    if isinstance(loaded, type) and issubclass(loaded, Contract):
        return new | {loaded}
    if new or not isinstance(loaded, ModuleType):
        return new
    prefix = loaded.__name__
    return {c for c in (*_DEFAULT,) if c.__module__ == prefix or c.__module__.startswith(prefix + ".")}
