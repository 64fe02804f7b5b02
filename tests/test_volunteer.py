"""The volunteer platform over a real nats-server: no overbooking under concurrent sign-ups (one
platform process and two), withdrawals, changes, repeats, refusals, restarts, rosters and consent.

Every test runs on a server of its own (``quiet_bus``): the streams and the ledger start empty,
so what a test counts in them is its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import msgspec
import pytest
import structlog
from prometheus_client import generate_latest

from bus import Bus, Metrics, RequestRefusedError
from bus.control import raise_for_refusal
from bus.envelope import Provenance, build_headers, new_event_id
from bus.reading import next_stored
from bus.subjects import contract_filter, request_filter, stream_name
from contracts import (
    Opportunity,
    OpportunityReceipt,
    PersonalDeadLetter,
    Roster,
    RosterRequest,
    SignupReceipt,
    SignupRequest,
    VolunteerActivity,
    VolunteerSignup,
)
from tests.conftest import wait_for
from tests.volunteering import ORG, OTHER, offer, platform, signup, stored, volunteer

pytestmark = pytest.mark.slow


async def offered(bus: Bus, opportunity_id: str, places: int = 50, organisation: str = ORG) -> None:
    receipt = await ask_offer(bus, opportunity_id, places, organisation)
    assert receipt.accepted, receipt.reason


async def ask_offer(
    bus: Bus, opportunity_id: str, places: int = 50, organisation: str = ORG, **fields: object
) -> OpportunityReceipt:
    reply = await bus.request(
        offer(opportunity_id, places, organisation, **fields), OpportunityReceipt, timeout=30
    )
    return reply.data


async def ask(bus: Bus, request: SignupRequest) -> SignupReceipt:
    return (await bus.request(request, SignupReceipt, timeout=60)).data


async def roster(bus: Bus, organisation: str = ORG, opportunity_id: str | None = None) -> Roster:
    request = RosterRequest(organisation=organisation, opportunity_id=opportunity_id)
    return (await bus.request(request, Roster, timeout=30)).data


async def last_opportunity(bus: Bus, opportunity_id: str) -> Opportunity:
    return [o for o in await stored(bus, Opportunity) if o.opportunity_id == opportunity_id][-1]


async def test_200_concurrent_signups_for_50_places_confirm_exactly_50(quiet_bus: Bus) -> None:
    async with platform(quiet_bus) as harness:
        await offered(quiet_bus, "beach-cleanup", places=50)
        receipts = await asyncio.gather(*(ask(quiet_bus, signup(n, "beach-cleanup")) for n in range(200)))
        assert Counter(r.status for r in receipts) == {"confirmed": 50, "full": 150}
        assert harness.adapter.book.count("beach-cleanup") == 50
    records = [s for s in await stored(quiet_bus, VolunteerSignup) if s.task_id == "beach-cleanup"]
    assert Counter(s.status for s in records) == {"confirmed": 50}
    confirmed = {r.volunteer_id for r in receipts if r.status == "confirmed"}
    assert {s.volunteer_id for s in records} == confirmed
    last = await last_opportunity(quiet_bus, "beach-cleanup")
    assert (last.places_left, last.status) == (0, "full")


async def test_two_platform_processes_never_overbook(quiet_bus: Bus) -> None:
    """Two platform instances, each on its own connection with its own ledger cache, locks and
    sign-ups, sharing only the server: the compare-and-set still gives out 50 places, no more."""
    other = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/tests/second")
    await other.connect(quiet_bus.url)
    try:
        async with platform(quiet_bus) as first, platform(other) as second:
            await offered(quiet_bus, "beach-cleanup", places=50)
            clients = [quiet_bus, other]
            receipts = await asyncio.gather(
                *(ask(clients[n % 2], signup(n, "beach-cleanup")) for n in range(200))
            )
            assert Counter(r.status for r in receipts) == {"confirmed": 50, "full": 150}
            entry = await first.adapter.places.entry("beach-cleanup")
            fresh, _ = await second.adapter.places.read("beach-cleanup")
            assert fresh is not None and len(fresh.taken) == 50
            assert entry is not None
    finally:
        await other.drain()
    records = [s for s in await stored(quiet_bus, VolunteerSignup) if s.task_id == "beach-cleanup"]
    assert Counter(s.status for s in records) == {"confirmed": 50}
    assert (await last_opportunity(quiet_bus, "beach-cleanup")).places_left == 0


async def test_a_withdrawal_frees_the_place(quiet_bus: Bus) -> None:
    async with platform(quiet_bus):
        await offered(quiet_bus, "one-place", places=1)
        assert (await ask(quiet_bus, signup(1, "one-place"))).status == "confirmed"
        assert (await ask(quiet_bus, signup(2, "one-place"))).status == "full"
        withdrawn = await ask(quiet_bus, signup(1, "one-place", "withdraw", purposes=None, name=None))
        assert (withdrawn.status, withdrawn.places_left) == ("withdrawn", 1)
        assert (await last_opportunity(quiet_bus, "one-place")).status == "open"
        again = await ask(quiet_bus, signup(2, "one-place"))
        assert (again.status, again.places_left) == ("confirmed", 0)
        assert [e.volunteer_id for e in (await roster(quiet_bus)).entries] == [volunteer(2)]
    records = [(s.volunteer_id, s.status) for s in await stored(quiet_bus, VolunteerSignup)]
    assert records == [(volunteer(1), "confirmed"), (volunteer(1), "withdrawn"), (volunteer(2), "confirmed")]


async def test_a_change_replaces_the_details_and_keeps_the_place(quiet_bus: Bus) -> None:
    async with platform(quiet_bus):
        await offered(quiet_bus, "river-walk", places=5)
        await ask(quiet_bus, signup(7, "river-walk", skills=("first-aid",)))
        changed = await ask(
            quiet_bus,
            signup(7, "river-walk", "change", purposes=None, name=None, email=None, phone="+4791234567"),
        )
        assert (changed.status, changed.places_left) == ("changed", 4)
        (entry,) = (await roster(quiet_bus)).entries
        assert (entry.name, entry.email, entry.phone, entry.skills) == (
            "Kari Nordmann 7",
            None,
            "+4791234567",
            ("first-aid",),
        )
    statuses = [s.status for s in await stored(quiet_bus, VolunteerSignup)]
    assert statuses == ["confirmed", "changed"]


async def test_signing_up_again_is_confirmed_without_a_second_place(quiet_bus: Bus) -> None:
    async with platform(quiet_bus):
        await offered(quiet_bus, "library-reading", places=3)
        first = await ask(quiet_bus, signup(1, "library-reading"))
        again = await ask(quiet_bus, signup(1, "library-reading"))
        assert (first.status, first.places_left) == ("confirmed", 2)
        assert (again.status, again.places_left, again.reason) == (
            "confirmed",
            2,
            "already signed up: nothing changed",
        )
    assert len(await stored(quiet_bus, VolunteerSignup)) == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"name": None}, "a sign-up needs the volunteer's name"),
        ({"email": None}, "a sign-up needs an email address or a phone number"),
        ({"purposes": None}, "a sign-up needs the volunteer's consent"),
        ({"purposes": ("statistics",)}, "the consent must include the purpose 'volunteering'"),
        ({"opportunity_id": "no-such-thing"}, "there is no opportunity no-such-thing"),
        ({"action": "withdraw"}, "not signed up for refusals"),
        ({"action": "change"}, "not signed up for refusals: sign up first"),
    ],
)
async def test_sign_ups_that_cannot_be_taken_are_refused_with_the_reason(
    quiet_bus: Bus, fields: dict[str, object], reason: str
) -> None:
    async with platform(quiet_bus):
        await offered(quiet_bus, "refusals", places=5)
        given = dict(fields)
        opportunity_id = str(given.pop("opportunity_id", "refusals"))
        action = str(given.pop("action", "signup"))
        purposes = given.pop("purposes", ("volunteering",))
        request = signup(1, opportunity_id, action, purposes=purposes, **given)  # type: ignore[arg-type]
        receipt = await ask(quiet_bus, request)
        assert receipt.status == "refused"
        assert receipt.reason.startswith(reason)
    assert await stored(quiet_bus, VolunteerSignup) == []


async def test_offers_that_cannot_be_taken_are_refused_with_the_reason(quiet_bus: Bus) -> None:
    async with platform(quiet_bus):
        await offered(quiet_bus, "harbour-day", places=2)
        await ask(quiet_bus, signup(1, "harbour-day"))
        await ask(quiet_bus, signup(2, "harbour-day"))
        backwards = await ask_offer(quiet_bus, "harbour-day-2", ends=offer("x").starts)
        assert backwards.reason == "the opportunity ends before it starts: give `ends` after `starts`"
        fewer = await ask_offer(quiet_bus, "harbour-day", places=1)
        assert not fewer.accepted
        assert fewer.reason == "2 places are taken: offer at least 2 (a withdrawal frees a place)"
        stolen = await ask_offer(quiet_bus, "harbour-day", places=40, organisation=OTHER)
        assert not stolen.accepted
        assert stolen.reason == "harbour-day is another organisation's opportunity: choose another id"
        stranger = await ask_offer(quiet_bus, "bake-sale", organisation="some-club")
        assert stranger.reason == "some-club is not an organisation of this platform"
        more = await ask_offer(quiet_bus, "harbour-day", places=4)
        assert (more.accepted, more.places_left) == (True, 2)
        cancelled = await ask_offer(quiet_bus, "harbour-day", places=4, cancel=True)
        assert cancelled.accepted
        late = await ask(quiet_bus, signup(3, "harbour-day"))
        assert (late.status, late.reason) == ("refused", "the opportunity harbour-day was cancelled")
    last = await last_opportunity(quiet_bus, "harbour-day")
    assert (last.organisation, last.places, last.places_left, last.status) == (ORG, 4, 2, "cancelled")


async def test_a_restarted_platform_knows_its_places_and_sign_ups(quiet_bus: Bus) -> None:
    async with platform(quiet_bus):
        await offered(quiet_bus, "choir-concert", places=5)
        for n in range(3):
            await ask(quiet_bus, signup(n, "choir-concert"))
        await ask(quiet_bus, signup(1, "choir-concert", "withdraw", purposes=None))
    async with platform(quiet_bus) as restarted:
        assert restarted.adapter.book.count("choir-concert") == 2
        assert [e.volunteer_id for e in (await roster(quiet_bus)).entries] == [volunteer(0), volunteer(2)]
        again = await ask(quiet_bus, signup(0, "choir-concert"))
        assert (again.status, again.places_left) == ("confirmed", 3)
        gone = await ask(quiet_bus, signup(2, "choir-concert", "withdraw", purposes=None))
        assert (gone.status, gone.places_left) == ("withdrawn", 4)


async def test_an_organisation_gets_the_roster_of_its_own_opportunities_only(quiet_bus: Bus) -> None:
    async with platform(quiet_bus):
        await offered(quiet_bus, "ours-1", places=5)
        await offered(quiet_bus, "ours-2", places=5)
        await offered(quiet_bus, "theirs", places=5, organisation=OTHER)
        await ask(quiet_bus, signup(1, "ours-1"))
        await ask(quiet_bus, signup(2, "ours-2"))
        await ask(quiet_bus, signup(3, "theirs"))
        ours = await roster(quiet_bus)
        assert [(e.opportunity_id, e.volunteer_id) for e in ours.entries] == [
            ("ours-1", volunteer(1)),
            ("ours-2", volunteer(2)),
        ]
        assert [e.volunteer_id for e in (await roster(quiet_bus, ORG, "ours-2")).entries] == [volunteer(2)]
        assert (await roster(quiet_bus, ORG, "theirs")).entries == ()
        assert [e.volunteer_id for e in (await roster(quiet_bus, OTHER)).entries] == [volunteer(3)]
        # the body may not name another organisation than the subject it is sent on
        with pytest.raises(RequestRefusedError, match="names rode-kors-drammen but came on drammen"):
            await forged_roster_request(quiet_bus, sent_as=ORG, naming=OTHER)


async def forged_roster_request(bus: Bus, *, sent_as: str, naming: str) -> None:
    """A roster request naming ``naming`` in its body, sent on ``sent_as``'s subject."""
    subject = request_filter(RosterRequest, sent_as)
    headers = build_headers(
        RosterRequest.__contract__,
        event_id=new_event_id(),
        source="/tests",
        time=datetime.now(UTC),
        provenance=Provenance.MANUAL,
    )
    body = msgspec.json.encode(RosterRequest(organisation=naming))
    reply = await bus.nc.request(subject, body, headers=headers, timeout=10)
    raise_for_refusal(reply.headers, subject)


