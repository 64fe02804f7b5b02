"""The README's configuration examples are real: every TOML block loads (a citybus.toml with its adapters
configured, or a fault plan)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapters.discovery import discover
from adapters.instances import instances_from_config
from bus.config import load_config
from sandbox.faults import FaultPlan

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_configuration_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_every_configuration_example_loads(block: str, tmp_path: Path) -> None:
    if "[[faults]]" in block:  # a fault plan, not a citybus.toml
        assert FaultPlan.loads(block, origin="README").faults
        return
    if block.lstrip().startswith("[adapters.air.source]"):  # a lone source table, shown for its keys
        block = '[adapters.air]\nadapter = "nilu-air-quality"\n' + block
    path = tmp_path / "citybus.toml"
    path.write_text(block, encoding="utf-8")
    config = load_config(path, environ={})
    instances_from_config(config.adapters, discover().adapters)
