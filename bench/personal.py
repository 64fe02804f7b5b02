"""``python -m bench.personal [--messages N]``: what reading and erasing personal streams costs.

Against an embedded nats-server of its own (file storage, as ``citybus up`` runs), it stores
``N`` sealed sign-ups of 500 people in ``CITY_PERSONAL_COMMUNITY`` and measures:

* reading the stream by ``MSG.GET`` as the rights engine does (:func:`bus.personal.scan.scan`,
  :data:`~bus.personal.scan.WINDOW` requests in flight), in messages per second;
* the same one request at a time, for comparison;
* an export and an erasure of one person (``N / 500`` messages) over the whole stream, as
  ``citybus personal export|erase`` runs them.

The figures are printed, not asserted (docs/privacy.md quotes them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import structlog

from bus import Bus, Metrics
from bus.logs import configure_logging
from bus.personal import rights
from bus.personal.places import Logs, PersonalPlace
from bus.personal.scan import _one, scan, stream_bounds
from bus.personal.stored import PersonalDeadLetters, PersonalStreams, Vault
from bus.server import EmbeddedServer
from contracts import VolunteerSignup

__all__ = ["main"]

STREAM = "CITY_PERSONAL_COMMUNITY"
PEOPLE = 500


async def _run(messages: int) -> None:
    configure_logging("console", "warning")
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(data_dir=Path(tmp))
        await server.start()
        bus = Bus(metrics=Metrics(), logger=structlog.get_logger(), source="/bench")
        try:
            await bus.connect(server.url)
            await bus.provision_streams()
            example = msgspec.convert(VolunteerSignup.__contract__.example, type=VolunteerSignup)
            people = [f"v-{i:012x}" for i in range(PEOPLE)]
            for start in range(0, messages, 500):
                batch = [
                    msgspec.structs.replace(example, volunteer_id=people[i % PEOPLE], name=f"P {i % PEOPLE}")
                    for i in range(start, min(start + 500, messages))
                ]
                await asyncio.gather(*(bus.publish_durable(s) for s in batch))

            began = time.perf_counter()
            read = sum([1 async for _ in scan(bus, STREAM)])
            windowed = read / (time.perf_counter() - began)
            bounds = await stream_bounds(bus, STREAM)
            assert bounds is not None
            sample = min(2000, read)
            began = time.perf_counter()
            for seq in range(bounds[0], bounds[0] + sample):
                await _one(bus, STREAM, seq)
            single = sample / (time.perf_counter() - began)

            places: list[PersonalPlace] = [PersonalStreams(bus), PersonalDeadLetters(bus), Logs(), Vault(bus)]
            began = time.perf_counter()
            export = await rights.export(bus, places, people[7])
            exported = time.perf_counter() - began
            began = time.perf_counter()
            receipt = await rights.erase(bus, places, people[7])
            erased = time.perf_counter() - began
            sys.stdout.write(
                f"messages in {STREAM}: {read}\n"
                f"read by MSG.GET, windowed: {windowed:,.0f} msg/s; one at a time: {single:,.0f} msg/s\n"
                f"export of one person ({len(export.messages)} messages): {exported:.2f} s\n"
                f"erasure of one person ({sum(p.erased for p in receipt.places)} erased): {erased:.2f} s\n"
            )
        finally:
            await bus.drain()
            await server.stop()


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.personal", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="sign-ups to store (default 20000)")
    args = parser.parse_args()
    asyncio.run(_run(args.messages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
