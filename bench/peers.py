"""The processes of the bus benchmarks: a publisher and a subscriber per implementation.

Each side of a measurement is a fresh interpreter of its own, as a producer and a consumer are in
the city, so the two never share an event loop or a GIL::

    python -m bench.peers subscribe IMPL --url URL --count N --result FILE [--stamps]
    python -m bench.peers publish IMPL --url URL --count N --result FILE [--rate MSG_PER_S] [--stamps]
    python -m bench.peers durable IMPL --url URL --count N --result FILE [--window W]

(``--profile FILE`` writes a cProfile of the side's whole run.)

Every implementation sends the same message: the example ``environment.beach-observation`` (a
271-byte JSON body) with its nine CloudEvents headers. They differ in what they do with it:

``raw``
    nats-py alone: the body and headers are built once and the same bytes are published again and
    again; the subscriber's callback takes the message as nats-py hands it over. The ceiling.
``citybus``
    ``Bus.publish`` of the contract instance (a fresh ``ce-id`` and ``ce-time`` per message, the
    subject and the body encoded by citybus), and ``Bus.subscribe`` with a typed handler: headers
    checked, body decoded and validated into the contract, metrics counted.
``faststream-msgspec`` / ``faststream-pydantic`` / ``faststream-defaults``
    FastStream's NATS broker (:mod:`bench.faststream_peers`).
``citybus-sealed`` / ``citybus-unsealed``
    The personal-data case's (:mod:`bench.personal`): ``Bus.publish`` → ``Bus.subscribe`` of sealed
    ``community.volunteer-signup`` sign-ups cycling over :data:`PEOPLE` people (their keys created
    by the parent and read into both sides' caches before the first message: steady state), and of
    unsealed ``community.opportunity`` events of about the same size. They need the streams and the
    key vault provisioned.

Clocks: a subscriber stamps each message with ``time.monotonic_ns()`` as it reaches user code (the
handler or callback); a paced publisher stamps each message just before it calls publish. On
Linux ``CLOCK_MONOTONIC`` is one clock for every process of the machine, so a subscriber's stamp
minus the publisher's is the one-way latency. Core NATS delivers one publisher's messages to a
subscriber in order, so the n-th stamp of one side belongs to the n-th of the other; the parent
checks that none was lost.

A subscriber prints ``ready`` on standard output once the server has its subscription. Results
are JSON files; nothing here judges a number.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import nats
import nats.js.api
from nats.aio.client import Client as NATS

from bus import Bus, Metrics
from bus.codec import encode
from bus.envelope import H_ID, H_MSG_ID, build_headers, new_event_id
from bus.logs import configure_logging
from bus.subjects import contract_filter, contract_subject
from contracts import BeachObservation

__all__ = [
    "DURABLE",
    "FILTER",
    "IMPLS",
    "PEOPLE",
    "SOURCE",
    "SUBJECT",
    "Endpoint",
    "cloudevents_headers",
    "main",
]

IMPLS: Final = (
    "raw",
    "citybus",
    "faststream-msgspec",
    "faststream-pydantic",
    "faststream-defaults",
    "citybus-sealed",
    "citybus-unsealed",
)
"""The publish/subscribe implementations."""
PEOPLE: Final = 500
"""The people the sealed sign-ups of ``citybus-sealed`` are about."""
DURABLE: Final = ("raw-async", "raw-sync", "citybus-many", "citybus")
"""The JetStream publishers: ``publish_async`` and ``publish`` of nats-py, ``Bus.publish_durable_many``
with ``--window`` acknowledgements awaited at once, and ``Bus.publish_durable`` one at a time."""
SOURCE: Final = "/bench"
MESSAGE: Final = BeachObservation.example()
SUBJECT: Final = contract_subject(MESSAGE)
FILTER: Final = contract_filter(BeachObservation)
IDLE: Final = 15.0
"""Seconds a subscriber waits for the next message before it gives up and reports what it has."""
LIMIT: Final = 120.0


@dataclass(frozen=True)
class Endpoint:
    """One side's connection, as a publish (or subscribe) loop needs it."""

    send: Callable[[], Awaitable[Any]]
    flush: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


def cloudevents_headers() -> dict[str, str]:
    """The headers of one message with a fresh id and time, as citybus builds them."""
    return build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source=SOURCE,
        time=datetime.now(UTC),
        provenance="sensor",
    )


