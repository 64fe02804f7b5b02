"""Contracts of installed packages (entry-point group ``citybus.contracts``) and misspelt names.

The packages are installed for real: a module and a ``*.dist-info`` directory in a directory on
``sys.path``, found by ``importlib.metadata`` as a pip-installed package is. The commands that use
them are tested in test_cli.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import contract_package
import pytest

from contracts import (
    CONTRACTS_GROUP,
    Registry,
    UnknownContractError,
    default_registry,
    load_installed_contracts,
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh directory on ``sys.path`` to install into (its modules forgotten afterwards)."""
    where = tmp_path / "site"
    where.mkdir()
    monkeypatch.syspath_prepend(str(where))
    before = set(sys.modules)
    yield where  # type: ignore[misc]
    for name in set(sys.modules) - before:
        if name.startswith("testco"):
            del sys.modules[name]


def test_the_group_is_named_in_the_design() -> None:
    assert CONTRACTS_GROUP == "citybus.contracts"


def test_an_installed_contract_class_is_loaded_into_the_registry(site: Path) -> None:
    module = "testco_class_entry"
    contract_package.install(site, module=module, entry_point=f"{module}:WidgetReading", own_registry=True)
    registry = Registry()
    assert load_installed_contracts(registry) == []
    cls = registry.get(contract_package.NAME)
    assert cls.__contract__.type == contract_package.TYPE
    assert cls.example().entity() == "w-1"
    assert registry.by_type(contract_package.TYPE) is cls
    # Loading again (every command does, once) changes nothing.
    assert load_installed_contracts(registry) == []
    assert len(registry) == 1


def test_a_broken_package_costs_its_contracts_and_a_warning(site: Path) -> None:
    contract_package.install(site, module="testco_present", entry_point="testco_missing_module")
    registry = Registry()
    warnings = load_installed_contracts(registry)
    assert len(warnings) == 1
    assert "contracts of 'testco' (testco_missing_module) failed to load" in warnings[0]
    assert len(registry) == 0


def test_an_entry_point_to_an_undeclared_class_is_refused(site: Path) -> None:
    (site / "testco_plain.py").write_text(
        "from contracts import Contract\n\nclass Plain(Contract, frozen=True, kw_only=True):\n    x: int\n"
    )
    contract_package.install(site, module="testco_other", entry_point="testco_plain:Plain")
    warnings = load_installed_contracts(Registry())
    assert len(warnings) == 1 and "Plain is not declared with @contract" in warnings[0]


@pytest.mark.parametrize(
    ("wrong", "meant"),
    [
        ("environment.beach-observatio", "environment.beach-observation"),
        ("enviroment.beach-observation", "environment.beach-observation"),
        ("beach-observation", "environment.beach-observation"),
        ("mobility.train-cal", "mobility.train-call"),
    ],
)
def test_a_misspelt_contract_name_suggests_the_nearest(wrong: str, meant: str) -> None:
    with pytest.raises(UnknownContractError) as caught:
        default_registry().get(wrong)
    assert str(caught.value).startswith(f"unknown contract {wrong}; did you mean {meant}")


def test_a_name_like_no_contract_lists_them_all() -> None:
    with pytest.raises(UnknownContractError) as caught:
        default_registry().get("nope")
    message = str(caught.value)
    assert message.startswith("unknown contract nope; known contracts: ")
    for name in default_registry().names():
        assert name in message
