"""The report: what each case measured, on which machine, against which target, in Markdown.

A case is a table (:class:`Row`), the targets it checks (:class:`Target`), notes on its method
and, where it profiled, the top functions. :func:`render` puts the machine, a summary of every
target and one section per case into ``docs/benchmarks.md``; nothing here judges a number but
the targets, and a missed target is written down, never raised.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Final

from bench.common import ROOT
from bench.stats import Profiled
from bus.server import find_nats_server

__all__ = ["Case", "Figure", "Row", "Target", "machine", "render"]

HISTORY: Final = Path(__file__).with_name("history.md")
"""Before and after the fixes the profiles called for: copied into every full report."""
LIBRARIES: Final = ("nats-py", "msgspec", "mcap", "zstandard", "lz4", "faststream", "pydantic")


@dataclass
class Row:
    """One line of a case's table; ``met`` is its target's verdict, if the line has a target."""

    cells: dict[str, str]
    met: bool | None = None


@dataclass(frozen=True)
class Target:
    """One of issue 7's targets, as the summary shows it."""

    what: str
    target: str
    result: str
    met: bool | None
    """``None``: not measured in this run (the report says why)."""


@dataclass(frozen=True)
class Figure:
    """One headline number of a case, as ``python -m bench --json`` writes it and :mod:`bench.compare`
    sets the run of one checkout against another's."""

    name: str
    value: float
    unit: str
    higher_is_better: bool = True


@dataclass
class Case:
    """One benchmark case: what was measured, its table, the targets it checked, and notes."""

    title: str
    what: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: list[tuple[str, list[Profiled]]] = field(default_factory=list)
    """(title, top functions) of each profile the case took."""
    tables: list[tuple[str, list[Row]]] = field(default_factory=list)
    """Further tables: (a sentence saying what it shows, its rows)."""
    seconds: float = 0.0
    """How long the case took, preparing its data included."""
    failed: str = ""
    """Why the case could not finish (the run goes on with the next case and exits non-zero)."""
    figures: list[Figure] = field(default_factory=list)
    """Its headline numbers, for comparing two checkouts (:mod:`bench.compare`); not in the report."""

    @property
    def missed(self) -> bool:
        """Some target was missed."""
        return any(target.met is False for target in self.targets)


def machine() -> dict[str, str]:
    """What the benchmark ran on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    system = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    try:
        server = subprocess.run(
            [str(find_nats_server()), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except Exception as exc:  # the report says why rather than failing the run
        server = f"unknown ({exc})"
    libraries = []
    for name in LIBRARIES:
        try:
            libraries.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            libraries.append(f"{name} not installed")
    load = ""
    with contextlib.suppress(OSError):
        load = " (load average at the start: {:.2f} {:.2f} {:.2f})".format(*os.getloadavg())
    return {
        "CPU": f"{cpu}, {os.cpu_count()} logical CPUs{load}",
        "memory": memory,
        "OS": system,
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "nats-server": server,
        "libraries": ", ".join(libraries),
        "commit": _commit(),
    }


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


HOW_TO_RUN: Final = [
    "From the repository root, with citybus installed with the benchmark's extra "
    "(`pip install -e '.[dev,bench]'`: the `bench` extra pins the FastStream the comparison runs against):",
    "",
    "```",
    "python -m bench                         # every case (about 25 minutes): writes docs/benchmarks.md",
    "python -m bench --smoke                 # every case, tiny: what CI runs (report in the temp dir)",
    "python -m bench --only latency,startup  # some cases (report in the temp dir unless --output)",
    "python -m bench --only journey          # the journey planner's case alone (about 5 minutes)",
    "python -m bench --only personal         # personal data: sealing, sign-ups, erasure (about 1 minute)",
    "python -m bench.personal                # export and erasure alone, printed (--messages N)",
    "python -m bench --list                  # the cases' names",
    "python -m bench.compare --before ../main  # the bus cases against another checkout, alternately",
    "```",
    "",
    "The gateway cases (`gateway-last-value`, `gateway-sse`) need two cores, `taskset` (util-linux) and "
    "Debian's `wrk` (`apt-get install wrk`: run as root, the case installs it when it is missing; "
    "otherwise it fails saying so).",
]


def render(
    cases: list[Case],
    *,
    smoke: bool,
    started: datetime,
    seconds: float,
    partial: bool,
    settings: str,
    ran_on: dict[str, str] | None = None,
) -> str:
    """The report, in Markdown; ``ran_on`` is :func:`machine` as read when the run started (its load
    average is then the start's), else it is read now."""
    lines = [
        "# citybus benchmarks",
        "",
        "Written by `python -m bench` (`bench/`: each case's module says what it does and why). Each figure "
        "is measured side by side with what it is compared to, in the same run, on the same machine and "
        "payload, against nats-servers the run starts itself; the targets are issue 7's. A missed target is "
        "reported, never asserted.",
        "",
    ]
    if smoke:
        lines += ["**Smoke run** (`--smoke`): every case, tiny; the figures mean nothing.", ""]
    if partial:
        lines += [f"**Partial run**: only {', '.join(case.title for case in cases)}.", ""]
    lines += [
        "## How to run",
        "",
        *HOW_TO_RUN,
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| date | {started:%Y-%m-%d %H:%M} UTC |",
        *(f"| {key} | {value} |" for key, value in (ran_on or machine()).items()),
        f"| run | {seconds:.0f} s in all{', smoke' if smoke else ''}; {settings} |",
        "",
        "## Summary",
        "",
        "| case | target | result | met |",
        "|---|---|---|---|",
    ]
    for number, case in enumerate(cases, 1):
        if case.failed:
            lines.append(f"| {number}. {case.title} | | the case failed: {_cell(case.failed)} | **no** |")
        for target in case.targets:
            verdict = "not measured" if target.met is None else "met" if target.met else "**missed**"
            lines.append(f"| {number}. {target.what} | {target.target} | {target.result} | {verdict} |")
    if HISTORY.exists() and not smoke:
        lines += ["", HISTORY.read_text(encoding="utf-8").rstrip()]
    for number, case in enumerate(cases, 1):
        lines += ["", f"## {number}. {case.title}", "", case.what, ""]
        if case.failed:
            lines += [f"**The case failed**: {case.failed}", ""]
        if case.rows:
            lines += _table(case.rows)
        for caption, rows in case.tables:
            lines += ["", caption, "", *_table(rows)]
        lines += ["", *(f"- {note}" for note in case.notes), f"- The case took {case.seconds:.0f} s."]
        for title, top in case.profiles:
            lines += ["", f"Profile: {title}:", ""]
            lines += ["| function | own time | cumulative s | calls |", "|---|---|---|---|"]
            lines += [
                f"| `{where}` | {share:.0%} | {cumulative:.3f} | {calls} |"
                for where, share, cumulative, calls in top
            ]
    return "\n".join(lines) + "\n"


def _table(rows: list[Row]) -> list[str]:
    with_met = any(row.met is not None for row in rows)
    headers = [*rows[0].cells, *(["met"] if with_met else [])]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        met = [] if not with_met else [""] if row.met is None else ["yes" if row.met else "**no**"]
        lines.append("| " + " | ".join([*map(_cell, row.cells.values()), *met]) + " |")
    return lines


def _cell(text: str) -> str:
    """Text that stays in its Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
