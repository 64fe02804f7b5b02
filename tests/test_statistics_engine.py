"""The release engine: public tables, k-anonymity with complementary suppression, differential privacy.

The engine is pure (no bus), so these tests call it directly with generated contributions and
check what a reader of the published table would notice: figures that add up, no released cell of
fewer than k persons, no suppressed cell that one line of the table gives away, the privacy stated
equal to what OpenDP's own maps say, and no exception for odd input. The attack on a year of
releases is ``tests/test_statistics_attack.py``.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from itertools import product

import opendp.prelude as dp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.statistics.engine import ALL, Contribution, Policy, cost, groupings, plan, release
from contracts import StatisticsRow

dp.enable_features("contrib")

Group = tuple[str, ...]
DP = Policy("differential-privacy")


def persons_per_group(items: list[Contribution], dims: int, margins: bool = True) -> dict[Group, set[str]]:
    """Ground truth, computed here and not by the engine: who is in each cell and margin."""
    found: dict[Group, set[str]] = defaultdict(set)
    for item in items:
        for mask in groupings(dims, margins):
            found[tuple(ALL if hidden else v for v, hidden in zip(item.group, mask, strict=True))].add(
                item.who
            )
    return found


def rows_by_group(rows: tuple[StatisticsRow, ...]) -> dict[Group, StatisticsRow]:
    by_group = {row.group: row for row in rows}
    assert len(by_group) == len(rows), "one row per group"
    return by_group


# --- groupings, policy ---------------------------------------------------------------------------


def test_groupings_are_the_table_then_its_margins_up_to_the_grand_total() -> None:
    assert groupings(2, True) == ((False, False), (True, False), (False, True), (True, True))
    assert groupings(2, False) == ((False, False),)
    assert groupings(0, True) == ((),)
    assert len(groupings(3, True)) == 8


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": math.nan}, "epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"max_contributions": 0}, "max_contributions"),
        ({"clamp": -1.0}, "clamp"),
        ({"budget": 0}, "budget"),
        ({"k": -1}, "k"),
        ({"mechanism": "laplace"}, "mechanism"),
    ],
)
def test_a_wrong_policy_is_refused_with_what_to_fix(change: dict[str, object], names: str) -> None:
    settings_ = {"mechanism": "differential-privacy", **change}
    with pytest.raises(ValueError, match=names):
        Policy(**settings_)  # type: ignore[arg-type]


# --- public data -----------------------------------------------------------------------------------


def test_public_tables_show_every_figure_of_every_cell_and_margin() -> None:
    readings = {
        ("bragernes", "water"): [17.5, 18.0, 19.5],
        ("bragernes", "air"): [21.0],
        ("fjell", "water"): [16.0],
    }
    items = [
        Contribution(f"obs-{i}-{j}", group, value)
        for i, (group, values) in enumerate(readings.items())
        for j, value in enumerate(values)
    ]
    table = release(items, ("site", "medium"), Policy("none", k=0))
    assert table.privacy.mechanism == "none" and cost(Policy("none"), 2) == (0.0, 0.0)
    rows = rows_by_group(table.rows)
    expected = {
        **readings,
        ("bragernes", ALL): [17.5, 18.0, 19.5, 21.0],
        ("fjell", ALL): [16.0],
        (ALL, "water"): [17.5, 18.0, 19.5, 16.0],
        (ALL, "air"): [21.0],
        (ALL, ALL): [17.5, 18.0, 19.5, 21.0, 16.0],
    }
    assert set(rows) == set(expected)
    for group, values in expected.items():
        row = rows[group]
        assert row.status == "released" and row.count == len(values)
        assert row.sum == pytest.approx(sum(values)) and row.mean == pytest.approx(statistics.mean(values))
        assert (row.median, row.min, row.max) == (statistics.median(values), min(values), max(values))
    assert [row.group for row in table.rows][:3] == [
        ("bragernes", "air"),
        ("bragernes", "water"),
        ("fjell", "water"),
    ]
    assert table.rows[-1].group == (ALL, ALL)


def test_public_tables_without_margins_and_with_labels() -> None:
    items = [Contribution("a", ("bragernes",), 1.0), Contribution("b", ("bragernes",), 3.0)]
    table = release(items, ("site",), Policy("none", margins=False), labels={"bragernes": "Bragernes"})
    assert [(row.group, row.label, row.count) for row in table.rows] == [(("bragernes",), "Bragernes", 2.0)]


# --- k-anonymity ----------------------------------------------------------------------------------


def test_k_anonymity_suppresses_a_small_cell_and_its_complements() -> None:
    people = {("a", "x"): 9, ("a", "y"): 3, ("b", "x"): 7, ("b", "y"): 6, ("c", "x"): 12}
    items = [Contribution(f"{g[0]}{g[1]}{i}", g, 1.0 + i) for g, n in people.items() for i in range(n)]
    rows = rows_by_group(release(items, ("district", "activity"), Policy("k-anonymity", k=5)).rows)
    reasons = {group: row.reason for group, row in rows.items() if row.status == "suppressed"}
    # (a, y) has 3: too few. Row a then has one unknown: (a, x) = 9, the only other, is withheld.
    # Column x has (a, x) alone: its smallest, (b, x) = 7, goes; column y has (a, y) alone: (b, y)
    # = 6 goes. Row b now has two unknowns, row c none: done. The margins stay released.
    assert reasons == {
        ("a", "y"): "too-few",
        ("a", "x"): "complementary",
        ("b", "y"): "complementary",
        ("b", "x"): "complementary",
    }
    assert rows[(ALL, ALL)].count == 37 and rows[("c", "x")].count == 12
    assert all(row.min is None and row.max is None for row in rows.values())
    assert ("c", "y") not in rows, "a cell nobody contributed to is absent, not suppressed"


def test_k_anonymity_counts_distinct_persons_and_their_summed_values() -> None:
    items = [Contribution(f"p{i}", ("a",), 1.0) for i in range(5)] + [Contribution("p0", ("a",), 2.0)]
    rows = rows_by_group(release(items, ("d",), Policy("k-anonymity", k=5)).rows)
    row = rows[("a",)]
    assert (row.count, row.sum, row.median) == (5.0, 7.0, 1.0)
    assert row.mean == pytest.approx(1.4)
    assert rows[(ALL,)].count == 5


def lines_of(groups: set[Group], dims: int) -> list[tuple[Group, list[Group]]]:
    """Every line of the table, computed independently of the engine: a margin and the present
    groups it totals over one dimension."""
    found = []
    for total in groups:
        for i in range(dims):
            if total[i] == ALL:
                members = [
                    g for g in groups if g[i] != ALL and all(g[j] == total[j] for j in range(dims) if j != i)
                ]
                if members:
                    found.append((total, members))
    return found


cells_2d = st.lists(
    st.tuples(
        st.integers(0, 40),  # person
        st.sampled_from(["a", "b", "c", "d"]),
        st.sampled_from(["x", "y", "z"]),
        st.floats(0, 10, allow_nan=False),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=cells_2d, k=st.integers(1, 8), third=st.booleans())
def test_k_anonymity_no_cell_below_k_and_none_recoverable_from_one_line(
    cells: list[tuple[int, str, str, float]], k: int, third: bool
) -> None:
    dims = 3 if third else 2
    items = [
        Contribution(f"p-{who}", (d, a, "q" if who % 2 else "r")[:dims], value) for who, d, a, value in cells
    ]
    truth = persons_per_group(items, dims)
    rows = rows_by_group(release(items, ("d", "a", "q")[:dims], Policy("k-anonymity", k=k)).rows)
    assert set(rows) == set(truth), "every present cell and margin is a row; absent ones are not"
    for group, row in rows.items():
        if row.status == "released":
            assert row.count == len(truth[group]) >= k
            assert row.sum is not None and row.sum >= 0
        else:
            assert row.count is None and row.sum is None and row.mean is None
            assert (row.reason == "too-few") == (len(truth[group]) < k)
    for total, members in lines_of(set(rows), dims):
        hidden = [g for g in (*members, total) if rows[g].status == "suppressed"]
        assert len(hidden) != 1, f"{hidden[0]} = {total} minus the rest of its line"


# --- differential privacy -------------------------------------------------------------------------


def opendp_maps(
    count_scale: float, sum_scale: float, threshold: int, policy: Policy, dims: int
) -> tuple[float, float]:
    """The privacy of a release, from OpenDP's maps of measurements built here from the published scales."""
    keys = policy.max_contributions * len(groupings(dims, policy.margins))
    gate = dp.m.make_laplace_threshold(
        dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int)),
        dp.l01inf_distance(dp.absolute_distance(T=int)),
        scale=count_scale,
        threshold=threshold,
    )
    sums = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float), sum_scale
    )
    epsilon, delta = gate.map((keys, keys, 1))
    return epsilon + sums.map(keys * policy.clamp), delta


