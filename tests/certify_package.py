"""Three adapters that must fail ``citybus certify``, each for one stated reason (issue 15).

:func:`install` writes two modules and a ``*.dist-info`` directory into a directory; with that
directory on ``PYTHONPATH`` ``importlib.metadata`` finds the distribution ``certtest-adapters``
and its entry points as it finds a pip-installed one (as tests/join_package.py does). The package
brings its own contracts (entry point group ``citybus.contracts``), ``certtest.beach-advice`` and
``certtest.sensor-alarm``, and three adapters (``citybus.adapters``), each reading
``environment.beach-observation`` and each doing one thing wrong:

* ``crashy-advisor`` (:data:`CRASHY`): advice per reading, from the raw bytes it decodes itself;
  a body that does not decode raises out of ``run``, so the supervisor restarts it. It fails the
  **corrupt** preset on **crashes** (and keeps every other rule: it deduplicates on ``ce-id``).
* ``echo-duplicates`` (:data:`ECHO`): advice per message received, without deduplicating on
  ``ce-id``: an input duplicate becomes two outputs with the same subject and body. It fails the
  **duplicate** preset on **amplification**.
* ``jumpy-watch`` (:data:`JUMPY`): declares that it detects stuck sensors and calls one stuck
  whenever two readings in a row have the same water temperature rounded to 1 °C, which the
  water's slow changes do most hours. It fails every run, the clean one first, on **precision**
  (false stuck alarms).
* ``sloppy-publisher`` (:data:`SLOPPY`): advice per reading, and beside it, with ``publish_raw``,
  an advice body its contract refuses on its own subject, and a copy of the reading on a city
  subject it never declared. It fails every run on **contract fit** (the broker lets the first
  through: the subject is its own) and on **access** (the broker refuses the second).

How ``crashy-advisor`` sees a corrupt body: an adapter's typed subscription never does, as the bus
dead-letters a body that does not fit its contract before any handler. But the broker grants an
instance its consumed contracts' subjects, whoever reads them, so an adapter may subscribe to them
raw (``ctx.subscribe_raw``) and decode the bytes itself: exactly what a company porting its own
JSON parsing does, and what makes it meet every corrupt body the replay sends. (Raw subjects of
its own, listed in ``raw_subjects()``, must stay outside ``city.``; these are its contracts'.)
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "certtest-adapters"
ADVICE = "certtest.beach-advice"
ALARM = "certtest.sensor-alarm"
CRASHY = "crashy-advisor"
ECHO = "echo-duplicates"
JUMPY = "jumpy-watch"
SLOPPY = "sloppy-publisher"
ADAPTERS = (CRASHY, ECHO, JUMPY, SLOPPY)
REASONS = {
    CRASHY: "crashes on a corrupt input (the corrupt preset): it decodes raw bodies itself and raises",
    ECHO: "amplifies duplicates (the duplicate preset): one output per message received, no ce-id check",
    JUMPY: "false stuck-sensor alarms (every run): the water temperature rounded to 1 °C repeats",
    SLOPPY: "publishes past its contract (every run): a body it refuses, a subject it never declared",
}
"""Why each adapter must fail certification."""

_CONTRACTS = '''"""CertTest's contracts: advice per beach reading, and its sensor alarms."""

from datetime import datetime
from typing import Literal

from contracts import Contract, contract


@contract(
    "%(advice)s",
    version=1,
    classification="public",
    key="beach",
    example={"beach": "blektjern", "advised_at": "2018-08-28T10:00:00Z", "swim": True, "water": 17.4},
)
class BeachAdvice(Contract, frozen=True, kw_only=True):
    """Whether CertTest advises a swim at a beach, from the beach's reading of that time."""

    beach: str
    advised_at: datetime
    swim: bool
    water: float


@contract(
    "%(alarm)s",
    version=1,
    classification="public",
    key="sensor",
    example={"sensor": "blektjern", "problem": "stuck", "at": "2018-08-28T10:00:00Z", "water": 17.0},
)
class SensorAlarm(Contract, frozen=True, kw_only=True):
    """A beach sensor CertTest believes stuck, at the time of the reading that made it think so."""

    sensor: str
    problem: Literal["stuck"]
    at: datetime
    water: float
'''

_ADAPTERS = '''"""CertTest's adapters: three ways to fail certification (see each class's docstring)."""

import asyncio
from collections import deque
from datetime import datetime

import msgspec

from adapters import Adapter, Context, Detection
from bus import Event, RawMessage
from bus.envelope import new_event_id
from bus.subjects import contract_filter
from certtest_contracts import BeachAdvice, SensorAlarm
from contracts import BeachObservation


def advice(reading: BeachObservation) -> BeachAdvice:
    """The advice a reading gives: the same reading, the same advice."""
    water = reading.water_temperature
    return BeachAdvice(beach=reading.site, advised_at=reading.observed_at, swim=water >= 17.0, water=water)


class Seen:
    """The ce-ids of the last messages, to pass over a duplicate."""

    def __init__(self) -> None:
        self._order: deque[str] = deque(maxlen=4096)
        self._ids: set[str] = set()

    def first(self, event_id: str) -> bool:
        """Whether ``event_id`` is new (and remember it)."""
        if event_id in self._ids:
            return False
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(event_id)
        self._ids.add(event_id)
        return True


