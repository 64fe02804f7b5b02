"""The measurements of the personal-data case (:mod:`bench.personal`) on the bus: sealing, and the
volunteer platform.

Everything runs in the bench's process against one embedded nats-server (file storage, the
streams and the key vault provisioned as ``citybus up`` has them), with a publishing ``Bus`` and a
subscribing (or asking) ``Bus`` on connections of their own, each with its own key cache, as two
processes of the city would have them. Nothing here judges a number.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import msgspec

from adapters.testing import AdapterHarness
from adapters.volunteer import VolunteerPlatform
from bench.common import CASE_LIMIT, BenchError
from bus import Bus, Event, Metrics
from bus.codec import encode
from bus.envelope import H_PERSON, build_headers, new_event_id
from bus.personal.opening import Opener, seal_prepared
from bus.personal.seal import open_body, seal_body
from bus.pipeline import RawMessage
from bus.subjects import contract_subject
from contracts import (
    Consent,
    Contract,
    Opportunity,
    OpportunityOffer,
    OpportunityReceipt,
    SignupReceipt,
    SignupRequest,
    VolunteerSignup,
)

__all__ = [
    "ORGANISATION",
    "Settled",
    "breakdown",
    "Pipeline",
    "contention",
    "durable",
    "first_of_person",
    "latency",
    "people",
    "platform_latency",
    "second_bus",
    "signups",
    "throughput",
    "unsealed",
    "warm",
]

ORGANISATION: Final = "drammen-frivilligsentral"
STARTS: Final = datetime(2026, 6, 6, 10, 0, tzinfo=UTC)
_NS: Final = 1e9


def people(count: int, start: int = 0) -> list[str]:
    """``count`` pseudonymous volunteer ids."""
    return [f"v-{n:012x}" for n in range(start, start + count)]


def signups(who: Sequence[str], count: int) -> list[Contract]:
    """``count`` sign-ups (the contract's example, 428 B of JSON) cycling over ``who``."""
    example = VolunteerSignup.example()
    return [
        msgspec.structs.replace(example, volunteer_id=who[n % len(who)], name=f"Kari Nordmann {n % len(who)}")
        for n in range(count)
    ]


def unsealed(count: int) -> list[Contract]:
    """``count`` opportunities (the contract's example, 443 B of JSON), one entity each of 500."""
    example = Opportunity.example()
    return [msgspec.structs.replace(example, opportunity_id=f"beach-cleanup-{n % 500}") for n in range(count)]


class Pipeline:
    """Contract publish → typed subscribe between two buses; each arrival stamped."""

    def __init__(self, publisher: Bus, subscriber: Bus) -> None:
        self.publisher, self.subscriber = publisher, subscriber
        self.stamps: list[int] = []
        self._expected = 0
        self._done = asyncio.Event()

    async def subscribe(self, contract: type[Contract]) -> None:
        async def arrived(event: Event[Any]) -> None:
            self.stamps.append(time.monotonic_ns())
            if len(self.stamps) >= self._expected:
                self._done.set()

        await self.subscriber.subscribe(contract, arrived)
        await self.subscriber.flush()

    def expect(self, count: int) -> None:
        self.stamps, self._expected = [], count
        self._done.clear()

    async def arrivals(self, count: int) -> list[int]:
        """Wait for ``count`` arrivals (a lost message fails the case instead of hanging it)."""
        try:
            async with asyncio.timeout(CASE_LIMIT):
                await self._done.wait()
        except TimeoutError:
            raise BenchError(f"{len(self.stamps)} of {count} messages arrived") from None
        return self.stamps


async def warm(pipeline: Pipeline, who: Sequence[str]) -> None:
    """One sign-up of each person through ``pipeline``: both buses then have every key cached."""
    pipeline.expect(len(who))
    for message in signups(who, len(who)):
        await pipeline.publisher.publish(message)
    await pipeline.arrivals(len(who))


async def throughput(pipeline: Pipeline, messages: Sequence[Contract]) -> float:
    """Messages a second from the first send to the last arrival."""
    pipeline.expect(len(messages))
    publish = pipeline.publisher.publish
    start = time.monotonic_ns()
    for message in messages:
        await publish(message)
    await pipeline.publisher.flush(timeout=30)
    stamps = await pipeline.arrivals(len(messages))
    return len(messages) * _NS / (stamps[-1] - start)


async def latency(pipeline: Pipeline, messages: Sequence[Contract], rate: float) -> list[float]:
    """One-way latencies (ms) of ``messages`` paced at ``rate`` a second, the first 10 % left out."""
    pipeline.expect(len(messages))
    sent: list[int] = []
    interval = _NS / rate
    start = time.monotonic_ns()
    for n, message in enumerate(messages):
        wait = start + int(n * interval) - time.monotonic_ns()
        if wait > 0:
            await asyncio.sleep(wait / _NS)
        sent.append(time.monotonic_ns())
        await pipeline.publisher.publish(message)
    stamps = await pipeline.arrivals(len(messages))
    skip = len(messages) // 10
    return [(arrival - send) / 1e6 for send, arrival in list(zip(sent, stamps, strict=True))[skip:]]


async def first_of_person(pipeline: Pipeline, who: Sequence[str]) -> tuple[list[float], list[float]]:
    """Each person's first sign-up, one at a time: (the ``publish`` call ms, one-way latency ms).

    The publisher creates the person's key (a read, then a JetStream publish to the vault); the
    subscriber, which has never seen the person, reads the key from the vault to open it."""
    calls, ways = [], []
    for message in signups(who, len(who)):
        pipeline.expect(1)
        start = time.monotonic_ns()
        await pipeline.publisher.publish(message)
        called = time.monotonic_ns()
        (arrival,) = await pipeline.arrivals(1)
        calls.append((called - start) / 1e6)
        ways.append((arrival - start) / 1e6)
    return calls, ways


async def durable(bus: Bus, messages: Sequence[Contract], window: int = 1024) -> float:
    """``publish_durable_many`` of ``messages``, in msg/s; every one must be stored once."""
    start = time.monotonic_ns()
    acks = await bus.publish_durable_many(messages, window=window)
    seconds = (time.monotonic_ns() - start) / _NS
    if len(acks) != len(messages) or any(ack.duplicate for ack in acks):
        raise BenchError(f"{len(acks)} of {len(messages)} acknowledged, some as duplicates")
    return len(messages) / seconds


async def breakdown(bus: Bus, who: Sequence[str], count: int) -> dict[str, float]:
    """Microseconds a message of each step of sealing and opening, alone in a loop over ``count``
    sign-ups of ``who`` (keys cached), and of decoding each contract's body, for comparison."""
    messages = signups(who, count)
    info = VolunteerSignup.__contract__
    now = datetime.now(UTC)
    prepared = [
        (
            info.type,
            contract_subject(m),
            encode(m),
            build_headers(info, event_id=new_event_id(), source="/bench", time=now, provenance="sensor"),
        )
        for m in messages
    ]
    times: dict[str, float] = {}
    start = time.perf_counter()
    sealed = [
        await seal_prepared(bus.vault, m, (t, s, b, dict(h)))
        for m, (t, s, b, h) in zip(messages, prepared, strict=True)
    ]
    times["seal"] = time.perf_counter() - start
    opener = Opener(bus.vault, info.type, bus.metrics)
    raw = [RawMessage(s, b, h) for _, s, b, h in sealed]
    start = time.perf_counter()
    for message in raw:
        await opener(message)
    times["open"] = time.perf_counter() - start
    cipher = await bus.vault.cipher_of(sealed[0][3][H_PERSON])
    assert cipher is not None
    bodies = [b for _, _, b, _ in prepared]
    start = time.perf_counter()
    boxes = [seal_body(cipher, body, info.type) for body in bodies]
    times["encrypt"] = time.perf_counter() - start
    start = time.perf_counter()
    for box in boxes:
        open_body(cipher, box, info.type)
    times["decrypt"] = time.perf_counter() - start
    start = time.perf_counter()
    for m in messages:
        contract_subject(m)
    times["subject"] = time.perf_counter() - start
    for contract, examples in (
        (VolunteerSignup, bodies),
        (Opportunity, [encode(m) for m in unsealed(count)]),
    ):
        decoder = msgspec.json.Decoder(contract)
        start = time.perf_counter()
        for body in examples:
            decoder.decode(body)
        times[f"decode {contract.__contract__.name}"] = time.perf_counter() - start
    return {step: seconds * 1e6 / count for step, seconds in times.items()}


# -- the volunteer platform ----------------------------------------------------------------------------


CONSENT: Final = msgspec.convert(
    {
        "purposes": ["volunteering"],
        "given_at": "2026-05-01T12:00:00+02:00",
        "text": "drammen-volunteer-2026-05",
    },
    Consent,
)


def _request(volunteer: str, opportunity: str) -> SignupRequest:
    return SignupRequest(
        action="signup",
        volunteer_id=volunteer,
        opportunity_id=opportunity,
        name=f"Kari Nordmann {volunteer[-4:]}",
        email=f"kari.{volunteer[-6:]}@example.no",
        consent=CONSENT,
    )


async def _offer(client: Bus, opportunity: str, places: int) -> None:
    offer = OpportunityOffer(
        organisation=ORGANISATION,
        opportunity_id=opportunity,
        title="Beach clean-up at Sota fjordpark",
        place="Sota fjordpark",
        starts=STARTS,
        ends=STARTS + timedelta(hours=3),
        skills=("lifting",),
        places=places,
    )
    receipt = (await client.request(offer, OpportunityReceipt, timeout=30)).data
    if not receipt.accepted:
        raise BenchError(f"the platform refused the offer of {opportunity}: {receipt.reason}")


async def _ask(client: Bus, volunteer: str, opportunity: str) -> SignupReceipt:
    return (await client.request(_request(volunteer, opportunity), SignupReceipt, timeout=60)).data


async def _platforms(buses: Sequence[Bus], run: Callable[[list[AdapterHarness]], Awaitable[Any]]) -> Any:
    """``run`` with a ``volunteer-platform`` instance on each of ``buses``, ready."""
    config = {"organisations": [ORGANISATION]}
    harnesses = [
        AdapterHarness(VolunteerPlatform, config, instance="volunteer-platform", bus=b) for b in buses
    ]
    entered: list[AdapterHarness] = []
    try:
        for harness in harnesses:
            await harness.__aenter__()
            entered.append(harness)
        return await run(entered)
    finally:
        for harness in reversed(entered):
            await harness.__aexit__(None, None, None)


@dataclass(frozen=True)
class Settled:
    """200 concurrent sign-ups for 50 places: how long they took and what the receipts said."""

    platforms: int
    seconds: float
    statuses: Counter[str]
    conflicts: int
    """Compare-and-set conflicts on the ledger (a platform lost a race, read again and recomputed)."""


async def platform_latency(platform: Bus, client: Bus, who: Sequence[str], opportunity: str) -> list[float]:
    """Sign-up request → receipt (ms) of each of ``who``, one after another, with a platform running."""

    async def run(_: list[AdapterHarness]) -> list[float]:
        await _offer(client, opportunity, len(who))
        times = []
        for volunteer in who:
            start = time.perf_counter()
            receipt = await _ask(client, volunteer, opportunity)
            times.append((time.perf_counter() - start) * 1000)
            if receipt.status != "confirmed":
                raise BenchError(f"a sign-up for a free place was answered {receipt.status}")
        return times

    result: list[float] = await _platforms([platform], run)
    return result


async def contention(
    platforms: Sequence[Bus], clients: Sequence[Bus], who: Sequence[str], places: int, opportunity: str
) -> Settled:
    """``len(who)`` concurrent sign-ups for ``places``, asked through ``clients`` in turn, with a
    platform instance on each of ``platforms``; exactly ``places`` must be confirmed, the rest full."""

    async def run(harnesses: list[AdapterHarness]) -> Settled:
        await _offer(clients[0], opportunity, places)
        start = time.perf_counter()
        receipts = await asyncio.gather(
            *(_ask(clients[n % len(clients)], v, opportunity) for n, v in enumerate(who))
        )
        seconds = time.perf_counter() - start
        ledgers = [cast(VolunteerPlatform, h.adapter).places for h in harnesses]
        conflicts = sum(ledger.conflicts for ledger in ledgers if ledger is not None)
        return Settled(len(platforms), seconds, Counter(r.status for r in receipts), conflicts)

    settled: Settled = await _platforms(platforms, run)
    expected = Counter({"confirmed": places, "full": len(who) - places})
    if settled.statuses != expected:
        raise BenchError(
            f"{len(who)} concurrent sign-ups for {places} places on {len(platforms)} platform(s) were "
            f"answered {dict(settled.statuses)}, not {dict(expected)}: the platform overbooked or lost some"
        )
    return settled


async def second_bus(url: str, source: str) -> Bus:
    """Another connection to the server, with a key cache of its own."""
    other = Bus(metrics=Metrics(), source=source)
    await other.connect(url)
    return other
