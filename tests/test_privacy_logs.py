"""citybus writes no personal value to its logs: every line of a sign-up, failures and an erasure, read.

The erasure receipt says of the logs "citybus writes no personal values to its logs"; this is the
test that makes it true. Every line logged at debug level while a person signs up, a handler fails
on the sign-up with the person's name and e-mail in its error (a subscriber, a durable consumer and
a responder), a sign-up is sent around the bus unsealed with the person's id in its subject, and
the privacy service exports and erases the person, is searched for the name, the e-mail and the id.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import msgspec
import pytest
import structlog

from adapters.privacy import PrivacyService
from adapters.testing import AdapterHarness
from bus import ConsumerSettings, Event
from bus.logs import configure_logging
from bus.server import EmbeddedServer
from contracts import (
    ErasureReceipt,
    ErasureRequest,
    PersonalExport,
    PersonalExportRequest,
    SignupReceipt,
    SignupRequest,
    VolunteerSignup,
)
from tests.conftest import open_bus
from tests.test_privacy_rights import EMAIL, NAME, PERSON, ce_headers, signup
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    yield out
    structlog.reset_defaults()


async def test_no_log_line_names_the_person(fresh_server: EmbeddedServer, log_lines: io.StringIO) -> None:
    producer, consumer, service = [await open_bus(fresh_server) for _ in range(3)]
    failures: list[str] = []

    async def fail(event: Event[VolunteerSignup]) -> None:
        failures.append(event.id)
        raise ValueError(
            f"no place left for {event.data.name} <{event.data.email}> ({event.data.volunteer_id})"
        )

    async def refuse(event: Event[SignupRequest]) -> SignupReceipt:
        raise ValueError(f"{event.data.name} <{event.data.email}> may not sign up")

    try:
        await consumer.subscribe(VolunteerSignup, fail)
        durable = consumer.consume(
            VolunteerSignup,
            fail,
            durable="log-test",
            settings=ConsumerSettings(max_deliver=2, retry_delay=0.01),
        )
        await durable.start()
        await consumer.serve(SignupRequest, refuse)
        await consumer.flush()

        await producer.publish_durable(signup())
        await producer.publish_raw(
            f"city.personal.community.volunteer-signup.{PERSON}",
            msgspec.json.encode(signup()),
            ce_headers("x"),
        )
        request = msgspec.convert(SignupRequest.__contract__.example, type=SignupRequest)
        request = msgspec.structs.replace(request, volunteer_id=PERSON, name=NAME, email=EMAIL)
        with pytest.raises(Exception, match="handler-error"):
            await producer.request(request, SignupReceipt, timeout=10)
        run = asyncio.create_task(durable.run())
        await eventually(lambda: len(failures) >= 3)  # the subscriber, and the durable consumer twice

        async with AdapterHarness(PrivacyService, {"sweep_interval": 3600}, bus=service):
            export = await producer.request(
                PersonalExportRequest(case="dpo-7", person=PERSON), PersonalExport, timeout=30
            )
            assert export.data.messages
            receipt = await producer.request(
                ErasureRequest(case="dpo-8", person=PERSON), ErasureReceipt, timeout=30
            )
            assert receipt.data.complete
        durable.stop()
        run.cancel()
    finally:
        for bus in (producer, consumer, service):
            await bus.drain()

    text = log_lines.getvalue()
    assert "handler failed" in text and "responder failed" in text and "dead-lettered" in text
    assert "personal data erased" in text  # the service logged its work
    for needle in (PERSON, NAME, EMAIL, NAME.split()[0]):
        found = [line for line in text.splitlines() if needle.casefold() in line.casefold()]
        assert found == [], needle
