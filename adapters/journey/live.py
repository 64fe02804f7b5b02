"""Live train calls laid over the timetable: expected and actual times, cancelled calls.

A :class:`~contracts.TrainCall` names its trip (``service_journey``, the GTFS ``trip_id``), its stop
place and its aimed time. :class:`LiveState` finds the call in the feed, works out which service
date's run it is about (the one whose timetabled time at that stop is the aimed time), and keeps
the newest expected or actual times per call. :func:`run_of` turns a trip on a date into a
:class:`~adapters.journey.network.Run` with the live times applied.

Decisions, and why:

* **Matched by the aimed time, exactly.** A train call about 2018-08-28's R10 names its aimed
  departure; the run whose timetable says the same instant is the one. A call whose trip or aimed
  time is not in the feed (another operator, a shifted replay) changes nothing and is counted.
* **A delay is carried forward.** Live calls cover a few stations (the Drammen area); a train 4
  minutes late at Drammen is taken to be 4 minutes late at the stops after it until a newer call
  says otherwise, marked live, never earlier than its timetable minus nothing: a delay shrinks only
  where a call says so. Calls before the first live one keep their timetable.
* **A cancelled call is never boarded.** It is not left either, unless it still says when the
  train arrives: SIRI marks the departure of a train that ends its run early (or at its last stop)
  cancelled while it arrives as expected, and its travellers get off there. A cancelled trip has
  no call left to board.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from adapters.journey.feed import Feed, Trip
from adapters.journey.network import Run
from contracts import TrainCall

__all__ = ["LiveCall", "LiveState", "run_of", "runs_on"]


@dataclass(frozen=True, slots=True)
class LiveCall:
    """What a live call says about one call of a run: its expected (or actual) times, or cancelled."""

    arrival: int | None
    departure: int | None
    cancelled: bool


class LiveState:
    """The newest live call of every call the planner has heard of, by run."""

    def __init__(self, feed: Feed, *, keep_days: int = 3) -> None:
        self.feed = feed
        self.calls: dict[tuple[str, date], dict[int, LiveCall]] = {}
        self._trips = {trip.id: trip for trip in feed.trips}
        self._keep = keep_days
        self.applied = 0
        self.unmatched = 0

    def apply(self, call: TrainCall) -> tuple[str, date] | str:
        """Take one live call: the run it changed (trip id, service date), or why none changed:
        ``unmatched`` (its trip or aimed time is not in the feed) or ``unchanged``."""
        found = self._locate(call)
        if found is None:
            self.unmatched += 1
            return "unmatched"
        trip, service_date, position = found
        live = LiveCall(
            arrival=_seconds(call.actual_arrival or call.expected_arrival),
            departure=_seconds(call.actual_departure or call.expected_departure),
            cancelled=call.status == "cancelled",
        )
        calls = self.calls.setdefault((trip.id, service_date), {})
        if calls.get(position) == live:
            return "unchanged"
        calls[position] = live
        self.applied += 1
        self._forget_before(service_date - timedelta(days=self._keep))
        return (trip.id, service_date)

    def trip(self, trip_id: str) -> Trip:
        """The feed's trip of an id a change named."""
        return self._trips[trip_id]

    def of(self, trip: Trip, service_date: date) -> dict[int, LiveCall] | None:
        """The live calls of one run, by call position, if any."""
        return self.calls.get((trip.id, service_date))

    def _locate(self, call: TrainCall) -> tuple[Trip, date, int] | None:
        trip = self._trips.get(call.service_journey)
        place = self.feed.ids.get(call.stop_place)
        aimed = call.aimed_departure or call.aimed_arrival
        if trip is None or place is None or aimed is None:
            return None
        moment = int(aimed.timestamp())
        local = aimed.astimezone(self.feed.tz).date()
        for position, at in enumerate(trip.places):
            if at != place:
                continue
            scheduled = trip.departures[position] if call.aimed_departure else trip.arrivals[position]
            for back in (0, 1, 2):
                day = local - timedelta(days=back)
                if self.feed.origin(day) + scheduled == moment:
                    return trip, day, position
        return None

    def _forget_before(self, day: date) -> None:
        if len(self.calls) > 20000:
            for key in [k for k in self.calls if k[1] < day]:
                del self.calls[key]


def _seconds(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def run_of(feed: Feed, trip: Trip, service_date: date, live: dict[int, LiveCall] | None) -> Run | None:
    """The run of ``trip`` on ``service_date`` with ``live`` applied; ``None`` if nothing of it can be
    boarded (every call cancelled)."""
    origin = feed.origin(service_date)
    arrivals = [origin + t for t in trip.arrivals]
    departures = [origin + t for t in trip.departures]
    if not live:
        return Run(
            trip,
            service_date,
            tuple(arrivals),
            tuple(departures),
            trip.boarding,
            trip.alighting,
            _NOT_LIVE[len(trip.places)],
        )
    boarding, alighting = list(trip.boarding), list(trip.alighting)
    marks = [False] * len(arrivals)
    delay: int | None = None
    previous = arrivals[0]
    for i in range(len(arrivals)):
        call = live.get(i)
        if call is not None:
            if call.cancelled:
                boarding[i] = False
                alighting[i] = alighting[i] and call.arrival is not None
            arrival_delay = None if call.arrival is None else call.arrival - arrivals[i]
            departure_delay = None if call.departure is None else call.departure - departures[i]
            if arrival_delay is not None:
                arrivals[i] += arrival_delay
            elif delay is not None:
                arrivals[i] += delay
            if departure_delay is not None:
                departures[i] += departure_delay
                delay = max(0, departure_delay)  # early here; later stops still wait for their time
            elif arrival_delay is not None:
                departures[i] = max(departures[i], arrivals[i])
                delay = max(0, departures[i] - (origin + trip.departures[i]))
            elif delay is not None:
                departures[i] += delay
            marks[i] = call.arrival is not None or call.departure is not None or delay is not None
        elif delay is not None:
            arrivals[i] += delay
            departures[i] += delay
            marks[i] = True
        # a train cannot leave before it arrives, nor arrive before it left the stop before
        arrivals[i] = max(arrivals[i], previous)
        departures[i] = max(departures[i], arrivals[i])
        previous = departures[i]
    if not any(boarding):
        return None
    return Run(
        trip,
        service_date,
        tuple(arrivals),
        tuple(departures),
        tuple(boarding),
        tuple(alighting),
        tuple(marks),
    )


class _NoLive(dict[int, tuple[bool, ...]]):
    def __missing__(self, length: int) -> tuple[bool, ...]:
        value = self[length] = (False,) * length
        return value


_NOT_LIVE = _NoLive()


def runs_on(feed: Feed, day: date, live: LiveState | None) -> list[Run]:
    """Every run a journey on ``day`` may use: the day's, the day before's (the night's trains, and
    for arriving just after midnight) and the day after's (the first trains after midnight)."""
    runs: list[Run] = []
    for service_date in (day - timedelta(days=1), day, day + timedelta(days=1)):
        for index in feed.trips_on(service_date):
            trip = feed.trips[index]
            run = run_of(feed, trip, service_date, None if live is None else live.of(trip, service_date))
            if run is not None:
                runs.append(run)
    return runs
