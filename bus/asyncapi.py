"""One AsyncAPI 3.0 document for every subject on the bus, with the CloudEvents headers.

The document describes the bus from a client's side: for each contract there is a channel
(``city.<classification>.<domain>.<event>.{entity}``), a message with the CloudEvents headers and
the contract's JSON Schema as payload, and a ``send`` and a ``receive`` operation.
"""

from __future__ import annotations

import inspect
from typing import Any

from bus import subjects
from bus.envelope import CONTENT_TYPES, Provenance
from bus.personal.vault import REF_PATTERN
from contracts import Contract, Registry, schema_components

__all__ = ["asyncapi_document", "headers_schema"]

_REF = "#/components/schemas/{name}"


def headers_schema() -> dict[str, Any]:
    """JSON Schema of the CloudEvents 1.0 binary-mode headers every message carries."""
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["ce-specversion", "ce-id", "ce-source", "ce-type"],
        "properties": {
            "ce-specversion": {"const": "1.0", "description": "CloudEvents version"},
            "ce-id": {**text, "description": "Unique id of the event; also Nats-Msg-Id for dedupe"},
            "ce-source": {**text, "format": "uri-reference", "description": "Who produced it"},
            "ce-type": {**text, "description": "<contract name>.v<major version>"},
            "ce-time": {**text, "format": "date-time", "description": "When it happened (UTC)"},
            "ce-dataschema": {**text, "format": "uri", "description": "URN of the contract's schema"},
            "ce-provenance": {
                "enum": [p.value for p in Provenance],
                "description": "Where the values come from",
            },
            "content-type": {"enum": sorted(CONTENT_TYPES.values())},
            "Nats-Msg-Id": {**text, "description": "Equals ce-id; JetStream drops duplicates"},
            "citybus-person": {
                **text,
                "pattern": REF_PATTERN,
                "description": "On a sealed personal message: the ref of the person it is about; "
                "the body is AES-256-GCM ciphertext under that person's key, opened by citybus",
            },
        },
    }


def _key(cls: type[Contract]) -> str:
    info = cls.__contract__
    return f"{info.name}.v{info.version}".replace(".", "_")


def _reply_of(registry: Registry, name: str) -> str | None:
    """The channel key of the newest version of the contract ``name`` in ``registry``."""
    found = [cls for cls in registry if cls.__contract__.name == name]
    return _key(max(found, key=lambda c: c.__contract__.version)) if found else None


def asyncapi_document(registry: Registry, *, server_url: str = "nats://127.0.0.1:4222") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every contract in ``registry``."""
    classes = list(registry)
    # msgspec names a component after its class, qualified by module when two share a name (a
    # company's BeachObservation beside the city's): refer to each by the name msgspec chose.
    refs, components = schema_components(classes, ref_template=_REF)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls, payload in zip(classes, refs, strict=True):
        info = cls.__contract__
        key = _key(cls)
        description = inspect.cleandoc(cls.__doc__ or "")
        messages[key] = {
            "name": info.type,
            "title": info.name,
            "summary": cls.summary(),
            "contentType": CONTENT_TYPES["json"],
            "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
            "payload": dict(payload),
            "examples": [{"name": "example", "payload": dict(info.example)}],
            "x-citybus-classification": info.classification.value,
        }
        if info.sealed:
            messages[key]["x-citybus-sealed"] = True
            messages[key]["x-citybus-person"] = info.person
            if info.key == info.person:  # the subject names the person by the ref, never the id
                messages[key]["description"] = "The subject's entity is the person's ref (citybus-person)."
        exchange = info.exchange
        channels[key] = {
            # a reply goes to the requester's inbox, an address known only at run time
            "address": None
            if exchange == "reply"
            else (subjects.request_filter if exchange == "request" else subjects.contract_filter)(
                cls, "{entity}"
            ),
            "title": info.name,
            "description": description,
            "parameters": {
                "entity": {
                    "description": "The person's ref (citybus-person)"
                    if info.sealed and info.key == info.person
                    else f"The value of the `{info.key}` field"
                }
            },
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "tags": [{"name": info.classification.value}, {"name": info.domain}],
        }
        if exchange == "reply":
            del channels[key]["parameters"]
        if exchange == "reply":
            continue  # its operations are its request's
        message_ref = [{"$ref": f"#/channels/{key}/messages/{key}"}]
        answer = _reply_of(registry, info.reply) if info.reply else None
        for action in ("send", "receive"):
            operation: dict[str, Any] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{key}"},
                "messages": message_ref,
            }
            if answer is not None:
                operation["reply"] = {
                    "channel": {"$ref": f"#/channels/{answer}"},
                    "messages": [{"$ref": f"#/channels/{answer}/messages/{answer}"}],
                }
            operations[f"{action}_{key}"] = operation
    components["CloudEventsHeaders"] = headers_schema()
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "citybus",
            "version": "1",
            "description": (
                "The message bus of the Drammen smart-city testbed. Every message is a CloudEvents 1.0 "
                "event in binary mode (attributes in NATS headers) whose body is one of these contracts."
            ),
        },
        "defaultContentType": CONTENT_TYPES["json"],
        "servers": {"citybus": {"host": server_url.split("://", 1)[-1], "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components},
    }
