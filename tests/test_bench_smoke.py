"""The replay benchmark's smoke run: ``python -m bench.replay --smoke`` completes and reports every case.

It runs as a user (and CI) runs it: a child process started from the repository root, writing its
report to a file of the test's own. What is checked is that every case ran and put its figures in
the report, never what the figures are: timing belongs in ``bench/``, not in assertions.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT = 120.0  # a bound against hangs, not a performance expectation
NUMBER = r"[\d,]+(?:\.\d+)?"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of one smoke run."""
    output = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.replay", "--smoke", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return output.read_text(encoding="utf-8")


def section(report: str, title: str) -> str:
    """The part of the report under ``## title`` (up to the next section)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report, re.MULTILINE | re.DOTALL)
    assert match, f"the report has no section {title!r}"
    return match.group(1)


def table(text: str) -> list[list[str]]:
    """The rows of the first Markdown table in ``text`` (header and rule left out)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_the_report_says_it_is_a_smoke_run_and_where_it_ran(report: str) -> None:
    assert report.startswith("# Benchmarks: the sandbox replay\n")
    assert "**Smoke run**" in report
    machine = dict(row[:2] for row in table(section(report, "Machine")))
    assert set(machine) >= {"date", "CPU", "memory", "OS", "Python", "nats-server", "commit"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", machine["date"])
    assert machine["Python"].endswith(".".join(map(str, sys.version_info[:3])))


def test_throughput_is_measured_into_nothing_and_into_nats_server(report: str) -> None:
    text = section(report, "1. Replay throughput, as fast as possible")
    rows = {row[0]: row for row in table(text)}
    assert len(rows) == 4
    for into, row in rows.items():
        assert row[1] == "3000", into  # every message replayed (the bench fails on a lost one)
        assert re.fullmatch(NUMBER, row[3]), into
    targeted = [row for row in rows.values() if row[4] == ">= 60,000"]
    assert len(targeted) == 2
    assert all(row[5] in ("yes", "**no**") for row in targeted)
    # the smoke run always profiles, so the profile code is checked too: the event loop (twice) and the reader
    assert text.count("Top functions by own time") == 3
    assert "sandbox/replay.py" in text
    assert "mcap/" in text


def test_schedule_error_is_measured_at_1x_with_percentiles(report: str) -> None:
    text = section(report, "2. Schedule error at 1x")
    rows = table(text)
    assert [(row[0], row[1].split(":")[0]) for row in rows] == [
        *(
            (into, which)
            for into in ("a no-op publish", "nats-server")
            for which in ("all", "steady only", "bursts only")
        ),
        ("the event loop alone (`asyncio.sleep` until each due time, no replay)", "all"),
    ]
    for row in rows:
        assert all(re.fullmatch(NUMBER, cell) for cell in row[2:5]), row
        assert float(row[2]) <= float(row[3]) <= float(row[4]), row  # p50 <= p99 <= max
    totals = [row for row in rows[:-1] if row[1].startswith("all")]
    assert len(totals) == 2
    assert rows[-1][5] == "(diagnostic)"
    assert all(row[5] == "p99 <= 2 ms" and row[6] in ("yes", "**no**") for row in totals)
    assert text.count("went out more than 2 ms late") == 2


def test_peak_rss_is_measured_against_a_baseline(report: str) -> None:
    rows = table(section(report, "3. Peak RSS replaying a large recording"))
    replaying, baseline = rows
    assert replaying[0] == "replaying the recording" and baseline[0] == "baseline: imports only"
    assert float(replaying[1]) >= float(baseline[1]) > 10  # a Python process with citybus imported
    assert replaying[4] == "< 150 MB" and replaying[5] in ("yes", "**no**")


def test_the_summary_lists_every_target(report: str) -> None:
    rows = table(section(report, "Summary"))
    assert len(rows) == 5  # two throughputs, two schedule errors, one peak RSS
    assert all(row[2].endswith((": met", ": **missed**")) for row in rows)
