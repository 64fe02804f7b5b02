"""The catalogue as DCAT-AP-NO JSON-LD: the document :func:`catalogue_jsonld` writes from the
data sets :mod:`~adapters.gateway.catalogue` describes (what the profile requires, and how each
property is given, is in that module's docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from adapters.gateway.catalogue import CONTEXT, DRAMMEN, Dataset, Distribution, Publisher, plain
from adapters.gateway.fields import FieldRow

__all__ = ["catalogue_jsonld"]

_EU: Final = "http://publications.europa.eu/resource/authority/"
_IANA: Final = "https://www.iana.org/assignments/media-types/"
_NORWAY: Final = f"{_EU}country/NOR"
_DRAMMEN_CENTRE: Final = "POINT(10.2058 59.7453)"
"""Drammen's centre (59°44′43″ N 10°12′21″ E) as WKT, longitude first."""


def _iri(value: str) -> dict[str, str]:
    return {"@id": value}


def _text(value: str, language: str = "en") -> dict[str, str]:
    return {"@value": value, "@language": language}


def _when(epoch: float) -> dict[str, str]:
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"@value": moment, "@type": "xsd:dateTime"}


def _duration(seconds: float) -> dict[str, str]:
    return {"@value": f"PT{seconds:.3f}".rstrip("0").rstrip(".") + "S", "@type": "xsd:duration"}


def _spatial(base: str) -> list[dict[str, Any]]:
    """Norway (the EU country list) and Drammen, a place of the catalogue's own with its centre."""
    return [
        _iri(_NORWAY),
        {
            "@id": f"{base}/catalogue#drammen",
            "@type": "dct:Location",
            "rdfs:label": [_text("Drammen", "nb")],
            "dcat:centroid": {"@value": _DRAMMEN_CENTRE, "@type": "geo:wktLiteral"},
        },
    ]


def _agent(publisher: Publisher) -> dict[str, Any]:
    return {"@id": publisher.homepage, "@type": "foaf:Agent", "foaf:name": [_text(publisher.name, "nb")]}


def _contact(publisher: Publisher) -> dict[str, Any]:
    return {
        "@type": "vcard:Organization",
        "vcard:fn": publisher.name,
        "vcard:hasURL": _iri(publisher.homepage),
    }


def catalogue_jsonld(
    datasets: Sequence[Dataset], base_url: str, *, publisher: Publisher = DRAMMEN
) -> dict[str, Any]:
    """The DCAT-AP-NO catalogue of ``datasets`` as a JSON-LD document (see the module)."""
    base = base_url.rstrip("/")
    gateway = f"{base}/api/v1"
    served = [d for d in datasets if any(x.service == gateway for x in d.distributions)]
    times = [d.facts.last_stored for d in datasets if d.facts is not None and d.facts.last_stored]
    catalog: dict[str, Any] = {
        "@context": dict(CONTEXT),
        "@id": f"{base}/catalogue",
        "@type": "dcat:Catalog",
        "dct:identifier": f"{base}/catalogue",
        "dct:title": [
            _text("citybus: the city's data on the bus"),
            _text("citybus: byens data på bussen", "nb"),
        ],
        "dct:description": [
            _text(
                "Every data set that flows on citybus, the message bus of the Drammen smart-city testbed: "
                "public, internal and personal data kept apart, each with its schema, units, update rate, "
                "licence and the ways to get it."
            ),
            _text(
                "Alle datasett som flyter på citybus, meldingsbussen i Drammens testarena for smartby: "
                "åpne, interne og personlige data holdt atskilt.",
                "nb",
            ),
        ],
        "dct:publisher": _agent(publisher),
        "dcat:contactPoint": _contact(publisher),
        "foaf:homepage": _iri(f"{base}/"),
        "dct:language": [_iri(f"{_EU}language/ENG"), _iri(f"{_EU}language/NOB")],
        "dct:spatial": _spatial(base),
        "dcat:themeTaxonomy": _iri(f"{_EU}data-theme"),
        "dcat:service": [
            {
                "@id": gateway,
                "@type": "dcat:DataService",
                "dct:title": [_text("citybus HTTP and SSE gateway")],
                "dct:description": [
                    _text("Last values, short histories and live Server-Sent Events of the bus's data sets.")
                ],
                "dcat:endpointURL": _iri(gateway),
                "dct:publisher": _iri(publisher.homepage),
                "dcat:contactPoint": _contact(publisher),
                "dcat:servesDataset": [_iri(d.iri) for d in served],
            }
        ],
        "dcat:dataset": [_dataset_jsonld(d, publisher, base) for d in datasets],
    }
    if times:
        catalog["dct:modified"] = _when(max(times))
    return catalog


