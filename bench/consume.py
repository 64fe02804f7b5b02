"""The durable consume benchmark: citybus's JetStream consumer against a raw nats-py fetch loop.

Every consuming adapter (the PostgreSQL archive, the MQTT bridge, a company's service) runs on
``Bus.consume(...).run()``: pull, check, decode and validate, count, handle, acknowledge. This case
measures that path against nats-py doing the same work by hand (target citybus >= 0.80x raw).

Each round starts a fresh nats-server with the streams provisioned as ``citybus up`` has them and
stores ``N`` beach observations in ``CITY_PUBLIC_ENVIRONMENT`` (nats-py's ``publish_async``, each
with its own ``ce-id``: not timed); then each implementation, in a process of its own
(:mod:`bench.consumers`), drains the stream through a new durable consumer of its own, which one
goes first alternating between rounds. A figure is the median of its rounds. Where the target is missed
(and always in a smoke run, so that CI checks the code), the citybus consumer runs once more under
cProfile and the top of the profile goes into the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pstats
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nats

from bench.bus import Peers, _tail
from bench.common import BenchError, Options, Spec, log, nats_bus
from bench.consumers import SETTINGS, STREAM
from bench.peers import MESSAGE, SUBJECT, cloudevents_headers
from bench.report import Case, Figure, Row, Target
from bench.stats import median, top_functions
from bus.codec import encode
from bus.envelope import H_ID, H_MSG_ID

__all__ = ["CASES", "TITLE"]

TITLE: Final = "JetStream durable consume, against a raw nats-py fetch loop"
TARGET: Final = 0.80
_NS: Final = 1e9


@dataclass(frozen=True)
class Sizes:
    """How many messages each measurement consumes, and how many rounds there are."""

    messages: int
    rounds: int
    profile_messages: int
    """cProfile slows the consumer several times over: the profiled run is shorter."""


FULL: Final = Sizes(50_000, 3, 10_000)
SMOKE: Final = Sizes(500, 1, 500)


async def store(url: str, count: int) -> None:
    """Store ``count`` beach observations in the stream, each with a fresh ``ce-id``."""
    body, template = encode(MESSAGE), cloudevents_headers()
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for _ in range(count):
            event_id = uuid.uuid4().hex
            await js.publish_async(SUBJECT, body, headers={**template, H_ID: event_id, H_MSG_ID: event_id})
        await js.publish_async_completed()
    finally:
        await nc.close()


@dataclass(frozen=True)
class Consumed:
    """One consumer's run: messages a second, and its CPU time per message."""

    rate: float
    cpu_us: float


async def consume(
    peers: Peers, url: str, impl: str, count: int, durable: str, *, profile: Path | None = None
) -> Consumed:
    """Consume the ``count`` stored messages with ``impl`` in a process of its own."""
    result = peers._path(f"{durable}.json")
    args = [impl, "--url", url, "--count", str(count), "--durable", durable, "--result", str(result)]
    if profile is not None:
        args += ["--profile", str(profile)]
    process, stderr = await peers._spawn(durable, *args, module="bench.consumers")
    try:
        await peers._finish(process, stderr, f"the {impl} consumer")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    outcome: dict[str, Any] = json.loads(result.read_text())
    if outcome["handled"] != count:
        raise BenchError(f"{impl} handled {outcome['handled']} of {count} messages:\n{_tail(stderr)}")
    return Consumed(count * _NS / float(outcome["end"] - outcome["start"]), outcome["cpu"] * 1e6 / count)


@contextlib.asynccontextmanager
async def stored(peers: Peers, count: int, name: str) -> AsyncIterator[str]:
    """A fresh nats-server whose stream holds ``count`` stored messages; its URL."""
    async with nats_bus(peers._path(f"nats-{name}")) as bus:
        await store(bus.url, count)
        held = (await bus.js.stream_info(STREAM)).state.messages
        if held != count:
            raise BenchError(f"the stream holds {held} of the {count} messages stored")
        yield bus.url


