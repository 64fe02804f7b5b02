"""The scaffold of a **service**: city contracts in, a contract of the company's own out.

The example is the product companies pilot first: beach observations in, advice per bathing site
out (``<company>.advice``), declared in the package's own contract module and installed through
the entry-point group ``citybus.contracts``, so every citybus command knows it. Advice is given on
the instance's clock: in the sandbox, a reading is fresh or stale by the replayed time, and the
advice's ``ce-time`` is the replayed time too.

A reading delivered again (the bus delivers at least once; ``citybus certify``'s ``duplicate``
preset does it on purpose) is advised on once: the service remembers the event ids of the latest
readings, so a newcomer's product does not start out turning one duplicated input into two outputs.
"""

from __future__ import annotations

from string import Template

__all__ = ["ADAPTER", "CONFIG_EXAMPLE", "CONTRACTS", "README", "TEST"]

CONFIG_EXAMPLE = 'account = "sandbox"      # a pilot: replayed data, on the replay\'s clock\nwarm = 18.0'

"""Its ``[adapters.<name>]`` section in the README."""

README = Template("""\
# citybus-$name

A [citybus](https://pypi.org/project/citybus/) service adapter. It reads the city's
`environment.beach-observation` and publishes `$company.advice` — whether each bathing site is worth
a swim now (`swim`, `brisk`, `stay-dry`) — a contract of its own, declared in
`src/$package/contracts.py` and installed through the entry point `citybus.contracts`, so that
`citybus contracts list`, `citybus tail` and `citybus up`'s streams and access know it.

A contract's name is `<company>.<event>`: the domain is the company's prefix, never one of the
city's (`environment`, `mobility`, …). A new optional field with a default is a compatible change;
anything else is a new major version (`version=2`), published side by side with the old.

The bus delivers at least once, so a reading may arrive twice under the same `ce-id`: the adapter
remembers the latest readings' ids and advises on each reading once. `citybus certify $name --suite
quick` runs it against the recorded city with faults (duplicates among them) and scores it.

""")
"""The README's first part (the common part follows)."""

CONTRACTS = Template('''\
"""The contracts $title publishes, under the company prefix `$company`."""

from __future__ import annotations

from typing import Annotated, Literal

from contracts import Contract, Slug, Timestamp, contract, measure
from msgspec import Meta

Verdict = Literal["swim", "brisk", "stay-dry"]
"""`swim`: the water is warm; `brisk`: bearable for the hardy; `stay-dry`: too cold."""


@contract(
    "$company.advice",
    version=1,
    classification="public",
    key="site",
    example={
        "site": "bragernes-strand",
        "advised_at": "2018-08-28T14:00:00+02:00",
        "verdict": "swim",
        "water_temperature": 19.5,
        "observed_at": "2018-08-28T13:40:00+02:00",
    },
)
class Advice(Contract, frozen=True, kw_only=True):
    """Whether one of Drammen's bathing sites is worth a swim now, from its latest water reading."""

    site: Annotated[Slug, Meta(description="The bathing site, as environment.beach-observation names it")]
    advised_at: Annotated[Timestamp, Meta(description="When the advice was given")]
    verdict: Annotated[Verdict, Meta(description="swim, brisk or stay-dry")]
    water_temperature: Annotated[
        float, measure("The water temperature the advice is based on", unit="CEL", ge=-2, le=40)
    ]
    observed_at: Annotated[Timestamp, Meta(description="When that water temperature was measured")]
''')
"""``src/<package>/contracts.py``: the company's own contract."""

