"""The access model of what citybus is configured to run: its adapter instances and the pilots.

:mod:`bus.access` turns plain declarations into nats-server accounts and users, and knows no
adapters (``bus`` never imports ``adapters``). This module makes those declarations from the
configured adapter instances, keeps the pilots' declarations in the credentials directory, and
writes the server's configuration (``accounts.conf``) with the keys of :mod:`bus.credentials`.
``citybus auth`` (:mod:`adapters.auth_cli`) is its command line.

The credentials directory (default ``<server data dir>/credentials``, next to the embedded
server's store)::

    credentials/              0700
      accounts.conf           0600  the nats-server accounts block (public keys only)
      pilots.toml             0600  the pilots and the contracts each declared
      CITY/ SANDBOX/ SYS/     0700  one seed file per user (bus.credentials)

Decisions, and why:

* **The instances are the ones ``citybus up`` runs**: the ``[adapters.*]`` sections (enabled
  ones), or the installed adapters' default instances when there are none. A disabled instance
  gets no user, so it cannot connect; enabling it means running ``citybus auth generate`` again.
* **Which account.** An instance runs in ``SANDBOX`` when it is a replay (its adapter answers
  ``control = "replay"`` requests) or runs on a replay's clock (``clock = "sandbox"``): it
  handles replayed data, which must never reach ``CITY``. Every other instance runs in ``CITY``.
* **What an instance declares** is what its object says, after its configuration: ``consumed()``
  and ``produced()`` (a bridge or archive configured with its contracts), ``raw_subjects()``,
  and the class's ``declassifier``, ``durable`` and ``control``. The model refuses what it
  cannot grant safely (:class:`bus.access.AccessError`), naming the instance.
* **Pilots' contracts are pinned** as ``name@version`` in ``pilots.toml``: a new major version of
  a contract does not widen what a pilot may publish until someone adds it. Pilots declare what
  they produce only; they read the replayed public and internal data whatever they declare.
* **Files are written whole** (a temporary file created 0600, synced, then renamed over the old
  one), so a server reloading at that moment reads the old configuration or the new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from adapters.discovery import DiscoveryProblem, discover
from adapters.instances import Instance, instances_from_config
from adapters.runtime import default_sections
from bus.access import AccessModel, Declaration
from bus.config import Config
from bus.credentials import Credential, CredentialError, CredentialStore
from bus.errors import ConfigError
from contracts import Contract, UnknownContractError, default_registry

__all__ = [
    "ACCOUNTS_FILE",
    "CREDENTIALS_DIR",
    "PILOTS_FILE",
    "Generated",
    "Pilot",
    "ByAccount",
    "access_model",
    "configured_instances",
    "contract_ref",
    "credentials_dir",
    "declaration",
    "declarations",
    "generate",
    "in_sandbox",
    "load_pilots",
    "save_pilots",
    "write_private",
]

CREDENTIALS_DIR = "credentials"
"""The credentials directory's name inside the server's data directory."""
ACCOUNTS_FILE = "accounts.conf"
"""The nats-server configuration written into the credentials directory."""
PILOTS_FILE = "pilots.toml"
"""The pilots and their declared contracts, in the credentials directory."""
REPLAY_CONTROL = "replay"
"""The control component of a replay: an adapter that answers it runs in ``SANDBOX``."""

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def credentials_dir(config: Config, given: Path | None = None) -> Path:
    """The credentials directory: ``given`` (``--dir``), else ``credentials`` in the server's data dir."""
    if given is not None:
        return Path(given).expanduser()
    return config.resolved_data_dir() / CREDENTIALS_DIR


# -- adapter instances ----------------------------------------------------------------------------


def configured_instances(config: Config) -> tuple[list[Instance], list[DiscoveryProblem]]:
    """The instances ``citybus up`` runs with ``config``, and the entry points that did not load."""
    found = discover()
    sections = config.adapters or default_sections(found.adapters)
    return instances_from_config(sections, found.adapters), found.problems


def in_sandbox(instance: Instance) -> bool:
    """Whether an instance belongs to ``SANDBOX``: a replay, or an instance on a replay's clock."""
    return instance.adapter.control == REPLAY_CONTROL or instance.clock is not None


def declaration(instance: Instance) -> Declaration:
    """What one configured instance may do, from its adapter object and class."""
    adapter = instance.create()
    subscribe, publish = adapter.raw_subjects()
    cls = instance.adapter
    return Declaration(
        instance.name,
        consumes=adapter.consumed(),
        produces=adapter.produced(),
        declassifier=cls.declassifier,
        raw_subscribe=subscribe,
        raw_publish=publish,
        durable=cls.durable,
        control=cls.control,
    )


@dataclass(frozen=True, slots=True)
class ByAccount:
    """The declarations of the instances, by account."""

    city: tuple[Declaration, ...]
    sandbox: tuple[Declaration, ...]


