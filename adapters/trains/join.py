"""A SIRI call joined with the timetable: the :class:`~contracts.TrainCall` a real-time call makes.

SIRI says what is happening — expected and actual times, the platform in use, a cancellation — but
often not all of what the timetable knows: Bane NOR's journeys have no ``DestinationName``, the
line ``NSB:Line:-`` for long-distance trains, and an ``Order`` counted from 1 where GTFS's
``stop_sequence`` counts from 0. So a real-time call takes from its planned call (same service
journey, same stop place, see :meth:`~adapters.trains.timetable.Timetable.planned`) whatever SIRI
lacks:

* ``line``: SIRI's ``PublishedLineName``, else the planned line (GTFS ``route_short_name``, the
  public code), else the last segment of ``LineRef`` (``FLT:Line:F2$FLT:Line:F2`` → ``F2``) — the
  ref is an id, only sometimes the public code, hence last;
* ``sequence``: the planned call's, so that a consumer can match the real-time call to the
  scheduled one it updates; without a planned call SIRI's ``Order``, else the call's position;
* ``destination``: the call's ``DestinationDisplay``, the journey's ``DestinationName``, else the
  planned headsign;
* aimed times, ``platform`` and ``operator``: SIRI's when given, else the planned call's;
* ``stop_name``: the stop place's name in the register (``Drammen stasjon``), not SIRI's short
  ``StopPointName`` (``Drammen``), so the same station has the same name in every message.

``status`` is ``cancelled`` when the journey or the call is, ``actual`` once an actual time is
recorded, ``estimated`` with an expected time, else ``scheduled``; ``delay_seconds`` is the actual
(else expected) minus the aimed time, of the departure if it has both, else of the arrival.
"""

from __future__ import annotations

from datetime import datetime

from msgspec.structs import replace

from adapters.trains.siri import SiriCall, SiriJourney
from adapters.trains.timetable import Timetable, codespace
from contracts import TrainCall
from contracts.mobility import CallStatus

__all__ = ["delay_seconds", "join_call", "line_code", "realtime_call", "relevant_time"]


def line_code(line_ref: str | None) -> str | None:
    """The last segment of a SIRI ``LineRef`` (``NSB:Line:L13$NSB:Line:L13`` → ``L13``); ``None``
    for Bane NOR's placeholder ``-`` or an empty ref."""
    if not line_ref:
        return None
    code = line_ref.split("$", 1)[0].rpartition(":")[2].strip()
    return code if code and code != "-" else None


def delay_seconds(call: TrainCall) -> int | None:
    """Actual (else expected) minus aimed, in seconds: the departure's, else the arrival's."""
    pairs = (
        (call.aimed_departure, call.actual_departure or call.expected_departure),
        (call.aimed_arrival, call.actual_arrival or call.expected_arrival),
    )
    for aimed, happened in pairs:
        if aimed is not None and happened is not None:
            return round((happened - aimed).total_seconds())
    return None


def relevant_time(call: TrainCall) -> datetime | None:
    """The time a call is best known by: the departure before the arrival, fact before prognosis
    before plan."""
    return (
        call.actual_departure
        or call.actual_arrival
        or call.expected_departure
        or call.expected_arrival
        or call.aimed_departure
        or call.aimed_arrival
    )


def _status(journey: SiriJourney, call: SiriCall) -> CallStatus:
    if journey.cancelled or call.cancelled:
        return "cancelled"
    if call.actual_arrival is not None or call.actual_departure is not None:
        return "actual"
    if call.expected_arrival is not None or call.expected_departure is not None:
        return "estimated"
    return "scheduled"


def realtime_call(
    journey: SiriJourney,
    call: SiriCall,
    *,
    stop_place: str,
    stop_name: str,
    planned: TrainCall | None,
) -> TrainCall:
    """The train call that ``call`` of ``journey`` at ``stop_place`` makes, joined with its
    ``planned`` (scheduled) call if the timetable has one. Not validated: see the adapter."""
    line = journey.published_line or (planned.line if planned else None) or line_code(journey.line_ref)
    operator = (
        journey.operator
        or (planned.operator if planned else None)
        or codespace(journey.journey_ref)
        or codespace(journey.line_ref)
        or ""
    )
    joined = TrainCall(
        service_journey=journey.journey_ref,
        # the line ref's raw last segment (Bane NOR's "-") only when nothing better is known
        line=line or (journey.line_ref or "").split("$", 1)[0].rpartition(":")[2],
        operator=operator,
        stop_place=stop_place,
        quay=call.stop_point,
        stop_name=(planned.stop_name if planned else None) or stop_name or call.stop_name or "",
        sequence=planned.sequence if planned else (call.order or call.position),
        aimed_arrival=call.aimed_arrival or (planned.aimed_arrival if planned else None),
        aimed_departure=call.aimed_departure or (planned.aimed_departure if planned else None),
        expected_arrival=call.expected_arrival,
        expected_departure=call.expected_departure,
        actual_arrival=call.actual_arrival,
        actual_departure=call.actual_departure,
        platform=call.departure_platform or call.arrival_platform or (planned.platform if planned else None),
        status=_status(journey, call),
        destination=call.destination or journey.destination or (planned.destination if planned else None),
    )
    # the delay is the difference of the joined times (the aimed ones may be the timetable's)
    return replace(joined, delay_seconds=delay_seconds(joined))


def join_call(timetable: Timetable, journey: SiriJourney, call: SiriCall) -> TrainCall:
    """The train call of a SIRI call at a quay of ``timetable``'s area (``call.stop_point`` must be
    one of ``timetable.quays``), joined with its planned call if there is one. Not validated."""
    stop_place = timetable.quays[call.stop_point]
    aimed = (call.aimed_arrival, call.aimed_departure)
    if aimed == (None, None):  # prognoses only: they lie near the plan too
        aimed = (
            call.actual_arrival or call.expected_arrival,
            call.actual_departure or call.expected_departure,
        )
    planned = timetable.planned(journey.journey_ref, stop_place, aimed=aimed, order=call.order)
    place = timetable.stop_places.get(stop_place)
    name = place.name if place is not None else ""
    return realtime_call(journey, call, stop_place=stop_place, stop_name=name, planned=planned)
