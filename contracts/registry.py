"""The contract registry: every contract citybus knows, by name, version and CloudEvents type.

Contracts of other packages (a company's adapter package) arrive through the entry-point group
``citybus.contracts``: each entry point names a module whose ``@contract`` declarations register
themselves on import (or a contract class itself). :func:`load_installed_contracts` imports them, so
every command and endpoint knows installed contracts without ``contracts`` importing anyone.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from importlib.metadata import entry_points

from contracts.base import Classification, Contract

__all__ = [
    "CONTRACTS_GROUP",
    "Registry",
    "UnknownContractError",
    "default_registry",
    "load_installed_contracts",
]

CONTRACTS_GROUP = "citybus.contracts"


class UnknownContractError(LookupError):
    """No contract of that name (and version) is registered."""


class Registry:
    """A set of contracts, looked up by name, ``name@version`` or CloudEvents type."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[Contract]] = {}

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


def load_installed_contracts(registry: Registry | None = None) -> list[str]:
    """Import the contracts installed in the ``citybus.contracts`` entry-point group.

    An entry point names a module (its ``@contract`` declarations register in the default registry
    as it is imported) or one contract class (added to ``registry``, the default one unless given).
    Importing twice is harmless. Returns one warning per entry point that failed to load, so that a
    broken package costs its own contracts and not the command: the caller says them.
    """
    target = registry if registry is not None else _DEFAULT
    warnings = []
    for ep in sorted(entry_points(group=CONTRACTS_GROUP), key=lambda e: e.name):
        try:
            loaded = ep.load()
            if isinstance(loaded, type) and issubclass(loaded, Contract):
                if not hasattr(loaded, "__contract__"):
                    raise TypeError(f"{loaded.__qualname__} is not declared with @contract")
                target.add(loaded)
        except Exception as exc:  # a broken package must not take every command down
            warnings.append(f"contracts of {ep.name!r} ({ep.value}) failed to load: {exc}")
    return warnings
