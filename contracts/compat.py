"""The compatibility check: did a contract change in a way that breaks consumers of its version?

A *snapshot* records, per ``name@version``, the contract's classification, key and the JSON
Schema of every field (``$ref`` to nested structs resolved, descriptions, titles, examples and
defaults stripped, so only what a consumer depends on is kept), plus whether the field is required.
:func:`check` compares a stored snapshot with the contracts as they are now and lists every
breaking change that kept its version, following the schema-registry rules msgspec documents:

* breaking — a contract version removed; its classification or key changed; a field removed or
  renamed (a rename shows as a removal); a field retyped or its constraints or unit changed; a new
  field without a default; an optional field made required. Nested structs follow the same rules.
* compatible — a new field with a default; a required field given a default; changed
  descriptions or examples; a new contract or a new version of one.

The snapshot of the built-in contracts ships as ``contracts/snapshot.json``: read it with
:func:`load_snapshot`, regenerate it with :func:`save_snapshot` when a change is intended.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any, Literal

import msgspec

from contracts.base import Contract
from contracts.registry import Registry, default_registry

__all__ = [
    "Breaking",
    "BreakingKind",
    "SNAPSHOT_FORMAT",
    "check",
    "dump_snapshot",
    "load_snapshot",
    "save_snapshot",
    "snapshot",
]

SNAPSHOT_FORMAT = 1
"""Version of the snapshot's own layout; bumped if the layout ever changes."""

BreakingKind = Literal[
    "contract-removed",
    "classification-changed",
    "key-changed",
    "field-removed",
    "field-retyped",
    "field-added-required",
    "field-now-required",
]

_PACKAGED = "snapshot.json"

# Keys that document a schema without constraining the data; changing them is compatible.
_DOCUMENTATION = frozenset({"description", "title", "examples", "default", "$comment"})


class Breaking(msgspec.Struct, frozen=True, kw_only=True):
    """One breaking change to a contract that kept its version number."""

    contract: str
    """The contract's name, e.g. ``environment.beach-observation``."""
    version: int
    """The version that changed."""
    field: str
    """The field, dotted for nested structs (``location.coordinates``); empty for the contract."""
    kind: BreakingKind
    message: str
    """What changed and what to do about it, naming the contract and the field."""

    def __str__(self) -> str:
        return self.message