@settings(max_examples=40, deadline=None)
@given(
    epsilon=st.floats(0.05, 8),
    delta=st.sampled_from([1e-9, 1e-6, 1e-3]),
    m=st.integers(1, 4),
    clamp=st.floats(0.25, 24),
    margins=st.booleans(),
    dims=st.integers(0, 3),
)
def test_cost_is_what_opendp_maps_say_and_never_more_than_the_policy(
    epsilon: float, delta: float, m: int, clamp: float, margins: bool, dims: int
) -> None:
    policy = Policy(
        "differential-privacy",
        epsilon=epsilon,
        delta=delta,
        max_contributions=m,
        clamp=clamp,
        margins=margins,
    )
    spent = cost(policy, dims)
    assert spent[0] <= policy.epsilon and spent[1] <= policy.delta
    assert spent[0] == pytest.approx(policy.epsilon, rel=1e-9), "the policy's epsilon is used, not wasted"
    table = release([], tuple(f"d{i}" for i in range(dims)), policy)
    privacy = table.privacy
    assert (privacy.epsilon, privacy.delta) == spent
    assert (
        opendp_maps(privacy.count_scale, privacy.sum_scale, plan(policy, dims).threshold, policy, dims)
        == spent
    )
    assert (privacy.k, privacy.max_contributions, privacy.clamp) == (policy.k, m, clamp)
    assert cost(policy, tuple(f"d{i}" for i in range(dims))) == spent