async def test_activity_reaches_statistics_only_with_consent(quiet_bus: Bus) -> None:
    async with platform(quiet_bus):
        await offered(quiet_bus, "park-day", places=5)
        await ask(quiet_bus, signup(1, "park-day", purposes=("volunteering", "statistics")))
        await ask(quiet_bus, signup(2, "park-day", purposes=("volunteering",)))
        await ask(quiet_bus, signup(3, "park-day", purposes=("volunteering", "statistics")))
        await ask(quiet_bus, signup(1, "park-day", "withdraw", purposes=None))
        # taking statistics back withdraws the activity; giving it counts it
        await ask(
            quiet_bus, signup(3, "park-day", "change", purposes=("volunteering",), name=None, email=None)
        )
        await ask(
            quiet_bus, signup(2, "park-day", "change", purposes=("volunteering", "statistics"), name=None)
        )
    activity = [(a.volunteer_id, a.withdrawn, a.hours) for a in await stored(quiet_bus, VolunteerActivity)]
    assert activity == [
        (volunteer(1), False, 3.0),
        (volunteer(3), False, 3.0),
        (volunteer(1), True, 3.0),
        (volunteer(3), True, 3.0),
        (volunteer(2), False, 3.0),
    ]
    consents = {(s.volunteer_id, s.status): s.consent for s in await stored(quiet_bus, VolunteerSignup)}
    assert consents[(volunteer(2), "confirmed")] is not None
    assert [p.value for p in consents[(volunteer(3), "changed")].purposes] == ["volunteering"]  # type: ignore[union-attr]


