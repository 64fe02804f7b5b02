"""The journey planner (issue 17): loading the NSB feed, and journey requests over the bus.

Targets (issue 17, "Speed"): loading the feed <= 3 s; p95 <= 20 ms per query over the whole feed's
service day, request/reply over the bus included, against the brute-force reference in the same
run; memory reported.

**Loading**: ``load_feed`` on the shipped feed (``sandbox/data/sources/transport/
entur_nsb_gtfs_2018.zip``, every NSB train, 2018-08-18 .. 2018-12-08) and ``Planner(feed)``, in
this process, several times (the median is the figure); the first query's network of the day,
built on demand, is timed on its own. Then, with :mod:`tracemalloc`, what the feed, the planner
and one day's network keep (and the peak while loading).

**Queries**: seeded random (origin, destination, time) on Tuesday 2018-08-28: two different stop
places among those that the day's trips call at (by :mod:`bench.journey_reference`'s own reading of
the zip), a time uniform over the local day. Each is asked three ways: ``default`` (departing then,
``max_walk`` 1000 m, city bikes: what ``citybus journey`` asks), ``reference`` (departing then,
``max_walk=0, bikes=False, change=120``: the reference mode) and ``arrive-by`` (arriving by then,
the default settings). The ``journey-planner`` adapter runs in ``citybus up``
(:mod:`bench.journey_bus`), twice: alone on the feed (``planner only``: the timetable, no bike
racks, no live calls), and in the default ``citybus up`` (``default``: next to the sandbox
replaying the Drammen day at 60x, so with its live train calls and city-bike racks, as a user runs
it). The requests go one after another over its nats-server as the ``public`` user, timed from
sending to the decoded answer. A first request of the day (it builds
the day's network) is timed but not counted; a "floor" asks from a place to itself, refused once
both names are resolved: the bus's round trip and little else.

**Against the brute force**, in the same run: :mod:`bench.journey_reference` (independent of
``adapters/``: Bellman-Ford rounds over every trip of the day) answers each reference query, timed;
its earliest arrival must equal the planner's ``arrival`` (or both find no route). Mismatches are
counted and the first few listed.

**Where the time goes**: the same requests answered by ``Planner.answer`` in this process (the
planner without the bus, racks or live calls), each kind under cProfile; and one more default
``citybus up`` under cProfile while it answers default and arrive-by requests.

**Memory**: the RSS of the ``citybus up`` process (the planner runs in it; its nats-server is a
child process of its own, not counted) after loading and after the queries, and of a
``citybus up`` with the planner disabled (nothing runs in it).
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import random
import time
import tracemalloc
from datetime import date, datetime, timedelta
from typing import Final

import msgspec

from adapters.journey import Planner, load_feed
from bench.common import ROOT, Options, Spec, log
from bench.journey_bus import ask_all, journey_metrics, loaded_seconds, planner_up, rss_mb
from bench.journey_reference import BruteForce
from bench.journey_report import (
    DESCRIBED,
    KINDS,
    OSLO,
    Measured,
    Query,
    Side,
    check,
    memory_rows,
    planner_profile,
    report,
)
from bench.report import Case, Figure, Row, Target
from bench.stats import median
from contracts import JourneyRequest

__all__ = ["CASES"]

TITLE: Final = "Journey planner: loading the NSB feed, requests over the bus"
FEED: Final = ROOT / "sandbox" / "data" / "sources" / "transport" / "entur_nsb_gtfs_2018.zip"
DAY: Final = date(2018, 8, 28)
SEED: Final = 17
TARGET_LOAD_S: Final = 3.0
MAX_CHANGES: Final = 6
"""The requests' ``max_changes`` (the default): the brute force may use ``MAX_CHANGES + 1`` trips."""
FULL: Final = {"loads": 5, "queries": 1000, "floor": 200, "profiled": 300}
SMOKE: Final = {"loads": 1, "queries": 12, "floor": 5, "profiled": 12}
"""How many: loads of the feed, queries of each kind, floor requests, and queries profiled per kind."""


