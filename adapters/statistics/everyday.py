"""Everyday statistics from public data: the warmest beach, the punctual trains, the air, the bikes.

Each :class:`EverydayDataset` says how one public contract becomes rows of a statistics table: a
pure function (:attr:`EverydayDataset.observe`) turns one message into :class:`Observation` values
(a group — one value per dimension —, a value, when, and what was observed), and the statistics
service feeds them to the release engine under mechanism ``none`` (public data, no person in it).
:data:`EVERYDAY` lists them:

==========================  ===================================  ==================  ===============
data set                    from                                 group               value
==========================  ===================================  ==================  ===============
``beach-water-temperature`` ``environment.beach-observation``    site                water, Cel
``train-punctuality``       ``mobility.train-call`` (actual)     station, line       on time: 1 / 0
``train-delay``             ``mobility.train-call`` (actual)     station, line       delay, min
``air-quality``             ``environment.air-quality-observed`` station, pollutant  ug/m3
``bike-use``                ``mobility.bike-station-status``     station             bikes available
==========================  ===================================  ==================  ===============

Decisions, and why:

* **An observation is named by what it observes** (:attr:`Observation.who`): a site's reading at
  its time, a train's call (journey, station, position in the journey and the timetabled time), a
  station's pollutant at its hour, a rack's report. A message republished with the same facts, or
  a call whose record is corrected, gives the same ``who``: whoever keeps observations keeps the
  last one per ``who`` (:func:`latest`), so a replayed day is not counted twice.
* **Punctuality counts only what happened.** A train call is published as ``scheduled``, then
  ``estimated`` while the train runs and ``actual`` once it has called; only an ``actual`` call with
  a delay is a fact about punctuality, so prognoses are left out (they would count the same call
  again and again). On time means at most three minutes late (``delay_seconds`` ≤ 180; early is
  on time), so the mean of the 1 / 0 values is the share on time. Cancelled calls are not counted:
  punctuality, as Norway's railway reports it, is over the trains that ran (cancellations are
  regularity, another figure). The delays themselves are a data set of their own (``train-delay``,
  in minutes, negative when early), because one table has one measure.
* **Nothing is invented.** A call without a delay is skipped, never counted as on time; a rack not
  installed or not renting has no bikes to use and is skipped. Missing values stay missing.
* **Bikes are averaged over reports, not over time.** A rack reports when its count changes, so
  the mean weighs a busy hour more than a quiet one; the table says "per report". A time-weighted
  mean needs the gaps between reports, which one message does not hold.
* **Labels for people travel with the data** (:attr:`EverydayDataset.labels`): the station names
  the messages carry (``Drammen stasjon`` for ``NSR:StopPlace:11``), and the pilot's names for the
  bathing sites, so a table shows names while its groups stay stable identifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal, TypeVar

from adapters.vicotee.sites import SITES
from contracts import AirQualityObserved, BeachObservation, BikeStationStatus, Contract, TrainCall

__all__ = [
    "BY_NAME",
    "EVERYDAY",
    "ON_TIME_SECONDS",
    "EverydayDataset",
    "Observation",
    "consumed",
    "latest",
]

ON_TIME_SECONDS: Final = 180
"""A call at most this late (three minutes) is on time."""

C = TypeVar("C", bound=Contract)


@dataclass(frozen=True, slots=True)
class Observation:
    """One value of one group, observed at one time: what a public message adds to a table."""

    group: tuple[str, ...]
    """One value per dimension of the data set, in order."""
    value: float
    """The value, in the data set's unit."""
    at: datetime
    """When it was observed (timezone-aware): the period it belongs to."""
    who: str
    """What was observed, named so that the same observation always has the same name."""


def _no_labels(data: Contract) -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class EverydayDataset:
    """A public statistics data set: which contract it reads and how one message becomes values."""

    name: str
    """Its slug, the ``dataset`` of its :class:`~contracts.Aggregate`, e.g. ``air-quality``."""
    title: str
    """What its table shows, in a line."""
    contract: type[Contract]
    """The public contract it is computed from."""
    dimensions: tuple[str, ...]
    """The dimensions of a row's group (slugs)."""
    measure: str
    """What the sums and means are of, for people."""
    unit: str
    """The measure's unit (UCUM)."""
    counts: Literal["observations", "entities"]
    """What a row's count counts: observations (readings) or entities (train calls)."""
    observe: Callable[[Contract], list[Observation]]
    """The observations one message of :attr:`contract` gives (none when it lacks the value)."""
    labels: Callable[[Contract], dict[str, str]] = _no_labels
    """Names for people of the group values one message carries (value → name)."""

    @property
    def sources(self) -> tuple[str, ...]:
        """The contracts it is computed from, as an :class:`~contracts.Aggregate` names them."""
        return (self.contract.__contract__.name,)


def _of(kind: type[C], data: Contract) -> C:
    if not isinstance(data, kind):
        raise TypeError(f"expected a {kind.__contract__.name} message, got {type(data).__name__}")
    return data


# -- the beaches ----------------------------------------------------------------------------------


