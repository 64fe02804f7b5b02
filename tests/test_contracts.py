"""The built-in contracts: every one round-trips, validates, documents itself and stays I/O-free."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import instances

import contracts
from contracts import (
    Classification,
    Contract,
    ContractError,
    GeoPoint,
    Registry,
    UnknownContractError,
    contract,
    default_registry,
    json_schema,
    measure,
    normalise_descriptions,
    schema_components,
)

PACKAGE = Path(contracts.__file__).parent
BUILTIN = [cls for cls in default_registry() if cls.__module__.startswith("contracts.")]
EXPECTED = {
    "citybus.dead-letter.v1": ("internal", "reason"),
    "community.volunteer-signup.v1": ("personal", "volunteer_id"),
    "community.volunteer-activity.v1": ("personal", "volunteer_id"),
    "community.opportunity.v1": ("public", "opportunity_id"),
    "community.opportunity-offer.v1": ("internal", "organisation"),
    "community.opportunity-receipt.v1": ("internal", "organisation"),
    "community.signup-request.v1": ("personal", "opportunity_id"),
    "community.signup-receipt.v1": ("personal", "opportunity_id"),
    "community.roster-request.v1": ("personal", "organisation"),
    "community.roster.v1": ("personal", "organisation"),
    "citybus.personal-export-request.v1": ("personal", "case"),
    "citybus.personal-export.v1": ("personal", "case"),
    "citybus.erasure-request.v1": ("personal", "case"),
    "citybus.erasure-receipt.v1": ("personal", "case"),
    "citybus.erasure-record.v1": ("internal", "case"),
    "citybus.personal-dead-letter.v1": ("personal", "reason"),
    "environment.air-quality-observed.v1": ("public", "station"),
    "environment.beach-neighbours.v1": ("public", "site"),
    "environment.beach-observation.v1": ("public", "site"),
    "environment.sensor-alert.v1": ("public", "sensor"),
    "environment.weather-forecast.v1": ("public", "place"),
    "environment.weather-observed.v1": ("public", "station"),
    "mobility.bike-station.v1": ("public", "station_id"),
    "mobility.bike-station-status.v1": ("public", "station_id"),
    "mobility.journey-plan.v1": ("public", "request_id"),
    "mobility.journey-request.v1": ("public", "request_id"),
    "mobility.stop-place.v1": ("public", "stop_place"),
    "mobility.train-call.v1": ("public", "stop_place"),
    "operations.device-status.v1": ("internal", "device"),
    "statistics.aggregate.v1": ("public", "dataset"),
    "statistics.release-request.v1": ("internal", "dataset"),
    "statistics.release-receipt.v1": ("internal", "dataset"),
    "statistics.comparison-request.v1": ("personal", "person_id"),
    "statistics.comparison.v1": ("personal", "person_id"),
}


def _id(cls: type[Contract]) -> str:
    return cls.__contract__.type


each_contract = pytest.mark.parametrize("cls", BUILTIN, ids=_id)


def test_importing_contracts_registers_every_builtin_contract() -> None:
    declared = {
        cls.__contract__.type: (cls.__contract__.classification.value, cls.__contract__.key)
        for cls in BUILTIN
    }
    assert declared == EXPECTED


# --- round trips ----------------------------------------------------------------------------------


@each_contract
def test_example_round_trips_over_json(cls: type[Contract]) -> None:
    example = cls.example()
    assert msgspec.json.Decoder(cls).decode(msgspec.json.encode(example)) == example


@each_contract
def test_example_round_trips_over_msgpack(cls: type[Contract]) -> None:
    example = cls.example()
    assert msgspec.msgpack.Decoder(cls).decode(msgspec.msgpack.encode(example)) == example


@each_contract
def test_example_encodes_to_what_the_contract_declares(cls: type[Contract]) -> None:
    body = msgspec.json.decode(msgspec.json.encode(cls.example()))
    declared = msgspec.json.decode(msgspec.json.encode(cls.__contract__.example))
    assert {k: v for k, v in body.items() if k in declared} == declared


@each_contract
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_valid_instance_round_trips_over_json_and_msgpack(
    cls: type[Contract], data: st.DataObject
) -> None:
    instance = data.draw(instances(cls))
    assert msgspec.json.Decoder(cls).decode(msgspec.json.encode(instance)) == instance
    assert msgspec.msgpack.Decoder(cls).decode(msgspec.msgpack.encode(instance)) == instance


@each_contract
def test_example_entity_is_a_usable_subject_token(cls: type[Contract]) -> None:
    entity = cls.example().entity()
    assert entity
    assert not set(entity) & set(" .*>\t\n")


# --- invalid values are rejected, naming the field ------------------------------------------------

# Wrong in shape for every field type there is: nothing expects a list holding a list.
WRONG_SHAPE: Any = [[]]


def _unwrap(t: mi.Type) -> list[mi.Type]:
    """The non-null alternatives of a field's type, metadata removed."""
    if isinstance(t, mi.Metadata):
        return _unwrap(t.type)
    if isinstance(t, mi.UnionType):
        return [u for member in t.types for u in _unwrap(member)]
    return [] if isinstance(t, mi.NoneType) else [t]


