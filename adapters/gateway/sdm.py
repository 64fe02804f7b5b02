"""Which FIWARE Smart Data Models type each contract is, for the gateway's NGSI-LD view.

The contracts follow Smart Data Models in snake case (``contracts/environment.py``,
``contracts/mobility.py``) but do not name the type they follow: this table does, for the
contracts whose shape really is the model's, and says which contract field is which model
attribute. Every other field keeps its own name in camel case (``uv_index`` → ``uvIndex``).

============================================  ==========================  ===========================
contract                                      Smart Data Models type      model
============================================  ==========================  ===========================
``environment.beach-observation``             ``WaterQualityObserved``    ``dataModel.Environment``
``environment.weather-observed``              ``WeatherObserved``         ``dataModel.Weather``
``environment.air-quality-observed``          ``AirQualityObserved``      ``dataModel.Environment``
``mobility.bike-station-status``              ``BikeHireDockingStation``  ``dataModel.Transportation``
============================================  ==========================  ===========================

A contract without a model (a train call, a sensor alert, a company's contract) is served too,
under a citybus type named after its event (``mobility.train-call`` → ``TrainCall``; the whole name,
``AcmeBeachAdvice``, when two events share a name), whose IRI is ``urn:citybus:contract:<name>``.

Decisions, and why:

* **IRIs, not a remote context.** Smart Data Models publish their ``@context`` files on the web;
  this machine (and many a city's server) cannot fetch them at run time, and a client should not
  have to. The gateway serves its own context (:func:`context_document`) with every term's full
  IRI, the same IRIs the models' contexts give (``https://smartdatamodels.org/<model>/<term>``),
  so expanded JSON-LD from citybus and from any other SDM source compares equal.
* **Attributes are scoped to their type.** Two models may give one attribute name two IRIs
  (``dateObserved`` of ``dataModel.Weather`` and of ``dataModel.Environment``): each type's
  attributes sit in its own type-scoped context (JSON-LD 1.1), never in one flat table where the
  first model would win.
* **The table lives with the gateway, not in ``contracts``.** Which NGSI-LD type a message is read
  as is a concern of this one view; the contracts stay free of any ecosystem's vocabulary and
  their compatibility snapshot is untouched.
* **Air quality spreads its component.** A NILU message carries one pollutant (``component``,
  ``value``); the model has one attribute per pollutant (``pm10``, ``no2``…), so the pair becomes
  that attribute and a station's entity shows the latest value of every pollutant it measures.
* **Units** are UCUM in the contracts and UN/CEFACT common codes in NGSI-LD (``unitCode``):
  :data:`UNIT_CODES` translates the ones the contracts use; a unit missing there is left out
  rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from contracts import Contract

__all__ = [
    "CORE_CONTEXT",
    "SDM_TYPES",
    "UNIT_CODES",
    "Model",
    "Vocabulary",
    "camel",
    "context_document",
]

CORE_CONTEXT: Final = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
"""The NGSI-LD core context (ETSI GS CIM 009), which every NGSI-LD document implies and clients
know by heart; it is named, never fetched."""

_SDM: Final = "https://smartdatamodels.org"

UNIT_CODES: Final[Mapping[str, str]] = {
    "CEL": "CEL",  # degree Celsius
    "%": "P1",  # percent
    "m": "MTR",
    "mm": "MMT",
    "m/s": "MTS",
    "deg": "DD",  # degree (angle)
    "hPa": "A97",
    "ug/m3": "GQ",  # microgram per cubic metre
    "s": "SEC",
    "h": "HUR",
    "1": "C62",  # one: a dimensionless number (an index)
    "dB": "2N",
}
"""UCUM codes used by the contracts → UN/CEFACT Recommendation 20 common codes."""


class Model(msgspec.Struct, frozen=True, kw_only=True):
    """The Smart Data Models type a contract is, and how its fields are named there."""

    type: str
    """The model's entity type, e.g. ``WaterQualityObserved``."""
    model: str
    """The model's repository, e.g. ``dataModel.Environment``: the IRIs' path."""
    attributes: Mapping[str, str]
    """Contract field → model attribute, for the fields the model defines."""
    observed: str | None = None
    """The field that says when the values were observed: every attribute's ``observedAt``
    (without one, the message's CloudEvents ``time``)."""
    spread: tuple[str, str] | None = None
    """``(name field, value field)`` of a contract whose one message carries one of several named
    quantities (air quality's ``component``/``value``): the value becomes the attribute
    :attr:`spread_names` gives the name."""
    spread_names: Mapping[str, str] = msgspec.field(default_factory=dict)
    """Value of the name field → model attribute (``PM2.5`` → ``pm25``)."""

    def iri(self, term: str) -> str:
        """The full IRI of a term (the type or an attribute) of this model."""
        return f"{_SDM}/{self.model}/{term}"


