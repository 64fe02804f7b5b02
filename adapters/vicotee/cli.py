"""``citybus vicpack``: look inside a Vicotee VicPack frame by hand.

``citybus vicpack decode FA0101000...`` (hex, or the base64 a network server's uplink carries)
prints the frame as JSON: packet and request id, the readings grouped by sensor with names, scaled
values and units, and whether the CRC matched. An invalid frame ends with one line saying why and
exit status 1. Registered through the entry-point group ``citybus.commands``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from adapters.vicotee.vicpack import VicPackError, decode, parse_payload

if TYPE_CHECKING:
    from bus.config import Config

__all__ = ["cmd_decode", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``vicpack decode`` to the ``citybus`` command."""
    vicpack = subparsers.add_parser("vicpack", help="decode Vicotee VicPack sensor frames")
    sub = vicpack.add_subparsers(dest="vicpack_command", metavar="COMMAND", required=True)
    decode_parser = sub.add_parser(
        "decode", help="print a frame as JSON: readings by sensor, scaled, with units and CRC status"
    )
    decode_parser.add_argument(
        "payload",
        metavar="HEX_OR_BASE64",
        help="the frame as hex (spaces and 0x allowed) or base64; - reads it from standard input",
    )
    decode_parser.set_defaults(func=cmd_decode)


def cmd_decode(args: argparse.Namespace, config: Config) -> int:
    """Print one frame as indented JSON; an invalid frame prints why to standard error and returns 1."""
    text = sys.stdin.read() if args.payload == "-" else args.payload
    try:
        frame = decode(parse_payload(text))
    except VicPackError as exc:
        sys.stderr.write(f"citybus: invalid VicPack frame: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(frame.to_builtins(), indent=2, ensure_ascii=False) + "\n")
    return 0
