"""The journey planner: a request in, a plan out, over one feed, the live calls and the racks.

:meth:`Planner.answer` never raises for what a traveller typed: an unknown place, a time outside
the timetable, no route, each becomes a plan with its status and one line saying what to change.

Decisions, and why:

* **Arriving by a time** is answered by the same forward search: the earliest arrival only grows
  with the departure time, so the latest departure that still arrives in time is found by a binary
  search over the departures that matter (every departure from the places one can board first).
  Some ten searches instead of one, and no second algorithm to keep equal to the first.
* **No route** says the latest departure that would have worked, found the same way; a journey
  runs on the trips of the day it asks about and the days either side, and arrives within a day.
* **The fastest journey leaves as late as it can** (:func:`_later`): from its last ride back, each
  ride moves to the latest trip between the same places that still makes the connection.
* **Networks are kept for the last few days asked about**, with live calls applied as they arrive.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Protocol

from adapters.journey.answer import plan_of, refusal
from adapters.journey.feed import Feed
from adapters.journey.live import LiveState, run_of, runs_on
from adapters.journey.network import Network
from adapters.journey.places import Endpoint, Places, UnknownPlaceError
from adapters.journey.racks import Racks
from adapters.journey.raptor import Found, Move, Ride, pareto, search
from adapters.journey.reach import LONGEST_WALK, Reach
from contracts import JourneyPlan, JourneyRequest, TrainCall

__all__ = ["Planner"]

_DAYS_KEPT = 4
LONGEST_JOURNEY = 24 * 3600
"""The longest journey searched for, in seconds (OpenTripPlanner's default is a day too): it bounds
the search, and with it the time a request costs."""


class _Search(Protocol):
    def __call__(self, start: int, until: int | None = None) -> list[Found]: ...


class Planner:
    """Plans journeys on a feed; takes live calls and rack states as they come."""

    def __init__(self, feed: Feed, *, racks: Racks | None = None) -> None:
        self.feed = feed
        self.live = LiveState(feed)
        self.racks = racks if racks is not None else Racks()
        self.places = Places(feed)
        self.reach = Reach(feed, self.racks)
        self._networks: OrderedDict[date, Network] = OrderedDict()

    # -- what the bus brings ----------------------------------------------------------------------

    def take_call(self, call: TrainCall) -> str:
        """Apply a live train call: ``applied``, or why not (``unmatched``, ``unchanged``)."""
        changed = self.live.apply(call)
        if isinstance(changed, str):
            return changed
        trip_id, service_date = changed
        trip = self.live.trip(trip_id)
        run = run_of(self.feed, trip, service_date, self.live.of(trip, service_date))
        # a service date's runs are in the networks of the day before, the day and the day after
        for day in (service_date - timedelta(days=1), service_date, service_date + timedelta(days=1)):
            network = self._networks.get(day)
            if network is not None:
                network.replace_run(trip, service_date, run)
        return "applied"

    def network(self, day: date) -> Network:
        """The network of ``day`` (built on first use, then kept with live calls applied)."""
        network = self._networks.get(day)
        if network is None:
            network = self._networks[day] = Network(self.feed, day, runs_on(self.feed, day, self.live))
            while len(self._networks) > _DAYS_KEPT:
                self._networks.popitem(last=False)
        else:
            self._networks.move_to_end(day)
        return network

    # -- answering --------------------------------------------------------------------------------

    def answer(self, request: JourneyRequest, now: datetime) -> JourneyPlan:
        """The plan for ``request``; ``now`` is the departure when it names no time."""
        feed = self.feed
        try:
            origin = self.places.resolve(request.origin)
            destination = self.places.resolve(request.destination)
        except UnknownPlaceError as exc:
            return refusal(request, feed, "unknown-place", str(exc), suggestions=exc.suggestions)
        except ValueError as exc:
            return refusal(request, feed, "bad-request", str(exc))
        if request.depart is not None and request.arrive_by is not None:
            return refusal(request, feed, "bad-request", "give a departure or an arrival time, not both")
        if origin.place is not None and origin.place == destination.place:
            return refusal(
                request, feed, "bad-request", f"the origin and the destination are both {origin.name}"
            )
        if request.max_walk > LONGEST_WALK:
            return refusal(request, feed, "bad-request", f"max_walk is at most {LONGEST_WALK} m")
        moment = request.arrive_by or request.depart or now
        try:
            day = feed.local_date(moment)
        except OverflowError:  # year 1 or 9999: a valid timestamp, but not one a zone can convert
            day = None
        if day is None or not feed.covers(day):
            return refusal(
                request,
                feed,
                "outside-validity",
                f"the timetable runs {feed.valid_from} to {feed.valid_to}; {day or moment.date()} is outside "
                "it: "
                "ask for a time within it",
            )
        network = self.network(day)
        run = self._searcher(network, origin, destination, request)
        if request.arrive_by is not None:
            return self._arrive_by(request, network, origin, destination, int(moment.timestamp()), run)
        start = int(moment.timestamp())
        found = run(start)
        if found:
            found = self._leave_later(network, found, request.change)
            return plan_of(request, feed, origin, destination, found, self.racks)
        latest = self._latest(network, origin, request, start, lambda t: bool(run(t)))
        when = "" if latest is None else f"; the latest departure that works is {_clock(feed, latest)}"
        message = (
            f"no route from {origin.name} to {destination.name} leaving at or after "
            f"{_clock(feed, start)} on {day}{when}"
            if latest is not None
            else f"no route from {origin.name} to {destination.name} on {day} at any time "
            f"(with at most {request.max_changes} changes and walks of {request.max_walk} m)"
        )
        return refusal(
            request,
            feed,
            "no-route",
            message,
            origin=origin,
            destination=destination,
            latest=None if latest is None else feed.instant(latest),
        )

    def _searcher(
        self, network: Network, origin: Endpoint, destination: Endpoint, request: JourneyRequest
    ) -> _Search:
        reach = self.reach
        egress = reach.egress(destination, request.max_walk, request.bikes)
        transfers = reach.transfers(request.max_walk, request.bikes)
        direct = reach.direct(origin, destination, request.max_walk, request.bikes)

        offsets = reach.access(origin, 0, request.max_walk, request.bikes)

        def run(start: int, until: int | None = None) -> list[Found]:
            access = {place: (start + offset, move) for place, (offset, move) in offsets.items()}
            longest = start + LONGEST_JOURNEY
            return search(
                network,
                access,
                egress,
                transfers,
                change=request.change,
                rounds=request.max_changes + 1,
                direct=None if direct is None else (start + direct.seconds, direct),
                until=longest if until is None else min(until, longest),
            )

        return run

    def _starts(self, network: Network, origin: Endpoint, request: JourneyRequest) -> list[int]:
        """Every departure time from the origin that can matter: each trip's departure from a place
        one can board first, minus the way there."""
        offsets = self.reach.access(origin, 0, request.max_walk, request.bikes)
        starts: set[int] = set()
        for place, (offset, _) in offsets.items():
            for index, position in network.at[place]:
                pattern = network.patterns[index]
                if pattern.boarding[position]:
                    starts.update(d - offset for d in pattern.columns[position])
        return sorted(starts)

    def _leave_later(self, network: Network, found: list[Found], change: int) -> list[Found]:
        """Each journey on the same trips' later runs where they still arrive as early. RAPTOR
        rides the first run one can catch, so leaving at 23:30 for a place the night trains do not
        serve takes the 23:35 to a change where it waits for the morning; the traveller wants the
        last one that still makes the connection (what OpenTripPlanner's reverse optimisation does).
        From the last ride back, each ride becomes the latest run of its pattern that still arrives
        in time for the next: one binary search per ride."""
        return pareto([*found, *(later for f in found if (later := _later(network, f, change)) is not None)])

    def _latest(
        self,
        network: Network,
        origin: Endpoint,
        request: JourneyRequest,
        before: int,
        works: Callable[[int], bool],
        *,
        after: int | None = None,
    ) -> int | None:
        """The latest start before ``before`` (and after ``after``) for which ``works`` holds (it must
        hold for every earlier start once it holds for one), or ``None``: a binary search (galloping
        back from ``before`` measured a third more searches on random requests)."""
        low_end = -1 if after is None else after
        starts = [s for s in self._starts(network, origin, request) if low_end < s < before]
        low, high, best = 0, len(starts) - 1, None
        while low <= high:
            middle = (low + high) // 2
            if works(starts[middle]):
                best, low = starts[middle], middle + 1
            else:
                high = middle - 1
        return best

    def _arrive_by(
        self,
        request: JourneyRequest,
        network: Network,
        origin: Endpoint,
        destination: Endpoint,
        deadline: int,
        run: _Search,
    ) -> JourneyPlan:
        feed = self.feed

        # a search that arrives after the deadline is of no use: bounded by it, it stops there
        def in_time(start: int) -> bool:
            return bool(run(start, deadline + 1))

        latest = self._latest(
            network, origin, request, deadline + 1, in_time, after=deadline - LONGEST_JOURNEY
        )
        # walking (or cycling) the whole way leaves as late as the walk allows, not at a trip's time
        direct = self.reach.direct(origin, destination, request.max_walk, request.bikes)
        if direct is not None and (latest is None or deadline - direct.seconds > latest):
            latest = deadline - direct.seconds
        if latest is None:
            return refusal(
                request,
                feed,
                "no-route",
                f"no route from {origin.name} to {destination.name} arrives by {_clock(feed, deadline)} "
                f"on {feed.local_date(feed.instant(deadline))}",
                origin=origin,
                destination=destination,
            )
        found = run(latest, deadline + 1)
        # the Pareto set of latest departure and fewest changes: for fewer changes, leave earlier.
        # One search from a day before the deadline finds the fewest changes that arrive in time;
        # each such journey is then moved as late as its trips allow (not a binary search each:
        # that was half of an arrive-by request's time)
        fewest = min(f.changes for f in found)
        if fewest > 0:
            for journey in run(deadline - LONGEST_JOURNEY, deadline + 1):
                if journey.changes < fewest:
                    found.append(_later(network, journey, request.change, by=deadline) or journey)
        return plan_of(request, feed, origin, destination, found, self.racks)


def _later(network: Network, journey: Found, change: int, by: int | None = None) -> Found | None:
    """``journey`` with each ride as late as it can be and still arrive in time for what follows it
    (between the same places, on any trip) — and, given ``by``, still arrive by then — or ``None``
    if it cannot leave later."""
    legs = list(journey.legs)
    after = sum(leg.seconds for leg in _after_last_ride(legs))  # the way on from the last ride
    deadline: int | None = None  # when the next ride leaves, less what must come before it
    moved = False
    for i in range(len(legs) - 1, -1, -1):
        leg = legs[i]
        if isinstance(leg, Move):
            if deadline is not None:
                deadline -= max(change, leg.seconds) - change  # a walk between rides takes its time
            continue
        if deadline is not None:
            limit = deadline - change
        else:
            limit = leg.run.arrivals[leg.alight] if by is None else by - after
        ride = _latest_ride(network, leg, limit)
        if ride.run is not leg.run:
            legs[i] = ride
            moved = True
        deadline = ride.run.departures[ride.board]
    if not moved:
        return None
    rides = [leg for leg in legs if isinstance(leg, Ride)]
    first, last = rides[0], rides[-1]
    before = sum(leg.seconds for leg in legs[: legs.index(first)] if isinstance(leg, Move))
    arrival = last.run.arrivals[last.alight] + after
    return Found(arrival, tuple(legs), first.run.departures[first.board] - before)


def _after_last_ride(legs: list[Ride | Move]) -> list[Move]:
    """The moves after a journey's last ride."""
    tail: list[Move] = []
    for leg in reversed(legs):
        if isinstance(leg, Ride):
            break
        tail.append(leg)
    return tail


def _latest_ride(network: Network, ride: Ride, limit: int) -> Ride:
    """The ride between the same two places that leaves last and arrives by ``limit`` (``ride``
    itself if none leaves later)."""
    board_at, alight_at = ride.run.trip.places[ride.board], ride.run.trip.places[ride.alight]
    best = ride
    for index, board in network.at[board_at]:
        pattern = network.patterns[index]
        if not pattern.boarding[board]:
            continue
        for alight in range(board + 1, len(pattern.places)):
            if pattern.places[alight] != alight_at or not pattern.alighting[alight]:
                continue
            arrivals = [run.arrivals[alight] for run in pattern.runs]
            last = bisect_right(arrivals, limit) - 1
            if last >= 0 and pattern.runs[last].departures[board] > best.run.departures[best.board]:
                best = Ride(pattern.runs[last], board, alight)
            break
    return best


def _clock(feed: Feed, moment: int) -> str:
    return feed.instant(moment).strftime("%H:%M")
