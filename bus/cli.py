"""The ``citybus`` command: the one place that sees every package.

Its entry point lives here in ``bus``; other packages add subcommands through the entry-point
group ``citybus.commands`` (each entry point names ``register(subparsers)``), so ``bus`` never
imports ``adapters`` or ``sandbox``. A user mistake — a wrong config value, a dead server, an
invalid message — ends with one line saying what to fix and a non-zero exit, never a traceback.

This module is the parser and the dispatch (and ``bus.cli:main``, the ``citybus`` script); the
commands ``bus`` ships are :mod:`bus.commands`, and what every command shares (output, login
options) is :mod:`bus.console`, re-exported here for the packages that add commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import msgspec

from bus.commands import (
    cmd_contracts_asyncapi,
    cmd_contracts_check,
    cmd_contracts_list,
    cmd_contracts_provision,
    cmd_contracts_schema,
    cmd_contracts_snapshot,
    cmd_entities,
    cmd_publish,
    cmd_status,
    cmd_tail,
    cmd_up,
)
from bus.config import Config, load_config
from bus.console import add_login_options, check_subscriptions, err, login, out
from bus.envelope import Provenance
from bus.errors import CityBusError, ConfigError
from contracts import UnknownContractError, load_installed_contracts

__all__ = ["add_login_options", "check_subscriptions", "err", "login", "main", "out"]

COMMANDS_GROUP = "citybus.commands"

Command = Callable[[argparse.Namespace, Config], int]


# -- the parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full ``citybus`` parser, including subcommands from installed packages."""
    parser = argparse.ArgumentParser(
        prog="citybus",
        description="The message bus of the Drammen smart-city testbed.",
    )
    parser.add_argument("--config", "-c", type=Path, help="citybus.toml to read (default: ./citybus.toml)")
    parser.add_argument("--log-format", choices=["auto", "json", "console"], help="log format")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = sub.add_parser("up", help="run the embedded NATS server, streams, adapters and metrics")
    up.add_argument("--nats", metavar="URL", help="use this NATS server instead of the embedded one")
    up.add_argument("--data-dir", metavar="DIR", help="the embedded server's data directory")
    up.add_argument(
        "--cluster",
        type=int,
        metavar="N",
        help="run the embedded broker as a local cluster of N nodes (3 or 5) with replicated streams",
    )
    up.add_argument("--ops-port", type=int, metavar="PORT", help="port of /metrics, /healthz (0 = free)")
    up.set_defaults(func=cmd_up)

    tail = sub.add_parser("tail", help="print live messages on matching subjects")
    tail.add_argument("patterns", nargs="+", metavar="PATTERN", help="subject pattern or contract name")
    add_login_options(tail, default="internal")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("--count", "-n", type=int, help="stop after this many messages")
    tail.set_defaults(func=cmd_tail)

    publish = sub.add_parser("publish", help="validate and publish one message")
    publish.add_argument(
        "contract", metavar="CONTRACT", help="contract name, e.g. environment.beach-observation"
    )
    publish.add_argument("json", metavar="JSON", help="the message as JSON, @FILE, or - for standard input")
    add_login_options(publish, default=None)
    publish.add_argument("--provenance", choices=[p.value for p in Provenance], help="default: manual")
    publish.add_argument("--source", help="CloudEvents source (default: [bus] source)")
    publish.add_argument("--core", action="store_true", help="publish without waiting for JetStream")
    publish.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for JetStream")
    publish.set_defaults(func=cmd_publish)

    entities = sub.add_parser("entities", help="each contract's entities: location, rate, last value")
    entities.add_argument("contract", nargs="?", metavar="CONTRACT", help="only this contract's")
    entities.add_argument("--json", action="store_true", help="one JSON document")
    add_login_options(entities, default="operator")
    entities.set_defaults(func=cmd_entities)

    status = sub.add_parser("status", help="show a running citybus: health, adapters, rates, dead letters")
    status.add_argument("--ops", metavar="URL", help="ops endpoint (default: the running citybus up)")
    status.add_argument("--json", action="store_true", help="one JSON object, for machines")
    status.add_argument("--once", action="store_true", help="scrape once and show totals, not rates")
    status.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="time between the two scrapes"
    )
    status.set_defaults(func=cmd_status)

    contracts = sub.add_parser("contracts", help="list, export and check the message contracts")
    csub = contracts.add_subparsers(dest="contracts_command", metavar="COMMAND", required=True)
    package_help = "only the contracts of this installed package (citybus: the city's own)"
    listing = csub.add_parser("list", help="the contracts with version, class, subject and description")
    listing.add_argument("--package", metavar="PACKAGE", help=package_help)
    listing.set_defaults(func=cmd_contracts_list)
    schema = csub.add_parser("schema", help="one contract's JSON Schema")
    schema.add_argument("name", metavar="NAME")
    schema.set_defaults(func=cmd_contracts_schema)
    asyncapi = csub.add_parser("asyncapi", help="the AsyncAPI 3.0 document of all subjects")
    asyncapi.add_argument("--package", metavar="PACKAGE", help=package_help)
    asyncapi.set_defaults(func=cmd_contracts_asyncapi)
    chk = csub.add_parser("check", help="fail on a breaking change that kept its version")
    chk.add_argument(
        "--package", metavar="PACKAGE", help="check this installed package's contracts (with --snapshot)"
    )
    chk.add_argument("--snapshot", type=Path, help="snapshot to compare with (default: the shipped one)")
    chk.set_defaults(func=cmd_contracts_check)
    snap = csub.add_parser("snapshot", help="write the snapshot of the current contracts")
    snap.add_argument(
        "--package", metavar="PACKAGE", help="this installed package's contracts (default: the city's)"
    )
    snap.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    snap.set_defaults(func=cmd_contracts_snapshot)
    provision = csub.add_parser(
        "provision", help="create or update the streams of every installed contract (after installing one)"
    )
    add_login_options(provision, default="provisioner")
    provision.add_argument(
        "--allow-lower",
        action="store_true",
        help="apply configured replicas or limits lower than a stream's (drops copies or data); "
        "without it the stream keeps its larger values and a warning says so",
    )
    provision.set_defaults(func=cmd_contracts_provision)

    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
            register(sub)
        except Exception as exc:  # a broken plug-in must not take the whole CLI down
            err(f"citybus: warning: command plug-in {ep.name!r} ({ep.value}) failed to load: {exc}")
    return parser


