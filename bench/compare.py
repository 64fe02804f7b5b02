"""``python -m bench.compare``: the same benchmark cases run against two checkouts, alternately, in one run.

Before and after a change, on a shared machine, two runs made an hour apart differ by more than
most changes do. This runs each case against both checkouts in the same run, one right after the
other, alternating which goes first from round to round (before, after; after, before; ...), and
writes a table of each case's headline figures with the spread of each side::

    python -m bench.compare --before ../main                       # the bus cases, 3 rounds
    python -m bench.compare --before ../main --only consume,pubsub --rounds 5
    python -m bench.compare --before ../main --after ../feature --smoke --rounds 1

How: the benchmark's own code is always this checkout's (``bench/``, copied into a directory of
the run's own for each side), so both sides are measured by the same code; what differs is the
library under it: each run is ``python -m bench --only CASE --json ...`` in a child process whose
``PYTHONPATH`` is that copy, then a copy of the checkout's packages taken when the run starts
(``bus``, ``contracts``, ``adapters``, ``sandbox``, imported from there ahead of the installed
package; a copy, so that a commit or merge into a checkout during the run changes neither side).
The installed distribution's metadata (entry points, the version) is the same for both: a change
that adds an entry point needs it installed to be measured.

Reading the table: a figure's "spread" is (max - min) / median over its rounds; a change is
within the machine's noise when the ranges of the two sides overlap. Figures of code that is the
same in both checkouts (raw nats-py, FastStream) measure the noise itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec

from bench.common import ROOT, log
from bench.report import machine
from bench.stats import median

__all__ = ["BUS_CASES", "main"]

BUS_CASES: Final = ("pubsub", "faststream", "latency", "durable", "consume")
"""The cases measuring the bus, compared unless ``--only`` says otherwise."""
RUN_LIMIT: Final = 900.0
"""Seconds one case of one side may take (a bound against hangs; a case is bounded at two minutes
a step by the benchmark itself)."""


class _Figure(msgspec.Struct):
    name: str
    value: float
    unit: str
    higher_is_better: bool = True


class _CaseResult(msgspec.Struct):
    name: str
    title: str
    seconds: float
    failed: str
    figures: list[_Figure]
    library: str = ""


@dataclass(frozen=True)
class Tree:
    """One checkout under comparison, and the directory its runs start from."""

    label: str
    path: Path
    stage: Path
    description: str
    """The checkout's path and commit when the run started."""

    @property
    def library(self) -> Path:
        """The copy of the checkout's packages that is measured (a snapshot: the checkout may change)."""
        return self.stage / "library"

    def env(self) -> dict[str, str]:
        """This side's environment: the benchmark's copy first, then the checkout's packages."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CITYBUS_")}
        env["PYTHONPATH"] = os.pathsep.join((str(self.stage), str(self.library)))
        return env


@dataclass
class Series:
    """One figure of one case, each side's values in the order they were measured."""

    unit: str
    higher_is_better: bool
    values: dict[str, list[float]] = field(default_factory=dict)


def describe(path: Path) -> str:
    """A checkout as the table names it: its path and commit (and whether it has changes)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "no git commit"
    dirty = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"`{path}` ({commit}{dirty})"


def stage(tree: Path, label: str, work: Path) -> Tree:
    """A directory holding a copy of this checkout's ``bench/``, for runs against ``tree``."""
    if not (tree / "bus" / "__init__.py").is_file():
        raise SystemExit(
            f"bench.compare: {tree} is not a citybus checkout (no bus/__init__.py): give its root"
        )
    directory, skip = work / label, shutil.ignore_patterns("__pycache__")
    description = describe(tree)
    shutil.copytree(ROOT / "bench", directory / "bench", ignore=skip)
    # A snapshot of the checkout's packages: a merge into it during the run must not change one side.
    for package in sorted(tree.iterdir()):
        if (package / "__init__.py").is_file() and package.name not in ("bench", "tests"):
            shutil.copytree(package, directory / "library" / package.name, ignore=skip)
    return Tree(label, tree.resolve(), directory, description)


