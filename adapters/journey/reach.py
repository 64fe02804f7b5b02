"""The legs that are not trips: walks and bike rides to, between and from stop places.

:class:`Reach` answers, for one request's limits (``max_walk``, bikes or not), where one can get
from the origin before the first trip (*access*), between trips (*transfers*) and after the last
(*egress*), and whether the whole journey can be walked or cycled (*direct*). The model itself is
in :mod:`adapters.journey.moving`.

Decisions, and why:

* **Neighbours once, limits per request.** The places within the largest walk any request may
  ask for (5 km) are found once, nearest first; a request's ``max_walk`` only cuts that list.
* **Bike transfers are cached per rack state.** Which racks lend and take changes a few times an
  hour; the bike rides between stop places are worked out again only then (:attr:`Racks.version`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from adapters.journey.feed import Feed
from adapters.journey.moving import Point, bike_seconds, distance, walk_seconds
from adapters.journey.places import Endpoint
from adapters.journey.racks import Rack, Racks
from adapters.journey.raptor import Move

__all__ = ["LONGEST_WALK", "Reach"]

LONGEST_WALK = 5000
"""The most ``max_walk`` may be, in metres."""


class Reach:
    """Walks and bike rides around one feed's stop places, given the racks' latest state."""

    def __init__(self, feed: Feed, racks: Racks) -> None:
        self.feed = feed
        self.racks = racks
        self.points = [Point(p.lat, p.lon) for p in feed.places]
        self._near: list[list[tuple[int, float]]] = [[] for _ in feed.places]
        for a, pa in enumerate(self.points):
            for b in range(a + 1, len(self.points)):
                metres = distance(pa, self.points[b])
                if metres <= LONGEST_WALK:
                    self._near[a].append((b, metres))
                    self._near[b].append((a, metres))
        for near in self._near:
            near.sort(key=lambda item: item[1])
        self._walks: dict[int, list[list[Move] | None]] = {}
        self._bikes: dict[tuple[int, int], dict[int, list[Move]]] = {}

    # -- between places ---------------------------------------------------------------------------

    def walks(self, place: int, max_walk: int) -> list[Move]:
        """The walks from a place to the places within ``max_walk``, nearest first."""
        table = self._walks.setdefault(max_walk, [None] * len(self.points))
        moves = table[place]
        if moves is None:
            moves = table[place] = [
                Move("walk", walk_seconds(metres), metres, place, other)
                for other, metres in self._near[place]
                if metres <= max_walk
            ]
        return moves

    def transfers(self, max_walk: int, bikes: bool) -> Callable[[int], Sequence[Move]]:
        """The moves from each place to others, for a request's limits."""
        if max_walk <= 0:
            return lambda place: ()
        if not bikes or not self.racks.racks:
            return lambda place: self.walks(place, max_walk)
        rides = self._bike_transfers(max_walk)

        def moves(place: int) -> Sequence[Move]:
            extra = rides.get(place)
            walks = self.walks(place, max_walk)
            return walks if extra is None else [*walks, *extra]

        return moves

    def _bike_transfers(self, max_walk: int) -> dict[int, list[Move]]:
        key = (self.racks.version, max_walk)
        found = self._bikes.get(key)
        if found is None:
            self._bikes.clear()
            found = self._bikes[key] = {}
            starts = self._near_racks(self.racks.lending(), max_walk)
            ends = self._near_racks(self.racks.taking(), max_walk)
            for source in starts:
                for target in ends:
                    if source != target:
                        move = self.bike(self.points[source], self.points[target], max_walk, source, target)
                        if move is not None:
                            found.setdefault(source, []).append(move)
        return found

    def _near_racks(self, racks: list[Rack], max_walk: int) -> set[int]:
        return {place for rack in racks for place, _ in self.near(rack.point, max_walk)}

    # -- from and to points -----------------------------------------------------------------------

    def near(self, point: Point, max_walk: int) -> list[tuple[int, float]]:
        """The places within ``max_walk`` of a point, with the distance."""
        found = [(i, distance(point, p)) for i, p in enumerate(self.points)]
        return sorted(((i, m) for i, m in found if m <= max_walk), key=lambda item: item[1])

    def bike(
        self, start: Point, end: Point, max_walk: int, source: int | None, target: int | None
    ) -> Move | None:
        """The fastest ride on a city bike from ``start`` to ``end`` (walking to a rack that lends
        and from one that takes, each walk within ``max_walk``), or ``None``."""
        best: Move | None = None
        taking = [(r, distance(r.point, end)) for r in self.racks.taking()]
        for lend in self.racks.lending():
            before = distance(start, lend.point)
            if before > max_walk:
                continue
            for take, after in taking:
                if take.id == lend.id or after > max_walk:
                    continue
                ride = distance(lend.point, take.point)
                seconds = walk_seconds(before) + bike_seconds(ride) + walk_seconds(after)
                if best is None or seconds < best.seconds:
                    best = Move("bike", seconds, ride, source, target, (lend.id, take.id), before, after)
        return best

    def access(
        self, origin: Endpoint, time: int, max_walk: int, bikes: bool
    ) -> dict[int, tuple[int, Move | None]]:
        """Where one can board first, and when: place → (ready time, the move there or ``None``)."""
        found: dict[int, tuple[int, Move | None]] = {}
        if origin.place is not None:
            found[origin.place] = (time, None)
        if max_walk > 0:
            for place, metres in self.near(origin.point, max_walk):
                if place != origin.place:
                    move = Move("walk", walk_seconds(metres), metres, origin.place, place)
                    _keep(found, place, time + move.seconds, move)
            if bikes:
                for place in self._near_racks(self.racks.taking(), max_walk):
                    ride = self.bike(origin.point, self.points[place], max_walk, origin.place, place)
                    if ride is not None and place != origin.place:
                        _keep(found, place, time + ride.seconds, ride)
        return found

    def egress(self, destination: Endpoint, max_walk: int, bikes: bool) -> dict[int, Move | None]:
        """Where one can leave the last trip: place → the move to the destination (``None``: there)."""
        found: dict[int, Move | None] = {}
        if destination.place is not None:
            found[destination.place] = None
        if max_walk > 0:
            for place, metres in self.near(destination.point, max_walk):
                if place != destination.place:
                    found[place] = Move("walk", walk_seconds(metres), metres, place, destination.place)
            if bikes:
                for place in self._near_racks(self.racks.lending(), max_walk):
                    if place == destination.place:
                        continue
                    move = self.bike(
                        self.points[place], destination.point, max_walk, place, destination.place
                    )
                    old = found.get(place)
                    if move is not None and (old is None or move.seconds < old.seconds):
                        found[place] = move
        return found

    def direct(self, origin: Endpoint, destination: Endpoint, max_walk: int, bikes: bool) -> Move | None:
        """The whole journey on foot or by bike, whichever is faster, if within the limits."""
        if max_walk <= 0:
            return None
        metres = distance(origin.point, destination.point)
        best = (
            Move("walk", walk_seconds(metres), metres, origin.place, destination.place)
            if metres <= max_walk
            else None
        )
        if bikes:
            ride = self.bike(origin.point, destination.point, max_walk, origin.place, destination.place)
            if ride is not None and (best is None or ride.seconds < best.seconds):
                best = ride
        return best


def _keep(found: dict[int, tuple[int, Move | None]], place: int, ready: int, move: Move) -> None:
    old = found.get(place)
    if old is None or ready < old[0]:
        found[place] = (ready, move)
