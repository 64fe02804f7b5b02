"""Faults injected on purpose into a replay, seeded and reproducible, with a ground-truth log.

A pilot product must cope with what real city data does: sensors that fall silent or flatline,
messages that arrive twice, late, out of order or broken, clocks that are wrong. The replayer
hands every message to a :class:`FaultInjector` just before publishing it; the injector decides,
from a :class:`FaultPlan` (a TOML file: a ``seed`` and ``[[faults]]`` of eight kinds: drop,
duplicate, reorder, delay, corrupt, outage, stuck, skew) what really goes out, and writes every
fault it injects to a ground-truth log so a company can score whether its product noticed.

**docs/faults.md is the reference**: every kind and key with its type, default and allowed values,
what it does to a message and the ground-truth line it writes, windows, the order between faults,
seeds, and the check against the recordings. Its TOML examples are loaded by the tests.

* :mod:`~sandbox.faults.plan` reads a plan and refuses a wrong one (:class:`FaultPlanError`, naming
  the file, ``faults[i] (kind …)``, the key and what is allowed);
* :mod:`~sandbox.faults.injector` applies it, message by message: :meth:`FaultInjector.apply`
  returns the ``(delay, message)`` pairs to publish, faults applied in plan order, each to what the
  ones before it let through, each drawing from its own ``random.Random(f"{seed}:{index}")``;
* :mod:`~sandbox.faults.check` checks it against the recordings before a replay starts
  (:func:`check_plan` on a :class:`ReplayScope`): a fault that can never fire is an error, faults
  that hide each other's signal are warnings (``citybus sandbox check-faults``).
"""

from sandbox.faults.check import Finding, ReplayScope, check_plan
from sandbox.faults.injector import REORDER_STEP, FaultInjector, Outgoing
from sandbox.faults.plan import (
    CorruptFault,
    DelayFault,
    DropFault,
    DuplicateFault,
    FaultPlan,
    FaultPlanError,
    FaultSpec,
    OutageFault,
    ReorderFault,
    SkewFault,
    StuckFault,
)

__all__ = [
    "CorruptFault",
    "DelayFault",
    "DropFault",
    "DuplicateFault",
    "FaultInjector",
    "FaultPlan",
    "FaultPlanError",
    "FaultSpec",
    "Finding",
    "OutageFault",
    "Outgoing",
    "REORDER_STEP",
    "ReorderFault",
    "ReplayScope",
    "SkewFault",
    "StuckFault",
    "check_plan",
]