def _configure(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    log = config.log
    if args.log_format or args.log_level:
        log = msgspec.structs.replace(
            log, format=args.log_format or log.format, level=args.log_level or log.level
        )
    nats, server, ops = config.nats, config.server, config.ops
    if getattr(args, "nats", None) and args.command == "up":
        nats = msgspec.structs.replace(nats, url=args.nats)
    if getattr(args, "cluster", None) is not None:
        if args.nats:
            raise ConfigError(
                "--cluster starts a local cluster of nats-servers; with --nats, citybus uses yours"
            )
        if not 1 <= args.cluster <= 5:
            raise ConfigError(
                f"--cluster {args.cluster}: give 3 or 5 nodes (1 is a single server; at most 5)"
            )
        server = msgspec.structs.replace(server, cluster_size=args.cluster)
    if getattr(args, "data_dir", None):
        server = msgspec.structs.replace(server, data_dir=args.data_dir)
    if getattr(args, "ops_port", None) is not None:
        if not 0 <= args.ops_port <= 65535:
            raise ConfigError(f"--ops-port {args.ops_port}: a port is 0..65535 (0 picks a free one)")
        ops = msgspec.structs.replace(ops, port=args.ops_port)
    return msgspec.structs.replace(config, log=log, nats=nats, server=server, ops=ops)


_GLOBAL_OPTIONS = ("--config", "-c", "--log-format", "--log-level")


def _hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move the global options to the front, so ``citybus up --log-format console`` works too.

    A subcommand's own ``--config`` (``adapters run NAME --config FILE``) means the same file, so
    it is hoisted as well.
    """
    front: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS:
            takes_value = "=" not in arg
            front.extend(args[i : i + 2] if takes_value else [arg])
            i += 2 if takes_value else 1
            continue
        rest.append(arg)
        i += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``citybus`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_hoist_global_options(sys.argv[1:] if argv is None else argv))
    # Contracts of installed packages (entry-point group citybus.contracts), before any command
    # looks a contract up: tail, publish, the ops server and the streams of `up` all know them.
    for warning in load_installed_contracts():
        err(f"citybus: warning: {warning}")
    try:
        config = _configure(args)
        status: int = args.func(args, config)
    except ConfigError as exc:
        err(f"citybus: configuration error: {exc}")
        return 2
    except (CityBusError, UnknownContractError) as exc:
        err(f"citybus: error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`citybus adapters list | head`): nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
