"""Every NATS subject citybus uses is built here, and nowhere else.

Data subjects are ``city.<classification>.<domain>.<event>.<entity>``; the classification is the
second token so that one broker permission per class (``city.public.>``) enforces who sees what.
A contract's major version 1 uses the bare event name; version 2 and later add ``-v<N>`` to the
event token (``beach-observation-v2``), so both versions flow side by side on distinct subjects.

Requests (request/reply) travel on ``city.<classification>.rpc.<domain>.<event>.<entity>``: the
classification stays second for the broker's permissions, but the ``rpc`` token keeps requests
out of the JetStream streams (``city.<classification>.<domain>.>``) — a stream capturing a request
subject would answer the request itself with a storage acknowledgement. ``rpc`` is therefore not
allowed as a domain name.

Control subjects steer a running component over the bus (request/reply, JSON):
``citybus.control.<component>.<instance>.<verb>`` (``citybus.control.replay.sandbox.pause``); a
component that keeps its own time publishes it on ``citybus.clock.<instance>``. They live under
their own root, outside every data stream, so the broker can grant them to operators alone.
"""

from __future__ import annotations

import re

from bus.errors import CityBusError
from contracts import Classification, Contract, ContractInfo, Registry, UnknownContractError

__all__ = [
    "CONTROL_ROOT",
    "ROOT",
    "RPC",
    "classification_filter",
    "clock_filter",
    "clock_subject",
    "contract_filter",
    "contract_subject",
    "control_filter",
    "control_subject",
    "data_filter",
    "dead_letter_filter",
    "dead_letter_subject",
    "domain_filter",
    "durable_name",
    "entity_token",
    "event_token",
    "inbox_filter",
    "inbox_prefix",
    "intersection",
    "is_pattern",
    "js_ack_filter",
    "js_api",
    "matches",
    "overlaps",
    "request_classification_filter",
    "request_filter",
    "request_subject",
    "reserved_roots",
    "resolve_pattern",
    "stream_name",
    "stream_of",
    "validate_pattern",
]

ROOT = "city"
RPC = "rpc"
CONTROL_ROOT = "citybus"

# NATS tokens may not contain whitespace, '.', '*' or '>'; anything else goes through unchanged.
_UNSAFE = re.compile(r"[\s.*>]+")
_TOKEN = re.compile(r"^[^\s.*>]+$")


def entity_token(value: object) -> str:
    """A subject token for an entity value: unsafe characters become ``_``, never empty."""
    token = _UNSAFE.sub("_", str(value))
    return token or "_"


def event_token(info: ContractInfo) -> str:
    """The event token of a contract version (``beach-observation`` or ``beach-observation-v2``)."""
    return info.event if info.version == 1 else f"{info.event}-v{info.version}"


def _subject(info: ContractInfo, entity: str, *, rpc: bool = False) -> str:
    tokens = [ROOT, info.classification.value, info.domain, event_token(info), entity]
    if rpc:
        tokens.insert(2, RPC)
    return ".".join(tokens)


def _entity_or_wildcard(entity: str) -> str:
    return entity if entity in ("*", ">") else entity_token(entity)


def contract_subject(instance: Contract) -> str:
    """The subject an instance is published on."""
    return _subject(instance.__contract__, entity_token(instance.entity()))


def contract_filter(cls: type[Contract], entity: str = "*") -> str:
    """The subject (or wildcard) that carries a contract, for one entity or all of them."""
    return _subject(cls.__contract__, _entity_or_wildcard(entity))


def request_subject(instance: Contract) -> str:
    """The subject a request carrying ``instance`` is sent on."""
    return _subject(instance.__contract__, entity_token(instance.entity()), rpc=True)


def request_filter(cls: type[Contract], entity: str = "*") -> str:
    """The subject (or wildcard) a responder for requests of ``cls`` listens on."""
    return _subject(cls.__contract__, _entity_or_wildcard(entity), rpc=True)


def domain_filter(classification: Classification, domain: str) -> str:
    """The wildcard over every contract of one classification and domain (one stream's subjects)."""
    return f"{ROOT}.{classification.value}.{domain}.>"


