"""The ``statistics`` adapter: everyday statistics on the bus, released so that they identify nobody.

``citybus up`` runs it by default next to the sandbox (instance ``statistics``, in the ``SANDBOX``
account, on the wall clock). Its configuration, with the defaults::

    [adapters.statistics]
    period = "week"            # what a table covers: "week" (ISO), "month" or "day", Drammen's time
    release_after = "1h"       # the final release, this long after a period ended (and its data settled)
    # release_every = "6h"     # provisional releases while a period is open (default: none)

    [adapters.statistics.datasets.volunteer-hours]   # personal: k-anonymity or differential privacy
    mechanism = "differential-privacy"
    k = 5                      # no released cell covers fewer persons
    epsilon = 1.0              # the privacy loss of one release
    budget = 2.0               # the epsilon it may spend per period: the rest is refused
    delta = 1e-5
    max_contributions = 1      # cells one person counts in per release (their largest)
    clamp = 8.0                # hours one person adds to one cell, at most

    [adapters.statistics.datasets.air-quality]       # public data sets: mechanism "none"
    release_every = "1h"

    [adapters.statistics.districts.bragernes]        # replaces the built-in (approximate) centres
    lat = 59.7440
    lon = 10.2040
    name = "Bragernes"

It consumes :class:`~contracts.VolunteerActivity` (personal, sealed: the bus opens it with the
person's key), :class:`~contracts.Opportunity` (public) and the public contracts of the everyday
data sets (:data:`~adapters.statistics.everyday.EVERYDAY`); publishes
:class:`~contracts.Aggregate`; answers :class:`~contracts.ReleaseRequest` (analysts) and
:class:`~contracts.ComparisonRequest` (a person, about themselves). The rules are
:mod:`adapters.statistics.service`.

Decisions, and why:

* **A declassifier, on purpose**: it reads personal data and publishes public tables — the one
  door through which that may happen, declared so that the access model lists it for review.
* **State that survives, shared by replicas**: the budget (``budget``) and the persons'
  contributions (``contributions``, by ref) live in the instance's key-value buckets, changed by
  compare-and-set; the activity and the opportunities come through durable consumers, so nothing
  published while the service was down is missed; the releases are read back from their stream.
* **Bad configuration is one clear error**, naming the key and what to write: an unknown data set,
  personal data without protection, a budget that cannot pay for one release, a duration that is
  not one.
* **An erasure forgets the person**: when a key is destroyed (``citybus.personal.erased``) every
  process empties that ref's contributions, and what was erased while the service was down it
  learns from the vault when it starts.
* **Ready once it has read back what was released**, so a comparison right after a restart
  compares with the release made before it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

import msgspec
from msgspec import Meta

from adapters.base import Adapter
from adapters.context import Context
from adapters.statistics import engine
from adapters.statistics.budget import Budget
from adapters.statistics.contributions import Contributions, Opportunities
from adapters.statistics.districts import DRAMMEN, ELSEWHERE, UNKNOWN, District, Districts
from adapters.statistics.everyday import EVERYDAY, consumed
from adapters.statistics.metrics import statistics_metrics
from adapters.statistics.service import ALL, VOLUNTEER_HOURS, Dataset, Statistics, volunteer_hours
from bus import Event, RawMessage
from bus.errors import CityBusError
from bus.personal import ERASED_SUBJECT
from contracts import (
    Aggregate,
    Comparison,
    ComparisonRequest,
    Contract,
    Opportunity,
    ReleaseReceipt,
    ReleaseRequest,
    VolunteerActivity,
)

__all__ = [
    "DEFAULT_POLICIES",
    "DatasetConfig",
    "DistrictConfig",
    "StatisticsConfig",
    "StatisticsService",
    "seconds",
]

_DURATION: Final = re.compile(r"^(?=[0-9])(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")

Duration = Annotated[
    str, Meta(description='A duration: days, hours, minutes, seconds, e.g. "1h", "90m", "1d12h", "30s"')
]


def seconds(duration: str) -> float:
    """The seconds of a :data:`Duration` (``"1h30m"`` → 5400); :class:`ValueError` if it is none."""
    match = _DURATION.fullmatch(duration)
    if match is None:
        raise ValueError(f"{duration!r} is not a duration: write it like 1h, 90m, 1d12h or 30s")
    d, h, m, s = (int(g or 0) for g in match.groups())
    return float(((d * 24 + h) * 60 + m) * 60 + s)


DEFAULT_POLICIES: Final[dict[str, engine.Policy]] = {
    VOLUNTEER_HOURS: engine.Policy(
        mechanism="differential-privacy",
        k=5,
        epsilon=1.0,
        budget=2.0,
        delta=1e-5,
        max_contributions=1,
        clamp=8.0,
    ),
    **{d.name: engine.Policy(mechanism="none", k=0) for d in EVERYDAY},
}
"""Each data set's privacy policy unless configured: differential privacy for the personal one,
none for the public ones."""

_PERSONAL: Final = frozenset({VOLUNTEER_HOURS})


class DatasetConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>.datasets.<name>]``: one data set's privacy policy and schedule, each
    key overriding the data set's default (:data:`DEFAULT_POLICIES`)."""

    mechanism: Literal["none", "k-anonymity", "differential-privacy"] | None = None
    """How its releases are protected; personal data: k-anonymity or differential-privacy."""
    k: Annotated[int, Meta(ge=0, le=1000)] | None = None
    """No released cell covers fewer persons (personal data: at least 2)."""
    epsilon: Annotated[float, Meta(gt=0, le=100)] | None = None
    """The privacy loss of one release (differential privacy)."""
    budget: Annotated[float, Meta(gt=0, le=1000)] | None = None
    """The epsilon it may spend per period; a release that would exceed it is refused."""
    delta: Annotated[float, Meta(gt=0, lt=1)] | None = None
    """The target delta of a release (differential privacy)."""
    max_contributions: Annotated[int, Meta(ge=1, le=1000)] | None = None
    """Cells one person counts in per release, at most (differential privacy)."""
    clamp: Annotated[float, Meta(gt=0, le=1e9)] | None = None
    """What one person adds to one cell, at most (differential privacy)."""
    margins: bool | None = None
    """Also release the totals over each dimension (``all``)."""
    release_every: Duration | None = None
    """Provisional releases this often while a period is open (overrides the instance's)."""


class DistrictConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>.districts.<slug>]``: a district's centre and name."""

    lat: Annotated[float, Meta(ge=-90, le=90)]
    """Latitude of its centre, in degrees."""
    lon: Annotated[float, Meta(ge=-180, le=180)]
    """Longitude of its centre, in degrees."""
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    """Its name, for people."""


_TICK: Final = 5.0
"""Seconds between looks at what is due, at most (less when the durations are short)."""

_SLUG: Final = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
S = TypeVar("S", bound=msgspec.Struct)


def _table(where: str, given: Any, shape: type[S]) -> S:
    """``given`` (one table of the section) as ``shape``; :class:`ValueError` naming ``where``."""
    try:
        return msgspec.convert(given, shape)
    except msgspec.ValidationError as error:
        message, _, path = str(error).rpartition(" - at `")
        key = path.rstrip("`").removeprefix("$").lstrip(".") if message else ""
        raise ValueError(f"{where}{'.' + key if key else ''}: {message or error}") from None


class StatisticsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of ``statistics``."""

    period: Literal["week", "month", "day"] = "week"
    """What one table covers: an ISO week, a month or a day, in Drammen's time."""
    release_after: Duration = "1h"
    """The final release of a period comes this long after it ended (or after its last data
    arrived, if later)."""
    release_every: Duration | None = None
    """Provisional releases this often while a period is open; none if absent."""
    datasets: dict[str, dict[str, Any]] = {}
    """Per data set, what differs from its defaults (each a :class:`DatasetConfig`)."""
    districts: dict[str, dict[str, Any]] = {}
    """The districts' centres (each a :class:`DistrictConfig`); given, they replace Drammen's
    built-in (approximate) ones."""

    def __post_init__(self) -> None:
        _duration("release_after", self.release_after, zero=True)
        if self.release_every is not None:
            _duration("release_every", self.release_every)
        for name in self.datasets:
            if name not in DEFAULT_POLICIES:
                known = ", ".join(sorted(DEFAULT_POLICIES))
                raise ValueError(f"datasets.{name}: there is no such data set; the data sets are {known}")
            given = self.dataset(name)
            if given.release_every is not None:
                _duration(f"datasets.{name}.release_every", given.release_every)
            try:
                policy = self.policy(name)
            except ValueError as error:  # the engine refuses what is out of range
                raise ValueError(f"datasets.{name}: {error}") from None
            problem = policy_problem(name, policy)
            if problem:
                raise ValueError(f"datasets.{name}: {problem}")
        for slug in self.districts:
            if not _SLUG.fullmatch(slug) or slug in (ALL, UNKNOWN, ELSEWHERE):
                raise ValueError(
                    f"districts.{slug}: a district's key is its slug in kebab case (e.g. bragernes), "
                    f"and not {ALL}, {UNKNOWN} or {ELSEWHERE}"
                )
        self.district_list()

    def dataset(self, name: str) -> DatasetConfig:
        """What is configured for data set ``name`` (nothing: its defaults)."""
        given = self.datasets.get(name)
        return DatasetConfig() if given is None else _table(f"datasets.{name}", given, DatasetConfig)

    def policy(self, name: str) -> engine.Policy:
        """The privacy policy of data set ``name``: its defaults with what is configured over them."""
        given = msgspec.structs.asdict(self.dataset(name))
        given.pop("release_every")
        return dataclasses.replace(
            DEFAULT_POLICIES[name], **{key: value for key, value in given.items() if value is not None}
        )

    def every(self, name: str) -> float | None:
        """Seconds between provisional releases of data set ``name`` (``None``: none)."""
        every = self.dataset(name).release_every or self.release_every
        return seconds(every) if every else None

    def district_list(self) -> tuple[District, ...]:
        """The districts: the configured ones, else Drammen's."""
        if not self.districts:
            return DRAMMEN
        found = []
        for slug, given in sorted(self.districts.items()):
            district = _table(f"districts.{slug}", given, DistrictConfig)
            found.append(District(slug, district.name, district.lat, district.lon))
        return tuple(found)


