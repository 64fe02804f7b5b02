"""Guests: users from outside that operators add by hand, kept in a TOML file of their kind.

An upper package declares a kind of guest (:class:`GuestKind`, through its ``citybus.access``
entry point): the sandbox declares its *pilots*, companies trying their services on the replayed
city. ``citybus auth add-<kind> NAME --produces CONTRACT…`` adds one; ``citybus auth revoke NAME``
removes it. Each kind's guests live in ``<kind>s.toml`` in the credentials directory
(``pilots.toml``)::

    [pilots.acme]
    produces = ["environment.beach-observation@1"]
    added = 2025-05-01T10:00:00Z

A guest lives in ``SANDBOX``. A kind may let operators add its guests to ``CITY`` too
(:attr:`GuestKind.accounts`; ``citybus auth add-<kind> NAME --account city``, kept as
``account = "CITY"`` in its entry): for people from outside who use production, such as a person
whose user may only ask about themselves. What such a guest may do is still its package's
declaration, and the model's rules for guests hold in either account.

Decisions, and why:

* **The package says what a guest may do** (:attr:`GuestKind.declare` makes its
  :class:`~bus.access.policy.Declaration` from its name and contracts); this module only keeps the
  list, so ``bus`` knows no kind of guest by name.
* **Contracts are pinned** as ``name@version``: a new major version of a contract does not widen
  what a guest may publish until someone adds it.
* **Written by a TOML writer of our own** (:func:`toml_string`, :func:`toml_key`), escaping
  strings as the TOML spec says, rather than with f-strings: a contract or key with a quote or a
  backslash would otherwise break the file (or add keys to it). The file is small and flat —
  tables of strings, lists of strings and a date — so forty lines serve, where a dependency
  (``tomli-w``) would be one more package to pin for one file.
* **Files are written whole** (a temporary file created 0600, synced, then renamed).
* **``SANDBOX`` unless the kind says otherwise, and the operator chooses.** Pilots try their
  products on replayed data and stay out of ``CITY``; a kind that names ``CITY`` among its
  :attr:`~GuestKind.accounts` still gets ``SANDBOX`` by default, so a real account is a decision
  written on the command line (``--account city``) and kept in the file, never a default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bus.access.keys import write_private
from bus.access.users import Account, Declaration
from bus.errors import CityBusError, ConfigError
from contracts import Contract, UnknownContractError, default_registry

__all__ = [
    "Guest",
    "GuestKind",
    "contract_ref",
    "contracts_named",
    "load_guests",
    "save_guests",
    "toml_key",
    "toml_string",
]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# TOML's short escapes; every other control character is written \uXXXX.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


@dataclass(frozen=True, slots=True)
class GuestKind:
    """A kind of guest an upper package lets operators add (``citybus auth add-<name>``)."""

    name: str
    """Kebab case, singular (``pilot``): the command ``add-pilot``, the file ``pilots.toml``."""
    declare: Callable[[str, tuple[type[Contract], ...]], Declaration]
    """What a guest of this kind may do, from its name and the contracts it publishes."""
    help: str
    """The command's one-line help."""
    reads: str
    """What every guest of this kind reads, said when one is added."""
    accounts: tuple[Account, ...] = (Account.SANDBOX,)
    """The accounts its guests may live in, the default first (``SANDBOX``; ``CITY`` only for a kind
    whose guests may use production, e.g. ask on their own request subject and nothing else)."""

    @property
    def file(self) -> str:
        """The file of this kind's guests, in the credentials directory."""
        return f"{self.name}s.toml"

    @property
    def table(self) -> str:
        """The TOML table holding them (``pilots``)."""
        return f"{self.name}s"


@dataclass(frozen=True, slots=True)
class Guest:
    """One guest: its kind, its name (its user), the contracts it publishes, and its account."""

    kind: GuestKind
    name: str
    produces: tuple[type[Contract], ...]
    added: datetime
    account: Account = Account.SANDBOX

    def declaration(self) -> Declaration:
        """What it may do, as its kind's package says, in its account."""
        return replace(self.kind.declare(self.name, self.produces), account=self.account)


