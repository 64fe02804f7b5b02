"""JSON Schema of the contracts, as msgspec generates it, annotated with what citybus knows.

Each schema carries the contract's name as ``title``, its docstring as ``description``, its
CloudEvents ``dataschema`` URN as ``$id``, an ``x-citybus`` object (name, version, classification,
key) and its example, so a schema alone is enough to publish or consume a contract.

Descriptions are normalised here (:func:`normalise_descriptions`), not left as msgspec prints them:
msgspec 0.23 began to dedent docstrings, and a recording built under one version then differed from
one built under another. What citybus ships and embeds (recordings, the AsyncAPI document, the ops
endpoints) must not change with what an unpinned library happens to print.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import msgspec

from contracts.base import Contract

__all__ = ["JSON_SCHEMA_DIALECT", "json_schema", "normalise_descriptions", "schema_components"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect msgspec generates."""


def json_schema(cls: type[Contract]) -> dict[str, Any]:
    """The contract's JSON Schema: one self-contained document, nested structs under ``$defs``."""
    generated = normalise_descriptions(msgspec.json.schema(cls))
    defs: dict[str, Any] = generated.get("$defs", {})
    ref: str = generated["$ref"]
    root_name = ref.rsplit("/", 1)[-1]
    root = dict(defs[root_name])
    others = {name: d for name, d in defs.items() if name != root_name}
    if _refers_to(others, ref) or _refers_to(root, ref):
        # A contract that contains itself keeps its definition for the inner references.
        others[root_name] = defs[root_name]
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, "$id": cls.__contract__.dataschema}
    schema.update(_annotate(cls, root))
    if others:
        schema["$defs"] = others
    return schema


def schema_components(
    classes: Iterable[type[Contract]],
    *,
    ref_template: str = "#/components/schemas/{name}",
) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """Schemas of many contracts sharing one set of components, e.g. for an AsyncAPI document.

    Returns one ``$ref`` per class (in the order given) and the components they refer to, keyed by
    class name; the components of contracts are annotated like :func:`json_schema`'s.
    """
    classes = tuple(classes)
    refs, components = msgspec.json.schema_components(classes, ref_template=ref_template)
    # msgspec leaves Python values (tuples) in defaults here; round-trip to plain JSON data.
    components = normalise_descriptions(msgspec.json.decode(msgspec.json.encode(components)))
    for cls, ref in zip(classes, refs, strict=True):
        name = ref["$ref"].rsplit("/", 1)[-1]
        components[name] = _annotate(cls, components[name])
    return refs, components


# Keywords whose values are data (an instance, a constant), not schemas: their "description" keys
# are a contract's fields, never documentation.
_DATA_KEYWORDS = frozenset({"examples", "default", "const", "enum", "x-citybus"})


def normalise_descriptions(schema: Any) -> Any:
    """``schema`` with every ``description`` cleaned as :func:`inspect.cleandoc` cleans a docstring.

    msgspec takes a nested struct's description from its docstring, as it is (before 0.23) or
    dedented (since): cleaned, both give the same text. Values of data keywords (``examples``,
    ``default``, ``const``, ``enum``) are left alone, and so are the schemas of properties that
    happen to be called ``description``.
    """
    if isinstance(schema, list):
        return [normalise_descriptions(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DATA_KEYWORDS:
            out[key] = value
        elif key == "description" and isinstance(value, str):
            out[key] = inspect.cleandoc(value)
        elif key in ("properties", "$defs", "patternProperties"):
            out[key] = {name: normalise_descriptions(sub) for name, sub in value.items()}
        else:
            out[key] = normalise_descriptions(value)
    return out


def _annotate(cls: type[Contract], schema: dict[str, Any]) -> dict[str, Any]:
    info = cls.__contract__
    annotated = {
        "title": info.name,
        "description": _docstring(cls),
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
        "x-citybus": {
            "name": info.name,
            "version": info.version,
            "classification": info.classification.value,
            "key": info.key,
            "type": info.type,
        },
        "examples": [msgspec.to_builtins(cls.example())],
    }
    return annotated


def _docstring(cls: type[Contract]) -> str:
    return inspect.cleandoc(cls.__doc__ or "")


def _refers_to(node: object, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers_to(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_refers_to(v, ref) for v in node)
    return False
