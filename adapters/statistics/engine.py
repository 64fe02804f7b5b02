"""The release engine: from what each person (or observation) contributes to one published table.

Pure: no bus, no clock, no I/O. :func:`release` turns :class:`Contribution` s into a
:class:`Table` of :class:`~contracts.StatisticsRow` s under a data set's :class:`Policy`, and
:func:`cost` says what such a release spends of the privacy budget, before it is made. The service
(:mod:`adapters.statistics.service`) spends ``cost`` from the ledger first and publishes the table
as an :class:`~contracts.Aggregate`; the acceptance test (``tests/test_statistics_attack.py``) calls
the same :func:`release` for a simulated year and attacks what it publishes.

Three mechanisms, one per data set:

* ``none`` (public data): each contribution is one observation; per cell and margin the count,
  sum, mean, median, min and max.
* ``k-anonymity``: exact figures of *distinct persons* (``who``): a cell of fewer than ``k``
  persons is published as suppressed (``too-few``), and complementary suppression
  (:mod:`adapters.statistics.suppression`) withholds more cells so that no suppressed one can be
  worked out from one line of the table and its margin. No min or max (each is one person's value).
* ``differential-privacy``: counts and sums with noise from OpenDP; see below.

Decisions, and why (differential privacy):

* **Neighbouring means one person more or less.** Two inputs are neighbours when one holds every
  contribution of one person and the other holds none of them (add/remove one person, the
  "unbounded" notion): that is the question an attacker asks — is this person in the data — and a
  person who volunteers twice a week is protected as one person, not as two events.
* **Contribution bounding makes the sensitivity finite.** Contributions are first summed per
  person and cell, each clamped to ``[0, clamp]``; a person keeps at most ``max_contributions``
  (``m``) cells, their largest values (ties by group), a choice that depends on that person's data
  alone, so it keeps neighbours neighbours. One person then changes at most ``m`` cells of each
  grouping (the table and each margin), each count by 1 and the sums by at most ``m·clamp`` in all.
  Values are floored to a grid of 1/1024 so that every sum is exact in floating point: the
  sensitivity holds for the sums as computed, not only for real numbers.
* **The gate is OpenDP's ``make_laplace_threshold``, shifted by k − 1.** The counts released are
  the map ``{cell: persons − (k − 1)}`` of the cells with at least ``k`` persons; the mechanism adds
  Laplace noise and releases the keys whose noisy value reaches the threshold, and the published
  count is the noisy value + (k − 1). A cell of fewer than ``k`` persons is not in the map, so it
  is never released — with certainty, not merely with high probability: no released cell covers
  fewer than ``k`` persons. The shift keeps the sensitivity: ``max(persons − (k − 1), 0)`` moves by
  at most 1 when one person comes or goes, and the only step that creates a key, ``k − 1 → k``,
  is exactly the new-partition case that the mechanism's ``δ`` pays for (Rogers 2023, OpenDP's
  proof). The threshold is the smallest integer whose ``δ`` (from OpenDP's map) is within the
  policy's ``delta``.
* **Sums are a vector Laplace over the released cells**, L1 sensitivity ``m·clamp`` per grouping.
  Which cells are summed is decided by the gate's output (adaptive composition: allowed). Means
  are noisy sum / noisy count, clamped to what a person can add (post-processing: free). No
  median, min or max: a median needs a mechanism of its own (``make_private_quantile``) and budget
  per cell; the counts and sums serve the comparison, and that budget is better spent on them.
* **Margins are part of the same two measurements.** Each margin (a dimension's value replaced by
  ``all``) is a grouping of the same persons; with ``G`` groupings one person changes at most
  ``m·G`` keys of the gate and ``m·G·clamp`` of the sums, and the two measurements are calibrated
  with those sensitivities — the same noise as one release per grouping, composed, but two calls.
* **Composition is basic and done by OpenDP's maps.** The policy's ``epsilon`` is split evenly
  between the gate and the sums; each scale is ``sensitivity / share``, checked against OpenDP's
  map (and widened if rounding would overspend), and :func:`cost` is the sum of the two maps'
  ``(ε, δ)`` — what :func:`release` states in ``privacy`` and what the budget is charged. Releases
  compose in the service's ledger (budget per data set and period); a reader composes over the
  releases a person is in (the attack test does exactly that, from the published ``privacy``).
* **What it costs, in persons.** The gate only opens for crowds: with the defaults (ε = 0.5 per
  release, δ = 1e-6, m = 2, clamp = 8 h) a two-dimensional table with margins has ``G = 4``, count
  noise of scale 32 and a threshold of 487, so a cell needs about 490 persons to be released (sum
  noise of scale 256); without margins, scale 8 and threshold 112. Smaller groups need a larger
  ε, fewer dimensions or margins, or a larger δ — a choice for the data set's configuration,
  which :func:`plan` shows before anything is released.
* **The empty set of released cells is an answer.** Listing suppressed cells would say which cells
  have someone in them — not private — so suppressed rows (``threshold``) are listed only for the
  groups of a public ``domain`` the caller passes (e.g. districts × activities known publicly).
* **Noise only from OpenDP's samplers** (discrete Laplace underneath, immune to the floating-point
  attack on textbook Laplace); nothing here draws a random number itself. The gate's keys are the
  groups themselves (JSON-encoded), so its input depends on the data only through the counts.

Never raises on odd input: contributions of the wrong shape, a group value ``all`` (reserved for
margins), or a value that is not a finite number are left out; no contributions give a table with
no rows (or, with a domain, all suppressed). A wrong :class:`Policy` is refused when built.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, cast, get_args

import msgspec
import opendp.prelude as dp

from adapters.statistics.suppression import suppress
from contracts import ReleasePrivacy, StatisticsRow

__all__ = [
    "ALL",
    "Contribution",
    "MECHANISMS",
    "Mechanism",
    "Plan",
    "Policy",
    "Table",
    "cost",
    "groupings",
    "plan",
    "release",
]

dp.enable_features("contrib")

Mechanism = Literal["none", "k-anonymity", "differential-privacy"]
MECHANISMS: Final[tuple[Mechanism, ...]] = get_args(Mechanism)
ALL: Final = "all"
"""A dimension's value in a margin row: the total over that dimension."""

