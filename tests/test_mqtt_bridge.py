"""The MQTT bridge, against the real Mosquitto at 127.0.0.1:1883 and a real nats-server.

Mosquitto is shared, so every test uses topics, subjects, entities and client ids of its own.
The reconnect tests put a TCP proxy the test controls between the bridge and Mosquitto, and cut it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import msgspec
import pytest
from conftest import MOSQUITTO
from hypothesis import given
from hypothesis import strategies as st

import adapters.mqtt
from adapters.instances import parse_instance
from adapters.mqtt import MqttBridge, MqttBridgeConfig, subject_to_topic, topic_to_subject
from adapters.mqtt.topics import TopicTemplate, filters_overlap, topic_matches
from adapters.testing import AdapterHarness
from bus import Bus, ConfigError, ConsumerSettings, RawMessage
from bus.subjects import validate_pattern
from contracts import BeachObservation, DeviceStatus
from tests.waiting import eventually

BROKER = MOSQUITTO


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def tag() -> str:
    """A token no other test (or earlier run) uses, for topics, subjects and instance names."""
    return uuid.uuid4().hex[:12]


class TcpProxy:
    """A TCP forwarder to the broker that the test can cut (every connection too) and reopen on
    the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, upstream_writer}
        self._writers |= pair
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe(reader, upstream_writer))
                tg.create_task(self._pipe(upstream_reader, writer))
        finally:
            self._writers -= pair

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()


@pytest.fixture
async def proxy(mosquitto: str) -> AsyncIterator[TcpProxy]:
    p = TcpProxy(BROKER)
    await p.open()
    yield p
    await p.cut()


class RawInbox:
    """Raw messages a plain NATS subscriber received."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[RawMessage] = asyncio.Queue()

    async def handler(self, message: RawMessage) -> None:
        await self.messages.put(message)

    async def next(self, timeout: float = 20.0) -> RawMessage:
        async with asyncio.timeout(timeout):
            return await self.messages.get()


async def next_message(client: aiomqtt.Client, timeout: float = 20.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        return await anext(aiomqtt.MessagesIterator(client))


def mqtt_client(*, v5: bool = True) -> aiomqtt.Client:
    """A client of the test's own, straight to Mosquitto."""
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    return aiomqtt.Client(BROKER[0], BROKER[1], protocol=protocol, identifier=f"test-{uuid.uuid4().hex}")


def observation(site: str, water: float = 15.5) -> BeachObservation:
    return BeachObservation(site=site, observed_at=datetime.now(UTC), water_temperature=water, uv_index=3.0)


def water(message: aiomqtt.Message) -> float:
    """The water temperature of a beach observation received over MQTT."""
    assert isinstance(message.payload, bytes)
    return msgspec.json.decode(message.payload, type=BeachObservation).water_temperature


def config(**values: Any) -> dict[str, Any]:
    """A bridge section that reconnects quickly and keeps its broker session only briefly."""
    return {"reconnect_delay": 0.05, "max_reconnect_delay": 0.2, "session_expiry": 60, **values}


def parse(table: dict[str, Any], name: str = "mqtt-city") -> MqttBridgeConfig:
    cfg = parse_instance(name, MqttBridge, table).config
    assert isinstance(cfg, MqttBridgeConfig)
    return cfg


BEACH_OUT = {"contract": "environment.beach-observation", "topic": "drammen/beach/{entity}"}


# -- the package ----------------------------------------------------------------------------------


def test_package_all_is_sorted_and_every_name_exists() -> None:
    assert adapters.mqtt.__all__ == sorted(adapters.mqtt.__all__)
    assert [n for n in adapters.mqtt.__all__ if not hasattr(adapters.mqtt, n)] == []


def test_the_entry_point_finds_the_bridge() -> None:
    from importlib.metadata import entry_points

    (point,) = [e for e in entry_points(group="citybus.adapters") if e.name == "mqtt-bridge"]
    assert point.load() is MqttBridge


