"""What the volunteer platform's tests share: requests as people send them, a platform run on a real
server, and reading back what its streams hold."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from adapters.testing import AdapterHarness
from adapters.volunteer import VolunteerPlatform
from bus import Bus
from bus.personal.opening import Opener
from bus.pipeline import EventReader, Message, RawMessage
from bus.reading import next_stored
from bus.subjects import contract_filter, stream_name
from contracts import Contract, OpportunityOffer, SignupRequest

C = TypeVar("C", bound=Contract)

ORG = "drammen-frivilligsentral"
OTHER = "rode-kors-drammen"
STARTS = datetime(2026, 6, 6, 10, 0, tzinfo=UTC)


def volunteer(n: int) -> str:
    """A volunteer's pseudonymous id."""
    return f"v-{n:012x}"


def offer(opportunity_id: str, places: int = 50, organisation: str = ORG, **fields: Any) -> OpportunityOffer:
    """An organisation's offer of a three-hour opportunity."""
    given: dict[str, Any] = {
        "organisation": organisation,
        "opportunity_id": opportunity_id,
        "title": "Beach clean-up at Sota fjordpark",
        "place": "Sota fjordpark",
        "starts": STARTS,
        "ends": STARTS + timedelta(hours=3),
        "skills": ("lifting",),
        "places": places,
    }
    given.update(fields)
    return OpportunityOffer(**given)


def signup(
    n: int,
    opportunity_id: str,
    action: str = "signup",
    purposes: Iterable[str] | None = ("volunteering",),
    **fields: Any,
) -> SignupRequest:
    """Volunteer ``n``'s request, with a name, an email and consent to ``purposes`` by default."""
    given: dict[str, Any] = {
        "action": action,
        "volunteer_id": volunteer(n),
        "opportunity_id": opportunity_id,
        "name": f"Kari Nordmann {n}",
        "email": f"kari.{n}@example.no",
    }
    if purposes is not None:
        given["consent"] = {
            "purposes": list(purposes),
            "given_at": "2026-05-01T12:00:00+02:00",
            "text": "drammen-volunteer-2026-05",
        }
    given.update(fields)
    return msgspec.convert(given, SignupRequest)


@asynccontextmanager
async def platform(
    bus: Bus, instance: str = "volunteer-platform", organisations: tuple[str, ...] = (ORG, OTHER)
) -> AsyncIterator[AdapterHarness]:
    """A platform instance on ``bus`` (a real server's), ready."""
    config = {"organisations": list(organisations)}
    async with AdapterHarness(VolunteerPlatform, config, instance=instance, bus=bus) as harness:
        yield harness


async def stored(bus: Bus, contract: type[C]) -> list[C]:
    """Every message of ``contract`` its stream holds, in stored order."""
    info = contract.__contract__
    stream = stream_name(info.classification, info.domain)
    read = EventReader(contract, bus.registry)
    opener = Opener(bus.vault, info.type, bus.metrics) if info.sealed else None
    found: list[C] = []
    seq = 1
    while (stored_message := await next_stored(bus, stream, contract_filter(contract), seq)) is not None:
        message: Message | None = RawMessage(
            stored_message.subject, stored_message.data, stored_message.headers
        )
        if opener is not None:  # sealed at rest: opened with the person's key
            message = await opener(message)
        assert message is not None, f"{info.name} at {stored_message.seq} is erased"
        found.append(read(message).data)
        seq = stored_message.seq + 1
    return found
