"""``citybus personal export|erase PERSON``: a person's data from every place citybus keeps it, or erased.

::

    citybus personal export v-3f9c2a7e51d0 --identifier "Kari Nordmann" --output kari.json
    citybus personal erase v-3f9c2a7e51d0 --identifier kari.nordmann@example.no --case dpo-2026-0043

PERSON is the pseudonymous id the personal contracts carry (``volunteer_id``); ``--identifier``
adds a value that names the person (name, e-mail, phone) to find copies that were never sealed (an
erasure also learns them from the person's opened messages). The command runs the rights engine
(:mod:`bus.personal.rights`) itself, connected as the privacy service's user of the running
``citybus up`` (``--user``, ``--account``, ``--nats`` as for the other commands): it works whether
or not the service runs. ``export`` writes the export as JSON to standard output or ``--output``;
``erase`` prints the receipt and exits with 1 when a place could not be erased.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from adapters.access import configured_instances
from adapters.privacy.adapter import PrivacyService
from bus import Bus, Metrics
from bus.cli import add_login_options, err, login, out
from bus.config import Config
from bus.errors import CityBusError
from bus.logs import configure_logging
from bus.personal import rights
from contracts import ErasureReceipt, PersonalExport, default_registry

__all__ = ["format_receipt", "register"]


def _instance(config: Config) -> tuple[str, str | None]:
    """The privacy service's user and account: its configured (or default) instance's."""
    instances, _ = configured_instances(config)
    for instance in instances:
        if instance.adapter is PrivacyService:
            return instance.name, instance.account
    return PrivacyService.name, None


def _case(args: argparse.Namespace, kind: str) -> str:
    if args.case:
        return str(args.case)
    return f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


async def _run(args: argparse.Namespace, config: Config, erase: bool) -> PersonalExport | ErasureReceipt:
    user, account = _instance(config)
    who = login(args, config, default=user, account=account)
    bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "warning"))
    await who.connect(bus, config)
    try:
        places, problems = rights.places(config, bus)
        for problem in problems:
            err(f"citybus personal: warning: a place of personal data did not load: {problem}")
        if erase:
            return await rights.erase(bus, places, args.person, args.identifier, _case(args, "erasure"))
        return await rights.export(bus, places, args.person, args.identifier, _case(args, "export"))
    finally:
        await bus.drain()


_CASE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _checked(args: argparse.Namespace) -> None:
    """Refuse, in one line, a person id or case number the request could not carry."""
    rights.check_person(default_registry(), args.person)
    if len(args.identifier) > 16:
        raise CityBusError(f"{len(args.identifier)} identifiers: give at most 16 (a name, e-mails, phones)")
    for value in args.identifier:
        if not 3 <= len(value.strip()) <= 254:
            raise CityBusError(
                f"--identifier {value!r}: an identifier is 3 to 254 characters (a name, e-mail, phone)"
            )
    if args.case and not _CASE.match(args.case):
        raise CityBusError(f"--case {args.case!r}: a case number is 1 to 64 letters, digits, '-' and '_'")


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    """Export everything citybus holds about one person, as JSON."""
    _checked(args)
    export = asyncio.run(_run(args, config, erase=False))
    assert isinstance(export, PersonalExport)
    text = msgspec.json.format(msgspec.json.encode(export), indent=2).decode()
    if args.output:
        try:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise CityBusError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        out(text)
    where = f" (written to {args.output})" if args.output else ""
    if not export.messages:
        err(f"nothing found about {args.person} in {', '.join(export.places)}{where}")
    else:
        err(f"exported {len(export.messages)} messages about {args.person}{where}")
    for note in export.notes:
        err(f"citybus personal: could not search {note}")
    return 0 if export.complete else 1


def format_receipt(receipt: ErasureReceipt) -> list[str]:
    """The receipt as lines: one per place, then whether the erasure is complete."""
    lines = [f"erasure {receipt.case} of {receipt.person} at {receipt.erased_at.isoformat()}:"]
    for place in receipt.places:
        where = f"{place.place} {place.location}".strip()
        if place.error:
            lines.append(f"  {where}: FAILED: {place.error}")
        elif place.place == "logs" or (not place.found and not place.erased):
            lines.append(f"  {where}: nothing found" + (f" ({place.how})" if place.place == "logs" else ""))
        else:
            lines.append(f"  {where}: {place.found} found, {place.erased} erased ({place.how})")
    lines.append("complete" if receipt.complete else "INCOMPLETE: the places marked FAILED still hold data")
    return lines


def cmd_erase(args: argparse.Namespace, config: Config) -> int:
    """Erase everything citybus holds about one person and print the receipt."""
    _checked(args)
    receipt = asyncio.run(_run(args, config, erase=True))
    assert isinstance(receipt, ErasureReceipt)
    if args.json:
        out(msgspec.json.format(msgspec.json.encode(receipt), indent=2).decode())
    else:
        for line in format_receipt(receipt):
            out(line)
    return 0 if receipt.complete else 1


def register(subparsers: Any) -> None:
    """Add ``personal`` to the ``citybus`` command."""
    parser = subparsers.add_parser(
        "personal",
        help="a person's data: export it (GDPR art. 15) or erase it (art. 17)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="personal_command", metavar="COMMAND", required=True)
    for name, func, what in (
        ("export", cmd_export, "everything citybus holds about a person, as JSON"),
        ("erase", cmd_erase, "erase everything citybus holds about a person, and print the receipt"),
    ):
        command = sub.add_parser(name, help=what)
        command.add_argument("person", metavar="PERSON", help="the person's pseudonymous id (v-3f9c2a7e51d0)")
        command.add_argument(
            "--identifier",
            action="append",
            default=[],
            metavar="VALUE",
            help="a value that names the person (name, e-mail, phone), to find unsealed copies; repeat",
        )
        command.add_argument("--case", metavar="CASE", help="the case number (default: one made up)")
        if name == "export":
            command.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the JSON here")
        else:
            command.add_argument("--json", action="store_true", help="print the receipt as JSON")
        add_login_options(command, default="the privacy service's")
        command.set_defaults(func=func)
