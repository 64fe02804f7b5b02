"""``citybus auth``: issue, show and revoke who may do what on the broker.

::

    citybus auth generate                       keys for every user, and accounts.conf
    citybus auth add-pilot acme --produces environment.beach-observation
    citybus auth add-<kind> NAME --account city a guest of a kind that may live in CITY
    citybus auth revoke acme                    then reload the server (SIGHUP)
    citybus auth add-token acme-research --user internal    a bearer token for the HTTP gateway
    citybus auth revoke-token acme-research     refused from the gateway's next request
    citybus auth show [--user NAME] [--json]    who may do what, and why; the tokens

Every command works on the credentials directory (``--dir``, default ``credentials`` in the
server's data directory) and ends by writing the server's configuration again, so the file never
lags behind the keys. A seed is never printed: the commands name the seed *file*, which its
user reads (nats-py ``nkeys_seed=``); the file is the secret, and it goes to its user over a
private channel.

Decisions, and why:

* **A bus command.** ``bus`` owns the command line and finds what the other packages declare
  through the ``citybus.access`` entry point (:mod:`bus.access.declared`), including the kinds of
  guests they let operators add: each kind gets its ``add-<kind>`` subcommand (the sandbox's
  ``add-pilot``). The command needs nothing else from them.
* **The running instance's configuration wins.** A running ``citybus up`` recorded in
  ``instance.json`` what it declared; the command acts on that (and refuses a configuration given
  that declares otherwise), and never drops a user the instance runs as.
* **Tokens touch no server configuration.** A gateway token stands for an existing client user
  (:mod:`bus.access.tokens`); issuing or revoking one changes ``tokens.toml`` only, which the gateway
  reads again on its next request: no reload. The token is the one secret this command prints, alone
  on standard output, so ``TOKEN=$(citybus auth add-token …)`` keeps it out of the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bus import subjects
from bus.access import token_command
from bus.access.declared import (
    AccessProvider,
    Declared,
    access_model,
    declared_from_record,
    declared_record,
    discover_declarations,
    discover_providers,
)
from bus.access.guests import Guest, GuestKind, contract_ref, contracts_named, load_guests, save_guests
from bus.access.joined import credentials_lock, joined_declarations, prune_joined
from bus.access.keys import CredentialInfo, CredentialStore
from bus.access.login import reload_server, running_instance
from bus.access.policy import AccessModel
from bus.access.render import ACCOUNTS_FILE, Generated, generate
from bus.access.tokens import TokenStore
from bus.access.users import Account, Kind, User
from bus.cli import err, out
from bus.config import Config, config_file
from bus.errors import CityBusError
from bus.logs import configure_logging
from contracts import default_registry

__all__ = ["register"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_BUILT_IN = frozenset(
    k.value for k in (Kind.SERVICE, Kind.PROVISIONER, Kind.OPERATOR, Kind.INTERNAL, Kind.PUBLIC, Kind.SYSTEM)
)


class _Setup:
    """What every subcommand needs: the directory, its store, the guests, and the declarations of
    the components — the running ``citybus up``'s when one uses this directory.

    A running instance recorded in ``instance.json`` what it declared; rebuilding the model from
    the configuration at hand instead (``./citybus.toml`` of whatever directory the command runs
    in) would drop the users it runs as and disconnect them on the reload. A configuration given
    (``--config``, ``CITYBUS_CONFIG`` or ``./citybus.toml``) that declares otherwise is refused.
    """

    def __init__(self, args: argparse.Namespace, config: Config, providers: list[AccessProvider]) -> None:
        self.config = config
        self.providers = providers
        self.directory = Path(args.dir).expanduser() if args.dir is not None else config.credentials_dir()
        # Logs (an audit trail with public keys, never seeds) go to standard error, apart from
        # the command's output.
        log = configure_logging(config.log.format, "warning")
        self.store = CredentialStore(self.directory, logger=log)
        self.guests = [g for p in providers for kind in p.guests for g in load_guests(self.directory, kind)]
        self.joined = joined_declarations(self.directory)
        """The users ``citybus sandbox join`` holds (:mod:`bus.access.joined`): kept like guests."""
        self.running = running = running_instance(config, self.directory)
        access = running.access if running is not None else None
        self.in_use: frozenset[str] = frozenset()
        """``ACCOUNT/user`` of every user the running instance runs as (never dropped)."""
        if running is not None and access is not None:
            self.declared = declared_from_record(access.declared, default_registry())
            self.mqtt_users = tuple(access.mqtt_users)
            self.in_use = frozenset(access.users)
            given = config_file(args.config)
            if given is not None:
                self._check_agrees(given)
            else:
                started = running.config_file or "no config file"
                pid = running.pid
                err(f"citybus: acting on the running citybus up's configuration (pid {pid}, {started})")
        else:
            self.declared, self.mqtt_users = self._configured()

    def _configured(self) -> tuple[Declared, tuple[str, ...]]:
        """The declarations of the configuration at hand (without guests), and its MQTT users."""
        # Every installed package's declarations, as `citybus up` asks for them (its on-demand
        # users, too); the guests are this directory's, read apart.
        found = discover_declarations(self.config, [AccessProvider(p.declared) for p in self.providers])
        for problem in found.problems:
            err(f"citybus: warning: {problem}")
        declared = Declared(found.city, found.sandbox, on_demand=found.on_demand)
        return declared, tuple(self.config.auth.mqtt_users)

    def _check_agrees(self, given: Path) -> None:
        """Refuse a given configuration that declares other users or rights than the running one."""
        declared, mqtt_users = self._configured()
        ours, theirs = _users(declared, mqtt_users), _users(self.declared, self.mqtt_users)
        if ours == theirs:
            return
        assert self.running is not None
        differences = [
            f"it would drop {', '.join(sorted(set(theirs) - set(ours)))}" if set(theirs) - set(ours) else "",
            f"add {', '.join(sorted(set(ours) - set(theirs)))}" if set(ours) - set(theirs) else "",
            ", ".join(
                f"change the rights of {k}" for k in sorted(set(ours) & set(theirs)) if ours[k] != theirs[k]
            ),
        ]
        started = self.running.config_file
        use = f"--config {started}" if started else "no citybus.toml (run it from a directory without one)"
        raise CityBusError(
            f"{given} does not match the configuration of the running citybus up (pid "
            f"{self.running.pid}, {started or 'started without a config file'}): "
            f"{'; '.join(d for d in differences if d)}; run `citybus auth` with {use}, or restart "
            "citybus up with this configuration first"
        )

    def model(self, guests: list[Guest] | None = None) -> AccessModel:
        """The access model of the components' declarations and ``guests`` (default: the guests)."""
        guests = self.guests if guests is None else guests
        declared = Declared(
            self.declared.city,
            self.declared.sandbox,
            tuple(g.declaration() for g in guests) + self.joined,
            self.declared.on_demand,
        )
        return access_model(default_registry(), declared, self.config, mqtt_users=self.mqtt_users)

    def save(self, kind: GuestKind, guests: list[Guest]) -> None:
        """Write the guests of ``kind`` among ``guests``."""
        save_guests(self.directory, kind, [g for g in guests if g.kind == kind])

    def keeps_users_in_use(self, model: AccessModel, revoking: tuple[str, str] | None = None) -> None:
        """Refuse, before anything is written, a model without a user the running instance runs as
        (but the one being revoked, on purpose)."""
        kept = {_label(u.key) for u in model.users}
        dropped = sorted(self.in_use - kept - ({_label(revoking)} if revoking else set()))
        if dropped and self.running is not None:
            raise CityBusError(
                f"refused: the running citybus up (pid {self.running.pid}) runs as "
                f"{', '.join(dropped)}, which this would drop; restart it with the new configuration first"
            )