def stream_name(classification: Classification, domain: str) -> str:
    """The JetStream stream for one classification and domain, e.g. ``CITY_PUBLIC_ENVIRONMENT``."""
    return "_".join((ROOT, classification.value, domain)).upper().replace("-", "_")


def stream_of(subject: str) -> str | None:
    """The stream that stores a data subject (``city.public.environment.…``: ``CITY_PUBLIC_ENVIRONMENT``),
    or ``None`` for a subject no provisioned stream holds (a request, a control subject)."""
    tokens = subject.split(".")
    if len(tokens) < 4 or tokens[0] != ROOT or tokens[2] == RPC:
        return None
    try:
        classification = Classification(tokens[1])
    except ValueError:
        return None
    return stream_name(classification, tokens[2])


def dead_letter_subject(reason: str) -> str:
    """Where a dead letter with this reason is published (internal, the ``citybus`` domain)."""
    return f"{ROOT}.{Classification.INTERNAL.value}.citybus.dead-letter.{entity_token(reason)}"


def control_subject(component: str, instance: str, verb: str = "*") -> str:
    """Where ``verb`` requests to one instance of a component go (``*``: all its verbs)."""
    return f"{CONTROL_ROOT}.control.{entity_token(component)}.{entity_token(instance)}.{verb}"


def clock_subject(instance: str) -> str:
    """Where an instance that keeps its own time (a replay) publishes it."""
    return f"{CONTROL_ROOT}.clock.{entity_token(instance)}"


def is_pattern(subject: str) -> bool:
    """True when ``subject`` contains a wildcard token."""
    return any(t in ("*", ">") for t in subject.split("."))


def validate_pattern(pattern: str) -> str:
    """Check a subject or wildcard pattern; raise ``ValueError`` saying what is wrong."""
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == ">" and i != len(tokens) - 1:
            raise ValueError(f"subject {pattern!r}: '>' may only be the last token")
        if token not in ("*", ">") and not _TOKEN.match(token):
            raise ValueError(
                f"subject {pattern!r}: token {i + 1} is empty or contains whitespace, '*' or '>'"
            )
    return pattern


def resolve_pattern(text: str, registry: Registry) -> str:
    """A subject pattern, or a contract name standing for all its subjects (``citybus tail``, SSE).

    The rule: an argument with a wildcard token or three tokens or more is a subject pattern (every
    subject the bus carries has at least three: ``city.…`` has five, an MQTT topic ``a/b/c`` arrives
    as ``a.b.c``); anything shorter names a contract (``domain.event`` or ``domain.event@2``), so a
    misspelt name is an error naming the nearest contracts, not a subscription the broker refuses or
    that never sees a message. Raises :class:`~contracts.UnknownContractError` for an unknown
    contract and :class:`~bus.errors.CityBusError` for a malformed pattern.
    """
    tokens = text.split(".")
    if "*" not in tokens and ">" not in tokens:
        try:
            return contract_filter(registry.get(text))
        except UnknownContractError as exc:
            if len(tokens) < 3:
                if "did you mean" in str(exc):
                    raise
                raise UnknownContractError(
                    f"{exc} (a subject pattern has a wildcard or three tokens or more: city.public.>)"
                ) from None
    try:
        return validate_pattern(text)
    except ValueError as exc:
        raise CityBusError(str(exc)) from None