class _Field(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    required: bool
    schema: dict[str, Any]


class _Contract(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    classification: str
    key: str
    object: dict[str, Any]
    fields: dict[str, _Field]


class _Snapshot(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: int
    contracts: dict[str, _Contract]


def snapshot(registry: Registry | None = None) -> dict[str, Any]:
    """The compatibility-relevant shape of every contract in ``registry`` (default: all), as JSON data."""
    registry = default_registry() if registry is None else registry
    contracts = {f"{cls.__contract__.name}@{cls.__contract__.version}": _contract(cls) for cls in registry}
    data: dict[str, Any] = msgspec.to_builtins(_Snapshot(format=SNAPSHOT_FORMAT, contracts=contracts))
    return data


def dump_snapshot(data: dict[str, Any]) -> str:
    """A snapshot as stable JSON text: sorted keys, two-space indent, a final newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_snapshot(path: str | Path | None = None) -> dict[str, Any]:
    """Read a stored snapshot: the one packaged with citybus unless a path is given."""
    if path is None:
        text = importlib.resources.files("contracts").joinpath(_PACKAGED).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def save_snapshot(path: str | Path | None = None, registry: Registry | None = None) -> Path:
    """Write the snapshot of ``registry`` (default: all contracts), by default over the packaged one.

    Run it when a contract changed on purpose and :func:`check` agrees the change is compatible
    (or the change got a new version); commit the file with the change.
    """
    target = Path(path) if path is not None else Path(__file__).with_name(_PACKAGED)
    target.write_text(dump_snapshot(snapshot(registry)), encoding="utf-8")
    return target


def check(stored: dict[str, Any], registry: Registry | None = None) -> list[Breaking]:
    """Every breaking change between a stored snapshot and the contracts in ``registry`` now.

    Raises ``ValueError`` if ``stored`` is not a snapshot. New contracts and new versions are not
    changes to anything stored, so they are never reported.
    """
    try:
        old = msgspec.convert(stored, type=_Snapshot)
    except msgspec.ValidationError as exc:
        raise ValueError(f"not a citybus contracts snapshot: {exc}") from exc
    if old.format != SNAPSHOT_FORMAT:
        raise ValueError(
            f"contracts snapshot has format {old.format}, this citybus reads format {SNAPSHOT_FORMAT}"
        )
    current = msgspec.convert(snapshot(registry), type=_Snapshot)
    found: list[Breaking] = []
    for ident, before in sorted(old.contracts.items()):
        name, _, v = ident.rpartition("@")
        version = int(v)
        after = current.contracts.get(ident)
        found.extend(_compare_contract(name, version, before, after))
    return found


# --- building a snapshot --------------------------------------------------------------------------


def _contract(cls: type[Contract]) -> _Contract:
    info = cls.__contract__
    generated = msgspec.json.schema(cls)
    defs: dict[str, Any] = generated.get("$defs", {})
    root = _flatten({"$ref": generated["$ref"]}, defs, frozenset())
    properties: dict[str, Any] = root.pop("properties", {})
    required = set(root.pop("required", ()))
    return _Contract(
        classification=info.classification.value,
        key=info.key,
        object=root,
        fields={
            name: _Field(required=name in required, schema=schema) for name, schema in properties.items()
        },
    )


_UNORDERED = ("anyOf", "oneOf")
"""Unions, whose members' order means nothing (msgspec 0.19 writes ``Optional[GeoPoint]`` null first,
0.23 object first): kept in an order of citybus's own, so neither a snapshot nor a check depends on it."""


def _member_order(member: Any) -> tuple[str, str]:
    """The order of union members: by their JSON type, then by their whole schema."""
    kind = member.get("type", "") if isinstance(member, dict) else ""
    return (kind if isinstance(kind, str) else json.dumps(kind), json.dumps(member, sort_keys=True))


def _flatten(node: Any, defs: dict[str, Any], seen: frozenset[str]) -> Any:
    """Resolve ``$ref``s into the schema and strip what only documents it."""
    if isinstance(node, list):
        return [_flatten(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        if name in seen:  # a struct containing itself: keep the reference by name
            return {"$ref": name, **_flatten(rest, defs, seen)}
        resolved = _flatten(defs[name], defs, seen | {name})
        return {**resolved, **_flatten(rest, defs, seen)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DOCUMENTATION:
            continue
        if key == "properties":
            out[key] = {field: _flatten(schema, defs, seen) for field, schema in value.items()}
        elif key == "required":
            out[key] = sorted(value)
        elif key == "enum":
            out[key] = sorted(value, key=lambda v: (type(v).__name__, v))
        elif key in _UNORDERED:
            out[key] = sorted((_flatten(v, defs, seen) for v in value), key=_member_order)
        else:
            out[key] = _flatten(value, defs, seen)
    return out


# --- comparing ------------------------------------------------------------------------------------


class _Change(msgspec.Struct, frozen=True):
    kind: BreakingKind
    field: str
    detail: str


def _compare_contract(name: str, version: int, before: _Contract, after: _Contract | None) -> list[Breaking]:
    label = f"{name} v{version}"
    nxt = version + 1

    def breaking(kind: BreakingKind, field: str, message: str) -> Breaking:
        return Breaking(contract=name, version=version, field=field, kind=kind, message=f"{label}: {message}")

    if after is None:
        return [
            breaking(
                "contract-removed",
                "",
                "the contract version was removed (consumers may still expect it: keep publishing it "
                "side by side with the new version until they have moved)",
            )
        ]
    found: list[Breaking] = []
    if before.classification != after.classification:
        found.append(
            breaking(
                "classification-changed",
                "",
                f"classification changed from {before.classification} to {after.classification} "
                f"(who may see a message is part of the contract: declare version {nxt})",
            )
        )
    if before.key != after.key:
        found.append(
            breaking(
                "key-changed",
                before.key,
                f"key changed from {before.key!r} to {after.key!r} "
                f"(it names the subjects consumers listen on: declare version {nxt})",
            )
        )
    changes = _compare_fields(before.fields, after.fields, "")
    if before.object != after.object:
        changes.append(_Change("field-retyped", "", _describe(before.object, after.object)))
    for change in changes:
        found.append(breaking(change.kind, change.field, _explain(change, nxt)))
    return found


def _explain(change: _Change, nxt: int) -> str:
    field = f"field {change.field!r}" if change.field else "the message object"
    match change.kind:
        case "field-removed":
            return f"{field} was removed (a removed or renamed field needs version {nxt})"
        case "field-added-required":
            return (
                f"new {field} is required (messages without it would be rejected: "
                f"give it a default, or declare version {nxt})"
            )
        case "field-now-required":
            return (
                f"{field} became required (messages without it would be rejected: "
                f"keep its default, or declare version {nxt})"
            )
        case _:
            return (
                f"{field} changed type or constraints ({change.detail}; a retyped field needs version {nxt})"
            )


def _compare_fields(before: dict[str, _Field], after: dict[str, _Field], prefix: str) -> list[_Change]:
    changes: list[_Change] = []
    for name in sorted(before.keys() | after.keys()):
        path = f"{prefix}.{name}" if prefix else name
        old, new = before.get(name), after.get(name)
        if new is None:
            changes.append(_Change("field-removed", path, ""))
        elif old is None:
            if new.required:
                changes.append(_Change("field-added-required", path, ""))
        else:
            if new.required and not old.required:
                changes.append(_Change("field-now-required", path, ""))
            changes.extend(_compare_schema(old.schema, new.schema, path))
    return changes


def _compare_schema(old: dict[str, Any], new: dict[str, Any], path: str) -> list[_Change]:
    if old == new:
        return []
    if _is_object(old) and _is_object(new):
        changes = _compare_fields(_fields_of(old), _fields_of(new), path)
        rest_old, rest_new = _without(old, "properties", "required"), _without(new, "properties", "required")
        if rest_old != rest_new:
            changes.append(_Change("field-retyped", path, _describe(rest_old, rest_new)))
        return changes
    # Descend into unions and arrays of the same shape, so a change deep inside is named there.
    for key, suffix in (("anyOf", ""), ("prefixItems", "[{i}]")):
        if isinstance(old.get(key), list) and isinstance(new.get(key), list):
            if len(old[key]) == len(new[key]) and _without(old, key) == _without(new, key):
                changes = []
                pairs = zip(old[key], new[key], strict=True)
                if key in _UNORDERED:  # a snapshot stored before unions were ordered, or by hand
                    pairs = zip(
                        sorted(old[key], key=_member_order), sorted(new[key], key=_member_order), strict=True
                    )
                for i, (a, b) in enumerate(pairs):
                    changes.extend(_compare_schema(a, b, path + suffix.format(i=i)))
                return changes
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        if _without(old, "items") == _without(new, "items"):
            return _compare_schema(old["items"], new["items"], f"{path}[]")
    return [_Change("field-retyped", path, _describe(old, new))]


def _is_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" and isinstance(schema.get("properties"), dict)


def _fields_of(schema: dict[str, Any]) -> dict[str, _Field]:
    required = set(schema.get("required", ()))
    return {name: _Field(required=name in required, schema=sub) for name, sub in schema["properties"].items()}


def _without(schema: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in keys}


def _describe(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = []
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            parts.append(f"{key}: {_show(old, key)} -> {_show(new, key)}")
    return ", ".join(parts)


def _show(schema: dict[str, Any], key: str) -> str:
    if key not in schema:
        return "unset"
    text = json.dumps(schema[key], sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