def make_queries(places: list[str], count: int) -> list[Query]:
    """``count`` seeded queries among ``places``, at times uniform over the local day of :data:`DAY`."""
    rng = random.Random(SEED)
    start = int(datetime.combine(DAY, datetime.min.time(), OSLO).timestamp())
    end = int(datetime.combine(DAY + timedelta(days=1), datetime.min.time(), OSLO).timestamp())
    queries = []
    for _ in range(count):
        origin, destination = rng.sample(places, 2)
        queries.append(Query(origin, destination, rng.randrange(start, end)))
    return queries


def request_of(kind: str, number: int, query: Query) -> JourneyRequest:
    """The journey request of ``kind`` for ``query``."""
    moment = datetime.fromtimestamp(query.moment, OSLO)
    max_walk, bikes, change = KINDS[kind]
    return JourneyRequest(
        request_id=f"bench-{kind}-{number}",
        origin=query.origin,
        destination=query.destination,
        depart=None if kind == "arrive-by" else moment,
        arrive_by=moment if kind == "arrive-by" else None,
        max_walk=max_walk,
        bikes=bikes,
        change=change,
        max_changes=MAX_CHANGES,
    )


# -- loading -----------------------------------------------------------------------------------------


def _loading(case: Case, runs: int) -> Planner:
    """Time ``load_feed`` + ``Planner(feed)`` ``runs`` times and the day's network; the last planner."""
    rows, totals = [], []
    planner: Planner | None = None
    for number in range(1, runs + 1):
        started = time.perf_counter()
        feed = load_feed(FEED)
        loaded = time.perf_counter()
        planner = Planner(feed)
        built = time.perf_counter()
        planner.network(DAY)
        network = time.perf_counter() - built
        totals.append(built - started)
        rows.append(
            Row(
                {
                    "run": f"run {number}",
                    "`load_feed` s": f"{loaded - started:.3f}",
                    "`Planner(feed)` s": f"{built - loaded:.3f}",
                    "load + planner s": f"{built - started:.3f}",
                    f"network of {DAY} s (first query)": f"{network:.3f}",
                }
            )
        )
    assert planner is not None
    load = median(totals)
    met = load <= TARGET_LOAD_S
    rows.append(
        Row({key: "" for key in rows[0].cells} | {"run": "median", "load + planner s": f"{load:.3f}"}, met)
    )
    feed = planner.feed
    caption = (
        f"Loading, in the bench's process ({len(feed.trips):,} trips, "
        f"{len(feed.places):,} stop places, {len(feed.rejected):,} rows left out; "
        f"valid {feed.valid_from} .. {feed.valid_to}; the network of {DAY}: "
        f"{planner.network(DAY).size[0]:,} runs in {planner.network(DAY).size[1]:,} patterns):"
    )
    case.tables.append((caption, rows))
    case.targets.append(
        Target(
            "loading the feed: `load_feed` + `Planner(feed)`",
            f"<= {TARGET_LOAD_S:g} s",
            f"{load:.2f} s (median of {runs})",
            met,
        )
    )
    case.figures.append(Figure("load s", load, "s", higher_is_better=False))
    return planner