def _duration(key: str, value: str, *, zero: bool = False) -> None:
    try:
        length = seconds(value)
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None
    if length <= 0 and not zero:
        raise ValueError(f"{key}: {value!r} is no time at all: give a duration longer than 0s")


def policy_problem(name: str, policy: engine.Policy) -> str:
    """What is wrong with data set ``name``'s policy, for a person; empty if nothing."""
    if name in _PERSONAL:
        if policy.mechanism == "none":
            return (
                'it holds personal data: its mechanism must be "k-anonymity" or "differential-privacy", '
                'not "none"'
            )
        if policy.k < 2:
            return (
                "it holds personal data: k must be at least 2 (no released cell about one person), "
                f"not {policy.k}"
            )
    if policy.mechanism == "differential-privacy" and policy.budget < policy.epsilon:
        return (
            f"budget {policy.budget:g} cannot pay for one release of epsilon {policy.epsilon:g}: "
            "give a budget of at least epsilon"
        )
    return ""


class StatisticsService(Adapter[StatisticsConfig]):
    """Everyday statistics from personal and public data, published only as tables that cannot
    identify anyone (k-anonymity or differential privacy, with a privacy budget it never exceeds),
    and each person's own figures beside them, for that person alone."""

    name = "statistics"
    Config = StatisticsConfig
    consumes = (VolunteerActivity, Opportunity, *consumed())
    produces = (Aggregate, ReleaseReceipt, Comparison)
    answers = (ReleaseRequest, ComparisonRequest)
    recalls = (Aggregate,)
    stores = ("budget", "contributions")
    declassifier = True
    durable = True
    default_instance = "statistics"
    default_section: ClassVar[dict[str, Any]] = {
        "account": "sandbox",
        "clock": "wall",
        # the replayed day arrives long after its week ended: released ten minutes after it settles,
        # and the public tables every quarter of an hour while it plays
        "release_after": "10m",
        "datasets": {d.name: {"release_every": "15m"} for d in EVERYDAY},
    }

    def __init__(self, config: StatisticsConfig) -> None:
        super().__init__(config)
        self.statistics: Statistics | None = None
        """The service's state and rules, once running (tests look inside)."""

    @classmethod
    def kind(cls) -> Literal["source", "service", "sink"]:
        """A service: it consumes, publishes and answers."""
        return "service"

    def datasets(self) -> dict[str, Dataset]:
        """The data sets this instance releases, with their configured policies."""
        config = self.config
        found = {
            VOLUNTEER_HOURS: volunteer_hours(config.policy(VOLUNTEER_HOURS), config.every(VOLUNTEER_HOURS))
        }
        for everyday in EVERYDAY:
            found[everyday.name] = Dataset(
                name=everyday.name,
                title=everyday.title,
                dimensions=everyday.dimensions,
                measure=everyday.measure,
                unit=everyday.unit,
                counts=everyday.counts,
                sources=everyday.sources,
                policy=config.policy(everyday.name),
                personal=False,
                release_every=config.every(everyday.name),
                everyday=everyday,
            )
        return found

    async def run(self, ctx: Context) -> None:
        """Open the budget and the contributions, read back the releases, then count, release and
        answer until stopped."""
        config = self.config
        metrics = statistics_metrics(ctx.registry)
        budget = Budget(await ctx.key_value("budget"), on_conflict=metrics.conflicts.inc)
        store = await ctx.key_value("contributions")
        datasets = self.datasets()
        statistics = self.statistics = Statistics(
            ctx,
            datasets,
            districts=Districts(config.district_list()),
            period=config.period,
            release_after=seconds(config.release_after),
            budget=budget,
            contributions=Contributions(store, on_conflict=metrics.conflicts.inc),
            opportunities=Opportunities(store),
            metrics=metrics,
        )

        async def recalled(seq: int, event: Event[Aggregate]) -> None:
            statistics.remember(event.data)

        reader = ctx.recall(Aggregate, recalled)
        await reader.catch_up()
        if reader.error is not None:
            raise CityBusError(f"cannot read back the releases: {reader.error}")

        async def erased_heard(message: RawMessage) -> None:
            await statistics.erased(message.data.decode("ascii", "replace"))

        # every process hears it (no queue group): each forgets what the bucket holds of the person
        await ctx.subscribe_raw(ERASED_SUBJECT, erased_heard, queue="")
        await statistics.reconcile()  # ... and what was erased while it was down, it learns from the vault
        await statistics.load()

        for contract in consumed():
            readers = tuple(
                d for d in datasets.values() if d.everyday is not None and d.everyday.contract is contract
            )
            await ctx.subscribe(contract, _observer(statistics, readers), queue="")

        async def requested(event: Event[ReleaseRequest]) -> ReleaseReceipt:
            return await statistics.requested(event)

        async def compare(event: Event[ComparisonRequest]) -> Comparison:
            return await statistics.compare(event)

        await ctx.serve(ReleaseRequest, requested)
        await ctx.serve(ComparisonRequest, compare)
        ctx.log.info("statistics serving", datasets=len(datasets), period=config.period)
        ctx.ready()
        shortest = min(
            [seconds(config.release_after), *(d.release_every for d in datasets.values() if d.release_every)]
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(ctx.consume(Opportunity, statistics.opportunity))
            tasks.create_task(ctx.consume(VolunteerActivity, statistics.activity))
            tasks.create_task(reader.run())
            tasks.create_task(statistics.schedule(min(max(shortest / 10, 0.1), _TICK)))


def _observer(statistics: Statistics, datasets: tuple[Dataset, ...]) -> Any:
    async def observed(event: Event[Contract]) -> None:
        for dataset in datasets:
            statistics.observe(dataset, event)

    return observed
