"""The catalogue: every data set on the bus, as DCAT-AP-NO JSON-LD and as a page people read.

A data set is one contract (name and major version) with its classification: its description (the
contract's docstring), its fields with their units, its JSON Schema, how often it updates and how
many entities it has (from the streams), its licence and whom to credit, where its values come from
(the messages' provenance), who may read it, and how to get it. Everything is generated from the
contract registry (installed companies' contracts included) and what the streams hold — nothing is
written by hand but the licence table (:mod:`~adapters.gateway.licences`).

``GET /catalogue.jsonld`` (and ``GET /catalogue`` asking for ``application/ld+json``) answers the
DCAT-AP-NO document; ``GET /catalogue`` the HTML page (:mod:`~adapters.gateway.catalogue_html`);
``GET /catalogue/{contract}/schema.json`` a contract's JSON Schema, and
``GET /catalogue/asyncapi.json`` the bus's AsyncAPI document — served by the gateway itself, since
the ops port is for operators, not for the public.

**What DCAT-AP-NO requires, and what is given** (the profile's SHACL shapes, version 3):

========================  ==========================================================================
class                     mandatory properties → given as
========================  ==========================================================================
dcat:Catalog              dct:title, dct:description (langString), dct:identifier, dct:publisher
                          (an IRI with foaf:name), dcat:contactPoint (a vcard:Organization with
                          vcard:fn and vcard:hasURL) — all given; recommended: dcat:dataset and
                          dcat:service (IRIs), dct:spatial, dct:modified, foaf:homepage,
                          dct:language, dcat:themeTaxonomy — given; dct:license of the catalogue
                          and dct:issued — not given (the catalogue is generated, not issued).
dcat:Dataset              dct:title, dct:description (langString, one per language), dcat:theme (EU
                          data-theme IRIs: ENVI, TRAN, SOCI, TECH, and REGI for all: it is a city's
                          data), dct:publisher, dcat:contactPoint — all given; recommended:
                          dcat:distribution, dct:spatial, dcat:keyword (langString), dct:accessRights
                          (PUBLIC / RESTRICTED / NON_PUBLIC) — given; dct:temporal, dct:subject,
                          prov:wasGeneratedBy, dcatap:applicableLegislation — not given. Optional ones
                          given: dct:identifier, dct:conformsTo (the JSON Schema), dct:provenance (a
                          dct:ProvenanceStatement), dct:accrualPeriodicity (UPDATE_CONT), and, from the
                          streams, dcat:temporalResolution (xsd:duration) and dct:modified; dct:type
                          SYNTHETIC_DATA when every value seen was generated; dcat:version.
dcat:Distribution         dcat:accessURL (an IRI) — given; recommended: dct:description, dct:format
                          (EU file-type IRI, at most one), dct:license (at most one) — given;
                          optional: dcat:mediaType (IANA IRI), dcat:accessService, dct:conformsTo.
dcat:DataService          dcat:endpointURL, dct:title, dct:publisher, dcat:contactPoint — given, with
                          dcat:servesDataset and dcat:endpointDescription where there is one.
========================  ==========================================================================

The publisher is the municipality, named by its web address (its Enhetsregisteret IRI is not
recorded in the project). ``dct:spatial`` is Norway (the EU country list) and Drammen as a place
of the catalogue's own, an IRI with its centre (``dcat:centroid``): the profile asks for a GeoNames
or Kartverket IRI for a place, and neither identifier is recorded in the project. LOS themes,
which the Norwegian profile recommends beside the EU ones, are not given. Titles are English only
(no Norwegian title exists in the contracts); the catalogue's own title and description are given
in both.

Decisions, and why:

* **A pure builder and a thin route.** :func:`catalogue_entries` turns (registry, per-contract
  stream facts, base URL) into plain :class:`Dataset` values, and
  :func:`~adapters.gateway.catalogue_jsonld.catalogue_jsonld` and
  :func:`~adapters.gateway.catalogue_html.render_html` render those: the JSON-LD and the page
  cannot disagree, and all of it is tested without a server.
* **Distributions are ways to get the data.** NATS (its ``accessURL`` is the AsyncAPI document
  that says how to connect, with the subject in ``cb:subject``), HTTP (the entities API) and SSE
  (the live stream). The JSON Schema is what the data *conforms to*, so it is ``dct:conformsTo`` of
  the data set and of each distribution, as DCAT models a schema, not a distribution of its own.
* **Personal data sets are listed, never served.** Their metadata (what exists, what it holds) is
  for everyone; they get no HTTP or SSE distribution and no facts from the streams, because the
  gateway never reads personal data, and a personal subject can name a person. Internal data sets
  list their distributions (a token is needed) and show stream facts only to a caller who may
  read them: entity names can be internal too.
* **Update rate as :mod:`bus.entities` measures it:** messages stored per hour over the window the
  counted messages were stored in — what really flowed, at whatever speed a replay ran — and, per
  entity, one message every ``window × entities / messages`` (``dcat:temporalResolution``).
  ``dct:accrualPeriodicity`` is UPDATE_CONT: a data set on a bus is updated as messages arrive.
* **JSON-LD written expanded-ready.** Every IRI value is ``{"@id": …}``, every literal with a
  language or datatype is a value object, so the document means the same to any JSON-LD processor
  without relying on type coercion in the context.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

from adapters.gateway.fields import FieldRow, fields_of
from adapters.gateway.journey import PATH as JOURNEY_PATH
from adapters.gateway.licences import Attribution, attribution_of
from bus import subjects
from contracts import CITY_PACKAGE, Classification, Contract, JourneyRequest, Registry, package_of

__all__ = [
    "ACCESS_RIGHTS",
    "CONTEXT",
    "DRAMMEN",
    "Dataset",
    "DatasetFacts",
    "Distribution",
    "EntityFacts",
    "JSONLD",
    "Publisher",
    "THEMES",
    "catalogue_entries",
    "plain",
]

JSONLD: Final = "application/ld+json"


CONTEXT: Final[Mapping[str, str]] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "cc": "http://creativecommons.org/ns#",
    "geo": "http://www.opengis.net/ont/geosparql#",
    "cb": "urn:citybus:vocab:",
}
"""The JSON-LD context: the vocabularies' usual prefixes, and ``cb:`` for citybus's own facts."""

ACCESS_RIGHTS: Final[Mapping[Classification, str]] = {
    Classification.PUBLIC: "PUBLIC",
    Classification.INTERNAL: "RESTRICTED",
    Classification.PERSONAL: "NON_PUBLIC",
}
"""Classification → the EU access-right code (green, yellow, red in Norwegian practice)."""

THEMES: Final[Mapping[str, tuple[str, ...]]] = {
    "environment": ("ENVI",),
    "mobility": ("TRAN",),
    "community": ("SOCI",),
    "operations": ("TECH",),
    "citybus": ("TECH",),
}
"""A domain's EU data themes; every data set has ``REGI`` (regions and cities) besides."""