def contract_ref(cls: type[Contract]) -> str:
    """How a guest file names a contract: ``name@version``."""
    info = cls.__contract__
    return f"{info.name}@{info.version}"


def contracts_named(names: Sequence[str]) -> tuple[type[Contract], ...]:
    """The contracts ``names`` name (``name`` or ``name@version``), each once; a
    :class:`~bus.errors.CityBusError` naming an unknown one (``--produces`` of ``add-<kind>``)."""
    registry = default_registry()
    found: list[type[Contract]] = []
    for name in names:
        try:
            cls = registry.get(name)
        except UnknownContractError as exc:
            raise CityBusError(f"--produces: {exc}") from None
        if cls not in found:
            found.append(cls)
    return tuple(found)


def load_guests(directory: Path, kind: GuestKind) -> list[Guest]:
    """The guests of ``kind`` in ``directory`` (none if its file does not exist)."""
    path = directory / kind.file
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        return []
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}; fix it, or remove the broken {kind.name}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    table = data.get(kind.table, {})
    unknown = sorted(set(data) - {kind.table})
    if unknown or not isinstance(table, dict):
        raise ConfigError(
            f"{path}: only [{kind.table}.<name>] tables belong here (found {', '.join(unknown)})"
        )
    registry = default_registry()
    guests = []
    for name, entry in table.items():
        where = f"{path}: [{kind.table}.{name}]"
        if not _NAME.match(name):
            raise ConfigError(f"{where}: a {kind.name}'s name must be kebab case ('acme-sensors')")
        if not isinstance(entry, dict) or set(entry) - {"produces", "added", "account"}:
            raise ConfigError(f"{where}: the keys are produces (a list of contract names), added and account")
        names = entry.get("produces", [])
        added = entry.get("added")
        account = entry.get("account", Account.SANDBOX.value)
        if account not in [a.value for a in kind.accounts]:
            allowed = " or ".join(f'"{a.value}"' for a in kind.accounts)
            raise ConfigError(f"{where}: account must be {allowed} (a {kind.name} lives there)")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}: produces must be a list of contract names")
        if not isinstance(added, datetime) or added.tzinfo is None:
            raise ConfigError(f"{where}: added must be a date and time with an offset (2025-05-01T10:00:00Z)")
        try:
            produces = tuple(registry.get(n) for n in names)
        except UnknownContractError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        guests.append(Guest(kind, name, produces, added, Account(account)))
    return guests


def save_guests(directory: Path, kind: GuestKind, guests: Sequence[Guest]) -> Path:
    """Write ``<directory>/<kind>s.toml`` (0600) with ``guests``, in name order."""
    lines = [
        f"# The {kind.table} and the contracts each may publish (in SANDBOX unless it says), kept by",
        f"# `citybus auth add-{kind.name}` and `citybus auth revoke`. After an edit by hand, run",
        "# `citybus auth generate`.",
    ]
    for guest in sorted(guests, key=lambda g: g.name):
        refs = ", ".join(toml_string(contract_ref(c)) for c in guest.produces)
        added = guest.added.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        lines += [
            "",
            f"[{toml_key(kind.table)}.{toml_key(guest.name)}]",
            f"produces = [{refs}]",
            f"added = {added}",
        ]
        if guest.account is not Account.SANDBOX:
            lines.append(f"account = {toml_string(guest.account.value)}")
    path = directory / kind.file
    write_private(path, "\n".join(lines) + "\n")
    return path


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(
        _ESCAPES.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in text
    )
    return f'"{escaped}"'


def toml_key(key: str) -> str:
    """``key`` as a TOML key: bare when it may be, else quoted."""
    return key if _BARE_KEY.match(key) else toml_string(key)