SDM_TYPES: Final[Mapping[str, Model]] = {
    "environment.beach-observation": Model(
        type="WaterQualityObserved",
        observed="observed_at",
        model="dataModel.Environment",
        attributes={
            "observed_at": "dateObserved",
            "water_temperature": "temperature",
            "depth": "depth",
            "source": "source",
        },
    ),
    "environment.weather-observed": Model(
        type="WeatherObserved",
        observed="observed_at",
        model="dataModel.Weather",
        attributes={
            "station_name": "name",
            "observed_at": "dateObserved",
            "temperature": "temperature",
            "relative_humidity": "relativeHumidity",
            "wind_speed": "windSpeed",
            "wind_direction": "windDirection",
            "precipitation": "precipitation",
            "atmospheric_pressure": "atmosphericPressure",
        },
    ),
    "environment.air-quality-observed": Model(
        type="AirQualityObserved",
        observed="observed_at",
        model="dataModel.Environment",
        attributes={"station_name": "name", "observed_at": "dateObserved", "index": "airQualityIndex"},
        spread=("component", "value"),
        spread_names={
            "PM10": "pm10",
            "PM2.5": "pm25",
            "PM1": "pm1",
            "NO2": "no2",
            "NOx": "nox",
            "NO": "no",
            "O3": "o3",
            "SO2": "so2",
            "CO": "co",
        },
    ),
    "mobility.bike-station-status": Model(
        type="BikeHireDockingStation",
        observed="reported_at",
        model="dataModel.Transportation",
        attributes={
            "name": "name",
            "num_bikes_available": "availableBikeNumber",
            "num_docks_available": "freeSlotNumber",
            "capacity": "totalSlotNumber",
            "reported_at": "observationDate",
        },
    ),
}
"""Contract name → the Smart Data Models type it follows."""


def camel(field: str) -> str:
    """A snake-case field name in the camel case NGSI-LD attributes use (``uv_index`` → ``uvIndex``)."""
    head, *rest = field.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _type_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[.-]", name))


class Vocabulary:
    """The NGSI-LD names of a set of contracts: their types, attributes and the IRIs of both.

    Built once from the registry (the city's and installed companies' contracts); looked up per
    request. A contract name maps to one type: its versions share it (the view serves the newest).
    """

    def __init__(self, contracts: Iterable[type[Contract]]) -> None:
        contracts = list(contracts)
        names = sorted({c.__contract__.name for c in contracts})
        events: dict[str, int] = {}
        for name in names:
            if name not in SDM_TYPES:
                short = _type_name(name.partition(".")[2])
                events[short] = events.get(short, 0) + 1
        taken = {m.type for m in SDM_TYPES.values()}
        self._type_of: dict[str, str] = {}
        self._contract_of: dict[str, str] = {}
        self._type_iri: dict[str, str] = {}
        self._terms: dict[str, dict[str, str]] = {}
        for name in names:
            model = SDM_TYPES.get(name)
            if model is not None:
                short, iri = model.type, model.iri(model.type)
            else:
                short = _type_name(name.partition(".")[2])
                if events[short] > 1 or short in taken:
                    short = _type_name(name)
                iri = f"urn:citybus:contract:{name}"
            if short in self._contract_of:  # two SDM-mapped contracts may not share a type
                continue
            self._type_of[name] = short
            self._contract_of[short] = name
            self._type_iri[short] = iri
        for cls in sorted(contracts, key=lambda c: (c.__contract__.name, c.__contract__.version)):
            name = cls.__contract__.name
            if name not in self._type_of:
                continue
            terms = self._terms.setdefault(self._type_of[name], {})
            for field in cls.__struct_fields__:
                if field == cls.__contract__.key or field == "location":
                    continue
                term, iri = self.attribute(name, field)
                terms.setdefault(term, iri)
            model = SDM_TYPES.get(name)
            if model is not None:
                for term in model.spread_names.values():
                    terms.setdefault(term, model.iri(term))

    def type_of(self, contract: str) -> str | None:
        """The NGSI-LD type (short name) of a contract name, or ``None`` if it has none."""
        return self._type_of.get(contract)

    def contract_of(self, type_: str) -> str | None:
        """The contract name served under an NGSI-LD type (short name or full IRI), or ``None``."""
        found = self._contract_of.get(type_)
        if found is not None:
            return found
        for short, iri in self._type_iri.items():
            if iri == type_:
                return self._contract_of[short]
        return None

    def types(self) -> list[str]:
        """Every type's short name, sorted."""
        return sorted(self._contract_of)

    def attributes(self, type_: str) -> list[str]:
        """The attribute names of a type's entities (but ``location``), sorted."""
        return sorted(self._terms.get(type_, {}))

    def type_iri(self, type_: str) -> str:
        """The full IRI of a type's short name."""
        return self._type_iri[type_]

    def attribute(self, contract: str, field: str) -> tuple[str, str]:
        """``(term, IRI)`` of a contract field: the model's attribute, or the field in camel case."""
        model = SDM_TYPES.get(contract)
        if model is not None and field in model.attributes:
            term = model.attributes[field]
            return term, model.iri(term)
        term = camel(field)
        return term, f"urn:citybus:contract:{contract}#{term}"

    def context(self) -> dict[str, Any]:
        """The JSON-LD term definitions of every type, each with its attributes in a type-scoped
        context (JSON-LD 1.1), so that ``dateObserved`` of a WeatherObserved and of an
        AirQualityObserved expand to each model's own IRI (without the core context)."""
        terms: dict[str, Any] = {"@version": 1.1}
        for short in self.types():
            scoped = dict(sorted(self._terms.get(short, {}).items()))
            terms[short] = {"@id": self._type_iri[short], "@context": scoped}
        return terms


def context_document(vocabulary: Vocabulary) -> dict[str, Any]:
    """The ``@context`` document the gateway serves at ``/ngsi-ld/v1/context.jsonld``: every term's
    full IRI, then the NGSI-LD core context (last, as the specification wants it)."""
    return {"@context": [vocabulary.context(), CORE_CONTEXT]}
