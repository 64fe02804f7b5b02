"""The adapters' subcommands of ``citybus``: ``adapters list``, ``adapters run`` and ``adapter new``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from adapters.discovery import discover
from adapters.instances import Instance, default_replay, instances_from_config, parse_instance
from adapters.join import add_join_options, run_joined
from adapters.runtime import default_sections
from adapters.scaffold import KINDS, scaffold
from adapters.supervisor import Supervisor
from bus import Bus, Metrics
from bus.cli import add_login_options, err, login, out
from bus.config import Config, load_config
from bus.errors import CityBusError, ConfigError
from bus.logs import configure_logging

__all__ = ["find_instance", "register", "run_instance"]


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    """List the installed adapters, what each consumes and produces, and their classifications."""
    found = discover()
    adapters = sorted(found.adapters.items())
    if args.json:
        listing = [
            {
                "name": name,
                "kind": cls.kind(),
                "consumes": [c.__contract__.name for c in cls.consumes],
                "produces": [c.__contract__.name for c in cls.produces],
                "classification": sorted(c.value for c in cls.classifications()),
                "declassifier": cls.declassifier,
                "distribution": found.distributions[name],
                "summary": cls.summary(),
            }
            for name, cls in adapters
        ]
        document = {
            "adapters": listing,
            "problems": [str(p) for p in found.problems],
            "warnings": [str(u) for u in found.undeclared],
        }
        out(json.dumps(document, indent=2))
        return 0
    table = [("ADAPTER", "KIND", "CONSUMES", "PRODUCES", "CLASS", "FROM")]
    for name, cls in adapters:
        table.append(
            (
                name,
                (cls.kind() if cls.consumes or cls.produces else "per config")
                + (" (declassifier)" if cls.declassifier else ""),
                ", ".join(c.__contract__.name for c in cls.consumes) or ("-" if cls.produces else "(config)"),
                ", ".join(c.__contract__.name for c in cls.produces) or ("-" if cls.consumes else "(config)"),
                ", ".join(sorted(c.value for c in cls.classifications())) or "-",
                found.distributions[name],
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for line in table:
        out("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    for name, cls in adapters:
        if cls.summary():
            out(f"\n{name}: {cls.summary()}")
    for problem in [*found.problems, *found.undeclared]:
        err(f"citybus: warning: {problem}")
    return 0


def find_instance(name: str, config: Config) -> Instance:
    """The instance ``NAME`` means: a configured section (or the one instance of adapter ``NAME``),
    else the installed adapter ``NAME`` with its defaults; a one-line error names what is installed."""
    found = discover()
    for problem in found.problems:
        err(f"citybus: warning: {problem}")
    # An instance run on its own is often one that `citybus up` leaves out (enabled = false).
    sections = {
        k: {**v, "enabled": True} for k, v in config.adapters.items() if k == name or v.get("adapter") == name
    }
    whole = config.adapters or default_sections(found.adapters)
    configured = instances_from_config(sections, found.adapters, whole=whole)
    if len(configured) > 1:
        names = ", ".join(i.name for i in configured)
        raise ConfigError(f"several instances of adapter {name} are configured ({names}): name one of them")
    if configured:
        instance = configured[0]
    elif name in found.adapters:
        replay = default_replay(whole, found.adapters)
        instance = parse_instance(name, found.adapters[name], {}, replay=replay)
    else:
        known = ", ".join(sorted(found.adapters)) or "none"
        raise CityBusError(f"no adapter or configured instance named {name!r}; installed adapters: {known}")
    for undeclared in found.undeclared_of({instance.adapter.name}):
        err(f"citybus: warning: {undeclared}")
    return instance


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """Run one adapter instance against the running citybus (or --nats URL) until Ctrl-C."""
    if args.adapter_config is not None:
        config = load_config(args.adapter_config)
    if args.sandbox:
        return run_joined(find_instance(args.name, config), config, clock=args.clock)
    return run_instance(find_instance(args.name, config), config, args)


def run_instance(instance: Instance, config: Config, args: argparse.Namespace) -> int:
    """Run one adapter instance, supervised, against ``--nats`` (default: the running citybus up)
    until Ctrl-C — or until it ends on its own (a replay that does not loop). Under access control
    it logs in as its own user (``--user``/``--nkey`` choose another)."""
    who = login(args, config, default=instance.name, account=instance.account)
    log = configure_logging(config.log.format, config.log.level)

    async def main() -> None:
        bus = Bus(
            metrics=Metrics(), logger=log, name=f"citybus-{instance.name}", encoding=config.bus.encoding
        )
        await who.connect(bus, config, reconnect_wait=config.nats.reconnect_wait)
        supervisor = Supervisor([instance], bus=bus, logger=log, consumer_settings=config.consumer)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, supervisor.stop)
        err(f"running adapter {instance.adapter.name} as instance {instance.name} (Ctrl-C to stop)")
        try:
            await supervisor.run()
        finally:
            await bus.drain()

    asyncio.run(main())
    return 0


def cmd_new(args: argparse.Namespace, config: Config) -> int:
    """Scaffold a separate, pip-installable adapter package of a kind, and say what to do next."""
    kind = args.kind
    target = scaffold(
        args.name, Path(args.directory) if args.directory else None, kind=kind, company=args.company or ""
    )
    out(f"created {target}: a {kind} adapter named {args.name}")
    if kind == "service":
        module = next(target.glob("src/*/contracts.py"))
        out(f"its own contract: {args.company or args.name}.advice, declared in {module}")
    steps = [
        f"pip install -e '{target}[test]'    (into the environment where citybus is installed)",
        f"citybus adapters list    (shows {args.name}, a {kind})",
        f"cd {target} && pytest && ruff check . && mypy",
        f"with citybus up running: citybus sandbox join {args.name}    (a user of its own in the running "
        "sandbox, on the replay's clock; Ctrl-C leaves)",
        "to run it in citybus up itself instead, put this in citybus.toml:",
    ]
    if kind != "source":  # certify scores what an adapter does with the city's data: a source takes none
        steps.insert(
            -1,
            f"citybus certify {args.name} --suite quick    (scored against the recorded city with faults, "
            "in a private sandbox of its own; the default suite, without --suite, is what a city runs)",
        )
    out("next:")
    for number, step in enumerate(steps, 1):
        out(f"  {number}. {step}")
    for line in (
        "[adapters.sandbox]",
        'adapter = "sandbox-replay"',
        f"[adapters.{args.name}]",
        'account = "sandbox"',
    ):
        out(f"       {line}")
    out(f"  {len(steps) + 1}. step by step: docs/tutorial.md in citybus; what ctx offers: docs/context.md")
    return 0


def register(subparsers: Any) -> None:
    """Add ``adapters`` and ``adapter`` to the ``citybus`` command."""
    adapters = subparsers.add_parser("adapters", help="list and run the installed adapters")
    sub = adapters.add_subparsers(dest="adapters_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="installed adapters, what they consume and produce")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(func=cmd_list)
    run = sub.add_parser("run", help="run one adapter instance against the running citybus")
    run.add_argument("name", metavar="NAME", help="a configured instance or an adapter name")
    run.add_argument(
        "--config", dest="adapter_config", type=Path, help="citybus.toml with the instance's section"
    )
    add_login_options(run, default="the instance's own")
    run.add_argument(
        "--sandbox",
        action="store_true",
        help="join the running sandbox as a user of its own, on its replay's clock (= citybus sandbox join)",
    )
    add_join_options(run)
    run.set_defaults(func=cmd_run)

    adapter = subparsers.add_parser("adapter", help="create a new adapter package")
    asub = adapter.add_subparsers(dest="adapter_command", metavar="COMMAND", required=True)
    new = asub.add_parser("new", help="scaffold a pip-installable adapter package with a test")
    new.add_argument("name", metavar="NAME", help="the adapter's name, kebab case (e.g. 'harbour-sensors')")
    new.add_argument("--directory", "-d", help="where to create it (default: ./citybus-NAME)")
    new.add_argument(
        "--kind",
        choices=KINDS,
        default="source",
        help="source: device data onto the bus; service: contracts in, its own contract out; "
        "sink: contracts off the bus into files (default: source)",
    )
    new.add_argument(
        "--company",
        metavar="PREFIX",
        help="a service's contract domain, your company's prefix, kebab case (default: NAME)",
    )
    new.set_defaults(func=cmd_new)
