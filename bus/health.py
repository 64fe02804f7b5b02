"""Readiness and health: components say when they are ready, live checks say what is wrong now.

Like anyio's ``task_status.started()``, being ready is part of starting: a component registers
itself as not ready, then marks itself ready once it is connected, subscribed or serving. Live
checks are asked on every query; one may answer with a :class:`Verdict` that gives its reasons,
and that may say "serving, but degraded" (a cluster node down) as well as "failing" (a stream
without quorum).

Decisions, and why:

* **``/readyz`` fails, ``/healthz`` tells.** ``/readyz`` is 503 while a flag or a live check
  fails: an orchestrator or load balancer stops sending work to a process that cannot do durable
  work. ``/healthz`` (liveness) stays 200 while the process answers, because restarting citybus
  heals no NATS cluster (it recovers by itself once the nodes return, and a restart storm of
  every citybus at once is the last thing a struggling cluster needs); its body says
  ``ok``, ``degraded`` or ``unhealthy`` and why, so it never says "ok" over a broken cluster.
* **Flags are not health.** A component still starting is not ready, but nothing is wrong with it:
  only live checks make the process degraded or unhealthy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Health", "HealthReport", "Probe", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """A live check's answer with its reasons: ``ok`` false fails readiness; reasons with ``ok``
    true mean degraded (still serving, but an operator should know)."""

    ok: bool
    reasons: tuple[str, ...] = ()


Probe = Callable[[], bool | Verdict]
"""A live check: evaluated on every query, cheaply (it runs on the event loop)."""


@dataclass(frozen=True)
class HealthReport:
    """Every flag and live check evaluated once, with the reasons the checks gave."""

    flags: dict[str, bool]
    checks: dict[str, bool]
    reasons: dict[str, list[str]] = field(default_factory=dict)

    @property
    def status(self) -> dict[str, bool]:
        """Every flag and check with its value (what ``/readyz`` lists)."""
        return {**self.flags, **self.checks}

    @property
    def ready(self) -> bool:
        """True when there is something to be ready and all of it is."""
        status = self.status
        return bool(status) and all(status.values())

    @property
    def failing(self) -> list[str]:
        """The live checks that fail."""
        return [name for name, ok in self.checks.items() if not ok]

    @property
    def condition(self) -> Literal["ok", "degraded", "unhealthy"]:
        """``unhealthy`` when a live check fails, ``degraded`` when one gave reasons, else ``ok``."""
        if self.failing:
            return "unhealthy"
        return "degraded" if self.reasons else "ok"


class Health:
    """Named readiness flags and live checks of one process."""

    def __init__(self) -> None:
        self._flags: dict[str, bool] = {}
        self._checks: dict[str, Probe] = {}

    def expect(self, component: str) -> None:
        """Register a component that is not ready yet."""
        self._flags.setdefault(component, False)

    def ready(self, component: str, is_ready: bool = True) -> None:
        """Mark a component ready (or no longer ready)."""
        self._flags[component] = is_ready

    def check(self, name: str, probe: Probe) -> None:
        """Add a live check, evaluated on every query (e.g. "NATS connected"); it answers ``True``,
        ``False`` or a :class:`Verdict` with reasons."""
        self._checks[name] = probe

    def report(self) -> HealthReport:
        """Evaluate every check once; a check that raises fails, with the error as its reason."""
        checks: dict[str, bool] = {}
        reasons: dict[str, list[str]] = {}
        for name, probe in self._checks.items():
            try:
                answer = probe()
            except Exception as exc:
                checks[name], reasons[name] = False, [f"the check raised {exc!r}"]
                continue
            if isinstance(answer, Verdict):
                checks[name] = answer.ok
                if answer.reasons:
                    reasons[name] = list(answer.reasons)
            else:
                checks[name] = bool(answer)
        return HealthReport(flags=dict(self._flags), checks=checks, reasons=reasons)

    def status(self) -> dict[str, bool]:
        """Every flag and check with its current value."""
        return self.report().status

    @property
    def is_ready(self) -> bool:
        """True when there is something to be ready and all of it is."""
        return self.report().ready