def run_case(tree: Tree, case: str, smoke: bool, work: Path, run: int) -> _CaseResult:
    """Run one case against one checkout in a child process; its figures."""
    stem = work / f"{run:03d}-{tree.label}-{case}"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--only",
        case,
        "--output",
        f"{stem}.md",
        "--json",
        f"{stem}.json",
    ]
    if smoke:
        command.append("--smoke")
    with open(f"{stem}.stderr", "wb") as err:
        try:
            done = subprocess.run(
                command,
                cwd=tree.stage,
                env=tree.env(),
                stdout=err,
                stderr=err,
                timeout=RUN_LIMIT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return _CaseResult(case, case, RUN_LIMIT, f"ran over {RUN_LIMIT:.0f} s", [])
    json_path = Path(f"{stem}.json")
    if not json_path.exists():
        tail = Path(f"{stem}.stderr").read_text(errors="replace")[-1500:]
        return _CaseResult(case, case, 0.0, f"exit {done.returncode}: {tail}", [])
    [result] = msgspec.json.decode(json_path.read_bytes(), type=list[_CaseResult])
    if Path(result.library) != tree.library:  # the installed package, not the checkout, was measured
        return _CaseResult(
            case, result.title, 0.0, f"citybus was imported from {result.library}, not {tree.library}", []
        )
    return result


def compare(
    before: Tree, after: Tree, cases: Sequence[str], rounds: int, smoke: bool, work: Path
) -> tuple[dict[str, str], dict[str, dict[str, Series]], list[str]]:
    """Every case against both trees, ``rounds`` times, alternating which goes first."""
    titles: dict[str, str] = {}
    series: dict[str, dict[str, Series]] = {case: {} for case in cases}
    failures: list[str] = []
    run = 0
    for number in range(1, rounds + 1):
        order = (before, after) if number % 2 else (after, before)
        for case in cases:
            for tree in order:
                run += 1
                log(f"compare: round {number}, {case}, {tree.label}")
                result = run_case(tree, case, smoke, work, run)
                titles[case] = result.title
                if result.failed:
                    failures.append(f"round {number}, {case}, {tree.label}: {result.failed}")
                for figure in result.figures:
                    one = series[case].setdefault(figure.name, Series(figure.unit, figure.higher_is_better))
                    one.values.setdefault(tree.label, []).append(figure.value)
    return titles, series, failures


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return "–"
    middle = median(values)
    return f"{(max(values) - min(values)) / middle:.0%}" if middle else "–"


def verdict(one: Series) -> str:
    """Whether ``after`` differs from ``before`` beyond the spread of the two."""
    old, new = one.values.get("before", []), one.values.get("after", [])
    if not old or not new:
        return "not measured on both"
    if max(old) >= min(new) and max(new) >= min(old):
        return "within noise (ranges overlap)"
    better = (min(new) > max(old)) == one.higher_is_better
    return "**better**" if better else "**worse**"


def render(
    before: Tree,
    after: Tree,
    titles: dict[str, str],
    series: dict[str, dict[str, Series]],
    failures: list[str],
    *,
    rounds: int,
    smoke: bool,
    started: datetime,
    seconds: float,
) -> str:
    """The comparison, in Markdown."""
    lines = [
        "# citybus benchmarks: before and after",
        "",
        "Written by `python -m bench.compare` (see `bench/compare.py`): each case run against both checkouts "
        f"in the same run, {rounds} round(s), which side goes first alternating (before, after; after, "
        "before; ...). Each value is the case's own median of its rounds, as `python -m bench` reports it. "
        "Spread = (max - min) / median of a side's values; \"within noise\" = the two sides' ranges overlap. "
        "Figures of code that is the same on both sides (raw nats-py, FastStream) show the machine's noise.",
        "",
    ]
    if smoke:
        lines += ["**Smoke run** (`--smoke`): every case tiny; the figures mean nothing.", ""]
    info = machine()
    lines += [
        "| | |",
        "|---|---|",
        f"| before | {before.description} |",
        f"| after | {after.description} |",
        f"| date | {started:%Y-%m-%d %H:%M} UTC |",
        f"| CPU | {info['CPU']} |",
        f"| Python | {info['Python']} |",
        f"| nats-server | {info['nats-server']} |",
        f"| run | {seconds:.0f} s in all |",
        "",
        "| case | figure | before, each round | after, each round | before (median) | after (median) "
        "| change | spread before / after | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case, figures in series.items():
        for name, one in figures.items():
            old, new = one.values.get("before", []), one.values.get("after", [])
            change = f"{median(new) / median(old) - 1:+.1%}" if old and new and median(old) else "–"
            better = "higher" if one.higher_is_better else "lower"
            cells = [
                titles.get(case, case),
                f"{name} ({better} is better)",
                ", ".join(_number(value, one.unit) for value in old),
                ", ".join(_number(value, one.unit) for value in new),
                _number(median(old), one.unit) if old else "–",
                _number(median(new), one.unit) if new else "–",
                change,
                f"{_spread(old)} / {_spread(new)}",
                verdict(one),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if failures:
        lines += ["", "Failed runs:", "", *(f"- {failure}" for failure in failures)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Compare two checkouts on the chosen cases; write the table."""
    from bench.suite import CASES  # the suite imports every case; only the names are needed here

    names = [spec.name for spec in CASES]
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--before", type=Path, required=True, help="the checkout before the change (its root)"
    )
    parser.add_argument("--after", type=Path, default=ROOT, help="the checkout after it (default: this one)")
    parser.add_argument(
        "--only",
        default=",".join(BUS_CASES),
        metavar="CASE,...",
        help=f"the cases (default: the bus cases, {','.join(BUS_CASES)}; of: {', '.join(names)})",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each case per side (default 3)")
    parser.add_argument(
        "--smoke", action="store_true", help="every case tiny: check that the comparison works"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="where to write the table (default: the temp directory)"
    )
    args = parser.parse_args(argv)
    cases = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(cases) - set(names))
    if unknown:
        parser.error(f"no case named {', '.join(unknown)}; the cases are {', '.join(names)}")
    if args.rounds < 1:
        parser.error(f"--rounds must be 1 or more, not {args.rounds}")
    started, clock = datetime.now(UTC), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="citybus-compare-") as temp:
        work = Path(temp)
        before, after = stage(args.before, "before", work), stage(args.after, "after", work)
        titles, series, failures = compare(before, after, cases, args.rounds, args.smoke, work)
        report = render(
            before,
            after,
            titles,
            series,
            failures,
            rounds=args.rounds,
            smoke=args.smoke,
            started=started,
            seconds=time.perf_counter() - clock,
        )
    output: Path = args.output or Path(tempfile.gettempdir()) / "citybus-compare.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    log(f"comparison written to {output}")
    for failure in failures:
        log(f"failed: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
