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


def test_the_bus_retries_with_the_delays_it_had() -> None:
    """Durable publishing waited 0.05 s doubling up to 1 s between tries, a consumer 0.5 s after a
    fetch lost to a reconnect: the same delays, now from the one policy."""
    from bus.durable import RETRY
    from bus.jetstream import FETCH_RETRY

    publish = RETRY.attempts()
    assert [publish.next() for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    fetch = FETCH_RETRY.attempts()
    assert [fetch.next() for _ in range(3)] == [0.5, 0.5, 0.5]


def test_no_retry_loop_doubles_its_own_delay() -> None:
    """Every backoff is :mod:`bus.backoff`'s: a loop that doubles a delay by hand is a second policy."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    by_hand = re.compile(r"min\(\s*\w+\s*\*\s*2\b|\w+\s*\*=\s*2\b|\w+\s*=\s*\w+\s*\*\s*2\b")
    found = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for package in ("bus", "adapters", "sandbox")
        for path in sorted((root / package).rglob("*.py"))
        if path != root / "bus" / "backoff.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if by_hand.search(line.split("#")[0])
    ]
    assert found == []
