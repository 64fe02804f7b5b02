"""The statistics service's rules: what counts, when a table is released, and how a person's own
figures are put beside it.

:class:`Statistics` is what the adapter (:mod:`adapters.statistics.adapter`) runs. It takes

* volunteer activity (:class:`~contracts.VolunteerActivity`, personal, opened by the bus) into the
  contributions of the ``volunteer-hours`` data set: hours per person (by ref), district and
  activity, for the period the activity starts in (:mod:`adapters.statistics.contributions`);
* opportunities (:class:`~contracts.Opportunity`, public) for where their hours count: the
  district of their place (:mod:`adapters.statistics.districts`) and their activity, their first
  skill (``general`` if none);
* the public contracts of the everyday data sets (:data:`~adapters.statistics.everyday.EVERYDAY`),
  each message turned into observations by its data set, generically;

and releases each data set's tables with the release engine (:mod:`adapters.statistics.engine`)
as :class:`~contracts.Aggregate`, spending privacy budget first (:mod:`adapters.statistics.budget`).

Decisions, and why:

* **When a table is released.** The *final* release of a public period is made once its data
  has settled: ``release_after`` after the period ended, or after the last new data for it was
  heard if that was later (a replayed day arrives long after its week ended). A personal data
  set's schedule depends on nothing but the clock: the final release of the period that just
  ended, ``release_after`` after its end, whoever contributed — a table that appears, is late or
  is missing because of someone's data would tell, outside epsilon, that someone (or nobody)
  contributed. Its hours heard after that, or for an older period, count in no scheduled
  release (an analyst may still ask for one). Provisional
  releases every ``release_every`` while a period is open (personal data: regardless of the data;
  public: when it changed), and a release whenever an analyst asks
  (:class:`~contracts.ReleaseRequest`). Every one of them spends ``engine.cost(policy)`` of the
  period's budget first; what would exceed it is refused, and nothing is published.
* **One schedule, kept by every process.** Two service processes share the budget and the
  contributions; each keeps the schedule, and the budget's record decides which one makes a
  scheduled release (:mod:`adapters.statistics.budget`), so there is one final release per
  period, not two.
* **Public data is held in memory**, per data set and period, the last observation of each
  ``who`` (:func:`~adapters.statistics.everyday.latest`): it is nobody's, the sources' own streams
  keep it, and every process hears all of it (no queue group). A process that restarts within a
  period releases that period from what it heard since; periods already released are not
  affected. A period's observations are dropped once its final release is made (and, beyond the
  latest 16 periods, the oldest: so a reading dated more than a day ahead of the clock is left
  out, or a source with a wrong clock could push the running period out), and a request
  for a public period nothing is held of is refused rather than answered with an empty table.
* **The cells of volunteer hours that exist publicly** — the district and activity of each of
  the period's opportunities, which are public — are given to the engine as its ``domain``, so
  a cell the noise withheld is listed as suppressed; cells are never listed because a person is
  in them.
* **A comparison publishes nothing.** The person's own figures are read from their record (by
  their ref) and put beside the rows of the latest release of that period as it was published —
  kept in memory and read back from the ``statistics.aggregate`` stream at start — so the answer
  holds nothing about anyone else that was not already public. It goes to the asker's inbox only
  (the broker sees to who may ask for whom).
* **Cancelled opportunities count for nothing** in later releases: their hours were not
  volunteered.
* **Nothing personal in the logs**: data sets, periods, release numbers, counts — never an id or
  a ref.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

import msgspec

from adapters.changes import stable_id
from adapters.context import Context
from adapters.statistics import engine
from adapters.statistics.budget import Budget, Refused
from adapters.statistics.contributions import Contributions, Opportunities, Where
from adapters.statistics.districts import UNKNOWN, Districts
from adapters.statistics.everyday import EverydayDataset, Observation
from adapters.statistics.metrics import StatisticsMetrics
from adapters.statistics.periods import Period, PeriodError, PeriodKind
from bus import Event
from bus.errors import CityBusError
from contracts import (
    Aggregate,
    Comparison,
    ComparisonRequest,
    Contract,
    Opportunity,
    OwnFigure,
    ReleaseReceipt,
    ReleaseRequest,
    StatisticsRow,
    VolunteerActivity,
)

__all__ = [
    "AIR_QUALITY",
    "Dataset",
    "GENERAL",
    "RequestMismatchError",
    "RequestPeriodError",
    "Statistics",
    "VOLUNTEER_HOURS",
    "volunteer_hours",
]

VOLUNTEER_HOURS: Final = "volunteer-hours"
"""The personal data set: volunteer hours by district and activity."""
AIR_QUALITY: Final = "air-quality"
"""The public data set a comparison's ``commute`` looks up."""
GENERAL: Final = "general"
"""The activity of an opportunity that asks for no skill."""
ALL: Final = "all"

