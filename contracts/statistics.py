"""Contracts of the statistics domain: everyday statistics, released so that they identify nobody.

The statistics service reads personal data its consent allows (``community.volunteer-activity``)
and public data (beach temperatures, air quality, city bikes, train punctuality) and publishes
aggregates per district, activity and period as one public contract, :class:`Aggregate`: a table
of :class:`StatisticsRow` with the mechanism that protected it (:class:`ReleasePrivacy`). Cells
built from too few persons are published *as suppressed*, never left out silently, so a reader
knows a figure exists and why it is withheld.

A release of personal data spends privacy budget. An analyst may ask for one now
(``statistics.release-request`` → ``statistics.release-receipt``, internal); the service refuses a
release that would exceed the budget of its data set and period, and says so in the receipt.

A citizen asks how their own week compares (``statistics.comparison-request`` →
``statistics.comparison``, personal): their own figures beside the released aggregates, computed
for them alone and never published — the answer goes only to the asker's inbox.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Classification, Contract, contract, measure
from contracts.fields import Slug, Timestamp

__all__ = [
    "Aggregate",
    "Comparison",
    "ComparisonRequest",
    "OwnFigure",
    "ReleasePrivacy",
    "ReleaseReceipt",
    "ReleaseRequest",
    "StatisticsRow",
]

PERIOD = r"^[0-9]{4}(?:-W[0-9]{2}|-[0-9]{2}(?:-[0-9]{2})?)$"

Period = Annotated[
    str,
    Meta(
        pattern=PERIOD,
        description="An ISO week (2018-W35), a month (2018-08) or a day (2018-08-28), Drammen's time",
    ),
]
Dataset = Annotated[Slug, Meta(description="The data set, e.g. volunteer-hours, beach-water-temperature")]
TABLE_UNIT = "{see unit}"
"""The x-unit of a figure in a table's own unit (a UCUM annotation: the table's ``unit`` says it)."""


Value = Annotated[float, measure("A figure, in the table's unit", unit=TABLE_UNIT)]
Count = Annotated[float, measure("A count", unit="1", ge=0)]


def _figure(description: str) -> Meta:
    return Meta(description=description + "; absent when suppressed")


def _ratio(description: str) -> Meta:
    return measure(description, unit="1", ge=0)


PersonId = Annotated[
    str,
    Meta(
        pattern=r"^v-[0-9a-f]{8,32}$",
        description="The person's pseudonymous id (as on the volunteer platform)",
    ),
]


class StatisticsRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One cell of a released table: a group (one value per dimension) and its figures.

    ``all`` as a dimension's value is the total over that dimension (a margin). A suppressed row
    carries no figures, only why: ``too-few`` (fewer than k persons), ``complementary`` (withheld so
    that another suppressed cell cannot be recovered from the totals), ``threshold`` (its noisy
    count fell below the release threshold of differential privacy).
    """

    group: Annotated[tuple[str, ...], Meta(max_length=8, description="The value of each dimension, in order")]
    status: Annotated[
        Literal["released", "suppressed"], Meta(description="Whether its figures are released")
    ] = "released"
    reason: Annotated[
        Literal["", "too-few", "complementary", "threshold"], Meta(description="Why it is suppressed")
    ] = ""
    count: Annotated[Count | None, _figure("How many (persons, or observations for public data)")] = None
    sum: Annotated[Value | None, _figure("The sum of the measure")] = None
    mean: Annotated[Value | None, _figure("The mean of the measure")] = None
    median: Annotated[Value | None, _figure("The median of the measure")] = None
    min: Annotated[Value | None, _figure("The smallest value")] = None
    max: Annotated[Value | None, _figure("The largest value")] = None
    label: Annotated[str, Meta(max_length=200, description="The group as people say it")] = ""


