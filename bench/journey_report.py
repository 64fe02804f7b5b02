"""What the ``journey`` case measured, as the report's tables, targets and profiles (:mod:`bench.journey`)."""

from __future__ import annotations

import pstats
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from bench.journey_bus import Answered
from bench.report import Case, Figure, Row, Target
from bench.stats import Profiled, percentile, top_functions
from contracts import JourneyPlan

__all__ = [
    "DESCRIBED",
    "KINDS",
    "OSLO",
    "TARGET_P95_MS",
    "Measured",
    "Query",
    "Side",
    "check",
    "planner_profile",
    "report",
]

OSLO: Final = ZoneInfo("Europe/Oslo")
TARGET_P95_MS: Final = 20.0
KINDS: Final = {"default": (1000, True, 120), "reference": (0, False, 120), "arrive-by": (1000, True, 120)}
"""Each kind of request: its ``max_walk``, ``bikes`` and ``change`` (``arrive-by`` arrives by the time)."""
DESCRIBED: Final = {
    "default": "default: depart, max_walk 1000, bikes",
    "reference": "reference: depart, max_walk 0, no bikes, change 120",
    "arrive-by": "arrive-by: max_walk 1000, bikes",
}


@dataclass(frozen=True)
class Query:
    """Two stop places and a moment (UNIX seconds)."""

    origin: str
    destination: str
    moment: int


@dataclass
class Side:
    """One ``citybus up`` the requests went to, and what they measured there."""

    setup: str
    answered: dict[str, list[Answered]]
    """Kind → each request's round trip, in query order."""
    cpu: dict[str, float]
    """Kind → CPU seconds the ``citybus up`` process used while its requests were answered."""
    first: float
    """Seconds of the first request of the day (it builds the day's network)."""
    floor: list[float]
    ready: float
    loaded: float | None
    rss_loaded: float
    rss_after: float
    metrics: dict[str, float] = field(default_factory=dict)
    """The planner's samples on ``/metrics`` after the queries."""

    def note(self) -> str:
        """What the planner's own metrics say: its share of the round trips, the live calls taken."""
        every = [a.seconds for answered in self.answered.values() for a in answered]
        planned = self.metrics.get("citybus_journey_plan_seconds_sum", 0.0)
        live = {
            name.split('"')[1]: int(value)
            for name, value in self.metrics.items()
            if name.startswith("citybus_journey_live_calls_total{")
        }
        taken = ", ".join(f"{count:,} {outcome}" for outcome, count in sorted(live.items())) or "none"
        return (
            f"`{self.setup}`: the planner's own time (its `citybus_journey_plan_seconds`, every request "
            f"of the run) was {planned:.2f} s of the {sum(every) + sum(self.floor) + self.first:.2f} s the "
            f"round trips took; live train calls the planner took (`citybus_journey_live_calls`): {taken}."
        )


@dataclass
class Measured:
    """Everything the queries measured."""

    sides: list[Side]
    alone: dict[str, list[float]]
    """Kind → seconds of ``Planner.answer`` in the bench's process, in query order."""
    alone_cpu: dict[str, list[float]]
    """The same, in CPU seconds of the bench's process (:func:`time.process_time`)."""
    brute: list[float]
    brute_cpu: list[float]
    brute_arrivals: list[int | None]
    rss_base: float
    notes: list[str] = field(default_factory=list)


def _ms(values: list[float], point: float) -> str:
    return f"{percentile(values, point) * 1000:.2f}"


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values) * 1000:.2f}"


def _statuses(plans: list[JourneyPlan]) -> str:
    counts = Counter(plan.status for plan in plans)
    return ", ".join(f"{count:,} {status}" for status, count in counts.most_common())


def _arrival(plan: JourneyPlan) -> int | None:
    return None if plan.arrival is None else int(plan.arrival.timestamp())


