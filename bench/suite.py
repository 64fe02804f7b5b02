"""``python -m bench``: run the cases, one after the other, and write the report.

The cases run in the order of :data:`CASES`, each in the same temporary directory, each bounded (a
step that runs over :data:`~bench.common.CASE_LIMIT` fails its case). A case that fails is
reported with the reason and the run goes on with the next one; the command then exits 1, so CI
notices. A missed target is a figure, not a failure: the command exits 0.

A full run writes ``docs/benchmarks.md``; a smoke run, or a run of some cases only, writes to the
temp directory unless ``--output`` says where, so that the report in the repository always holds
one full run, every figure measured side by side with what it is compared to.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench import (
    bus,
    certify,
    consume,
    failover,
    gateway,
    journey,
    memory,
    personal,
    replay,
    scaleout,
    startup,
    statistics,
)
from bench.common import ROOT, Options, Spec, log
from bench.report import Case, machine, render
from bench.stats import LIBRARY
from bus.logs import configure_logging

__all__ = ["CASES", "main"]

CASES: Final[list[Spec]] = [
    *bus.CASES,
    *consume.CASES,
    *replay.CASES,
    *memory.CASES,
    *startup.CASES,
    *certify.CASES,
    *gateway.CASES,
    *journey.CASES,
    *personal.CASES,
    *statistics.CASES,
    *scaleout.CASES,
    *failover.CASES,
]


def run_case(spec: Spec, options: Options) -> Case:
    """Run one case; a failure becomes a case that says why."""
    started = time.perf_counter()
    try:
        case = spec.run(options)
    except Exception as exc:  # the report says which case failed and why; the others still run
        log(f"{spec.name}: failed: {exc}")
        case = Case(spec.title, "", failed=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    case.seconds = time.perf_counter() - started
    log(f"{spec.name}: done in {case.seconds:.0f} s")
    return case


def figures(specs: Sequence[Spec], cases: Sequence[Case]) -> list[dict[str, object]]:
    """Each case's headline figures, as ``--json`` writes them, and where citybus was imported from."""
    return [
        {
            "name": spec.name,
            "title": case.title,
            "seconds": case.seconds,
            "failed": case.failed,
            "library": str(LIBRARY),
            "figures": [dataclasses.asdict(figure) for figure in case.figures],
        }
        for spec, case in zip(specs, cases, strict=True)
    ]


def main(
    argv: Sequence[str] | None = None, *, prog: str = "python -m bench", only: Sequence[str] = ()
) -> int:
    """Run the cases (all, those of ``--only``, or ``only``) and write the report."""
    names = [spec.name for spec in CASES]
    parser = argparse.ArgumentParser(prog=prog, description="citybus's benchmarks: " + __doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every case tiny: check that each completes")
    parser.add_argument(
        "--only",
        default=",".join(only),
        metavar="CASE,...",
        help=f"run only these cases (of: {', '.join(names)})",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--size-mb", type=float, default=None, help="size of the peak-RSS case's recording (default 1024)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the report (default: docs/benchmarks.md for a full run of every case; "
        "otherwise a file in the temp directory, so that it never replaces the real figures)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write each case's headline figures here, as JSON (what bench.compare reads)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for spec in CASES:
            sys.stdout.write(f"{spec.name:20} {spec.title}\n")
        return 0
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"no case named {', '.join(unknown)}; the cases are {', '.join(names)}")
    if args.size_mb is not None and args.size_mb <= 0:
        parser.error(f"--size-mb must be more than 0, not {args.size_mb:g}")
    specs = [spec for spec in CASES if not chosen or spec.name in chosen]
    partial = len(specs) < len(CASES)
    configure_logging("console", "warning")
    started, clock, ran_on = datetime.now(UTC), time.perf_counter(), machine()
    with tempfile.TemporaryDirectory(prefix="citybus-bench-") as temp:
        options = Options(smoke=args.smoke, work=Path(temp), size_mb=args.size_mb)
        cases = [run_case(spec, options) for spec in specs]
    settings = "smoke sizes" if args.smoke else "full sizes"
    if args.size_mb is not None:
        settings += f", large recording {args.size_mb:g} MB"
    report = render(
        cases,
        smoke=args.smoke,
        started=started,
        seconds=time.perf_counter() - clock,
        partial=partial,
        settings=settings,
        ran_on=ran_on,
    )
    output: Path = args.output or (
        Path(tempfile.gettempdir()) / f"citybus-benchmarks{'-smoke' if args.smoke else '-partial'}.md"
        if args.smoke or partial
        else ROOT / "docs" / "benchmarks.md"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(figures(specs, cases), indent=1), encoding="utf-8")
    failed = [case.title for case in cases if case.failed]
    log(f"report written to {output} in {time.perf_counter() - clock:.0f} s")
    if failed:
        log(f"{len(failed)} case(s) failed: {'; '.join(failed)}")
    return 1 if failed else 0
