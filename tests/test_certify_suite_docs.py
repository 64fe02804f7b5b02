"""docs/certify.md cannot rot: every TOML block marked as a suite loads with the files marked next to
it and aims at a consuming adapter without an error, the tables name every key the code reads and
every preset the default suite has, and the plan, seed and error shown are what the code gives."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from sandbox.certify.aim import ConcretePlan, plan_suite, preset_seed
from sandbox.certify.model import Thresholds
from sandbox.certify.suite import _PRESET_KEYS, _TOP, SuiteError, load_suite
from tests.test_certify_suite import NEIGHBOURS

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "certify.md").read_text(encoding="utf-8")
SUITES = re.findall(r"<!-- suite -->\n```toml\n(.*?)```", DOC, flags=re.S)
FILES = re.findall(r"<!-- file: (\S+) -->\n```toml\n(.*?)```", DOC, flags=re.S)


def _section(title: str) -> str:
    found = re.search(rf"\n#+ {re.escape(title)}\n(.*?)(?=\n#+ |\Z)", DOC, flags=re.S)
    assert found is not None, title
    return found.group(1)


def _first_column(section: str) -> list[str]:
    """The first column of the section's first table."""
    table = re.search(r"^(\|.*?)(?:\n\n|\Z)", _section(section), flags=re.S | re.M)
    assert table is not None, section
    return re.findall(r"^\| `([^`]+)` \|", table.group(1), flags=re.M)


@pytest.mark.parametrize("index", range(len(SUITES)), ids=[f"suite-{i}" for i in range(len(SUITES))])
def test_every_suite_in_the_doc_loads_and_aims_at_a_consuming_adapter(tmp_path: Path, index: int) -> None:
    for name, text in FILES:
        (tmp_path / name).write_text(text, encoding="utf-8")
    path = tmp_path / "suite.toml"
    path.write_text(SUITES[index], encoding="utf-8")
    plans = plan_suite(load_suite(str(path)), NEIGHBOURS)
    assert plans and all(isinstance(plan, ConcretePlan) and plan.warnings == [] for plan in plans.values())


def test_the_doc_shows_suites_and_a_plan_file() -> None:
    assert len(SUITES) >= 2 and [name for name, _ in FILES] == ["my-faults.toml"]


def test_the_tables_name_every_key_and_threshold() -> None:
    assert _first_column("A suite's keys") == list(_TOP)
    assert _first_column("A preset's keys") == list(_PRESET_KEYS)
    thresholds = [f.name for f in msgspec.structs.fields(Thresholds)]
    assert _first_column("Thresholds") == thresholds
    defaults = re.findall(r"^\| `[^`]+` \| \w+ \| `([^`]+)` \|", _section("Thresholds"), flags=re.M)
    assert [float(d) for d in defaults] == [float(getattr(Thresholds(), t)) for t in thresholds]
    assert _first_column("The default suite") == [p.name for p in load_suite("default").presets]


def test_the_plan_and_the_seed_shown_are_what_the_code_gives() -> None:
    shown = re.search(r"suite's `outage` preset becomes:\n\n```text\n(.*?)```", DOC, flags=re.S)
    assert shown is not None
    assert plan_suite(load_suite("default"), NEIGHBOURS, only=["outage"])["outage"].text == shown.group(1)  # type: ignore[union-attr]
    assert "(2018 and `outage` give\n2611935338)" in DOC and preset_seed(2018, "outage") == 2611935338


def test_the_error_shown_is_what_the_loader_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = re.search(
        r"in the fault\nloader's words .*?```text\ncitybus: configuration error: (.*?)\n```", DOC, flags=re.S
    )
    assert shown is not None
    monkeypatch.chdir(tmp_path)
    mistaken = SUITES[1].replace('subjects = ["@consumed"]', 'subjects = ["@all"]', 1)
    (tmp_path / "ours.toml").write_text(mistaken, encoding="utf-8")
    with pytest.raises(SuiteError) as refused:
        load_suite("ours.toml")
    assert str(refused.value) == shown.group(1)