def _users(declared: Declared, mqtt_users: tuple[str, ...]) -> dict[str, Any]:
    """``ACCOUNT/user`` → what it declares, for comparing two configurations."""
    record = declared_record(declared)
    users: dict[str, Any] = {f"{Account.CITY.value}/{name}": "mqtt" for name in mqtt_users}
    keys = (Account.CITY, "city"), (Account.SANDBOX, "sandbox"), (Account.SANDBOX, "on_demand")
    for account, key in keys:
        users.update({f"{account.value}/{d['name']}": d for d in record[key]})
    return users


def _label(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def _reload(setup: _Setup, why: str) -> bool:
    """Reload the running ``citybus up``'s server if it uses this directory, and say whether it did."""
    pid = reload_server(setup.config) if setup.running is not None else None
    if pid is not None:
        out(f"reloaded the running citybus up's nats-server (pid {pid}) {why}")
        return True
    out(
        f"did not reload any server (no citybus up with an embedded server uses {setup.directory}): "
        f"reload yours {why}: nats-server --signal reload (or SIGHUP)"
    )
    return False


def _say_generated(done: Generated) -> None:
    out(f"wrote {done.config_file} (accounts CITY, SANDBOX, SYS; public keys only)")
    if done.revoked:
        out(f"left out, revoked: {', '.join(_label(k) for k in done.revoked)}")
    if done.unconfigured:
        names = ", ".join(_label(k) for k in done.unconfigured)
        out(f"credentials of users that are no longer configured: {names} (revoke them)")


def cmd_generate(args: argparse.Namespace, config: Config, providers: list[AccessProvider]) -> int:
    """Issue credentials to every user that has none and write the server's configuration."""
    setup = _Setup(args, config, providers)
    with credentials_lock(setup.directory):
        for name in prune_joined(setup.store):
            out(f"removed SANDBOX/{name}: the `citybus sandbox join` that held it is gone")
    setup.joined = joined_declarations(setup.directory)
    model = setup.model()
    setup.keeps_users_in_use(model)
    done = generate(model, setup.store)
    kept = len(done.credentials) - len(done.issued)
    out(f"credentials in {setup.directory}: {len(done.issued)} issued, {kept} kept")
    for key in done.issued:
        out(f"  issued {_label(key)}: {done.credentials[key].path}")
    _say_generated(done)
    if _reload(setup, "to apply it"):
        return 0
    server_config = (args.server_config or setup.directory.parent / "nats-server.conf").expanduser()
    # nats-server joins an include's path to the including file's directory, absolute or not.
    relative = os.path.relpath(done.config_file.resolve(), server_config.resolve().parent)
    out("")
    out("To use it, the nats-server configuration (JetStream enabled, no accounts of its own) includes it,")
    out(f"by a path relative to that file's directory; in {server_config}:")
    out(f"  include {json.dumps(relative)}")
    out("and the server reloads it after every change: nats-server --signal reload (or SIGHUP);")
    out("`citybus up`'s embedded server includes it by itself, and `citybus auth` reloads that one.")
    out("Give each user its own seed file (<ACCOUNT>/<user>.nk) and nothing else; it connects with")
    out("that file and the inbox prefix _INBOX.<user>.")
    return 0


def cmd_add(
    args: argparse.Namespace, config: Config, providers: list[AccessProvider], kind: GuestKind
) -> int:
    """Add a guest of ``kind`` to its account with the contracts it publishes, and issue its credentials."""
    setup = _Setup(args, config, providers)
    name = args.name
    if name in _BUILT_IN or not _NAME.match(name):
        raise CityBusError(
            f"{name!r} cannot name a {kind.name}: use kebab case ('acme-sensors'), and none of the built-in "
            f"users' names ({', '.join(sorted(_BUILT_IN))})"
        )
    existing = next((g for g in setup.guests if g.name == name), None)
    if existing is not None:
        declared = ", ".join(contract_ref(c) for c in existing.produces) or "nothing"
        raise CityBusError(
            f"{existing.kind.name} {name!r} already exists (it publishes {declared}); choose another name, "
            f"or `citybus auth revoke {name}` first to add it again with other contracts"
        )
    guest = Guest(kind, name, contracts_named(args.produces), datetime.now(UTC), Account(args.account))
    guests = [*setup.guests, guest]
    model = setup.model(guests)  # refuses a bad name, a taken name or a contract its kind may not have
    setup.keeps_users_in_use(model)
    user = model.user(guest.account, name)
    credential = setup.store.generate(guest.account.value, name)  # lifts an earlier revocation
    setup.save(kind, guests)
    done = generate(model, setup.store)
    where = "the sandbox" if guest.account is Account.SANDBOX else "production"
    out(f"added {kind.name} {name} to {where} (account {guest.account.value})")
    for grant in user.permissions.publish:
        out(f"  publishes  {grant.subject}  ({grant.why})")
    out(f"  reads      {kind.reads}")
    out(
        f"seed file: {credential.path} (0600): hand it to the {kind.name} over a private channel, "
        "never by mail"
    )
    out(f"connect with: that seed file and inbox prefix {credential.inbox_prefix}, e.g. with nats-py")
    out(
        f'  await nats.connect(URL, nkeys_seed="{credential.path}", inbox_prefix="{credential.inbox_prefix}")'
    )
    _say_generated(done)
    _reload(setup, f"to let the {kind.name} in")
    return 0


def _find(model: AccessModel, infos: list[CredentialInfo], name: str, account: str | None) -> tuple[str, str]:
    """The ``(account, user)`` that ``revoke NAME`` means; components and guests only."""
    if name in _BUILT_IN:
        raise CityBusError(
            f"{name!r} is a built-in user of every account and is not revoked (citybus needs it); "
            f"to replace a leaked key, delete its seed file ({account or '<ACCOUNT>'}/{name}.nk in the "
            "credentials directory) and run `citybus auth generate`"
        )
    keys = {u.key for u in model.users if u.name == name and u.kind in (Kind.ADAPTER, Kind.GUEST)}
    keys |= {(i.account, i.user) for i in infos if i.user == name}
    if account is not None:
        keys = {k for k in keys if k[0] == account}
    if not keys:
        where = f" in account {account}" if account else ""
        raise CityBusError(f"no user named {name!r}{where} to revoke; `citybus auth show` lists the users")
    if len(keys) > 1:
        accounts = " or ".join(sorted(k[0] for k in keys))
        raise CityBusError(f"{name!r} is a user of {accounts}: say which with --account")
    return next(iter(keys))


def cmd_revoke(args: argparse.Namespace, config: Config, providers: list[AccessProvider]) -> int:
    """Revoke a guest's or a component's credentials and write the configuration again."""
    setup = _Setup(args, config, providers)
    model = setup.model()
    infos = setup.store.list()
    account, name = _find(model, infos, args.name, args.account)
    was_revoked = any((i.account, i.user) == (account, name) and i.revoked_at is not None for i in infos)
    # A SANDBOX user that is not a component is a guest (or was one, revoked before).
    component = any(u.key == (account, name) and u.kind is Kind.ADAPTER for u in model.users)
    leaving = [g for g in setup.guests if account == g.account.value and g.name == name]
    guests = [g for g in setup.guests if g not in leaving]
    if leaving:
        model = setup.model(guests)
    setup.keeps_users_in_use(model, revoking=(account, name))
    info = setup.store.revoke(account, name)
    for guest in leaving:
        setup.save(guest.kind, guests)
    done = generate(model, setup.store)
    when = f"{info.revoked_at:%Y-%m-%d %H:%M} UTC" if info.revoked_at is not None else "an unknown time"
    state = f"was already revoked at {when}" if was_revoked else f"revoked at {when}"
    out(f"{account}/{name} {state} (public key {info.public_key}); its seed file is deleted")
    _say_generated(done)
    _reload(setup, "to disconnect it")
    kinds = [g.kind for g in leaving] or [k for p in providers for k in p.guests]
    if (leaving or account == Account.SANDBOX.value) and not component and kinds:
        flag = "" if account == Account.SANDBOX.value else f" --account {account.lower()}"
        again = " or ".join(f"`citybus auth add-{k.name} {name}{flag} [--produces ...]`" for k in kinds)
        out(f"To let it in again with new credentials: {again}.")
    else:
        out(
            f"It stays revoked through `citybus auth generate`; to let it in again, delete {info.path} "
            "and run `citybus auth generate`."
        )
    return 0


def _state(
    user: User, infos: dict[tuple[str, str], CredentialInfo], store: CredentialStore
) -> dict[str, Any]:
    if user.kind is Kind.MQTT:
        path = store.password_path(*user.key)
        issued = path.exists()
        return {
            "account": user.account.value,
            "user": user.name,
            "kind": user.title,
            "declassifier": False,
            "credentials": "issued" if issued else "missing",
            "password_file": str(path) if issued else None,
        }
    info = infos.get(user.key)
    state = "missing" if info is None else ("revoked" if info.revoked_at is not None else "issued")
    return {
        "account": user.account.value,
        "user": user.name,
        "kind": user.title,
        "declassifier": user.declassifier,
        "credentials": state,
        "public_key": info.public_key if info is not None else None,
        "seed_file": str(info.path) if info is not None and info.revoked_at is None else None,
        "revoked_at": info.revoked_at.isoformat() if info is not None and info.revoked_at else None,
        "inbox_prefix": subjects.inbox_prefix(user.name),
    }


def cmd_show(args: argparse.Namespace, config: Config, providers: list[AccessProvider]) -> int:
    """Print who may do what, and why; the declassifiers; and whose credentials exist."""
    setup = _Setup(args, config, providers)
    model = setup.model()
    infos = {(i.account, i.user): i for i in setup.store.list()}
    users = [u for u in model.users if args.user is None or u.name == args.user]
    if not users:
        raise CityBusError(f"no user named {args.user!r}; `citybus auth show` lists them all")
    keys = {u.key for u in users}
    rows = [r for r in model.table() if (r.account, r.user) in keys]
    declassifiers = [u for u in model.declassifiers() if u.key in keys]
    unconfigured = sorted(
        k for k, i in infos.items() if i.revoked_at is None and k not in {u.key for u in model.users}
    )
    tokens = TokenStore(setup.directory)
    if args.json:
        document = {
            "directory": str(setup.directory),
            "config_file": str(setup.directory / ACCOUNTS_FILE),
            "rights": [
                {
                    "account": r.account,
                    "user": r.user,
                    "kind": r.kind,
                    "declassifier": r.declassifier,
                    "right": r.right,
                    "subject": r.subject,
                    "why": r.why,
                }
                for r in rows
            ],
            "declassifiers": [{"account": u.account.value, "user": u.name} for u in declassifiers],
            "users": [_state(u, infos, setup.store) for u in users],
            "unconfigured": [{"account": a, "user": n} for a, n in unconfigured],
            **token_command.token_document(tokens, args.user),
        }
        out(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    table = [("ACCOUNT", "USER", "KIND", "RIGHT", "SUBJECT", "WHY")]
    table += [(r.account, r.user, r.kind, r.right, r.subject, r.why) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(w) for cell, w in zip(line, widths, strict=False)]
        out("  ".join([*cells, line[-1]]))
    out("")
    if declassifiers:
        out("declassifiers (the only doors from internal or personal data to public data):")
        for user in declassifiers:
            out(f"  {user.account.value}/{user.name}")
    else:
        out("declassifiers: none (no user turns internal or personal data into public data)")
    out("")
    out(f"credentials in {setup.directory}:")
    for user in users:
        state = _state(user, infos, setup.store)
        if state.get("password_file"):
            text = f"issued, an MQTT password in {state['password_file']}"
        elif state["credentials"] == "issued":
            text = f"issued, public key {state['public_key']}, seed file {state['seed_file']}"
        elif state["credentials"] == "revoked":
            text = f"revoked at {state['revoked_at']}: cannot connect"
        else:
            text = "none: cannot connect (run `citybus auth generate`)"
        out(f"  {user.account.value}/{user.name}: {text}")
    for account, name in unconfigured:
        out(f"  {account}/{name}: issued, but no longer configured (revoke it)")
    out("")
    token_command.show_tokens(tokens, args.user)
    return 0


def register(subparsers: Any) -> None:
    """Add ``auth`` to the ``citybus`` command, with an ``add-<kind>`` for every kind of guest the
    installed packages declare."""
    providers = discover_providers()
    auth = subparsers.add_parser("auth", help="credentials and permissions on the broker")
    sub = auth.add_subparsers(dest="auth_command", metavar="COMMAND", required=True)

    def command(
        name: str, help: str, func: Callable[[argparse.Namespace, Config], int]
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help)
        parser.add_argument(
            "--dir",
            type=Path,
            help="the credentials directory (default: credentials in the server's data dir)",
        )
        parser.set_defaults(func=func)
        return parser

    gen = command(
        "generate",
        "issue missing credentials and write accounts.conf",
        partial(cmd_generate, providers=providers),
    )
    gen.add_argument(
        "--server-config",
        type=Path,
        metavar="FILE",
        help="the nats-server configuration that will include accounts.conf, to print the include line "
        "for (default: nats-server.conf beside the credentials directory, the embedded server's)",
    )
    for kind in (k for p in providers for k in p.guests):
        add = command(f"add-{kind.name}", kind.help, partial(cmd_add, providers=providers, kind=kind))
        add.add_argument(
            "name", metavar="NAME", help=f"the {kind.name}'s name, kebab case (e.g. 'acme-sensors')"
        )
        add.add_argument(
            "--produces",
            nargs="+",
            default=[],
            metavar="CONTRACT",
            help="contracts it publishes, e.g. environment.beach-observation (name or name@version)",
        )
        accounts = [a.value for a in kind.accounts]
        add.add_argument(
            "--account",
            type=str.upper,
            choices=accounts,
            default=accounts[0],
            help=f"the account it lives in (default {accounts[0].lower()})",
        )
    revoke = command(
        "revoke",
        "revoke a guest or a component's user (then reload the server)",
        partial(cmd_revoke, providers=providers),
    )
    revoke.add_argument("name", metavar="NAME", help="the guest or component instance")
    revoke.add_argument("--account", choices=[a.value for a in Account], help="when NAME is in both")
    token_command.register(command)
    show = command("show", "who may do what, and why; the tokens", partial(cmd_show, providers=providers))
    show.add_argument("--user", metavar="NAME", help="only this user")
    show.add_argument("--json", action="store_true", help="as JSON")
