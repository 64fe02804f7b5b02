"""The MQTT bridge's configuration, checked whole before the bridge starts.

::

    [adapters.mqtt-city]
    adapter = "mqtt-bridge"
    url = "mqtt://broker.drammen.kommune.no:1883"
    username = "citybus"
    password = "…"
    inbound = [
        { topic = "v3/+/devices/+/up", subject_prefix = "ttn" },
    ]
    outbound = [
        { contract = "environment.beach-observation", topic = "drammen/beach/{entity}", retain = true },
    ]

Every rule a route can break is a ``ValueError`` from ``__post_init__``, so
:func:`adapters.instances.parse_instance` reports it as a configuration error naming the instance:
an unknown contract, a bad topic or template, a contract whose classification may not leave the
bus (only public ones may, internal ones with ``allow_internal = true``, personal ones never), and
routes that would carry the bridge's own messages back in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from adapters.mqtt.topics import (
    TopicTemplate,
    filters_overlap,
    parse_template,
    reserved_subject,
    topic_to_subject,
    validate_filter,
    validate_subject_prefix,
)
from contracts import Classification, Contract, UnknownContractError, default_registry

__all__ = ["Endpoint", "InboundRoute", "MqttBridgeConfig", "OutboundRoute"]

_Seconds = Annotated[float, msgspec.Meta(gt=0)]
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class InboundRoute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """MQTT → bus: what arrives on a topic filter is published, byte for byte, on the mapped subject."""

    topic: str
    """MQTT topic filter to subscribe to, ``+`` and ``#`` allowed, e.g. ``v3/+/devices/+/up``."""
    subject_prefix: str = ""
    """Subject tokens put before the mapped topic: with ``"ttn"``, ``v3/a/devices/b/up`` arrives on
    ``ttn.v3.a.devices.b.up``. Empty: the mapped topic alone, as nats-server's MQTT listener does.
    It may not start with ``city`` (contracts only), ``$`` or ``_INBOX``."""

    def __post_init__(self) -> None:
        validate_filter(self.topic)
        validate_subject_prefix(self.subject_prefix)
        first = self.topic.split("/")[0]
        if not self.subject_prefix and first not in ("+", "#"):
            if first.startswith("$"):
                raise ValueError(
                    f"inbound topic {self.topic!r} begins with $: give it a subject_prefix, since "
                    "subjects beginning with $ are nats-server's own"
                )
            why = reserved_subject(topic_to_subject(first))
            if why:
                raise ValueError(f"inbound topic {self.topic!r} needs a subject_prefix: {why}")

    def subject(self, topic: str) -> str:
        """The subject a message on ``topic`` is published on."""
        return topic_to_subject(topic, self.subject_prefix)


