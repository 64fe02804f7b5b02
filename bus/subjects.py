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

from contracts import Classification, Contract, ContractInfo

__all__ = [
    "CONTROL_ROOT",
    "ROOT",
    "RPC",
    "clock_subject",
    "contract_filter",
    "contract_subject",
    "control_subject",
    "dead_letter_subject",
    "domain_filter",
    "entity_token",
    "event_token",
    "is_pattern",
    "matches",
    "request_filter",
    "request_subject",
    "stream_name",
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
