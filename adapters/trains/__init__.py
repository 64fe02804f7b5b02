"""Trains at Drammen's stations from Entur's real formats: the ``entur-trains`` adapter.

:mod:`~adapters.trains.gtfs` reads a GTFS zip (Entur's national feed) into the
:class:`~adapters.trains.timetable.Timetable` of a few stop places; :mod:`~adapters.trains.siri`
reads a SIRI 2.0 EstimatedTimetable into journeys and calls; :mod:`~adapters.trains.join` makes a
real-time call and its planned call into one :class:`~contracts.TrainCall`. All three are pure: no
I/O, and a bad record comes back as a :class:`~adapters.records.Rejected` for its dead
letter. :mod:`~adapters.trains.adapter` is :class:`EnturTrains`, which polls both sources.
"""

from adapters.records import Rejected
from adapters.trains.adapter import (
    DRAMMEN_AREA,
    ENTUR_CLIENT_NAME,
    ENTUR_GTFS_URL,
    ENTUR_SIRI_ET_URL,
    EnturTrains,
    TrainsConfig,
)
from adapters.trains.gtfs import REQUIRED_MEMBERS, GtfsResult, parse_gtfs, parse_gtfs_time
from adapters.trains.join import delay_seconds, join_call, line_code, realtime_call, relevant_time
from adapters.trains.siri import (
    SIRI_NAMESPACE,
    EstimatedTimetable,
    SiriCall,
    SiriJourney,
    parse_estimated_timetable,
)
from adapters.trains.timetable import (
    PlannedCall,
    ServiceCalendar,
    Timetable,
    codespace,
    gtfs_moment,
    mode_of_route_type,
    service_day_start,
)

__all__ = [
    "DRAMMEN_AREA",
    "ENTUR_CLIENT_NAME",
    "ENTUR_GTFS_URL",
    "ENTUR_SIRI_ET_URL",
    "EnturTrains",
    "EstimatedTimetable",
    "GtfsResult",
    "PlannedCall",
    "REQUIRED_MEMBERS",
    "Rejected",
    "SIRI_NAMESPACE",
    "ServiceCalendar",
    "SiriCall",
    "SiriJourney",
    "Timetable",
    "TrainsConfig",
    "codespace",
    "delay_seconds",
    "gtfs_moment",
    "join_call",
    "line_code",
    "mode_of_route_type",
    "parse_estimated_timetable",
    "parse_gtfs",
    "parse_gtfs_time",
    "realtime_call",
    "relevant_time",
    "service_day_start",
]
