"""Dead letters on a real nats-server: every one fits in a NATS message and is stored, counted once
when stored (and apart when not), logged in bounded lines, and stored once however often its
original comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
import structlog
from conftest import open_bus, wait_for

from bus import Bus, Metrics
from bus.bus import RawMessage
from bus.deadletters import HEADERS_LIMIT, LOG_LIMIT, PAYLOAD_LIMIT, letter_id
from bus.envelope import build_headers, new_event_id
from bus.server import EmbeddedServer
from bus.subjects import contract_subject
from contracts import BeachObservation, DeadLetter

CE_TYPE = BeachObservation.__contract__.type


def sample(bus: Bus, name: str, **labels: str) -> float:
    return bus.metrics.registry.get_sample_value(name, labels) or 0.0


async def stored_letters(bus: Bus, subject: str) -> list[tuple[str, DeadLetter]]:
    """The dead letters of ``subject`` the dead-letter stream holds, with their ce-ids."""
    sub = await bus.js.pull_subscribe("city.internal.citybus.dead-letter.>", stream="CITY_INTERNAL_CITYBUS")
    found: list[tuple[str, DeadLetter]] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=1)
            except TimeoutError:
                return found
            for msg in msgs:
                letter = msgspec.json.decode(msg.data, type=DeadLetter)
                if letter.original_subject == subject:
                    found.append(((msg.headers or {}).get("ce-id", ""), letter))
    finally:
        await sub.unsubscribe()


@pytest.fixture
async def bus(nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    b = await open_bus(nats_server)
    yield b
    await b.drain()


def headers_for(entity: str) -> dict[str, str]:
    return build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/t",
        time=datetime.now(UTC),
        provenance="sensor",
    )


async def test_a_message_with_huge_headers_and_body_gets_a_stored_dead_letter_counted_once(
    bus: Bus, entity: str
) -> None:
    await bus.subscribe(BeachObservation, lambda event: asyncio.sleep(0), entity=entity)
    subject = contract_subject(msgspec.structs.replace(BeachObservation.example(), site=entity))
    headers = {**headers_for(entity), "x-padding": "p" * 400_000}
    body = b'{"site": "' + b"x" * 600_000 + b'"}'  # 1 MB in all: as much as NATS takes
    await bus.nc.publish(subject, body, headers=headers)
    await wait_for(
        lambda: sample(bus, "citybus_dead_letters_total", contract=CE_TYPE, reason="invalid-body") > 0
    )
    [(_, letter)] = await stored_letters(bus, subject)
    assert letter.payload == body[:PAYLOAD_LIMIT]
    assert len(msgspec.json.encode(letter.original_headers)) <= HEADERS_LIMIT
    assert letter.original_headers["ce-id"] == headers["ce-id"]  # the headers that matter come first
    assert "of the original's headers" in letter.detail
    assert sample(bus, "citybus_dead_letters_total", contract=CE_TYPE, reason="invalid-body") == 1
    assert sample(bus, "citybus_dead_letters_unstored_total", contract=CE_TYPE, reason="invalid-body") == 0


async def test_a_dead_letter_sent_again_for_the_same_original_is_stored_once(bus: Bus, entity: str) -> None:
    subject = contract_subject(msgspec.structs.replace(BeachObservation.example(), site=entity))
    headers = headers_for(entity)
    original = RawMessage(subject, b"{}", headers)
    for _ in range(3):  # a redelivered original, dead-lettered again each time its term was lost
        assert await bus.dead_letters.send(original, reason="invalid-body", detail="x", consumer="archive")
    assert await bus.dead_letters.send(original, reason="invalid-body", detail="x", consumer="stats")
    stored = await stored_letters(bus, subject)
    assert sorted(ce_id for ce_id, _ in stored) == sorted(
        letter_id(f"id:{headers['ce-id']}", consumer, "invalid-body") for consumer in ("archive", "stats")
    )
    assert sample(bus, "citybus_dead_letters_total", contract="unknown", reason="invalid-body") == 2


async def test_a_dead_letter_jetstream_does_not_store_is_counted_apart_and_logged_in_a_bounded_line(
    fresh_server: EmbeddedServer, entity: str
) -> None:
    with structlog.testing.capture_logs() as logs:
        bus = Bus(metrics=Metrics(), source="/tests")  # no stream provisioned: nothing stores it
        await bus.connect(fresh_server.url)
        try:
            subject = f"city.public.environment.beach-observation.{entity}"
            original = RawMessage(subject, b"z" * 900_000, {"x-padding": "p" * 100_000})
            assert not await bus.dead_letters.send(original, reason="invalid-body", detail="d" * 100_000)
        finally:
            await bus.close()
    assert sample(bus, "citybus_dead_letters_total", contract="unknown", reason="invalid-body") == 0
    assert sample(bus, "citybus_dead_letters_unstored_total", contract="unknown", reason="invalid-body") == 1
    [line] = [entry for entry in logs if entry["event"] == "dead letter not stored by JetStream"]
    for key in ("payload", "headers", "detail"):
        assert len(line[key]) < LOG_LIMIT + 100, key
        assert "[cut:" in line[key], key
    assert line["payload_bytes"] == PAYLOAD_LIMIT