async def _flush_twice(nc: NATS) -> None:
    # nats-py 2.16 may write a flush's PING ahead of commands still in its buffer (see Bus.flush)
    await nc.flush(timeout=30)
    await nc.flush(timeout=30)


# -- publishers ------------------------------------------------------------------------------------


async def raw_publisher(url: str) -> Endpoint:
    """nats-py publishing the same bytes again and again."""
    nc = await nats.connect(url)
    body, headers = encode(MESSAGE), cloudevents_headers()

    async def send() -> None:
        await nc.publish(SUBJECT, body, headers=headers)

    return Endpoint(send, lambda: _flush_twice(nc), nc.close)


async def citybus_publisher(url: str) -> Endpoint:
    """``Bus.publish`` of the contract instance."""
    bus = Bus(metrics=Metrics(), source=SOURCE, provenance="sensor")
    await bus.connect(url)

    async def send() -> None:
        await bus.publish(MESSAGE)

    return Endpoint(send, lambda: bus.flush(timeout=30), bus.drain)


async def personal_publisher(impl: str, url: str) -> Endpoint:
    """``Bus.publish`` of sealed sign-ups (keys cached first) or of unsealed opportunities."""
    from bench import personal_bus  # the personal case's messages

    bus = Bus(metrics=Metrics(), source=SOURCE, provenance="sensor")
    await bus.connect(url)
    who = personal_bus.people(PEOPLE)
    if impl == "citybus-sealed":
        for person in who:
            await bus.vault.cipher(person)
    messages = (
        personal_bus.signups(who, 4 * PEOPLE) if impl == "citybus-sealed" else personal_bus.unsealed(2000)
    )
    cycle = itertools.cycle(messages)

    async def send() -> None:
        await bus.publish(next(cycle))

    return Endpoint(send, lambda: bus.flush(timeout=30), bus.drain)


async def publisher(impl: str, url: str) -> Endpoint:
    """The publisher of ``impl``."""
    if impl == "raw":
        return await raw_publisher(url)
    if impl == "citybus":
        return await citybus_publisher(url)
    if impl.startswith("citybus-"):
        return await personal_publisher(impl, url)
    from bench import faststream_peers  # only where FastStream is installed

    return await faststream_peers.publisher(impl, url)


async def publish(impl: str, url: str, count: int, rate: float | None) -> dict[str, Any]:
    """Publish ``count`` messages as fast as possible, or paced at ``rate`` a second."""
    endpoint = await publisher(impl, url)
    stamps: list[int] = []
    send = endpoint.send
    async with asyncio.timeout(LIMIT):
        start = time.monotonic_ns()
        if rate is None:
            for _ in range(count):
                await send()
        else:
            # Due times are absolute, so a late wake-up is caught up rather than carried forward;
            # asyncio sleeps at least 1 ms, so at 5 000 msg/s messages go out about five at a time.
            interval = 1e9 / rate
            for n in range(count):
                wait = start + int(n * interval) - time.monotonic_ns()
                if wait > 0:
                    await asyncio.sleep(wait / 1e9)
                stamps.append(time.monotonic_ns())
                await send()
        await endpoint.flush()
        end = time.monotonic_ns()
    await endpoint.close()
    return {"start": start, "end": end, "sent": count, "stamps": stamps}


# -- subscribers -----------------------------------------------------------------------------------


async def subscriber(impl: str, url: str, arrived: Callable[[], None]) -> Endpoint:
    """A subscription of ``impl`` calling ``arrived`` for each message, once the server has it."""
    if impl == "raw":
        nc = await nats.connect(url)

        async def callback(msg: Any) -> None:
            arrived()

        await nc.subscribe(FILTER, cb=callback)
        await _flush_twice(nc)
        return Endpoint(_nothing, lambda: _flush_twice(nc), nc.close)
    if impl == "citybus":
        bus = Bus(metrics=Metrics(), source=SOURCE)
        await bus.connect(url)

        async def handler(event: Any) -> None:
            arrived()

        await bus.subscribe(BeachObservation, handler)
        await bus.flush()
        return Endpoint(_nothing, bus.flush, bus.drain)
    if impl.startswith("citybus-"):
        from bench import personal_bus
        from contracts import Opportunity, VolunteerSignup

        bus = Bus(metrics=Metrics(), source=SOURCE)
        await bus.connect(url)
        if impl == "citybus-sealed":
            for person in personal_bus.people(PEOPLE):
                await bus.vault.cipher_of(await bus.vault.ref(person))

        async def personal_handler(event: Any) -> None:
            arrived()

        contract: type[Any] = VolunteerSignup if impl == "citybus-sealed" else Opportunity
        await bus.subscribe(contract, personal_handler)
        await bus.flush()
        return Endpoint(_nothing, bus.flush, bus.drain)
    from bench import faststream_peers  # only where FastStream is installed

    return await faststream_peers.subscriber(impl, url, arrived)


