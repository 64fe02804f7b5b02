"""The ``citybus`` command: the one place that sees every package.

Its entry point lives here in ``bus``; other packages add subcommands through the entry-point
group ``citybus.commands`` (each entry point names ``register(subparsers)``), so ``bus`` never
imports ``adapters`` or ``sandbox``. A user mistake — a wrong config value, a dead server, an
invalid message — ends with one line saying what to fix and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import msgspec

from bus import subjects
from bus.access.login import Login, client_login
from bus.asyncapi import asyncapi_document
from bus.bus import Bus, redact_url
from bus.codec import decode_bytes
from bus.config import Config, config_file, load_config
from bus.envelope import Provenance, parse_headers
from bus.errors import CityBusError, ConfigError, ContractViolation, PermissionDeniedError, UndecodableError
from bus.logs import configure_logging
from bus.metrics import Metrics
from bus.runtime import Runtime
from bus.status import show_status
from bus.strict import unknown_fields
from contracts import (
    Contract,
    Registry,
    UnknownContractError,
    check,
    default_registry,
    json_schema,
    load_installed_contracts,
    load_snapshot,
    snapshot,
)

__all__ = ["main"]

COMMANDS_GROUP = "citybus.commands"

Command = Callable[[argparse.Namespace, Config], int]


def out(text: str = "") -> None:
    """Write a line to standard output (the command's result; logs go to standard error)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """Write a line to standard error."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- up -------------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace, config: Config) -> int:
    """Run citybus until Ctrl-C or SIGTERM."""
    log = configure_logging(config.log.format, config.log.level)
    runtime = Runtime(config, logger=log, config_file=config_file(args.config))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(runtime.run(stop))
        ready = asyncio.create_task(runtime.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if runtime.ready.is_set():
            err(f"citybus is up: NATS at {redact_url(runtime.nats_url)}")
            if runtime.server is not None and runtime.server.mqtt_port is not None:
                err(f"  MQTT     {runtime.server.mqtt_url}  (topic a/b/c arrives as subject a.b.c)")
            if runtime.ops is not None:
                err(f"  metrics  {runtime.ops.url}/metrics")
                err(f"  health   {runtime.ops.url}/healthz   {runtime.ops.url}/readyz")
            err("  Ctrl-C to stop")
        else:
            ready.cancel()
        await task

    asyncio.run(main())
    return 0


# -- tail -----------------------------------------------------------------------------------------


def _pattern(text: str, registry: Registry) -> str:
    """A subject pattern, or a contract name standing for all its subjects.

    The rule: an argument with a wildcard token or three tokens or more is a subject pattern (every
    subject the bus carries has at least three: ``city.…`` has five, an MQTT topic ``a/b/c`` arrives
    as ``a.b.c``); anything shorter names a contract (``domain.event`` or ``domain.event@2``), so a
    misspelt name is an error naming the nearest contracts, not a subscription the broker refuses or
    that never sees a message.
    """
    tokens = text.split(".")
    if "*" not in tokens and ">" not in tokens:
        try:
            return subjects.contract_filter(registry.get(text))
        except UnknownContractError as exc:
            if len(tokens) < 3:
                if "did you mean" in str(exc):
                    raise
                raise UnknownContractError(
                    f"{exc} (a subject pattern has a wildcard or three tokens or more: city.public.>)"
                ) from None
    try:
        return subjects.validate_pattern(text)
    except ValueError as exc:
        raise CityBusError(str(exc)) from None


def add_login_options(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    """``--nats``, ``--user``, ``--account`` and ``--nkey``: where and as whom a command connects."""
    parser.add_argument("--nats", metavar="URL", help="NATS server (default: the running citybus up)")
    who = f"default: {default}" if default else "required under access control"
    parser.add_argument(
        "--user",
        metavar="NAME",
        help=f"connect as this user: public, internal, operator, or one `citybus auth show` lists ({who})",
    )
    parser.add_argument(
        "--account",
        metavar="ACCOUNT",
        help="city or sandbox (default: the account citybus up serves: sandbox when only the sandbox runs)",
    )
    parser.add_argument(
        "--nkey",
        type=Path,
        metavar="FILE",
        help="log in with this seed file (a <name>.nk citybus auth issued)",
    )


def login(
    args: argparse.Namespace, config: Config, *, default: str | None, account: str | None = None
) -> Login:
    """The login of a command with :func:`add_login_options` (``account``: the default account)."""
    return client_login(
        config,
        nats=args.nats,
        user=args.user,
        account=args.account,
        nkey=args.nkey,
        default_user=default,
        default_account=account,
    )


def check_subscriptions(bus: Bus, patterns: Sequence[str], who: str) -> None:
    """Fail with what to do when the broker refused a subscription (call after a flush)."""
    refused = [p for p in patterns if p in bus.refused_subscriptions]
    if refused:
        raise PermissionDeniedError(
            f"the broker refused {', '.join(refused)} to {who or 'this connection'}: that user may not read "
            "it (`citybus auth show --user NAME` lists what a user may do; --user chooses another)"
        )


def cmd_tail(args: argparse.Namespace, config: Config) -> int:
    """Print live messages on matching subjects, one per line."""
    registry = default_registry()
    patterns = [_pattern(p, registry) for p in args.patterns]
    who = login(args, config, default="internal")
    encoders = {"json": msgspec.json.Encoder()}

    async def main() -> None:
        bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "warning"))
        await who.connect(bus, config)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for pattern in patterns:
            await bus.nc.subscribe(pattern, cb=queue.put)
        # The server must have the subscriptions before "tailing" says so, or a message published
        # right after the announcement can be missed.
        await bus.flush()
        check_subscriptions(bus, patterns, who.user)
        as_whom = f" as {who.user}" if who.user else ""
        err(f"tailing {', '.join(patterns)} on {redact_url(who.url)}{as_whom} (Ctrl-C to stop)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        seen = 0
        stopper = asyncio.create_task(stop.wait())
        while not stop.is_set() and (args.count is None or seen < args.count):
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            out(_render(getter.result(), registry, encoders["json"], as_json=args.json))
            seen += 1
        stopper.cancel()
        await bus.close()

    asyncio.run(main())
    return 0


def _render(msg: Any, registry: Any, encoder: msgspec.json.Encoder, *, as_json: bool) -> str:
    try:
        envelope = parse_headers(msg.headers, msg.subject)
    except ContractViolation as exc:
        body = msg.data.decode("utf-8", "backslashreplace")
        if as_json:
            return json.dumps({"subject": msg.subject, "error": str(exc), "raw": body})
        return f"{msg.subject}  !! {exc}  {body}"
    cls = registry.by_type(envelope.type)
    data: Any
    problem = ""
    if cls is None:
        problem = f"unknown contract {envelope.type}"
        data = msg.data.decode("utf-8", "backslashreplace")
    else:
        from bus.codec import Codec

        try:
            data = msgspec.to_builtins(Codec(cls).decode(msg.data, envelope.content_type))
        except ContractViolation as exc:
            problem = str(exc)
            data = msg.data.decode("utf-8", "backslashreplace")
    if as_json:
        record = {
            "subject": msg.subject,
            "type": envelope.type,
            "id": envelope.id,
            "time": envelope.time.isoformat() if envelope.time else None,
            "source": envelope.source,
            "provenance": envelope.provenance,
            "data": data,
        }
        if problem:
            record["error"] = problem
        return json.dumps(record, ensure_ascii=False)
    when = envelope.time.strftime("%H:%M:%S") if envelope.time else "--:--:--"
    body = data if isinstance(data, str) else encoder.encode(data).decode()
    mark = f"  !! {problem}" if problem else ""
    return f"{when} {msg.subject} [{envelope.provenance or '?'}] {body}{mark}"


# -- publish --------------------------------------------------------------------------------------


def cmd_publish(args: argparse.Namespace, config: Config) -> int:
    """Validate one message against its contract and publish it."""
    cls = default_registry().get(args.contract)
    text = args.json
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise CityBusError(f"cannot read {text[1:]}: {exc.strerror}") from None
    instance = _decode_strictly(cls, text.encode())
    who = login(args, config, default=None)

    async def main() -> None:
        bus = Bus(
            metrics=Metrics(),
            logger=configure_logging(config.log.format, "warning"),
            source=args.source or config.bus.source,
            provenance=args.provenance or config.bus.provenance,
            encoding=config.bus.encoding,
        )
        await who.connect(bus, config)
        try:
            if args.core:
                event_id = await bus.publish(instance)
                await bus.flush()
                out(f"published {event_id} on {subjects.contract_subject(instance)}")
            else:
                ack = await bus.publish_durable(instance, timeout=args.timeout)
                state = "already stored" if ack.duplicate else "stored"
                subject = subjects.contract_subject(instance)
                # Streams have the same names in every account: say which account stored it.
                account = f"in {who.user.split('/')[0]}, " if "/" in who.user else ""
                out(f"{state} {ack.event_id} on {subject} ({account}{ack.stream} #{ack.seq})")
        finally:
            await bus.drain()

    asyncio.run(main())
    return 0


_ANY_JSON = msgspec.json.Decoder()


def _decode_strictly(cls: type[Contract], body: bytes) -> Contract:
    """The message a producer typed, refusing fields the contract does not have.

    Consumers stay tolerant of unknown fields (a later compatible version may add one); here a
    person typed the message, and an unknown field is a typo whose value would be lost.
    """
    name = cls.__contract__.name
    try:
        unknown = unknown_fields(decode_bytes(_ANY_JSON, body), cls)
        if unknown:
            first = unknown[0]
            where = "" if first.struct == cls.__name__ else f" ({first.struct})"
            raise ContractViolation(
                f"unknown field {first.path} in {name}{where}; fields are {', '.join(first.allowed)}"
            )
        instance: Contract = decode_bytes(msgspec.json.Decoder(cls), body)
    except UndecodableError as exc:
        raise ContractViolation(f"not a valid {name}: {exc}" if exc.kind == "shape" else str(exc)) from None
    return instance


# -- status ---------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    """Show a running citybus: health, NATS, adapters, sources, replay, dead letters."""
    return show_status(
        config, ops=args.ops, interval=args.interval, once=args.once, as_json=args.json, write=out
    )


# -- contracts ------------------------------------------------------------------------------------


def cmd_contracts_list(args: argparse.Namespace, config: Config) -> int:
    """List the contracts with version, classification and subject."""
    rows = [("CONTRACT", "VERSION", "CLASS", "KEY", "SUBJECT")]
    for cls in default_registry():
        info = cls.__contract__
        rows.append(
            (info.name, str(info.version), info.classification.value, info.key, subjects.contract_filter(cls))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_contracts_schema(args: argparse.Namespace, config: Config) -> int:
    """Print one contract's JSON Schema."""
    out(json.dumps(json_schema(default_registry().get(args.name)), indent=2, ensure_ascii=False))
    return 0


def cmd_contracts_asyncapi(args: argparse.Namespace, config: Config) -> int:
    """Print the AsyncAPI 3.0 document of the bus."""
    out(json.dumps(asyncapi_document(default_registry()), indent=2, ensure_ascii=False))
    return 0


def cmd_contracts_check(args: argparse.Namespace, config: Config) -> int:
    """Compare the contracts with the stored snapshot; fail on a breaking change."""
    where = args.snapshot or "the shipped snapshot"
    try:
        stored = load_snapshot(args.snapshot)
        problems = check(stored, default_registry())
    except OSError as exc:
        raise CityBusError(f"cannot read {where}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not JSON, or not a snapshot
        raise CityBusError(f"{where} is not a citybus contracts snapshot: {exc}") from None
    if problems:
        err(f"{len(problems)} breaking change(s) kept their contract version:")
        for problem in problems:
            err(f"  - {problem.message}")
        err("Publish the changed contract as a new major version beside the old one, or undo the change.")
        return 1
    out(f"contracts compatible with {args.snapshot or 'the stored snapshot'}")
    return 0


def cmd_contracts_snapshot(args: argparse.Namespace, config: Config) -> int:
    """Write the current contracts' snapshot (after an intended, compatible change)."""
    text = json.dumps(snapshot(default_registry()), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise CityBusError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        err(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


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
    csub.add_parser("list", help="the contracts with version, class and subject").set_defaults(
        func=cmd_contracts_list
    )
    schema = csub.add_parser("schema", help="one contract's JSON Schema")
    schema.add_argument("name", metavar="NAME")
    schema.set_defaults(func=cmd_contracts_schema)
    csub.add_parser("asyncapi", help="the AsyncAPI 3.0 document of all subjects").set_defaults(
        func=cmd_contracts_asyncapi
    )
    chk = csub.add_parser("check", help="fail on a breaking change that kept its version")
    chk.add_argument("--snapshot", type=Path, help="snapshot to compare with (default: the shipped one)")
    chk.set_defaults(func=cmd_contracts_check)
    snap = csub.add_parser("snapshot", help="write the snapshot of the current contracts")
    snap.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    snap.set_defaults(func=cmd_contracts_snapshot)

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
