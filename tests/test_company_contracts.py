"""A company's own contracts through every ``citybus contracts`` command, as a company uses them.

The packages are installed for real (a module and a ``*.dist-info`` on ``PYTHONPATH``, see
contract_package.py) and every command runs as its own process, as a user or a company's CI runs
it. A running ``citybus up`` with a company's contract (tail, publish, streams, ops endpoints) is
tested in test_cli.py and test_company_contracts_up.py. The example and the CI steps of
docs/contracts.md run here as written, so the page cannot drift from what the commands do. A
contract that only an adapter's module declares is warned about by the commands that discover
adapters (``adapters list``, ``adapters run``, ``up``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import contract_package
import join_package
import pytest

from contracts import default_registry, dump_snapshot, load_snapshot
from tests.test_cli import Background, Result, assert_one_line_error, citybus_env, run_citybus

pytestmark = pytest.mark.slow

ACME = '''"""Acme's beach contracts: its own buoy's reading, named like the city's class on purpose."""

from contracts import Contract, contract


@contract(
    "acme.beach-observation",
    version=1,
    classification="internal",
    key="buoy",
    example={"buoy": "acme-1", "turbidity": 2.0},
)
class BeachObservation(Contract, frozen=True, kw_only=True):
    """Turbidity at one of Acme's buoys, which Acme's own product reads."""

    buoy: str
    turbidity: float
