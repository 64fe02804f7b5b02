"""The scaffold of a **source**: a device's own JSON from a NATS subject in, beach observations out.

The job most companies have: translate what their device sends. Input it cannot translate goes to
the dead letters; a reading without a time of its own is stamped with the instance's clock (the
replayed time in the sandbox).
"""

from __future__ import annotations

from string import Template

__all__ = ["ADAPTER", "CONFIG_EXAMPLE", "README", "TEST"]

CONFIG_EXAMPLE = 'subject_prefix = "$subject_prefix"'
"""Its ``[adapters.<name>]`` section in the README."""

README = Template("""\
# citybus-$name

A [citybus](https://pypi.org/project/citybus/) source adapter. It reads readings in the device's
own JSON from the NATS subject `$subject_prefix.<device>` and publishes each as an
`environment.beach-observation`; input it cannot translate goes to citybus's dead letters.

""")
"""The README's first part (the common part follows)."""

ADAPTER = Template('''\
"""$title: device readings in their own JSON in, beach observations out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from adapters import Adapter, Context
from bus import RawMessage
from bus.codec import decode_bytes
from bus.errors import UndecodableError
from contracts import BeachObservation, Slug


class ${cls}Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[adapters.<instance>]` section of citybus.toml."""

    subject_prefix: str = "$subject_prefix"
    """Devices publish on `<subject_prefix>.<device id>`."""


class Reading(msgspec.Struct, frozen=True):
    """The device's own message (`time` is absent when the device keeps no clock), with the limits
    of the beach observation it becomes: decoding checks them, so a bad reading never goes out."""

    site: Slug
    water_celsius: Annotated[float, msgspec.Meta(ge=-2, le=40)]
    air_celsius: Annotated[float, msgspec.Meta(ge=-50, le=50)] | None = None
    time: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class $cls(Adapter[${cls}Config]):
    """Translates $title readings into beach observations."""

    name = "$name"
    Config = ${cls}Config
    produces = (BeachObservation,)

    def raw_subjects(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The devices' subjects it reads (the broker grants it these and its contracts)."""
        return ((f"{self.config.subject_prefix}.*",), ())

    async def run(self, ctx: Context) -> None:
        """Translate every reading until stopped."""
        decoder = msgspec.json.Decoder(Reading)

        async def on_reading(raw: RawMessage) -> None:
            device = raw.subject.rsplit(".", 1)[-1]
            try:
                reading = decode_bytes(decoder, raw.data)  # any bytes a device sends: never a crash
                # A device without a clock: the reading happened now, by the instance's clock
                # (the replayed time in the sandbox, so it fits the data around it).
                observed_at = reading.time or ctx.clock.now()
                observation = BeachObservation(
                    site=reading.site,
                    observed_at=observed_at,
                    water_temperature=reading.water_celsius,
                    air_temperature=reading.air_celsius,
                    device=device,
                )
            except UndecodableError as exc:
                await ctx.dead_letter(raw, reason="bad-reading", detail=str(exc))
                return
            await ctx.publish(observation, provenance="sensor", time=observed_at)

        await ctx.subscribe_raw(f"{self.config.subject_prefix}.*", on_reading)
        ctx.ready()
        await ctx.wait_stopped()
''')
"""``src/<package>/adapter.py``."""

TEST = Template('''\
"""The adapter on citybus's in-memory bus (the real Bus, no server needed), on a sandbox clock."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.testing import AdapterHarness
from contracts import BeachObservation

from $package.adapter import $cls

NOON = datetime(2018, 8, 28, 12, 0, tzinfo=UTC)
"""The replayed time the tests' sandbox stands still at."""
DEVICE = "$subject_prefix.unit-7"
"""The subject device unit-7 publishes on."""


async def test_a_reading_becomes_a_beach_observation() -> None:
    async with AdapterHarness($cls, clock="sandbox") as harness:
        await harness.tick(NOON, state="paused")
        await harness.publish_raw(
            DEVICE,
            b'{"site": "bragernes-strand", "time": "2018-08-28T10:00:00+02:00", "water_celsius": 15.7}',
        )
        [event] = await harness.wait_for(BeachObservation)
    assert event.data.site == "bragernes-strand"
    assert event.data.water_temperature == 15.7
    assert event.data.device == "unit-7"
    assert event.provenance == "sensor"
    assert event.envelope.time == datetime(2018, 8, 28, 8, 0, tzinfo=UTC)  # the reading's own time


async def test_a_reading_without_a_time_gets_the_replayed_time() -> None:
    async with AdapterHarness($cls, clock="sandbox") as harness:
        await harness.tick(NOON, state="paused")  # the sandbox's replay stands still at noon
        await harness.publish_raw(DEVICE, b'{"site": "blektjern", "water_celsius": 19.5}')
        [event] = await harness.wait_for(BeachObservation)
    assert event.data.observed_at == NOON
    assert event.envelope.time == NOON


async def test_an_unreadable_message_goes_to_the_dead_letters() -> None:
    async with AdapterHarness($cls, clock="sandbox") as harness:
        await harness.publish_raw(DEVICE, b'{"site": "bragernes-strand"}')
        await harness.publish_raw(DEVICE, b'{"site": "Not A Slug", "water_celsius": 9}')
        await harness.settle()
    assert [letter.reason for letter in harness.dead_letters] == ["bad-reading", "bad-reading"]
    assert "water_celsius" in harness.dead_letters[0].detail
    assert harness.published(BeachObservation) == []
''')
"""``tests/test_<package>.py``."""