def _violations(t: mi.Type) -> list[tuple[str, Any]]:
    """Values that have the field's shape but break one of its constraints, with what they break."""
    out: list[tuple[str, Any]] = []
    for member in _unwrap(t):
        if isinstance(member, mi.FloatType | mi.IntType):
            step = 1 if isinstance(member, mi.IntType) else 0.5
            for bound, value in (
                ("ge", None if member.ge is None else member.ge - step),
                ("gt", member.gt),
                ("le", None if member.le is None else member.le + step),
                ("lt", member.lt),
            ):
                if value is not None:
                    out.append((bound, value))
        elif isinstance(member, mi.StrType):
            if member.pattern is not None:
                out.append(("pattern", "NOT VALID !"))
            if member.min_length:
                out.append(("min_length", ""))
            if member.max_length is not None:
                out.append(("max_length", "a" * (member.max_length + 1)))
        elif isinstance(member, mi.DateTimeType) and member.tz:
            out.append(("tz", "2018-08-29T10:00:00"))
        elif isinstance(member, mi.LiteralType):
            out.append(("literal", "not-one-of-them"))
    return out


def _fields(cls: type[Contract]) -> tuple[mi.Field, ...]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info.fields


INVALID = [
    pytest.param(cls, field.encode_name, value, id=f"{_id(cls)}-{field.name}-{what}")
    for cls in BUILTIN
    for field in _fields(cls)
    for what, value in [("wrong-shape", WRONG_SHAPE), *_violations(field.type)]
]


@pytest.mark.parametrize(("cls", "field", "value"), INVALID)
def test_invalid_value_is_rejected_naming_the_field(cls: type[Contract], field: str, value: Any) -> None:
    body = msgspec.to_builtins(cls.example())
    body[field] = value
    with pytest.raises(msgspec.ValidationError) as excinfo:
        msgspec.json.Decoder(cls).decode(msgspec.json.encode(body))
    assert f"$.{field}" in str(excinfo.value)


def test_missing_required_field_is_rejected_naming_it() -> None:
    body = msgspec.to_builtins(contracts.BeachObservation.example())
    del body["water_temperature"]
    with pytest.raises(msgspec.ValidationError, match="missing required field `water_temperature`"):
        msgspec.json.decode(msgspec.json.encode(body), type=contracts.BeachObservation)


def test_nested_invalid_value_is_rejected_naming_the_path() -> None:
    body = msgspec.to_builtins(contracts.BeachObservation.example())
    body["location"] = {"type": "Point", "coordinates": [10.2138, 97.0]}
    with pytest.raises(msgspec.ValidationError, match=r"\$\.location\.coordinates\[1\]"):
        msgspec.json.decode(msgspec.json.encode(body), type=contracts.BeachObservation)