'''


class Company:
    """A working directory whose ``citybus`` commands see the packages installed in ``site``."""

    def __init__(self, base: Path) -> None:
        self.site = base / "site"
        self.cwd = base / "cwd"
        self.cwd.mkdir(parents=True)
        self.env = citybus_env(base / "data")
        self.env["PYTHONPATH"] = os.pathsep.join([self.env["PYTHONPATH"], str(self.site)])

    async def __call__(self, *args: str) -> Result:
        return await run_citybus(*args, cwd=self.cwd, env=self.env)


@pytest.fixture
def company(tmp_path: Path) -> Company:
    return Company(tmp_path)


def rows(text: str) -> dict[str, list[str]]:
    """The table ``contracts list`` prints, by contract name (cells split on two spaces or more)."""
    found = {}
    for line in text.splitlines()[1:]:
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        found[cells[0]] = cells
    return found


async def test_every_contracts_command_knows_an_installed_package(company: Company) -> None:
    contract_package.install(company.site)
    contract_package.install_module(company.site, ACME, module="acme_beaches", package="acme-beaches")
    listed, mine, unknown, schema, document, own = await asyncio.gather(
        company("contracts", "list"),
        company("contracts", "list", "--package", "Acme_Beaches"),
        company("contracts", "list", "--package", "nobody-here"),
        company("contracts", "schema", contract_package.NAME),
        company("contracts", "asyncapi"),
        company("contracts", "asyncapi", "--package", contract_package.PACKAGE),
    )
    assert listed.returncode == 0 and listed.stderr == "", listed
    table = rows(listed.stdout)
    assert listed.stdout.split()[:6] == ["CONTRACT", "VERSION", "CLASS", "KEY", "SUBJECT", "DESCRIPTION"]
    assert table[contract_package.NAME] == [
        contract_package.NAME,
        "1",
        "public",
        "widget",
        "city.public.testco.widget-reading.*",
        contract_package.SUMMARY,  # the docstring's first line, not the rest
    ]
    assert (
        table["acme.beach-observation"][-1]
        == "Turbidity at one of Acme's buoys, which Acme's own product reads."
    )
    # The city's contracts are described too.
    for cls in default_registry():
        assert table[cls.__contract__.name][-1] == cls.summary()

    assert mine.returncode == 0, mine
    assert list(rows(mine.stdout)) == ["acme.beach-observation"]
    assert_one_line_error(unknown, 1, "--package nobody-here", "citybus, acme-beaches, testco-widgets")

    assert schema.returncode == 0, schema
    assert json.loads(schema.stdout)["x-citybus"]["classification"] == "public"

    assert document.returncode == 0, document
    doc = json.loads(document.stdout)
    messages = doc["components"]["messages"]
    assert messages["acme_beach-observation_v1"]["summary"] == table["acme.beach-observation"][-1]
    assert (
        doc["channels"]["testco_widget-reading_v1"]["address"] == "city.public.testco.widget-reading.{entity}"
    )
    # Every payload refers to a schema that is there: Acme's BeachObservation and the city's are two.
    for message in messages.values():
        target = resolve(doc, message["payload"]["$ref"])
        assert target["title"] == message["title"], message
    assert own.returncode == 0, own
    assert list(json.loads(own.stdout)["channels"]) == ["testco_widget-reading_v1"]


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


async def test_a_company_checks_its_own_contracts_against_its_own_snapshot(company: Company) -> None:
    contract_package.install(company.site)
    stored = company.cwd / "contracts.snapshot.json"
    written = await company("contracts", "snapshot", "--package", contract_package.PACKAGE, "-o", str(stored))
    assert written.returncode == 0, written
    assert list(load_snapshot(stored)["contracts"]) == [f"{contract_package.NAME}@1"]  # its own only

    unchanged, no_file, city_snapshot, city_check = await asyncio.gather(
        company("contracts", "check", "--package", contract_package.PACKAGE, "--snapshot", str(stored)),
        company("contracts", "check", "--package", contract_package.PACKAGE),
        company("contracts", "snapshot"),
        company("contracts", "check"),
    )
    assert unchanged.returncode == 0, unchanged
    assert unchanged.stdout == f"contracts of testco-widgets compatible with {stored}\n"
    assert_one_line_error(
        no_file, 1, "--snapshot FILE", "contracts snapshot --package testco-widgets -o FILE"
    )
    # The city's own snapshot and check are the city's, whatever else is installed.
    assert city_snapshot.returncode == 0 and city_snapshot.stdout == dump_snapshot(load_snapshot()), (
        city_snapshot
    )
    assert city_check.returncode == 0, city_check

    # A breaking change that kept version 1: the required field `level` removed.
    module = company.site / f"{contract_package.MODULE}.py"
    module.write_text(contract_package.source(fields="    widget: str\n", example={"widget": "w-1"}))
    broken = await company(
        "contracts", "check", "--package", contract_package.PACKAGE, "--snapshot", str(stored)
    )
    assert broken.returncode == 1, broken
    assert (
        "  - testco.widget-reading v1: field 'level' was removed (a removed or renamed field needs version 2)"
        in broken.stderr.splitlines()
    ), broken

    # A compatible change: a new field with a default.
    fields = contract_package.FIELDS + '    colour: str = "blue"\n'
    module.write_text(contract_package.source(fields=fields))
    compatible = await company(
        "contracts", "check", "--package", contract_package.PACKAGE, "--snapshot", str(stored)
    )
    assert compatible.returncode == 0, compatible
    assert compatible.stdout.startswith("contracts of testco-widgets compatible with")


BROKEN = {
    # package: (module source, what its one warning line says)
    "testco-missing": ("import testco_nowhere_to_be_found\n", "No module named 'testco_nowhere_to_be_found'"),
    "testco-shadow": (
        contract_package.source(name="environment.beach-observation"),
        "contract environment.beach-observation v1 is declared twice",
    ),
    "testco-squatter": (
        contract_package.source(name="mobility.widget-reading"),
        "contract mobility.widget-reading refused: the domain 'mobility' is the city's",
    ),
    "testco-secret": (
        contract_package.source().replace('classification="public"', 'classification="secret"'),
        "classification 'secret' is not one of public, internal, personal",
    ),
}


async def test_broken_packages_cost_their_own_contracts_and_one_line_each(company: Company) -> None:
    contract_package.install(company.site)
    for package, (text, _) in BROKEN.items():
        module = package.replace("-", "_")
        contract_package.install_module(company.site, text, module=module, package=package)
    stored = company.cwd / "secret.snapshot.json"
    stored.write_text(dump_snapshot({"format": 1, "contracts": {}}))
    listed, city_check, schema, refused_check = await asyncio.gather(
        company("contracts", "list"),
        company("contracts", "check"),
        company("contracts", "schema", "environment.beach-observation"),
        company("contracts", "check", "--package", "testco-secret", "--snapshot", str(stored)),
    )
    assert listed.returncode == 0, listed
    warnings = listed.stderr.splitlines()
    assert len(warnings) == len(BROKEN), listed
    for package, (_, reason) in BROKEN.items():
        [line] = [w for w in warnings if w.startswith(f"citybus: warning: package {package}: ")]
        assert reason in line, line
    table = rows(listed.stdout)
    assert set(table) == {c.__contract__.name for c in default_registry()} | {contract_package.NAME}
    assert table["environment.beach-observation"][-1].startswith(
        "The water at one of Drammen's bathing sites"
    )
    assert city_check.returncode == 0, city_check
    assert schema.returncode == 0 and json.loads(schema.stdout)["x-citybus"]["key"] == "site", schema
    # A company's CI fails on its broken package, with the reason.
    assert refused_check.returncode == 1, refused_check
    assert "cannot check package testco-secret: its contracts did not all load" in refused_check.stderr
    assert "classification 'secret' is not one of" in refused_check.stderr


# -- a contract declared only in an adapter's module ------------------------------------------------

BUOY = '''"""TestCo's buoy adapter, whose contract only this module declares."""

from adapters import Adapter, Context
from contracts import BeachObservation, Contract, contract


@contract(
    "testco.buoy-advice",
    version=1,
    classification="public",
    key="buoy",
    example={"buoy": "testco-buoy", "swim": True},
)
class BuoyAdvice(Contract, frozen=True, kw_only=True):
    """Whether TestCo advises a swim at its buoy."""

    buoy: str
    swim: bool


class BuoyAdvisor(Adapter):
    """Advice for TestCo's buoy."""

    name = "testco-buoy"
    consumes = (BeachObservation,)
    produces = (BuoyAdvice,)

    async def run(self, ctx: Context) -> None:
        ctx.ready()
        await ctx.wait_stopped()
