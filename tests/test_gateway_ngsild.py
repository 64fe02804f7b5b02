"""The gateway's read-only NGSI-LD view: the mapping of contracts to Smart Data Models entities.

The HTTP half (further down) runs the real gateway on a real nats-server and reads it with
``ngsildclient``, an NGSI-LD client library from the FIWARE ecosystem, as well as with plain
requests for what the library does not ask.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters.gateway.ngsild_entity import Reading, entity_id, split_entity_id, to_entity, utc
from adapters.gateway.query import BadQuery, parse_coordinates, parse_georel, parse_id_pattern
from adapters.gateway.sdm import CORE_CONTEXT, Vocabulary, camel, context_document
from contracts import (
    AirQualityObserved,
    BeachObservation,
    BikeStationStatus,
    Classification,
    TrainCall,
    WeatherObserved,
    default_registry,
)

TIME = "2018-08-29T10:00:00+02:00"


def json_of(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity as a client receives it (JSON has arrays, not tuples)."""
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(entity))
    return decoded


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary(
        c for c in default_registry() if c.__contract__.classification != Classification.PERSONAL
    )


def test_contracts_map_to_their_smart_data_models_types(vocabulary: Vocabulary) -> None:
    assert vocabulary.type_of("environment.beach-observation") == "WaterQualityObserved"
    assert vocabulary.type_of("environment.air-quality-observed") == "AirQualityObserved"
    assert vocabulary.type_of("environment.weather-observed") == "WeatherObserved"
    assert vocabulary.type_of("mobility.bike-station-status") == "BikeHireDockingStation"
    # a contract no model fits keeps a citybus type named after its event
    assert vocabulary.type_of("mobility.train-call") == "TrainCall"
    assert vocabulary.contract_of("BikeHireDockingStation") == "mobility.bike-station-status"
    iri = "https://smartdatamodels.org/dataModel.Environment/WaterQualityObserved"
    assert vocabulary.contract_of(iri) == "environment.beach-observation"
    assert vocabulary.contract_of("NoSuchType") is None
    assert "VolunteerSignup" not in vocabulary.types()  # personal contracts have no NGSI-LD face


def test_the_context_gives_full_iris_scoped_per_type(vocabulary: Vocabulary) -> None:
    document = context_document(vocabulary)
    terms, core = document["@context"]
    assert core == CORE_CONTEXT
    water = terms["WaterQualityObserved"]
    assert water["@id"] == "https://smartdatamodels.org/dataModel.Environment/WaterQualityObserved"
    assert water["@context"]["temperature"] == "https://smartdatamodels.org/dataModel.Environment/temperature"
    weather = terms["WeatherObserved"]["@context"]
    assert weather["dateObserved"] == "https://smartdatamodels.org/dataModel.Weather/dateObserved"
    assert (
        terms["TrainCall"]["@context"]["delaySeconds"]
        == "urn:citybus:contract:mobility.train-call#delaySeconds"
    )
    assert "location" not in water["@context"]  # the core context's GeoProperty, never redefined
    msgspec.json.encode(document)  # plain JSON all the way down


def test_a_beach_observation_is_a_normalized_water_quality_entity(vocabulary: Vocabulary) -> None:
    entity = json_of(to_entity(vocabulary, [Reading(data=BeachObservation.example(), time=TIME)]))
    assert entity["id"] == "urn:ngsi-ld:WaterQualityObserved:bragernes-strand"
    assert entity["type"] == "WaterQualityObserved"
    assert entity["temperature"] == {
        "type": "Property",
        "value": 15.7,
        "unitCode": "CEL",
        "observedAt": "2018-08-29T08:00:00Z",
    }
    assert entity["uvIndex"]["unitCode"] == "C62"
    assert entity["battery"]["unitCode"] == "P1"
    assert entity["dateObserved"]["value"] == {"@type": "DateTime", "@value": "2018-08-29T08:00:00Z"}
    assert entity["location"] == {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [10.2138, 59.7409]},
    }
    assert "site" not in entity  # the key is the id
    assert "source" not in entity  # absent stays absent, never null