class ReleasePrivacy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How a release was protected: what a reader needs to weigh its figures.

    ``none``: public data, no privacy concern. ``k-anonymity``: exact figures, no released cell built
    from fewer than ``k`` persons, with complementary suppression. ``differential-privacy``: counts
    and sums with noise from OpenDP, (``epsilon``, ``delta``)-differentially private for a person
    contributing at most ``max_contributions`` cells of at most ``clamp`` each; means are derived
    from the noisy sums and counts, and no released cell covers fewer than ``k`` persons.
    """

    mechanism: Annotated[
        Literal["none", "k-anonymity", "differential-privacy"], Meta(description="The protection applied")
    ]
    k: Annotated[int, Meta(ge=0, le=1000, description="No released cell covers fewer persons")] = 0
    epsilon: Annotated[float, _ratio("Privacy loss of this release (differential privacy)")] = 0.0
    delta: Annotated[float, measure("Its probability of failure", unit="1", ge=0, le=1)] = 0.0
    spent: Annotated[float, _ratio("Epsilon spent on this data set and period so far")] = 0.0
    budget: Annotated[float, _ratio("Epsilon the data set may spend per period")] = 0.0
    count_scale: Annotated[float, _ratio("Scale of the Laplace noise on counts")] = 0.0
    sum_scale: Annotated[float, measure("Scale of the Laplace noise on sums", unit=TABLE_UNIT, ge=0)] = 0.0
    max_contributions: Annotated[int, Meta(ge=0, description="Cells one person contributes to, at most")] = 0
    clamp: Annotated[
        float, measure("What one person adds to one cell's sum, at most", unit=TABLE_UNIT, ge=0)
    ] = 0.0


@contract(
    "statistics.aggregate",
    version=1,
    classification=Classification.PUBLIC,
    key="dataset",
    example={
        "dataset": "volunteer-hours",
        "title": "Volunteer hours by district and activity",
        "period": "2018-W35",
        "period_start": "2018-08-27T00:00:00+02:00",
        "period_end": "2018-09-03T00:00:00+02:00",
        "release": 1,
        "final": True,
        "dimensions": ["district", "activity"],
        "measure": "hours",
        "unit": "h",
        "counts": "persons",
        "rows": [
            {"group": ["bragernes", "beach-cleanup"], "count": 7.0, "sum": 20.4, "mean": 2.91},
            {"group": ["konnerud", "beach-cleanup"], "status": "suppressed", "reason": "threshold"},
            {"group": ["all", "all"], "count": 12.0, "sum": 33.0, "mean": 2.75},
        ],
        "privacy": {
            "mechanism": "differential-privacy",
            "k": 5,
            "epsilon": 0.5,
            "delta": 1e-06,
            "spent": 0.5,
            "budget": 1.0,
            "count_scale": 4.0,
            "sum_scale": 32.0,
            "max_contributions": 2,
            "clamp": 8.0,
        },
        "sources": ["community.volunteer-activity"],
    },
)
class Aggregate(Contract, frozen=True, kw_only=True):
    """A released table of statistics for one data set and period: what anyone may see.

    The statistics service publishes one per release; a data set's later releases of the same
    period (``release`` 2, 3, …) replace the earlier ones, and ``final`` marks the release made
    after the period ended. Rows are cells of the table and its margins (``all``).
    """

    dataset: Dataset
    title: Annotated[str, Meta(min_length=1, max_length=200, description="What the table shows, in a line")]
    period: Period
    period_start: Annotated[Timestamp, Meta(description="When the period starts")]
    period_end: Annotated[Timestamp, Meta(description="When the period ends (exclusive)")]
    release: Annotated[int, Meta(ge=1, description="The release number of this period (1, 2, …)")] = 1
    final: Annotated[bool, Meta(description="Released after the period ended: no later data is counted")] = (
        False
    )
    dimensions: Annotated[tuple[Slug, ...], Meta(max_length=8, description="The dimensions of a row's group")]
    measure: Annotated[str, Meta(max_length=100, description="What the sums and means are of")] = ""
    unit: Annotated[str, Meta(max_length=32, description="The measure's unit (UCUM), e.g. h, Cel, %")] = ""
    counts: Annotated[
        Literal["persons", "observations", "entities"], Meta(description="What a row's count counts")
    ] = "observations"
    rows: Annotated[tuple[StatisticsRow, ...], Meta(max_length=10_000, description="The cells and margins")]
    privacy: Annotated[ReleasePrivacy, Meta(description="How the release was protected")]
    sources: Annotated[
        tuple[str, ...], Meta(max_length=32, description="The contracts it was computed from")
    ] = ()


@contract(
    "statistics.release-request",
    version=1,
    classification=Classification.INTERNAL,
    key="dataset",
    reply="statistics.release-receipt",
    example={"dataset": "volunteer-hours", "period": "2018-W35"},
)
class ReleaseRequest(Contract, frozen=True, kw_only=True):
    """An analyst asks the statistics service to release a data set's period now.

    A release of personal data spends privacy budget; one that would exceed the budget of its data
    set and period is refused.
    """

    dataset: Dataset
    period: Annotated[Period | None, Meta(description="The period; absent: the current one")] = None


@contract(
    "statistics.release-receipt",
    version=1,
    classification=Classification.INTERNAL,
    key="dataset",
    answers="statistics.release-request",
    example={
        "dataset": "volunteer-hours",
        "period": "2018-W35",
        "status": "released",
        "release": 2,
        "epsilon": 0.5,
        "spent": 1.0,
        "budget": 1.0,
    },
)
class ReleaseReceipt(Contract, frozen=True, kw_only=True):
    """The service's answer: released (and published), or refused with the reason."""

    dataset: Dataset
    period: Period
    status: Annotated[
        Literal["released", "refused"], Meta(description="released: published now; refused: see reason")
    ]
    reason: Annotated[str, Meta(max_length=500, description="Why it was refused, for a person")] = ""
    release: Annotated[int, Meta(ge=0, description="The release number published (0: none)")] = 0
    epsilon: Annotated[float, _ratio("Epsilon this release spent (or would have)")] = 0.0
    spent: Annotated[float, _ratio("Epsilon spent on the data set and period so far")] = 0.0
    budget: Annotated[float, _ratio("The budget of the data set per period")] = 0.0