async def _nothing() -> None:
    pass


async def subscribe(impl: str, url: str, count: int) -> dict[str, Any]:
    """Take ``count`` messages (or what comes until nothing has for :data:`IDLE` seconds)."""
    stamps: list[int] = []
    done = asyncio.Event()
    clock = time.monotonic_ns

    def arrived() -> None:
        stamps.append(clock())
        if len(stamps) >= count:
            done.set()

    endpoint = await subscriber(impl, url, arrived)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    async with asyncio.timeout(LIMIT):
        seen = -1
        while not done.is_set() and len(stamps) != seen:
            seen = len(stamps)
            try:
                await asyncio.wait_for(done.wait(), IDLE)
            except TimeoutError:
                pass
    await endpoint.close()
    return {"received": len(stamps), "stamps": stamps}


# -- JetStream -------------------------------------------------------------------------------------


async def durable(impl: str, url: str, count: int, window: int) -> dict[str, Any]:
    """Publish ``count`` messages to JetStream and wait for every acknowledgement."""
    body, template = encode(MESSAGE), cloudevents_headers()

    def headers() -> dict[str, str]:
        event_id = uuid.uuid4().hex  # a fresh id, as citybus makes, or JetStream drops the repeats
        return {**template, H_ID: event_id, H_MSG_ID: event_id}

    acks: list[nats.js.api.PubAck] = []
    if impl.startswith("raw"):
        nc = await nats.connect(url)
        js = nc.jetstream()
        async with asyncio.timeout(LIMIT):
            start = time.monotonic_ns()
            if impl == "raw-async":
                futures = [await js.publish_async(SUBJECT, body, headers=headers()) for _ in range(count)]
                await js.publish_async_completed()
                acks = [future.result() for future in futures]
            else:
                acks = [await js.publish(SUBJECT, body, headers=headers()) for _ in range(count)]
            end = time.monotonic_ns()
        await nc.close()
        return _acked(start, end, count, [(ack.stream, bool(ack.duplicate)) for ack in acks])
    bus = Bus(metrics=Metrics(), source=SOURCE, provenance="sensor")
    await bus.connect(url)
    async with asyncio.timeout(LIMIT):
        start = time.monotonic_ns()
        if impl == "citybus":
            results = [await bus.publish_durable(MESSAGE) for _ in range(count)]
        else:
            results = await bus.publish_durable_many([MESSAGE] * count, window=window)
        end = time.monotonic_ns()
    await bus.drain()
    return _acked(start, end, count, [(ack.stream, ack.duplicate) for ack in results])


def _acked(start: int, end: int, count: int, acks: list[tuple[str, bool]]) -> dict[str, Any]:
    streams = sorted({stream for stream, _ in acks})
    return {
        "start": start,
        "end": end,
        "sent": count,
        "acked": len(acks),
        "duplicates": sum(duplicate for _, duplicate in acks),
        "streams": streams,
    }


# -- the command -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.peers``: one side of a measurement (the bus cases start these)."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=("subscribe", "publish", "durable"))
    parser.add_argument("impl", choices=sorted({*IMPLS, *DURABLE}))
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--rate", type=float, default=None, help="publish paced at this many msg/s")
    parser.add_argument("--window", type=int, default=256, help="durable publishes in flight at once")
    parser.add_argument("--stamps", action="store_true", help="keep every message's stamp in the result")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the run here")
    args = parser.parse_args(argv)
    allowed = DURABLE if args.role == "durable" else IMPLS
    if args.impl not in allowed:
        parser.error(f"{args.role} takes one of {', '.join(allowed)}, not {args.impl}")
    configure_logging("console", "warning")
    run: Coroutine[Any, Any, dict[str, Any]]
    if args.role == "subscribe":
        run = subscribe(args.impl, args.url, args.count)
    elif args.role == "publish":
        run = publish(args.impl, args.url, args.count, args.rate)
    else:
        run = durable(args.impl, args.url, args.count, args.window)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    result = asyncio.run(run)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    stamps = result.get("stamps", [])
    if not args.stamps and stamps:  # a throughput run needs the first and the last only
        result["stamps"] = [stamps[0], stamps[-1]]
    args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
