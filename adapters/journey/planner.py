"""The journey planner: a request in, a plan out, over one feed, the live calls and the racks.

:meth:`Planner.answer` never raises for what a traveller typed: an unknown place, a time outside
the timetable, no route, each becomes a plan with its status and one line saying what to change.

Decisions, and why:

* **Arriving by a time** is answered by the same forward search: the earliest arrival only grows
  with the departure time, so the latest departure that still arrives in time is found by a binary
  search over the departures that matter (every departure from the places one can board first).
  Some ten searches instead of one, and no second algorithm to keep equal to the first.
* **No route** says the latest departure that would have worked, found the same way; a journey
  runs on one day's trips (and the night's from the day before), so the day it asks about decides.
* **Networks are kept for the last few days asked about**, with live calls applied as they arrive.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime, timedelta

from adapters.journey.answer import plan_of, refusal
from adapters.journey.feed import Feed
from adapters.journey.live import LiveState, run_of, runs_on
from adapters.journey.network import Network
from adapters.journey.places import Endpoint, Places, UnknownPlaceError
from adapters.journey.racks import Racks
from adapters.journey.raptor import Found, search
from adapters.journey.reach import LONGEST_WALK, Reach
from contracts import JourneyPlan, JourneyRequest, TrainCall

__all__ = ["Planner"]

_DAYS_KEPT = 8


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
        for day in (service_date, service_date + timedelta(days=1)):
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
        day = feed.local_date(moment)
        if not feed.covers(day):
            return refusal(
                request,
                feed,
                "outside-validity",
                f"the timetable runs {feed.valid_from} to {feed.valid_to}; {day} is outside it: "
                "ask for a time within it",
            )
        network = self.network(day)
        run = self._searcher(network, origin, destination, request)
        if request.arrive_by is not None:
            return self._arrive_by(request, network, origin, destination, int(moment.timestamp()), run)
        start = int(moment.timestamp())
        found = run(start)
        if found:
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
    ) -> Callable[[int], list[Found]]:
        reach = self.reach
        egress = reach.egress(destination, request.max_walk, request.bikes)
        transfers = reach.transfers(request.max_walk, request.bikes)
        direct = reach.direct(origin, destination, request.max_walk, request.bikes)

        def run(start: int) -> list[Found]:
            access = reach.access(origin, start, request.max_walk, request.bikes)
            return search(
                network,
                access,
                egress,
                transfers,
                change=request.change,
                rounds=request.max_changes + 1,
                direct=None if direct is None else (start + direct.seconds, direct),
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

    def _latest(
        self,
        network: Network,
        origin: Endpoint,
        request: JourneyRequest,
        before: int,
        works: Callable[[int], bool],
    ) -> int | None:
        """The latest start before ``before`` for which ``works`` holds (it must hold for every
        earlier start once it holds for one), or ``None``."""
        starts = [s for s in self._starts(network, origin, request) if s < before]
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
        run: Callable[[int], list[Found]],
    ) -> JourneyPlan:
        feed = self.feed

        def in_time(start: int) -> bool:
            return any(f.arrival <= deadline for f in run(start))

        latest = self._latest(network, origin, request, deadline + 1, in_time)
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
        found = [f for f in run(latest) if f.arrival <= deadline]
        return plan_of(request, feed, origin, destination, found, self.racks)


def _clock(feed: Feed, moment: int) -> str:
    return feed.instant(moment).strftime("%H:%M")