_WAIT_FOR_PLACE: Final = 50
"""Looks (a tenth of a second apart) for an opportunity an activity names before it counts in
:data:`~adapters.statistics.districts.UNKNOWN`: the two come on different streams."""
_KEEP_PERIODS: Final = 16
"""Periods of public observations kept per data set (the oldest dropped beyond)."""
_AHEAD: Final = timedelta(days=1)
"""How far ahead of the service's clock a public observation may be dated (a replay running ahead
of the wall clock is): later ones are left out, since the periods kept are the latest ones."""
_REALNESS: Final = {"synthetic": 0, "pseudonymised": 1, "recorded": 2}
"""How real a provenance is, least first; every other kind (sensor, vendor, manual) is a reading."""


class RequestMismatchError(CityBusError, ValueError):
    """A comparison request names another person than the subject it came on."""


class RequestPeriodError(CityBusError, ValueError):
    """A comparison request's period is none (the message says the accepted forms)."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """One data set the service releases: what its table is, and how it is protected."""

    name: str
    title: str
    dimensions: tuple[str, ...]
    measure: str
    unit: str
    counts: Literal["persons", "observations", "entities"]
    sources: tuple[str, ...]
    policy: engine.Policy
    personal: bool
    """Whether it is computed from personal data (its contributions kept by ref)."""
    release_every: float | None = None
    """Seconds between provisional releases; ``None``: none."""
    everyday: EverydayDataset | None = None
    """The public data set it is (``None``: volunteer hours)."""

    @property
    def private(self) -> bool:
        """Whether a release spends privacy budget (differential privacy)."""
        return self.policy.mechanism == "differential-privacy"


def volunteer_hours(policy: engine.Policy, release_every: float | None = None) -> Dataset:
    """The ``volunteer-hours`` data set under ``policy``."""
    return Dataset(
        name=VOLUNTEER_HOURS,
        title="Volunteer hours by district and activity",
        dimensions=("district", "activity"),
        measure="hours",
        unit="h",
        counts="persons",
        sources=(VolunteerActivity.__contract__.name,),
        policy=policy,
        personal=True,
        release_every=release_every,
    )


def _stamp(event: Event[Contract], now: datetime) -> float:
    """The time a message was sent (its ``ce-time``), which orders the changes it makes."""
    return (event.envelope.time or now).timestamp()


def _activity_label(slug: str) -> str:
    return slug.replace("-", " ").capitalize()


def _covers(row: tuple[str, ...], group: tuple[str, ...]) -> bool:
    """Whether a row of the table is the group or a total over it."""
    return len(row) == len(group) and all(r in (g, ALL) for r, g in zip(row, group, strict=True))


class Statistics:
    """Counts, releases and compares for one service instance."""

    def __init__(
        self,
        ctx: Context,
        datasets: Mapping[str, Dataset],
        *,
        districts: Districts,
        period: PeriodKind,
        release_after: float,
        budget: Budget,
        contributions: Contributions,
        opportunities: Opportunities,
        metrics: StatisticsMetrics,
    ) -> None:
        self.ctx = ctx
        self.datasets = dict(datasets)
        self.districts = districts
        self.kind: PeriodKind = period
        self.release_after = release_after
        self.budget = budget
        self.contributions = contributions
        self.opportunities = opportunities
        self.metrics = metrics
        self.released: dict[tuple[str, str], Aggregate] = {}
        """The latest release of each data set and period (published or read back)."""
        self._newest: dict[str, Aggregate] = {}
        self._costs = {name: engine.cost(d.policy, d.dimensions) for name, d in self.datasets.items()}
        self._observations: dict[tuple[str, str], dict[str, Observation]] = {}
        self._labels: dict[str, dict[str, str]] = defaultdict(dict)
        self._provenance: dict[str, str] = {}
        self._heard: dict[tuple[str, str], float] = {}
        self._changes: dict[tuple[str, str], int] = defaultdict(int)
        self._released_changes: dict[tuple[str, str], int] = {}
        self._last: dict[tuple[str, str], float] = {}
        self._pending: set[tuple[str, str]] = set()
        self._done: set[tuple[str, str]] = set()
        """Data sets and periods whose final release was made (or refused): nothing more is due."""
        self._exhausted: set[tuple[str, str]] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._gauged: str = ""

    # -- periods ----------------------------------------------------------------------------------

    def period_of(self, when: datetime) -> str:
        """The period (of the configured kind) ``when`` lies in."""
        return str(Period.containing(when, self.kind))

    # -- what comes in ----------------------------------------------------------------------------

    def _heard_now(self, dataset: str, period: str) -> None:
        self._heard[(dataset, period)] = self.ctx.clock.now().timestamp()
        self._changes[(dataset, period)] += 1
        self._pending.add((dataset, period))

    def _provenance_of(self, dataset: str, provenance: str) -> None:
        known = self._provenance.get(dataset)
        if known is None or _REALNESS.get(provenance, 9) < _REALNESS.get(known, 9):
            self._provenance[dataset] = provenance

    async def activity(self, event: Event[VolunteerActivity]) -> None:
        """Count (or withdraw) a volunteer's hours, by their ref, in the period the activity starts."""
        if VOLUNTEER_HOURS not in self.datasets:
            return
        activity = event.data
        ref = await self.ctx.person_ref(activity.volunteer_id)
        period = self.period_of(activity.starts)
        at = _stamp(event, self.ctx.clock.now())
        if activity.withdrawn:
            group: tuple[str, ...] = ()
        else:
            district = await self._district(activity.opportunity_id)
            group = (district, activity.skills[0] if activity.skills else GENERAL)
        changed = await self.contributions.put(
            VOLUNTEER_HOURS,
            period,
            ref,
            activity.opportunity_id,
            group,
            0.0 if activity.withdrawn else activity.hours,
            at=at,
            withdrawn=activity.withdrawn,
        )
        self._provenance_of(VOLUNTEER_HOURS, event.provenance)
        if not changed:
            self.metrics.contributions.labels("unchanged").inc()
            return
        self.metrics.contributions.labels("withdrawn" if activity.withdrawn else "counted").inc()
        if (VOLUNTEER_HOURS, period) not in self._done:
            self._heard_now(VOLUNTEER_HOURS, period)

    async def _district(self, opportunity_id: str) -> str:
        for look in range(_WAIT_FOR_PLACE):
            where = await self.opportunities.get(opportunity_id, fresh=look > 0)
            if where is not None:
                return where.district
            await asyncio.sleep(0.1)
        self.ctx.log.warning("activity of an unknown opportunity counted nowhere", opportunity=opportunity_id)
        return UNKNOWN

    async def opportunity(self, event: Event[Opportunity]) -> None:
        """Keep where an opportunity's hours count (and whether it was cancelled)."""
        opportunity = event.data
        where = Where(
            district=self.districts.of(opportunity.location),
            activity=opportunity.skills[0] if opportunity.skills else GENERAL,
            starts=opportunity.starts.timestamp(),
            cancelled=opportunity.status == "cancelled",
            at=_stamp(event, self.ctx.clock.now()),
        )
        await self.opportunities.put(opportunity.opportunity_id, where)

    def observe(self, dataset: Dataset, event: Event[Contract]) -> None:
        """Take a public message's observations into ``dataset``."""
        assert dataset.everyday is not None
        labels = self._labels[dataset.name]
        if len(labels) < 10_000:
            labels.update(dataset.everyday.labels(event.data))
        taken = ahead = 0
        latest = self.ctx.clock.now() + _AHEAD
        for observation in dataset.everyday.observe(event.data):
            if observation.at > latest:  # kept, it would push the running period out of memory
                ahead += 1
                continue
            period = self.period_of(observation.at)
            key = (dataset.name, period)
            if key in self._done:
                continue
            held = self._observations.get(key)
            if held is None:
                held = self._observations[key] = {}
                self._drop_old(dataset.name)
            if held.get(observation.who) != observation:
                held[observation.who] = observation
                self._heard_now(dataset.name, period)
            taken += 1
        if ahead:
            self.ctx.log.warning("readings dated in the future left out", dataset=dataset.name, count=ahead)
        if taken:
            self.metrics.observations.labels(dataset.name).inc(taken)
            self._provenance_of(dataset.name, event.provenance)

    def _drop_old(self, dataset: str) -> None:
        held = sorted(p for d, p in self._observations if d == dataset)
        for period in held[:-_KEEP_PERIODS]:
            del self._observations[(dataset, period)]

    def remember(self, aggregate: Aggregate) -> None:
        """Keep a published release as the latest of its data set and period (and of its data set)."""
        key = (aggregate.dataset, aggregate.period)
        before = self.released.get(key)
        if before is None or aggregate.release >= before.release:
            self.released[key] = aggregate
        newest = self._newest.get(aggregate.dataset)
        if newest is None or (aggregate.period_end, aggregate.release) >= (newest.period_end, newest.release):
            self._newest[aggregate.dataset] = aggregate
        if aggregate.final:  # nothing later is counted: what was held for it is let go
            self._done.add(key)
            self._observations.pop(key, None)
            self._pending.discard(key)

    # -- releases ---------------------------------------------------------------------------------

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def requested(self, event: Event[ReleaseRequest]) -> ReleaseReceipt:
        """Answer an analyst's release request: released now, or refused with the reason."""
        request = event.data
        now = self.ctx.clock.now()
        period = request.period or self.period_of(now)
        dataset = self.datasets.get(request.dataset)
        problem = self._period_problem(period, now)
        if dataset is None:
            problem = f"no data set {request.dataset} here; it releases {', '.join(sorted(self.datasets))}"
        elif (
            not problem
            and dataset.everyday is not None
            and not self._observations.get((dataset.name, period))
        ):
            # public data is held until its period's final release, by the process that heard it
            problem = (
                f"the final release of {dataset.name} for {period} was made: see it"
                if (dataset.name, period) in self._done
                else f"no observation of {dataset.name} in {period} has been heard here: nothing to release"
            )
        if dataset is None or problem:
            self.ctx.log.info(
                "release request refused", dataset=request.dataset, period=period, reason=problem
            )
            return ReleaseReceipt(dataset=request.dataset, period=period, status="refused", reason=problem)
        return await self.release(dataset, period)

    def _period_problem(self, period: str, now: datetime) -> str:
        """What is wrong with asking for ``period`` now, for a person; empty if nothing."""
        try:
            parsed = Period.parse(period)
        except PeriodError as error:
            return str(error)
        if parsed.kind != self.kind:
            return f"this service counts by {self.kind}: ask for a period like {self.period_of(now)}"
        if parsed.start > now:
            return f"the period {period} has not started"
        return ""

    async def release(
        self, dataset: Dataset, period: str, *, final: bool = False, unless_after: float | None = None
    ) -> ReleaseReceipt:
        """Spend the release's cost of the budget, then compute and publish the table.

        :param final: the scheduled final release (made once per data set and period).
        :param unless_after: a scheduled provisional release: not made if another process released
            at or after this time.
        """
        key = (dataset.name, period)
        epsilon, delta = self._costs[dataset.name]
        budget = dataset.policy.budget if dataset.private else 0.0
        async with self._lock(key):
            now = self.ctx.clock.now()
            outcome = await self.budget.spend(
                dataset.name,
                period,
                epsilon,
                delta,
                budget,
                final=final,
                at=now.timestamp(),
                unless_after=unless_after,
            )
            if isinstance(outcome, Refused):
                return self._refused(
                    dataset, period, outcome, final=final, scheduled=unless_after is not None
                )
            try:
                aggregate = await self._table(dataset, period, outcome.release, final=final)
                if dataset.private:
                    privacy = msgspec.structs.replace(aggregate.privacy, spent=outcome.spent, budget=budget)
                    aggregate = msgspec.structs.replace(aggregate, privacy=privacy)
                await self.ctx.publish_durable(
                    aggregate,
                    provenance=self._provenance.get(dataset.name, self._default_provenance()),
                    event_id=stable_id(self.ctx.instance, dataset.name, period, outcome.release),
                )
            except Exception:
                self.metrics.releases.labels(dataset.name, "failed").inc()
                self.ctx.log.exception(
                    "release failed after its budget was spent", dataset=dataset.name, period=period
                )
                raise
            self._published(dataset, aggregate, now.timestamp())
        self.ctx.log.info(
            "released",
            dataset=dataset.name,
            period=period,
            release=outcome.release,
            final=final,
            rows=len(aggregate.rows),
            suppressed=sum(1 for r in aggregate.rows if r.status == "suppressed"),
            epsilon=epsilon,
            spent=outcome.spent,
        )
        return ReleaseReceipt(
            dataset=dataset.name,
            period=period,
            status="released",
            release=outcome.release,
            epsilon=epsilon,
            spent=outcome.spent,
            budget=budget,
        )

    def _refused(
        self, dataset: Dataset, period: str, refused: Refused, *, final: bool, scheduled: bool
    ) -> ReleaseReceipt:
        key = (dataset.name, period)
        if final:
            self._done.add(key)  # made by another process, or impossible: nothing more is due
        if refused.exceeded:
            self._exhausted.add(key)
            self.metrics.releases.labels(dataset.name, "refused").inc()
            self.ctx.log.warning(
                "release refused", dataset=dataset.name, period=period, final=final, reason=refused.reason
            )
        if dataset.private and period == self._gauged:
            self.metrics.budget(dataset.name, refused.spent, refused.budget)
        return ReleaseReceipt(
            dataset=dataset.name,
            period=period,
            status="refused",
            reason=refused.reason,
            epsilon=refused.epsilon,
            spent=refused.spent,
            budget=refused.budget,
        )

    def _default_provenance(self) -> str:
        return "recorded" if self.ctx.account == "SANDBOX" else "manual"

    async def _table(self, dataset: Dataset, period: str, release: int, *, final: bool) -> Aggregate:
        parsed = Period.parse(period)
        labels = dict(self._labels.get(dataset.name, {}))
        domain: set[tuple[str, ...]] = set()
        if dataset.everyday is None:
            known = await self.opportunities.load()
            given = await self._contributed(dataset, period, known)
            # the cells of the period's opportunities are public: listed, if not released, as suppressed
            domain = {
                (where.district, where.activity)
                for where in known.values()
                if not where.cancelled and parsed.start.timestamp() <= where.starts < parsed.end.timestamp()
            }
            labels.update(self.districts.labels)
            labels.update({a: _activity_label(a) for _, a in (*domain, *(c.group for c in given))})
        else:
            held = self._observations.get((dataset.name, period), {})
            given = [engine.Contribution(who=o.who, group=o.group, value=o.value) for o in held.values()]
        labels[ALL] = "All"
        table = await asyncio.to_thread(
            engine.release, given, dataset.dimensions, dataset.policy, labels=labels, domain=domain
        )
        start, end = parsed.start, parsed.end
        return Aggregate(
            dataset=dataset.name,
            title=dataset.title,
            period=period,
            period_start=start,
            period_end=end,
            release=release,
            final=final,
            dimensions=dataset.dimensions,
            measure=dataset.measure,
            unit=dataset.unit,
            counts=dataset.counts,
            rows=table.rows,
            privacy=table.privacy,
            sources=dataset.sources,
        )

    async def _contributed(
        self, dataset: Dataset, period: str, known: Mapping[str, Where]
    ) -> list[engine.Contribution]:
        """What goes into a release of personal data: each person's value per cell, by ref,
        leaving out cancelled opportunities."""
        cancelled = {name for name, where in known.items() if where.cancelled}
        cells: dict[tuple[str, tuple[str, ...]], float] = defaultdict(float)
        for ref, items in (await self.contributions.period(dataset.name, period)).items():
            for item, contributed in items.items():
                if item not in cancelled:
                    cells[(ref, contributed.group)] += contributed.value
        return [
            engine.Contribution(who=ref, group=group, value=value)
            for (ref, group), value in sorted(cells.items())
        ]

    def _published(self, dataset: Dataset, aggregate: Aggregate, now: float) -> None:
        key = (dataset.name, aggregate.period)
        self.remember(aggregate)
        self._last[key] = now
        self._released_changes[key] = self._changes[key]
        self.metrics.releases.labels(dataset.name, "released").inc()
        self.metrics.last_release.labels(dataset.name).set(now)
        for row in aggregate.rows:
            if row.status == "suppressed":
                self.metrics.suppressed.labels(dataset.name, row.reason or "too-few").inc()
        if dataset.private and aggregate.period == self._gauged:
            self.metrics.budget(dataset.name, aggregate.privacy.spent, aggregate.privacy.budget)

    # -- the schedule -----------------------------------------------------------------------------

    async def load(self) -> None:
        """At start: the periods of personal data sets with contributions and no final release yet."""
        for dataset in self.datasets.values():
            if not dataset.personal:
                continue
            for period in await self.contributions.periods(dataset.name):
                if (await self.budget.record(dataset.name, period)).final:
                    self._done.add((dataset.name, period))
                else:
                    self._pending.add((dataset.name, period))

    async def tick(self) -> None:
        """Make the releases that are due now (each data set's final and provisional ones)."""
        now = self.ctx.clock.now()
        t = now.timestamp()
        current = self.period_of(now)
        if current != self._gauged:
            await self._gauge(current)
            await self.expire(now)
        for dataset in self.datasets.values():
            if dataset.personal:
                # the schedule, whatever the data: a table appears (or is delayed) for nobody's data
                due = {current, str(Period.parse(current).previous())}
                self._pending -= {(dataset.name, p) for p in self._pending_of(dataset.name) - due}
            else:
                due = set(self._pending_of(dataset.name))
            for period in sorted(due):
                key = (dataset.name, period)
                if key in self._done:
                    self._pending.discard(key)
                    continue
                parsed = Period.parse(period)
                start, end = parsed.start, parsed.end
                if now < start:
                    continue
                heard = 0.0 if dataset.personal else self._heard.get(key, 0.0)
                settled = max(end.timestamp(), heard) + self.release_after
                if t >= settled:
                    await self.release(dataset, period, final=True)
                elif self._provisional_due(dataset, key, t):
                    assert dataset.release_every is not None
                    await self.release(dataset, period, unless_after=t - dataset.release_every)

    def _pending_of(self, dataset: str) -> set[str]:
        return {p for d, p in self._pending if d == dataset}

    def _provisional_due(self, dataset: Dataset, key: tuple[str, str], t: float) -> bool:
        every = dataset.release_every
        if every is None or key in self._exhausted or t - self._last.get(key, 0.0) < every:
            return False
        if dataset.personal:
            return True  # on schedule, whatever the data: when a table appears tells nothing
        return self._changes.get(key, 0) != self._released_changes.get(key, 0)

    async def _gauge(self, period: str) -> None:
        self._gauged = period
        for dataset in self.datasets.values():
            if dataset.private:
                record = await self.budget.record(dataset.name, period)
                self.metrics.budget(dataset.name, record.spent, dataset.policy.budget)

    async def schedule(self, every: float) -> None:
        """Tick every ``every`` seconds until cancelled; a tick that fails is logged, not the end."""
        task = asyncio.current_task()
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.ctx.log.exception("scheduled releases failed; trying again at the next tick")
            if task is not None and task.cancelling():
                # stopped during a release: an await below swallowed the cancellation, and the loop
                # would tick on for ever (the adapter never stopped)
                raise asyncio.CancelledError
            await asyncio.sleep(every)

    # -- comparisons ------------------------------------------------------------------------------

    async def compare(self, event: Event[ComparisonRequest]) -> Comparison:
        """A person's own figures beside the latest release of the period; nothing is published."""
        request = event.data
        entity = event.subject.rsplit(".", 1)[-1]
        if entity != request.person_id:
            raise RequestMismatchError("the comparison request names another person than its subject")
        now = self.ctx.clock.now()
        period = request.period or self.period_of(now)
        try:  # the contract's pattern lets "2018-W35\n" through; a period names a record's key
            Period.parse(period)
        except PeriodError as error:
            raise RequestPeriodError(str(error)) from None
        dataset = self.datasets.get(request.dataset)
        commute = self._commute(request.commute)
        if dataset is None:
            return Comparison(
                person_id=request.person_id,
                dataset=request.dataset,
                period=period,
                commute=commute,
                note=f"there is no data set {request.dataset}: ask for one of {', '.join(self.datasets)}",
            )
        release = self.released.get((dataset.name, period))
        yours: list[OwnFigure] = []
        rows: tuple[StatisticsRow, ...] = release.rows if release is not None else ()
        if dataset.personal:
            mine = await self._own(dataset, period, request.person_id)
            by_group = {row.group: row for row in rows}
            labels = {**self.districts.labels}
            for group, value in sorted(mine.items()):
                row = by_group.get(group)
                shown = row is not None and row.status == "released"
                yours.append(
                    OwnFigure(
                        group=group,
                        label=", ".join(labels.get(g, _activity_label(g)) for g in group),
                        value=round(value, 4),
                        released_mean=row.mean if shown and row is not None else None,
                        released_median=row.median if shown and row is not None else None,
                    )
                )
            totals = tuple(g for g in mine) or (tuple(ALL for _ in dataset.dimensions),)
            rows = tuple(row for row in rows if any(_covers(row.group, g) for g in totals))
        self.metrics.comparisons.labels(dataset.name).inc()
        self.ctx.log.info("comparison answered", dataset=dataset.name, period=period, figures=len(yours))
        return Comparison(
            person_id=request.person_id,
            dataset=dataset.name,
            period=period,
            measure=dataset.measure,
            unit=dataset.unit,
            yours=tuple(yours),
            released=rows[:1000],
            release=release.release if release is not None else 0,
            commute=commute,
            note=self._note(dataset, period, release, yours),
        )

    async def _own(self, dataset: Dataset, period: str, person: str) -> dict[tuple[str, ...], float]:
        ref = await self.ctx.person_ref(person)
        mine: dict[tuple[str, ...], float] = defaultdict(float)
        for item, contributed in (await self.contributions.of(dataset.name, period, ref)).items():
            where = await self.opportunities.get(item, fresh=True)
            if where is None or not where.cancelled:
                mine[contributed.group] += contributed.value
        return dict(mine)

    def _commute(self, stations: tuple[str, ...]) -> tuple[StatisticsRow, ...]:
        air = self._newest.get(AIR_QUALITY)
        if not stations or air is None:
            return ()
        at = air.dimensions.index("station") if "station" in air.dimensions else 0
        wanted = set(stations)
        return tuple(
            row
            for row in air.rows
            if len(row.group) > at and row.group[at] in wanted and ALL not in row.group
        )[:64]

    def _note(self, dataset: Dataset, period: str, release: Aggregate | None, yours: list[OwnFigure]) -> str:
        if release is None:
            return f"nothing of {dataset.name} is released for {period} yet: only your own figures are shown"
        if dataset.personal and not yours:
            return f"you contributed nothing to {dataset.name} in {period} that is counted"
        privacy = release.privacy
        if privacy.mechanism == "differential-privacy":
            return (
                f"the released figures carry noise (differential privacy, epsilon {privacy.epsilon:g}) and "
                f"no released figure covers fewer than {privacy.k} persons; yours are exact"
            )
        if privacy.mechanism == "k-anonymity":
            return f"no released figure covers fewer than {privacy.k} persons; a suppressed one is not shown"
        return ""

    # -- erasure ----------------------------------------------------------------------------------

    async def expire(self, now: datetime) -> int:
        """Forget the contributions of periods that ended longer ago than the retention of the
        activity they were counted from (``community.volunteer-activity``: a year), as the privacy
        service erases that activity; how many records were emptied."""
        kept = VolunteerActivity.__contract__.retention
        assert kept is not None  # every personal event states one
        expired = 0
        for dataset in self.datasets.values():
            if dataset.personal:
                expired += await self.contributions.expire(dataset.name, now - kept)
        if expired:
            self.metrics.contributions.labels("expired").inc(expired)
            self.ctx.log.info("contributions past their retention forgotten", records=expired)
        return expired

    async def erased(self, ref: str) -> int:
        """A person was erased (``citybus.personal.erased``): forget their contributions, so no
        later release counts them. Returns how many records were emptied."""
        forgotten = await self.contributions.forget(ref)
        if forgotten:
            self.metrics.contributions.labels("erased").inc(forgotten)
            self.ctx.log.info("an erased person's contributions forgotten", records=forgotten)
        return forgotten

    async def reconcile(self) -> int:
        """Forget the contributions of persons erased while the service was not running (their key
        is gone from the vault); how many persons."""
        gone = [ref for ref in sorted(await self.contributions.refs()) if await self.ctx.person_erased(ref)]
        for ref in gone:
            await self.erased(ref)
        return len(gone)
