"""The process of the durable-consume benchmark: one JetStream consumer draining a stored stream.

    python -m bench.consumers IMPL --url URL --count N --durable NAME --result FILE [--batch B]
        [--profile FILE]

The stream (``CITY_PUBLIC_ENVIRONMENT``) already holds ``N`` beach observations, stored by the
parent before this process starts; this process creates a new durable consumer ``NAME`` on it
(delivering from the stream's first message) and takes every message. The implementations do the
same work per message (take it from a pull request, decode and validate the body into
``BeachObservation``, acknowledge it):

``raw``
    nats-py alone: ``js.pull_subscribe`` and a loop of ``fetch(batch=B)``, each body decoded with a
    ``msgspec.json.Decoder(BeachObservation)`` (the contract's own constraints, as citybus checks
    them) and ``await msg.ack()``, one message after the other. The ceiling.
``citybus``
    ``Bus.consume(BeachObservation, handler, durable=...)`` and its ``run()``, as every consuming
    adapter runs it, with the default :class:`~bus.ConsumerSettings` (64 in flight): CloudEvents
    headers checked, the body decoded and validated, metrics counted, the handler called in a task
    of its own, the message acknowledged once the handler returned.

Both consumers are configured alike on the server (explicit acks, the same ``ack_wait`` and
``max_ack_pending``). msg/s = messages / (the last message handled - the start, just before the
consumer is created), ``time.monotonic_ns()``, with the process's CPU time over the same span;
afterwards (not timed) the process waits until the server counts every message acknowledged, and
fails if it does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
import nats
import nats.errors
from nats.js import api

from bench.peers import FILTER, MESSAGE, SOURCE
from bus import Bus, ConsumerSettings, Event, Metrics
from bus.logs import configure_logging
from bus.subjects import stream_name
from contracts import BeachObservation

__all__ = ["IMPLS", "STREAM", "main"]

IMPLS: Final = ("raw", "citybus")
STREAM: Final = stream_name(MESSAGE.__contract__.classification, MESSAGE.__contract__.domain)
LIMIT: Final = 120.0
SETTINGS: Final = ConsumerSettings()
"""citybus's defaults, as ``citybus.toml`` has them unless told otherwise."""


def _consumer_config(durable: str) -> api.ConsumerConfig:
    """The raw consumer, configured on the server as citybus configures its own."""
    return api.ConsumerConfig(
        durable_name=durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        max_deliver=-1,
        ack_wait=SETTINGS.ack_wait,
        filter_subject=FILTER,
        max_ack_pending=max(SETTINGS.max_in_flight * 4, 256),
    )


async def raw(url: str, count: int, durable: str, batch: int) -> dict[str, Any]:
    """nats-py's pull subscription: fetch, decode, ack, one message after the other."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    decoder = msgspec.json.Decoder(BeachObservation)
    handled = 0
    async with asyncio.timeout(LIMIT):
        start, cpu = time.monotonic_ns(), time.process_time()
        config = _consumer_config(durable)
        sub = await js.pull_subscribe(FILTER, durable=durable, stream=STREAM, config=config)
        while handled < count:
            try:
                msgs = await sub.fetch(batch=batch, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue  # nothing within the wait: the overall timeout bounds the loop
            for msg in msgs:
                decoder.decode(msg.data)
                await msg.ack()
                handled += 1
        end, cpu = time.monotonic_ns(), time.process_time() - cpu
        await nc.flush(timeout=30)
        await _all_acked(js, durable, count)
    await nc.close()
    return {"start": start, "end": end, "cpu": cpu, "handled": handled}


async def citybus(url: str, count: int, durable: str) -> dict[str, Any]:
    """``Bus.consume(...).run()`` with a handler that counts."""
    bus = Bus(metrics=Metrics(), source=SOURCE)
    await bus.connect(url)
    handled = 0
    done = asyncio.Event()
    end, cpu = 0, 0.0

    async def handler(event: Event[BeachObservation]) -> None:
        nonlocal handled, end, cpu
        handled += 1
        if handled == count:
            end, cpu = time.monotonic_ns(), time.process_time() - cpu
            done.set()

    async with asyncio.timeout(LIMIT):
        start, cpu = time.monotonic_ns(), time.process_time()
        consumer = bus.consume(BeachObservation, handler, durable=durable, settings=SETTINGS)
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(consumer.run())
            waiting = asyncio.ensure_future(done.wait())
            # run() returning early (its own error) must end the wait too, not hang until LIMIT
            await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            consumer.stop()
        if not done.is_set():
            raise RuntimeError(f"the consumer stopped after {handled} of {count} messages")
        await bus.flush(timeout=30)
        await _all_acked(bus.js, durable, count)
    await bus.drain()
    return {"start": start, "end": end, "cpu": cpu, "handled": handled}


async def _all_acked(js: Any, durable: str, count: int) -> None:
    """Wait (bounded by the caller) until the server counts ``count`` messages acknowledged."""
    while True:
        info = await js.consumer_info(STREAM, durable)
        if info.ack_floor.consumer_seq >= count and not info.num_ack_pending:
            return
        await asyncio.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.consumers``: one consumer of the durable-consume case."""
    parser = argparse.ArgumentParser(prog="python -m bench.consumers", description=__doc__.split("\n")[0])
    parser.add_argument("impl", choices=IMPLS)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--durable", required=True, help="the durable consumer's name (a new one)")
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--batch", type=int, default=SETTINGS.max_in_flight, help="raw: messages per fetch")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the run here")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")
    run = (
        raw(args.url, args.count, args.durable, args.batch)
        if args.impl == "raw"
        else citybus(args.url, args.count, args.durable)
    )
    profiler = cProfile.Profile() if args.profile else contextlib.nullcontext()
    with profiler:
        result = asyncio.run(run)
    if isinstance(profiler, cProfile.Profile):
        profiler.dump_stats(args.profile)
    args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
