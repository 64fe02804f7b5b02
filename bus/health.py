"""Readiness: components say when they are ready, and ``/readyz`` answers only when all are.

Like anyio's ``task_status.started()``, being ready is part of starting: a component registers
itself as not ready, then marks itself ready once it is connected, subscribed or serving.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Health"]


class Health:
    """Named readiness flags and live checks of one process."""

    def __init__(self) -> None:
        self._flags: dict[str, bool] = {}
        self._checks: dict[str, Callable[[], bool]] = {}

    def expect(self, component: str) -> None:
        """Register a component that is not ready yet."""
        self._flags.setdefault(component, False)

    def ready(self, component: str, is_ready: bool = True) -> None:
        """Mark a component ready (or no longer ready)."""
        self._flags[component] = is_ready

    def check(self, name: str, probe: Callable[[], bool]) -> None:
        """Add a live check, evaluated on every readiness query (e.g. "NATS connected")."""
        self._checks[name] = probe

    def status(self) -> dict[str, bool]:
        """Every flag and check with its current value."""
        status = dict(self._flags)
        for name, probe in self._checks.items():
            try:
                status[name] = bool(probe())
            except Exception:
                status[name] = False
        return status

    @property
    def is_ready(self) -> bool:
        """True when there is something to be ready and all of it is."""
        status = self.status()
        return bool(status) and all(status.values())
