"""Access control at run time: the credentials and server configuration ``citybus up`` runs with,
and how a connection logs in as its user.

:mod:`bus.access` says who may do what (pure); :mod:`bus.credentials` keeps the keys. This module
joins them for the runtime and the client commands:

* :func:`generate` issues the credentials every user of a model lacks and writes ``accounts.conf``
  (public keys and bcrypt hashes only) into the credentials directory;
* :func:`server_include` is the line that makes nats-server read it;
* :func:`discover_declarations` asks the installed packages (entry-point group ``citybus.access``)
  what their configured components declare — ``bus`` never imports ``adapters``;
* :func:`declared_record` and :func:`declared_from_record` write those declarations into
  ``instance.json`` and read them back, so ``citybus auth`` rebuilds the access model a running
  ``citybus up`` uses, whatever directory it is run from;
* :func:`login_options` are a user's nats-py ``connect`` options (its seed *file*, its private
  inbox prefix, TLS);
* :func:`tls_context` trusts a server's certificate.

Layout of the credentials directory (``auth.dir``, default ``<server data dir>/credentials``)::

    credentials/              0700
      accounts.conf           0600  the nats-server accounts block (public keys and hashes only)
      pilots.toml             0600  the pilots and the contracts each declared
      CITY/ SANDBOX/ SYS/     0700  one seed file per user, one password file per MQTT user
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from bus import subjects
from bus.access import AccessModel, Account, Declaration, Kind
from bus.config import Config
from bus.credentials import Credential, CredentialError, CredentialStore, write_private
from bus.errors import ConfigError
from contracts import Contract, Registry, UnknownContractError

__all__ = [
    "ACCESS_GROUP",
    "ACCOUNTS_FILE",
    "Declared",
    "Generated",
    "access_model",
    "account_name",
    "declared_from_record",
    "declared_record",
    "discover_declarations",
    "generate",
    "seed_file_options",
    "server_include",
    "tls_context",
    "write_private",
]

ACCESS_GROUP = "citybus.access"
"""Entry points ``(Config) -> Declared``: what a package's configured components declare."""
ACCOUNTS_FILE = "accounts.conf"
"""The nats-server configuration written into the credentials directory."""


@dataclass(frozen=True, slots=True)
class Declared:
    """What the configured components of a package declare, by account, and the sandbox's pilots."""

    city: tuple[Declaration, ...] = ()
    sandbox: tuple[Declaration, ...] = ()
    pilots: tuple[Declaration, ...] = ()
    on_demand: tuple[Declaration, ...] = ()
    """Users of ``SANDBOX`` for commands run on demand (``citybus replay``): issued like the
    instances', but not running, so they do not make ``SANDBOX`` the account ``citybus up`` serves."""

    def __add__(self, other: Declared) -> Declared:
        return Declared(
            self.city + other.city,
            self.sandbox + other.sandbox,
            self.pilots + other.pilots,
            self.on_demand + other.on_demand,
        )


DeclarationsProvider = Callable[[Config], Declared]


def discover_declarations(
    config: Config, providers: Sequence[DeclarationsProvider] | None = None
) -> Declared:
    """Everything the installed packages' configured components declare (``citybus.access``)."""
    if providers is None:
        found = sorted(entry_points(group=ACCESS_GROUP), key=lambda e: e.name)
        providers = [ep.load() for ep in found]
    declared = Declared()
    for provider in providers:
        declared += provider(config)
    return declared


def access_model(
    contracts: Iterable[type[Contract]],
    declared: Declared,
    config: Config,
    *,
    mqtt_users: Sequence[str] | None = None,
) -> AccessModel:
    """The access model of these contracts, declarations and MQTT users (default: the configured)."""
    return AccessModel(
        contracts,
        adapters=declared.city,
        sandbox_adapters=declared.sandbox + declared.on_demand,
        pilots=declared.pilots,
        mqtt_users=config.auth.mqtt_users if mqtt_users is None else mqtt_users,
    )


def declared_record(declared: Declared) -> dict[str, list[dict[str, Any]]]:
    """The adapter instances' declarations as JSON-ready data, contracts as ``name@version``.

    Pilots are left out: they live in the credentials directory (``pilots.toml``), which
    ``citybus auth`` keeps itself.
    """

    def one(d: Declaration) -> dict[str, Any]:
        return {
            "name": d.name,
            "consumes": [_ref(c) for c in d.consumes],
            "produces": [_ref(c) for c in d.produces],
            "declassifier": d.declassifier,
            "raw_subscribe": list(d.raw_subscribe),
            "raw_publish": list(d.raw_publish),
            "durable": d.durable,
            "control": d.control,
        }

    return {
        "city": [one(d) for d in declared.city],
        "sandbox": [one(d) for d in declared.sandbox],
        "on_demand": [one(d) for d in declared.on_demand],
    }


