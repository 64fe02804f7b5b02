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
    CITY_PACKAGE,
    CONTRACTS_GROUP,
    BeachObservation,
    Registry,
    UnknownContractError,
    city_domains,
    default_registry,
    installed_packages,
    load_installed_contracts,
    package_of,
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
    assert package_of(cls) == contract_package.PACKAGE
    assert [c.__contract__.name for c in registry.of_package("TestCo_Widgets")] == [contract_package.NAME]
    assert installed_packages() == [contract_package.PACKAGE]


def test_the_citys_contracts_are_the_citys_package() -> None:
    assert package_of(BeachObservation) == CITY_PACKAGE
    assert len(default_registry().of_package(CITY_PACKAGE)) == len(default_registry())
    assert {"environment", "mobility", "community", "operations", "citybus", "rpc", "city"} <= city_domains()


def test_a_broken_package_costs_its_contracts_and_a_warning(site: Path) -> None:
    contract_package.install(site, module="testco_present", entry_point="testco_missing_module")
    registry = Registry()
    warnings = load_installed_contracts(registry)
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "package testco-widgets: its contracts (testco = testco_missing_module) failed to load: "
    )
    assert "\n" not in warnings[0]
    assert len(registry) == 0
    assert registry.refused == {"testco-widgets": warnings}


def _names() -> set[str]:
    return {c.__contract__.name for c in default_registry()}


def test_a_package_that_fails_half_way_keeps_none_of_its_contracts(site: Path) -> None:
    second = contract_package.source(name="testco.second").replace(
        'classification="public"', 'classification="secret"'
    )
    text = contract_package.source() + second.replace("class WidgetReading", "class Second")
    contract_package.install_module(site, text, module="testco_half")
    before = _names()
    warnings = load_installed_contracts()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        "package testco-widgets: its contracts (testco = testco_half) failed to load:"
    )
    assert "classification 'secret' is not one of public, internal, personal" in warnings[0]
    # The first contract had registered itself before the second failed: it is gone again.
    assert _names() == before and contract_package.NAME not in before
    default_registry().refused.clear()


def test_a_package_may_not_declare_a_contract_in_a_city_domain(site: Path) -> None:
    text = contract_package.source(name="environment.widget-reading")
    contract_package.install_module(site, text, module="testco_squatter", package="testco-squatter")
    warnings = load_installed_contracts()
    default_registry().refused.clear()
    assert warnings == [
        "package testco-squatter: contract environment.widget-reading refused: the domain 'environment' "
        "is the city's; name a package's contracts after the company, e.g. 'acme.widget-reading'"
    ]
    assert "environment.widget-reading" not in _names()


def test_a_package_may_not_shadow_a_city_contract(site: Path) -> None:
    text = contract_package.source(name="environment.beach-observation")
    contract_package.install_module(site, text, module="testco_shadow", package="testco-shadow")
    warnings = load_installed_contracts()
    default_registry().refused.clear()
    assert len(warnings) == 1 and warnings[0].startswith("package testco-shadow: its contracts"), warnings
    assert "environment.beach-observation v1 is declared twice" in warnings[0]
    assert default_registry().get("environment.beach-observation") is BeachObservation


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
