"""The privacy service over a real nats-server: requests answered on the bus, retention kept on time.

A test registry adds a personal contract kept two seconds (``community.short-lived-note``), stored
in the same stream as the sign-ups (kept a year): the service's sweep erases the notes once, and
only once, they are two seconds old, counts them in ``citybus_personal_erased_total`` and records
the sweep; the sign-up stays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import structlog

from adapters.privacy import PrivacyService
from adapters.testing import AdapterHarness
from bus import Bus, Event, Metrics
from bus.server import EmbeddedServer
from contracts import (
    Classification,
    Contract,
    ErasureReceipt,
    ErasureRecord,
    ErasureRequest,
    PersonalExport,
    PersonalExportRequest,
    Registry,
    contract,
    default_registry,
)
from tests.test_privacy_rights import COMMUNITY, NAME, PERSON, signup, stored
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)

SHORT_LIVED = Registry()
for known in default_registry():
    SHORT_LIVED.add(known)


@contract(
    "community.short-lived-note",
    version=1,
    classification=Classification.PERSONAL,
    key="volunteer_id",
    person="volunteer_id",
    retention=timedelta(seconds=2),
    example={"volunteer_id": "v-3f9c2a7e51d0", "note": "bring gloves"},
    registry=SHORT_LIVED,
)
class ShortLivedNote(Contract, frozen=True, kw_only=True):
    """A note about a volunteer that may be kept two seconds (a test's retention)."""

    volunteer_id: str
    note: str


@pytest.fixture
async def bus(fresh_server: EmbeddedServer) -> AsyncIterator[Bus]:
    b = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests", registry=SHORT_LIVED)
    await b.connect(fresh_server.url)
    await b.provision_streams()
    yield b
    await b.drain()


def sample(bus: Bus, name: str, **labels: str) -> float:
    return bus.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_the_sweep_erases_what_outlived_its_retention_on_time_and_nothing_else(bus: Bus) -> None:
    records: list[Event[ErasureRecord]] = []

    async def record(event: Event[ErasureRecord]) -> None:
        records.append(event)

    await bus.subscribe(ErasureRecord, record)
    await bus.publish_durable(signup())
    acks = [
        await bus.publish_durable(ShortLivedNote(volunteer_id=PERSON, note=f"note {i}")) for i in range(3)
    ]
    kept_at = {m.seq: m.time for m in await stored(bus, COMMUNITY)}
    erased = ("citybus_personal_erased_total", {"place": "stream", "reason": "retention"})
    swept = ("citybus_personal_erasure_last_timestamp_seconds", {"reason": "retention"})
    async with AdapterHarness(PrivacyService, {"sweep_interval": 0.2}, bus=bus):
        await eventually(lambda: sample(bus, erased[0], **erased[1]) == 3)
        assert sample(bus, swept[0], **swept[1]) > 0
    left = await stored(bus, COMMUNITY)
    assert [m.headers["ce-type"] for m in left] == ["community.volunteer-signup.v1"]
    await eventually(lambda: any(r.data.reason == "retention" for r in records))
    (sweep,) = [r.data for r in records if r.data.reason == "retention"]
    assert sweep.complete and [(p.place, p.location, p.erased) for p in sweep.places] == [
        ("stream", COMMUNITY, 3)
    ]
    # Not before their time: each note was erased at least two seconds after the stream stored it.
    assert all(sweep.erased_at - kept_at[a.seq] >= timedelta(seconds=2) for a in acks)


async def test_export_and_erasure_are_answered_on_the_bus_and_counted(bus: Bus) -> None:
    await bus.publish_durable(signup())
    async with AdapterHarness(PrivacyService, {"sweep_interval": 3600}, bus=bus):
        asked = PersonalExportRequest(case="dpo-21", person=PERSON)
        export = (await bus.request(asked, PersonalExport, timeout=30)).data
        assert export.case == "dpo-21" and [m.data["name"] for m in export.messages] == [NAME]
        assert sample(bus, "citybus_personal_export_total") == 1

        receipt = (
            await bus.request(ErasureRequest(case="dpo-22", person=PERSON), ErasureReceipt, timeout=30)
        ).data
        assert receipt.complete and receipt.case == "dpo-22"
        # counted from the erasure's record, as one run by `citybus personal erase` would be
        erased = "citybus_personal_erased_total"
        await eventually(lambda: sample(bus, erased, place="key", reason="request") == 1)
        assert sample(bus, erased, place="stream", reason="request") == 1
        last = sample(bus, "citybus_personal_erasure_last_timestamp_seconds", reason="request")
        assert last == receipt.erased_at.timestamp()

        again = (await bus.request(PersonalExportRequest(case="dpo-23", person=PERSON), PersonalExport)).data
        assert again.messages == () and again.complete