async def test_logs_and_metrics_name_no_volunteer(quiet_bus: Bus) -> None:
    with structlog.testing.capture_logs() as logs:
        async with platform(quiet_bus) as harness:
            await offered(quiet_bus, "log-check", places=1)
            await ask(quiet_bus, signup(41, "log-check", phone="+4790000041"))
            await ask(quiet_bus, signup(42, "log-check"))
            await ask(quiet_bus, signup(41, "log-check", "change", purposes=None, email="new.41@example.no"))
            await ask(quiet_bus, signup(41, "log-check", "withdraw", purposes=None))
            await roster(quiet_bus)
            registry = harness.bus.metrics.registry
    text = repr(logs)
    assert "sign-up request answered" in text
    for secret in ("Kari", "example.no", "+4790000041", volunteer(41), volunteer(42)):
        assert secret not in text
    exposed = generate_latest(registry).decode()
    assert 'citybus_volunteer_signups_total{action="signup",status="full"} 1.0' in exposed
    assert 'citybus_volunteer_places_left{opportunity="log-check"} 1.0' in exposed
    for secret in ("Kari", "example.no", volunteer(41)):
        assert secret not in exposed


async def test_what_is_stored_names_volunteers_only_by_their_refs(quiet_bus: Bus) -> None:
    """The sign-ups rest sealed (their subjects name refs), and the ledger of places holds refs:
    neither holds a name, an email, a phone number or a volunteer id in clear."""
    async with platform(quiet_bus) as harness:
        await offered(quiet_bus, "sealed-walk", places=5)
        await ask(
            quiet_bus, signup(9, "sealed-walk", phone="+4790000009", purposes=("volunteering", "statistics"))
        )
        ref = await quiet_bus.vault.ref(volunteer(9))
        places = harness.adapter.places
        assert places is not None
        record = await places.store.get("sealed-walk")
    assert record is not None and ref.encode() in record.value
    secrets = (b"Kari", b"kari.9@example.no", b"+4790000009", volunteer(9).encode())
    assert not any(s in record.value for s in secrets)
    for contract in (VolunteerSignup, VolunteerActivity):
        info = contract.__contract__
        stream = stream_name(info.classification, info.domain)
        raw = await next_stored(quiet_bus, stream, contract_filter(contract), 1)
        assert raw is not None and raw.subject == contract_filter(contract, ref)
        assert raw.headers["citybus-person"] == ref
        assert not any(s in raw.data for s in secrets)
    (opened,) = await stored(quiet_bus, VolunteerSignup)
    assert (opened.name, opened.phone) == ("Kari Nordmann 9", "+4790000009")


