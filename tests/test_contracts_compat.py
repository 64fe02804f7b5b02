"""The compatibility check: what breaks consumers of a contract version, and what does not."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest
from msgspec import Meta

from contracts import (
    Breaking,
    Contract,
    Registry,
    Timestamp,
    check,
    contract,
    default_registry,
    dump_snapshot,
    load_snapshot,
    measure,
    save_snapshot,
    snapshot,
)

NAME = "test.beach-observation"
DOC = "A reading of the water at a bathing site, for the compatibility tests."

Water = Annotated[float, measure("Temperature of the water", unit="CEL", ge=-2, le=40)]
Battery = Annotated[float, measure("Battery left", unit="%", ge=0, le=100)]
Status = Literal["ok", "degraded"]


def place(*fields: tuple[Any, ...], doc: str = "Where it was measured.") -> type[msgspec.Struct]:
    """A nested struct; a fresh class each time, like a new version of a module would define."""
    return msgspec.defstruct("Place", fields, kw_only=True, frozen=True, namespace={"__doc__": doc})


PLACE = (("name", str), ("lat", Annotated[float, measure("Latitude", unit="deg", ge=-90, le=90)]))

BASE: dict[str, tuple[Any, ...]] = {
    "site": ("site", Annotated[str, Meta(description="The bathing site")]),
    "observed_at": ("observed_at", Annotated[Timestamp, Meta(description="When")]),
    "water_temperature": ("water_temperature", Water),
    "battery": ("battery", Battery | None, None),
    "status": ("status", Status, "ok"),
    "tags": ("tags", tuple[str, ...], ()),
    "place": ("place", place(*PLACE) | None, None),
}
EXAMPLE: dict[str, Any] = {
    "site": "bragernes-strand",
    "observed_at": "2018-08-29T10:00:00+02:00",
    "water_temperature": 15.7,
}


def declare(
    *,
    replace: dict[str, tuple[Any, ...] | None] | None = None,
    add: Sequence[tuple[Any, ...]] = (),
    name: str = NAME,
    version: int = 1,
    classification: str = "public",
    key: str = "site",
    example: dict[str, Any] | None = None,
    doc: str = DOC,
    registry: Registry | None = None,
) -> Registry:
    """Declare the test contract (or a variant of it) into a registry of its own."""
    fields = dict(BASE)
    for field, spec in (replace or {}).items():
        if spec is None:
            del fields[field]
        else:
            fields[field] = spec
    cls: type[Contract] = msgspec.defstruct(  # type: ignore[assignment]
        "BeachObservation",
        [*fields.values(), *add],
        bases=(Contract,),
        kw_only=True,
        frozen=True,
        namespace={"__doc__": doc},
    )
    registry = Registry() if registry is None else registry
    contract(
        name,
        version=version,
        classification=classification,
        key=key,
        example=EXAMPLE if example is None else example,
        registry=registry,
        # A personal event must say how long it may be kept.
        retention=timedelta(days=30) if classification == "personal" else None,
    )(cls)
    return registry


STORED = snapshot(declare())


def breaks(registry: Registry) -> list[tuple[str, str]]:
    return [(b.kind, b.field) for b in check(STORED, registry)]


# --- the committed snapshot -----------------------------------------------------------------------


def builtin_registry() -> Registry:
    """The built-in contracts only, whatever other tests declared into the default registry."""
    registry = Registry()
    for cls in default_registry():
        if cls.__module__.startswith("contracts."):
            registry.add(cls)
    return registry


def test_builtin_contracts_are_compatible_with_the_committed_snapshot() -> None:
    found = check(load_snapshot(), builtin_registry())
    assert not found, "\n".join(str(b) for b in found)


def recorded(data: dict[str, Any]) -> dict[str, Any]:
    """What a snapshot records that a contract's author decides: which contracts, their class and
    key, their fields and which are required. How each field's schema is written is msgspec's to
    print, and may change with its version without any contract changing, so it is compared by
    :func:`check` (no breaking change), not by text."""
    return {
        ident: (entry["classification"], entry["key"], {f: v["required"] for f, v in entry["fields"].items()})
        for ident, entry in data["contracts"].items()
    }


def test_committed_snapshot_is_up_to_date() -> None:
    current = snapshot(builtin_registry())
    assert recorded(load_snapshot()) == recorded(current), (
        "contracts/snapshot.json is out of date: the contracts changed compatibly, so record them with "
        "python -c 'import contracts; contracts.save_snapshot()' and commit the file"
    )


def test_snapshot_is_stable_json() -> None:
    data = snapshot(builtin_registry())
    text = dump_snapshot(data)
    assert json.loads(text) == data
    assert text == dump_snapshot(snapshot(builtin_registry()))
    assert text.endswith("}\n")
    assert set(data["contracts"]) == {
        f"{c.__contract__.name}@{c.__contract__.version}" for c in builtin_registry()
    }


def test_snapshot_records_what_consumers_depend_on() -> None:
    entry = STORED["contracts"][f"{NAME}@1"]
    assert entry["classification"] == "public"
    assert entry["key"] == "site"
    assert entry["fields"]["water_temperature"] == {
        "required": True,
        "schema": {"type": "number", "minimum": -2, "maximum": 40, "x-unit": "CEL"},
    }
    assert entry["fields"]["battery"]["required"] is False
    nested = next(m for m in entry["fields"]["place"]["schema"]["anyOf"] if m["type"] == "object")
    assert nested["properties"]["lat"]["x-unit"] == "deg"  # $ref resolved into the field
    assert "description" not in json.dumps(entry)


def test_save_and_load_a_snapshot(tmp_path: Path) -> None:
    path = save_snapshot(tmp_path / "snapshot.json", declare())
    assert load_snapshot(path) == STORED


def test_check_rejects_what_is_not_a_snapshot() -> None:
    with pytest.raises(ValueError, match="not a citybus contracts snapshot"):
        check({"contracts": []}, declare())
    with pytest.raises(ValueError, match="format 99"):
        check({**STORED, "format": 99}, declare())


# --- breaking changes -----------------------------------------------------------------------------


def test_no_change_is_compatible() -> None:
    assert check(STORED, declare()) == []


def test_removed_contract_version_breaks() -> None:
    (found,) = check(STORED, Registry())
    assert (found.kind, found.contract, found.version, found.field) == ("contract-removed", NAME, 1, "")
    assert found.message.startswith(f"{NAME} v1: the contract version was removed")


def test_replacing_a_version_by_the_next_one_still_breaks_the_old_one() -> None:
    assert breaks(declare(version=2)) == [("contract-removed", "")]


def test_changed_classification_breaks() -> None:
    (found,) = check(STORED, declare(classification="personal"))
    assert found.kind == "classification-changed"
    assert "classification changed from public to personal" in found.message
    assert "declare version 2" in found.message


def test_changed_key_breaks() -> None:
    (found,) = check(STORED, declare(key="status", example={**EXAMPLE, "status": "ok"}))
    assert found.kind == "key-changed"
    assert found.message == (
        f"{NAME} v1: key changed from 'site' to 'status' "
        "(it names the subjects consumers listen on: declare version 2)"
    )


def test_removed_field_breaks() -> None:
    (found,) = check(STORED, declare(replace={"battery": None}))
    assert found == Breaking(
        contract=NAME,
        version=1,
        field="battery",
        kind="field-removed",
        message=f"{NAME} v1: field 'battery' was removed (a removed or renamed field needs version 2)",
    )
    assert str(found) == found.message


def test_renamed_field_shows_as_removed() -> None:
    registry = declare(
        replace={"water_temperature": None},
        add=[("water_temp", Water)],
        example={**{k: v for k, v in EXAMPLE.items() if k != "water_temperature"}, "water_temp": 15.7},
    )
    assert breaks(registry) == [
        ("field-added-required", "water_temp"),
        ("field-removed", "water_temperature"),
    ]
    messages = [str(b) for b in check(STORED, registry)]
    assert (
        f"{NAME} v1: field 'water_temperature' was removed (a removed or renamed field needs version 2)"
        in messages
    )


@pytest.mark.parametrize(
    ("field", "spec", "detail"),
    [
        pytest.param("battery", str | None, 'type: "number" -> "string"', id="float-to-str"),
        pytest.param(
            "water_temperature",
            Annotated[float, measure("Temperature of the water", unit="CEL", ge=-2, le=50)],
            "maximum: 40 -> 50",
            id="bound-changed",
        ),
        pytest.param(
            "water_temperature",
            Annotated[float, measure("Temperature of the water", unit="K", ge=-2, le=40)],
            'x-unit: "CEL" -> "K"',
            id="unit-changed",
        ),
        pytest.param(
            "water_temperature",
            Annotated[float, measure("Temperature of the water", unit="CEL")],
            "maximum: 40 -> unset, minimum: -2 -> unset",
            id="bounds-dropped",
        ),
        pytest.param(
            "site",
            Annotated[str, Meta(pattern="^[a-z-]+$")],
            'pattern: unset -> "^[a-z-]+$"',
            id="pattern-added",
        ),
        pytest.param("battery", Battery, "anyOf", id="no-longer-nullable"),
        pytest.param("battery", Annotated[int, Meta(ge=0, le=100)], "type", id="float-to-int"),
        pytest.param(
            "status",
            Literal["ok", "degraded", "offline"],
            "enum",
            id="literal-widened",  # old consumers reject a value they do not know
        ),
    ],
)
def test_retyped_field_breaks(field: str, spec: Any, detail: str) -> None:
    default = BASE[field][2:]
    registry = declare(replace={field: (field, spec, *default)})
    found = check(STORED, registry)
    assert [(b.kind, b.field.split("[")[0]) for b in found] == [("field-retyped", field)]
    assert found[0].message.startswith(f"{NAME} v1: field '{found[0].field}' changed type or constraints (")
    assert detail in found[0].message
    assert found[0].message.endswith("a retyped field needs version 2)")


def test_new_required_field_breaks() -> None:
    registry = declare(add=[("depth", float)], example={**EXAMPLE, "depth": 0.5})
    (found,) = check(STORED, registry)
    assert (found.kind, found.field) == ("field-added-required", "depth")
    assert found.message == (
        f"{NAME} v1: new field 'depth' is required (messages without it would be rejected: "
        "give it a default, or declare version 2)"
    )


def test_optional_field_becoming_required_breaks() -> None:
    registry = declare(replace={"battery": ("battery", Battery | None)}, example={**EXAMPLE, "battery": 80.0})
    assert breaks(registry) == [("field-now-required", "battery")]


def test_list_items_retyped_breaks_naming_the_items() -> None:
    registry = declare(replace={"tags": ("tags", tuple[int, ...], ())})
    assert breaks(registry) == [("field-retyped", "tags[]")]


@pytest.mark.parametrize(
    ("nested", "expected"),
    [
        pytest.param(place(PLACE[0]), [("field-removed", "place.lat")], id="removed"),
        pytest.param(
            place(*PLACE, ("depth", float)), [("field-added-required", "place.depth")], id="new-required"
        ),
        pytest.param(place(PLACE[0], ("lat", float)), [("field-retyped", "place.lat")], id="retyped"),
        pytest.param(place(("name", str, ""), PLACE[1]), [], id="required-given-a-default"),
        pytest.param(place(*PLACE, ("depth", float | None, None)), [], id="new-optional"),
        pytest.param(place(*PLACE, doc="Somewhere else."), [], id="docstring"),
    ],
)
def test_nested_struct_changes_follow_the_same_rules(nested: type[msgspec.Struct], expected: Any) -> None:
    assert breaks(declare(replace={"place": ("place", nested | None, None)})) == expected


def test_every_breaking_change_is_reported_at_once() -> None:
    registry = declare(
        classification="internal",
        replace={"battery": None, "status": ("status", Literal["ok"], "ok")},
        add=[("depth", float)],
        example={**EXAMPLE, "depth": 1.0},
    )
    assert sorted(breaks(registry)) == [
        ("classification-changed", ""),
        ("field-added-required", "depth"),
        ("field-removed", "battery"),
        ("field-retyped", "status"),
    ]


# --- compatible changes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "registry",
    [
        pytest.param(lambda: declare(add=[("depth", float | None, None)]), id="new-optional-field"),
        pytest.param(lambda: declare(add=[("source", str, "sensor")]), id="new-field-with-default"),
        pytest.param(
            lambda: declare(
                replace={
                    "water_temperature": (
                        "water_temperature",
                        Annotated[float, measure("Water, measured 0.5 m down", unit="CEL", ge=-2, le=40)],
                    )
                }
            ),
            id="field-description",
        ),
        pytest.param(lambda: declare(doc="The water at a bathing site, said differently."), id="docstring"),
        pytest.param(lambda: declare(example={**EXAMPLE, "water_temperature": 17.3}), id="example"),
        pytest.param(lambda: declare(replace={"status": ("status", Status, "degraded")}), id="default-value"),
        pytest.param(
            lambda: declare(replace={"status": ("status", Literal["degraded", "ok"], "ok")}),
            id="literal-reordered",
        ),
        pytest.param(
            lambda: declare(replace={"water_temperature": ("water_temperature", Water, 0.0)}),
            id="required-given-a-default",
        ),
        pytest.param(
            lambda: declare(registry=declare(name="test.weather-observed")), id="new-contract-alongside"
        ),
        pytest.param(
            lambda: declare(
                version=2,
                replace={"battery": None, "water_temperature": None},
                add=[("temperature", Water)],
                example={"site": "x", "observed_at": "2018-08-29T10:00:00Z", "temperature": 1.0},
                registry=declare(),
            ),
            id="new-version-alongside",
        ),
    ],
)
def test_compatible_change_is_not_reported(registry: Any) -> None:
    assert check(STORED, registry()) == []


def test_fields_reordered_is_compatible() -> None:
    cls: type[Contract] = msgspec.defstruct(  # type: ignore[assignment]
        "BeachObservation",
        list(reversed(BASE.values())),
        bases=(Contract,),
        kw_only=True,
        frozen=True,
        namespace={"__doc__": DOC},
    )
    registry = Registry()
    contract(NAME, version=1, classification="public", key="site", example=EXAMPLE, registry=registry)(cls)
    assert check(STORED, registry) == []


def test_the_order_msgspec_writes_a_union_in_is_no_change() -> None:
    # msgspec 0.19 writes Optional[GeoPoint] null first, 0.23 object first: the same contract.
    stored = json.loads(json.dumps(STORED))
    for entry in stored["contracts"].values():
        for field in entry["fields"].values():
            if "anyOf" in field["schema"]:
                field["schema"]["anyOf"].reverse()
    assert check(stored, declare()) == []
    assert snapshot(declare()) == STORED  # and a snapshot is written in one order whatever msgspec's
