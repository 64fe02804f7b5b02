"""``citybus auth add-token`` and ``revoke-token``: the bearer tokens of the HTTP gateway.

A token stands for a client user (``public``, ``internal``) of one account; the gateway answers its
holder as that user (:mod:`bus.access.tokens` keeps them, ``adapters/gateway/who.py`` reads them).
Issuing and revoking write the token file only: the gateway reads it again when it changes, so
nothing is reloaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bus.access.login import Instance, account_name, running_instance
from bus.access.tokens import TOKEN_USERS, TokenInfo, TokenStore
from bus.access.users import Account
from bus.cli import err, out
from bus.config import Config

__all__ = ["cmd_add_token", "cmd_revoke_token", "register", "show_tokens", "token_document"]


def _tokens(args: argparse.Namespace, config: Config) -> tuple[TokenStore, Instance | None]:
    """The token store of the credentials directory (``--dir``, else the configured one), and the
    running ``citybus up`` that uses it, if one does."""
    directory = Path(args.dir).expanduser() if args.dir is not None else config.credentials_dir()
    return TokenStore(directory), running_instance(config, directory)


_READS = {"public": "public data only", "internal": "public and internal data, never personal data"}


def cmd_add_token(args: argparse.Namespace, config: Config) -> int:
    """Issue a bearer token of the HTTP gateway for a client user, and print it once."""
    store, running = _tokens(args, config)
    if args.account is not None:
        account, why = account_name(args.account), ""
    elif running is not None and running.auth is not None:
        account = running.auth.account
        why = f" (the account the running citybus up, pid {running.pid}, serves)"
    else:
        account, why = Account.CITY.value, " (no running citybus up uses this directory; --account chooses)"
    token = store.issue(args.name, account, args.user)
    out(token)  # alone on standard output: TOKEN=$(citybus auth add-token …)
    err(f"issued token {args.name} for {account}/{args.user}{why}: it reads {_READS[args.user]}")
    err(
        f"it is shown once, above; only its SHA-256 is kept, in {store.path} (0600): hand it over a "
        "private channel"
    )
    err(
        "the gateway accepts it at once, sent as `Authorization: Bearer <token>`; "
        f"`citybus auth revoke-token {args.name}` revokes it"
    )
    return 0


def cmd_revoke_token(args: argparse.Namespace, config: Config) -> int:
    """Revoke a bearer token of the HTTP gateway."""
    store, _running = _tokens(args, config)
    info = store.revoke(args.name)
    out(
        f"revoked token {info.name} ({info.label}, created {info.created}): the gateway refuses it from "
        "its next request, no reload needed"
    )
    return 0


def register(
    command: Callable[[str, str, Callable[[argparse.Namespace, Config], int]], argparse.ArgumentParser],
) -> None:
    """Add ``add-token`` and ``revoke-token`` to ``citybus auth`` (``command`` makes a subcommand)."""
    add_token = command("add-token", "issue a bearer token of the HTTP gateway (printed once)", cmd_add_token)
    add_token.add_argument("name", metavar="NAME", help="who holds it, kebab case (e.g. 'acme-research')")
    add_token.add_argument(
        "--user",
        required=True,
        metavar="USER",
        help=f"the NATS user it reads as: {' or '.join(TOKEN_USERS)} (never one that reads personal data)",
    )
    add_token.add_argument(
        "--account",
        type=str.lower,
        choices=["city", "sandbox"],
        help="its account (default: the one the running citybus up serves, else city)",
    )
    revoke_token = command("revoke-token", "revoke a bearer token of the HTTP gateway", cmd_revoke_token)
    revoke_token.add_argument("name", metavar="NAME", help="the token's name (`auth show` lists them)")


def _listed(store: TokenStore, user: str | None) -> list[TokenInfo]:
    return [t for t in store.list() if user is None or t.user == user]


def token_document(store: TokenStore, user: str | None) -> dict[str, Any]:
    """The tokens for ``citybus auth show --json`` (of ``user`` only, if given)."""
    return {
        "tokens_file": str(store.path),
        "tokens": [
            {"name": t.name, "account": t.account, "user": t.user, "created": t.created}
            for t in _listed(store, user)
        ],
    }


def show_tokens(store: TokenStore, user: str | None) -> None:
    """The tokens, as ``citybus auth show`` prints them (of ``user`` only, if given)."""
    tokens = _listed(store, user)
    if not tokens:
        out(f"gateway tokens: none (`citybus auth add-token NAME --user {'|'.join(TOKEN_USERS)}` issues one)")
        return
    out(f"gateway tokens in {store.path} (their SHA-256 only):")
    widths = [max(len(t.name) for t in tokens), max(len(t.label) for t in tokens)]
    for token in tokens:
        out(f"  {token.name.ljust(widths[0])}  {token.label.ljust(widths[1])}  created {token.created}")
