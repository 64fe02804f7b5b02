"""The journey planner: the best way from A to B on the city's trains, on foot and by city bike.

A service adapter (``journey-planner``) that loads a GTFS feed, follows live train calls and bike
racks on the bus, and answers :class:`~contracts.JourneyRequest` with :class:`~contracts.JourneyPlan`
by request/reply. Routing is RAPTOR (:mod:`adapters.journey.raptor`); walking and cycling follow
the model in :mod:`adapters.journey.moving`. ``citybus journey`` asks it from the command line.
"""

from adapters.journey.adapter import JourneyConfig, JourneyPlanner
from adapters.journey.feed import Feed, load_feed, read_feed
from adapters.journey.planner import Planner

__all__ = ["Feed", "JourneyConfig", "JourneyPlanner", "Planner", "load_feed", "read_feed"]