def test_key_values_and_concise_shapes(vocabulary: Vocabulary) -> None:
    reading = Reading(data=BikeStationStatus.example(), time=TIME)
    simple = json_of(to_entity(vocabulary, [reading], fmt="keyValues"))
    assert simple["availableBikeNumber"] == 7
    assert simple["freeSlotNumber"] == 17
    assert simple["totalSlotNumber"] == 24
    assert simple["location"] == {"type": "Point", "coordinates": [10.2046, 59.7446]}
    assert simple["observationDate"] == "2018-08-29T08:00:00Z"
    concise = json_of(to_entity(vocabulary, [reading], fmt="concise"))
    assert concise["availableBikeNumber"] == {"value": 7, "observedAt": "2018-08-29T08:00:00Z"}
    assert concise["location"] == {"value": {"type": "Point", "coordinates": [10.2046, 59.7446]}}


def test_air_quality_spreads_each_pollutant_into_its_own_attribute(vocabulary: Vocabulary) -> None:
    pm10 = AirQualityObserved.example()
    no2 = msgspec.structs.replace(pm10, component="NO2", value=31.5)
    newer_pm10 = msgspec.structs.replace(pm10, value=20.0)
    readings = [
        Reading(data=pm10, time="2018-08-29T09:00:00+02:00"),
        Reading(data=no2, time="2018-08-29T09:00:00+02:00"),
        Reading(data=newer_pm10, time=TIME),
    ]
    entity = to_entity(vocabulary, readings)
    assert entity["pm10"]["value"] == 20.0
    assert entity["pm10"]["unitCode"] == "GQ"
    assert entity["no2"] == {
        "type": "Property",
        "value": 31.5,
        "unitCode": "GQ",
        "observedAt": "2018-08-29T07:00:00Z",
    }
    assert "component" not in entity and "value" not in entity


def test_projection_keeps_only_the_attributes_asked_for(vocabulary: Vocabulary) -> None:
    entity = to_entity(
        vocabulary,
        [Reading(data=WeatherObserved.example(), time=TIME)],
        attrs=frozenset({"temperature"}),
    )
    assert set(entity) == {"id", "type", "temperature"}


def test_ids_round_trip_even_with_colons_in_the_entity() -> None:
    call = TrainCall.example()
    identifier = entity_id("TrainCall", call.entity())
    assert identifier == "urn:ngsi-ld:TrainCall:NSR:StopPlace:11"
    assert split_entity_id(identifier) == ("TrainCall", "NSR:StopPlace:11")
    assert split_entity_id("urn:other:TrainCall:x") is None
    assert split_entity_id("urn:ngsi-ld:TrainCall") is None


def test_times_become_utc() -> None:
    assert utc("2018-08-29T10:00:00+02:00") == "2018-08-29T08:00:00Z"
    assert utc("2018-08-29T08:00:00Z") == "2018-08-29T08:00:00Z"


def test_camel_case() -> None:
    assert camel("uv_index") == "uvIndex"
    assert camel("station") == "station"


def test_geo_queries_parse_strictly() -> None:
    query = parse_georel("near;maxDistance==500", "Point", "[10.2046,59.7446]")
    assert query is not None
    assert (query.near.lat, query.near.lon, query.near.radius) == (59.7446, 10.2046, 500.0)
    assert parse_georel(None, None, None) is None
    for georel, geometry, coordinates, said in [
        ("within", "Polygon", "[[1,2]]", "geometry='Polygon' is not supported"),
        ("near;maxDistance==x", "Point", "[10,59]", "is not supported"),
        ("near;maxDistance==500", "Point", "[59.7,100.2]", "latitude 100.2 is out of range"),
        ("near;maxDistance==500", None, "[10,59]", "together"),
    ]:
        with pytest.raises(BadQuery, match=said):
            parse_georel(georel, geometry, coordinates)


def test_coordinates_refuse_nesting_and_size_in_constant_work() -> None:
    with pytest.raises(BadQuery, match="far too long"):
        parse_coordinates("[" * 100_000)
    with pytest.raises(BadQuery, match=r"must be a Point's \[lon,lat\]"):
        parse_coordinates("[[[[[[1]]]]]]")


def test_id_patterns_refuse_catastrophic_backtracking() -> None:
    assert parse_id_pattern("urn:ngsi-ld:TrainCall:.*").fullmatch("urn:ngsi-ld:TrainCall:NSR:StopPlace:11")
    with pytest.raises(BadQuery, match="nesting quantifiers"):
        parse_id_pattern("(a+)+$")
    with pytest.raises(BadQuery, match="not a regular expression"):
        parse_id_pattern("urn:(")
