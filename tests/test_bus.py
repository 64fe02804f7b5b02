"""The bus against a real nats-server: typed publish/subscribe, queue groups, request/reply,
dead letters, JetStream retries and dedupe, and surviving a server restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import pytest
from conftest import wait_for
from nats.js import api

from bus import Bus, CityBusError, ConsumerSettings, Event, Metrics, Provenance, PublishTimeoutError
from bus.control import BAD_REQUEST, ERROR_CODE_HEADER, ERROR_HEADER, FAILED, raise_for_refusal
from bus.deadletters import PAYLOAD_LIMIT
from bus.envelope import CONTENT_TYPES, build_headers, new_event_id
from bus.errors import RequestRefusedError
from bus.server import EmbeddedServer
from bus.subjects import contract_subject, request_subject
from contracts import BeachObservation, DeadLetter, PersonalDeadLetter, VolunteerSignup, WeatherObserved


def beach(entity: str, **changes: object) -> BeachObservation:
    return msgspec.structs.replace(BeachObservation.example(), site=entity, **changes)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


class Collector:
    """A handler that keeps what it receives."""

    def __init__(self) -> None:
        self.events: list[Event[msgspec.Struct]] = []

    async def __call__(self, event: Event[msgspec.Struct]) -> None:
        self.events.append(event)


async def dead_letter_collector(bus: Bus) -> Collector:
    letters = Collector()
    await bus.subscribe(DeadLetter, letters, entity=">")
    return letters


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_publish_reaches_typed_subscriber(any_bus: Bus, entity: str, encoding: str) -> None:
    got = Collector()
    await any_bus.subscribe(BeachObservation, got, entity=entity)
    sent = beach(entity)
    event_id = await any_bus.publish(sent, provenance=Provenance.SENSOR, encoding=encoding)
    await wait_for(lambda: len(got.events) == 1)
    event = got.events[0]
    assert event.data == sent
    assert isinstance(event.data, BeachObservation)
    assert event.id == event_id
    assert event.provenance == "sensor"
    assert event.envelope.type == "environment.beach-observation.v1"
    assert event.envelope.source == "/tests"
    assert event.subject == f"city.public.environment.beach-observation.{entity}"
    assert (
        sample(
            any_bus.metrics, "citybus_messages_received_total", contract="environment.beach-observation.v1"
        )
        == 1
    )


async def test_queue_group_shares_work(any_bus: Bus, entity: str) -> None:
    first, second = Collector(), Collector()
    await any_bus.subscribe(BeachObservation, first, queue="stats", entity=entity)
    await any_bus.subscribe(BeachObservation, second, queue="stats", entity=entity)
    for i in range(40):
        await any_bus.publish(beach(entity, water_temperature=10 + i / 10))
    await wait_for(lambda: len(first.events) + len(second.events) == 40)
    await asyncio.sleep(0.1)
    assert len(first.events) + len(second.events) == 40  # each message to exactly one member
    assert first.events and second.events


async def test_request_reply(any_bus: Bus, entity: str) -> None:
    async def respond(event: Event[BeachObservation]) -> WeatherObserved:
        return msgspec.structs.replace(
            WeatherObserved.example(), station=event.data.site, temperature=event.data.water_temperature
        )

    await any_bus.serve(BeachObservation, respond, entity=entity)
    reply = await any_bus.request(beach(entity, water_temperature=17.3), WeatherObserved)
    assert isinstance(reply.data, WeatherObserved)
    assert reply.data.station == entity
    assert reply.data.temperature == 17.3


async def test_request_with_invalid_body_is_refused_not_timed_out(any_bus: Bus, entity: str) -> None:
    """The requester gets an error naming the reason, in the one way every refusal travels (the NATS
    service error headers, as :mod:`bus.control` sends them), not a timeout."""

    async def respond(event: Event[BeachObservation]) -> WeatherObserved:
        raise AssertionError("an invalid request must not reach the responder")

    await any_bus.serve(BeachObservation, respond, entity=entity)
    too_warm = beach(entity, water_temperature=99.0)  # msgspec checks `le=40` on decoding only
    with pytest.raises(RequestRefusedError, match="refused the request .*invalid-body") as refused:
        await any_bus.request(too_warm, WeatherObserved, timeout=5)
    assert refused.value.code == BAD_REQUEST
    assert request_subject(too_warm) in str(refused.value)

    # The same refusal as raw bytes, from a client that is not citybus: the standard headers.
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/t",
        time=beach(entity).observed_at,
        provenance="manual",
    )
    reply = await any_bus.nc.request(request_subject(too_warm), b'{"site": 1}', headers=headers, timeout=5)
    assert reply.data == b"" and reply.headers is not None
    assert reply.headers[ERROR_CODE_HEADER] == BAD_REQUEST
    assert reply.headers[ERROR_HEADER].startswith("invalid-body")


async def test_a_failing_responder_is_an_error_on_the_requesters_side(any_bus: Bus, entity: str) -> None:
    async def respond(event: Event[BeachObservation]) -> WeatherObserved:
        raise RuntimeError("the weather station is down")

    await any_bus.serve(BeachObservation, respond, entity=entity)
    with pytest.raises(
        RequestRefusedError, match="handler-error: RuntimeError: the weather station"
    ) as refused:
        await any_bus.request(beach(entity), WeatherObserved, timeout=5)
    assert refused.value.code == FAILED


@pytest.mark.parametrize(
    ("body", "headers", "reason", "detail"),
    [
        (b'{"site": "x", "water_tem', "ok", "invalid-body", "not valid application/json"),
        (b'{"site": "x"}', "ok", "invalid-body", "missing required field `observed_at`"),
        (b'{"site": "br\xc5gernes"}', "ok", "invalid-body", "not valid application/json"),  # not UTF-8
        (b"{}", None, "missing-header", "no headers"),
        (b"{}", {"ce-id": "1"}, "missing-header", "ce-specversion"),
        (b"{}", "wrong", "wrong-contract", "environment.weather-observed.v1"),
        (b"{}", "unknown", "unknown-type", "not a known contract"),
    ],
)
async def test_bad_messages_go_to_dead_letters_and_subscriber_keeps_running(
    any_bus: Bus, entity: str, body: bytes, headers: object, reason: str, detail: str
) -> None:
    letters = await dead_letter_collector(any_bus)
    got = Collector()
    await any_bus.subscribe(BeachObservation, got, entity=entity)
    subject = contract_subject(beach(entity))
    good = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/t",
        time=beach(entity).observed_at,
        provenance="sensor",
    )
    if headers == "ok":
        headers = good
    elif headers == "wrong":
        headers = {**good, "ce-type": "environment.weather-observed.v1"}
    elif headers == "unknown":
        headers = {**good, "ce-type": "nobody.knows.v9"}
    await any_bus.nc.publish(subject, body, headers=headers)  # type: ignore[arg-type]
    await any_bus.publish(beach(entity))  # the subscriber still works afterwards
    await wait_for(lambda: len(got.events) == 1 and len(letters.events) == 1)
    letter = letters.events[0].data
    assert isinstance(letter, DeadLetter)
    assert letter.reason == reason
    assert detail in letter.detail
    assert letter.original_subject == subject
    assert letter.payload == body
    assert letter.contract == "environment.beach-observation.v1"
    assert (
        sample(
            any_bus.metrics,
            "citybus_messages_invalid_total",
            contract="environment.beach-observation.v1",
            reason=reason,
        )
        >= 1
    )
    assert (
        sample(
            any_bus.metrics,
            "citybus_dead_letters_total",
            contract="environment.beach-observation.v1",
            reason=reason,
        )
        >= 1
    )


async def test_dead_letters_are_stored_in_jetstream(any_bus: Bus, entity: str) -> None:
    subject = contract_subject(beach(entity))
    await any_bus.subscribe(BeachObservation, Collector(), entity=entity)
    await any_bus.nc.publish(subject, b"garbage", headers={"ce-id": "x"})
    await any_bus.flush()
    sub = await any_bus.js.pull_subscribe(
        "city.internal.citybus.dead-letter.>", stream="CITY_INTERNAL_CITYBUS"
    )
    found: list[DeadLetter] = []
    async with asyncio.timeout(10):
        while not any(d.original_subject == subject for d in found):
            for msg in await sub.fetch(100, timeout=2):
                found.append(msgspec.json.decode(msg.data, type=DeadLetter))
    await sub.unsubscribe()


async def test_handler_error_is_dead_lettered_on_core_subscription(any_bus: Bus, entity: str) -> None:
    letters = await dead_letter_collector(any_bus)

    async def broken(event: Event[BeachObservation]) -> None:
        raise RuntimeError("sink unavailable")

    await any_bus.subscribe(BeachObservation, broken, entity=entity)
    await any_bus.publish(beach(entity))
    await wait_for(lambda: len(letters.events) == 1)
    assert letters.events[0].data.reason == "handler-error"  # type: ignore[attr-defined]
    assert "sink unavailable" in letters.events[0].data.detail  # type: ignore[attr-defined]


async def test_durable_consumer_retries_then_dead_letters(any_bus: Bus, entity: str) -> None:
    letters = await dead_letter_collector(any_bus)
    calls: list[int] = []

    async def always_fails(event: Event[BeachObservation]) -> None:
        calls.append(1)
        raise RuntimeError("database down")

    settings = ConsumerSettings(max_deliver=3, retry_delay=0.05, ack_wait=5)
    consumer = any_bus.consume(
        BeachObservation, always_fails, durable=f"retry-{entity}", entity=entity, settings=settings
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run())
        await any_bus.publish_durable(beach(entity))
        await wait_for(lambda: len(letters.events) == 1)
        consumer.stop()
    letter = letters.events[0].data
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "max-deliver"
    assert letter.deliveries == 3
    assert "database down" in letter.detail
    assert len(calls) == 3


async def test_durable_consumer_recovers_after_transient_failures(any_bus: Bus, entity: str) -> None:
    letters = await dead_letter_collector(any_bus)
    attempts: list[int] = []
    done: list[Event[BeachObservation]] = []

    async def flaky(event: Event[BeachObservation]) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        done.append(event)

    settings = ConsumerSettings(max_deliver=5, retry_delay=0.05)
    consumer = any_bus.consume(
        BeachObservation, flaky, durable=f"flaky-{entity}", entity=entity, settings=settings
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run())
        await any_bus.publish_durable(beach(entity))
        await wait_for(lambda: len(done) == 1)
        consumer.stop()
    assert len(attempts) == 3
    assert not [e for e in letters.events if e.data.original_subject.endswith(entity)]  # type: ignore[attr-defined]


async def test_durable_consumer_dead_letters_invalid_message(any_bus: Bus, entity: str) -> None:
    letters = await dead_letter_collector(any_bus)
    got = Collector()
    consumer = any_bus.consume(BeachObservation, got, durable=f"invalid-{entity}", entity=entity)
    subject = contract_subject(beach(entity))
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/t",
        time=beach(entity).observed_at,
        provenance="sensor",
    )
    await any_bus.js.publish(subject, b'{"site": "nope"}', headers=headers)
    await any_bus.publish_durable(beach(entity))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run())
        await wait_for(lambda: len(got.events) == 1 and len(letters.events) == 1)
        consumer.stop()
    assert letters.events[0].data.reason == "invalid-body"  # type: ignore[attr-defined]
    assert letters.events[0].data.consumer == f"invalid-{entity}"  # type: ignore[attr-defined]


async def stored_ids(bus: Bus, subject: str, stream: str) -> list[str]:
    """Every ce-id a stream holds on ``subject``, read with an ephemeral consumer."""
    info = await bus.js.stream_info(stream, subjects_filter=subject)
    expected = (info.state.subjects or {}).get(subject, 0)
    sub = await bus.js.pull_subscribe(
        subject,
        stream=stream,
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL),
    )
    ids: list[str] = []
    while len(ids) < expected:
        for msg in await sub.fetch(min(500, expected - len(ids)), timeout=5):
            assert msg.headers is not None
            ids.append(msg.headers["ce-id"])
    await sub.unsubscribe()
    return ids


async def test_duplicate_event_id_is_stored_once(any_bus: Bus, entity: str) -> None:
    event_id = new_event_id()
    first = await any_bus.publish_durable(beach(entity), event_id=event_id)
    second = await any_bus.publish_durable(beach(entity), event_id=event_id)
    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    subject = contract_subject(beach(entity))
    assert await stored_ids(any_bus, subject, "CITY_PUBLIC_ENVIRONMENT") == [event_id]


async def test_many_durable_publishes_are_pipelined_acknowledged_in_order_and_stored_once(
    any_bus: Bus, entity: str
) -> None:
    readings = [beach(entity, water_temperature=i / 10) for i in range(120)]
    acks = await any_bus.publish_durable_many(readings, window=16)
    assert len(acks) == 120
    assert [a.stream for a in acks] == ["CITY_PUBLIC_ENVIRONMENT"] * 120
    assert all(not a.duplicate for a in acks)
    assert [a.seq for a in acks] == sorted(a.seq for a in acks)  # in the order given
    subject = contract_subject(readings[0])
    assert await stored_ids(any_bus, subject, "CITY_PUBLIC_ENVIRONMENT") == [a.event_id for a in acks]
    published = any_bus.metrics.contract(BeachObservation.__contract__.type).published
    assert published._value.get() >= 120  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="window"):
        await any_bus.publish_durable_many(readings, window=0)


async def test_many_durable_publishes_survive_a_server_restart(
    fresh_server: EmbeddedServer, entity: str
) -> None:
    b = Bus(metrics=Metrics(), source="/tests", request_timeout=1.0)
    await b.connect(fresh_server.url, reconnect_wait=0.1)
    await b.provision_streams()
    acked: list[str] = []

    async def produce() -> None:
        for batch in range(6):
            readings = [beach(entity, water_temperature=(batch * 50 + i) / 10) for i in range(50)]
            acked.extend(a.event_id for a in await b.publish_durable_many(readings, timeout=60, window=8))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        await wait_for(lambda: len(acked) >= 50)
        await fresh_server.kill()
        await asyncio.sleep(0.3)
        await fresh_server.start()
    ids = await stored_ids(b, contract_subject(beach(entity)), "CITY_PUBLIC_ENVIRONMENT")
    assert len(ids) == 300 and sorted(ids) == sorted(acked)  # every one stored, exactly once
    await b.drain()


async def test_many_durable_publishes_during_an_outage_time_out_and_the_bus_works_again_after(
    fresh_server: EmbeddedServer, entity: str
) -> None:
    """More messages than nats-py's 4,000 publish_async slots, while the server is away: each call ends
    at its timeout, and once the server is back the same bus publishes again (nothing leaked)."""
    b = Bus(metrics=Metrics(), source="/tests", request_timeout=0.5)
    await b.connect(fresh_server.url, reconnect_wait=0.1)
    await b.provision_streams()
    readings = [beach(entity, water_temperature=i / 1000) for i in range(5000)]
    try:
        assert len(await b.publish_durable_many(readings[:500])) == 500
        await fresh_server.kill()
        for _ in range(2):
            async with asyncio.timeout(15):  # a hang fails here instead of holding the suite
                with pytest.raises(PublishTimeoutError, match="were not acknowledged"):
                    await b.publish_durable_many(readings, timeout=1.5)
        await fresh_server.start()
        await wait_for(lambda: b.connected)
        async with asyncio.timeout(30):
            acks = await b.publish_durable_many(readings[500:2500], timeout=20)
        assert len(acks) == 2000 and b._durable.awaiting == 0  # every token given back
    finally:
        await b.close()


async def test_many_durable_publishes_without_a_stream_time_out_saying_how_many(
    fresh_server: EmbeddedServer,
) -> None:
    b = Bus(metrics=Metrics(), source="/tests", request_timeout=0.5)
    await b.connect(fresh_server.url)  # streams not provisioned: nothing stores the messages
    try:
        with pytest.raises(PublishTimeoutError, match="3 of 3 messages were not acknowledged"):
            await b.publish_durable_many([beach(f"nostream-{i}") for i in range(3)], timeout=1.0)
    finally:
        await b.close()


async def test_durable_publishes_survive_server_restart(fresh_server: EmbeddedServer, entity: str) -> None:
    b = Bus(metrics=Metrics(), source="/tests", request_timeout=1.0)
    await b.connect(fresh_server.url, reconnect_wait=0.1)
    await b.provision_streams()
    total = 300
    acked: list[str] = []

    async def produce() -> None:
        for i in range(total):
            ack = await b.publish_durable(beach(entity, water_temperature=i / 10), timeout=60)
            acked.append(ack.event_id)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        await wait_for(lambda: len(acked) >= 50)
        await fresh_server.kill()
        await asyncio.sleep(0.3)
        await fresh_server.start()
    assert b.metrics.reconnects._value.get() >= 1  # type: ignore[attr-defined]
    ids = await stored_ids(b, contract_subject(beach(entity)), "CITY_PUBLIC_ENVIRONMENT")
    assert len(ids) == total
    assert sorted(ids) == sorted(acked)
    await b.drain()


async def test_flooding_publisher_that_also_subscribes_receives_everything(bus: Bus, entity: str) -> None:
    got = Collector()
    await bus.subscribe(BeachObservation, got, entity=entity)
    total = 20_000
    message = beach(entity)
    for _ in range(total):
        await bus.publish(message)
    await wait_for(lambda: len(got.events) == total, timeout=60)
    assert sample(bus.metrics, "citybus_nats_slow_consumers_total") == 0
    # The stream stored them too; drop them so durable consumers in later tests need not wade through.
    await bus.js.purge_stream("CITY_PUBLIC_ENVIRONMENT", subject=contract_subject(message))


async def test_connect_to_dead_server_says_what_to_do() -> None:
    b = Bus(metrics=Metrics())
    with pytest.raises(CityBusError, match="no NATS server answered at nats://127.0.0.1:1"):
        await b.connect("nats://127.0.0.1:1", connect_timeout=1)


async def test_publish_before_connect_is_a_clear_error(entity: str) -> None:
    with pytest.raises(CityBusError, match="not connected"):
        await Bus(metrics=Metrics()).publish(beach(entity))


async def test_raw_client_sees_cloudevents_headers(
    bus: Bus, nats_server: EmbeddedServer, entity: str
) -> None:
    nc = await nats.connect(nats_server.url)
    sub = await nc.subscribe(contract_subject(beach(entity)))
    await nc.flush()
    event_id = await bus.publish(beach(entity), provenance="recorded")
    msg = await sub.next_msg(timeout=5)
    assert msg.headers is not None
    assert msg.headers["ce-specversion"] == "1.0"
    assert msg.headers["ce-id"] == event_id
    assert msg.headers["Nats-Msg-Id"] == event_id
    assert msg.headers["ce-provenance"] == "recorded"
    assert msg.headers["content-type"] == "application/json"
    assert msg.headers["ce-dataschema"] == "urn:citybus:contract:environment.beach-observation:v1"
    assert msg.headers["ce-time"].endswith("Z")
    await nc.close()


async def test_wrong_credentials_fail_fast_instead_of_retrying_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with EmbeddedServer(
        data_dir=tmp_path / "nats", extra_config='authorization { user: "city", password: "right" }'
    ) as server:
        port = server.url.rsplit(":", 1)[1]
        b = Bus(metrics=Metrics())
        with pytest.raises(CityBusError, match="refused the connection.*check the credentials") as caught:
            await b.connect(f"nats://city:wrong@127.0.0.1:{port}", connect_timeout=2)
        assert "wrong" not in str(caught.value)  # the password is not repeated back
        # The refusal is said once, by citybus: nats-py does not log it with a traceback too.
        assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
        await b.connect(f"nats://city:right@127.0.0.1:{port}", connect_timeout=2)
        assert b.connected
        await b.drain()


async def test_a_personal_message_s_dead_letter_stays_personal(any_bus: Bus, entity: str) -> None:
    internal = await dead_letter_collector(any_bus)
    personal = Collector()
    await any_bus.subscribe(PersonalDeadLetter, personal, entity=">")
    await any_bus.subscribe(VolunteerSignup, Collector(), entity=entity)
    subject = f"city.personal.community.volunteer-signup.{entity}"
    when = datetime(2018, 8, 29, 19, 42, tzinfo=UTC)
    headers = build_headers(
        VolunteerSignup.__contract__, event_id=new_event_id(), source="/t", time=when, provenance="manual"
    )
    body = (
        b'{"volunteer_id": "v-1", "name": "Kari Nordmann", "phone": 4791234567}'  # a wrong type, and a name
    )
    await any_bus.nc.publish(subject, body, headers=headers)  # type: ignore[arg-type]
    await wait_for(lambda: len(personal.events) == 1)
    letter = personal.events[0].data
    assert isinstance(letter, PersonalDeadLetter) and letter.payload == body
    assert personal.events[0].envelope.subject.startswith("city.personal.citybus.personal-dead-letter.")
    await any_bus.flush()
    assert internal.events == []  # internal readers (operators, dashboards) never see the name


async def test_a_huge_bad_message_is_dead_lettered_with_its_head(any_bus: Bus, entity: str) -> None:
    letters = await dead_letter_collector(any_bus)
    await any_bus.subscribe(BeachObservation, Collector(), entity=entity)
    subject = contract_subject(beach(entity))
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/t",
        time=beach(entity).observed_at,
        provenance="sensor",
    )
    body = b'{"site": "' + b"x" * (PAYLOAD_LIMIT + 1000) + b'"}'  # base64 of it would not fit in 1 MiB
    await any_bus.nc.publish(subject, body, headers=headers)  # type: ignore[arg-type]
    await wait_for(lambda: len(letters.events) == 1)
    letter = letters.events[0].data
    assert letter.payload == body[:PAYLOAD_LIMIT]  # type: ignore[attr-defined]
    assert f"keeps the first {PAYLOAD_LIMIT} of {len(body)} bytes" in letter.detail  # type: ignore[attr-defined]


async def test_a_durable_consumer_reports_its_backlog(any_bus: Bus, entity: str) -> None:
    release = asyncio.Event()
    handled: list[Event[BeachObservation]] = []

    async def slow(event: Event[BeachObservation]) -> None:
        await release.wait()
        handled.append(event)

    for _ in range(5):
        await any_bus.publish_durable(beach(entity))
    durable = f"backlog-{entity}"
    settings = ConsumerSettings(max_in_flight=1)
    consumer = any_bus.consume(BeachObservation, slow, durable=durable, entity=entity, settings=settings)

    def pending() -> float:
        labels = {"consumer": durable, "stream": "CITY_PUBLIC_ENVIRONMENT"}
        return any_bus.metrics.registry.get_sample_value("citybus_consumer_pending", labels) or 0.0

    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run())
        await wait_for(lambda: pending() == 4)  # one in the handler, four waiting in the stream
        release.set()
        await wait_for(lambda: len(handled) == 5)
        await wait_for(lambda: pending() == 0)
        consumer.stop()


def deeply_nested(encoding: str, depth: int = 5000) -> bytes:
    """A beach observation with an unknown field holding ``depth`` nested arrays (a few kilobytes):
    msgspec skips the field recursively, past the interpreter's recursion limit."""
    fields = msgspec.to_builtins(beach("x"))
    if encoding == "json":
        return msgspec.json.encode(fields)[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    head = msgspec.msgpack.encode({**fields, "x": 0})[:-1]  # the map's last value replaced below
    return head + b"\x91" * depth + b"\x90"


def body_headers(encoding: str) -> dict[str, str]:
    return build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/t",
        time=datetime.now(UTC),
        provenance="sensor",
        content_type=CONTENT_TYPES[encoding],
    )


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_a_deeply_nested_body_is_dead_lettered_on_a_subscription(
    any_bus: Bus, entity: str, encoding: str
) -> None:
    letters = await dead_letter_collector(any_bus)
    got = Collector()
    await any_bus.subscribe(BeachObservation, got, entity=entity)
    subject = contract_subject(beach(entity))
    body = deeply_nested(encoding)
    await any_bus.nc.publish(subject, body, headers=body_headers(encoding))
    await any_bus.publish(beach(entity))  # the subscriber still works afterwards
    await wait_for(lambda: len(got.events) == 1 and len(letters.events) == 1)
    letter = letters.events[0].data
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.original_subject, letter.payload) == ("invalid-body", subject, body)
    assert "nested too deeply" in letter.detail


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_a_deeply_nested_body_is_dead_lettered_by_a_durable_consumer_which_goes_on(
    any_bus: Bus, entity: str, encoding: str
) -> None:
    letters = await dead_letter_collector(any_bus)
    got = Collector()
    consumer = any_bus.consume(BeachObservation, got, durable=f"deep-{entity}", entity=entity)
    subject = contract_subject(beach(entity))
    await any_bus.js.publish(subject, deeply_nested(encoding), headers=body_headers(encoding))
    await any_bus.publish_durable(beach(entity))
    async with asyncio.TaskGroup() as tg:
        running = tg.create_task(consumer.run())
        await wait_for(lambda: len(got.events) == 1 and len(letters.events) == 1 or running.done())
        assert not running.done()  # run() did not die on the message
        consumer.stop()
    letter = letters.events[0].data
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.consumer) == ("invalid-body", f"deep-{entity}")
    assert "nested too deeply" in letter.detail


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_a_deeply_nested_request_is_refused_and_dead_lettered(
    any_bus: Bus, entity: str, encoding: str
) -> None:
    letters = await dead_letter_collector(any_bus)

    async def respond(event: Event[BeachObservation]) -> WeatherObserved:
        raise AssertionError("an invalid request must not reach the responder")

    await any_bus.serve(BeachObservation, respond, entity=entity)
    subject = request_subject(beach(entity))
    body, headers = deeply_nested(encoding), body_headers(encoding)
    reply = await any_bus.nc.request(subject, body, headers=headers, timeout=5)
    with pytest.raises(RequestRefusedError, match="invalid-body") as refused:
        raise_for_refusal(reply.headers, subject)  # what the requester's bus does with the reply
    assert refused.value.code == BAD_REQUEST
    await wait_for(lambda: len(letters.events) == 1)
    assert "nested too deeply" in letters.events[0].data.detail  # type: ignore[attr-defined]
