"""The MQTT bridge: MQTT topics onto the bus as raw subjects, public contracts out to MQTT as JSON.

How it behaves, and why:

- **Outbound is durable and at least once.** Each outbound contract is consumed from its JetStream
  stream with ``ctx.consume``, and only while the MQTT connection is up: when the connection drops,
  the consumers stop, messages wait in the stream, and after the reconnect they are fetched and
  published. A message is acknowledged to JetStream only after the broker acknowledged it (QoS 1
  PUBACK); a publish that fails raises, so JetStream delivers it again. Core NATS
  (``ctx.subscribe``) would lose whatever arrives during an outage. A retry may publish a message
  twice: MQTT subscribers deduplicate on the CloudEvents ``id``, which is the bus's ``ce-id``.
  A new bridge instance (a new durable consumer) starts with what the stream already holds.
- **Inbound keeps its session.** The bridge subscribes with QoS 1 in a session the broker keeps for
  ``session_expiry`` seconds, so messages published while the bridge is away are queued by the
  broker and delivered when it is back. Each is published on the bus as it came, as raw bytes, in
  order; one that cannot be mapped (no route, or a reserved subject) goes to the dead letters.
- **No loops.** The configuration refuses an outbound topic that any inbound filter matches, so the
  bridge never reads back what it wrote, whatever the MQTT version; with MQTT 5 it also subscribes
  with *no local*, so the broker does not send the bridge its own publications. An inbound
  message can never go out again either: it lands on a raw subject outside ``city.``, where no
  contract is, and the bridge sends out contracts only.
- **CloudEvents.** With MQTT 5 a message carries the CloudEvents binding for MQTT: content type
  ``application/json`` and the attributes (``specversion``, ``id``, ``source``, ``type``,
  ``time``, ``dataschema``, ``provenance``) as user properties. With MQTT 3.1.1 it is the JSON alone.
- **Reconnects forever.** A refused or lost connection is logged (a warning, without credentials)
  and counted, and the bridge tries again after a delay that doubles up to ``max_reconnect_delay``
  (and starts over once a connection has stayed up that long). It says it is ready after it first
  connected and subscribed. Its tasks are stopped by :func:`_stop_surely`, which does not give up
  after one cancellation (Python 3.11 can lose one deep inside nats-py and aiomqtt).

Run one replica per instance: a second bridge with the same client id would push the first off the
broker, and one with another id would bring every inbound message onto the bus twice.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.base import Adapter
from adapters.context import Context
from adapters.mqtt.config import Endpoint, InboundRoute, MqttBridgeConfig, OutboundRoute
from adapters.mqtt.topics import (
    TopicTemplate,
    filter_to_subjects,
    reserved_subject,
    topic_matches,
    topic_to_subject,
)
from bus import Event, RawMessage
from bus.backoff import Backoff
from bus.codec import encode
from bus.envelope import JSON, format_time
from bus.errors import CityBusError
from contracts import Contract

__all__ = ["BridgeStats", "MqttBridge", "cloud_event_properties"]

# MQTT 5 reason code of a CONNACK from a broker that does not speak the version asked for.
_UNSUPPORTED_PROTOCOL_VERSION = 132


@dataclass(slots=True)
class BridgeStats:
    """What one bridge object has done (a restarted adapter is a new object and starts from zero)."""

    connections: int = 0
    """Successful connections to the broker, the first one included."""
    connection_failures: int = 0
    """Connection attempts refused and connections lost."""
    inbound: int = 0
    """MQTT messages published on the bus."""
    outbound: int = 0
    """Bus messages published to MQTT (counted once however many routes a contract has)."""
    dead_lettered: int = 0
    """MQTT messages sent to the dead letters (no route, or a reserved subject)."""


class _ConnectionLost(Exception):
    """Internal: a connection attempt was refused, or a connection was lost."""

    def __init__(self, error: BaseException, *, was_connected: bool) -> None:
        super().__init__(_describe(error))
        self.error = error
        self.was_connected = was_connected


def cloud_event_properties(event: Event[Contract]) -> Properties:
    """MQTT 5 PUBLISH properties for an event: the CloudEvents MQTT binding (binary mode)."""
    envelope = event.envelope
    info = event.data.__contract__
    attributes = [
        ("specversion", "1.0"),
        ("id", envelope.id),
        ("source", envelope.source),
        ("type", envelope.type),
        ("dataschema", info.dataschema),
    ]
    if envelope.time is not None:
        attributes.append(("time", format_time(envelope.time)))
    if envelope.provenance:
        attributes.append(("provenance", envelope.provenance))
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = JSON
    properties.PayloadFormatIndicator = 1  # UTF-8 text
    properties.UserProperty = attributes
    return properties


def _describe(exc: BaseException) -> str:
    """An MQTT error in one line, with its cause (aiomqtt wraps the broker's reason)."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text


def _payload_bytes(payload: object) -> bytes:
    """A received payload as bytes (aiomqtt types it loosely; from a broker it is bytes)."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


def _refused(codes: object) -> bool:
    """Whether a SUBACK's reason codes say the subscription was refused."""
    if not isinstance(codes, list | tuple):
        return False
    return any(code.is_failure if isinstance(code, ReasonCode) else int(code) >= 0x80 for code in codes)


async def _stop_surely(work: Coroutine[Any, Any, None], on_cancel: Callable[[], None] | None = None) -> None:
    """Run ``work`` in a task of its own and, when cancelled, cancel it until it has stopped.

    On Python 3.11 a cancellation can get lost: ``asyncio.wait_for`` — under nats-py's fetch and
    JetStream publish and aiomqtt's subscribe and publish — drops one that coincides with the
    awaited result arriving, and nats-py turns one into ``ConnectionClosedError`` on a closed
    connection, which the durable consumer retries. A ``TaskGroup`` cancels its children only
    once, so a child that lost its cancellation would keep the bridge from ever reconnecting or
    stopping. Every task of the bridge runs under this. ``on_cancel`` is called before the first
    cancellation reaches ``work``.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        while not task.done():
            task.cancel()
            try:
                await asyncio.wait({task}, timeout=0.5)
            except asyncio.CancelledError:
                pass  # cancelled again while stopping it: keep stopping it, then say so
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what counts now
        raise


class MqttBridge(Adapter[MqttBridgeConfig]):
    """MQTT ⇄ bus: MQTT topics in as raw subjects, public contracts out as JSON on MQTT topics."""

    name = "mqtt-bridge"
    Config = MqttBridgeConfig
    durable = True  # outbound contracts through ctx.consume

    def __init__(self, config: MqttBridgeConfig) -> None:
        super().__init__(config)
        self.stats = BridgeStats()
        self.connected = False
        """True while the bridge is connected to the broker and subscribed."""
        self._stopping = False
        self._outbound: dict[type[Contract], list[tuple[OutboundRoute, TopicTemplate]]] = {}
        for route in config.outbound:
            self._outbound.setdefault(route.contract_type(), []).append((route, route.template()))

    def consumed(self) -> tuple[type[Contract], ...]:
        """The contracts configured to go out to MQTT."""
        return tuple(self._outbound)

    def raw_subjects(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """It publishes the subjects its inbound topics arrive on, and reads no raw subject."""
        published: list[str] = []
        for route in self.config.inbound:
            for pattern in filter_to_subjects(route.topic, route.subject_prefix):
                if pattern not in published:
                    published.append(pattern)
        return ((), tuple(published))

    async def run(self, ctx: Context) -> None:
        """Connect, bridge both ways, and reconnect forever when the broker goes away."""
        await _stop_surely(self._run(ctx), on_cancel=self._stop)

    def _stop(self) -> None:
        self._stopping = True

    async def _run(self, ctx: Context) -> None:
        config = self.config
        endpoint = config.endpoint()
        tls = await self._tls_context(endpoint)
        client_id = config.client_id or f"citybus-{ctx.instance}"
        log = ctx.log.bind(broker=str(endpoint), client_id=client_id)
        v5 = config.protocol != "3.1.1"
        retries = Backoff(initial=config.reconnect_delay, maximum=config.max_reconnect_delay).attempts()
        loop = asyncio.get_running_loop()
        while True:
            client = self._client(endpoint, client_id, v5, tls)
            started = loop.time()
            try:
                await self._connected_session(ctx, client, v5, log)
            except _ConnectionLost as lost:
                error = lost.error
                if (
                    v5
                    and config.protocol == "auto"
                    and isinstance(error, aiomqtt.MqttCodeError)
                    and error.rc == _UNSUPPORTED_PROTOCOL_VERSION
                ):
                    v5 = False
                    log.info("the broker speaks MQTT 3.1.1 only: messages go out without user properties")
                    continue
                if lost.was_connected and loop.time() - started >= config.max_reconnect_delay:
                    # It stayed up a while: start the backoff over. (A connection that drops at
                    # once — another client taking over the client id — keeps backing off.)
                    retries.reset()
                delay = retries.next()
                self.stats.connection_failures += 1
                log.warning(
                    "mqtt connection lost" if lost.was_connected else "mqtt connect failed",
                    error=str(lost),
                    failures=self.stats.connection_failures,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)

    async def _tls_context(self, endpoint: Endpoint) -> ssl.SSLContext | None:
        if not endpoint.tls:
            return None
        try:
            # Loading CA certificates reads files: off the event loop.
            return await asyncio.to_thread(ssl.create_default_context, cafile=self.config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise CityBusError(
                f"cannot load the CA certificates from ca_file {self.config.ca_file}: {exc}"
            ) from exc

    def _client(
        self, endpoint: Endpoint, client_id: str, v5: bool, tls: ssl.SSLContext | None
    ) -> aiomqtt.Client:
        config = self.config
        properties = None
        if v5 and config.session_expiry:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = config.session_expiry
        client = aiomqtt.Client(
            endpoint.host,
            endpoint.port,
            username=config.username,
            password=config.password,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            # A fresh client object per attempt: resume the broker's session unless told not to.
            clean_session=None if v5 else config.session_expiry == 0,
            clean_start=config.session_expiry == 0 if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=config.keepalive,
            timeout=config.connect_timeout,
            tls_context=tls,
        )
        # Up to the durable consumer's max_in_flight publishes await their PUBACK at once; that
        # is the design, not a symptom, so aiomqtt should not warn about it.
        client.pending_calls_threshold = 4096
        return client

    async def _connected_session(self, ctx: Context, client: aiomqtt.Client, v5: bool, log: Any) -> None:
        """One connection: connect, subscribe and bridge until it fails; then raise
        :class:`_ConnectionLost`. Any other error (a refused subscription, a missing stream) is
        raised as it is, for the supervisor."""
        failure: BaseException | None = None
        try:
            async with client:
                try:
                    await self._subscribe(client, v5)
                    self.stats.connections += 1
                    self.connected = True
                    log.info(
                        "mqtt reconnected" if ctx.is_ready else "mqtt connected",
                        protocol="5" if v5 else "3.1.1",
                        connections=self.stats.connections,
                    )
                    ctx.ready()
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(_stop_surely(self._forward_inbound(ctx, client)), name="mqtt inbound")
                        for contract, routes in self._outbound.items():
                            tg.create_task(
                                _stop_surely(ctx.consume(contract, self._forwarder(client, routes, v5))),
                                name=f"mqtt outbound {contract.__contract__.name}",
                            )
                except aiomqtt.MqttError as exc:
                    failure = _ConnectionLost(exc, was_connected=True)
                except BaseExceptionGroup as group:
                    failure = self._unwrap(group)
                finally:
                    self.connected = False
        except aiomqtt.MqttError as exc:
            # Refused or unreachable; or the goodbye failed (after `failure`, or while cancelled).
            failure = failure or _ConnectionLost(exc, was_connected=False)
        if failure is not None:
            if self._stopping:
                # Asked to stop: neither a goodbye that failed on the way out nor a TaskGroup that
                # reported its children's errors instead of the cancellation is a reason to go on.
                raise asyncio.CancelledError
            raise failure

    @staticmethod
    def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
        """The error to act on from the session's TaskGroup: a real failure before a lost connection."""
        _, others = group.split(aiomqtt.MqttError)
        leaf: BaseException = others if others is not None else group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if others is None:
            return _ConnectionLost(leaf, was_connected=True)
        return leaf

    async def _subscribe(self, client: aiomqtt.Client, v5: bool) -> None:
        qos = self.config.qos
        for route in self.config.inbound:
            if v5:
                options = SubscribeOptions(
                    qos=qos, noLocal=True, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
                )
                codes = await client.subscribe(route.topic, options=options)
            else:
                codes = await client.subscribe(route.topic, qos=qos)
            if _refused(codes):
                raise CityBusError(
                    f"the MQTT broker refused the subscription to {route.topic!r} ({codes[0]}): "
                    "does the bridge's user have permission to read it?"
                )

    def _route(self, topic: str) -> InboundRoute | None:
        for route in self.config.inbound:
            if topic_matches(route.topic, topic):
                return route
        return None

    async def _forward_inbound(self, ctx: Context, client: aiomqtt.Client) -> None:
        """Publish every MQTT message on its subject, in order, until the connection fails."""
        async for message in client.messages:
            topic = message.topic.value
            data = _payload_bytes(message.payload)
            route = self._route(topic)
            if route is None:
                # A subscription left in the broker's session by an earlier configuration.
                subject = topic_to_subject(topic)
                await self._dead_letter(ctx, subject, topic, data, "no-route", "no inbound route matches")
                continue
            subject = route.subject(topic)
            why = reserved_subject(subject)
            if why:
                await self._dead_letter(ctx, subject, topic, data, "reserved-subject", why)
                continue
            await ctx.publish_raw(subject, data)
            self.stats.inbound += 1

    async def _dead_letter(
        self, ctx: Context, subject: str, topic: str, data: bytes, reason: str, why: str
    ) -> None:
        self.stats.dead_lettered += 1
        await ctx.dead_letter(
            RawMessage(subject, data, {"mqtt-topic": topic}),
            reason=reason,
            detail=f"MQTT message on {topic!r}: {why}",
        )

    def _forwarder(
        self, client: aiomqtt.Client, routes: list[tuple[OutboundRoute, TopicTemplate]], v5: bool
    ) -> Callable[[Event[Contract]], Awaitable[None]]:
        qos = self.config.qos
        stats = self.stats

        async def forward(event: Event[Contract]) -> None:
            # Raising here (not connected, no PUBACK in time) makes JetStream deliver it again.
            data = event.data
            info = data.__contract__
            values = {
                "entity": data.entity(),
                "domain": info.domain,
                "event": info.event,
                "version": str(info.version),
            }
            payload = encode(data, JSON)
            properties = cloud_event_properties(event) if v5 else None
            for route, template in routes:
                await client.publish(
                    template.render(values), payload, qos=qos, retain=route.retain, properties=properties
                )
            stats.outbound += 1

        return forward
