"""Who may ask the journey planner, and who may answer: the broker decides, from the planner's
declaration (``answers = (JourneyRequest,)``), on a real nats-server with citybus's accounts.

* the ``public`` user may send a journey request and gets the answer in its own inbox;
* the planner receives the requests and replies once to each, nowhere else;
* nobody else may listen to journey requests (they carry where a person is going): not the
  public, not another adapter.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from adapters.access import declaration
from adapters.instances import parse_instance
from adapters.journey import JourneyPlanner
from bus.access import AccessModel
from bus.subjects import request_filter, request_subject
from contracts import JourneyRequest
from tests.test_access import (
    CONTRACTS,
    PRODUCER,
    Peer,
    barrier,
    connect,
    start_with_accounts,
)

PLANNER = declaration(parse_instance("journey-planner", JourneyPlanner, {"timetable": {"file": "nsb.zip"}}))


@pytest.fixture(scope="module")
async def peers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Peer]]:
    model = AccessModel(CONTRACTS, adapters=[PLANNER, PRODUCER])
    server, store = await start_with_accounts(tmp_path_factory.mktemp("journey-access"), model)
    found = {
        user: await connect(server.url, store, "CITY", user)
        for user in ("journey-planner", "public", "vicotee-beach")
    }
    try:
        yield found
    finally:
        for peer in found.values():
            with contextlib.suppress(Exception):
                await peer.nc.close()
        await server.stop()


def test_the_planner_declares_what_it_answers() -> None:
    assert PLANNER.answers == (JourneyRequest,)


async def test_the_public_asks_and_the_planner_answers_into_its_inbox(peers: dict[str, Peer]) -> None:
    planner, public = peers["journey-planner"], peers["public"]

    async def answer(msg: object) -> None:
        await msg.respond(b'{"status": "ok"}')  # type: ignore[attr-defined]

    sub = await planner.nc.subscribe(request_filter(JourneyRequest), cb=answer)
    await barrier(planner.nc)
    reply = await public.nc.request(request_subject(JourneyRequest.example()), b"{}", timeout=2)
    assert reply.data == b'{"status": "ok"}'
    assert reply.subject.startswith("_INBOX.public.")
    await sub.unsubscribe()
    assert not planner.errors and not public.errors
    # allowed to reply, not to write into inboxes at will
    await planner.nc.publish("_INBOX.public.forged", b"{}")
    await barrier(planner.nc)
    assert planner.refused("publish", "_INBOX.public.forged")


@pytest.mark.parametrize("user", ["public", "vicotee-beach"])
async def test_nobody_else_listens_to_journey_requests(peers: dict[str, Peer], user: str) -> None:
    peer = peers[user]
    await peer.nc.subscribe(request_filter(JourneyRequest))
    await barrier(peer.nc)
    assert peer.refused("subscription", request_filter(JourneyRequest))
