"""What the installed packages declare, and the one access model built from it.

``bus`` never imports ``adapters`` or ``sandbox``: each package says what its configured
components (and its guests) may do through the entry-point group ``citybus.access``, whose entry
points name an :class:`AccessProvider`. :func:`discover_declarations` asks them all (and reads the
guests from the credentials directory); :func:`access_model` is the one way to build the
:class:`~bus.access.policy.AccessModel` of ``citybus up`` and ``citybus auth``.

Decisions, and why:

* **Declarations are recorded.** :func:`declared_record` and :func:`declared_from_record` write
  what a running ``citybus up`` declared into ``instance.json`` and read it back, so
  ``citybus auth`` rebuilds the model the running instance uses, whatever directory it is run
  from (rebuilding it from the configuration at hand would drop the users it runs as).
* **Guests are not recorded**: they live in the credentials directory (:mod:`bus.access.guests`),
  which ``citybus auth`` keeps itself.
* **On-demand users** (a command such as the sandbox's replay run by hand) are issued credentials
  like the running components', but do not make ``SANDBOX`` the account ``citybus up`` serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from bus.access.guests import GuestKind, load_guests
from bus.access.policy import AccessModel
from bus.access.provisioner import buckets_by_account
from bus.access.users import Account, Declaration
from bus.config import Config
from bus.errors import ConfigError
from contracts import Classification, Contract, Registry, UnknownContractError

__all__ = [
    "ACCESS_GROUP",
    "AccessProvider",
    "Declared",
    "access_model",
    "declaration_from_record",
    "declaration_record",
    "declared_from_record",
    "declared_record",
    "discover_declarations",
    "discover_providers",
]

ACCESS_GROUP = "citybus.access"
"""Entry points naming an :class:`AccessProvider`: what a package's components and guests may do."""


@dataclass(frozen=True, slots=True)
class Declared:
    """What the packages declare: the components by account, the guests, the on-demand users."""

    city: tuple[Declaration, ...] = ()
    sandbox: tuple[Declaration, ...] = ()
    guests: tuple[Declaration, ...] = ()
    on_demand: tuple[Declaration, ...] = ()
    """Users of ``SANDBOX`` for commands run on demand: issued like the components', but not
    running, so they do not make ``SANDBOX`` the account ``citybus up`` serves."""
    problems: tuple[str, ...] = ()
    """What a package could not declare (an entry point that did not load), for warnings."""

    def buckets(self) -> dict[Account, tuple[str, ...]]:
        """The key-value buckets declared in each account, which its provisioner creates (the
        on-demand users' in ``SANDBOX``, as :func:`access_model` places them)."""
        return buckets_by_account(self.city, self.sandbox + self.on_demand, self.guests)

    def __add__(self, other: Declared) -> Declared:
        return Declared(
            self.city + other.city,
            self.sandbox + other.sandbox,
            self.guests + other.guests,
            self.on_demand + other.on_demand,
            self.problems + other.problems,
        )


def _nothing(config: Config) -> Declared:
    return Declared()


@dataclass(frozen=True, slots=True)
class AccessProvider:
    """A package's ``citybus.access`` entry point."""

    declared: Callable[[Config], Declared] = _nothing
    """What its configured components declare, by account."""
    guests: tuple[GuestKind, ...] = ()
    """The kinds of guests it lets operators add (``citybus auth add-<kind>``)."""


def discover_providers() -> list[AccessProvider]:
    """The ``citybus.access`` entry points of the installed packages, in name order."""
    found = sorted(entry_points(group=ACCESS_GROUP), key=lambda e: e.name)
    providers: list[AccessProvider] = [ep.load() for ep in found]
    return providers


def discover_declarations(
    config: Config,
    providers: Sequence[AccessProvider] | None = None,
    *,
    credentials: Path | None = None,
) -> Declared:
    """Everything the installed packages declare for ``config``, with the guests of
    ``credentials`` (default: the configured credentials directory)."""
    providers = discover_providers() if providers is None else providers
    directory = config.credentials_dir() if credentials is None else credentials
    declared = Declared()
    for provider in providers:
        declared += provider.declared(config)
        for kind in provider.guests:
            declared += Declared(guests=tuple(g.declaration() for g in load_guests(directory, kind)))
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
        guests=declared.guests,
        mqtt_users=config.auth.mqtt_users if mqtt_users is None else mqtt_users,
    )


