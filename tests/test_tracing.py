"""Tracing: one trace follows a replayed beach observation through a service adapter to its output.

The spans are the OpenTelemetry SDK's, kept by its in-memory exporter; the messages go through a
real nats-server, with the W3C trace context in their ``traceparent`` header.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from adapters import Adapter, Context, NoConfig, Supervisor
from adapters.instances import parse_instance
from bus import Bus, Event, Metrics, RawMessage
from bus.envelope import build_headers
from bus.errors import ConfigError
from bus.server import EmbeddedServer
from bus.tracing import TRACEPARENT, Tracing, from_config
from contracts import BeachObservation, DeadLetter, VolunteerSignup, WeatherObserved
from sandbox.adapter import SandboxReplay
from sandbox.recording import RecordingWriter
from tests.conftest import wait_for

WHEN = datetime(2018, 8, 28, 6, 0, tzinfo=UTC)


@pytest.fixture
def spans() -> Iterator[tuple[InMemorySpanExporter, Tracing]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, Tracing(provider)
    provider.shutdown()


class BeachToWeather(Adapter[NoConfig]):
    """A service: each beach observation in, a weather observation of the same place out."""

    name = "beach-to-weather"
    consumes = (BeachObservation,)
    produces = (WeatherObserved,)
    site: ClassVar[str] = ""

    async def run(self, ctx: Context) -> None:
        async def on_beach(event: Event[BeachObservation]) -> None:
            weather = msgspec.structs.replace(
                WeatherObserved.example(), station=event.data.site, temperature=event.data.water_temperature
            )
            await ctx.publish(weather, provenance="synthetic")

        await ctx.consume(BeachObservation, on_beach, entity=self.site)
        ctx.ready()
        await ctx.wait_stopped()


def recording_of_one(path: Path, site: str) -> Path:
    observation = BeachObservation(site=site, observed_at=WHEN, water_temperature=17.5)
    headers = build_headers(
        BeachObservation.__contract__, event_id="rec-1", source="/rec", time=WHEN, provenance="sensor"
    )
    with RecordingWriter(path) as writer:
        writer.add(
            f"city.public.environment.beach-observation.{site}", msgspec.json.encode(observation), headers
        )
    return path


def by_name(finished: tuple[ReadableSpan, ...], prefix: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in finished if s.name.startswith(prefix) and s.kind is kind]
    assert len(found) == 1, [s.name for s in finished]
    return found[0]


async def test_one_trace_follows_a_replayed_observation_through_a_service_to_its_output(
    nats_server: EmbeddedServer, tmp_path: Path, spans: tuple[InMemorySpanExporter, Tracing]
) -> None:
    exporter, tracing = spans
    site = f"trace-{uuid.uuid4().hex[:8]}"
    BeachToWeather.site = site
    bus = Bus(metrics=Metrics(), source="/tests", tracing=tracing)
    await bus.connect(nats_server.url)
    await bus.provision_streams()
    outputs: list[Event[WeatherObserved]] = []

    async def on_output(event: Event[WeatherObserved]) -> None:
        outputs.append(event)

    await bus.subscribe(WeatherObserved, on_output, entity=site)
    replay = parse_instance(
        "sandbox",
        SandboxReplay,
        {"files": [str(recording_of_one(tmp_path / "beach.mcap", site))], "speed": 0.0, "loop": False},
    )
    service = parse_instance("beach-to-weather", BeachToWeather, {})
    supervisor = Supervisor([replay, service], bus=bus)
    task = asyncio.create_task(supervisor.run())
    try:
        await wait_for(lambda: len(outputs) == 1, timeout=20)
    finally:
        supervisor.stop()
        await task
        await bus.drain()

    finished = exporter.get_finished_spans()
    beach_type = BeachObservation.__contract__.type
    weather_type = WeatherObserved.__contract__.type
    replayed = by_name(finished, f"create {beach_type}", SpanKind.PRODUCER)
    handled = by_name(finished, f"process {beach_type}", SpanKind.CONSUMER)
    produced = by_name(finished, f"create {weather_type}", SpanKind.PRODUCER)
    received = by_name(finished, f"process {weather_type}", SpanKind.CONSUMER)
    chain = [replayed, handled, produced, received]
    assert len({s.context.trace_id for s in chain}) == 1  # one trace, end to end
    assert replayed.parent is None  # the replay starts it
    for parent, child in zip(chain, chain[1:], strict=False):
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert handled.attributes is not None and handled.attributes["citybus.delivery"] == "consume"
    assert received.attributes is not None and received.attributes["citybus.delivery"] == "subscribe"


async def test_a_dead_letter_is_traced_and_linked_to_its_original(
    nats_server: EmbeddedServer, entity: str, spans: tuple[InMemorySpanExporter, Tracing]
) -> None:
    exporter, tracing = spans
    bus = Bus(metrics=Metrics(), source="/tests", tracing=tracing)
    await bus.connect(nats_server.url)
    await bus.provision_streams()
    letters: list[Event[DeadLetter]] = []

    async def on_letter(event: Event[DeadLetter]) -> None:
        if event.data.original_subject.endswith(entity):
            letters.append(event)

    async def fails(event: Event[BeachObservation]) -> None:
        raise RuntimeError("no")

    try:
        await bus.subscribe(DeadLetter, on_letter, entity=">")
        await bus.subscribe(BeachObservation, fails, entity=entity)
        await bus.publish(msgspec.structs.replace(BeachObservation.example(), site=entity))
        await wait_for(lambda: len(letters) == 1)
    finally:
        await bus.drain()
    finished = exporter.get_finished_spans()
    original = by_name(finished, f"create {BeachObservation.__contract__.type}", SpanKind.PRODUCER)
    letter = [s for s in finished if s.name == "dead-letter handler-error"]
    assert len(letter) == 1
    assert [link.context.span_id for link in letter[0].links] == [original.context.span_id]
    assert letters[0].data.original_headers[TRACEPARENT].split("-")[1] == format(
        original.context.trace_id, "032x"
    )


async def test_without_tracing_no_span_no_header_no_middleware(
    nats_server: EmbeddedServer, entity: str
) -> None:
    bus = Bus(metrics=Metrics(), source="/tests")
    await bus.connect(nats_server.url)
    got: list[Event[BeachObservation]] = []
    raw: list[RawMessage] = []

    async def on_event(event: Event[BeachObservation]) -> None:
        got.append(event)

    async def on_raw(message: RawMessage) -> None:
        raw.append(message)

    try:
        await bus.subscribe_raw(f"city.public.environment.beach-observation.{entity}", on_raw)
        await bus.subscribe(BeachObservation, on_event, entity=entity)
        await bus.publish(msgspec.structs.replace(BeachObservation.example(), site=entity))
        await wait_for(lambda: len(got) == 1 and len(raw) == 1)
    finally:
        await bus.drain()
    assert bus.tracing is None and bus.middleware == []
    assert TRACEPARENT not in (raw[0].headers or {})


def test_tracing_is_configured_in_citybus_toml_and_off_by_default(tmp_path: Path) -> None:
    from bus.config import load_config

    assert from_config(False, "", "citybus") is None
    assert load_config(None, environ={}).tracing.enabled is False
    toml = tmp_path / "citybus.toml"
    toml.write_text('[tracing]\nenabled = true\nendpoint = "http://127.0.0.1:4318/v1/traces"\n')
    config = load_config(toml, environ={"CITYBUS_TRACING_SERVICE_NAME": "drammen"})
    assert (config.tracing.enabled, config.tracing.service_name) == (True, "drammen")
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:  # the `tracing` extra is not installed: one line saying what to install
        with pytest.raises(ConfigError, match=r"pip install 'citybus\[tracing\]'"):
            from_config(True, config.tracing.endpoint, config.tracing.service_name)
    else:
        assert isinstance(from_config(True, config.tracing.endpoint, "drammen"), Tracing)


async def test_propagating_only_carries_a_handlers_input_trace_to_its_output() -> None:
    """``[tracing] export = false``: nothing recorded, no SDK; a message without a trace context gets
    a new one, and what a handler publishes carries the trace of what it handled."""
    from bus.pipeline import Route
    from bus.tracing import trace_id

    tracing = from_config(True, "", "citybus", export=False)
    assert tracing is not None
    first: dict[str, str] = {"ce-id": "a"}
    tracing.stamp("city.public.x.y.z", first)
    other: dict[str, str] = {"ce-id": "b"}
    tracing.stamp("city.public.x.y.z", other)
    assert trace_id(first) and trace_id(other) and trace_id(first) != trace_id(other)
    published: dict[str, str] = {}

    async def handler(item: object, msg: RawMessage) -> None:
        tracing.stamp("city.public.out.put.z", published)  # what a handler's publish does

    step = tracing.middleware(Route(kind="subscribe", subject="city.public.x.y.*"), handler)
    await step(None, RawMessage("city.public.x.y.z", b"{}", first))
    assert trace_id(published) == trace_id(first)


async def test_no_span_names_the_person_a_personal_message_is_about(
    nats_server: EmbeddedServer, spans: tuple[InMemorySpanExporter, Tracing]
) -> None:
    """A sealed personal message's spans carry its subject as it travelled: with the person's ref,
    never their id, which a tracing backend would keep beyond any erasure."""
    exporter, tracing = spans
    bus = Bus(metrics=Metrics(), source="/tests", tracing=tracing)
    await bus.connect(nats_server.url)
    await bus.provision_streams()
    person = f"v-{uuid.uuid4().hex[:12]}"
    got: list[Event[VolunteerSignup]] = []

    async def keep(event: Event[VolunteerSignup]) -> None:
        got.append(event)

    example = msgspec.convert(VolunteerSignup.__contract__.example, type=VolunteerSignup)
    try:
        await bus.subscribe(VolunteerSignup, keep)
        await bus.flush()
        await bus.publish(msgspec.structs.replace(example, volunteer_id=person))
        await bus.publish_durable(msgspec.structs.replace(example, volunteer_id=person))
        await wait_for(lambda: len(got) == 2)
        ref = await bus.vault.ref(person)
    finally:
        await bus.drain()
    finished = exporter.get_finished_spans()
    created = [s for s in finished if s.name == f"create {VolunteerSignup.__contract__.type}"]
    assert len(created) == 2
    assert {s.attributes["messaging.destination.name"] for s in created if s.attributes} == {
        f"city.personal.community.volunteer-signup.{ref}"
    }
    assert got[0].envelope.subject.endswith(ref)
    for span in finished:
        assert (
            person not in f"{span.name} {dict(span.attributes or {})} {[e.attributes for e in span.events]}"
        )