'''


def install_buoy(site: Path) -> Path:
    """Install the buoy package (its adapter's entry point only); returns its ``entry_points.txt``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "testco_buoy.py").write_text(BUOY)
    info = site / "testco_buoy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: testco-buoy\nVersion: 1.0\n")
    entry_points = info / "entry_points.txt"
    entry_points.write_text("[citybus.adapters]\ntestco-buoy = testco_buoy:BuoyAdvisor\n")
    return entry_points


async def test_a_contract_only_its_adapters_module_declares_is_one_warning_with_the_fix(
    company: Company,
) -> None:
    """It works in `citybus up` (which imports the adapter) but tail, contracts list and the ops
    endpoints do not know it: the commands that discover adapters say so, naming the entry point
    to add; a company contract declared through its entry point (join_package's) gets no warning."""
    join_package.install(company.site)
    entry_points = install_buoy(company.site)
    listed, as_json, run, contracts = await asyncio.gather(
        company("adapters", "list"),
        company("adapters", "list", "--json"),
        # the warning comes before connecting: a closed port ends the command right after it
        company("adapters", "run", "testco-buoy", "--nats", "nats://127.0.0.1:9"),
        company("contracts", "list"),
    )
    assert listed.returncode == 0, listed
    [warning] = listed.stderr.splitlines()
    assert warning.startswith("citybus: warning: adapter testco-buoy: contract testco.buoy-advice "), warning
    fix = '[project.entry-points."citybus.contracts"] testco = "testco_buoy"'
    for part in ("tail", fix, "docs/contracts.md"):
        assert part in warning, part
    assert "testco-advisor" in listed.stdout  # listed, and its declared contract warned about nowhere
    assert json.loads(as_json.stdout)["warnings"] == [warning.removeprefix("citybus: warning: ")]
    assert run.returncode == 1 and run.stderr.splitlines()[0] == warning, run
    assert "testco.buoy-advice" not in contracts.stdout and join_package.ADVICE in contracts.stdout

    # The fix the warning names (entry_points.txt is what pip writes from that pyproject.toml
    # table): the contract is known everywhere, and the warning is gone.
    entry_points.write_text(entry_points.read_text() + "\n[citybus.contracts]\ntestco = testco_buoy\n")
    listed, contracts = await asyncio.gather(company("adapters", "list"), company("contracts", "list"))
    assert listed.returncode == 0 and listed.stderr == "", listed
    assert "testco.buoy-advice" in rows(contracts.stdout), contracts


async def test_citybus_up_runs_such_an_adapter_and_says_the_same(company: Company) -> None:
    install_buoy(company.site)
    config = '[auth]\nmode = "off"\n\n[adapters.buoy]\nadapter = "testco-buoy"\n'
    (company.cwd / "citybus.toml").write_text(config)
    up = await Background.start("up", cwd=company.cwd, env=company.env)
    try:
        await up.wait_said(r"^citybus is up: NATS at ")
    finally:
        await up.stop()
    logged = [json.loads(line) for line in up.stderr if line.startswith("{")]
    [warning] = [e for e in logged if e["event"] == "contract declared only in its adapter's module"]
    assert warning["level"] == "warning"
    assert warning["problem"].startswith("adapter testco-buoy: contract testco.buoy-advice "), warning
    assert 'testco = "testco_buoy"' in warning["problem"]
    assert any(e["event"] == "adapter ready" and e.get("instance") == "buoy" for e in logged)  # it still runs


# -- docs/contracts.md, as written ------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "contracts.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def console(block: str) -> list[tuple[str, list[str]]]:
    """The commands of a console block (``$ `` lines, comments dropped) and the lines each prints."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].split("  #")[0].strip(), []))
        else:
            steps[-1][1].append(line)
    return steps


async def test_the_documented_contract_and_ci_steps_work_as_written(company: Company) -> None:
    """The page's contract installs as ``acme-advisor``; its CI commands print what the page says,
    before and after the breaking change it describes; its broken-package warning is the real one."""
    [code] = blocks("python")
    contract_package.install_module(
        company.site, code, module="acme_advisor_contracts", package="acme-advisor"
    )
    first, after_change = (console(b) for b in blocks("console"))
    for command, expected in first:
        result = await company(*shlex.split(command)[1:])
        assert result.returncode == 0, result
        assert (result.stdout + result.stderr).splitlines() == expected, result

    # The change the page describes: the required field water_temperature removed, version kept.
    lines = [line for line in code.splitlines(keepends=True) if "water_temperature" not in line]
    module = company.site / "acme_advisor_contracts.py"
    module.write_text("".join(lines))
    [(command, expected)] = after_change
    result = await company(*shlex.split(command)[1:])
    assert result.returncode == 1, result
    assert result.stderr.splitlines() == expected, result

    # The warning of a package using a city domain, as the page shows it.
    module.write_text(code.replace('"acme.beach-advice"', '"environment.beach-advice"'))
    listed = await company("contracts", "list")
    assert listed.returncode == 0, listed
    [text] = blocks("text")
    documented = text.splitlines()[0]
    assert listed.stderr.splitlines() == [documented], listed
