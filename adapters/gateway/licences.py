"""Who to credit for each data set, and under which licence it is offered: a machine-readable table.

The catalogue (:mod:`adapters.gateway.catalogue`) says of every public data set under which licence
it may be reused and whom to credit. The project records attribution for people
(``sandbox/data/README.md``, ``sandbox/data/sources/README.md``) and as one string in the shipped
recording's MCAP metadata, but not per contract in a form a program can read; this is that form,
taken from those two files. Whatever they say changes, this table changes with them.

Decisions, and why:

* **Per contract, not per message.** A licence belongs to where the data comes from, and each of the
  city's contracts has one source: train calls and stop places come from Entur (NLOD 2.0), the
  bike racks from OpenStreetMap (ODbL 1.0, which a rack's status carries too: its name, place and
  docks are OpenStreetMap's). A message says whether its values are real or generated (its
  ``ce-provenance``); the catalogue shows that next to the credit, so a credit for MET Norway's
  formats is never read as MET Norway's measurements.
* **The city's own data is the city's.** A public contract of the city with no third-party source
  (the beach sensors, what citybus computes) is credited to the municipality under NLOD 2.0, the
  licence Norwegian public bodies publish open data under. Internal and personal data sets are not
  open data and get no licence at all.
* **A company's contract gets no invented licence.** An installed package's contract is listed with
  "no licence declared" until its publisher says otherwise: a catalogue must not grant rights it
  does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from contracts import CITY_PACKAGE, Classification, Contract, package_of

__all__ = [
    "ATTRIBUTIONS",
    "Attribution",
    "CITY",
    "Licence",
    "NLOD",
    "ODBL",
    "attribution_of",
]


@dataclass(frozen=True, slots=True)
class Licence:
    """A licence a data set may be reused under."""

    name: str
    """For people: ``Norwegian Licence for Open Government Data (NLOD) 2.0``."""
    short: str
    """As credits write it: ``NLOD 2.0``."""
    url: str
    """The licence's canonical document (the ``dct:license`` IRI)."""


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whom to credit for a data set, under which licence, and what of it is theirs."""

    credit: str
    """The credit a reuser must give, e.g. ``Entur`` or ``© OpenStreetMap contributors``."""
    licence: Licence
    source: str
    """What comes from the credited source, for people."""


NLOD: Final = Licence(
    name="Norwegian Licence for Open Government Data (NLOD) 2.0",
    short="NLOD 2.0",
    url="https://data.norge.no/nlod/en/2.0",
)
ODBL: Final = Licence(
    name="Open Database Licence (ODbL) 1.0",
    short="ODbL 1.0",
    url="https://opendatacommons.org/licenses/odbl/1-0/",
)

CITY: Final = Attribution(
    credit="Drammen kommune",
    licence=NLOD,
    source="The municipality's own data: its sensors, and what citybus computes from the city's data",
)
"""The city's own public data sets (see the module's decisions)."""

_ENTUR: Final = "Entur"
_OSM: Final = "© OpenStreetMap contributors"

ATTRIBUTIONS: Final[Mapping[str, Attribution]] = {
    "mobility.train-call": Attribution(
        credit=_ENTUR,
        licence=NLOD,
        source="Train timetables (GTFS) and real-time calls (SIRI-ET) from Entur's national data",
    ),
    "mobility.stop-place": Attribution(
        credit=_ENTUR, licence=NLOD, source="Stop places and quays from Entur's national stop register"
    ),
    "mobility.bike-station": Attribution(
        credit=_OSM,
        licence=ODBL,
        source="Drammen's city-bike racks, their places and docks, from OpenStreetMap",
    ),
    "mobility.bike-station-status": Attribution(
        credit=_OSM, licence=ODBL, source="The racks' names, places and docks, from OpenStreetMap"
    ),
    "environment.weather-observed": Attribution(
        credit="MET Norway",
        licence=NLOD,
        source="Observations in the format of MET Norway's Frost API",
    ),
    "environment.weather-forecast": Attribution(
        credit="MET Norway",
        licence=NLOD,
        source="Forecasts in the format of MET Norway's Locationforecast API",
    ),
    "environment.air-quality-observed": Attribution(
        credit="NILU; Drammen kommune",
        licence=NLOD,
        source="Readings in the format of NILU's air-quality API, at the municipality's measuring stations",
    ),
}
"""Contract name → its third-party source (``sandbox/data/sources/README.md``)."""


def attribution_of(cls: type[Contract]) -> Attribution | None:
    """The credit and licence of a contract's data set; ``None`` when it is not open data (internal,
    personal) or its package declares none (a company's contract)."""
    info = cls.__contract__
    if info.classification is not Classification.PUBLIC:
        return None
    found = ATTRIBUTIONS.get(info.name)
    if found is not None:
        return found
    return CITY if package_of(cls) == CITY_PACKAGE else None
