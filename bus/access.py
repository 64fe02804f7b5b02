"""Who may publish and subscribe what: the access model, and the nats-server configuration it renders.

Public, internal and personal data must never mix, and the broker is what keeps them apart — not
the good manners of clients. This module turns the contracts and the adapters' declarations into
nats-server *accounts* and *users* with publish/subscribe allow (and deny) lists. It is pure: it
takes plain :class:`Declaration` values (``bus`` never imports ``adapters``; the runtime makes the
declarations from the adapters) and NKey public keys (:mod:`bus.credentials` makes those), and
returns configuration text and a table; it does no I/O.

Accounts
--------

* ``CITY`` — production. Its subjects are the city's.
* ``SANDBOX`` — the replayed city (the sandbox's replay is an adapter of this account) and the
  pilots. An account is a subject namespace of its own: nothing published in one account is seen
  in the other, so a pilot cannot reach ``CITY`` whatever it publishes.
* ``SYS`` — nats-server's system account (server events, monitoring requests); no data.

JetStream is enabled per account (``CITY`` and ``SANDBOX`` each have their own streams, with the
same names); ``SYS`` cannot have it.

The permission model
--------------------

========== ================================================ ================================================
kind       publishes                                        subscribes
========== ================================================ ================================================
service    the dead letters                                 its inbox
(both)
provision- ``$JS.API.STREAM.{INFO,CREATE,UPDATE}.<s>`` for  its inbox
er (both)  every stream of the registry, nothing else
adapter    the subjects of the contracts it produces; the   the subjects of the contracts it consumes; its
(CITY or   dead letters; its ``raw_publish``; its clock     ``raw_subscribe``; its control subjects (with
SANDBOX)   (with ``control``); the JetStream API of its own ``control``); its inbox; in SANDBOX the
           durable consumers (``durable``). *Never*: where  replay's clocks. *Never*: as for publishing
           a raw pattern with a wildcard first token meets
           a namespace of the bus or the broker
public     requests ``city.public.rpc.>``                   ``city.public.>``, its inbox. *Never*: others'
(both)                                                      requests
internal   requests ``city.public.rpc.>``,                  ``city.public.>``, ``city.internal.>`` (dead
(both)     ``city.internal.rpc.>``                          letters included), its inbox. *Never*: others'
                                                            requests
operator   ``citybus.control.>``; ``$JS.API.INFO``,         ``city.public.>``, ``city.internal.>``,
(both)     ``STREAM.NAMES`` and the ``STREAM.INFO`` of      ``citybus.clock.>``, its inbox. *Never*:
           every stream that is not personal                others' requests
pilot      the subjects of the contracts it produces        ``city.public.>``, ``city.internal.>`` (the
(SANDBOX)  (never personal); its ``raw_publish`` (outside   sandbox's dead letters included),
           ``city.``); the JetStream API of its own         ``citybus.clock.>``, its ``raw_subscribe``, its
           durable consumers. *Never*: the dead letters     inbox. *Never*: others' requests
mqtt       the raw subjects ``CITY``'s adapters read        the raw subjects they publish (downlinks)
(CITY)     (uplinks), with the same denials. Password
           login, MQTT connections only
system     everything (the system account)                  everything
(SYS)
========== ================================================ ================================================

Why each right exists, and the decisions behind them:

* **Contracts, per contract.** An adapter publishes ``city.<class>.<domain>.<event>.*`` for each
  contract it produces (any entity) and subscribes the same for each it consumes; nothing wider.
  So personal subjects are readable only by adapters that declare a personal contract, and only
  that contract's subjects. No client kind reads ``city.personal.>``.
* **One door for declassification.** An adapter that consumes internal or personal contracts and
  publishes public ones (or raw subjects, which are unclassified and so count as public) is refused
  unless it declares itself a declassifier (:class:`DeclassificationError`). The table lists the
  declassifiers, so the few that exist can be reviewed.
* **Raw subjects stay outside the bus's namespaces.** ``raw_subscribe``/``raw_publish`` carry
  native formats (LoRaWAN uplinks, bridged MQTT topics). A raw pattern whose first token is literal
  may not be ``city``, ``citybus``, ``_INBOX`` or ``$…`` (data moves only as declared contracts,
  control only through ``control``). A pattern whose first token is a wildcard
  (``*.devices.*.up``, how network servers' topics look) is allowed, and the user gets a *deny*
  for every subject it shares with those namespaces (``city.devices.*.up``, ``_INBOX.devices.*.up``
  …): nats-server then refuses such a publish and filters such deliveries. A pattern whose denials
  would cut into the user's own rights (``*.>``) is refused.
* **Private inboxes.** Every user's replies come to ``_INBOX.<user>.>`` (nats-py's
  ``inbox_prefix`` option; see :attr:`User.inbox_prefix`), never to ``_INBOX.>``: a shared inbox
  space would let any client read every other client's replies — JetStream acknowledgements,
  control answers, the answers of internal services.
* **Requests are for responders.** ``city.<class>.rpc.>`` subjects can carry what a citizen asked
  ("from my home to the hospital"), so the client kinds that may read a whole class are denied its
  requests (nats-server filters them out of ``city.public.>`` subscriptions).
* **Answers by ``allow_responses``.** An adapter with ``control`` answers control requests: it may
  publish once to the reply subject of a request it received, and nowhere else in other users'
  inboxes. Adapters without ``control`` do not get it, since a consumer would otherwise be able to
  answer a producer's JetStream publish with a forged acknowledgement.
* **Durable consumers, minimal JetStream rights.** A pull consumer created by nats-py's
  ``pull_subscribe`` needs, for its stream ``S`` and durable name ``D``
  (:func:`bus.subjects.durable_name`, fixed per instance and contract):
  ``$JS.API.CONSUMER.INFO.S.D`` (bind to it if it exists),
  ``$JS.API.CONSUMER.CREATE.S.D.<filter>`` (create it; the filter subject is part of the API
  subject, and the server checks it against the request, so the adapter can create no consumer
  over a contract it does not consume), ``$JS.API.CONSUMER.MSG.NEXT.S.D`` (fetch), and
  ``$JS.ACK.S.D.>`` (ack, nak, term). Not ``CONSUMER.DURABLE.CREATE``, whose subject has no
  filter.
* **The service** is the citybus runtime's own connection, open as long as it runs: it publishes
  dead letters of messages no adapter took, and may touch no stream.
* **The provisioner** is a connection ``citybus up`` opens while it starts, in each account, and
  closes once the streams are provisioned. Provisioning reads a stream (``STREAM.INFO``), creates
  it when it is missing (``STREAM.CREATE``) and applies the configured limits to one that exists
  (``STREAM.UPDATE``: a changed ``streams.max_age`` must reach the streams already there). These
  three, for the registry's stream names exactly, are all it gets: no ``DELETE``, ``PURGE``,
  ``MSG.DELETE``, ``SNAPSHOT``, ``RESTORE``, no consumers, no data. An update can still drop
  messages (lower limits), which is why it lives on a user of its own and not on the service's
  long-lived connection, and why no other user may send it.
* **Dead letters are internal.** Every adapter may *publish* them (its bus dead-letters what it
  cannot handle); internal clients and operators read them; the public does not — a dead letter
  carries the original payload. **Pilots** read the sandbox's dead letters, which is how they see
  why their messages were refused (a personal message's dead letter is personal, out of their
  reach), and may never publish one: a forged dead letter would be taken for the bus's record.
* **Operators** steer components (``citybus.control.>``), watch clocks and read public and internal
  data, and read the state of the streams that are not personal (``STREAM.INFO`` can list
  subjects, and a personal subject names a person).
* **Pilots** (companies) exist in ``SANDBOX`` only. They read the replayed public and internal data
  and the replay's clock, publish only the contracts they declare, and never handle personal data:
  a pilot declaring a personal contract is refused.
* **MQTT users** are the devices' side of the adapters: a LoRaWAN network server publishes the
  uplinks an adapter reads from raw subjects and reads the downlinks adapters publish there —
  nothing in ``city.``. MQTT clients cannot sign with an NKey, so they log in with a password;
  the configuration holds its bcrypt hash and allows the user on MQTT connections only.
* **Accounts are fixed.** ``service``, ``provisioner``, ``operator``, ``internal`` and ``public``
  exist in both ``CITY`` and ``SANDBOX`` (separate keys); ``system`` in ``SYS``. An adapter or
  pilot cannot be named like one of them.

The configuration (:meth:`AccessModel.render_config`) is the ``accounts`` block and
``system_account``, to be included in the server's configuration; users without a key (revoked,
or not issued yet) are left out, so they cannot connect. nats-server applies a new version on a
reload (SIGHUP) and disconnects the users it no longer knows.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bus import subjects
from bus.errors import CityBusError
from contracts import Classification, Contract, PersonalDeadLetter

__all__ = [
    "AccessError",
    "AccessModel",
    "Account",
    "AuthRow",
    "DeclassificationError",
    "Declaration",
    "Grant",
    "Kind",
    "Permissions",
    "User",
]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
# An NKey user public key: 'U' and 55 more base32 characters (35 bytes, no padding).
_USER_KEY = re.compile(r"^U[A-Z2-7]{55}$")
# A bcrypt hash as nats-server accepts it: "$2a$", "$2b$" ... cost, then salt and hash.
_BCRYPT = re.compile(r"^\$2[abxy]\$\d{2}\$[./A-Za-z0-9]{53}$")

PUBLIC = Classification.PUBLIC
INTERNAL = Classification.INTERNAL
PERSONAL = Classification.PERSONAL


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
    PUBLIC = "public"
    INTERNAL = "internal"
    OPERATOR = "operator"
    PILOT = "pilot"
    MQTT = "mqtt"
    SYSTEM = "system"


_CLIENT_KINDS = (Kind.SERVICE, Kind.PROVISIONER, Kind.OPERATOR, Kind.INTERNAL, Kind.PUBLIC)
_RESERVED_NAMES = frozenset(kind.value for kind in (*_CLIENT_KINDS, Kind.SYSTEM))


@dataclass(frozen=True, slots=True)
class Declaration:
    """What one adapter instance (or pilot) says it does; the runtime makes these from the adapters.

    ``name`` is the instance name (the user's name); ``control`` the component name of its control
    subjects (``replay`` for ``citybus.control.replay.<name>.*``), if it takes control requests.
    """

    name: str
    consumes: tuple[type[Contract], ...]
    produces: tuple[type[Contract], ...]
    declassifier: bool
    raw_subscribe: tuple[str, ...] = ()
    raw_publish: tuple[str, ...] = ()
    durable: bool = False
    control: str | None = None


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


@dataclass
class _Rights:
    """Grants collected in order, without repeats."""

    publish: list[Grant] = field(default_factory=list)
    subscribe: list[Grant] = field(default_factory=list)
    deny_publish: list[Grant] = field(default_factory=list)
    deny_subscribe: list[Grant] = field(default_factory=list)

    @staticmethod
    def _add(grants: list[Grant], subject: str, why: str) -> None:
        if all(g.subject != subject for g in grants):
            grants.append(Grant(subject, why))

    def pub(self, subject: str, why: str) -> None:
        self._add(self.publish, subject, why)

    def sub(self, subject: str, why: str) -> None:
        self._add(self.subscribe, subject, why)

    def permissions(self, *, responses: bool = False) -> Permissions:
        return Permissions(
            publish=tuple(self.publish),
            subscribe=tuple(self.subscribe),
            deny_publish=tuple(self.deny_publish),
            deny_subscribe=tuple(self.deny_subscribe),
            responses=responses,
        )


def _describe(cls: type[Contract]) -> str:
    info = cls.__contract__
    return f"{info.name} v{info.version} ({info.classification.value})"


def _stream_of(cls: type[Contract]) -> str:
    info = cls.__contract__
    return subjects.stream_name(info.classification, info.domain)


class AccessModel:
    """The users of every account and their rights, from the contracts and the declarations.

    :param contracts: every contract the bus carries (the registry): the service may provision
        their streams and operators may read the state of the ones that are not personal.
    :param adapters: the adapter instances of ``CITY``.
    :param sandbox_adapters: the adapter instances of ``SANDBOX`` (the replay, and adapters that
        run on its clock).
    :param pilots: the pilots' declarations (``SANDBOX`` only).

    Raises :class:`AccessError` (or :class:`DeclassificationError`) for a declaration it refuses.
    """

    def __init__(
        self,
        contracts: Iterable[type[Contract]],
        *,
        adapters: Sequence[Declaration] = (),
        sandbox_adapters: Sequence[Declaration] = (),
        pilots: Sequence[Declaration] = (),
        mqtt_users: Sequence[str] = (),
    ) -> None:
        pairs = sorted({(c.__contract__.classification, c.__contract__.domain) for c in contracts})
        self._streams = [(cls, subjects.stream_name(cls, domain)) for cls, domain in pairs]
        users: list[User] = []
        for account, declared in ((Account.CITY, adapters), (Account.SANDBOX, sandbox_adapters)):
            users += [self._client(account, kind) for kind in _CLIENT_KINDS]
            users += [self._adapter(account, d, Kind.ADAPTER) for d in declared]
        users += [self._adapter(Account.SANDBOX, d, Kind.PILOT) for d in pilots]
        users += [self._mqtt(name, adapters) for name in mqtt_users]
        users.append(
            User(
                account=Account.SYS,
                name=Kind.SYSTEM.value,
                kind=Kind.SYSTEM,
                permissions=Permissions(unrestricted=True),
            )
        )
        seen: dict[tuple[str, str], User] = {}
        for user in users:
            other = seen.get(user.key)
            if other is not None:
                raise AccessError(
                    f"two users are named {user.name!r} in account {user.account} (kinds {other.kind} and "
                    f"{user.kind}); give one of them another instance name"
                )
            seen[user.key] = user
        self.users: tuple[User, ...] = tuple(users)
        """Every user, account by account."""

    # -- queries ----------------------------------------------------------------------------------

    def user(self, account: Account | str, name: str) -> User:
        """The user ``name`` of ``account``; ``KeyError`` if there is none."""
        for user in self.users:
            if user.key == (Account(account).value, name):
                return user
        raise KeyError(f"no user {name!r} in account {account}")

    def declassifiers(self) -> list[User]:
        """The users through which internal or personal data may become public."""
        return [u for u in self.users if u.declassifier]

    def missing(self, keys: Mapping[tuple[str, str], str]) -> list[User]:
        """The users that have no public key in ``keys`` (and would be left out of the configuration)."""
        return [u for u in self.users if u.key not in keys]

    def table(self) -> list[AuthRow]:
        """Who may do what, one row per right, for ``citybus auth show``."""
        rows: list[AuthRow] = []
        for user in self.users:

            def row(right: str, subject: str, why: str, user: User = user) -> AuthRow:
                return AuthRow(
                    account=user.account.value,
                    user=user.name,
                    kind=user.kind.value,
                    declassifier=user.declassifier,
                    right=right,
                    subject=subject,
                    why=why,
                )

            perms = user.permissions
            if perms.unrestricted:
                rows.append(row("everything", ">", "the system account: server events and monitoring"))
                continue
            rows += [row("publish", g.subject, g.why) for g in perms.publish]
            rows += [row("subscribe", g.subject, g.why) for g in perms.subscribe]
            if perms.responses:
                rows.append(row("reply", "(reply subjects)", "answers, once, the requests it receives"))
            rows += [row("never publish", g.subject, g.why) for g in perms.deny_publish]
            rows += [row("never subscribe", g.subject, g.why) for g in perms.deny_subscribe]
        return rows

    # -- the nats-server configuration ------------------------------------------------------------

    def render_config(
        self,
        keys: Mapping[tuple[str, str], str],
        passwords: Mapping[tuple[str, str], str] | None = None,
    ) -> str:
        """The ``accounts`` block and ``system_account`` for nats-server, one NKey user per key.

        ``keys`` maps ``(account, user)`` to the user's NKey *public* key
        (:meth:`bus.credentials.CredentialStore.public_keys`); ``passwords`` maps the MQTT users to
        the *bcrypt hash* of their password (MQTT clients cannot sign with an NKey). A user without
        a key is left out (a comment says so) and cannot connect.
        """
        hashes = dict(passwords or {})
        for (account_name, user_name), value in hashes.items():
            if not _BCRYPT.match(value):
                raise AccessError(
                    f"the password given for {account_name}/{user_name} is not a bcrypt hash: the "
                    "configuration never holds a password itself"
                )
        keys = {**keys, **hashes}
        owners: dict[str, User] = {}
        for user in self.users:
            key = keys.get(user.key)
            if key is None or user.kind is Kind.MQTT:
                continue
            if not _USER_KEY.match(key):
                hint = " (that is a seed, which must never leave its file)" if key.startswith("S") else ""
                raise AccessError(
                    f"the key given for {user.account}/{user.name} is not an NKey user public key "
                    f"('U' and 55 base32 characters){hint}"
                )
            if key in owners:
                other = owners[key]
                raise AccessError(
                    f"{other.account}/{other.name} and {user.account}/{user.name} have the same public key; "
                    "issue each user its own credentials"
                )
            owners[key] = user
        lines = [
            "# Generated by citybus from the contracts and the adapters' declarations (bus/access.py);",
            "# edits are overwritten. A reload (SIGHUP) applies a new version and disconnects removed users.",
            "accounts {",
        ]
        for account in Account:
            lines.append(f"  {account.value} {{")
            if account is not Account.SYS:
                lines.append("    jetstream: enabled")
            lines.append("    users: [")
            for user in (u for u in self.users if u.account is account):
                key = keys.get(user.key)
                label = f"{user.name} ({user.kind.value}{', declassifier' if user.declassifier else ''})"
                if key is None:
                    lines.append(f"      # {label}: no credentials, cannot connect")
                    continue
                lines.append(f"      # {label}")
                if user.kind is Kind.MQTT:
                    lines += _render_user(key, user.permissions, password_of=user.name)
                else:
                    lines += _render_user(key, user.permissions)
            lines += ["    ]", "  }"]
        lines += ["}", f"system_account: {Account.SYS.value}"]
        return "\n".join(lines) + "\n"

    # -- users ------------------------------------------------------------------------------------

    def _client(self, account: Account, kind: Kind) -> User:
        r = _Rights()
        inbox = subjects.inbox_filter(kind.value)
        requests = "requests are for their responders: they can carry what a citizen asked"
        if kind is Kind.PROVISIONER:
            for _, stream in self._streams:
                for action in ("INFO", "CREATE", "UPDATE"):
                    r.pub(subjects.js_api("STREAM", action, stream), f"provisions the stream {stream}")
            r.sub(inbox, "its replies (JetStream answers), and nobody else's")
            return User(account=account, name=kind.value, kind=kind, permissions=r.permissions())
        if kind is Kind.SERVICE:
            r.pub(subjects.dead_letter_filter(), "dead-letters messages that no adapter could take")
            r.pub(
                subjects.contract_filter(PersonalDeadLetter),
                "dead-letters a personal message apart from the others (its payload is personal)",
            )
            r.sub(inbox, "its replies (JetStream answers and acknowledgements), and nobody else's")
            return User(account=account, name=kind.value, kind=kind, permissions=r.permissions())
        readable = (PUBLIC,) if kind is Kind.PUBLIC else (PUBLIC, INTERNAL)
        if kind is Kind.OPERATOR:
            r.pub(subjects.control_filter(), "steers running components (pause, resume, seek a replay)")
            r.pub(subjects.js_api("INFO"), "reads the account's JetStream usage")
            r.pub(subjects.js_api("STREAM", "NAMES"), "lists the streams")
            for classification, stream in self._streams:
                if classification is not PERSONAL:
                    r.pub(subjects.js_api("STREAM", "INFO", stream), f"reads the state of {stream}")
        else:
            for classification in readable:
                r.pub(
                    subjects.request_classification_filter(classification),
                    f"asks {classification.value} services",
                )
        for classification in readable:
            why = f"reads {classification.value} data"
            if classification is INTERNAL:
                why += ", dead letters included"
            r.sub(subjects.classification_filter(classification), why)
            r.deny_subscribe.append(Grant(subjects.request_classification_filter(classification), requests))
        if kind is Kind.OPERATOR:
            r.sub(subjects.clock_filter(), "watches the clocks of replays")
        r.sub(inbox, "its replies, and nobody else's")
        return User(account=account, name=kind.value, kind=kind, permissions=r.permissions())

    def _mqtt(self, name: str, adapters: Sequence[Declaration]) -> User:
        """A user of the MQTT listener (``CITY``): the devices' side of the adapters' raw subjects."""
        label = f"MQTT user {name!r} (CITY)"
        if not _NAME.match(name):
            raise AccessError(f"{label}: the name must be kebab case ('network-server')")
        if name in _RESERVED_NAMES:
            raise AccessError(f"{label}: {name!r} is the name of a built-in user; choose another name")
        r = _Rights()
        for d in adapters:
            for pattern in d.raw_subscribe:
                r.pub(pattern, f"sends what adapter {d.name} reads (uplinks: topic a/b is subject a.b)")
            for pattern in d.raw_publish:
                r.sub(pattern, f"receives what adapter {d.name} sends (downlinks)")
        _deny_namespaces(r, label)
        return User(account=Account.CITY, name=name, kind=Kind.MQTT, permissions=r.permissions())

    def _adapter(self, account: Account, d: Declaration, kind: Kind) -> User:
        label = f"{'pilot' if kind is Kind.PILOT else 'adapter'} {d.name!r} ({account})"
        _check_declaration(d, label, kind)
        r = _Rights()
        for cls in d.produces:
            r.pub(subjects.contract_filter(cls), f"produces {_describe(cls)}")
        if kind is Kind.PILOT:
            r.deny_publish.append(
                Grant(
                    subjects.dead_letter_filter(),
                    "dead letters are the bus's record: a pilot could forge them",
                )
            )
        else:
            r.pub(subjects.dead_letter_filter(), "dead-letters what it cannot translate or handle")
        if any(c.__contract__.classification is PERSONAL for c in d.consumes):
            r.pub(
                subjects.contract_filter(PersonalDeadLetter),
                "dead-letters a personal message it cannot handle apart from the others",
            )
        for pattern in d.raw_publish:
            r.pub(pattern, "a raw subject it publishes (a native format, a bridge)")
        if d.control is not None:
            r.pub(subjects.clock_subject(d.name), "publishes the time it keeps (a replay's clock)")
        if d.durable:
            for cls in d.consumes:
                stream, durable = _stream_of(cls), subjects.durable_name(d.name, cls)
                what = f"its durable consumer {durable} of {cls.__contract__.name}"
                r.pub(subjects.js_api("CONSUMER", "INFO", stream, durable), f"binds to {what}")
                r.pub(
                    subjects.js_api("CONSUMER", "CREATE", stream, durable, subjects.contract_filter(cls)),
                    f"creates {what}, over that contract only",
                )
                r.pub(subjects.js_api("CONSUMER", "MSG", "NEXT", stream, durable), f"fetches from {what}")
                r.pub(subjects.js_ack_filter(stream, durable), f"acknowledges what {what} delivered")
        if kind is Kind.PILOT:
            for classification in (PUBLIC, INTERNAL):
                r.sub(
                    subjects.classification_filter(classification),
                    f"reads the sandbox's replayed {classification.value} data"
                    + (
                        ", and the sandbox's dead letters (its own among them)"
                        if classification is INTERNAL
                        else ""
                    ),
                )
                r.deny_subscribe.append(
                    Grant(
                        subjects.request_classification_filter(classification),
                        "requests are for their responders: they can carry what a citizen asked",
                    )
                )
        else:
            for cls in d.consumes:
                r.sub(subjects.contract_filter(cls), f"consumes {_describe(cls)}")
        for pattern in d.raw_subscribe:
            r.sub(pattern, "a raw subject it reads (a native format, a bridge)")
        if d.control is not None:
            r.sub(
                subjects.control_subject(d.control, d.name, "*"),
                f"takes control requests as a {d.control} component",
            )
        if account is Account.SANDBOX:
            r.sub(subjects.clock_filter(), 'follows the replay\'s time (clock = "sandbox")')
        r.sub(
            subjects.inbox_filter(d.name), "its replies (JetStream answers, acknowledgements), nobody else's"
        )
        _deny_namespaces(r, label)
        return User(
            account=account,
            name=d.name,
            kind=kind,
            permissions=r.permissions(responses=d.control is not None),
            declassifier=d.declassifier,
        )


def _check_declaration(d: Declaration, label: str, kind: Kind) -> None:
    """Refuse what the model cannot grant safely, saying what to change."""
    if not _NAME.match(d.name):
        raise AccessError(f"{label}: the name must be kebab case ('beach-sensors'), as instance names are")
    if d.name in _RESERVED_NAMES:
        raise AccessError(
            f"{label}: {d.name!r} is the name of a built-in user ({', '.join(sorted(_RESERVED_NAMES))}); "
            "rename the instance"
        )
    if d.control is not None and not _NAME.match(d.control):
        raise AccessError(f"{label}: control component {d.control!r} must be kebab case ('replay')")
    for direction, patterns in (("raw_subscribe", d.raw_subscribe), ("raw_publish", d.raw_publish)):
        for pattern in patterns:
            try:
                subjects.validate_pattern(pattern)
            except ValueError as exc:
                raise AccessError(f"{label}: {direction}: {exc}") from None
            first = pattern.split(".")[0]
            if first in ("*", ">"):
                continue  # allowed, with denials where it meets the bus's namespaces (_deny_namespaces)
            if first.startswith("$") or any(subjects.overlaps(pattern, r) for r in subjects.reserved_roots()):
                raise AccessError(
                    f"{label}: {direction} {pattern!r} is in a namespace of the bus or the broker "
                    f"({first}.): data moves only as declared contracts (consumes/produces), control "
                    "requests only through `control`; give raw subjects a prefix of their own ('ttn.>')"
                )
    if kind is Kind.PILOT:
        personal = [c for c in (*d.consumes, *d.produces) if c.__contract__.classification is PERSONAL]
        if personal:
            raise AccessError(
                f"{label}: pilots never handle personal data, and it declares "
                + ", ".join(_describe(c) for c in personal)
            )
        if d.control is not None:
            raise AccessError(f"{label}: pilots take no control requests; operators steer the sandbox")
    private_in = [c for c in d.consumes if c.__contract__.classification is not PUBLIC]
    public_out = [_describe(c) for c in d.produces if c.__contract__.classification is PUBLIC]
    public_out += [f"raw subject {p!r} (unclassified)" for p in d.raw_publish]
    if private_in and public_out and not d.declassifier:
        raise DeclassificationError(
            f"{label} consumes {', '.join(_describe(c) for c in private_in)} and publishes "
            f"{', '.join(public_out)}, which makes it a declassifier: declare it (`declassifier = True` "
            "on the adapter class, for an aggregate with privacy thresholds) or stop publishing public data"
        )


def _deny_namespaces(r: _Rights, label: str) -> None:
    """Deny where a raw pattern with a wildcard first token meets a namespace of the bus or broker."""
    for allowed, denied, direction in (
        (r.subscribe, r.deny_subscribe, "raw_subscribe"),
        (r.publish, r.deny_publish, "raw_publish"),
    ):
        for grant in list(allowed):
            if grant.subject.split(".")[0] not in ("*", ">"):
                continue
            for root in subjects.reserved_roots():
                cut = subjects.intersection(grant.subject, root)
                if cut is None:
                    continue
                # Only rights with a literal first token can clash: other wildcard patterns get their
                # own denials at the same places.
                clash = [
                    g.subject
                    for g in allowed
                    if g.subject.split(".")[0] not in ("*", ">") and subjects.overlaps(g.subject, cut)
                ]
                if clash:
                    raise AccessError(
                        f"{label}: {direction} {grant.subject!r} reaches into {root} where it also holds "
                        f"{', '.join(clash)}; give the pattern a literal first token"
                    )
                if all(g.subject != cut for g in denied):
                    denied.append(Grant(cut, f"where {grant.subject} meets {root}: not a raw subject"))


def _render_user(key: str, perms: Permissions, *, password_of: str | None = None) -> list[str]:
    if password_of is None:
        lines = ["      {", f"        nkey: {json.dumps(key)}"]
    else:
        # An MQTT client sends a user name and password; only MQTT connections may use them.
        lines = [
            "      {",
            f"        user: {json.dumps(password_of)}",
            f"        password: {json.dumps(key)}",
            '        allowed_connection_types: ["MQTT"]',
        ]
    if not perms.unrestricted:
        lines.append("        permissions: {")
        for direction, allow, deny in (
            ("publish", perms.publish, perms.deny_publish),
            ("subscribe", perms.subscribe, perms.deny_subscribe),
        ):
            lines.append(f"          {direction}: {{")
            # An empty allow list is not "nothing": nats-server would read it as no list at all.
            if allow:
                lines += _render_list("allow", allow)
            else:
                lines.append('            deny: [">"]')
            if deny and allow:
                lines += _render_list("deny", deny)
            lines.append("          }")
        if perms.responses:
            lines.append("          allow_responses: true")
        lines.append("        }")
    lines.append("      }")
    return lines


def _render_list(name: str, grants: Sequence[Grant]) -> list[str]:
    lines = [f"            {name}: ["]
    lines += [f"              {json.dumps(g.subject)}  # {g.why}" for g in grants]
    lines.append("            ]")
    return lines