def _dataset_jsonld(d: Dataset, publisher: Publisher, base: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@id": d.iri,
        "@type": "dcat:Dataset",
        "dct:identifier": d.identifier,
        "dct:title": [_text(d.title)],
        "dct:description": [_text(plain(d.description))],
        "dct:publisher": _iri(publisher.homepage),
        "dcat:contactPoint": _contact(publisher),
        "dcat:theme": [_iri(f"{_EU}data-theme/{t}") for t in d.themes],
        "dcat:keyword": [_text(k) for k in d.keywords],
        "dct:accessRights": _iri(f"{_EU}access-right/{d.access_right}"),
        "dct:spatial": [_iri(_NORWAY), _iri(f"{base}/catalogue#drammen")],
        "dct:conformsTo": _schema_node(d),
        "dct:accrualPeriodicity": _iri(f"{_EU}frequency/UPDATE_CONT"),
        "dcat:version": str(d.version),
        "dct:provenance": {"@type": "dct:ProvenanceStatement", "rdfs:label": [_text(d.provenance_text())]},
        "cb:contract": d.name,
        "cb:classification": d.classification.value,
        "cb:subject": d.subject,
        "cb:fields": [_field_jsonld(f) for f in d.fields],
        "dcat:distribution": [_distribution_jsonld(d, x) for x in d.distributions],
    }
    if d.package:
        node["cb:package"] = d.package
    if d.attribution is not None:
        node["cc:attributionName"] = d.attribution.credit
        node["dct:rights"] = {
            "@type": "dct:RightsStatement",
            "rdfs:label": [_text(f"Credit: {d.attribution.credit}. {d.attribution.source}.")],
        }
    if d.synthetic:
        node["dct:type"] = _iri(f"{_EU}dataset-type/SYNTHETIC_DATA")
    facts = d.facts
    if facts is not None and facts.unreadable is None:
        node["cb:entities"] = len(facts.entities)
        node["cb:messages"] = facts.messages
        if facts.rate_per_hour is not None:
            node["cb:messagesPerHour"] = round(facts.rate_per_hour, 3)
        if facts.interval is not None:
            node["dcat:temporalResolution"] = _duration(facts.interval)
        if facts.last_stored is not None:
            node["dct:modified"] = _when(facts.last_stored)
    return node


def _schema_node(d: Dataset) -> dict[str, Any]:
    return {
        "@id": d.schema_url,
        "@type": "dct:Standard",
        "dct:title": [_text(f"JSON Schema of {d.identifier}")],
    }


def _field_jsonld(f: FieldRow) -> dict[str, Any]:
    node: dict[str, Any] = {"cb:name": f.name, "cb:type": f.type, "cb:required": f.required}
    if f.unit is not None:
        node["cb:unit"] = f.unit
    if f.description:
        node["dct:description"] = [_text(f.description)]
    return node


def _distribution_jsonld(d: Dataset, x: Distribution) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@type": "dcat:Distribution",
        "dct:title": [_text(x.title)],
        "dct:description": [_text(x.description)],
        "dcat:accessURL": _iri(x.url),
        "dct:conformsTo": _iri(d.schema_url),
        "cb:kind": x.kind,
    }
    if x.media_type is not None:
        node["dcat:mediaType"] = _iri(_IANA + x.media_type)
    if x.format is not None:
        node["dct:format"] = _iri(f"{_EU}file-type/{x.format}")
    if x.service is not None:
        node["dcat:accessService"] = _iri(x.service)
    if x.kind == "nats":
        node["cb:subject"] = d.subject
    if d.attribution is not None:
        node["dct:license"] = {
            "@id": d.attribution.licence.url,
            "@type": "dct:LicenseDocument",
            "dct:title": [_text(d.attribution.licence.name)],
        }
    return node