def _beach(data: Contract) -> list[Observation]:
    reading = _of(BeachObservation, data)
    how = reading.device or "manual"
    who = f"{reading.site}/{how}@{reading.observed_at.isoformat()}"
    return [Observation((reading.site,), reading.water_temperature, reading.observed_at, who)]


def _beach_labels(data: Contract) -> dict[str, str]:
    site = SITES.get(_of(BeachObservation, data).site)
    return {site.slug: site.name} if site is not None else {}


# -- the trains -----------------------------------------------------------------------------------


def _call(data: Contract) -> tuple[TrainCall, int, datetime, str] | None:
    """An actual call with its delay, when it was, and its name; ``None`` for anything else."""
    call = _of(TrainCall, data)
    if call.status != "actual" or call.delay_seconds is None:
        return None
    aimed = call.aimed_departure or call.aimed_arrival
    at = call.actual_departure or call.actual_arrival or aimed
    if at is None:
        return None  # a call with no time at all cannot be put in a period
    # A service journey's id repeats every day it runs: the timetabled time tells the days apart.
    who = f"{call.service_journey}@{call.stop_place}#{call.sequence}@{(aimed or at).isoformat()}"
    return call, call.delay_seconds, at, who


def _punctuality(data: Contract) -> list[Observation]:
    found = _call(data)
    if found is None:
        return []
    call, delay, at, who = found
    on_time = 1.0 if delay <= ON_TIME_SECONDS else 0.0
    return [Observation((call.stop_place, call.line), on_time, at, who)]


def _delay(data: Contract) -> list[Observation]:
    found = _call(data)
    if found is None:
        return []
    call, delay, at, who = found
    return [Observation((call.stop_place, call.line), delay / 60, at, who)]


def _train_labels(data: Contract) -> dict[str, str]:
    call = _of(TrainCall, data)
    return {call.stop_place: call.stop_name} if call.stop_name else {}


# -- the air --------------------------------------------------------------------------------------


def _air(data: Contract) -> list[Observation]:
    reading = _of(AirQualityObserved, data)
    who = f"{reading.station}/{reading.component}@{reading.observed_at.isoformat()}"
    return [Observation((reading.station, reading.component), reading.value, reading.observed_at, who)]


def _air_labels(data: Contract) -> dict[str, str]:
    reading = _of(AirQualityObserved, data)
    return {reading.station: reading.station_name} if reading.station_name else {}


# -- the bikes ------------------------------------------------------------------------------------


def _bikes(data: Contract) -> list[Observation]:
    status = _of(BikeStationStatus, data)
    if not (status.is_installed and status.is_renting):
        return []  # no bikes to use there, whatever the count says
    who = f"{status.station_id}@{status.reported_at.isoformat()}"
    return [Observation((status.station_id,), float(status.num_bikes_available), status.reported_at, who)]


def _bike_labels(data: Contract) -> dict[str, str]:
    status = _of(BikeStationStatus, data)
    return {status.station_id: status.name} if status.name else {}


EVERYDAY: Final[tuple[EverydayDataset, ...]] = (
    EverydayDataset(
        name="beach-water-temperature",
        title="Water temperature at Drammen's bathing sites",
        contract=BeachObservation,
        dimensions=("site",),
        measure="water temperature",
        unit="Cel",
        counts="observations",
        observe=_beach,
        labels=_beach_labels,
    ),
    EverydayDataset(
        name="train-punctuality",
        title="Trains on time (at most 3 minutes late) by station and line",
        contract=TrainCall,
        dimensions=("station", "line"),
        measure="on time (1) or late (0) per call: the mean is the share on time",
        unit="1",
        counts="entities",
        observe=_punctuality,
        labels=_train_labels,
    ),
    EverydayDataset(
        name="train-delay",
        title="Train delays by station and line",
        contract=TrainCall,
        dimensions=("station", "line"),
        measure="delay per call (negative: early)",
        unit="min",
        counts="entities",
        observe=_delay,
        labels=_train_labels,
    ),
    EverydayDataset(
        name="air-quality",
        title="Air quality by measuring station and pollutant",
        contract=AirQualityObserved,
        dimensions=("station", "pollutant"),
        measure="hourly mean concentration",
        unit="ug/m3",
        counts="observations",
        observe=_air,
        labels=_air_labels,
    ),
    EverydayDataset(
        name="bike-use",
        title="City bikes available by rack (per report)",
        contract=BikeStationStatus,
        dimensions=("station",),
        measure="bikes available to rent, per report",
        unit="{bike}",
        counts="observations",
        observe=_bikes,
        labels=_bike_labels,
    ),
)
"""The public data sets, in the order a reader meets them."""

BY_NAME: Final[Mapping[str, EverydayDataset]] = MappingProxyType({d.name: d for d in EVERYDAY})
"""The public data sets by name."""


def consumed() -> tuple[type[Contract], ...]:
    """The contracts the public data sets read, each once, in the order of :data:`EVERYDAY`."""
    return tuple(dict.fromkeys(d.contract for d in EVERYDAY))


def latest(observations: Iterable[Observation]) -> list[Observation]:
    """The last observation of each ``who``, in the order each ``who`` was first seen: what a
    republished or corrected message leaves standing."""
    kept: dict[str, Observation] = {}
    for observation in observations:
        kept[observation.who] = observation
    return list(kept.values())
