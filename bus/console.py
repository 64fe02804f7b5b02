"""What every ``citybus`` command shares, built in or added by a package: its output and its login.

Commands write their result to standard output with :func:`out` and everything else to standard
error with :func:`err`; commands that connect take the same login options
(:func:`add_login_options`, :func:`login`) and say the same thing when the broker refuses them a
subscription (:func:`check_subscriptions`). ``adapters`` and ``sandbox`` import these from
:mod:`bus.cli`, which re-exports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bus.access.login import Login, client_login
from bus.bus import Bus
from bus.config import Config
from bus.errors import PermissionDeniedError

__all__ = ["add_login_options", "check_subscriptions", "err", "login", "out"]


def out(text: str = "") -> None:
    """Write a line to standard output (the command's result; logs go to standard error)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """Write a line to standard error."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


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