def declared_record(declared: Declared) -> dict[str, list[dict[str, Any]]]:
    """The adapter instances' declarations as JSON-ready data, contracts as ``name@version``.

    Guests are left out: they live in the credentials directory, which ``citybus auth`` keeps itself.
    """
    one = declaration_record
    return {
        "city": [one(d) for d in declared.city],
        "sandbox": [one(d) for d in declared.sandbox],
        "on_demand": [one(d) for d in declared.on_demand],
    }


def declaration_record(d: Declaration) -> dict[str, Any]:
    """One declaration as JSON-ready data (contracts as ``name@version``)."""
    return {
        "name": d.name,
        "consumes": [_ref(c) for c in d.consumes],
        "produces": [_ref(c) for c in d.produces],
        "declassifier": d.declassifier,
        "raw_subscribe": list(d.raw_subscribe),
        "raw_publish": list(d.raw_publish),
        "durable": d.durable,
        "control": d.control,
        "kind": d.kind,
        "reads": [c.value for c in d.reads],
        "dead_letters": d.dead_letters,
        "personal": d.personal,
        "clocks": d.clocks,
        "owns": list(d.owns),
        "sources": list(d.sources),
        "answers": [_ref(c) for c in d.answers],
        "privacy": d.privacy,
        "asks": list(d.asks),
        "stores": list(d.stores),
        "recalls": [_ref(c) for c in d.recalls],
        "account": d.account.value if d.account is not None else None,
    }


def declaration_from_record(d: dict[str, Any], registry: Registry) -> Declaration:
    """The declaration :func:`declaration_record` wrote (``KeyError``, ``TypeError``,
    ``ValueError`` or :class:`~contracts.UnknownContractError` when it cannot be read back)."""
    return Declaration(
        str(d["name"]),
        consumes=tuple(registry.get(str(c)) for c in d["consumes"]),
        produces=tuple(registry.get(str(c)) for c in d["produces"]),
        declassifier=bool(d["declassifier"]),
        raw_subscribe=tuple(str(p) for p in d["raw_subscribe"]),
        raw_publish=tuple(str(p) for p in d["raw_publish"]),
        durable=bool(d["durable"]),
        control=None if d["control"] is None else str(d["control"]),
        kind=str(d["kind"]),
        reads=tuple(Classification(c) for c in d["reads"]),
        dead_letters=bool(d["dead_letters"]),
        personal=bool(d["personal"]),
        clocks=bool(d["clocks"]),
        owns=tuple(str(s) for s in d.get("owns", ())),
        sources=tuple(str(s) for s in d.get("sources", ())),
        answers=tuple(registry.get(str(c)) for c in d.get("answers", ())),
        privacy=bool(d.get("privacy", False)),
        asks=tuple(str(s) for s in d.get("asks", ())),
        stores=tuple(str(s) for s in d.get("stores", ())),
        recalls=tuple(registry.get(str(c)) for c in d.get("recalls", ())),
        account=Account(str(d["account"])) if d.get("account") else None,
    )


def declared_from_record(record: Any, registry: Registry) -> Declared:
    """The declarations :func:`declared_record` wrote; a :class:`~bus.errors.ConfigError` if they
    cannot be read back (a contract no longer installed, a file from another version)."""
    try:
        return Declared(
            city=tuple(declaration_from_record(d, registry) for d in record["city"]),
            sandbox=tuple(declaration_from_record(d, registry) for d in record["sandbox"]),
            on_demand=tuple(declaration_from_record(d, registry) for d in record.get("on_demand", ())),
        )
    except (KeyError, TypeError, ValueError, UnknownContractError) as exc:
        raise ConfigError(
            f"cannot read what the running citybus up declared ({exc}): restart it with this version "
            "of citybus and its installed packages"
        ) from None


def _ref(cls: type[Contract]) -> str:
    info = cls.__contract__
    return f"{info.name}@{info.version}"
