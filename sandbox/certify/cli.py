"""``citybus certify ADAPTER``: the command line of :func:`sandbox.certify.certify.certify`.

Exit status: 0 when the suite passes, 1 when a check fails, 2 for a mistake in the command or
the configuration (one line saying what to fix).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shlex
from pathlib import Path
from typing import Any

from bus.cli import err, out
from bus.config import Config, config_file, load_config
from bus.errors import CityBusError
from sandbox.adapter import DRAMMEN_DAY
from sandbox.certify.certify import certify
from sandbox.certify.runs import target_of
from sandbox.certify.suite import load_suite, shipped_suites

__all__ = ["register"]


def cmd_certify(args: argparse.Namespace, config: Config) -> int:
    """Run the adapter clean and under each preset of the suite in a private sandbox, and score it."""
    if args.adapter_config is not None:
        config = load_config(args.adapter_config)
    suite = load_suite(args.suite)
    for name in args.only:
        suite.preset(name)  # a misspelt preset is refused before anything runs
    try:
        target = target_of(args.name, config)
    except CityBusError as exc:  # an unknown adapter is a mistake in the command (2), not a failed check (1)
        err(f"citybus: error: {exc}")
        return 2
    seed = suite.seed if args.seed is None else args.seed
    speed = suite.speed if args.speed is None else args.speed
    if not (math.isfinite(speed) and 0 < speed <= 1_000_000):
        err(
            f"citybus: error: --speed {speed:g} is not allowed: above 0 (certify measures on the replay's "
            "clock, which needs one) and at most 1000000"
        )
        return 2
    if not target.adapted.consumes:
        err(
            f"citybus: error: {target.adapted.adapter} consumes no contract, so the recorded city has "
            "nothing to give it: certify scores adapters that consume city data (test a source against "
            "its device or vendor API, with recorded responses of its own)"
        )
        return 2
    report_dir = args.report or Path(f"certify-{target.instance}")
    try:  # before any run: a --report that cannot be written is a mistake in the command
        (report_dir / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err(f"citybus: error: cannot create the report directory {report_dir}: {exc.strerror or exc}")
        return 2
    command = _command(args, seed, speed, args.adapter_config or config_file(getattr(args, "config", None)))
    err(
        f"certifying {target.adapted.adapter} (instance {target.instance}) with suite {suite.name} "
        f"v{suite.version}, seed {seed}, speed {speed:g}x: {len(suite.presets)} presets and a clean run"
    )
    certified = asyncio.run(
        certify(
            target,
            suite,
            recording=args.recording or DRAMMEN_DAY,
            seed=seed,
            speed=speed,
            only=args.only,
            report_dir=report_dir,
            command=command,
            progress=lambda line: err(f"  {line}"),
        )
    )
    report = certified.report
    for preset, why in certified.skipped.items():
        out(f"skipped {preset}: {why}")
    failed = [c for c in report.checks if c.verdict == "fail"]
    for check in failed:
        out(f"FAIL {check.check} ({check.run}): {check.summary}")
    for name, path in (
        ("report", certified.files.html),
        ("json", certified.files.json),
        ("markdown", certified.files.markdown),
    ):
        out(f"{name}: {path}")
    passed = sum(1 for c in report.checks if c.verdict == "pass")
    out(
        f"{report.verdict.upper()}: {target.adapted.adapter} against suite {suite.name} v{suite.version}: "
        f"{passed} checks passed, {len(failed)} failed; reproduce with: {command}"
    )
    return 0 if report.verdict != "fail" else 1


def _command(args: argparse.Namespace, seed: int, speed: float, configured: Path | None) -> str:
    """The command that reproduces this certification exactly (seed, speed and the configuration
    file it read spelt out)."""
    words = [
        "citybus",
        "certify",
        args.name,
        "--suite",
        args.suite,
        "--seed",
        str(seed),
        "--speed",
        f"{speed:g}",
    ]
    if configured is not None:
        words += ["--config", str(configured.resolve())]
    if args.recording is not None:
        words += ["--recording", str(args.recording)]
    for preset in args.only:
        words += ["--only", preset]
    return shlex.join(words)


def register(subparsers: Any) -> None:
    """Add ``certify`` to the ``citybus`` command."""
    parser = subparsers.add_parser(
        "certify",
        help="run an adapter against the recorded city, clean and under faults, and score it",
        description="Run ADAPTER in a private sandbox (its own nats-server; a running citybus up is not "
        "touched) against the recorded Drammen day, once clean and once per fault preset of the suite, "
        "and score it: contract fit, access, crashes and recovery, amplification, liveness, resources, "
        "latency and, for an adapter that declares detections, precision and recall. docs/certify.md.",
    )
    parser.add_argument("name", metavar="ADAPTER", help="an installed adapter or a configured instance")
    parser.add_argument(
        "--config", dest="adapter_config", type=Path, help="citybus.toml with the instance's section"
    )
    parser.add_argument(
        "--suite",
        default="default",
        metavar="NAME",
        help=f"a shipped suite ({', '.join(shipped_suites())}) or a suite file (default: default)",
    )
    parser.add_argument("--seed", type=int, help="seed of the fault plans (default: the suite's)")
    parser.add_argument("--speed", type=float, help="replay speed, x real time (default: the suite's)")
    parser.add_argument(
        "--report", type=Path, metavar="DIR", help="where to write the report (default: ./certify-ADAPTER)"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="PRESET", help="run only this preset (repeatable)"
    )
    parser.add_argument(
        "--recording",
        type=Path,
        metavar="FILE",
        help="an MCAP recording to replay (default: the Drammen day)",
    )
    parser.set_defaults(func=cmd_certify)