def test_a_beach_reading_without_the_optional_measurements_is_valid() -> None:
    reading = msgspec.json.decode(
        b'{"site": "sota-fjordpark", "observed_at": "2018-08-29T12:00:00+02:00", "water_temperature": 16.6}',
        type=contracts.BeachObservation,
    )
    assert reading.air_temperature is None and reading.device is None and reading.location is None


def test_geo_point_is_geojson_with_longitude_first() -> None:
    point = GeoPoint.at(59.7409, 10.2138)
    assert msgspec.json.decode(msgspec.json.encode(point)) == {
        "type": "Point",
        "coordinates": [10.2138, 59.7409],
    }
    assert (point.latitude, point.longitude) == (59.7409, 10.2138)


@each_contract
def test_contracts_are_frozen(cls: type[Contract]) -> None:
    example = cls.example()
    field = cls.__struct_fields__[0]
    with pytest.raises(AttributeError):
        setattr(example, field, getattr(example, field))


# --- declaring contracts --------------------------------------------------------------------------


class _Reading(Contract, frozen=True, kw_only=True):
    """A reading used to test declarations."""

    site: str
    value: Annotated[float, measure("A value", unit="CEL", ge=0, le=10)]


_EXAMPLE = {"site": "bragernes-strand", "value": 1.0}


def _declare(cls: type[Contract], **overrides: Any) -> type[Contract]:
    """Declare a fresh subclass of ``cls`` into a registry of its own."""
    options: dict[str, Any] = {
        "name": "test.reading",
        "version": 1,
        "classification": "public",
        "key": "site",
        "example": _EXAMPLE,
        "registry": Registry(),
    }
    options.update(overrides)
    name = options.pop("name")
    subclass = types.new_class(
        "Reading", (cls,), {"frozen": True, "kw_only": True}, lambda ns: ns.update(__doc__=cls.__doc__)
    )
    return contract(name, **options)(subclass)


def test_a_good_declaration_records_what_the_contract_is() -> None:
    registry = Registry()
    cls = _declare(_Reading, registry=registry)
    assert cls.__contract__.type == "test.reading.v1"
    assert cls.__contract__.dataschema == "urn:citybus:contract:test.reading:v1"
    assert cls.__contract__.classification is Classification.PUBLIC
    assert registry.get("test.reading") is cls
    assert cls not in default_registry()


@pytest.mark.parametrize(
    "name", ["reading", "Test.reading", "test.Reading", "test.reading.v1", "test_x.reading", "test.-x", ""]
)
def test_contract_rejects_a_bad_name(name: str) -> None:
    with pytest.raises(ContractError, match="<domain>.<event>"):
        _declare(_Reading, name=name)


def test_contract_rejects_version_zero() -> None:
    with pytest.raises(ContractError, match="version must be 1 or more"):
        _declare(_Reading, version=0)


def test_contract_rejects_an_unknown_classification() -> None:
    with pytest.raises(
        ContractError, match="classification 'secret' is not one of public, internal, personal"
    ):
        _declare(_Reading, classification="secret")


def test_contract_rejects_a_key_that_is_not_a_field() -> None:
    with pytest.raises(ContractError, match="key 'station' is not a field"):
        _declare(_Reading, key="station")


def test_contract_rejects_an_example_that_does_not_validate() -> None:
    with pytest.raises(ContractError, match=r"example does not validate.*\$\.value"):
        _declare(_Reading, example={"site": "bragernes-strand", "value": 11.0})


def test_contract_rejects_positional_fields() -> None:
    class Positional(Contract, frozen=True):
        """A contract whose fields can be passed by position."""

        site: str

    with pytest.raises(ContractError, match=r"frozen=True, kw_only=True"):
        contract("test.positional", version=1, classification="public", key="site", example={"site": "x"})(
            Positional
        )