class OutboundRoute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Bus → MQTT: every message of one contract, as JSON, on a topic built from a template."""

    contract: str
    """The contract's name, e.g. ``environment.beach-observation`` (its newest version; ``name@2``
    picks another)."""
    topic: str
    """The MQTT topic, with placeholders ``{entity}`` (the message's entity, e.g. the bathing site),
    ``{domain}``, ``{event}`` and ``{version}``: ``drammen/beach/{entity}``."""
    retain: bool = False
    """Ask the broker to keep the last message of each topic for new subscribers (a "current value")."""

    def __post_init__(self) -> None:
        try:
            default_registry().get(self.contract)
        except UnknownContractError as exc:
            raise ValueError(str(exc)) from None
        parse_template(self.topic)

    def contract_type(self) -> type[Contract]:
        """The contract class the route carries."""
        return default_registry().get(self.contract)

    def template(self) -> TopicTemplate:
        """The parsed topic template."""
        return parse_template(self.topic)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the broker is: host, port, and whether to speak TLS."""

    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class MqttBridgeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[adapters.<instance>]`` section of an MQTT bridge."""

    url: str = "mqtt://127.0.0.1:1883"
    """The broker: ``mqtt://host[:port]`` (default port 1883) or ``mqtts://host[:port]`` for TLS
    (default port 8883, the server's certificate checked against the system's CAs or ``ca_file``).
    Credentials go in ``username`` and ``password``, never in the URL, so the URL can be logged."""
    username: str | None = None
    """User name to log in with, if the broker wants one."""
    password: str | None = None
    """Password to log in with; never logged, and hidden from the config's ``repr``."""
    ca_file: str | None = None
    """PEM file of the CA(s) that signed the broker's certificate, for ``mqtts://`` with a private CA."""
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    """MQTT client id; default ``citybus-<instance>``. The broker keeps one session per id, so two
    bridges must not share one (each would keep pushing the other off)."""
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    """MQTT version. ``auto`` tries 5 (CloudEvents attributes travel as user properties, and the
    bridge does not hear its own messages) and falls back to 3.1.1 if the broker says it only
    speaks that."""
    inbound: list[InboundRoute] = []
    """MQTT topic filters whose messages go onto the bus as raw bytes. Filters may not overlap one
    another, so each MQTT message maps to exactly one subject."""
    outbound: list[OutboundRoute] = []
    """Contracts whose messages go out to MQTT as JSON. No outbound topic may match an inbound
    filter, so that the bridge never reads its own messages back in."""
    qos: Annotated[int, msgspec.Meta(ge=0, le=1)] = 1
    """MQTT quality of service for subscriptions and publishes: 1 (at least once; the default) or
    0 (at most once)."""
    allow_internal: bool = False
    """Let internal contracts go out (to a broker inside the municipality's network). Public
    contracts may always go out; personal contracts never do."""
    session_expiry: Annotated[int, msgspec.Meta(ge=0, le=4_294_967_295)] = 3600
    """Seconds the broker keeps the bridge's session — its subscriptions and the QoS 1 messages that
    arrive for it — while the bridge is disconnected, so an outage loses nothing inbound. 0 starts
    a clean session on every connect. (An MQTT 3.1.1 broker keeps a session until it expires it
    itself; 0 asks it for a clean one.)"""
    keepalive: Annotated[int, msgspec.Meta(ge=5, le=65535)] = 60
    """Seconds between pings on a quiet connection; a dead connection is noticed within 1.5 times that."""
    connect_timeout: _Seconds = 10.0
    """Seconds to wait for the broker to accept a connection, a subscription or a QoS 1 publish."""
    reconnect_delay: _Seconds = 0.5
    """Seconds to wait before the first reconnect attempt; doubled after each failed attempt."""
    max_reconnect_delay: _Seconds = 30.0
    """The most seconds to wait between reconnect attempts; the bridge reconnects forever."""

    def __post_init__(self) -> None:
        self.endpoint()
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if self.ca_file is not None and not self.endpoint().tls:
            raise ValueError("ca_file is for TLS: use an mqtts:// url with it")
        if self.max_reconnect_delay < self.reconnect_delay:
            raise ValueError("max_reconnect_delay may not be shorter than reconnect_delay")
        if not self.inbound and not self.outbound:
            raise ValueError("the bridge has nothing to do: configure inbound and/or outbound routes")
        self._check_classification()
        self._check_routes_disjoint()

    def __repr__(self) -> str:
        shown = {f: getattr(self, f) for f in self.__struct_fields__}
        if shown["password"] is not None:
            shown["password"] = "***"
        return f"MqttBridgeConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def endpoint(self) -> Endpoint:
        """The broker's host, port and TLS, from :attr:`url`."""
        parts = urlsplit(self.url)
        if parts.scheme not in _DEFAULT_PORTS:
            raise ValueError(f"url {self.url!r}: the scheme must be mqtt:// or mqtts://")
        if "@" in parts.netloc:
            raise ValueError("url: put the credentials in username and password, not in the url")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"url {self.url!r}: only mqtt[s]://host[:port] is allowed")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"url {self.url!r}: the port must be a number from 1 to 65535") from None
        if not parts.hostname:
            raise ValueError(f"url {self.url!r} names no host")
        return Endpoint(parts.hostname, port or _DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts")

    def _check_classification(self) -> None:
        """Public data may leave the bus; internal only when allowed; personal never."""
        for route in self.outbound:
            info = route.contract_type().__contract__
            if info.classification is Classification.PERSONAL:
                raise ValueError(
                    f"outbound contract {info.name} is personal data, and personal contracts never go "
                    "out through the MQTT bridge (not even with allow_internal = true)"
                )
            if info.classification is Classification.INTERNAL and not self.allow_internal:
                raise ValueError(
                    f"outbound contract {info.name} is internal: only public contracts go out to MQTT "
                    "unless the instance sets allow_internal = true"
                )

    def _check_routes_disjoint(self) -> None:
        """No MQTT message maps to two subjects, and no outbound message comes back in."""
        for i, a in enumerate(self.inbound):
            for b in self.inbound[i + 1 :]:
                if filters_overlap(a.topic, b.topic):
                    raise ValueError(
                        f"inbound topics {a.topic!r} and {b.topic!r} overlap: a message matching both "
                        "would have two subjects; make them disjoint"
                    )
        for out in self.outbound:
            published = out.template().as_filter()
            for into in self.inbound:
                if filters_overlap(published, into.topic):
                    raise ValueError(
                        f"outbound topic {out.topic!r} ({out.contract}) overlaps inbound topic "
                        f"{into.topic!r}: the bridge would read its own messages back in; make them "
                        "disjoint"
                    )