class CrashyAdvisor(Adapter):
    """Swim advice per beach reading, from bodies it decodes itself; it crashes on a corrupt one.

    Must fail certify's corrupt preset on crashes: it subscribes to the beach observations raw and
    decodes each body itself, and a body that does not decode ends its run with an exception, so
    the supervisor restarts it at every corrupt input. It deduplicates on ce-id, so it amplifies
    nothing, and a clean day runs through without a crash.
    """

    name = "%(crashy)s"
    consumes = (BeachObservation,)
    produces = (BeachAdvice,)

    async def run(self, ctx: Context) -> None:
        broken: asyncio.Queue[str] = asyncio.Queue()
        seen = Seen()

        async def on_raw(raw: RawMessage) -> None:
            try:
                reading = msgspec.json.decode(raw.data, type=BeachObservation)
            except msgspec.DecodeError as exc:  # a ValidationError too
                broken.put_nowait(f"{raw.subject}: {exc}")
                return
            if seen.first((raw.headers or {}).get("ce-id", "")):
                await ctx.publish(advice(reading), provenance="synthetic", time=reading.observed_at)

        await ctx.subscribe_raw(contract_filter(BeachObservation), on_raw)
        ctx.ready()
        problem = await broken.get()
        raise RuntimeError(f"cannot read a beach observation: {problem}")


class EchoDuplicates(Adapter):
    """Swim advice for every beach observation it receives, duplicates included.

    Must fail certify's duplicate preset on amplification: it does not deduplicate on ce-id, so an
    observation delivered twice becomes two advice messages with the same subject and body.
    """

    name = "%(echo)s"
    consumes = (BeachObservation,)
    produces = (BeachAdvice,)

    async def run(self, ctx: Context) -> None:
        async def on_observation(event: Event[BeachObservation]) -> None:
            reading = event.data
            await ctx.publish(advice(reading), provenance="synthetic", time=reading.observed_at)

        await ctx.subscribe(BeachObservation, on_observation)
        ctx.ready()
        await ctx.wait_stopped()


class JumpyWatch(Adapter):
    """Stuck beach sensors, called far too eagerly: two readings in a row at the same whole degree.

    Must fail certify on detection precision: it declares that its alarms report stuck sensors,
    and raises one whenever a site's water temperature rounded to 1 degree Celsius is what it was
    at the site's last reading, which the water's slow changes make true most hours of the clean
    day. It deduplicates on ce-id and passes over older readings, so only its judgement is wrong.
    """

    name = "%(jumpy)s"
    consumes = (BeachObservation,)
    produces = (SensorAlarm,)
    detects = (Detection(SensorAlarm, field="problem", kinds={"stuck": "stuck"}, entity="sensor", time="at"),)

    async def run(self, ctx: Context) -> None:
        last: dict[str, tuple[datetime, int]] = {}
        seen = Seen()

        async def on_observation(event: Event[BeachObservation]) -> None:
            reading = event.data
            if not seen.first(event.id):
                return
            before = last.get(reading.site)
            if before is not None and reading.observed_at <= before[0]:
                return
            degrees = round(reading.water_temperature)
            last[reading.site] = (reading.observed_at, degrees)
            if before is not None and before[1] == degrees:
                alarm = SensorAlarm(
                    sensor=reading.site, problem="stuck", at=reading.observed_at, water=degrees
                )
                await ctx.publish(alarm, provenance="synthetic", time=reading.observed_at)

        await ctx.subscribe(BeachObservation, on_observation)
        ctx.ready()
        await ctx.wait_stopped()


class SloppyPublisher(Adapter):
    """Swim advice per beach reading, and two things it must not publish beside it.

    Must fail certify on contract fit and on access: for each reading it also sends, raw, an advice
    body without the fields its contract requires on its own advice subject (with its own
    ce-source: the broker cannot tell, certify can), and the reading again on a subject of the
    city's beach observations that it never declared (the broker refuses it).
    """

    name = "%(sloppy)s"
    consumes = (BeachObservation,)
    produces = (BeachAdvice,)

    async def run(self, ctx: Context) -> None:
        seen = Seen()

        async def on_observation(event: Event[BeachObservation]) -> None:
            reading = event.data
            if not seen.first(event.id):
                return
            await ctx.publish(advice(reading), provenance="synthetic", time=reading.observed_at)
            headers = {
                "ce-specversion": "1.0",
                "ce-id": new_event_id(),
                "ce-source": f"/adapters/{ctx.instance}",
                "ce-type": "%(advice)s",
                "ce-time": reading.observed_at.isoformat(),
                "content-type": "application/json",
            }
            await ctx.publish_raw(f"city.public.%(advice)s.{reading.site}", b'{"beach": 1}', headers)
            await ctx.publish_raw(event.subject + "-copy", msgspec.json.encode(reading), dict(headers))

        await ctx.subscribe(BeachObservation, on_observation)
        ctx.ready()
        await ctx.wait_stopped()
'''


def install(where: Path) -> Path:
    """Install the package into ``where`` (a ``PYTHONPATH`` directory); returns ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    values = {
        "advice": ADVICE,
        "alarm": ALARM,
        "crashy": CRASHY,
        "echo": ECHO,
        "jumpy": JUMPY,
        "sloppy": SLOPPY,
    }
    (where / "certtest_contracts.py").write_text(_CONTRACTS % values)
    (where / "certtest_adapters.py").write_text(_ADAPTERS % values)
    info = where / "certtest_adapters-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[citybus.contracts]\ncerttest = certtest_contracts\n\n"
        "[citybus.adapters]\n"
        f"{CRASHY} = certtest_adapters:CrashyAdvisor\n"
        f"{ECHO} = certtest_adapters:EchoDuplicates\n"
        f"{JUMPY} = certtest_adapters:JumpyWatch\n"
        f"{SLOPPY} = certtest_adapters:SloppyPublisher\n"
    )
    return where