def test_contract_rejects_a_mutable_struct() -> None:
    class Mutable(Contract, frozen=False, kw_only=True):  # type: ignore[misc]
        """A contract that could be changed after it was published."""

        site: str

    with pytest.raises(ContractError, match=r"frozen=True, kw_only=True"):
        contract("test.mutable", version=1, classification="public", key="site", example={"site": "x"})(
            Mutable
        )


def test_contract_rejects_a_class_without_docstring() -> None:
    class Undocumented(Contract, frozen=True, kw_only=True):
        site: str

    with pytest.raises(ContractError, match="needs a docstring"):
        contract("test.undocumented", version=1, classification="public", key="site", example={"site": "x"})(
            Undocumented
        )


def test_contract_rejects_a_class_that_is_not_a_contract() -> None:
    class Plain(msgspec.Struct, frozen=True, kw_only=True):
        """Not a contract."""

        site: str

    with pytest.raises(ContractError, match="must subclass Contract"):
        contract("test.plain", version=1, classification="public", key="site", example={"site": "x"})(
            Plain  # type: ignore[type-var]
        )


# --- the registry ---------------------------------------------------------------------------------


def test_registry_rejects_a_second_class_under_one_name_and_version() -> None:
    registry = Registry()
    first = _declare(_Reading, registry=registry)
    with pytest.raises(ValueError, match="test.reading v1 is declared twice"):
        _declare(_Reading, registry=registry)
    assert list(registry) == [first]


def test_registry_keeps_versions_side_by_side() -> None:
    registry = Registry()
    v1 = _declare(_Reading, registry=registry)
    v2 = _declare(_Reading, registry=registry, version=2)
    assert registry.get("test.reading") is v2
    assert registry.get("test.reading", 1) is v1
    assert registry.get("test.reading@1") is v1
    assert registry.by_type("test.reading.v2") is v2
    with pytest.raises(UnknownContractError, match="unknown contract test.reading v3"):
        registry.get("test.reading", 3)


def test_default_registry_finds_builtin_contracts_by_name_and_type() -> None:
    assert default_registry().get("environment.beach-observation") is contracts.BeachObservation
    assert default_registry().by_type("mobility.train-call.v1") is contracts.TrainCall
    assert (Classification.PERSONAL, "community") in default_registry().domains()


# --- JSON Schema ----------------------------------------------------------------------------------


def _walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(d for v in node.values() for d in _walk(v))]
    if isinstance(node, list):
        return [d for v in node for d in _walk(v)]
    return []


@each_contract
def test_json_schema_names_and_describes_the_contract(cls: type[Contract]) -> None:
    schema = json_schema(cls)
    info = cls.__contract__
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == info.dataschema
    assert schema["title"] == info.name
    assert schema["description"].startswith(cls.__doc__.strip().splitlines()[0])  # type: ignore[union-attr]
    assert schema["x-citybus"] == {
        "name": info.name,
        "version": info.version,
        "classification": info.classification.value,
        "key": info.key,
        "type": info.type,
    }
    assert msgspec.convert(schema["examples"][0], type=cls) == cls.example()
    json.dumps(schema)  # plain JSON data throughout


@each_contract
def test_json_schema_refs_resolve(cls: type[Contract]) -> None:
    schema = json_schema(cls)
    for node in _walk(schema):
        if "$ref" in node:
            assert node["$ref"].removeprefix("#/$defs/") in schema.get("$defs", {})


@each_contract
def test_every_field_is_described_and_every_quantity_has_a_unit(cls: type[Contract]) -> None:
    schema = json_schema(cls)
    for name, prop in schema["properties"].items():
        described = "description" in prop or any("description" in d for d in prop.get("anyOf", []))
        assert described, f"{cls.__contract__.name}: field {name!r} has no description"
    for node in _walk(schema):
        if node.get("type") == "number":
            assert "x-unit" in node, f"{cls.__contract__.name}: a number without a unit: {node}"


