"""The commands ``bus`` itself ships: ``up``, ``tail``, ``publish``, ``status`` and ``contracts``.

Each takes the parsed arguments and the configuration and returns an exit status; :mod:`bus.cli`
parses the command line and dispatches to them (and to the commands other packages add). A user
mistake raises a :class:`~bus.errors.CityBusError` that :func:`bus.cli.main` prints as one line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec

from bus import subjects
from bus.asyncapi import asyncapi_document
from bus.bus import Bus, redact_url
from bus.codec import decode_bytes
from bus.config import Config, config_file
from bus.console import check_subscriptions, err, login, out
from bus.entities import Listing, list_entities, render
from bus.envelope import parse_headers
from bus.errors import CityBusError, ContractViolation, NotConnectedError, UndecodableError
from bus.logs import configure_logging
from bus.metrics import Metrics
from bus.provision import client_streams
from bus.runtime import Runtime
from bus.status import show_status
from bus.strict import unknown_fields
from contracts import (
    CITY_PACKAGE,
    Contract,
    Registry,
    check,
    default_registry,
    dump_snapshot,
    installed_packages,
    json_schema,
    load_snapshot,
    package_name,
    snapshot,
)

__all__ = [
    "cmd_contracts_asyncapi",
    "cmd_contracts_check",
    "cmd_contracts_list",
    "cmd_contracts_provision",
    "cmd_contracts_schema",
    "cmd_contracts_snapshot",
    "cmd_entities",
    "cmd_publish",
    "cmd_status",
    "cmd_tail",
    "cmd_up",
]


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
            if runtime.cluster is not None:
                for name, node in zip(runtime.cluster.names, runtime.cluster.nodes, strict=True):
                    err(f"  node     {name} {node.url} (pid {node.pid}: kill it to watch failover)")
            if runtime.server is not None and runtime.server.mqtt_port is not None:
                err(f"  MQTT     {runtime.server.mqtt_url}  (topic a/b/c arrives as subject a.b.c)")
            for name, url in runtime.links.items():
                err(f"  {name:<8} {url}")
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


def cmd_tail(args: argparse.Namespace, config: Config) -> int:
    """Print live messages on matching subjects, one per line."""
    registry = default_registry()
    patterns = [subjects.resolve_pattern(p, registry) for p in args.patterns]
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
        problem = _unknown(envelope.type, registry)
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


def _unknown(ce_type: str, registry: Registry) -> str:
    """Why a message's type is not decoded here, and what to do about it."""
    name, _, version = ce_type.rpartition(".v")
    known = [c.__contract__.version for c in registry if c.__contract__.name == name]
    if known and version.isdigit():
        versions = ", ".join(f"v{v}" for v in sorted(known))
        return f"unknown contract {ce_type}: this citybus knows {name} {versions} only"
    return (
        f"unknown contract {ce_type}: no package installed here declares it "
        "(install the package with its citybus.contracts entry point; `citybus contracts list`)"
    )


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


def cmd_entities(args: argparse.Namespace, config: Config) -> int:
    """List each contract's entities with location, rate and last value, from JetStream."""
    registry = default_registry()
    if args.contract:
        registry.get(args.contract)  # an unknown name fails here, with the nearest names
    who = login(args, config, default="operator")

    async def main() -> Listing:
        bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "error"))
        await who.connect(bus, config)
        try:
            return await list_entities(bus, registry, contract=args.contract)
        finally:
            await bus.close()

    listing = asyncio.run(main())
    if args.json:
        out(json.dumps(listing.as_dict(), indent=2, ensure_ascii=False))
    else:
        for line in render(listing):
            out(line)
    return 0


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    """Show a running citybus: health, NATS, adapters, sources, replay, dead letters."""
    return show_status(
        config, ops=args.ops, interval=args.interval, once=args.once, as_json=args.json, write=out
    )


# -- contracts ------------------------------------------------------------------------------------


def _selected(args: argparse.Namespace) -> Registry:
    """The contracts a ``contracts`` command works on: all, or those of ``--package``."""
    package = getattr(args, "package", None)
    if package is None:
        return default_registry()
    wanted = package_name(package)
    installed = installed_packages()
    if wanted != CITY_PACKAGE and wanted not in installed:
        known = ", ".join([CITY_PACKAGE, *installed])
        raise CityBusError(
            f"--package {package}: no installed package of that name declares contracts "
            f"(entry-point group citybus.contracts); packages with contracts: {known}"
        )
    return default_registry().of_package(wanted)