_CITY_THEME: Final = "REGI"
_PROVENANCE_TEXT: Final = {
    "sensor": "measured by sensors",
    "manual": "measured or entered by hand",
    "vendor": "from a vendor's platform",
    "recorded": "real data, recorded and replayed by the sandbox",
    "synthetic": "generated (synthetic) values, not measurements",
}


@dataclass(frozen=True, slots=True)
class Publisher:
    """Who publishes the catalogue and answers questions about it."""

    name: str
    homepage: str
    """The publisher's IRI and home page."""


DRAMMEN: Final = Publisher(name="Drammen kommune", homepage="https://www.drammen.kommune.no/")
"""The municipality, named by its web address."""


@dataclass(frozen=True, slots=True)
class EntityFacts:
    """What a stream holds of one entity of a data set."""

    entity: str
    messages: int
    """Stored messages of the entity's subject."""
    last_stored: float | None = None
    """When its last message was stored (epoch seconds)."""
    provenance: str | None = None
    """Its last message's ``ce-provenance``."""


@dataclass(frozen=True, slots=True)
class DatasetFacts:
    """What the streams say of one data set (a contract name), as one caller may see it."""

    entities: tuple[EntityFacts, ...] = ()
    window: tuple[float, float] | None = None
    """First and last stored time (epoch seconds) of the messages counted; ``None`` if unknown."""
    unreadable: str | None = None
    """Why the caller was not shown the facts, when it was not."""

    @property
    def messages(self) -> int:
        """Stored messages of every entity."""
        return sum(e.messages for e in self.entities)

    @property
    def rate_per_hour(self) -> float | None:
        """Messages stored per hour over :attr:`window`; ``None`` without a window of some length."""
        if self.window is None or self.window[1] <= self.window[0] or not self.messages:
            return None
        return self.messages / ((self.window[1] - self.window[0]) / 3600)

    @property
    def interval(self) -> float | None:
        """Seconds between two messages of one entity, on average; ``None`` without a rate or when
        no entity has a second message."""
        rate = self.rate_per_hour
        if rate is None or self.messages <= len(self.entities):
            return None  # one message per entity shows no interval
        return 3600 * len(self.entities) / rate

    @property
    def provenances(self) -> tuple[str, ...]:
        """The provenances of the entities' last messages, sorted, once each."""
        return tuple(sorted({e.provenance for e in self.entities if e.provenance}))

    @property
    def last_stored(self) -> float | None:
        """When the newest message was stored."""
        times = [e.last_stored for e in self.entities if e.last_stored is not None]
        return max(times) if times else None


