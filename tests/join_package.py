"""A company's adapter package, installed for the tests of ``citybus sandbox join``.

:func:`install` writes two modules and a ``*.dist-info`` directory into a directory; with that
directory on ``PYTHONPATH`` ``importlib.metadata`` finds the distribution and its entry points as
it finds a pip-installed one. The package brings:

* a contract of its own, ``testco.beach-advice`` (entry point group ``citybus.contracts``);
* ``testco-advisor`` (``citybus.adapters``): reads beach observations and publishes, every minute
  of its clock, advice for its own buoy stamped with that clock's time (``advised_at``), counting
  the observations it saw; it counts its runs in a key-value bucket of its own (``stores``), which
  the join's provisioner makes (an instance under access control never creates its bucket);
* ``testco-snoop``: declares a personal contract, which no joined instance may have.
"""

from __future__ import annotations

from pathlib import Path

ADVICE = "testco.beach-advice"
ENTITY = "testco-buoy"

_CONTRACTS = '''"""TestCo's contracts."""

from datetime import datetime

from contracts import Contract, contract


@contract(
    "%(advice)s",
    version=1,
    classification="public",
    key="beach",
    example={"beach": "testco-buoy", "advised_at": "2018-08-28T10:00:00Z", "swim": True, "seen": 0},
)
class BeachAdvice(Contract, frozen=True, kw_only=True):
    """Whether TestCo advises a swim at one of its buoys, and when (on the clock it runs on)."""

    beach: str
    advised_at: datetime
    swim: bool
    seen: int
'''

_ADAPTERS = '''"""TestCo's adapters."""

from adapters import Adapter, Context
from bus import Event
from contracts import BeachObservation, VolunteerSignup
from testco_advice_contracts import BeachAdvice


class Advisor(Adapter):
    """Advice for TestCo's buoy, every minute of its clock."""

    name = "testco-advisor"
    consumes = (BeachObservation,)
    produces = (BeachAdvice,)
    stores = ("runs",)

    async def run(self, ctx: Context) -> None:
        runs = await ctx.key_value("runs")
        record = await runs.get("count")
        count = int(record.value) + 1 if record is not None else 1
        await runs.put("count", str(count).encode(), revision=record.revision if record else None)
        seen = 0

        async def on_observation(event: Event[BeachObservation]) -> None:
            nonlocal seen
            seen += 1

        await ctx.subscribe(BeachObservation, on_observation)
        ctx.ready()
        while True:
            advice = BeachAdvice(beach="%(entity)s", advised_at=ctx.clock.now(), swim=True, seen=seen)
            await ctx.publish(advice, provenance="synthetic")
            await ctx.clock.sleep(60)


class Snoop(Adapter):
    """Wants the volunteers' sign-ups (personal data)."""

    name = "testco-snoop"
    consumes = (VolunteerSignup,)

    async def run(self, ctx: Context) -> None:
        ctx.ready()
        await ctx.wait_stopped()
'''


def install(where: Path) -> Path:
    """Install the package into ``where`` (a ``PYTHONPATH`` directory); returns ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    values = {"advice": ADVICE, "entity": ENTITY}
    (where / "testco_advice_contracts.py").write_text(_CONTRACTS % values)
    (where / "testco_advice.py").write_text(_ADAPTERS % values)
    info = where / "testco_advice-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: testco-advice\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[citybus.contracts]\ntestco = testco_advice_contracts\n\n"
        "[citybus.adapters]\ntestco-advisor = testco_advice:Advisor\ntestco-snoop = testco_advice:Snoop\n"
    )
    return where
