"""The sandbox's subcommands of ``citybus``: ``record``, ``recording info``, ``replay`` and ``sandbox``.

``record`` writes live subjects to an MCAP file; ``recording info`` says what a file holds;
``replay`` plays files onto the bus (the ``sandbox-replay`` adapter, run on its own); ``sandbox``
steers a running replay (``status``, ``pause``, ``resume``, ``seek``, ``speed``), checks a fault
plan against recordings (``sandbox check-faults``, for a company's CI) and builds the shipped
Drammen day (``sandbox build``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from adapters.cli import find_instance, run_instance
from adapters.instances import parse_instance
from adapters.join import add_join_options, run_joined
from bus import Bus, Metrics
from bus.cli import add_login_options, check_subscriptions, err, login, out
from bus.config import Config
from bus.errors import CityBusError, RequestRefusedError
from bus.logs import configure_logging
from sandbox.access import COMMAND_LINE_INSTANCE
from sandbox.adapter import DRAMMEN_DAY, SandboxReplay
from sandbox.contents import SubjectSummary, read_contents
from sandbox.control import SeekRequest, SpeedRequest, control_request
from sandbox.faults import FaultPlan, Finding, ReplayScope, check_plan
from sandbox.recorder import RecordReport, record
from sandbox.replay import ReplayStatus

__all__ = ["register"]


def cmd_record(args: argparse.Namespace, config: Config) -> int:
    """Record live subjects into an MCAP file until Ctrl-C, --duration or --count."""
    who = login(args, config, default="internal")

    async def main() -> int:
        bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "warning"))
        await who.connect(bus, config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()
        report = RecordReport()
        task = asyncio.create_task(
            record(
                bus,
                args.patterns,
                args.output,
                stop=stop,
                duration=args.duration,
                limit=args.count,
                compression=args.compression,
                ready=ready,
                pseudonymise=args.pseudonymise,
                report=report,
            )
        )
        await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
        try:  # a personal subject is readable only by a user that declares its contract
            check_subscriptions(bus, args.patterns, who.user)
        except CityBusError:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            await bus.close()
            raise
        if not task.done():
            err(f"recording {', '.join(args.patterns)} into {args.output} (Ctrl-C to stop)")
        try:
            count = await task
        except ValueError as exc:
            raise CityBusError(str(exc)) from None
        finally:
            await bus.close()
        personal = f", {report.pseudonymised} pseudonymised" if args.pseudonymise else ""
        personal += f", {report.sealed} personal sealed" if report.sealed else ""
        left_out = ", ".join(f"{n} {why}" for why, n in sorted(report.left_out.items()))
        err(
            f"recorded {count} messages into {args.output}{personal}"
            + (f"; left out {left_out}" if left_out else "")
        )
        return 0

    return asyncio.run(main())


def cmd_info(args: argparse.Namespace, config: Config) -> int:
    """Say what a recording holds."""
    info, subjects = read_contents(args.file)
    entities: dict[str, list[SubjectSummary]] = {}
    for summary in subjects:
        entities.setdefault(summary.type or "raw", []).append(summary)
    if args.json:
        document = info.as_dict()
        document["by_subject"] = [s.as_dict() for s in subjects]
        document["entities"] = {
            kind: [{k: v for k, v in s.as_dict().items() if k != "type"} for s in rows]
            for kind, rows in sorted(entities.items())
        }
        out(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    out(f"{info.path}{'' if info.complete else '  (unfinished: read up to its last complete chunk)'}")
    span = f"{info.start.isoformat()} .. {info.end.isoformat()}" if info.start and info.end else "-"
    out(f"  messages  {info.messages} on {info.subjects} subjects ({info.channels} channels)")
    out(f"  time      {span}  ({info.duration / 3600:.2f} h)")
    out("  contracts")
    for name, count in sorted(info.per_type.items()):
        out(f"    {count:>8}  {name}")
    out("  entities (messages, first .. last)")
    for kind, rows in sorted(entities.items()):
        out(f"    {kind}: {len(rows)}")
        for row in rows:
            span = f"{row.first:%Y-%m-%dT%H:%M:%SZ} .. {row.last:%Y-%m-%dT%H:%M:%SZ}"
            name = row.entity if row.type else row.subject
            out(f"      {row.messages:>6}  {name:<40} {span}")
    out("  provenance")
    for name, count in sorted(info.provenance.items()):
        out(f"    {count:>8}  {name}")
    for key, value in sorted(info.metadata.items()):
        out(f"  {key}: {value}")
    return 0


def cmd_replay(args: argparse.Namespace, config: Config) -> int:
    """Replay recordings onto the running citybus (or --nats URL)."""
    table: dict[str, Any] = {
        "files": [str(f) for f in args.files] or [str(DRAMMEN_DAY)],
        "speed": 0.0 if args.fast else args.speed,
        "loop": args.loop,
        "start": args.start,
        "include": args.include,
        "exclude": args.exclude,
        "shift_to_now": not args.no_shift,
    }
    if args.duration is not None:
        table["duration"] = args.duration  # a number: the Config Struct wants a float, not its text
    for key in ("faults", "truth"):  # paths: the Config Struct wants their text
        if getattr(args, key) is not None:
            table[key] = str(getattr(args, key))
    instance = parse_instance(args.name, SandboxReplay, table)
    return run_instance(instance, config, args)


def cmd_control(args: argparse.Namespace, config: Config) -> int:
    """Ask a running replay to do something, and print its status."""
    who = login(args, config, default="operator")
    request: SeekRequest | SpeedRequest | None = None
    if args.verb == "seek":
        request = SeekRequest(position=args.value)
    elif args.verb == "speed":
        request = SpeedRequest(speed=args.value)

    async def main() -> ReplayStatus:
        # Errors only: a refusal is the command's own one-line answer, not a warning besides it.
        bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "error"))
        await who.connect(bus, config)
        try:
            return await control_request(bus, args.instance, args.verb, request)
        except RequestRefusedError as exc:
            raise CityBusError(f"the replay refused: {exc.description}") from None
        finally:
            await bus.close()

    status = asyncio.run(main())
    if args.json:
        out(json.dumps(msgspec.to_builtins(status), indent=2))
    else:
        out(
            f"{status.instance}: {status.state} at {status.position_seconds:.0f} s of "
            f"{status.duration_seconds:.0f} s ({status.progress:.1%}), speed {status.speed:g}, "
            f"loop {status.loop}, {status.messages} messages, clock {_time(status.clock)}, "
            f"lag {status.lag_seconds * 1000:.1f} ms" + (f", faults {status.faults}" if status.faults else "")
        )
    return 0


def cmd_join(args: argparse.Namespace, config: Config) -> int:
    """Run an adapter instance in the running sandbox, as a user of its own, until Ctrl-C."""
    return run_joined(find_instance(args.instance, config), config, clock=args.clock)


def _time(moment: datetime | None) -> str:
    """The replay clock as the status shows it (as its JSON has it: RFC 3339, ``Z`` for UTC)."""
    return "-" if moment is None else msgspec.json.encode(moment).decode().strip('"')


def cmd_check_faults(args: argparse.Namespace, config: Config) -> int:
    """Check a fault plan against the recordings it is for: 1 when a fault never fires (or, with
    ``--strict``, when there is a warning too), else 0."""
    files = [str(f) for f in args.recording] or [str(DRAMMEN_DAY)]
    plan = FaultPlan.load(args.plan)
    scope = ReplayScope.of(
        files,
        include=args.include,
        exclude=args.exclude,
        start=args.start,
        duration=args.duration,
    )
    findings = check_plan(plan, scope, origin=f"fault plan {args.plan}")
    errors = sum(f.level == "error" for f in findings)
    if args.json:
        out(json.dumps([_finding(f) for f in findings], indent=2))
    else:
        for finding in findings:
            out(f"{finding.level}: {finding.text}")
        warnings = len(findings) - errors
        counted = [_count(len(plan.faults), "fault"), _count(errors, "error"), _count(warnings, "warning")]
        out(f"fault plan {args.plan}: {', '.join(counted)} against {', '.join(files)}")
    return 1 if errors or (args.strict and findings) else 0


def _count(n: int, noun: str) -> str:
    return f"{n or 'no'} {noun}{'' if n == 1 else 's'}"


def _finding(finding: Finding) -> dict[str, Any]:
    """A finding as JSON."""
    return {
        "level": finding.level,
        "faults": list(finding.faults),
        "key": finding.key,
        "subjects": list(finding.subjects),
        "window": None if finding.window is None else list(finding.window),
        "text": finding.text,
    }


def cmd_build(args: argparse.Namespace, config: Config) -> int:
    """Build the recorded Drammen day from the real data and generated inputs."""
    from sandbox.drammen.build import build_day  # the builder runs every source adapter: load it only here

    report = build_day(args.output, seed=args.seed)
    out(f"wrote {args.output} and, beside it, {report.personal_path.name} (its synthetic volunteers)")
    out(str(report))
    return 0


def register(subparsers: Any) -> None:
    """Add ``record``, ``recording``, ``replay`` and ``sandbox`` to the ``citybus`` command."""
    rec = subparsers.add_parser("record", help="record live subjects into an MCAP file")
    rec.add_argument("patterns", nargs="+", metavar="PATTERN", help="subject patterns, e.g. 'city.public.>'")
    rec.add_argument("-o", "--output", type=Path, required=True, help="the MCAP file to write")
    rec.add_argument("--duration", type=float, help="stop after this many seconds")
    rec.add_argument("--count", "-n", type=int, help="stop after this many messages")
    rec.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd")
    rec.add_argument(
        "--pseudonymise",
        action="store_true",
        help="record personal events with every person replaced by a generated stand-in (for a pilot; "
        "log in as a user that declares those contracts, --user). Default: sealed, as they travelled",
    )
    add_login_options(rec, default="internal")
    rec.set_defaults(func=cmd_record)

    recording = subparsers.add_parser("recording", help="look inside a recording")
    rsub = recording.add_subparsers(dest="recording_command", metavar="COMMAND", required=True)
    info = rsub.add_parser(
        "info", help="duration, subjects, messages per contract, each contract's entities, provenance"
    )
    info.add_argument("file", type=Path, metavar="FILE")
    info.add_argument("--json", action="store_true", help="as JSON")
    info.set_defaults(func=cmd_info)

    replay = subparsers.add_parser("replay", help="replay recordings onto the bus")
    replay.add_argument("files", nargs="*", type=Path, metavar="FILE", help="default: the Drammen day")
    replay.add_argument("--speed", type=float, default=1.0, help="× real time (default 1)")
    replay.add_argument("--fast", action="store_true", help="as fast as possible")
    replay.add_argument("--loop", action="store_true", help="start again at the end, for ever")
    replay.add_argument("--start", type=float, default=0.0, help="seconds into the recording")
    replay.add_argument("--duration", type=float, help="seconds of recording to replay")
    replay.add_argument(
        "--include", action="append", default=[], metavar="PATTERN", help="only these subjects"
    )
    replay.add_argument(
        "--exclude", action="append", default=[], metavar="PATTERN", help="not these subjects"
    )
    replay.add_argument(
        "--no-shift", action="store_true", help="keep the recorded times (do not move to now)"
    )
    replay.add_argument("--faults", type=Path, metavar="PLAN", help="a fault plan (TOML)")
    replay.add_argument("--truth", type=Path, metavar="FILE", help="write injected faults here (JSON lines)")
    replay.add_argument(
        "--name",
        default=COMMAND_LINE_INSTANCE,
        help="instance name, for control requests and its user (default replay, a user of SANDBOX that "
        "citybus up issues)",
    )
    add_login_options(replay, default="the instance (--name)")
    replay.set_defaults(func=cmd_replay)

    sandbox = subparsers.add_parser(
        "sandbox", help="steer a running replay; check a fault plan; build the Drammen day"
    )
    ssub = sandbox.add_subparsers(dest="sandbox_command", metavar="COMMAND", required=True)
    for verb, text in (
        ("status", "what the replay is doing"),
        ("pause", "stop the replay clock"),
        ("resume", "start it again"),
        ("seek", "jump to SECONDS from the start"),
        ("speed", "set the speed factor (0: as fast as possible)"),
    ):
        command = ssub.add_parser(verb, help=text)
        if verb in ("seek", "speed"):
            command.add_argument("value", type=float, metavar="SECONDS" if verb == "seek" else "FACTOR")
        command.add_argument("--instance", default="sandbox", help="the replay's instance (default sandbox)")
        command.add_argument("--json", action="store_true", help="as JSON")
        add_login_options(command, default="operator")
        command.set_defaults(func=cmd_control, verb=verb)
    check = ssub.add_parser(
        "check-faults",
        help="check a fault plan against recordings: faults that never fire (errors), faults that hide "
        "each other (warnings)",
    )
    check.add_argument("plan", type=Path, metavar="PLAN", help="the fault plan (TOML)")
    check.add_argument(
        "--recording",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a recording the plan is for (repeat for several; default: the Drammen day)",
    )
    check.add_argument(
        "--include", action="append", default=[], metavar="PATTERN", help="only these subjects, as replay's"
    )
    check.add_argument(
        "--exclude", action="append", default=[], metavar="PATTERN", help="not these subjects, as replay's"
    )
    check.add_argument("--start", type=float, default=0.0, help="seconds into the recording, as replay's")
    check.add_argument("--duration", type=float, help="seconds of recording replayed, as replay's")
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    check.add_argument("--json", action="store_true", help="the findings as JSON")
    check.set_defaults(func=cmd_check_faults)
    join = ssub.add_parser(
        "join", help="run your adapter in the running sandbox, as a user of its own, on the replay's clock"
    )
    join.add_argument(
        "instance", metavar="INSTANCE", help="an installed adapter, or an [adapters.NAME] section (--config)"
    )
    add_join_options(join)
    join.set_defaults(func=cmd_join)
    build = ssub.add_parser("build", help="build the recorded Drammen day (real trains, generated sensors)")
    build.add_argument(
        "-o", "--output", type=Path, default=DRAMMEN_DAY, help="where (default: the shipped file)"
    )
    build.add_argument("--seed", type=int, default=20180828, help="the generators' seed")
    build.set_defaults(func=cmd_build)