async def test_a_sign_up_the_platform_cannot_read_goes_to_the_personal_dead_letters(quiet_bus: Bus) -> None:
    """A community request that does not fit its contract never reaches the platform: the bus
    refuses it (the requester hears why) and keeps it as a personal dead letter, like any other."""
    async with platform(quiet_bus) as harness:
        await offered(quiet_bus, "dead-letters", places=5)
        subject = request_filter(SignupRequest, "dead-letters")
        headers = build_headers(
            SignupRequest.__contract__,
            event_id=new_event_id(),
            source="/tests",
            time=datetime.now(UTC),
            provenance=Provenance.MANUAL,
        )
        body = b'{"action": "signup", "volunteer_id": "kari", "opportunity_id": "dead-letters"}'
        reply = await quiet_bus.nc.request(subject, body, headers=headers, timeout=10)
        with pytest.raises(RequestRefusedError, match="volunteer_id"):
            raise_for_refusal(reply.headers, subject)
        await wait_for(lambda: bool(harness.dead_letters))
        (letter,) = harness.dead_letters
        assert isinstance(letter, PersonalDeadLetter)
        assert (letter.original_subject, letter.payload) == (subject, body)
        assert harness.adapter.book.count("dead-letters") == 0


async def test_an_erased_volunteer_frees_the_place_and_is_forgotten(quiet_bus: Bus) -> None:
    async with platform(quiet_bus) as harness:
        await offered(quiet_bus, "erasure-walk", places=1)
        await ask(quiet_bus, signup(5, "erasure-walk"))
        assert (await ask(quiet_bus, signup(6, "erasure-walk"))).status == "full"
        ref = await quiet_bus.vault.ref(volunteer(5))
        assert await quiet_bus.vault.destroy(ref)  # what an erasure does (the rights engine's)
        # offered (1 left), taken (0 left), freed by the erasure (1 left)
        await harness.wait_for(Opportunity, count=3, timeout=10)
        assert (await last_opportunity(quiet_bus, "erasure-walk")).places_left == 1
        assert harness.adapter.book.count("erasure-walk") == 0
        assert harness.adapter.places is not None
        entry, _ = await harness.adapter.places.read("erasure-walk")
        assert entry is not None and ref not in entry.taken
        assert (await ask(quiet_bus, signup(6, "erasure-walk"))).status == "confirmed"
    async with platform(quiet_bus):  # its stored sign-up cannot be opened: a restart does not bring it back
        assert [e.volunteer_id for e in (await roster(quiet_bus)).entries] == [volunteer(6)]


async def test_a_volunteer_erased_while_the_platform_was_down_does_not_hold_the_place_for_ever(
    quiet_bus: Bus,
) -> None:
    """The erasure's broadcast (``citybus.personal.erased``) is core NATS: a platform that was not
    running (a restart, a deploy) never hears it. Its ledger must not keep the erased volunteer's
    ref — and the place — once it is back."""
    async with platform(quiet_bus):
        await offered(quiet_bus, "erased-while-down", places=1)
        await ask(quiet_bus, signup(7, "erased-while-down"))
    ref = await quiet_bus.vault.ref(volunteer(7))
    assert await quiet_bus.vault.destroy(ref)  # the platform is down
    async with platform(quiet_bus) as harness:
        assert (await roster(quiet_bus)).entries == ()  # her sign-up cannot be opened any more
        assert harness.adapter.places is not None
        entry, _ = await harness.adapter.places.read("erased-while-down")
        assert entry is not None and ref not in entry.taken
        assert (await ask(quiet_bus, signup(8, "erased-while-down"))).status == "confirmed"