# -- topics and subjects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "subject"),
    [
        # nats-server's own MQTT conversion (docs.nats.io, "Topics and subjects")
        ("sensors/cold-1/temp", "sensors.cold-1.temp"),
        ("/sensors/temp", "/.sensors.temp"),
        ("sensors/temp/", "sensors.temp./"),
        ("sensors//temp", "sensors./.temp"),
        ("//sensors/temp", "/./.sensors.temp"),
        ("cold-1.temp", "cold-1//temp"),
        ("spBv1.0/plant1", "spBv1//0.plant1"),
        # what nats-server refuses, percent-encoded
        ("a b/c*d>/100%", "a%20b.c%2Ad%3E.100%25"),
        ("tab\there", "tab%09here"),
    ],
)
def test_topics_map_to_subjects_as_nats_server_maps_them(topic: str, subject: str) -> None:
    assert topic_to_subject(topic) == subject
    assert subject_to_topic(subject) == topic


def test_a_prefix_goes_before_the_mapped_topic() -> None:
    assert topic_to_subject("v3/app/devices/a1/up", "ttn") == "ttn.v3.app.devices.a1.up"
    assert subject_to_topic("ttn.v3.app.devices.a1.up", "ttn") == "v3/app/devices/a1/up"
    with pytest.raises(ValueError, match="prefix"):
        subject_to_topic("other.v3", "ttn")


_LEVEL = st.text(st.characters(blacklist_characters="/+#\x00", blacklist_categories=("Cs",)), max_size=8)


