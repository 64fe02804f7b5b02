"""The gateway's catalogue: DCAT-AP-NO JSON-LD and the HTML page, from the registry and the streams.

The document is expanded with PyLD (a JSON-LD processor from the ecosystem, in the ``dev`` extra)
and read in expanded form, by full IRIs, so what is checked is what any DCAT consumer reads, not
the document's own spelling. The company contract comes from a package installed for real
(``tests/contract_package.py``), found through its entry point as a pip-installed one is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import contract_package
import msgspec
import pytest

from adapters.gateway.catalogue import (
    Dataset,
    DatasetFacts,
    EntityFacts,
    catalogue_entries,
)
from adapters.gateway.catalogue_html import ENTITY_ROWS, render_html
from adapters.gateway.catalogue_jsonld import catalogue_jsonld
from adapters.gateway.catalogue_routes import stream_facts, wants_jsonld
from adapters.gateway.fields import fields_of
from adapters.gateway.licences import ATTRIBUTIONS
from bus import Bus
from contracts import (
    BeachObservation,
    Classification,
    DeviceStatus,
    Registry,
    WeatherForecast,
    default_registry,
    json_schema,
    load_installed_contracts,
)
from tests.gateway_support import beach, running_gateway

BASE = "http://gateway.test:8080"
DCAT = "http://www.w3.org/ns/dcat#"
DCT = "http://purl.org/dc/terms/"
CB = "urn:citybus:vocab:"
CREDIT = "http://creativecommons.org/ns#attributionName"
EU = "http://publications.europa.eu/resource/authority/"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh directory on ``sys.path`` to install a package into (its modules forgotten after)."""
    where = tmp_path / "site"
    where.mkdir()
    monkeypatch.syspath_prepend(str(where))
    before = set(sys.modules)
    yield where
    for name in set(sys.modules) - before:
        if name.startswith("testco"):
            del sys.modules[name]


@pytest.fixture
def registry(site: Path) -> Registry:
    """The city's contracts and an installed company's, as ``citybus up`` loads them."""
    module = "testco_catalogue"
    contract_package.install(site, module=module, entry_point=f"{module}:WidgetReading", own_registry=True)
    loaded = Registry()
    for cls in default_registry():
        loaded.add(cls)
    assert load_installed_contracts(loaded) == []
    return loaded


def expand(document: dict[str, Any]) -> list[dict[str, Any]]:
    from pyld import jsonld

    expanded: list[dict[str, Any]] = jsonld.expand(document)
    return expanded


def values(node: dict[str, Any], term: str) -> list[Any]:
    """A property's values in expanded JSON-LD: ``@id`` of references, ``@value`` of literals."""
    return [v.get("@id", v.get("@value", v)) for v in node.get(term, [])]


def language_values(node: dict[str, Any], term: str) -> dict[str, str]:
    return {v["@language"]: v["@value"] for v in node.get(term, []) if "@language" in v}


