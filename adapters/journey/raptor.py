"""RAPTOR: the round-based public transit routing algorithm (Delling, Pajor and Werneck, 2012), the
one Entur's planner (OpenTripPlanner 2) uses.

Round *k* finds the earliest arrival at every place with *k* trips: it scans each pattern that
calls at a place improved in round *k − 1*, from that place on, riding the earliest trip that can be
caught and switching to an earlier one where a stop allows; then it adds the transfers (walks and
bike rides) from every place it improved. Journeys whose arrival improves on all those with fewer
trips form the Pareto set of (arrival, trips). Two prunings keep it fast without changing the
answer: an arrival no earlier than the best known at that place (*local*), or than the best known
at the destination (*target*), is dropped.

Decisions, and why:

* **Ready times, not arrival times, are the labels** one boards from: an arrival by trip needs the
  change time before boarding another trip, a walk needs its own time (and never less than the
  change time), the origin needs nothing. So "staying on a trip needs no change time" holds by
  construction: staying on is riding on, within one scan.
* **Each label remembers how it was reached** (:class:`Ride`, :class:`Move`), so a journey is read
  back from its destination without a second search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from adapters.journey.network import Network, Run

__all__ = ["Found", "Move", "Ride", "pareto", "search"]

_NEVER = 1 << 62


@dataclass(frozen=True, slots=True)
class Move:
    """A leg that is not a trip: a walk or a bike ride, with how long it takes.

    ``source`` and ``target`` are places (``None``: the request's origin or destination point);
    ``via`` names the bike racks ``(from, to)`` of a bike leg, and the walks around it are folded in.
    """

    kind: str
    """``walk`` or ``bike``."""
    seconds: int
    metres: float
    source: int | None
    target: int | None
    via: tuple[str, str] | None = None
    walk_before: float = 0.0
    walk_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Ride:
    """A leg on one run, from one call to a later one."""

    run: Run
    board: int
    alight: int


@dataclass(frozen=True, slots=True)
class Found:
    """A journey found: its arrival at the destination and its legs (rides and moves, in order)."""

    arrival: int
    legs: tuple[Ride | Move, ...]
    start: int
    """When it leaves the origin: the first ride's departure minus the moves before it."""

    @property
    def trips(self) -> int:
        """How many trips it rides."""
        return sum(1 for leg in self.legs if isinstance(leg, Ride))

    @property
    def changes(self) -> int:
        """Changes of vehicle, as a plan counts them: a city bike is a vehicle too."""
        bikes = sum(1 for leg in self.legs if isinstance(leg, Move) and leg.kind == "bike")
        return max(0, self.trips + bikes - 1)


def search(
    network: Network,
    access: dict[int, tuple[int, Move | None]],
    egress: dict[int, tuple[Move | None, ...]],
    transfers: Callable[[int], Sequence[Move]],
    *,
    change: int,
    rounds: int,
    direct: tuple[int, Move] | None = None,
    until: int = 1 << 62,
) -> list[Found]:
    """The Pareto set of (arrival, trips) from ``access`` to ``egress``.

    :param access: place → (when one can board there, the move that got there or ``None`` for the
        origin itself).
    :param egress: place → the moves from it to the destination (``None``: it is the destination).
    :param transfers: place → the moves from it to other places.
    :param rounds: the most trips a journey may ride.
    :param direct: a journey with no trip at all: (its arrival, its move), if there is one.
    :param until: no journey arrives later (a bound on the search, like OTP's longest journey).
    """
    n = len(network.feed.places)
    best_arrival = [_NEVER] * n
    best_ready = [_NEVER] * n
    ready_round = [0] * n
    """The round of each place's best ready label (the arrivals of that round led to it)."""
    ready_how: dict[tuple[int, int], tuple[int, Move | None]] = {}
    """(round, place) → (from place, move) of a ready label (from place -1: the origin). Labels of
    one round are never changed by a later one, so a journey reads back the labels it was built on."""
    ride_how: dict[tuple[int, int], tuple[int, int, int, int, int]] = {}
    """(round, place) → (pattern, run, board position, alight position, round of the ready label
    it boarded from) of its arrival."""
    found: list[Found] = []
    target = until
    ending = {False: _NEVER, True: _NEVER}
    """The earliest arrival of the journeys found so far that end on foot (or there) and by bike."""
    if direct is not None and direct[0] < until:
        target = direct[0]
        found.append(Found(direct[0], (direct[1],), direct[0] - direct[1].seconds))
    marked: set[int] = set()
    for place, (ready, move) in access.items():
        if ready < best_ready[place]:
            best_ready[place] = ready
            ready_how[(0, place)] = (-1, move)
            marked.add(place)
    patterns = network.patterns
    for k in range(1, rounds + 1):
        queue: dict[int, int] = {}
        for place in marked:
            for index, position in network.at[place]:
                if queue.get(index, _NEVER) > position:
                    queue[index] = position
        improved: list[int] = []
        for index, start in queue.items():
            pattern = patterns[index]
            places, boarding, alighting, columns = (
                pattern.places,
                pattern.boarding,
                pattern.alighting,
                pattern.columns,
            )
            runs = pattern.runs
            trip = -1
            board = label = -1
            arrivals: tuple[int, ...] = ()
            for position in range(start, len(places)):
                place = places[position]
                if trip >= 0 and alighting[position]:
                    arrival = arrivals[position]
                    if arrival < best_arrival[place] and arrival < target:
                        best_arrival[place] = arrival
                        ride_how[(k, place)] = (index, trip, board, position, label)
                        improved.append(place)
                ready = best_ready[place]
                if boarding[position] and ready < _NEVER and (trip < 0 or ready <= columns[position][trip]):
                    catch = pattern.first_catchable(position, ready)
                    if catch < len(runs) and (trip < 0 or catch < trip):
                        trip, board, arrivals = catch, position, runs[catch].arrivals
                        label = ready_round[place]
        # journeys first: reading one back needs the ready labels its rides were boarded from
        for place in improved:
            for move in egress.get(place, ()):
                total = best_arrival[place] + (move.seconds if move is not None else 0)
                # the best so far of journeys ending alike: a walk that is slower than a bike ride
                # has one change fewer, so it is a journey of the Pareto set too
                cycles = move is not None and move.kind == "bike"
                if total < ending[cycles]:
                    ending[cycles] = total
                    target = min(target, total)
                    found.append(_read_back(network, k, place, move, total, ready_how, ride_how))
        marked = set()
        for place in improved:
            arrival = best_arrival[place]
            ready = arrival + change
            if ready < best_ready[place]:
                best_ready[place] = ready
                ready_round[place] = k
                ready_how[(k, place)] = (place, None)
                marked.add(place)
            for move in transfers(place):
                ready = arrival + max(change, move.seconds)
                to = move.target
                if to is not None and ready < best_ready[to] and ready < target:
                    best_ready[to] = ready
                    ready_round[to] = k
                    ready_how[(k, to)] = (place, move)
                    marked.add(to)
        if not marked:
            break
    return pareto(found)


def _read_back(
    network: Network,
    k: int,
    place: int,
    egress: Move | None,
    arrival: int,
    ready_how: dict[tuple[int, int], tuple[int, Move | None]],
    ride_how: dict[tuple[int, int], tuple[int, int, int, int, int]],
) -> Found:
    legs: list[Ride | Move] = [] if egress is None else [egress]
    round_, at = k, place
    start = arrival
    while True:
        index, trip, board, alight, label = ride_how[(round_, at)]
        run = network.patterns[index].runs[trip]
        legs.append(Ride(run, board, alight))
        start = run.departures[board]
        boarded_at = network.patterns[index].places[board]
        came_from, move = ready_how[(label, boarded_at)]
        if move is not None:
            legs.append(move)
        if came_from < 0:
            if move is not None:
                start -= move.seconds
            break
        round_, at = label, came_from
    legs.reverse()
    return Found(arrival, tuple(legs), start)


def pareto(found: list[Found]) -> list[Found]:
    """Fastest first; a journey stays only if it has fewer changes than every faster one (the
    changes a plan reports, so that the set a traveller reads is a Pareto set); of two alike, the
    one that leaves later."""
    kept: list[Found] = []
    for journey in sorted(found, key=lambda f: (f.arrival, f.changes, -f.start)):
        if all(journey.changes < other.changes for other in kept):
            kept.append(journey)
    return kept