def _traced() -> list[Row]:
    """What the feed, the planner and a day's network keep, by :mod:`tracemalloc`."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        feed = load_feed(FEED)
        kept_feed, peak = tracemalloc.get_traced_memory()
        planner = Planner(feed)
        kept_planner = tracemalloc.get_traced_memory()[0]
        planner.network(DAY)
        kept_network = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    mb = 1 << 20
    return [
        Row({"what": "the feed (`load_feed`), kept", "MB": f"{(kept_feed - before) / mb:.1f}"}),
        Row({"what": "the feed, peak while loading", "MB": f"{(peak - before) / mb:.1f}"}),
        Row(
            {"what": "`Planner(feed)`, kept besides the feed", "MB": f"{(kept_planner - kept_feed) / mb:.1f}"}
        ),
        Row(
            {
                "what": f"the network of {DAY} (built by the first query)",
                "MB": f"{(kept_network - kept_planner) / mb:.1f}",
            }
        ),
    ]


# -- over the bus, in the planner alone, and the brute force -----------------------------------------


def _requests(queries: list[Query]) -> dict[str, list[JourneyRequest]]:
    return {kind: [request_of(kind, n, q) for n, q in enumerate(queries)] for kind in KINDS}


def _side(options: Options, setup: str, queries: list[Query], floor: int) -> Side:
    """The requests to a ``citybus up`` of ``setup``, with its RSS before and after."""
    first = msgspec.structs.replace(request_of("default", 0, queries[0]), request_id="bench-first")
    floors = [
        JourneyRequest(
            request_id=f"bench-floor-{n}",
            origin=q.origin,
            destination=q.origin,
            depart=datetime.fromtimestamp(q.moment, OSLO),
        )
        for n, q in enumerate(queries[:floor])
    ]
    requests = _requests(queries)
    log(f"journey: citybus up ({setup})")
    with planner_up(options.work / f"journey-{setup.replace(' ', '-')}", FEED, setup) as up:
        time.sleep(1.0)
        rss_loaded = rss_mb(up.process.pid)
        batches = [[first], floors, *requests.values()]
        log(f"journey: {sum(map(len, batches)):,} requests over the bus")
        batches_done = asyncio.run(ask_all(up, batches))
        rss_after = rss_mb(up.process.pid)
        metrics = journey_metrics(up)
        done = dict(zip(KINDS, batches_done[2:], strict=True))
        return Side(
            setup=setup,
            answered={kind: batch.answered for kind, batch in done.items()},
            cpu={kind: batch.cpu for kind, batch in done.items()},
            first=batches_done[0].answered[0].seconds,
            floor=[a.seconds for a in batches_done[1].answered],
            ready=up.ready,
            loaded=loaded_seconds(up),
            rss_loaded=rss_loaded,
            rss_after=rss_after,
            metrics=metrics,
        )


def _measure(options: Options, queries: list[Query], reference: BruteForce, planner: Planner) -> Measured:
    sizes = SMOKE if options.smoke else FULL
    log("journey: citybus up with the planner disabled (the baseline RSS)")
    with planner_up(options.work / "journey-baseline", FEED, "baseline") as up:
        time.sleep(1.0)
        rss_base = rss_mb(up.process.pid)
    sides = [_side(options, setup, queries, sizes["floor"]) for setup in ("planner only", "default")]
    log("journey: the same requests answered by the planner in this process")
    now = datetime.fromtimestamp(queries[0].moment, OSLO)
    alone: dict[str, list[float]] = {}
    alone_cpu: dict[str, list[float]] = {}
    for kind, batch in _requests(queries).items():
        times, cpu = [], []
        for request in batch:
            started, used = time.perf_counter(), time.process_time()
            planner.answer(request, now)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - used)
        alone[kind], alone_cpu[kind] = times, cpu
    log("journey: the brute force on the reference queries")
    brute, brute_cpu, arrivals = [], [], []
    for query in queries:
        started, used = time.perf_counter(), time.process_time()
        arrivals.append(
            reference.earliest_arrival(query.origin, query.destination, query.moment, MAX_CHANGES + 1)
        )
        brute.append(time.perf_counter() - started)
        brute_cpu.append(time.process_time() - used)
    return Measured(sides, alone, alone_cpu, brute, brute_cpu, arrivals, rss_base)


def _profile_alone(case: Case, planner: Planner, queries: list[Query]) -> None:
    """Each kind's requests answered in this process under cProfile."""
    now = datetime.fromtimestamp(queries[0].moment, OSLO)
    for kind in KINDS:
        profile = cProfile.Profile()
        batch = [request_of(kind, n, q) for n, q in enumerate(queries)]
        profile.enable()
        for request in batch:
            planner.answer(request, now)
        profile.disable()
        cumulative, own = planner_profile(pstats.Stats(profile))
        title = (
            f"{len(batch):,} {DESCRIBED[kind]} requests answered by `Planner.answer` in the bench's process"
        )
        case.profiles.append((f"{title}: the planner's functions by cumulative time", cumulative))
        case.profiles.append((f"{title}: top functions by own time", own))