def _fail_if_refused(registry: Registry, package: str, doing: str) -> None:
    """A package whose contracts did not all load cannot be snapshotted or checked: say why."""
    problems = [line for lines in registry.refused.values() for line in lines]
    if problems:
        for problem in problems:
            err(f"  - {problem}")
        raise CityBusError(f"cannot {doing} package {package}: its contracts did not all load (above)")


def cmd_contracts_list(args: argparse.Namespace, config: Config) -> int:
    """List the contracts with version, classification, subject and what each means."""
    rows = [("CONTRACT", "VERSION", "CLASS", "KEY", "SUBJECT", "DESCRIPTION")]
    for cls in _selected(args):
        info = cls.__contract__
        rows.append(
            (
                info.name,
                str(info.version),
                info.classification.value,
                info.key,
                subjects.contract_filter(cls),
                cls.summary(),
            )
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
    """Print the AsyncAPI 3.0 document of the bus (or of one package's contracts)."""
    out(json.dumps(asyncapi_document(_selected(args)), indent=2, ensure_ascii=False))
    return 0


def cmd_contracts_check(args: argparse.Namespace, config: Config) -> int:
    """Compare the contracts with a stored snapshot; fail on a breaking change.

    Without ``--package``: the city's contracts against the shipped snapshot (or ``--snapshot``).
    With it: that package's contracts against its own snapshot, which must be named, and a package
    whose contracts did not all load fails (a contract missing from the check is not compatible).
    """
    package = args.package and package_name(args.package)
    registry = _selected(args)
    if package and package != CITY_PACKAGE:
        if args.snapshot is None:
            raise CityBusError(
                f"--package {package}: name its snapshot with --snapshot FILE "
                f"(write one with `citybus contracts snapshot --package {package} -o FILE`)"
            )
        _fail_if_refused(registry, package, "check")
    where = args.snapshot or "the shipped snapshot"
    try:
        stored = load_snapshot(args.snapshot)
        problems = check(stored, registry)
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
    whose = f"contracts of {package}" if package else "contracts"
    out(f"{whose} compatible with {args.snapshot or 'the stored snapshot'}")
    return 0


def cmd_contracts_snapshot(args: argparse.Namespace, config: Config) -> int:
    """Write the snapshot of the city's contracts, or of one package's (``--package``).

    Without ``--package`` it is the city's own contracts only, whatever else is installed, so
    ``contracts/snapshot.json`` never takes in a company's contract.
    """
    package = package_name(args.package) if args.package else CITY_PACKAGE
    registry = default_registry().of_package(CITY_PACKAGE) if args.package is None else _selected(args)
    if package != CITY_PACKAGE:
        _fail_if_refused(registry, package, "snapshot")
        if not len(registry):
            raise CityBusError(f"package {package} declares no contracts: nothing to snapshot")
    text = dump_snapshot(snapshot(registry))
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise CityBusError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        err(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_contracts_provision(args: argparse.Namespace, config: Config) -> int:
    """Create or update the streams of every contract this command knows, in one account.

    ``citybus up`` provisions the streams of the contracts installed when it started; a package
    installed while it runs (a company joining the sandbox) needs its streams made, or its messages
    are delivered but never stored. Under access control it runs as the account's ``provisioner``,
    which may touch only the streams ``accounts.conf`` names: ``citybus auth generate`` (run with the
    package installed) adds the package's streams there first.

    It never lowers a stream's replicas or limits unless ``--allow-lower`` says to (:mod:`bus.provision`);
    automatic replicas are those of the running ``citybus up`` (its cluster's nodes, at most 3).
    """
    who = login(args, config, default="provisioner")
    streams = client_streams(config, who.url, external=bool(args.nats or config.nats.url))
    if args.allow_lower:
        streams = msgspec.structs.replace(streams, allow_lower=True)

    async def main() -> list[str]:
        bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "warning"))
        await who.connect(bus, config)
        try:
            return await bus.provision_streams(streams)
        except NotConnectedError as exc:
            if not who.user:
                raise
            raise CityBusError(
                f"{exc} As {who.user}: may it provision these streams? After installing a package, run "
                "`citybus auth generate` so that accounts.conf names its streams, then provision again"
            ) from None
        finally:
            await bus.drain()

    names = asyncio.run(main())
    where = f" in {who.user.split('/')[0]}" if "/" in who.user else ""
    out(f"provisioned {len(names)} streams{where}: {', '.join(names)}")
    return 0