@contract(
    "statistics.comparison-request",
    version=1,
    classification=Classification.PERSONAL,
    key="person_id",
    person="person_id",
    reply="statistics.comparison",
    example={"person_id": "v-3f9c2a7e51d0", "dataset": "volunteer-hours", "period": "2018-W35"},
)
class ComparisonRequest(Contract, frozen=True, kw_only=True):
    """A citizen asks how their week compares: their own figures beside the released ones.

    Sent on the person's own subject (``city.personal.rpc.statistics.comparison-request.<id>``):
    a citizen's user may ask only there, so nobody can ask for another person's figures, and the
    answer comes to the asker's own inbox.
    """

    person_id: PersonId
    dataset: Dataset = "volunteer-hours"
    period: Annotated[Period | None, Meta(description="The period; absent: the current one")] = None
    commute: Annotated[
        tuple[Slug, ...],
        Meta(
            max_length=8, description="Air-quality stations on the person's commute, for the air they breathe"
        ),
    ] = ()


class OwnFigure(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One of the person's own figures, beside the released figure it compares with."""

    group: Annotated[tuple[str, ...], Meta(max_length=8, description="The group it belongs to")]
    label: Annotated[str, Meta(max_length=200, description="The group as people say it")] = ""
    value: Annotated[float, measure("The person's own value", unit=TABLE_UNIT)]
    released_mean: Annotated[Value | None, _figure("The released mean of the group, if released")] = None
    released_median: Annotated[Value | None, _figure("The released median of the group, if released")] = None


@contract(
    "statistics.comparison",
    version=1,
    classification=Classification.PERSONAL,
    key="person_id",
    person="person_id",
    answers="statistics.comparison-request",
    example={
        "person_id": "v-3f9c2a7e51d0",
        "dataset": "volunteer-hours",
        "period": "2018-W35",
        "measure": "hours",
        "unit": "h",
        "yours": [{"group": ["bragernes", "beach-cleanup"], "value": 3.0, "released_mean": 2.91}],
        "released": [{"group": ["all", "all"], "count": 12.0, "sum": 33.0, "mean": 2.75}],
        "release": 1,
    },
)
class Comparison(Contract, frozen=True, kw_only=True):
    """How a person's week compares: computed for them alone, never published.

    ``yours`` holds the person's own figures; ``released`` the rows of the latest release they
    compare with (their groups and the totals), exactly as published. Nothing here is about
    anyone else but what was already released.
    """

    person_id: PersonId
    dataset: Dataset
    period: Period
    measure: Annotated[str, Meta(max_length=100, description="What the figures are of")] = ""
    unit: Annotated[str, Meta(max_length=32, description="Their unit")] = ""
    yours: Annotated[
        tuple[OwnFigure, ...], Meta(max_length=1000, description="The person's own figures")
    ] = ()
    released: Annotated[
        tuple[StatisticsRow, ...], Meta(max_length=1000, description="The released rows compared with")
    ] = ()
    release: Annotated[int, Meta(ge=0, description="The release compared with (0: none yet)")] = 0
    commute: Annotated[
        tuple[StatisticsRow, ...], Meta(max_length=64, description="The released air on the person's commute")
    ] = ()
    note: Annotated[str, Meta(max_length=500, description="What to know, for a person")] = ""