def _profile_default(case: Case, options: Options, queries: list[Query]) -> None:
    """The default ``citybus up`` under cProfile while it answers default and arrive-by requests."""
    profile = options.work / "journey-default.prof"
    batches = [[request_of(kind, n, q) for n, q in enumerate(queries)] for kind in ("default", "arrive-by")]
    with planner_up(
        options.work / "journey-profiled",
        FEED,
        "default",
        python_options=("-m", "cProfile", "-o", str(profile)),
    ) as up:
        time.sleep(1.0)
        asyncio.run(ask_all(up, batches))
    if not profile.exists():
        return
    cumulative, own = planner_profile(pstats.Stats(str(profile)))
    title = (
        f"the default `citybus up` (sandbox and planner) under cProfile, from spawning to stopped, answering "
        f"{len(queries):,} default and {len(queries):,} arrive-by requests"
    )
    case.profiles.append((f"{title}: the planner's functions by cumulative time", cumulative))
    case.profiles.append((f"{title}: top functions by own time", own))


def _loads(averages: tuple[float, float, float]) -> str:
    return " ".join(f"{average:.2f}" for average in averages)


def journey_case(options: Options) -> Case:
    """Loading the feed, and requests over the bus against the brute force: see the module doc."""
    sizes = SMOKE if options.smoke else FULL
    case = Case(TITLE, __doc__.split("\n\n", 1)[1].strip() if __doc__ else "")
    load_before = os.getloadavg()
    log(f"journey: loading the feed {sizes['loads']} time(s)")
    planner = _loading(case, sizes["loads"])
    memory = _traced()
    started = time.perf_counter()
    reference = BruteForce(FEED)
    places = reference.places_on(DAY)
    reference.day_trips(DAY)
    brute_load = time.perf_counter() - started
    queries = make_queries(places, sizes["queries"])
    measured = _measure(options, queries, reference, planner)
    report(case, measured)
    check(case, measured, queries)
    case.tables.append(
        (
            "Memory (tracemalloc in the bench's process; RSS of the `citybus up` process, not counting "
            "its nats-server):",
            memory + memory_rows(measured),
        )
    )
    side = measured.sides[-1]
    case.figures.append(Figure("RSS after queries MB", side.rss_after, "MB", higher_is_better=False))
    case.notes += [
        f"{len(queries):,} queries (seed {SEED}) among the {len(places):,} stop places that the trips of "
        f"{DAY} ({DAY:%A}) call at, at times uniform over that local day; each asked the three ways, with "
        f"`max_changes` {MAX_CHANGES}. `p50` .. `max`: the round trip of `bus.request(JourneyRequest(...), "
        "JourneyPlan)` as the `public` user, one request at a time; `in-process`: `Planner.answer` on the "
        "same requests in the bench's process, no racks, no live calls (for the brute force: its search); "
        "`CPU`: CPU time rather than wall time (for `citybus up`, its process's, bus handling included, "
        "divided by the requests; in-process, `time.process_time` around each answer). The machine is "
        "shared: where the wall time is well above the CPU time, the process waited for a CPU.",
        "`citybus up`: `planner only` runs the journey planner alone (no bike racks, no live calls: the "
        "timetable only); `default` is `citybus up` as a user runs it, the sandbox replaying the Drammen "
        "day at 60x (live train calls, city-bike racks and their status) and the planner following it.",
        *(
            f"`{side.setup}` was ready {side.ready:.2f} s after spawning; the adapter logged loading the "
            f"timetable in {'(not logged)' if side.loaded is None else f'{side.loaded:.2f} s'}; the first "
            f"request of {DAY} (building the day's network) took {side.first * 1000:.1f} ms, not counted."
            for side in measured.sides
        ),
        *(side.note() for side in measured.sides),
        f"The brute force read the zip and built the day's trips in {brute_load:.2f} s.",
        f"The machine's load average (1, 5, 15 min) when the case started: {_loads(load_before)}; when "
        f"the queries were done: {_loads(os.getloadavg())} (on {os.cpu_count()} logical CPUs).",
    ]
    log("journey: profiling the planner")
    _profile_alone(case, planner, queries[: sizes["profiled"]])
    _profile_default(case, options, queries[: sizes["profiled"] // 3])
    return case


CASES: Final = [Spec("journey", TITLE, journey_case)]
