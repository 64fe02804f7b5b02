"""docs/context.md, the reference of the adapter's ``ctx``: its Python blocks run, in order, as one
module (in a subprocess, so that its example contract stays out of this session's registry), and
their ``test_*`` functions pass; every public part of :class:`adapters.Context` is on the page."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

from adapters import Context

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "context.md"

RUNNER = """
import asyncio, re, sys, types

text = open(sys.argv[1], encoding="utf-8").read()
blocks = re.findall(r"^```python\\n(.*?)^```", text, re.S | re.M)
module = types.ModuleType("docs_context")
sys.modules["docs_context"] = module
for number, block in enumerate(blocks, 1):
    exec(compile(block, f"docs/context.md, python block {number}", "exec"), module.__dict__)
tests = [f for name, f in vars(module).items() if name.startswith("test_") and asyncio.iscoroutinefunction(f)]


async def main() -> None:
    for test in tests:
        await test()
        print("passed", test.__name__)


asyncio.run(main())
print(f"{len(blocks)} blocks")
"""


def test_the_pages_python_runs_and_its_tests_pass() -> None:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(PAGE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed test_a_warm_site_raises_one_alert_within_quiet" in result.stdout
    assert "passed test_the_tally_consumes_durably" in result.stdout
    blocks = len(re.findall(r"^```python$", PAGE.read_text(encoding="utf-8"), re.M))
    assert f"{blocks} blocks" in result.stdout and blocks >= 3


def test_every_public_part_of_the_context_is_on_the_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    internal = {"close"}  # called by the runtime when run ends, not by an adapter
    names = {name for name, _ in inspect.getmembers(Context) if not name.startswith("_")} - internal
    attributes = {"adapter", "instance", "source", "log", "metrics", "clock", "is_ready"}
    missing = sorted(name for name in names | attributes if f"ctx.{name}" not in page)
    assert missing == []


def test_the_readme_links_the_page() -> None:
    assert "(docs/context.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