def declarations(instances: Iterable[Instance]) -> ByAccount:
    """The declarations of ``instances``, split between ``CITY`` and ``SANDBOX``."""
    city: list[Declaration] = []
    sandbox: list[Declaration] = []
    for instance in instances:
        (sandbox if in_sandbox(instance) else city).append(declaration(instance))
    return ByAccount(tuple(city), tuple(sandbox))


# -- pilots ---------------------------------------------------------------------------------------


def contract_ref(cls: type[Contract]) -> str:
    """How ``pilots.toml`` names a contract: ``name@version``."""
    info = cls.__contract__
    return f"{info.name}@{info.version}"


@dataclass(frozen=True, slots=True)
class Pilot:
    """A company piloting in the sandbox: its name (its user) and the contracts it publishes."""

    name: str
    produces: tuple[type[Contract], ...]
    added: datetime

    def declaration(self) -> Declaration:
        """The pilot's declaration for the access model."""
        return Declaration(self.name, consumes=(), produces=self.produces, declassifier=False)


def load_pilots(directory: Path) -> list[Pilot]:
    """The pilots recorded in ``<directory>/pilots.toml`` (none if it does not exist)."""
    path = directory / PILOTS_FILE
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        return []
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix it, or remove the broken pilot") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    table = data.get("pilots", {})
    unknown = sorted(set(data) - {"pilots"})
    if unknown or not isinstance(table, dict):
        raise ConfigError(f"{path}: only [pilots.<name>] tables belong here (found {', '.join(unknown)})")
    registry = default_registry()
    pilots = []
    for name, entry in table.items():
        where = f"{path}: [pilots.{name}]"
        if not _NAME.match(name):
            raise ConfigError(f"{where}: a pilot's name must be kebab case ('acme-sensors')")
        if not isinstance(entry, dict) or set(entry) - {"produces", "added"}:
            raise ConfigError(f"{where}: the keys are produces (a list of contract names) and added")
        names = entry.get("produces", [])
        added = entry.get("added")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}: produces must be a list of contract names")
        if not isinstance(added, datetime) or added.tzinfo is None:
            raise ConfigError(f"{where}: added must be a date and time with an offset (2025-05-01T10:00:00Z)")
        try:
            produces = tuple(registry.get(n) for n in names)
        except UnknownContractError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        pilots.append(Pilot(name, produces, added))
    return pilots


def save_pilots(directory: Path, pilots: Sequence[Pilot]) -> Path:
    """Write ``<directory>/pilots.toml`` (0600) with ``pilots``, in name order."""
    lines = [
        "# The sandbox's pilots and the contracts each may publish, kept by `citybus auth add-pilot`",
        "# and `citybus auth revoke`. After an edit by hand, run `citybus auth generate`.",
    ]
    for pilot in sorted(pilots, key=lambda p: p.name):
        refs = ", ".join(f'"{contract_ref(c)}"' for c in pilot.produces)
        added = pilot.added.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        lines += ["", f"[pilots.{pilot.name}]", f"produces = [{refs}]", f"added = {added}"]
    path = directory / PILOTS_FILE
    write_private(path, "\n".join(lines) + "\n")
    return path


# -- the model and the server's configuration -----------------------------------------------------


def access_model(instances: Iterable[Instance], pilots: Sequence[Pilot]) -> AccessModel:
    """The access model of every contract, these adapter instances and these pilots."""
    split = declarations(instances)
    return AccessModel(
        default_registry(),
        adapters=split.city,
        sandbox_adapters=split.sandbox,
        pilots=[p.declaration() for p in pilots],
    )


@dataclass(frozen=True, slots=True)
class Generated:
    """What :func:`generate` did."""

    config_file: Path
    credentials: dict[tuple[str, str], Credential]
    """Every user that has credentials now, by ``(account, user)``."""
    issued: tuple[tuple[str, str], ...]
    """The users issued credentials just now."""
    revoked: tuple[tuple[str, str], ...]
    """Users of the model left out because they were revoked: they cannot connect."""
    unconfigured: tuple[tuple[str, str], ...]
    """Credentials in the directory of users the model no longer has (a removed instance)."""


def generate(model: AccessModel, store: CredentialStore) -> Generated:
    """Issue credentials to every user of ``model`` that has none (revoked users stay revoked) and
    write the server's configuration, ``accounts.conf``, next to them."""
    before = set(store.public_keys())
    wanted = [u.key for u in model.users]
    credentials = store.ensure(wanted)
    text = model.render_config({key: c.public_key for key, c in credentials.items()})
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


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, atomically, readable by its owner only (0600)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CredentialError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            if sys.platform != "win32":
                os.fchmod(out.fileno(), 0o600)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
