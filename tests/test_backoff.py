"""The one backoff policy (``bus.backoff``): the delays every retry loop of citybus waits."""

from __future__ import annotations

import pytest

from adapters import Backoff as RestartBackoff
from bus.backoff import Backoff


def test_the_delay_doubles_from_initial_up_to_maximum() -> None:
    policy = Backoff(initial=0.01, maximum=0.04)
    assert [policy.delay(n) for n in range(1, 6)] == [0.01, 0.02, 0.04, 0.04, 0.04]


def test_the_same_floats_as_doubling_the_last_delay() -> None:
    # the loops doubled their last delay; the policy computes the power: the logs say the same
    policy = Backoff(initial=0.3, maximum=1e9)
    doubled = 0.3
    for n in range(1, 40):
        assert policy.delay(n) == doubled
        doubled = min(doubled * 2, 1e9)


def test_a_long_run_of_failures_stays_at_maximum() -> None:
    assert Backoff(initial=1.0, maximum=30.0).delay(10**9) == 30.0
    assert Backoff(initial=1.0, maximum=30.0, factor=1e6).delay(500) == 30.0


def test_jitter_only_shortens() -> None:
    policy = Backoff(initial=1.0, maximum=3.0, jitter=0.2)
    delays = [policy.delay(n) for n in (1, 2, 3) for _ in range(200)]
    assert all(0.8 <= d <= 1.0 for d in delays[:200])
    assert all(2.4 <= d <= 3.0 for d in delays[400:])


def test_attempts_count_failures_in_a_row_and_start_over() -> None:
    retries = Backoff(initial=0.5, maximum=30.0).attempts()
    assert [retries.next() for _ in range(3)] == [0.5, 1.0, 2.0]
    retries.reset()
    assert retries.next() == 0.5


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"initial": 5, "maximum": 1}, "at most maximum"),
        ({"initial": -1}, "at least 0"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 2}, "jitter"),
    ],
)
def test_a_bad_policy_is_refused_with_what_to_fix(values: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Backoff(**values)


def test_the_supervisors_backoff_is_the_policy_with_a_stable_run() -> None:
    restart = RestartBackoff(initial=0.01, maximum=0.04, stable_after=5)
    assert isinstance(restart, Backoff) and restart.stable_after == 5
    assert restart.delay(3) == 0.04