def report(case: Case, measured: Measured) -> None:
    """The main table (per setup and kind), the targets, the table by status and the figures."""
    for side in measured.sides:
        for kind, answered in side.answered.items():
            seconds = [a.seconds for a in answered]
            p95 = percentile(seconds, 95) * 1000
            met = p95 <= TARGET_P95_MS
            alone = measured.alone[kind] if side.setup == "planner only" else []
            alone_cpu = measured.alone_cpu[kind] if alone else []
            case.rows.append(
                Row(
                    {
                        "`citybus up`": side.setup,
                        "requests": DESCRIBED[kind],
                        "queries": f"{len(answered):,}",
                        "answers": _statuses([a.plan for a in answered]),
                        "p50 ms": _ms(seconds, 50),
                        "p95 ms": _ms(seconds, 95),
                        "p99 ms": _ms(seconds, 99),
                        "max ms": _ms(seconds, 100),
                        "mean ms": _mean(seconds),
                        "`citybus up` CPU ms per request": f"{side.cpu[kind] / len(seconds) * 1000:.2f}",
                        "in-process p95 ms": _ms(alone, 95) if alone else "",
                        "in-process CPU p50 ms": _ms(alone_cpu, 50) if alone else "",
                        "in-process CPU p95 ms": _ms(alone_cpu, 95) if alone else "",
                        "in-process CPU mean ms": _mean(alone_cpu) if alone else "",
                    },
                    met,
                )
            )
            case.targets.append(
                Target(
                    f"request/reply over the bus, {side.setup}, {DESCRIBED[kind]}",
                    f"p95 <= {TARGET_P95_MS:g} ms",
                    f"p95 {p95:.2f} ms, p50 {_ms(seconds, 50)} ms, p99 {_ms(seconds, 99)} ms "
                    f"({len(seconds):,} queries)",
                    met,
                )
            )
            case.figures.append(Figure(f"{side.setup} {kind} p95 ms", p95, "ms", higher_is_better=False))
        case.rows.append(
            Row(
                {key: "" for key in case.rows[0].cells}
                | {
                    "`citybus up`": side.setup,
                    "requests": "floor: from a place to itself (refused once both names are resolved)",
                    "queries": f"{len(side.floor):,}",
                    "answers": "bad-request",
                    "p50 ms": _ms(side.floor, 50),
                    "p95 ms": _ms(side.floor, 95),
                    "p99 ms": _ms(side.floor, 99),
                    "max ms": _ms(side.floor, 100),
                }
            )
        )
    case.rows.append(
        Row(
            {key: "" for key in case.rows[0].cells}
            | {
                "requests": "brute force (`bench/journey_reference.py`), the reference queries",
                "queries": f"{len(measured.brute):,}",
                "answers": f"{sum(a is not None for a in measured.brute_arrivals):,} reached, "
                f"{sum(a is None for a in measured.brute_arrivals):,} not",
                "in-process p95 ms": _ms(measured.brute, 95),
                "in-process CPU p50 ms": _ms(measured.brute_cpu, 50),
                "in-process CPU p95 ms": _ms(measured.brute_cpu, 95),
                "in-process CPU mean ms": _mean(measured.brute_cpu),
            }
        )
    )
    case.tables.insert(0, ("Over the bus, by the answer's status:", _by_status(measured)))
    case.figures.append(
        Figure("brute force p95 ms", percentile(measured.brute, 95) * 1000, "ms", higher_is_better=False)
    )


def _by_status(measured: Measured) -> list[Row]:
    rows = []
    for side in measured.sides:
        for kind, answered in side.answered.items():
            total = sum(a.seconds for a in answered)
            for status in sorted({a.plan.status for a in answered}):
                seconds = [a.seconds for a in answered if a.plan.status == status]
                rows.append(
                    Row(
                        {
                            "`citybus up`": side.setup,
                            "requests": kind,
                            "status": status,
                            "queries": f"{len(seconds):,}",
                            "p50 ms": _ms(seconds, 50),
                            "p95 ms": _ms(seconds, 95),
                            "max ms": _ms(seconds, 100),
                            "share of the kind's time": f"{sum(seconds) / total:.0%}",
                        }
                    )
                )
    return rows


def memory_rows(measured: Measured) -> list[Row]:
    """The RSS of each ``citybus up``."""
    rows = [Row({"what": "RSS of `citybus up` with the planner disabled", "MB": f"{measured.rss_base:.1f}"})]
    for side in measured.sides:
        rows += [
            Row(
                {
                    "what": f"RSS of `citybus up` ({side.setup}), loaded (1 s after ready)",
                    "MB": f"{side.rss_loaded:.1f}",
                }
            ),
            Row(
                {
                    "what": f"RSS of `citybus up` ({side.setup}), after the queries",
                    "MB": f"{side.rss_after:.1f}",
                }
            ),
        ]
    return rows


def check(case: Case, measured: Measured, queries: list[Query]) -> None:
    """The planner's reference-mode arrivals (``planner only``: no live calls) against the brute force's."""
    side = next(side for side in measured.sides if side.setup == "planner only")
    plans = [a.plan for a in side.answered["reference"]]
    wrong = [
        (query, plan, expected)
        for query, plan, expected in zip(queries, plans, measured.brute_arrivals, strict=True)
        if _arrival(plan) != expected
    ]
    case.targets.append(
        Target(
            "reference-mode arrival equals the brute force's (same queries, same run)",
            "0 mismatches",
            f"{len(wrong):,} mismatches in {len(plans):,} queries",
            not wrong,
        )
    )
    for query, plan, expected in wrong[:5]:
        said = "none" if expected is None else datetime.fromtimestamp(expected, OSLO).isoformat()
        case.notes.append(
            f"Mismatch: {query.origin} → {query.destination} at "
            f"{datetime.fromtimestamp(query.moment, OSLO).isoformat()}: the planner {plan.status} "
            f"({plan.message}), the brute force {said}."
        )


def _planner_code(place: str) -> bool:
    return place.startswith("adapters/journey/") and " <module>" not in place


def planner_profile(stats: pstats.Stats) -> tuple[list[Profiled], list[Profiled]]:
    """The planner's functions by cumulative time, and the top functions by own time."""
    return top_functions(stats, 12, by="cumulative", where=_planner_code), top_functions(stats, 10)