def test_the_threshold_is_the_smallest_whose_delta_fits() -> None:
    calibration = plan(DP, 2)
    keys = DP.max_contributions * calibration.groupings
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int))
    metric = dp.l01inf_distance(dp.absolute_distance(T=int))

    def delta_at(threshold: int) -> float:
        gate = dp.m.make_laplace_threshold(domain, metric, scale=calibration.count_scale, threshold=threshold)
        return float(gate.map((keys, keys, 1))[1])

    assert delta_at(calibration.threshold) <= DP.delta < delta_at(calibration.threshold - 1)


generous = Policy("differential-privacy", k=5, epsilon=400.0, delta=0.2, max_contributions=2, clamp=8.0)
"""Little noise (scales 0.04 and 0.32): figures near exact, so a test can check what is counted."""


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), min_size=6, max_size=6), k=st.integers(1, 7), margins=st.booleans())
def test_no_released_cell_covers_fewer_than_k_persons(sizes: list[int], k: int, margins: bool) -> None:
    # A generous policy (low threshold, little noise) releases as much as it can: still no cell of < k.
    policy = Policy("differential-privacy", k=k, epsilon=40.0, delta=0.2, margins=margins)
    cells = list(product("ab", "xyz"))
    items = [
        Contribution(f"{d}{a}-{i}", (d, a), 1.0)
        for (d, a), n in zip(cells, sizes, strict=True)
        for i in range(n)
    ]
    truth = persons_per_group(items, 2, margins)
    table = release(items, ("d", "a"), policy)
    for row in table.rows:
        assert row.status == "released"
        assert len(truth[row.group]) >= k
        assert row.count is not None and row.count >= k
        assert row.median is None and row.min is None and row.max is None


def test_a_generous_policy_releases_near_exact_figures() -> None:
    items = [Contribution(f"p{i}", ("a", "x"), 2.0) for i in range(60)]
    rows = rows_by_group(release(items, ("d", "a"), generous).rows)
    assert rows[("a", "x")].count == pytest.approx(60, abs=1)
    assert rows[("a", "x")].mean == pytest.approx(2.0, abs=0.1)
    assert set(rows) == {("a", "x"), ("a", ALL), (ALL, "x"), (ALL, ALL)}


