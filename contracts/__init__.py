"""citybus's shared message contracts: what every producer and consumer on the bus speaks.

Each contract is a frozen msgspec Struct declared with :func:`contract`, one module per domain
(``environment``, ``mobility``, ``community``, ``operations`` and ``citybus`` for the bus's own
messages); importing this package registers all built-in contracts in :func:`default_registry`.
This package does no I/O and imports nothing from ``bus``, ``adapters`` or ``sandbox``.
"""

from contracts.base import (
    Classification,
    Contract,
    ContractError,
    ContractInfo,
    contract,
    measure,
    validate,
)
from contracts.citybus import DeadLetter, PersonalDeadLetter
from contracts.community import VolunteerSignup
from contracts.compat import (
    Breaking,
    BreakingKind,
    check,
    dump_snapshot,
    load_snapshot,
    save_snapshot,
    snapshot,
)
from contracts.environment import (
    AirQualityObserved,
    BeachNeighbours,
    BeachObservation,
    ForecastStep,
    Neighbour,
    SensorAlert,
    SensorProblem,
    WeatherForecast,
    WeatherObserved,
)
from contracts.fields import GeoPoint, Latitude, Longitude, Slug, Timestamp
from contracts.journey import (
    Journey,
    JourneyLeg,
    JourneyPlan,
    JourneyRequest,
    JourneyStatus,
    LegMode,
    PlaceRef,
    TimeKnown,
)
from contracts.mobility import (
    BikeStation,
    BikeStationStatus,
    CallStatus,
    Quay,
    StopPlace,
    TrainCall,
    TransportMode,
)
from contracts.operations import DeviceState, DeviceStatus
from contracts.registry import (
    CITY_PACKAGE,
    CONTRACTS_GROUP,
    RESERVED_DOMAINS,
    Registry,
    UnknownContractError,
    city_domains,
    default_registry,
    installed_packages,
    load_installed_contracts,
    package_name,
    package_of,
)
from contracts.schema import json_schema, normalise_descriptions, schema_components

__all__ = [
    "AirQualityObserved",
    "BeachNeighbours",
    "BeachObservation",
    "BikeStation",
    "BikeStationStatus",
    "Breaking",
    "BreakingKind",
    "CITY_PACKAGE",
    "CONTRACTS_GROUP",
    "CallStatus",
    "Classification",
    "Contract",
    "ContractError",
    "ContractInfo",
    "DeadLetter",
    "DeviceState",
    "DeviceStatus",
    "ForecastStep",
    "GeoPoint",
    "Journey",
    "JourneyLeg",
    "JourneyPlan",
    "JourneyRequest",
    "JourneyStatus",
    "Latitude",
    "LegMode",
    "Longitude",
    "Neighbour",
    "PersonalDeadLetter",
    "PlaceRef",
    "Quay",
    "RESERVED_DOMAINS",
    "Registry",
    "SensorAlert",
    "SensorProblem",
    "Slug",
    "StopPlace",
    "TimeKnown",
    "Timestamp",
    "TrainCall",
    "TransportMode",
    "UnknownContractError",
    "VolunteerSignup",
    "WeatherForecast",
    "WeatherObserved",
    "check",
    "city_domains",
    "contract",
    "default_registry",
    "dump_snapshot",
    "installed_packages",
    "json_schema",
    "load_installed_contracts",
    "load_snapshot",
    "measure",
    "normalise_descriptions",
    "package_name",
    "package_of",
    "save_snapshot",
    "schema_components",
    "snapshot",
    "validate",
]