@given(st.lists(_LEVEL, min_size=1, max_size=6))
def test_every_topic_maps_to_a_valid_subject_and_back(levels: list[str]) -> None:
    topic = "/".join(levels)
    subject = topic_to_subject(topic, "mqtt.in")
    validate_pattern(subject)
    assert not any(token in ("*", ">") for token in subject.split("."))
    assert subject_to_topic(subject, "mqtt.in") == topic


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "anything/at/all", True),
        ("a/+", "a/b/c", False),
        ("+/+", "a", False),
        ("+/b", "a/+", True),
        ("#", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
    ],
)
def test_filters_overlap_when_some_topic_matches_both(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap


def test_a_template_value_never_adds_a_level_or_a_wildcard() -> None:
    template = TopicTemplate("drammen/{domain}/{event}/v{version}/{entity}")
    values = {"domain": "environment", "event": "beach-observation", "version": "1", "entity": "a/b+#"}
    assert template.render(values) == "drammen/environment/beach-observation/v1/a_b__"
    assert template.as_filter() == "drammen/+/+/+/+"
    assert topic_matches(template.as_filter(), template.render(values))


# -- configuration --------------------------------------------------------------------------------


def test_a_public_contract_may_go_out_and_is_what_the_instance_consumes() -> None:
    bridge = MqttBridge(parse({"outbound": [BEACH_OUT]}))
    assert bridge.consumed() == (BeachObservation,)
    assert bridge.produced() == ()


def test_a_personal_contract_never_goes_out_even_with_allow_internal() -> None:
    route = {"contract": "community.volunteer-signup", "topic": "drammen/volunteers/{entity}"}
    with pytest.raises(ConfigError) as info:
        parse({"outbound": [route], "allow_internal": True})
    message = str(info.value)
    assert "[adapters.mqtt-city]" in message
    assert "community.volunteer-signup" in message
    assert "personal" in message


def test_an_internal_contract_goes_out_only_with_allow_internal() -> None:
    route = {"contract": "operations.device-status", "topic": "drammen/devices/{entity}"}
    with pytest.raises(ConfigError) as info:
        parse({"outbound": [route]})
    message = str(info.value)
    assert "operations.device-status" in message
    assert "internal" in message
    assert "allow_internal" in message

    bridge = MqttBridge(parse({"outbound": [route], "allow_internal": True}))
    assert bridge.consumed() == (DeviceStatus,)


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"outbound": [BEACH_OUT], "inbound": [{"topic": "drammen/#"}]}, "read its own messages"),
        ({"outbound": [BEACH_OUT], "inbound": [{"topic": "+/beach/+"}]}, "read its own messages"),
        ({"inbound": [{"topic": "a/#"}, {"topic": "a/b"}]}, "overlap"),
        ({"inbound": [{"topic": "city/#"}]}, "subject_prefix"),
        ({"inbound": [{"topic": "$SYS/#"}]}, "subject_prefix"),
        ({"inbound": [{"topic": "a/#", "subject_prefix": "city.public"}]}, "contract messages only"),
        ({"inbound": [{"topic": "a/b#"}]}, "'#' must be the whole last level"),
        ({"outbound": [{**BEACH_OUT, "topic": "drammen/{site}"}]}, "unknown placeholder"),
        ({"outbound": [{**BEACH_OUT, "topic": "drammen/+/x"}]}, "may not hold '\\+'"),
        ({"outbound": [{**BEACH_OUT, "contract": "environment.sunshine"}]}, "unknown contract"),
        ({"outbound": [BEACH_OUT], "url": "mqtt://user:secret@broker"}, "not in the url"),
        ({"outbound": [BEACH_OUT], "url": "amqp://broker"}, "mqtt:// or mqtts://"),
        ({"outbound": [BEACH_OUT], "qos": 2}, "qos"),
        ({}, "nothing to do"),
    ],
)
def test_a_bad_route_is_a_config_error_naming_the_instance(table: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as info:
        parse(table)
    assert "[adapters.mqtt-city] (mqtt-bridge)" in str(info.value)


def test_the_password_stays_out_of_the_config_repr() -> None:
    cfg = parse({"outbound": [BEACH_OUT], "username": "citybus", "password": "hunter2"})
    assert "hunter2" not in repr(cfg)
    assert cfg.password == "hunter2"


def test_the_url_gives_host_port_and_tls() -> None:
    cfg = msgspec.convert({"url": "mqtts://broker.example", "outbound": [BEACH_OUT]}, MqttBridgeConfig)
    endpoint = cfg.endpoint()
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("broker.example", 8883, True)


# -- against Mosquitto and nats-server ------------------------------------------------------------


async def test_an_mqtt_message_arrives_on_the_mapped_subject_as_it_was_sent(
    mosquitto: str, bus: Bus, tag: str
) -> None:
    inbox = RawInbox()
    await bus.subscribe_raw(f"ttn.t{tag}.>", inbox.handler)
    table = config(url=mosquitto, inbound=[{"topic": f"t{tag}/+/devices/+/up", "subject_prefix": "ttn"}])
    payload = b"\x01\x02 not json \xff"
    async with AdapterHarness(MqttBridge, table, instance=f"in-{tag}", bus=bus) as harness:
        async with mqtt_client() as client:
            await client.publish(f"t{tag}/app/devices/unit 1.a/up", payload, qos=1)
        message = await inbox.next()
        assert harness.adapter.stats.inbound == 1
    assert message.subject == f"ttn.t{tag}.app.devices.unit%201//a.up"
    assert message.data == payload
    assert subject_to_topic(message.subject, "ttn") == f"t{tag}/app/devices/unit 1.a/up"


async def test_a_topic_mapping_to_a_reserved_subject_is_dead_lettered(
    mosquitto: str, bus: Bus, tag: str
) -> None:
    table = config(url=mosquitto, inbound=[{"topic": f"+/t{tag}"}])
    async with AdapterHarness(MqttBridge, table, instance=f"reserved-{tag}", bus=bus) as harness:
        async with mqtt_client() as client:
            await client.publish(f"city/t{tag}", b"{}", qos=1)
        await eventually(lambda: bool(harness.dead_letters))
    (letter,) = harness.dead_letters
    assert letter.reason == "reserved-subject"
    assert letter.original_subject == f"city.t{tag}"
    assert letter.original_headers["mqtt-topic"] == f"city/t{tag}"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_bus_message_goes_out_as_json_on_the_templated_topic(
    mosquitto: str, quiet_bus: Bus, tag: str, entity: str, protocol: str
) -> None:
    route = {"contract": "environment.beach-observation", "topic": f"t{tag}/beach/{{entity}}"}
    table = config(url=mosquitto, outbound=[route], protocol=protocol)
    sent = observation(entity, water=17.25)
    async with mqtt_client() as subscriber:
        await subscriber.subscribe(f"t{tag}/beach/{entity}", qos=1)
        async with AdapterHarness(MqttBridge, table, instance=f"out-{tag}", bus=quiet_bus) as harness:
            ack = await quiet_bus.publish_durable(sent, provenance="sensor", source="/tests")
            message = await next_message(subscriber)
            await eventually(lambda: harness.adapter.stats.outbound >= 1)
    assert message.topic.value == f"t{tag}/beach/{entity}"
    assert isinstance(message.payload, bytes)
    received = msgspec.json.decode(message.payload, type=BeachObservation)
    assert received == sent
    assert msgspec.json.decode(message.payload)["water_temperature"] == 17.25
    attributes = dict(getattr(message.properties, "UserProperty", []) or [])
    if protocol == "5":
        assert attributes["id"] == ack.event_id
        assert attributes["type"] == "environment.beach-observation.v1"
        assert attributes["specversion"] == "1.0"
        assert attributes["provenance"] == "sensor"
        assert message.properties is not None
        assert message.properties.ContentType == "application/json"
    else:
        assert attributes == {}


async def test_the_bridge_waits_for_a_broker_that_is_down_and_is_ready_once_connected(
    proxy: TcpProxy, quiet_bus: Bus, tag: str
) -> None:
    await proxy.cut()  # the port is known, and nothing listens on it
    table = config(url=proxy.url, outbound=[{**BEACH_OUT, "topic": f"t{tag}/beach/{{entity}}"}])
    harness = AdapterHarness(MqttBridge, table, instance=f"late-{tag}", bus=quiet_bus, ready_timeout=30)
    entering = asyncio.create_task(harness.__aenter__())
    try:
        await eventually(lambda: harness.adapter.stats.connection_failures >= 2)
        assert not entering.done()
        assert harness.context is not None and not harness.context.is_ready
        await proxy.open()
        await entering
        assert harness.adapter.connected
    finally:
        entering.cancel()
        await harness.__aexit__(None, None, None)


async def test_the_bridge_reconnects_and_nothing_sent_during_the_outage_is_lost(
    proxy: TcpProxy, quiet_bus: Bus, tag: str, entity: str
) -> None:
    inbox = RawInbox()
    await quiet_bus.subscribe_raw(f"mqtt.t{tag}.>", inbox.handler)
    table = config(
        url=proxy.url,
        inbound=[{"topic": f"t{tag}/in/#", "subject_prefix": "mqtt"}],
        outbound=[{**BEACH_OUT, "topic": f"t{tag}/beach/{{entity}}"}],
    )
    # A short ack_wait: a fetch cut short by the outage is redelivered soon (correctness needs none).
    settings = ConsumerSettings(retry_delay=0.05, ack_wait=2.0)
    async with (
        mqtt_client() as client,
        AdapterHarness(
            MqttBridge, table, instance=f"cut-{tag}", bus=quiet_bus, consumer_settings=settings
        ) as harness,
    ):
        bridge = harness.adapter
        assert isinstance(bridge, MqttBridge)
        await client.subscribe(f"t{tag}/beach/{entity}", qos=1)

        # Both directions flow.
        await quiet_bus.publish_durable(observation(entity, water=14.0), provenance="sensor")
        assert water(await next_message(client)) == 14.0
        await client.publish(f"t{tag}/in/before", b"before", qos=1)
        assert (await inbox.next()).data == b"before"

        # The broker goes away; the bridge notices.
        await proxy.cut()
        await eventually(lambda: bridge.stats.connection_failures >= 1)
        assert not bridge.connected

        # Meanwhile a bus message goes out and an MQTT message comes in.
        await quiet_bus.publish_durable(observation(entity, water=21.5), provenance="sensor")
        await client.publish(f"t{tag}/in/during", b"during", qos=1)

        # The broker comes back: the bridge reconnects and delivers both.
        await proxy.open()
        await eventually(lambda: bridge.connected)
        assert water(await next_message(client)) == 21.5
        arrived = await inbox.next()
        assert (arrived.subject, arrived.data) == (f"mqtt.t{tag}.in.during", b"during")
        assert bridge.stats.connections >= 2

        # And new traffic flows as before.
        await client.publish(f"t{tag}/in/after", b"after", qos=1)
        assert (await inbox.next()).data == b"after"


async def test_a_consumer_that_swallows_a_cancellation_is_stopped_all_the_same() -> None:
    from adapters.mqtt.bridge import _stop_surely

    cancellations = 0

    async def stubborn() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations >= 3:
                    raise  # gives in on the third

    task = asyncio.create_task(_stop_surely(stubborn()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancellations == 3
