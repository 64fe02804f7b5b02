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

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from adapters.discovery import DiscoveryProblem, discover
from adapters.instances import Instance, instances_from_config
from adapters.runtime import default_sections
from bus.access import AccessModel, Account, Declaration
from bus.auth import ACCOUNTS_FILE, Declared, Generated, generate, write_private
from bus.auth import access_model as bus_access_model
from bus.config import Config
from bus.errors import ConfigError
from contracts import Contract, UnknownContractError, default_registry

__all__ = [
    "ACCOUNTS_FILE",
    "PILOTS_FILE",
    "Generated",
    "Pilot",
    "ByAccount",
    "access_model",
    "configured_instances",
    "contract_ref",
    "credentials_dir",
    "declaration",
    "declared",
    "declarations",
    "generate",
    "in_sandbox",
    "load_pilots",
    "save_pilots",
    "write_private",
]

PILOTS_FILE = "pilots.toml"
"""The pilots and their declared contracts, in the credentials directory."""
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def credentials_dir(config: Config, given: Path | None = None) -> Path:
    """The credentials directory: ``given`` (``--dir``), else ``auth.dir``, else ``credentials`` in the
    server's data dir."""
    if given is not None:
        return Path(given).expanduser()
    return config.credentials_dir()


# -- adapter instances ----------------------------------------------------------------------------


def configured_instances(config: Config) -> tuple[list[Instance], list[DiscoveryProblem]]:
    """The instances ``citybus up`` runs with ``config``, and the entry points that did not load."""
    found = discover()
    sections = config.adapters or default_sections(found.adapters)
    return instances_from_config(sections, found.adapters), found.problems


def in_sandbox(instance: Instance) -> bool:
    """Whether an instance belongs to ``SANDBOX``: a replay, or an instance on a replay's clock."""
    return instance.account == Account.SANDBOX.value


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


def access_model(instances: Iterable[Instance], pilots: Sequence[Pilot], config: Config) -> AccessModel:
    """The access model of every contract, these adapter instances, these pilots and the MQTT users."""
    split = declarations(instances)
    declared = Declared(split.city, split.sandbox, tuple(p.declaration() for p in pilots))
    return bus_access_model(default_registry(), declared, config)


def declared(config: Config) -> Declared:
    """The ``citybus.access`` entry point: what ``citybus up`` runs with ``config`` declares — its
    adapter instances by account, and the pilots of its credentials directory."""
    instances, _problems = configured_instances(config)  # the runtime reports the problems
    split = declarations(instances)
    pilots = load_pilots(config.credentials_dir())
    return Declared(split.city, split.sandbox, tuple(p.declaration() for p in pilots))
