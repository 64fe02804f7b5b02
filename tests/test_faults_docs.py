"""docs/faults.md cannot rot: every TOML block is a plan the real loader takes, its full plan uses every
kind and passes the check against the shipped Drammen day, each ground-truth example has the keys the
injector really writes for its kind, and the check-faults session shows what the command prints."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bus.cli import main
from sandbox.adapter import DRAMMEN_DAY
from sandbox.faults import FaultInjector, FaultPlan, ReplayScope, check_plan
from sandbox.replay import Replayer

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "faults.md").read_text(encoding="utf-8")
TOML = re.findall(r"```toml\n(.*?)```", DOC, flags=re.S)
JSON = re.findall(r"```json\n(.*?)```", DOC, flags=re.S)
KINDS = ["drop", "duplicate", "reorder", "delay", "corrupt", "outage", "stuck", "skew"]


@pytest.mark.parametrize("block", TOML, ids=[f"toml-{i}" for i in range(len(TOML))])
def test_every_plan_in_the_doc_loads(block: str) -> None:
    assert FaultPlan.loads(block, origin="docs/faults.md").faults


def test_every_kind_has_its_section_and_an_example() -> None:
    shown = {_kind(fault) for block in TOML for fault in FaultPlan.loads(block).faults}
    assert sorted(shown) == sorted(KINDS)
    assert [line for line in DOC.splitlines() if line.startswith("### ")] == [f"### {k}" for k in KINDS]


def _kind(fault: object) -> str:
    return str(type(fault).__struct_config__.tag)  # type: ignore[attr-defined]


def _truth_of_the_full_plan() -> list[dict[str, Any]]:
    plan = FaultPlan.loads(TOML[0])
    truth = io.StringIO()

    async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
        pass

    replayer = Replayer(
        [DRAMMEN_DAY],
        publish,
        speed=0,
        shift_to_now=False,
        faults=lambda origin: FaultInjector(plan, origin=origin, truth=truth),
    )
    asyncio.run(replayer.run())
    return [json.loads(line) for line in truth.getvalue().splitlines()]


def test_the_full_plan_uses_every_kind_fires_on_the_drammen_day_and_checks_clean() -> None:
    plan = FaultPlan.loads(TOML[0])
    assert sorted(_kind(f) for f in plan.faults) == sorted(KINDS)
    assert check_plan(plan, ReplayScope.of([DRAMMEN_DAY])) == []
    fired = {line["fault"] for line in _truth_of_the_full_plan()}
    assert fired == set(range(len(plan.faults)))  # every one of them really does something


def test_every_ground_truth_example_has_the_keys_its_kind_writes() -> None:
    real: dict[tuple[str, int], set[str]] = {}
    for line in _truth_of_the_full_plan():
        real.setdefault((line["kind"], line["fault"]), set()).update(line)
    examples = [json.loads(block) for block in JSON]
    assert sorted(e["kind"] for e in examples) == sorted(KINDS)
    for example in examples:  # each is a line of the full plan, fault index included
        assert set(example) == real[example["kind"], example["fault"]], example["kind"]


def test_the_check_faults_session_is_what_the_command_prints(tmp_path: Path) -> None:
    session = re.search(r"```console\n\$ (citybus sandbox check-faults .*?)\n(.*?)```", DOC, flags=re.S)
    assert session is not None
    command, expected = session.group(1).split(), session.group(2)
    (tmp_path / "faults.toml").write_text(TOML[-1], encoding="utf-8")  # the plan shown just before it
    data = tmp_path / "sandbox" / "data"
    data.mkdir(parents=True)
    (data / DRAMMEN_DAY.name).symlink_to(DRAMMEN_DAY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBUS_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "bus.cli", *command[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout == expected
    assert done.returncode == 1  # it has errors: a CI job fails


def _text_block_after(words: str) -> str:
    found = re.search(re.escape(words) + r".*?```text\n(.*?)\n```", DOC, flags=re.S)
    assert found is not None, words
    return found.group(1)


def test_the_refusals_shown_are_what_the_commands_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "faults.toml").write_text(
        '[[faults]]\nkind = "drop"\nprobability = 0.1\n[[faults]]\nkind = "drop"\nprobability = 1.5\n'
    )
    assert main(["sandbox", "check-faults", "faults.toml"]) == 1
    assert capsys.readouterr().err == _text_block_after("each is refused with one line") + "\n"

    (tmp_path / "faults.toml").write_text(TOML[-1], encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBUS_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "bus.cli", "replay", "--faults", "faults.toml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    shown = _text_block_after("refuses the same plan with the first error")
    assert re.fullmatch(re.escape(shown).replace("…", ".*") + "\n", done.stderr)