Group = tuple[str, ...]
_DECIMALS: Final = 2
"""Noisy figures are rounded to hundredths: the noise is far larger, and 12.437218 reads as exact."""
_GRID: Final = 1024
"""Values are floored to multiples of 1/1024 (of their unit): their sums are exact in floating point."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One data set's privacy settings (from configuration); refused when built if out of range."""

    mechanism: Mechanism
    k: int = 5
    epsilon: float = 0.5
    budget: float = 1.0
    delta: float = 1e-6
    max_contributions: int = 2
    clamp: float = 8.0
    margins: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.mechanism not in MECHANISMS:
            problems.append(f"mechanism {self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
        if not isinstance(self.k, int) or not 0 <= self.k <= 1000:
            problems.append(f"k must be a whole number from 0 to 1000, not {self.k!r}")
        if self.mechanism == "differential-privacy":
            if not _positive(self.epsilon):
                problems.append(f"epsilon must be a positive number, not {self.epsilon!r}")
            if not _positive(self.budget):
                problems.append(f"budget must be a positive number, not {self.budget!r}")
            if not (_positive(self.delta) and self.delta < 1):
                problems.append(f"delta must be between 0 and 1 (e.g. 1e-6), not {self.delta!r}")
            if not isinstance(self.max_contributions, int) or not 1 <= self.max_contributions <= 1000:
                problems.append(
                    f"max_contributions must be a whole number from 1, not {self.max_contributions!r}"
                )
            if not _positive(self.clamp):
                problems.append(f"clamp must be a positive number, not {self.clamp!r}")
        if problems:
            raise ValueError("; ".join(problems))


def _positive(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one person (or, for public data, one observation) adds to one cell."""

    who: str
    group: Group
    value: float


@dataclass(frozen=True, slots=True)
class Table:
    """What one release publishes: its rows and how they were protected (spent/budget: 0)."""

    rows: tuple[StatisticsRow, ...]
    privacy: ReleasePrivacy


@dataclass(frozen=True, slots=True)
class Plan:
    """How a differentially private release is calibrated: public, as the algorithm is.

    ``groupings`` is the table and its margins; the gate's noise has scale ``count_scale`` and
    releases a cell whose noisy shifted count reaches ``threshold``; the sums have ``sum_scale``.
    ``epsilon``/``delta`` is what one release spends: the sum of the two OpenDP maps
    (``count_epsilon`` + ``sum_epsilon``, ``count_delta``).
    """

    groupings: int
    count_scale: float
    sum_scale: float
    threshold: int
    count_epsilon: float
    count_delta: float
    sum_epsilon: float

    @property
    def epsilon(self) -> float:
        """Epsilon of one release: the gate's and the sums' composed."""
        return self.count_epsilon + self.sum_epsilon

    @property
    def delta(self) -> float:
        """Delta of one release: the gate's (the sums' Laplace is pure)."""
        return self.count_delta


def groupings(dimensions: int, margins: bool) -> tuple[tuple[bool, ...], ...]:
    """The groupings a table of ``dimensions`` releases: which dimensions each replaces by ``all``.

    The table itself first (nothing replaced), then, with margins, every other subset — one
    dimension replaced, then two, …, up to the grand total.
    """
    if dimensions < 0:
        return ()
    if not margins or dimensions == 0:
        return ((False,) * dimensions,)
    masks = [tuple(bool(bits >> i & 1) for i in range(dimensions)) for bits in range(2**dimensions)]
    return tuple(sorted(masks, key=lambda mask: (sum(mask), [not m for m in mask])))


def _dimension_count(dimensions: int | Sequence[str]) -> int:
    return dimensions if isinstance(dimensions, int) else len(dimensions)


def cost(policy: Policy, dimensions: int | Sequence[str]) -> tuple[float, float]:
    """(epsilon, delta) one release under ``policy`` of a table of ``dimensions`` spends, from
    OpenDP's privacy maps; (0, 0) unless the mechanism is differential privacy."""
    if policy.mechanism != "differential-privacy":
        return (0.0, 0.0)
    calibration = plan(policy, dimensions)
    return (calibration.epsilon, calibration.delta)


def plan(policy: Policy, dimensions: int | Sequence[str]) -> Plan:
    """The calibration of a differentially private release (scales, threshold, and their maps)."""
    return _calibrate(policy, len(groupings(_dimension_count(dimensions), policy.margins)))[0]


def release(
    contributions: Iterable[Contribution],
    dimensions: Sequence[str],
    policy: Policy,
    *,
    labels: Mapping[str, str] = {},  # noqa: B006 - read only
    domain: Collection[Group] = (),
) -> Table:
    """The table of one release. Deterministic except for the noise of differential privacy
    (OpenDP's samplers). ``labels`` names dimension values for people (``bragernes`` →
    ``Bragernes``); ``domain`` lists publicly known cells, shown as suppressed when not released
    (differential privacy only: the other mechanisms show the cells the data has)."""
    n = len(dimensions)
    masks = groupings(n, policy.margins)
    clean = _clean(contributions, n)
    if policy.mechanism == "none":
        rows = _public(clean, masks)
        privacy = ReleasePrivacy(mechanism="none")
    elif policy.mechanism == "k-anonymity":
        rows = _k_anonymous(clean, masks, policy.k)
        privacy = ReleasePrivacy(mechanism="k-anonymity", k=policy.k)
    else:
        rows, privacy = _private(clean, masks, policy, domain)
    if labels:
        rows = [_labelled(row, labels) for row in rows]
    return Table(rows=tuple(rows), privacy=privacy)


def _clean(contributions: Iterable[Contribution], n: int) -> list[Contribution]:
    """The contributions of the right shape with a finite value; the rest left out."""
    kept: list[Contribution] = []
    for item in contributions:
        who, group = getattr(item, "who", None), getattr(item, "group", None)
        value = getattr(item, "value", None)
        if not isinstance(who, str) or not isinstance(group, tuple) or len(group) != n or ALL in group:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if all(isinstance(v, str) for v in group):
            kept.append(item)
    return kept


def _project(group: Group, mask: tuple[bool, ...]) -> Group:
    if not any(mask):
        return group
    return tuple(ALL if hidden else value for value, hidden in zip(group, mask, strict=True))


def _order(masks: Sequence[tuple[bool, ...]], cells: Iterable[Group]) -> list[Group]:
    rank = {mask: i for i, mask in enumerate(masks)}
    return sorted(cells, key=lambda g: (rank[tuple(v == ALL for v in g)], g))


def _public(clean: list[Contribution], masks: Sequence[tuple[bool, ...]]) -> list[StatisticsRow]:
    """Public data: every observation counts; all figures exact."""
    values: dict[Group, list[float]] = defaultdict(list)
    for item in clean:
        for mask in masks:
            values[_project(item.group, mask)].append(float(item.value))
    rows = []
    for group in _order(masks, values):
        got = values[group]
        total = math.fsum(got)
        rows.append(
            StatisticsRow(
                group=group,
                count=float(len(got)),
                sum=total,
                mean=total / len(got),
                median=float(statistics.median(got)),
                min=min(got),
                max=max(got),
            )
        )
    return rows


def _per_person(
    clean: list[Contribution], masks: Sequence[tuple[bool, ...]]
) -> dict[Group, dict[str, float]]:
    """Per cell and margin: each person's value there (their contributions summed)."""
    cells: dict[Group, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for item in clean:
        cells[item.group][item.who] += float(item.value)
    spread: dict[Group, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for mask in masks:
        for group, people in cells.items():
            target = spread[_project(group, mask)]
            for who, value in people.items():
                target[who] += value
    return spread


def _k_anonymous(clean: list[Contribution], masks: Sequence[tuple[bool, ...]], k: int) -> list[StatisticsRow]:
    """Exact figures of distinct persons; too few → suppressed; then complementary suppression."""
    cells = _per_person(clean, masks)
    persons = {group: len(people) for group, people in cells.items()}
    reasons = suppress(persons, k)
    rows = []
    for group in _order(masks, cells):
        if group in reasons:
            rows.append(StatisticsRow(group=group, status="suppressed", reason=reasons[group]))
            continue
        got = list(cells[group].values())
        total = math.fsum(got)
        rows.append(
            StatisticsRow(
                group=group,
                count=float(len(got)),
                sum=total,
                mean=total / len(got),
                median=float(statistics.median(got)),
            )
        )
    return rows


def _bounded(clean: list[Contribution], m: int, clamp: float) -> list[tuple[str, Group, float]]:
    """Contribution bounding: per person and cell summed, clamped to [0, clamp] and floored to the
    grid; each person keeps their ``m`` largest cells (ties by group)."""
    summed: dict[str, dict[Group, float]] = defaultdict(lambda: defaultdict(float))
    for item in clean:
        summed[item.who][item.group] += float(item.value)
    kept: list[tuple[str, Group, float]] = []
    for who, cells in summed.items():
        clamped = [(math.floor(min(max(v, 0.0), clamp) * _GRID) / _GRID, g) for g, v in cells.items()]
        clamped.sort(key=lambda cell: (-cell[0], cell[1]))
        kept.extend((who, group, value) for value, group in clamped[:m])
    return kept


def _key(group: Group) -> str:
    """The gate's key of a group: a fixed, one-to-one encoding (JSON), not a data-dependent index."""
    return msgspec.json.encode(group).decode()


def _private(
    clean: list[Contribution],
    masks: Sequence[tuple[bool, ...]],
    policy: Policy,
    domain: Collection[Group],
) -> tuple[list[StatisticsRow], ReleasePrivacy]:
    """Differential privacy: the shifted-count gate and the sums, both from OpenDP."""
    calibration, gate, noisy_sums = _calibrate(policy, len(masks))
    m, shift = policy.max_contributions, max(policy.k - 1, 0)
    cells: dict[Group, dict[str, float]] = defaultdict(dict)
    for who, group, value in _bounded(clean, m, policy.clamp):
        cells[group][who] = value
    persons: dict[Group, set[str]] = {}
    sums: dict[Group, float] = {}
    for mask in masks:
        for group, people in cells.items():
            cell = _project(group, mask)
            if cell in persons:
                persons[cell].update(people)
                sums[cell] += math.fsum(people.values())
            else:
                persons[cell], sums[cell] = set(people), math.fsum(people.values())
    keys = {_key(group): group for group in persons}
    counts = {key: len(persons[group]) - shift for key, group in keys.items() if len(persons[group]) > shift}
    noisy_counts: dict[str, int] = gate(counts) if counts else {}
    released = _order(masks, (keys[key] for key in noisy_counts))
    noisy: list[float] = noisy_sums([sums[g] for g in released]) if released else []
    rows: dict[Group, StatisticsRow] = {}
    for group, noisy_sum in zip(released, noisy, strict=True):
        count = float(noisy_counts[_key(group)] + shift)
        merged = sum(v == ALL for v in group)
        cap = count * policy.clamp * (1 if merged == 0 else m)
        total = min(max(noisy_sum, 0.0), cap)
        rows[group] = StatisticsRow(
            group=group, count=count, sum=round(total, _DECIMALS), mean=round(total / count, _DECIMALS)
        )
    n = len(masks[0])
    for cell in domain:
        if isinstance(cell, tuple) and len(cell) == n and all(isinstance(v, str) for v in cell):
            for mask in masks:
                group = _project(cell, mask)
                if group not in rows:
                    rows[group] = StatisticsRow(group=group, status="suppressed", reason="threshold")
    privacy = ReleasePrivacy(
        mechanism="differential-privacy",
        k=policy.k,
        epsilon=calibration.epsilon,
        delta=calibration.delta,
        count_scale=calibration.count_scale,
        sum_scale=calibration.sum_scale,
        max_contributions=m,
        clamp=policy.clamp,
    )
    return [rows[g] for g in _order(masks, rows)], privacy


Gate = Callable[[dict[str, int]], dict[str, int]]
Sums = Callable[[list[float]], list[float]]


@lru_cache(maxsize=64)
def _calibrate(policy: Policy, count: int) -> tuple[Plan, Gate, Sums]:
    """The two OpenDP measurements of a release of ``count`` groupings, and their maps."""
    m = policy.max_contributions
    share = policy.epsilon / 2
    keys = m * count
    gate_in = (keys, keys, 1)
    sums_in = float(keys) * policy.clamp
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int))
    metric = dp.l01inf_distance(dp.absolute_distance(T=int))

    def make_gate(scale: float, threshold: int) -> Any:
        return dp.m.make_laplace_threshold(domain, metric, scale=scale, threshold=threshold)

    def make_sums(scale: float) -> Any:
        vectors = dp.vector_domain(dp.atom_domain(T=float, nan=False))
        return dp.m.make_laplace(vectors, dp.l1_distance(T=float), scale)

    count_scale = _widen(keys / share, lambda s: make_gate(s, 1 << 30).map(gate_in)[0] <= share)
    sum_scale = _widen(sums_in / share, lambda s: make_sums(s).map(sums_in) <= share)
    threshold = _smallest(lambda t: make_gate(count_scale, t).map(gate_in)[1] <= policy.delta)
    gate = make_gate(count_scale, threshold)
    count_epsilon, count_delta = gate.map(gate_in)
    sums = make_sums(sum_scale)
    calibration = Plan(
        groupings=count,
        count_scale=count_scale,
        sum_scale=sum_scale,
        threshold=threshold,
        count_epsilon=float(count_epsilon),
        count_delta=float(count_delta),
        sum_epsilon=float(sums.map(sums_in)),
    )
    return calibration, cast(Gate, gate), cast(Sums, sums)


def _widen(scale: float, fits: Callable[[float], bool]) -> float:
    """The scale, nudged up by the least amount if OpenDP's rounding would overspend at it."""
    for _ in range(64):
        if fits(scale):
            return scale
        scale = math.nextafter(scale, math.inf)
    while not fits(scale):
        scale *= 1 + 1e-9
    return scale


def _smallest(fits: Callable[[int], bool]) -> int:
    """The smallest threshold ≥ 1 that fits (fitting is monotone in the threshold)."""
    high = 1
    while not fits(high):
        high <<= 1  # an exponential search for a bound (not a delay: no backoff)
    low = high // 2
    while low + 1 < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high


def _labelled(row: StatisticsRow, labels: Mapping[str, str]) -> StatisticsRow:
    """The row with its group as people say it (``all`` stays ``all`` unless labelled)."""
    return msgspec.structs.replace(row, label=", ".join(labels.get(v, v) for v in row.group)[:200])