def datasets_by_id(expanded: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (catalog,) = expanded
    return {values(d, DCT + "identifier")[0]: d for d in catalog[DCAT + "dataset"]}


def expanded_datasets(
    registry: Registry | None = None, facts: dict[str, DatasetFacts] | None = None
) -> dict[str, dict[str, Any]]:
    """The catalogue's data sets in expanded JSON-LD, by identifier (the city's registry by default)."""
    entries = catalogue_entries(registry if registry is not None else default_registry(), facts or {}, BASE)
    return datasets_by_id(expand(catalogue_jsonld(entries, BASE)))


FACTS = {
    "environment.beach-observation": DatasetFacts(
        entities=(
            EntityFacts("bragernes-strand", 10, 1_700_000_000.0, "synthetic"),
            EntityFacts("sota-fjordpark", 5, 1_700_003_600.0, "synthetic"),
        ),
        window=(1_699_996_400.0, 1_700_003_600.0),
    ),
    "mobility.train-call": DatasetFacts(
        entities=(EntityFacts("NSR:StopPlace:11", 3, 1_700_000_000.0, "recorded"),),
        window=(1_699_996_400.0, 1_700_003_600.0),
    ),
    "operations.device-status": DatasetFacts(unreadable="internal: sign in with a token"),
}


def test_every_registered_contract_is_a_dataset_with_the_mandatory_properties(registry: Registry) -> None:
    document = catalogue_jsonld(catalogue_entries(registry, FACTS, BASE), BASE)
    expanded = expand(document)
    (catalog,) = expanded
    assert DCAT + "Catalog" in catalog["@type"]
    for term in ("title", "description", "publisher", "identifier"):
        assert catalog.get(DCT + term), term
    assert catalog.get(DCAT + "contactPoint")
    datasets = datasets_by_id(expanded)
    assert set(datasets) == {cls.__contract__.type for cls in registry}
    for identifier, node in datasets.items():
        assert node["@type"] == [DCAT + "Dataset"]
        assert node["@id"].startswith(BASE + "/catalogue#"), identifier
        assert language_values(node, DCT + "title")["en"], identifier
        assert language_values(node, DCT + "description")["en"], identifier
        assert values(node, DCT + "publisher") == ["https://www.drammen.kommune.no/"]
        assert node.get(DCAT + "contactPoint"), identifier
        themes = values(node, DCAT + "theme")
        assert themes and all(t.startswith(EU + "data-theme/") for t in themes), identifier
        assert values(node, DCT + "conformsTo") == [
            f"{BASE}/catalogue/{identifier.rsplit('.v', 1)[0]}@1/schema.json"
        ]


def test_the_document_is_rdf_a_harvester_can_load(registry: Registry) -> None:
    from pyld import jsonld

    document = catalogue_jsonld(catalogue_entries(registry, FACTS, BASE), BASE)
    quads = jsonld.to_rdf(document, {"format": "application/n-quads"}).splitlines()
    rdf_type = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
    assert f"<{BASE}/catalogue> {rdf_type} <{DCAT}Catalog> ." in quads
    datasets = [q for q in quads if q.endswith(f"{rdf_type} <{DCAT}Dataset> .")]
    assert len(datasets) == len(registry)
    resolution = f"<{BASE}/catalogue#environment.beach-observation.v1> <{DCAT}temporalResolution> "
    assert f'{resolution}"PT960S"^^<http://www.w3.org/2001/XMLSchema#duration> .' in quads


def test_the_profile_s_cardinalities_and_node_kinds_hold(registry: Registry) -> None:
    """What the DCAT-AP-NO SHACL shapes (v3) check, on the expanded graph: IRIs where the profile
    wants IRIs, one value per language, at most one format, media type and licence per distribution,
    a contact point with a name and a URL, a data service with one endpoint."""
    (catalog,) = expand(catalogue_jsonld(catalogue_entries(registry, FACTS, BASE), BASE))
    vcard = "http://www.w3.org/2006/vcard/ns#"

    def one_per_language(node: dict[str, Any], term: str) -> None:
        languages = [v["@language"] for v in node[term]]
        assert languages and len(languages) == len(set(languages)), term

    def contact(node: dict[str, Any]) -> None:
        (point,) = node[DCAT + "contactPoint"]
        assert point["@type"] == [vcard + "Organization"]
        assert values(point, vcard + "fn") and all("@id" in v for v in point[vcard + "hasURL"])

    one_per_language(catalog, DCT + "title")
    contact(catalog)
    (publisher,) = catalog[DCT + "publisher"]
    assert "@id" in publisher and values(publisher, "http://xmlns.com/foaf/0.1/name")
    (service,) = catalog[DCAT + "service"]
    assert len(service[DCAT + "endpointURL"]) == 1 and "@id" in service[DCAT + "endpointURL"][0]
    contact(service)
    served = set(values(service, DCAT + "servesDataset"))
    for dataset in catalog[DCAT + "dataset"]:
        assert "@id" in dataset
        one_per_language(dataset, DCT + "title")
        one_per_language(dataset, DCT + "description")
        contact(dataset)
        assert all("@id" in v for term in (DCAT + "theme", DCT + "spatial") for v in dataset[term])
        assert len(dataset[DCT + "accessRights"]) == 1
        assert all(v.get("@language") == "en" for v in dataset[DCAT + "keyword"])
        for distribution in dataset[DCAT + "distribution"]:
            assert [("@id" in v) for v in distribution[DCAT + "accessURL"]] == [True]
            for term in (DCT + "format", DCAT + "mediaType", DCT + "license"):
                assert len(distribution.get(term, [])) <= 1 and all(
                    "@id" in v for v in distribution.get(term, [])
                )
            if DCAT + "accessService" in distribution:
                assert dataset["@id"] in served


def test_the_company_contract_is_listed_with_its_package_and_no_invented_licence(registry: Registry) -> None:
    datasets = expanded_datasets(registry)
    widget = datasets[contract_package.TYPE]
    assert values(widget, CB + "package") == [contract_package.PACKAGE]
    assert contract_package.SUMMARY in language_values(widget, DCT + "description")["en"]
    assert values(widget, DCT + "accessRights") == [EU + "access-right/PUBLIC"]
    for distribution in widget[DCAT + "distribution"]:
        assert DCT + "license" not in distribution


def test_access_rights_follow_the_classification() -> None:
    datasets = expanded_datasets()
    expected = {
        Classification.PUBLIC: "PUBLIC",
        Classification.INTERNAL: "RESTRICTED",
        Classification.PERSONAL: "NON_PUBLIC",
    }
    for cls in default_registry():
        info = cls.__contract__
        right = expected[info.classification]
        assert values(datasets[info.type], DCT + "accessRights") == [EU + "access-right/" + right]


def test_personal_data_sets_are_listed_with_no_http_or_sse_distribution() -> None:
    personal = {
        cls.__contract__.type
        for cls in default_registry()
        if cls.__contract__.classification is Classification.PERSONAL
    }
    assert {"community.volunteer-signup.v1", "citybus.personal-dead-letter.v1"} <= personal
    signup = DatasetFacts(entities=(EntityFacts("v-1042", 1, 1.0, "manual"),), window=(0, 9))
    datasets = expanded_datasets(facts={"community.volunteer-signup": signup})
    for identifier, node in datasets.items():
        urls = [u for d in node[DCAT + "distribution"] for u in values(d, DCAT + "accessURL")]
        served = [u for u in urls if u.startswith(BASE + "/api/")]
        if identifier in personal:
            assert served == [], identifier
            assert CB + "entities" not in node  # facts are never shown, even when handed in
            assert [values(d, CB + "kind") for d in node[DCAT + "distribution"]] == [["nats"]]
        elif default_registry().get(identifier.rpartition(".v")[0]).__contract__.exchange == "event":
            assert {f"{BASE}/api/v1/contracts/{values(node, CB + 'contract')[0]}/entities"} <= set(served)
            assert any("/api/v1/stream?subject=" in u for u in served), identifier


ASKED = {
    "mobility.journey-request.v1": [f"{BASE}/api/v1/journey"],
    "mobility.journey-plan.v1": [f"{BASE}/api/v1/journey"],
}
"""The data sets asked by request/reply that the gateway serves a route for: the route that asks for
a plan, never entities or a stream (no stream keeps them). Every other request and reply (the
volunteer platform's, the privacy service's) has no HTTP way at all."""


def test_a_request_and_its_reply_are_asked_not_followed() -> None:
    datasets = expanded_datasets(facts={})
    asked = {
        identifier
        for identifier in datasets
        if default_registry().get(identifier.rpartition(".v")[0]).__contract__.exchange != "event"
    }
    assert set(ASKED) <= asked
    assert {"community.signup-request.v1", "citybus.erasure-request.v1"} <= asked
    for identifier in asked:
        served = ASKED.get(identifier, [])
        ways = datasets[identifier][DCAT + "distribution"]
        urls = [u for d in ways for u in values(d, DCAT + "accessURL")]
        assert [u for u in urls if u.startswith(BASE + "/api/")] == served, identifier
        assert [values(d, CB + "kind") for d in ways][0] == ["nats"]


def test_units_of_fields_are_those_the_contracts_declare() -> None:
    rows = {r.name: r for r in fields_of(WeatherForecast)}
    assert rows["steps[].temperature"].unit == "CEL"
    assert rows["steps[].wind_speed"].unit == "m/s"
    assert rows["location.coordinates"].unit == "deg"
    assert rows["place"].unit is None and rows["place"].required
    datasets = expanded_datasets()
    beach = datasets["environment.beach-observation.v1"]
    units = {values(f, CB + "name")[0]: values(f, CB + "unit") for f in beach[CB + "fields"]}
    assert units["water_temperature"] == ["CEL"]
    assert units["uv_index"] == ["1"]
    assert units["device"] == []


def test_update_rate_entities_and_provenance_come_from_the_stream_facts() -> None:
    datasets = expanded_datasets(facts=FACTS)
    beach = datasets["environment.beach-observation.v1"]
    assert values(beach, CB + "entities") == [2]
    assert values(beach, CB + "messages") == [15]
    assert values(beach, CB + "messagesPerHour") == [7.5]  # 15 messages over two hours
    # Each of the two entities every 2 × 3600 / 7.5 s.
    assert values(beach, DCAT + "temporalResolution") == ["PT960S"]
    assert values(beach, DCT + "modified") == ["2023-11-14T23:13:20Z"]
    assert values(beach, DCT + "type") == [EU + "dataset-type/SYNTHETIC_DATA"]
    assert values(beach, DCT + "accrualPeriodicity") == [EU + "frequency/UPDATE_CONT"]
    train = datasets["mobility.train-call.v1"]
    assert DCT + "type" not in train  # recorded, real data
    (provenance,) = train[DCT + "provenance"]
    assert "recorded" in language_values(provenance, "http://www.w3.org/2000/01/rdf-schema#label")["en"]
    assert values(train, CB + "messagesPerHour") == [1.5]
    assert values(train, DCAT + "temporalResolution") == ["PT2400S"]  # 3 messages over two hours
    device = datasets["operations.device-status.v1"]  # the caller may not read it
    assert CB + "entities" not in device and DCAT + "temporalResolution" not in device
    (why,) = device[DCT + "provenance"]
    assert "not shown" in language_values(why, "http://www.w3.org/2000/01/rdf-schema#label")["en"]


def test_one_message_per_entity_shows_a_rate_but_no_interval() -> None:
    once = DatasetFacts(entities=(EntityFacts("a", 1), EntityFacts("b", 1)), window=(0.0, 60.0))
    assert once.rate_per_hour == 120.0 and once.interval is None
    twice = DatasetFacts(entities=(EntityFacts("a", 2), EntityFacts("b", 1)), window=(0.0, 60.0))
    assert twice.interval == 40.0  # two entities, three messages in a minute
    assert DatasetFacts(entities=(EntityFacts("a", 5),), window=(7.0, 7.0)).rate_per_hour is None


def test_licences_and_credits_follow_the_recorded_attribution() -> None:
    assert set(ATTRIBUTIONS) <= set(default_registry().names())
    datasets = expanded_datasets()

    def licences(identifier: str) -> set[str]:
        return {u for d in datasets[identifier][DCAT + "distribution"] for u in values(d, DCT + "license")}

    assert licences("mobility.train-call.v1") == {"https://data.norge.no/nlod/en/2.0"}
    assert values(datasets["mobility.train-call.v1"], CREDIT) == ["Entur"]
    assert licences("mobility.bike-station.v1") == {"https://opendatacommons.org/licenses/odbl/1-0/"}
    assert values(datasets["mobility.bike-station.v1"], CREDIT) == ["© OpenStreetMap contributors"]
    assert licences("citybus.dead-letter.v1") == set()  # internal: not open data
    assert licences("community.volunteer-signup.v1") == set()


def test_the_page_has_a_section_per_data_set_with_fields_units_and_ways_in(registry: Registry) -> None:
    entries = catalogue_entries(registry, FACTS, BASE)
    page = render_html(entries, jsonld_url="/catalogue.jsonld", home_url="/")
    assert page.count('<section class="dataset"') == len(registry)
    for cls in registry:
        assert f'id="{cls.__contract__.type}"' in page
    assert "<td><code>water_temperature</code></td><td>number</td><td>CEL (°C)</td>" in page
    assert f'href="{BASE}/api/v1/contracts/environment.beach-observation/entities"' in page
    assert f"{BASE}/catalogue/environment.beach-observation@1/schema.json" in page
    assert "the gateway never serves personal data" in page
    assert "7.5 messages per hour" in page
    assert 'href="/catalogue.jsonld"' in page


def test_the_page_escapes_what_packages_and_publishers_choose() -> None:
    hostile = '<script>alert("x")</script>'
    facts = {
        "environment.beach-observation": DatasetFacts(
            entities=tuple(EntityFacts(f"{hostile}-{i}", 1, 1.0, hostile) for i in range(ENTITY_ROWS + 3)),
            window=(0.0, 10.0),
        )
    }
    page = render_html(catalogue_entries(default_registry(), facts, BASE), jsonld_url="/c", home_url="/")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;-0" in page
    assert "and 3 more" in page


def test_entries_are_plain_values_the_two_renderings_share() -> None:
    entries = catalogue_entries(default_registry(), FACTS, BASE + "/")
    beach = next(d for d in entries if d.name == "environment.beach-observation")
    assert isinstance(beach, Dataset)
    assert beach.iri == BASE + "/catalogue#environment.beach-observation.v1"
    assert beach.facts is not None and beach.facts.rate_per_hour == 7.5
    assert beach.synthetic
    assert [x.kind for x in beach.distributions] == ["nats", "http", "sse"]


# -- through HTTP, against a real nats-server and the real gateway -----------------------------------


async def _get(url: str, **headers: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, response.content_type, await response.read()


@pytest.mark.slow
async def test_the_catalogue_counts_what_was_published_through_the_gateway(quiet_bus: Bus) -> None:
    for water in (15.0, 16.0, 17.0):
        await quiet_bus.publish_durable(beach("bragernes-strand", water), provenance="synthetic")
    for water in (14.0, 15.5):
        await quiet_bus.publish_durable(beach("sota-fjordpark", water), provenance="synthetic")
    async with running_gateway(quiet_bus) as gateway:
        status, kind, body = await _get(f"{gateway.url}/catalogue.jsonld")
        assert (status, kind) == (200, "application/ld+json")
        datasets = datasets_by_id(expand(json.loads(body)))
        beach_set = datasets["environment.beach-observation.v1"]
        assert values(beach_set, CB + "entities") == [2]
        assert values(beach_set, CB + "messages") == [5]
        (rate,) = values(beach_set, CB + "messagesPerHour")
        assert rate > 0
        assert values(beach_set, DCT + "type") == [EU + "dataset-type/SYNTHETIC_DATA"]
        assert values(beach_set, DCAT + "temporalResolution")
        assert CB + "entities" not in datasets["operations.device-status.v1"]  # internal: no token

        await quiet_bus.publish_durable(beach("sota-fjordpark", 16.0), provenance="synthetic")
        status, kind, body = await _get(f"{gateway.url}/catalogue", Accept="application/ld+json")
        assert (status, kind) == (200, "application/ld+json")
        again = datasets_by_id(expand(json.loads(body)))["environment.beach-observation.v1"]
        assert values(again, CB + "messages") == [6]

        status, kind, body = await _get(f"{gateway.url}/catalogue", Accept="text/html,*/*;q=0.8")
        assert (status, kind) == (200, "text/html")
        page = body.decode()
        assert "2 entities, 6 messages stored" in page
        assert f'id="{contract_package.TYPE}"' not in page  # no company package installed here


@pytest.mark.slow
async def test_schemas_and_the_asyncapi_document_are_served_by_the_gateway(quiet_bus: Bus) -> None:
    async with running_gateway(quiet_bus) as gateway:
        status, _, body = await _get(f"{gateway.url}/catalogue/environment.beach-observation@1/schema.json")
        assert status == 200
        assert json.loads(body) == json.loads(msgspec.json.encode(json_schema(BeachObservation)))
        status, kind, body = await _get(f"{gateway.url}/catalogue/environment.beach-obsrvation/schema.json")
        assert (status, kind) == (404, "application/problem+json")
        assert "did you mean environment.beach-observation" in json.loads(body)["detail"]
        status, _, body = await _get(f"{gateway.url}/catalogue/asyncapi.json")
        assert status == 200 and json.loads(body)["asyncapi"].startswith("3.")


@pytest.mark.slow
async def test_an_installed_company_contract_is_in_the_served_catalogue(quiet_bus: Bus, site: Path) -> None:
    module = "testco_served"
    contract_package.install(site, module=module, entry_point=f"{module}:WidgetReading", own_registry=True)
    assert load_installed_contracts() == []  # as `citybus` does before any command
    widget = default_registry().get(contract_package.NAME)
    try:
        async with running_gateway(quiet_bus) as gateway:
            status, _, body = await _get(f"{gateway.url}/catalogue.jsonld")
            assert status == 200
            served = datasets_by_id(expand(json.loads(body)))[contract_package.TYPE]
            assert values(served, CB + "package") == [contract_package.PACKAGE]
            status, _, body = await _get(f"{gateway.url}/catalogue")
            assert f'id="{contract_package.TYPE}"' in body.decode()
    finally:
        default_registry().remove(widget)


@pytest.mark.slow
async def test_internal_facts_are_for_the_internal_user_s_feed_only(quiet_bus: Bus) -> None:
    await quiet_bus.publish_durable(DeviceStatus.example(), provenance="sensor")
    await quiet_bus.publish_durable(beach("bragernes-strand", 15.0), provenance="sensor")
    async with running_gateway(quiet_bus) as gateway:
        registry = gateway.state.registry
        public = await stream_facts(await gateway.state.feeds.of("public"), registry)
        internal = await stream_facts(await gateway.state.feeds.of("internal"), registry)
    device = DeviceStatus.__contract__.name
    assert public[device].unreadable is not None and public[device].entities == ()
    assert [(e.entity, e.messages, e.provenance) for e in internal[device].entities] == [
        (DeviceStatus.example().entity(), 1, "sensor")
    ]
    assert public["environment.beach-observation"].messages == 1
    assert internal["environment.beach-observation"] == public["environment.beach-observation"]
    personal = [
        c.__contract__.name for c in registry if c.__contract__.classification is Classification.PERSONAL
    ]
    assert personal and not set(personal) & (set(public) | set(internal))


@pytest.mark.parametrize(
    ("accept", "jsonld"),
    [
        ("application/ld+json", True),
        ("application/json", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("application/ld+json;q=0.5, text/html", False),
        ("text/html;q=0.1, application/ld+json", True),
        ("", False),
        ("*/*", False),
    ],
)
def test_the_catalogue_answers_json_ld_to_those_who_prefer_it(accept: str, jsonld: bool) -> None:
    assert wants_jsonld(accept) is jsonld


async def test_links_are_the_public_url_else_the_address_the_caller_used(bus: Bus) -> None:
    async with running_gateway(bus) as gateway, aiohttp.ClientSession() as http:
        async with http.get(
            f"{gateway.url}/catalogue.jsonld", headers={"Host": "data.example.org"}
        ) as response:
            text = await response.text()
        assert '"http://data.example.org/catalogue"' in text and "http://127.0.0.1" not in text
    public = "https://data.drammen.no"
    async with running_gateway(bus, public_url=public) as gateway, aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/catalogue.jsonld") as response:
            text = await response.text()
        assert f'"{public}/catalogue"' in text and "http://127.0.0.1" not in text
        async with http.get(f"{gateway.url}/ngsi-ld/v1/types") as response:
            assert f"<{public}/ngsi-ld/v1/context.jsonld>" in response.headers.get("Link", "")