@dataclass(frozen=True, slots=True)
class Distribution:
    """One way to get a data set."""

    kind: str
    """``nats``, ``http`` or ``sse``."""
    title: str
    url: str
    """Its access URL."""
    description: str
    media_type: str | None = None
    format: str | None = None
    """The EU file-type code (``JSON``), where one fits."""
    service: str | None = None
    """The IRI of the data service it is reached through."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """One data set of the catalogue, with everything the JSON-LD and the page show."""

    contract: type[Contract]
    iri: str
    identifier: str
    """The contract's CloudEvents type, ``environment.beach-observation.v1``."""
    title: str
    description: str
    """The contract's docstring, as written (reStructuredText marks and all)."""
    classification: Classification
    access_right: str
    themes: tuple[str, ...]
    keywords: tuple[str, ...]
    package: str | None
    fields: tuple[FieldRow, ...]
    subject: str
    """The NATS subjects (a wildcard over its entities)."""
    schema_url: str
    attribution: Attribution | None
    facts: DatasetFacts | None
    """What the streams hold, when shown (never for personal data)."""
    distributions: tuple[Distribution, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """The contract's name."""
        return self.contract.__contract__.name

    @property
    def version(self) -> int:
        """The contract's major version."""
        return self.contract.__contract__.version

    @property
    def synthetic(self) -> bool:
        """True when every value seen is generated."""
        return self.facts is not None and self.facts.provenances == ("synthetic",)

    def provenance_text(self) -> str:
        """Where the values come from, for people, from the provenance of the last values."""
        if self.classification is Classification.PERSONAL:
            return "not shown: personal data"
        if self.facts is not None and self.facts.unreadable is not None:
            return f"not shown: {self.facts.unreadable}"
        if self.facts is None or not self.facts.provenances:
            return "not known: no message seen"
        return "; ".join(f"{p}: {_PROVENANCE_TEXT.get(p, p)}" for p in self.facts.provenances)


def catalogue_entries(
    registry: Registry | Iterable[type[Contract]],
    facts: Mapping[str, DatasetFacts],
    base_url: str,
) -> list[Dataset]:
    """The catalogue's data sets: one per contract in ``registry``, with the ``facts`` of its name.

    ``facts`` holds what the caller may see of each contract's streams (by contract name); a
    personal contract's facts are never used. ``base_url`` is where the gateway is reached
    (``http://127.0.0.1:8080``), for the links.
    """
    base = base_url.rstrip("/")
    return [_dataset(cls, facts.get(cls.__contract__.name), base) for cls in registry]


def _asked(cls: type[Contract], base: str) -> list[Distribution]:
    """The ways to a request or a reply (request/reply: no stream keeps them, so they have no
    entities and no live updates): the NATS request subject, and the gateway's route that asks."""
    info = cls.__contract__
    request = info.name if info.reply else info.answers
    asked = subjects.request_filter(cls) if info.reply else "the requester's inbox"
    ways = [
        Distribution(
            kind="nats",
            title=f"NATS requests {asked}" if info.reply else f"NATS replies to {request}",
            url=f"{base}/catalogue/asyncapi.json",
            description=(
                f"Asked by NATS request/reply on {asked}, answered with {info.reply}"
                if info.reply
                else f"The answer to a {request} request, sent to the requester's inbox"
            )
            + "; the AsyncAPI document says how. Not stored: no entities, no live updates.",
            media_type="application/json",
            format="JSON",
        )
    ]
    if request == JourneyRequest.__contract__.name:
        ways.append(
            Distribution(
                kind="http",
                title="Plan a journey over HTTP",
                url=f"{base}{JOURNEY_PATH}",
                description=(
                    "GET ?from=…&to=…&depart=… (or POST a journey request as JSON): the planner's "
                    "journey plan as JSON. Public: no login needed."
                ),
                media_type="application/json",
                format="JSON",
                service=f"{base}/api/v1",
            )
        )
    return ways


def _dataset(cls: type[Contract], facts: DatasetFacts | None, base: str) -> Dataset:
    info = cls.__contract__
    personal = info.classification is Classification.PERSONAL
    package = package_of(cls)
    exact = f"{info.name}@{info.version}"
    schema_url = f"{base}/catalogue/{quote(exact, safe='@')}/schema.json"
    subject = subjects.contract_filter(cls)
    gateway = f"{base}/api/v1"
    where = {
        Classification.PUBLIC: "Public: no login needed.",
        Classification.INTERNAL: "Internal: needs a bearer token (citybus auth add-token).",
    }
    if info.exchange != "event":
        distributions = _asked(cls, base)
    else:
        distributions = [
            Distribution(
                kind="nats",
                title=f"NATS subjects {subject}",
                url=f"{base}/catalogue/asyncapi.json",
                description=(
                    f"Messages on the NATS subjects {subject} (one subject per entity), CloudEvents in "
                    "binary mode; the AsyncAPI document says how to connect and subscribe."
                    + (
                        " Personal: only the adapters that declare this contract may read it."
                        if personal
                        else ""
                    )
                ),
                media_type="application/json",
                format="JSON",
            )
        ]
    if not personal and info.exchange == "event":
        distributions += [
            Distribution(
                kind="http",
                title="Last value of each entity, over HTTP",
                url=f"{gateway}/contracts/{quote(info.name)}/entities",
                description=(
                    "The last message of each entity as CloudEvents JSON (structured mode), its data "
                    "conforming to the JSON Schema; a short history per entity under "
                    ".../entities/{entity}/history. " + where[info.classification]
                ),
                media_type="application/json",
                format="JSON",
                service=gateway,
            ),
            Distribution(
                kind="sse",
                title="Live updates, as Server-Sent Events",
                url=f"{gateway}/stream?subject={quote(info.name)}",
                description=(
                    "Every new message as a Server-Sent Event (CloudEvents JSON), resumable with "
                    "Last-Event-ID. " + where[info.classification]
                ),
                media_type="text/event-stream",
                service=gateway,
            ),
        ]
    keywords = [info.domain, *info.event.split("-"), info.classification.value, "Drammen"]
    if package and package != CITY_PACKAGE:
        keywords.append(package)
    return Dataset(
        contract=cls,
        iri=f"{base}/catalogue#{info.type}",
        identifier=info.type,
        title=_title(cls),
        description=inspect.cleandoc(cls.__doc__ or "") or info.name,
        classification=info.classification,
        access_right=ACCESS_RIGHTS[info.classification],
        themes=(*THEMES.get(info.domain, ()), _CITY_THEME),
        keywords=tuple(dict.fromkeys(keywords)),
        package=package,
        fields=tuple(fields_of(cls)),
        subject=subject,
        schema_url=schema_url,
        attribution=attribution_of(cls),
        facts=None if personal else facts,
        distributions=tuple(distributions),
    )


_ROLE: Final = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL: Final = re.compile(r"``([^`]+)``")


def plain(docstring: str) -> str:
    """A docstring's text without its reStructuredText marks (````x````, ``:class:`~a.B```` → ``B``)."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], docstring)
    return _LITERAL.sub(r"\1", text)


def _title(cls: type[Contract]) -> str:
    info = cls.__contract__
    words = info.event.replace("-", " ")
    title = f"{words[:1].upper()}{words[1:]} ({info.domain})"
    return title if info.version == 1 else f"{title}, version {info.version}"