def matches(pattern: str, subject: str) -> bool:
    """Whether a concrete subject matches a NATS wildcard pattern."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


# -- access control (bus.access): the patterns the broker's permissions are written in ---------------


def data_filter() -> str:
    """Every data subject, of every classification (``city.>``)."""
    return f"{ROOT}.>"


def classification_filter(classification: Classification) -> str:
    """Every subject of one classification (``city.public.>``): one broker permission per class."""
    return f"{ROOT}.{classification.value}.>"


def request_classification_filter(classification: Classification) -> str:
    """Every request subject of one classification (``city.public.rpc.>``)."""
    return f"{ROOT}.{classification.value}.{RPC}.>"


def dead_letter_filter() -> str:
    """Every dead-letter subject, whatever the reason (``city.internal.citybus.dead-letter.*``)."""
    return dead_letter_subject("reason").rpartition(".")[0] + ".*"


def control_filter() -> str:
    """Every control subject of every component (``citybus.control.>``)."""
    return f"{CONTROL_ROOT}.control.>"


def clock_filter() -> str:
    """Every clock subject (``citybus.clock.>``)."""
    return f"{CONTROL_ROOT}.clock.>"


def inbox_prefix(user: str) -> str:
    """The inbox prefix of one client (``_INBOX.<user>``; nats-py's ``inbox_prefix`` option).

    Each user gets its own, so that the broker can let it read its replies and nobody else's.
    """
    return f"_INBOX.{entity_token(user)}"


def inbox_filter(user: str) -> str:
    """Every reply subject of one client (``_INBOX.<user>.>``)."""
    return f"{inbox_prefix(user)}.>"


def durable_name(instance: str, cls: type[Contract]) -> str:
    """The durable JetStream consumer an adapter instance reads a contract with.

    Fixed per instance and contract, so that the broker can grant an adapter its own consumers
    and no other (``vicotee-beach-beach-observation-v1``). The one rule: the access model grants
    these names (:mod:`bus.access`) and an adapter's ``ctx.consume`` uses them.
    """
    info = cls.__contract__
    return f"{entity_token(instance)}-{info.event}-v{info.version}"


def js_api(*tokens: str) -> str:
    """A JetStream API subject: ``js_api("STREAM", "INFO", name)`` is ``$JS.API.STREAM.INFO.<name>``."""
    return ".".join(("$JS", "API", *tokens))


def store_bucket(instance: str, name: str) -> str:
    """The JetStream key-value bucket ``name`` of an adapter instance (``volunteer-platform_places``).

    One rule for the bucket an adapter keeps (``ctx.key_value(name)``) and the one the access model
    lets that instance keep: replicas of one instance share it, another instance has its own.
    """
    return f"{entity_token(instance)}_{name}"


def store_stream(bucket: str) -> str:
    """The stream JetStream keeps a key-value bucket in (``KV_<bucket>``)."""
    return f"KV_{bucket}"


def store_filter(bucket: str) -> str:
    """The subjects of a key-value bucket's keys (``$KV.<bucket>.>``): writing one is publishing there."""
    return f"$KV.{bucket}.>"


def js_ack_filter(stream: str, consumer: str) -> str:
    """The subjects a consumer's messages are acknowledged on (``$JS.ACK.<stream>.<consumer>.>``)."""
    return f"$JS.ACK.{stream}.{consumer}.>"


def intersection(a: str, b: str) -> str | None:
    """The pattern of the subjects that match both ``a`` and ``b``, or ``None`` if none does.

    ``intersection("*.devices.*.up", "city.>")`` is ``city.devices.*.up``.
    """
    ta, tb = a.split("."), b.split(".")
    out: list[str] = []
    for i in range(max(len(ta), len(tb))):
        if i >= len(ta) or i >= len(tb):
            return None  # one pattern ended without '>', the other goes on
        x, y = ta[i], tb[i]
        if x == ">":
            return ".".join(out + tb[i:])
        if y == ">":
            return ".".join(out + ta[i:])
        if x == "*":
            out.append(y)
        elif y == "*" or x == y:
            out.append(x)
        else:
            return None
    return ".".join(out)


def overlaps(a: str, b: str) -> bool:
    """Whether some subject matches both patterns."""
    return intersection(a, b) is not None


def reserved_roots() -> tuple[str, ...]:
    """The namespaces that belong to the bus and the broker, not to raw (native-format) subjects.

    ``city.>`` carries contracts, ``citybus.>`` control and clocks, ``_INBOX.>`` replies; the
    ``$``-prefixed roots are nats-server's own (JetStream and its key-value and object stores,
    the system account, MQTT sessions, Raft, services).
    """
    return (
        data_filter(),
        f"{CONTROL_ROOT}.>",
        "_INBOX.>",
        *(f"${root}.>" for root in ("JS", "JSC", "KV", "O", "SYS", "MQTT", "NRG", "SRV")),
    )