def consume_case(options: Options) -> Case:
    """``Bus.consume(...).run()`` against nats-py's pull subscription, the same stored messages."""
    return asyncio.run(_consume(SMOKE if options.smoke else FULL, options))


async def _consume(sizes: Sizes, options: Options) -> Case:
    count = sizes.messages
    case = Case(
        TITLE,
        f"{count:,} beach observations stored in `{STREAM}` beforehand (not timed), then consumed by a "
        f"process of its own through a new durable consumer; {sizes.rounds} round(s), each on a fresh "
        "nats-server where both consume the same stored messages, which goes first alternating; msg/s = "
        "messages / (the last message handled - just before the consumer is created). `raw nats-py` is "
        "`js.pull_subscribe` and a loop of `fetch(batch="
        f"{SETTINGS.max_in_flight})`, each body decoded and validated with "
        "`msgspec.json.Decoder(BeachObservation)`, then `await msg.ack()`, one message after the other; "
        "`citybus` is `Bus.consume(BeachObservation, handler, durable=...)` and its `run()` with the default "
        f"settings ({SETTINGS.max_in_flight} in flight): headers checked, body decoded and validated, "
        "metrics counted, the handler in a task of its own, the ack after it returns. Both consumers are "
        "configured alike on the server; afterwards each waits (not timed) until the server counts every "
        "message acknowledged.",
    )
    peers = Peers(options.work)
    runs: dict[str, list[Consumed]] = {"raw": [], "citybus": []}
    for number in range(1, sizes.rounds + 1):
        # Both consume the same stored stream, each through a consumer of its own; which goes first
        # alternates, so neither is always the one reading what the server has just written.
        order = ["raw", "citybus"] if number % 2 else ["citybus", "raw"]
        async with stored(peers, count, f"consume-{number}") as url:
            for impl in order:
                log(f"consume: round {number}, {impl}: {count} messages")
                runs[impl].append(await consume(peers, url, impl, count, f"{impl}-{number}"))
    rates = {impl: [run.rate for run in done] for impl, done in runs.items()}
    raw = median(rates["raw"])
    for impl, values in rates.items():
        case.rows.append(
            Row(
                {
                    "implementation": impl,
                    "messages": f"{count:,}",
                    "msg/s, each round": ", ".join(f"{rate:,.0f}" for rate in values),
                    "msg/s (median)": f"{median(values):,.0f}",
                    "ratio": f"{median(values) / raw:.2f}x",
                    "consumer CPU µs/msg (median)": f"{median([run.cpu_us for run in runs[impl]]):.0f}",
                }
            )
        )
        case.figures.append(Figure(f"{impl} msg/s", median(values), "msg/s"))
    ratio = median(rates["citybus"]) / raw
    met = ratio >= TARGET
    case.rows[-1].met = met
    case.figures.append(Figure("citybus / raw", ratio, "x"))
    case.targets.append(Target(f"{TITLE} (throughput)", f">= {TARGET:.2f}x", f"{ratio:.2f}x", met))
    if not met or options.smoke:
        log("consume: profiling the citybus consumer")
        profile, profiled = peers._path("citybus-consume.prof"), sizes.profile_messages
        async with stored(peers, profiled, "consume-profile") as url:
            await consume(peers, url, "citybus", profiled, "citybus-profile", profile=profile)
        stats = pstats.Stats(str(profile))
        case.profiles.append(("the citybus consumer, top functions by own time", top_functions(stats, 14)))
        case.profiles.append(
            (
                "the citybus consumer, citybus's own functions by cumulative time",
                top_functions(stats, 10, by="cumulative", where=_citybus_code),
            )
        )
        case.notes.append(
            f"Reading the profiles: cProfile, one extra run of the citybus consumer on {profiled:,} messages "
            "(it inflates the cost of "
            "small Python calls: shares are a guide, not a measurement); `select.epoll.poll` is time spent "
            "waiting for the server."
        )
    return case


def _citybus_code(place: str) -> bool:
    return place.startswith(("bus/", "contracts/")) and "<" not in place.split(" ", 1)[1]


CASES: Final = [Spec("consume", TITLE, consume_case)]