def declared_from_record(record: Any, registry: Registry) -> Declared:
    """The declarations :func:`declared_record` wrote; a :class:`~bus.errors.ConfigError` if they
    cannot be read back (a contract no longer installed, a file from another version)."""
    try:

        def one(d: dict[str, Any]) -> Declaration:
            return Declaration(
                str(d["name"]),
                consumes=tuple(registry.get(str(c)) for c in d["consumes"]),
                produces=tuple(registry.get(str(c)) for c in d["produces"]),
                declassifier=bool(d["declassifier"]),
                raw_subscribe=tuple(str(p) for p in d["raw_subscribe"]),
                raw_publish=tuple(str(p) for p in d["raw_publish"]),
                durable=bool(d["durable"]),
                control=None if d["control"] is None else str(d["control"]),
            )

        return Declared(
            city=tuple(one(d) for d in record["city"]),
            sandbox=tuple(one(d) for d in record["sandbox"]),
            on_demand=tuple(one(d) for d in record.get("on_demand", ())),
        )
    except (KeyError, TypeError, UnknownContractError) as exc:
        raise ConfigError(
            f"cannot read what the running citybus up declared ({exc}): restart it with this version "
            "of citybus and its installed packages"
        ) from None


def _ref(cls: type[Contract]) -> str:
    info = cls.__contract__
    return f"{info.name}@{info.version}"


# -- credentials and the server's configuration ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generated:
    """What :func:`generate` did."""

    config_file: Path
    credentials: dict[tuple[str, str], Credential]
    """Every NKey user that has credentials now, by ``(account, user)``."""
    issued: tuple[tuple[str, str], ...]
    """The users issued credentials just now."""
    revoked: tuple[tuple[str, str], ...]
    """Users of the model left out because they were revoked: they cannot connect."""
    unconfigured: tuple[tuple[str, str], ...]
    """Credentials in the directory of users the model no longer has (a removed instance)."""


def generate(model: AccessModel, store: CredentialStore) -> Generated:
    """Issue credentials to every user of ``model`` that has none (revoked users stay revoked),
    passwords to its MQTT users, and write the server's configuration, ``accounts.conf``."""
    before = set(store.public_keys())
    wanted = [u.key for u in model.users if u.kind is not Kind.MQTT]
    credentials = store.ensure(wanted)
    passwords = {u.key: store.ensure_password(*u.key).bcrypt_hash for u in model.users if u.kind is Kind.MQTT}
    text = model.render_config({key: c.public_key for key, c in credentials.items()}, passwords)
    path = store.directory / ACCOUNTS_FILE
    write_private(path, text)
    known = set(wanted)
    return Generated(
        config_file=path,
        credentials=credentials,
        issued=tuple(k for k in wanted if k in credentials and k not in before),
        revoked=tuple(k for k in wanted if k not in credentials),
        unconfigured=tuple(sorted(k for k in store.public_keys() if k not in known)),
    )


def server_include(accounts_file: Path, server_config_dir: Path) -> str:
    """The ``include`` line for a nats-server configuration in ``server_config_dir``.

    nats-server joins an include's path to the including file's directory, absolute or not, so the
    path must be relative to it.
    """
    relative = os.path.relpath(Path(accounts_file).resolve(), Path(server_config_dir).resolve())
    return f'include "{relative}"'


# -- logging in -----------------------------------------------------------------------------------


def account_name(text: str) -> str:
    """``city`` / ``CITY`` → ``CITY``; a :class:`~bus.errors.ConfigError` names the accounts."""
    try:
        return Account(text.upper()).value
    except ValueError:
        names = ", ".join(a.value.lower() for a in Account if a is not Account.SYS)
        raise ConfigError(f"there is no account {text!r}: the accounts are {names}") from None


def seed_file_options(path: Path, user: str | None = None) -> dict[str, Any]:
    """``connect`` options for a seed file handed to a user (a pilot's ``<name>.nk``).

    The user's name (for its private inbox prefix) is ``user``, else the file's name without
    ``.nk``, as ``citybus auth`` names them.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CredentialError(f"the seed file {path} does not exist: give the .nk file citybus auth issued")
    name = user or path.name.removesuffix(".nk")
    return {"nkeys_seed": str(path), "inbox_prefix": subjects.inbox_prefix(name)}


def tls_context(*ca_files: str | Path) -> ssl.SSLContext:
    """A client TLS context that trusts the system's CAs and ``ca_files`` (a self-signed certificate
    is its own CA); the server's name or address must match its certificate."""
    context = ssl.create_default_context()
    for ca in ca_files:
        try:
            context.load_verify_locations(cafile=str(Path(ca).expanduser()))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot read the CA certificate {ca} ({exc.strerror or exc}): give a PEM file "
                "(nats.tls_ca, or the embedded server's server.tls_cert)"
            ) from None
    return context