ADAPTER = Template('''\
"""$title: beach observations in, advice per bathing site out."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Final

import msgspec
from adapters import Adapter, Context
from bus import Event
from contracts import BeachObservation

from $package.contracts import Advice, Verdict

REMEMBERED: Final = 256
"""Event ids of the latest readings remembered, to tell a reading delivered again from a new one."""


class ${cls}Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[adapters.<instance>]` section of citybus.toml."""

    warm: float = 18.0
    """Water at or above this (°C) is `swim`."""
    bearable: float = 15.0
    """Water at or above this (°C), below `warm`, is `brisk`; colder is `stay-dry`."""
    max_age: float = 10800.0
    """A reading older than this many seconds, by the instance's clock, is too old to advise on."""

    def __post_init__(self) -> None:
        if self.bearable > self.warm:
            raise ValueError(f"bearable ({self.bearable}) must not be above warm ({self.warm})")
        if self.max_age <= 0:
            raise ValueError("max_age must be more than 0 seconds")


def advise(reading: BeachObservation, config: ${cls}Config, now: datetime) -> Advice | None:
    """The advice for one reading at `now`; `None` when the reading is too old to go by."""
    if (now - reading.observed_at).total_seconds() > config.max_age:
        return None
    verdict: Verdict = "stay-dry"
    if reading.water_temperature >= config.warm:
        verdict = "swim"
    elif reading.water_temperature >= config.bearable:
        verdict = "brisk"
    return Advice(
        site=reading.site,
        advised_at=now,
        verdict=verdict,
        water_temperature=reading.water_temperature,
        observed_at=reading.observed_at,
    )


class $cls(Adapter[${cls}Config]):
    """$title: advice per bathing site from the city's beach observations."""

    name = "$name"
    Config = ${cls}Config
    consumes = (BeachObservation,)
    produces = (Advice,)

    async def run(self, ctx: Context) -> None:
        """Advise on every reading until stopped."""
        recent: deque[str] = deque(maxlen=REMEMBERED)  # the latest readings' ce-ids

        async def on_observation(event: Event[BeachObservation]) -> None:
            if event.id in recent:
                return  # the bus delivers at least once: a reading that came again was advised on
            recent.append(event.id)
            advice = advise(event.data, self.config, ctx.clock.now())
            if advice is None:
                age = ctx.clock.now() - event.data.observed_at
                ctx.log.info("reading too old to advise on", site=event.data.site, age=str(age))
                return
            # Its ce-time is the instance's clock's now (the replayed time in the sandbox); its
            # provenance is the reading's: advice on synthetic data is synthetic.
            await ctx.publish(advice, provenance=event.provenance)

        await ctx.subscribe(BeachObservation, on_observation)
        ctx.ready()
        await ctx.wait_stopped()
''')
"""``src/<package>/adapter.py``."""

TEST = Template('''\
"""The adapter on citybus's in-memory bus (the real Bus, no server needed), on a sandbox clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.testing import AdapterHarness
from contracts import BeachObservation

from $package.adapter import $cls
from $package.contracts import Advice

NOON = datetime(2018, 8, 28, 12, 0, tzinfo=UTC)
"""The replayed time the tests' sandbox stands still at."""


def reading(water: float, age: timedelta) -> BeachObservation:
    """A reading at Bragernes strand, taken `age` before noon."""
    return BeachObservation(site="bragernes-strand", observed_at=NOON - age, water_temperature=water)


async def test_warm_water_is_swim_advice_given_at_the_replayed_time() -> None:
    async with AdapterHarness($cls, clock="sandbox") as harness:
        await harness.tick(NOON, state="paused")  # the sandbox's replay stands still at noon
        await harness.publish(reading(19.5, timedelta(minutes=20)), provenance="synthetic")
        [event] = await harness.wait_for(Advice)
    assert (event.data.site, event.data.verdict) == ("bragernes-strand", "swim")
    assert event.data.advised_at == NOON
    assert event.envelope.time == NOON  # ce-time: the replayed time, not the wall clock's
    assert event.provenance == "synthetic"
    assert event.subject == "city.public.$company.advice.bragernes-strand"


async def test_the_verdict_follows_the_configured_temperatures() -> None:
    config = {"warm": 21.0, "bearable": 12.0}
    async with AdapterHarness($cls, config, clock="sandbox") as harness:
        await harness.tick(NOON, state="paused")
        for water in (19.5, 11.0, 21.0):
            await harness.publish(reading(water, timedelta(minutes=5)))
        events = await harness.wait_for(Advice, count=3)
    assert sorted((e.data.water_temperature, e.data.verdict) for e in events) == [
        (11.0, "stay-dry"),
        (19.5, "brisk"),
        (21.0, "swim"),
    ]


async def test_a_reading_delivered_again_is_advised_on_once() -> None:
    async with AdapterHarness($cls, clock="sandbox") as harness:
        await harness.tick(NOON, state="paused")
        for _ in range(2):  # delivered at least once: the same reading, under the same ce-id, twice
            await harness.bus.publish(reading(19.5, timedelta(minutes=20)), event_id="reading-1")
        await harness.publish(reading(16.0, timedelta(minutes=5)))  # a new reading is advised on
        await harness.wait_for(Advice, count=2)
        await harness.settle()
    assert [e.data.water_temperature for e in harness.published(Advice)] == [19.5, 16.0]


async def test_a_reading_older_than_max_age_by_the_replayed_clock_gets_no_advice() -> None:
    async with AdapterHarness($cls, clock="sandbox") as harness:
        await harness.tick(NOON, state="paused")
        await harness.publish(reading(19.5, timedelta(hours=4)))
        await harness.settle()
    assert harness.published(Advice) == []
''')
"""``tests/test_<package>.py``."""
