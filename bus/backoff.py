"""How long to wait before trying again: one exponential backoff policy for every retry loop.

A restarted adapter, a poll of a failing source, an MQTT or PostgreSQL reconnect all wait the same
way: ``initial`` seconds after the first failure, ``factor`` times longer after each further failure
in a row, never more than ``maximum``, and — where many clients could retry in step — shortened by
a random part of up to ``jitter`` of the delay::

    policy = Backoff(initial=0.5, maximum=30.0)
    policy.delay(1), policy.delay(2), policy.delay(10)   # 0.5, 1.0, 30.0

    retries = policy.attempts()          # the failures in a row of one loop
    await asyncio.sleep(retries.next())  # 0.5, then 1.0, 2.0, …
    retries.reset()                      # it worked for a while: start again from ``initial``

Decisions, and why:

* **A helper, not a library.** stamina and tenacity wrap a call in a decorator that retries it;
  citybus's loops do more between tries than call again (log with the delay, count a metric, close
  a connection, start over after a stable run, honour a server's ``Retry-After``), and some wait on
  a replayed clock instead of ``asyncio.sleep``. What they share is the arithmetic, which is this
  module: a policy says how long, the loop decides what to do meanwhile.
* **Jitter takes away, never adds** (``delay × uniform(1 - jitter, 1)``): the configured maximum
  stays the longest wait, as the configuration's documentation promises.
* **Doubling stays exact**: ``initial × factor ** (n - 1)`` with ``factor = 2`` gives the same floats
  as doubling the last delay (powers of two multiply without rounding), so the delays loops logged
  before are the delays they log now.
"""

from __future__ import annotations

import math
import random
from typing import Final

import msgspec

__all__ = ["Attempts", "Backoff"]

_LONGEST_STEP: Final = 1024
"""Beyond this many doublings every delay is ``maximum`` anyway (``2.0 ** 1024`` overflows)."""


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """An exponential backoff: the wait before the next try, after ``n`` failures in a row."""

    initial: float = 0.5
    """Seconds to wait after the first failure."""
    maximum: float = 30.0
    """The longest wait, in seconds."""
    factor: float = 2.0
    """How much longer each further wait is than the one before."""
    jitter: float = 0.0
    """The most of a delay taken away at random (0.2: a delay of 10 s is between 8 and 10 s)."""

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= self.maximum or not math.isfinite(self.maximum):
            raise ValueError(
                f"backoff: initial ({self.initial}) must be at least 0 and at most maximum ({self.maximum})"
            )
        if not 1 <= self.factor < math.inf:
            raise ValueError(f"backoff: factor must be 1 or more, not {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff: jitter must be between 0 and 1, not {self.jitter}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (1 for the first)."""
        try:
            base = self.initial * self.factor ** min(max(failures - 1, 0), _LONGEST_STEP)
        except OverflowError:
            base = math.inf
        wait = min(base, self.maximum)
        if self.jitter:
            wait *= random.uniform(1.0 - self.jitter, 1.0)  # spreading retries, not cryptography
        return wait

    def attempts(self) -> Attempts:
        """A counter of failures in a row, for one retry loop."""
        return Attempts(self)


class Attempts:
    """The failures in a row of one retry loop, and the wait each one earns under a :class:`Backoff`."""

    __slots__ = ("failures", "policy")

    def __init__(self, policy: Backoff) -> None:
        self.policy = policy
        self.failures = 0
        """Failures since the start or the last :meth:`reset`."""

    def next(self) -> float:
        """Count one more failure and return how long to wait before trying again."""
        self.failures += 1
        return self.policy.delay(self.failures)

    def reset(self) -> None:
        """It worked (or ran long enough): the next failure waits ``initial`` again."""
        self.failures = 0
