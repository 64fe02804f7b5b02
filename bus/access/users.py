"""The vocabulary of access control: accounts, kinds of users, declarations, users and their rights.

These are the values :mod:`bus.access.policy` takes and returns, and what
:mod:`bus.access.render` writes as nats-server configuration and ``citybus auth show`` prints: a
:class:`Declaration` (what a user says it does, made by the package that knows it), the
:class:`Account` and :class:`Kind` a user belongs to, its :class:`Permissions` as lists of
:class:`Grant` (each with why it is there), the :class:`User` itself, and :class:`AuthRow`, one
line of the table. The rules that decide who gets what are :mod:`bus.access.policy`'s; this
module holds no rule.

Accounts
--------

* ``CITY`` — production. Its subjects are the city's.
* ``SANDBOX`` — the replayed city and its *guests*, users from outside that operators add by hand
  (the sandbox's pilots). An account is a subject namespace of its own: nothing published in one
  account is seen in the other, so a guest cannot reach ``CITY`` whatever it publishes — unless
  its kind lets operators add it to ``CITY`` (:attr:`bus.access.guests.GuestKind.accounts`), as a
  package does for users that only ask on their own subject (a person asking about themselves).
* ``SYS`` — nats-server's system account (server events, monitoring requests); no data.

JetStream is enabled per account (``CITY`` and ``SANDBOX`` each have their own streams, with the
same names); ``SYS`` cannot have it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bus import subjects
from bus.errors import CityBusError
from contracts import Classification, Contract

__all__ = [
    "AccessError",
    "Account",
    "AuthRow",
    "DeclassificationError",
    "Declaration",
    "Grant",
    "Kind",
    "Permissions",
    "User",
]


class AccessError(CityBusError, ValueError):
    """A declaration the access model refuses; the message names the user and what to change."""


class DeclassificationError(AccessError):
    """An adapter reads internal or personal data and publishes public data without being a declassifier."""


class Account(enum.StrEnum):
    """The nats-server accounts: separate subject namespaces."""

    CITY = "CITY"
    SANDBOX = "SANDBOX"
    SYS = "SYS"


class Kind(enum.StrEnum):
    """The kinds of users, each with its own rule for what it may do."""

    SERVICE = "service"
    PROVISIONER = "provisioner"
    ADAPTER = "adapter"
    """A component ``citybus up`` (or a command) runs, from its package's declaration."""
    GUEST = "guest"
    """A user from outside, added by hand (``citybus auth add-<kind>``), in ``SANDBOX``."""
    PUBLIC = "public"
    INTERNAL = "internal"
    OPERATOR = "operator"
    MQTT = "mqtt"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Declaration:
    """What one user says it does; its package makes it (an adapter instance, a guest).

    ``name`` is the instance name (the user's name); ``control`` the component name of its control
    subjects (``<control>`` in ``citybus.control.<control>.<name>.*``), if it takes control requests.
    """

    name: str
    consumes: tuple[type[Contract], ...]
    produces: tuple[type[Contract], ...]
    declassifier: bool
    raw_subscribe: tuple[str, ...] = ()
    raw_publish: tuple[str, ...] = ()
    durable: bool = False
    control: str | None = None
    kind: str = Kind.ADAPTER.value
    """What its package calls it, shown by ``citybus auth show`` and in refusals."""
    reads: tuple[Classification, ...] = ()
    """Classes it reads whole (``city.<class>.>``, its requests denied), beside what it consumes."""
    dead_letters: bool = True
    """Whether it publishes dead letters; ``False`` denies them explicitly (they are the bus's record)."""
    personal: bool = True
    """Whether it may handle personal contracts at all; ``False`` refuses a declaration naming one."""
    clocks: bool = False
    """Whether it follows the clocks of the components that keep their own time."""
    owns: tuple[str, ...] = ()
    """Subjects of the city's own entities it publishes (a replay: its recordings' subjects): no
    guest may publish them (the broker denies them)."""
    sources: tuple[str, ...] = ()
    """The ``ce-source`` values it publishes ``owns`` under: on any other subject they are forged
    (:class:`bus.origin.SourceGuard`)."""
    answers: tuple[type[Contract], ...] = ()
    """Request contracts it answers (``city.<class>.rpc.<domain>.<event>.*``): it receives them
    and may reply once to each (``allow_responses``), never send them."""
    privacy: bool = False
    """Whether it is the privacy service: it reads every personal stream's stored messages by
    sequence, and it alone erases them and destroys keys in the vault (:mod:`bus.personal.rights`)."""
    asks: tuple[str, ...] = ()
    """Request subjects it may send (``bus.subjects.request_filter(cls, entity)``): a tenant such as
    an organisation of the volunteer platform asks on its own entity's subject only, so the broker,
    not the responder, keeps it from asking as another."""
    stores: tuple[str, ...] = ()
    """JetStream key-value buckets it keeps (``bus.subjects.store_bucket``): the account's provisioner
    creates them; it may bind to them, read and write their keys (compare-and-set), and no other bucket."""
    recalls: tuple[type[Contract], ...] = ()
    """Contracts it produces whose stored messages it reads back (``STREAM.INFO`` and
    ``STREAM.MSG.GET`` of their stream, and their subjects to hear of new ones): state rebuilt
    after a restart and kept in step between replicas."""
    account: Account | None = None
    """The account a guest lives in (:mod:`bus.access.guests`): ``None`` is ``SANDBOX``, where every
    guest lives unless its kind allows ``CITY``. A component is placed by the list it is declared in."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One subject (or pattern) in a permission list, and why it is there."""

    subject: str
    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Permissions:
    """A user's allow and deny lists. ``unrestricted``: no lists at all (the system user)."""

    publish: tuple[Grant, ...] = ()
    subscribe: tuple[Grant, ...] = ()
    deny_publish: tuple[Grant, ...] = ()
    deny_subscribe: tuple[Grant, ...] = ()
    responses: bool = False
    """nats-server's ``allow_responses``: it may answer (once) the requests it receives."""
    unrestricted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """One nats-server user: where it lives, what kind it is, and what it may do."""

    account: Account
    name: str
    kind: Kind
    permissions: Permissions
    declassifier: bool = False
    role: str = ""
    """What its package calls it (``Declaration.kind``); the kind's name when empty."""

    @property
    def title(self) -> str:
        """How tables name its kind: its role, else its kind."""
        return self.role or self.kind.value

    @property
    def key(self) -> tuple[str, str]:
        """``(account, name)``: how credentials and public keys are looked up."""
        return (self.account.value, self.name)

    @property
    def inbox_prefix(self) -> str:
        """The inbox prefix this user must connect with (nats-py ``inbox_prefix=``)."""
        return subjects.inbox_prefix(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRow:
    """One line of ``citybus auth show``: a user may (or may never) do ``right`` on ``subject``."""

    account: str
    user: str
    kind: str
    declassifier: bool
    right: str
    """``publish``, ``subscribe``, ``never publish``, ``never subscribe``, ``reply`` or ``everything``."""
    subject: str
    why: str
