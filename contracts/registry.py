"""The contract registry: every contract citybus knows, by name, version and CloudEvents type."""

from __future__ import annotations

from collections.abc import Iterator

from contracts.base import Classification, Contract

__all__ = ["Registry", "UnknownContractError", "default_registry"]


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
            known = ", ".join(sorted({c.__contract__.name for c in self._by_type.values()}))
            wanted = name if version is None else f"{name} v{version}"
            raise UnknownContractError(f"unknown contract {wanted}; known contracts: {known}")
        return max(versions, key=lambda c: c.__contract__.version)

    def domains(self) -> list[tuple[Classification, str]]:
        """Every (classification, domain) pair in use: one JetStream stream each."""
        pairs = {(c.__contract__.classification, c.__contract__.domain) for c in self}
        return sorted(pairs)


def _sort_key(cls: type[Contract]) -> tuple[str, int]:
    return (cls.__contract__.name, cls.__contract__.version)


_DEFAULT = Registry()


def default_registry() -> Registry:
    """The registry that :func:`contracts.contract` adds to unless told otherwise."""
    return _DEFAULT
