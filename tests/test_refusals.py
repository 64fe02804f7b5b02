"""A publish the broker refuses is reported as refused at once, whatever the case of its subject.

nats-py lower-cases the server's ``-ERR 'Permissions Violation for Publish to "…"'``, so a subject
with capitals (a stop place ``NSR:StopPlace:426``) was never matched: the publish waited for an
acknowledgement that could not come and ended, seconds later, as "is the server up?".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from bus import Bus, Metrics, PermissionDeniedError
from bus.server import EmbeddedServer
from bus.subjects import contract_subject
from contracts import BeachObservation, TrainCall

# A user who may do everything but publish train calls (as a pilot that declared only beach data).
USERS = """
authorization {
  users = [
    {user: "pilot", password: "pilot-pw", permissions: {publish: {deny: ["city.public.mobility.>"]}}}
    {user: "admin", password: "admin-pw"}
  ]
}
"""


@pytest.fixture(scope="module")
async def guarded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedServer]:
    server = EmbeddedServer(data_dir=tmp_path_factory.mktemp("refusals"), extra_config=USERS)
    await server.start()
    yield server
    await server.stop()


def as_user(server: EmbeddedServer, user: str) -> str:
    return server.url.replace("nats://", f"nats://{user}:{user}-pw@")


@pytest.fixture
async def pilot(guarded: EmbeddedServer) -> AsyncIterator[Bus]:
    admin = Bus(metrics=Metrics(), source="/tests")
    await admin.connect(as_user(guarded, "admin"))
    await admin.provision_streams()
    await admin.drain()
    bus = Bus(metrics=Metrics(), source="/tests", request_timeout=120.0)
    bus.user = "pilot"
    await bus.connect(as_user(guarded, "pilot"))
    yield bus
    await bus.drain()


def call(stop_place: str) -> TrainCall:
    return msgspec.structs.replace(TrainCall.example(), stop_place=stop_place)


@pytest.mark.parametrize("stop_place", ["NSR:StopPlace:426", "nsr-lower-case"])
async def test_a_refused_durable_publish_says_refused_and_names_the_subject(
    pilot: Bus, stop_place: str
) -> None:
    subject = contract_subject(call(stop_place))
    # The bus waits up to 120 s for an acknowledgement; the test waits 20 s for the answer: only
    # the broker's refusal, read as such when it comes, ends the call in time.
    async with asyncio.timeout(20):
        with pytest.raises(PermissionDeniedError) as refused:
            await pilot.publish_durable(call(stop_place), timeout=120)
    assert subject in str(refused.value)
    assert "refused" in str(refused.value)
    async with asyncio.timeout(20):
        with pytest.raises(PermissionDeniedError) as refused:
            await pilot.publish_durable_many([BeachObservation.example(), call(stop_place)], timeout=120)
    assert subject in str(refused.value)


async def test_what_the_user_may_publish_still_goes_through(pilot: Bus) -> None:
    ack = await pilot.publish_durable(BeachObservation.example())
    assert ack.stream == "CITY_PUBLIC_ENVIRONMENT"
