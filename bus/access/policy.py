"""Who may publish and subscribe what: the access model (policy).

Public, internal and personal data must never mix, and the broker is what keeps them apart — not
the good manners of clients. This module turns the contracts and the declarations of the upper
packages into nats-server *accounts* and *users* with publish/subscribe allow (and deny) lists. It
is pure: it takes plain :class:`Declaration` values (``bus`` never imports ``adapters`` or
``sandbox``; they declare what their components and guests may do through the ``citybus.access``
entry point, :mod:`bus.access.declared`) and returns users and a table; it does no I/O.
:mod:`bus.access.render` writes the users as nats-server configuration.

The model knows the accounts and generic kinds of users. What a particular user needs beyond its
contracts — reading whole classes, following clocks, never dead-lettering, never handling personal
data, asking as a tenant (:mod:`bus.access.tenancy`) — is a field of its declaration, set by the
package that knows why (the sandbox declares its pilots and its replay that way). The values it
speaks in are :mod:`bus.access.users` (where the accounts are described), re-exported here.

The permission model
--------------------

========== ================================================ ================================================
kind       publishes                                        subscribes
========== ================================================ ================================================
service    the dead letters                                 its inbox
(both)
provision- ``$JS.API.STREAM.{INFO,CREATE,UPDATE}.<s>`` for  its inbox
er (both)  every stream of the registry and every key-value
           bucket its account's users declare, nothing else
adapter    the subjects of the contracts it produces; the   the subjects of the contracts it consumes; the
(CITY or   dead letters (unless ``dead_letters=False``);    classes it ``reads`` whole; its
SANDBOX)   its ``raw_publish``; its clock (with             ``raw_subscribe``; its control subjects (with
           ``control``); the JetStream API of its own       ``control``); the clocks (``clocks``); its
           durable consumers (``durable``). *Never*: where  inbox. *Never*: as for publishing; others'
           a raw pattern with a wildcard first token meets  requests in the classes it reads whole;
           a namespace of the bus or the broker; it         the requests it ``answers``
           replies once to the requests it receives
public     requests ``city.public.rpc.>``; ``STREAM.INFO``  ``city.public.>``, its inbox. *Never*: others'
(both)     and ``STREAM.MSG.GET`` of the public streams     requests
internal   as public, and internal requests and streams     ``city.public.>``, ``city.internal.>`` (dead
(both)     (``city.internal.rpc.>``)                        letters included), its inbox. *Never*: as public
operator   ``citybus.control.>``; ``$JS.API.INFO``,         ``city.public.>``, ``city.internal.>``,
(both)     ``STREAM.NAMES``; streams as internal            ``citybus.clock.>``, its inbox. *Never*:
                                                            others' requests
guest      as an adapter, from a declaration its package    as an adapter; takes no control requests
(SANDBOX,  makes (the sandbox's pilots: their contracts,
or CITY)   never personal, never the dead letters)
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
  (:func:`bus.subjects.durable_name`, fixed per instance and contract): ``$JS.API.CONSUMER.INFO.S.D``
  (bind to it if it exists), ``$JS.API.CONSUMER.CREATE.S.D.<filter>`` (create it; the filter subject
  is part of the API subject, and the server checks it against the request, so the adapter can
  create no consumer over a contract it does not consume), ``$JS.API.CONSUMER.MSG.NEXT.S.D``
  (fetch), and ``$JS.ACK.S.D.>`` (ack, nak, term). Not ``CONSUMER.DURABLE.CREATE``, whose subject
  has no filter.
* **The service** is the citybus runtime's own connection, open as long as it runs: it publishes
  dead letters of messages no adapter took, and may touch no stream.
* **The provisioner** is a connection ``citybus up`` opens while it starts, in each account, and
  closes once the streams are provisioned. Provisioning reads a stream (``STREAM.INFO``), creates
  it when it is missing (``STREAM.CREATE``) and applies the configured limits to one that exists
  (``STREAM.UPDATE``: a changed ``streams.max_age`` must reach the streams already there). These
  three, for the registry's streams and the declared buckets exactly, are all it gets: no ``DELETE``,
  ``PURGE``, ``MSG.DELETE``, ``SNAPSHOT``, ``RESTORE``, no consumers, no data. A create or update names
  any subjects in its body, and can drop messages: no other user may send one (bus/access/provisioner.py).
* **Dead letters are internal.** Every adapter may *publish* them (its bus dead-letters what it
  cannot handle); internal clients and operators read them; the public does not — a dead letter
  carries the original payload. A declaration with ``dead_letters=False`` (a guest that is not the
  bus's) gets an explicit *deny*: a forged dead letter would be taken for the bus's record.
* **Reading a whole class** (``reads``) is for users that watch rather than consume — a guest
  seeing the replayed city and its own dead letters; that class's requests are denied.
* **Operators** steer components, watch clocks, read public and internal data, and the state and
  stored messages (``citybus entities``) of the streams that are not personal.
* **Guests** live in ``SANDBOX`` (or ``CITY`` if their kind allows: :mod:`bus.access.guests`), take
  no control requests, name no personal contract with ``personal=False``, and are denied each subject
  a ``SANDBOX`` component ``owns`` (the city's entities), which ``ce-source`` checks (:mod:`bus.origin`).
* **Clocks** (``citybus.clock.>``) are followed by the declarations that say ``clocks`` (the
  components in ``SANDBOX`` run on its clock) and watched by operators.
* **MQTT users** are the devices' side of the adapters: a LoRaWAN network server publishes the
  uplinks an adapter reads from raw subjects and reads the downlinks adapters publish there —
  nothing in ``city.``. MQTT clients cannot sign with an NKey, so they log in with a password;
  the configuration holds its bcrypt hash and allows the user on MQTT connections only.
* **Accounts are fixed.** ``service``, ``provisioner``, ``operator``, ``internal`` and ``public``
  exist in both ``CITY`` and ``SANDBOX`` (separate keys); ``system`` in ``SYS``. An adapter or
  guest cannot be named like one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bus import subjects
from bus.access.personal import personal_rights
from bus.access.provisioner import buckets_by_account, provisioner_rights
from bus.access.tenancy import tenancy_rights
from bus.access.users import (
    AccessError,
    Account,
    AuthRow,
    Declaration,
    DeclassificationError,
    Grant,
    Kind,
    Permissions,
    User,
)
from contracts import Classification, Contract, PersonalDeadLetter

__all__ = ["AccessModel"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

PUBLIC = Classification.PUBLIC
INTERNAL = Classification.INTERNAL
PERSONAL = Classification.PERSONAL

_CLIENT_KINDS = (Kind.SERVICE, Kind.PROVISIONER, Kind.OPERATOR, Kind.INTERNAL, Kind.PUBLIC)
_RESERVED_NAMES = frozenset(kind.value for kind in (*_CLIENT_KINDS, Kind.SYSTEM))


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
    :param sandbox_adapters: the components of ``SANDBOX`` (those that replay the city, and those
        that run on their clock).
    :param guests: the guests' declarations (``SANDBOX`` only).

    Raises :class:`AccessError` (or :class:`DeclassificationError`) for a declaration it refuses.
    """

    def __init__(
        self,
        contracts: Iterable[type[Contract]],
        *,
        adapters: Sequence[Declaration] = (),
        sandbox_adapters: Sequence[Declaration] = (),
        guests: Sequence[Declaration] = (),
        mqtt_users: Sequence[str] = (),
    ) -> None:
        pairs = sorted({(c.__contract__.classification, c.__contract__.domain) for c in contracts})
        self._streams = [(cls, subjects.stream_name(cls, domain)) for cls, domain in pairs]
        self._vault = any(c.__contract__.sealed for c in contracts)
        """Whether any contract is sealed, so that the account has a key vault (:mod:`bus.personal`)."""
        self.buckets = buckets_by_account(adapters, sandbox_adapters, guests)
        """The key-value buckets each account's users declare: its provisioner creates them."""
        users: list[User] = []
        for account, declared in ((Account.CITY, adapters), (Account.SANDBOX, sandbox_adapters)):
            users += [self._client(account, kind) for kind in _CLIENT_KINDS]
            users += [self._adapter(account, d, Kind.ADAPTER) for d in declared]
        owned = {subject: d.name for d in sandbox_adapters for subject in d.owns}
        users += [self._adapter(d.account or Account.SANDBOX, d, Kind.GUEST, owned) for d in guests]
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
                    kind=user.title,
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

    # -- users ------------------------------------------------------------------------------------

    def _client(self, account: Account, kind: Kind) -> User:
        r = _Rights()
        inbox = subjects.inbox_filter(kind.value)
        requests = "requests are for their responders: they can carry what a citizen asked"
        if kind is Kind.PROVISIONER:
            provisioner_rights(r, self._streams, vault=self._vault, buckets=self.buckets[account])
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
            r.pub(subjects.control_filter(), "steers running components (pause, resume, seek)")
            r.pub(subjects.js_api("INFO"), "reads the account's JetStream usage")
            r.pub(subjects.js_api("STREAM", "NAMES"), "lists the streams")
        else:
            for classification in readable:
                r.pub(
                    subjects.request_classification_filter(classification),
                    f"asks {classification.value} services",
                )
        # Stored messages of the classes it reads anyway (one class to a stream), read-only: creating
        # a consumer would let it name any deliver subject (bus/reading.py). The HTTP gateway serves
        # public and internal data as these users.
        for classification, stream in self._streams:
            if classification in readable:
                r.pub(subjects.js_api("STREAM", "INFO", stream), f"reads the state of {stream}")
                r.pub(subjects.js_api("STREAM", "MSG", "GET", stream), f"reads the messages of {stream}")
        for classification in readable:
            why = f"reads {classification.value} data"
            if classification is INTERNAL:
                why += ", dead letters included"
            r.sub(subjects.classification_filter(classification), why)
            r.deny_subscribe.append(Grant(subjects.request_classification_filter(classification), requests))
        if kind is Kind.OPERATOR:
            r.sub(subjects.clock_filter(), "watches the clocks of the components that keep their own time")
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

    def _adapter(self, account: Account, d: Declaration, kind: Kind, owned: Mapping[str, str] = {}) -> User:
        label = f"{d.kind} {d.name!r} ({account})"
        _check_declaration(d, label, kind)
        r = _Rights()
        for cls in d.produces:
            r.pub(subjects.contract_filter(cls), f"produces {_describe(cls)}")
        for subject in (s for s in owned if any(subjects.overlaps(g.subject, s) for g in r.publish)):
            r.deny_publish.append(Grant(subject, f"the city's own entity ({owned[subject]} publishes it)"))
        if d.dead_letters:
            r.pub(subjects.dead_letter_filter(), "dead-letters what it cannot translate or handle")
        else:
            r.deny_publish.append(
                Grant(
                    subjects.dead_letter_filter(),
                    f"dead letters are the bus's record: a {d.kind} could forge them",
                )
            )
        if any(c.__contract__.classification is PERSONAL for c in d.consumes):
            r.pub(
                subjects.contract_filter(PersonalDeadLetter),
                "dead-letters a personal message it cannot handle apart from the others",
            )
        personal_rights(r, d, self._streams, label=label, guest=kind is Kind.GUEST)
        for pattern in d.raw_publish:
            r.pub(pattern, "a raw subject it publishes (a native format, a bridge)")
        if d.control is not None:
            r.pub(subjects.clock_subject(d.name), "publishes the time it keeps (its clock)")
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
        tenancy_rights(d, label, r.pub, r.sub)  # asks, stores, recalls: checked, then granted
        for classification in d.reads:
            why = f"reads the account's {classification.value} data"
            if classification is INTERNAL:
                why += ", and its dead letters (its own among them)"
            r.sub(subjects.classification_filter(classification), why)
            r.deny_subscribe.append(
                Grant(
                    subjects.request_classification_filter(classification),
                    "requests are for their responders: they can carry what a citizen asked",
                )
            )
        for cls in d.consumes:
            r.sub(subjects.contract_filter(cls), f"consumes {_describe(cls)}")
        for cls in d.answers:
            r.sub(subjects.request_filter(cls), f"answers requests of {_describe(cls)}")
        for pattern in d.raw_subscribe:
            r.sub(pattern, "a raw subject it reads (a native format, a bridge)")
        if d.control is not None:
            r.sub(
                subjects.control_subject(d.control, d.name, "*"),
                f"takes control requests as a {d.control} component",
            )
        if d.clocks:
            r.sub(subjects.clock_filter(), "follows the time of the components that keep their own")
        r.sub(
            subjects.inbox_filter(d.name), "its replies (JetStream answers, acknowledgements), nobody else's"
        )
        _deny_namespaces(r, label)
        return User(
            account=account,
            name=d.name,
            kind=kind,
            permissions=r.permissions(responses=d.control is not None or bool(d.answers)),
            declassifier=d.declassifier,
            role=d.kind,
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
        raise AccessError(f"{label}: control component {d.control!r} must be kebab case ('beach-sensors')")
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
    declared = (*d.consumes, *d.produces, *d.answers)
    personal = [c for c in declared if c.__contract__.classification is PERSONAL]
    if PERSONAL in d.reads:
        raise AccessError(f"{label}: nobody reads a whole personal class; consume the personal contracts")
    if personal and not d.personal:
        raise AccessError(
            f"{label}: {d.kind}s never handle personal data, and it declares "
            + ", ".join(_describe(c) for c in personal)
        )
    if kind is Kind.GUEST and d.control is not None:
        raise AccessError(f"{label}: guests take no control requests; operators steer the components")
    private_in = [c for c in (*d.consumes, *d.answers) if c.__contract__.classification is not PUBLIC]
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
