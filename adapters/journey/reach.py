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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
        self._fleets: dict[tuple[int, int], _Fleet] = {}
        # where each rack stands changes far less often than what it can do: the places near a rack
        # and the metres between two racks are kept by rack id while the rack stays where it is
        self._placed: dict[str, Point] = {}
        self._rack_near: dict[str, list[tuple[int, float]]] = {}
        self._between: dict[str, dict[str, float]] = {}

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
            fleet = self._fleet(max_walk)
            starts = {place for near in fleet.near_lend for place, _ in near}
            for source in sorted(starts):
                point = self.points[source]
                for target, move in self._rides_from(point, max_walk, source, fleet).items():
                    if target != source:
                        found.setdefault(source, []).append(move)
        return found

    def _fleet(self, max_walk: int) -> _Fleet:
        """The racks that lend and take now, the rides between them and the places near each:
        worked out once per rack state and ``max_walk``."""
        key = (self.racks.version, max_walk)
        fleet = self._fleets.get(key)
        if fleet is None:
            self._fleets.clear()
            self._forget_moved_racks()
            lending, taking = self.racks.lending(), self.racks.taking()
            fleet = self._fleets[key] = _Fleet(
                lending=lending,
                taking=taking,
                ride=[[self._metres(a, b) for b in taking] for a in lending],
                near_lend=[self._near_rack(r, max_walk) for r in lending],
                near_take=[self._near_rack(r, max_walk) for r in taking],
            )
        return fleet

    def _forget_moved_racks(self) -> None:
        for rack in self.racks.racks.values():
            if self._placed.get(rack.id) != rack.point:
                self._placed[rack.id] = rack.point
                self._rack_near.pop(rack.id, None)
                self._between.pop(rack.id, None)
                for row in self._between.values():
                    row.pop(rack.id, None)

    def _near_rack(self, rack: Rack, max_walk: int) -> list[tuple[int, float]]:
        """The places within ``max_walk`` of a rack, nearest first (those within 5 km found once)."""
        near = self._rack_near.get(rack.id)
        if near is None:
            near = self._rack_near[rack.id] = self.near(rack.point, LONGEST_WALK)
        return [(place, metres) for place, metres in near if metres <= max_walk]

    def _metres(self, a: Rack, b: Rack) -> float:
        """Metres from rack ``a`` to rack ``b`` (infinite: the same rack), found once."""
        row = self._between.setdefault(a.id, {})
        metres = row.get(b.id)
        if metres is None:
            metres = row[b.id] = math.inf if a.id == b.id else distance(a.point, b.point)
        return metres

    def _to_racks(self, start: Point, max_walk: int, fleet: _Fleet) -> list[tuple[int, int, float] | None]:
        """For each rack that takes a bike: the fastest way to have docked there from ``start``
        (seconds, the lending rack, the walk to it), or ``None``."""
        best: list[tuple[int, int, float] | None] = [None] * len(fleet.taking)
        for i, lend in enumerate(fleet.lending):
            before = distance(start, lend.point)
            if before > max_walk:
                continue
            walk = walk_seconds(before)
            for j, metres in enumerate(fleet.ride[i]):
                if metres != math.inf:
                    seconds = walk + bike_seconds(metres)
                    old = best[j]
                    if old is None or seconds < old[0]:
                        best[j] = (seconds, i, before)
        return best

    def _rides_from(self, start: Point, max_walk: int, source: int | None, fleet: _Fleet) -> dict[int, Move]:
        """The fastest bike ride from ``start`` to each place near a rack that takes bikes."""
        found: dict[int, Move] = {}
        for j, reached in enumerate(self._to_racks(start, max_walk, fleet)):
            if reached is None:
                continue
            seconds, i, before = reached
            ids = (fleet.lending[i].id, fleet.taking[j].id)
            for place, after in fleet.near_take[j]:
                total = seconds + walk_seconds(after)
                old = found.get(place)
                if old is None or total < old.seconds:
                    found[place] = Move("bike", total, fleet.ride[i][j], source, place, ids, before, after)
        return found

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
        fleet = self._fleet(max_walk)
        best: Move | None = None
        for j, reached in enumerate(self._to_racks(start, max_walk, fleet)):
            after = distance(fleet.taking[j].point, end) if reached is not None else math.inf
            if reached is None or after > max_walk:
                continue
            seconds, i, before = reached
            total = seconds + walk_seconds(after)
            if best is None or total < best.seconds:
                ids = (fleet.lending[i].id, fleet.taking[j].id)
                best = Move("bike", total, fleet.ride[i][j], source, target, ids, before, after)
        return best

    def around(self, endpoint: Endpoint, max_walk: int) -> list[tuple[int, float]]:
        """The places within ``max_walk`` of an endpoint (a stop place's, found once, or a point's)."""
        if endpoint.place is not None:
            return [(p, m) for p, m in self._near[endpoint.place] if m <= max_walk]
        return self.near(endpoint.point, max_walk)

    def access(
        self, origin: Endpoint, time: int, max_walk: int, bikes: bool
    ) -> dict[int, tuple[int, Move | None]]:
        """Where one can board first, and when: place → (ready time, the move there or ``None``)."""
        found: dict[int, tuple[int, Move | None]] = {}
        if origin.place is not None:
            found[origin.place] = (time, None)
        if max_walk > 0:
            for place, metres in self.around(origin, max_walk):
                if place != origin.place:
                    move = Move("walk", walk_seconds(metres), metres, origin.place, place)
                    _keep(found, place, time + move.seconds, move)
            if bikes and self.racks.racks:
                rides = self._rides_from(origin.point, max_walk, origin.place, self._fleet(max_walk))
                for place, ride in rides.items():
                    if place != origin.place:
                        _keep(found, place, time + ride.seconds, ride)
        return found

    def egress(self, destination: Endpoint, max_walk: int, bikes: bool) -> dict[int, tuple[Move | None, ...]]:
        """Where one can leave the last trip: place → the ways on to the destination (``None``: it is
        there): the fastest, and the walk too where a bike is faster (a journey with one change fewer)."""
        found: dict[int, Move | None] = {}
        walks: dict[int, Move] = {}
        if destination.place is not None:
            found[destination.place] = None
        if max_walk > 0:
            for place, metres in self.around(destination, max_walk):
                if place != destination.place:
                    found[place] = walks[place] = Move(
                        "walk", walk_seconds(metres), metres, place, destination.place
                    )
            if bikes and self.racks.racks:
                fleet = self._fleet(max_walk)
                afters = [distance(take.point, destination.point) for take in fleet.taking]
                for i, near in enumerate(fleet.near_lend):
                    ride = self._ride_on(i, afters, max_walk, fleet)
                    if ride is None:
                        continue
                    seconds, j, after = ride
                    ids = (fleet.lending[i].id, fleet.taking[j].id)
                    for place, before in near:
                        total = walk_seconds(before) + seconds
                        old = found.get(place)
                        if place != destination.place and (old is None or total < old.seconds):
                            found[place] = Move(
                                "bike", total, fleet.ride[i][j], place, destination.place, ids, before, after
                            )
        return {
            place: (move, walks[place])
            if move is not None and move.kind == "bike" and place in walks
            else (move,)
            for place, move in found.items()
        }

    def _ride_on(
        self, i: int, afters: list[float], max_walk: int, fleet: _Fleet
    ) -> tuple[int, int, float] | None:
        """From taking a bike at lending rack ``i`` to the destination, ``afters[j]`` metres from
        taking rack ``j``: (seconds, the rack it is docked at, the walk from there), or ``None``."""
        best: tuple[int, int, float] | None = None
        for j, after in enumerate(afters):
            metres = fleet.ride[i][j]
            if metres == math.inf or after > max_walk:
                continue
            seconds = bike_seconds(metres) + walk_seconds(after)
            if best is None or seconds < best[0]:
                best = (seconds, j, after)
        return best

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


@dataclass(frozen=True, slots=True)
class _Fleet:
    lending: list[Rack]
    taking: list[Rack]
    ride: list[list[float]]
    """Metres from each lending rack to each taking rack (infinite: the same rack)."""
    near_lend: list[list[tuple[int, float]]]
    near_take: list[list[tuple[int, float]]]


def _keep(found: dict[int, tuple[int, Move | None]], place: int, ready: int, move: Move) -> None:
    old = found.get(place)
    if old is None or ready < old[0]:
        found[place] = (ready, move)