def test_units_are_kept_for_code_as_well() -> None:
    water = next(f for f in _fields(contracts.BeachObservation) if f.name == "water_temperature")
    assert isinstance(water.type, mi.Metadata)
    assert water.type.extra == {"unit": "CEL"}


def test_schema_components_share_nested_structs_and_annotate_contracts() -> None:
    refs, components = schema_components(BUILTIN)
    assert len(refs) == len(BUILTIN)
    assert "GeoPoint" in components
    for cls, ref in zip(BUILTIN, refs, strict=True):
        component = components[ref["$ref"].removeprefix("#/components/schemas/")]
        assert component["title"] == cls.__contract__.name
        assert component["x-citybus"]["classification"] == cls.__contract__.classification.value
    json.dumps(components)


def _descriptions(node: Any) -> list[str]:
    if isinstance(node, list):
        return [d for item in node for d in _descriptions(item)]
    if not isinstance(node, dict):
        return []
    found = [node["description"]] if isinstance(node.get("description"), str) else []
    return found + [d for key, value in node.items() if key != "examples" for d in _descriptions(value)]


def test_schemas_read_the_same_whatever_msgspec_prints_for_a_docstring() -> None:
    # msgspec before 0.23 gave a nested struct's docstring as written, since 0.23 dedented: the
    # schemas citybus ships and embeds in recordings must not change with it.
    indented = {"description": "A place.\n\n    GeoJSON puts longitude first.\n    "}
    dedented = {"description": "A place.\n\nGeoJSON puts longitude first."}
    assert normalise_descriptions(indented) == normalise_descriptions(dedented) == dedented
    for schema in [json_schema(cls) for cls in BUILTIN] + [schema_components(BUILTIN)[1]]:
        descriptions = _descriptions(schema)
        assert descriptions
        assert all(d == inspect.cleandoc(d) for d in descriptions)


def test_normalising_descriptions_leaves_data_and_fields_called_description_alone() -> None:
    schema = {
        "properties": {"description": {"type": "string", "description": "  What.\n    More."}},
        "examples": [{"description": "  kept\n    as it is"}],
        "default": {"description": "  kept"},
    }
    assert normalise_descriptions(schema) == {
        "properties": {"description": {"type": "string", "description": "What.\nMore."}},
        "examples": [{"description": "  kept\n    as it is"}],
        "default": {"description": "  kept"},
    }


# --- the package ----------------------------------------------------------------------------------


def test_all_is_sorted_and_lists_exactly_the_public_names() -> None:
    assert contracts.__all__ == sorted(contracts.__all__)
    public = {
        name
        for name, value in vars(contracts).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(contracts.__all__) == public


def test_every_builtin_contract_is_exported() -> None:
    for cls in BUILTIN:
        assert getattr(contracts, cls.__name__) is cls


def test_modules_declare_sorted_all() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = sys.modules[f"contracts.{path.stem}"]
        names = module.__all__
        assert names == sorted(names), path.name
        assert all(hasattr(module, n) for n in names), path.name


FORBIDDEN = ("bus", "adapters", "sandbox", "nats", "aiohttp", "prometheus_client", "structlog")


def test_contracts_source_imports_nothing_from_other_layers() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in FORBIDDEN, f"{path.name} imports {module}"


def test_importing_contracts_loads_no_other_layer() -> None:
    code = (
        f"import sys, contracts\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_validate_checks_what_the_constructor_does_not() -> None:
    from datetime import UTC, datetime

    from contracts import BeachObservation, validate

    when = datetime(2018, 8, 29, tzinfo=UTC)
    ok = BeachObservation(site="bragernes-strand", observed_at=when, water_temperature=15.7)
    assert validate(ok) == ok
    hot = msgspec.structs.replace(ok, water_temperature=60.0)  # built without complaint...
    with pytest.raises(msgspec.ValidationError, match="water_temperature"):
        validate(hot)  # ...refused by the contract's bound