def test_contributions_are_bounded_per_person_and_clamped() -> None:
    # Ten persons give hours to three cells: each keeps only their two largest, and 100 h counts as 8.
    items = [
        item
        for i in range(10)
        for item in (
            Contribution(f"p{i}", ("a", "x"), 100.0),
            Contribution(f"p{i}", ("a", "y"), 5.0),
            Contribution(f"p{i}", ("a", "z"), 1.0),
        )
    ]
    rows = rows_by_group(release(items, ("d", "a"), generous).rows)
    assert ("a", "z") not in rows, "the third cell of each person is dropped before counting: no one is in it"
    assert rows[("a", "x")].sum == pytest.approx(80, abs=3)
    assert rows[("a", "x")].mean is not None and rows[("a", "x")].mean <= 8.0
    assert rows[(ALL, ALL)].count == pytest.approx(10, abs=1)
    assert rows[(ALL, ALL)].sum == pytest.approx(130, abs=3)


def test_empty_input_is_an_empty_table_or_a_suppressed_domain() -> None:
    table = release([], ("district", "activity"), DP)
    assert table.rows == () and table.privacy.epsilon == cost(DP, 2)[0]
    domain = [("bragernes", "visiting"), ("fjell", "visiting")]
    rows = rows_by_group(release([], ("district", "activity"), DP, domain=domain).rows)
    assert set(rows) == {*domain, ("bragernes", ALL), ("fjell", ALL), (ALL, "visiting"), (ALL, ALL)}
    assert {(row.status, row.reason) for row in rows.values()} == {("suppressed", "threshold")}
    assert release([], ("d",), Policy("k-anonymity")).rows == release([], ("d",), Policy("none")).rows == ()


def test_a_cell_too_small_is_never_released_however_little_the_noise() -> None:
    items = [Contribution(f"p{i}", ("a", "x"), 1.0) for i in range(4)]  # k - 1 persons
    for _ in range(50):
        assert release(items, ("d", "a"), generous).rows == ()


odd_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.just(True),
    st.none(),
    st.text(),
)
odd_groups = st.one_of(
    st.tuples(st.sampled_from(["a", "b", ALL, ""]), st.sampled_from(["x", ALL])),
    st.tuples(st.text(max_size=3)),
    st.lists(st.text(max_size=2), max_size=3),
    st.tuples(st.integers(), st.text()),
)


@settings(max_examples=200, deadline=None)
@given(
    raw=st.lists(
        st.tuples(st.one_of(st.text(max_size=3), st.integers()), odd_groups, odd_values), max_size=30
    ),
    mechanism=st.sampled_from(["none", "k-anonymity", "differential-privacy"]),
)
def test_odd_input_never_raises(raw: list[tuple[object, object, object]], mechanism: str) -> None:
    items = [Contribution(who, group, value) for who, group, value in raw]  # type: ignore[arg-type]
    policy = Policy(mechanism, epsilon=20.0, delta=0.1)  # type: ignore[arg-type]
    table = release(items, ("d", "a"), policy, domain=[("a", "x"), ("bad",)])  # type: ignore[list-item]
    for row in table.rows:
        assert len(row.group) == 2 and all(isinstance(v, str) for v in row.group)
        for figure in (row.count, row.sum, row.mean, row.median, row.min, row.max):
            assert figure is None or math.isfinite(figure)


@pytest.mark.parametrize("mechanism", ["none", "k-anonymity"])
def test_exact_mechanisms_are_deterministic_and_ignore_input_order(mechanism: str) -> None:
    rng = random.Random(5)
    items = [
        Contribution(f"p{rng.randrange(30)}", (rng.choice("ab"), rng.choice("xy")), rng.uniform(0, 8))
        for _ in range(80)
    ]
    policy = Policy(mechanism, k=4)  # type: ignore[arg-type]
    first = release(items, ("d", "a"), policy)
    rng.shuffle(items)
    again = release(items, ("d", "a"), policy)
    assert [(r.group, r.status, r.count) for r in first.rows] == [
        (r.group, r.status, r.count) for r in again.rows
    ]
    assert all(
        a.sum == pytest.approx(b.sum)
        for a, b in zip(first.rows, again.rows, strict=True)
        if a.sum is not None
    )
