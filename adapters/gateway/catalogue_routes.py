"""The catalogue's routes, and the stream facts it is generated from, read as the caller.

==========================================  ==================================================
``GET /catalogue``                          the page (HTML), or the JSON-LD when the caller
                                            prefers ``application/ld+json`` (``Vary: Accept``)
``GET /catalogue.jsonld``                   the DCAT-AP-NO document
``GET /catalogue/{contract}/schema.json``   a contract's JSON Schema (``name`` or ``name@2``)
``GET /catalogue/asyncapi.json``            the bus's AsyncAPI document
==========================================  ==================================================

Decisions, and why:

* **Facts as the caller sees them.** The entities, counts and rates come from the feed of the
  caller's NATS user (:mod:`~adapters.gateway.feeds`): the public sees the public streams' facts,
  a token that maps to an internal user sees the internal ones too, and nobody sees personal ones.
  The counts and the stored window are asked of JetStream (:func:`bus.reading.stream_subjects`, and
  the first and last message of the stream) as that user, the method of :mod:`bus.entities`; the
  provenance and last time of each entity are its last value, which the feed already holds.
* **The catalogue survives a bus that does not answer.** When the caller's feed cannot be had (the
  server is down) or a stream cannot be read, the data sets are still listed, each saying why its
  facts are missing: what exists is worth knowing even when how much of it flows is not.
* **Links are built from** ``public_url`` **when it is set** (behind a reverse proxy: the address the
  world knows, so the data sets' IRIs stay the same whoever asks), else from the address the caller
  used: never from the address the gateway listens on, which a harvester may not reach.
"""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from adapters.gateway.app import STATE, GatewayState
from adapters.gateway.catalogue import (
    JSONLD,
    Dataset,
    DatasetFacts,
    EntityFacts,
    catalogue_entries,
)
from adapters.gateway.catalogue_html import CSP, render_html
from adapters.gateway.catalogue_jsonld import catalogue_jsonld
from adapters.gateway.feeds import Feed
from adapters.gateway.who import problem
from bus import subjects
from bus.asyncapi import asyncapi_document
from bus.errors import CityBusError
from bus.reading import next_stored, stream_bounds, stream_subjects
from contracts import Classification, Contract, Registry, UnknownContractError, json_schema

__all__ = ["routes", "stream_facts", "wants_jsonld"]


def routes(app: web.Application) -> None:
    """Add the catalogue's routes to the gateway's application."""
    app.router.add_get("/catalogue", _catalogue)
    app.router.add_get("/catalogue.jsonld", _jsonld)
    app.router.add_get("/catalogue/asyncapi.json", _asyncapi)
    app.router.add_get("/catalogue/{contract}/schema.json", _schema)


def wants_jsonld(accept: str) -> bool:
    """True when an ``Accept`` header prefers JSON-LD (or plain JSON) to HTML."""
    best = {"ld": 0.0, "html": 0.0}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in (JSONLD, "application/json"):
            best["ld"] = max(best["ld"], q)
        elif media in ("text/html", "application/xhtml+xml"):
            best["html"] = max(best["html"], q)
    return best["ld"] > best["html"]


async def stream_facts(feed: Feed, registry: Registry) -> dict[str, DatasetFacts]:
    """What the streams hold of each contract, as ``feed``'s user may see it (by contract name).

    A contract of a class the user does not read gets facts that say so; personal contracts get
    none at all.
    """
    facts: dict[str, DatasetFacts] = {}
    by_stream: dict[str, list[type[Contract]]] = {}
    for cls in registry:
        info = cls.__contract__
        if info.classification is Classification.PERSONAL:
            continue
        if info.classification not in feed.classifications:
            facts[info.name] = DatasetFacts(
                unreadable=f"{info.classification.value} data: shown to callers whose token may read it"
            )
            continue
        by_stream.setdefault(subjects.stream_name(info.classification, info.domain), []).append(cls)
    found = await asyncio.gather(*(_stream(feed, stream, classes) for stream, classes in by_stream.items()))
    for answer in found:
        facts.update(answer)
    return facts


async def _stream(feed: Feed, stream: str, classes: list[type[Contract]]) -> dict[str, DatasetFacts]:
    stream_filter = feed.stream_filter(stream)
    try:
        if stream_filter is None:
            raise LookupError(feed.errors.get(stream) or "this user does not follow it")
        counts = await stream_subjects(feed.bus, stream, stream_filter)
        first_seq, last_seq = await stream_bounds(feed.bus, stream)
        first = await next_stored(feed.bus, stream, stream_filter, first_seq) if counts else None
        last = await next_stored(feed.bus, stream, stream_filter, last_seq) if counts else None
    except LookupError as exc:
        why = f"stream {stream} not readable: {exc}"
        return {cls.__contract__.name: DatasetFacts(unreadable=why) for cls in classes}
    window = (first.time, last.time) if first is not None and last is not None else None
    answer: dict[str, DatasetFacts] = {}
    for cls in classes:
        entities = tuple(
            EntityFacts(
                entity=item.entity,
                messages=counts.get(item.subject, 0),
                last_stored=item.stored,
                provenance=item.provenance,
            )
            for item in feed.entities(cls)
        )
        answer[cls.__contract__.name] = DatasetFacts(entities=entities, window=window)
    return answer


def _base(state: GatewayState, request: web.Request) -> str:
    return state.link_base(request)


async def _entries(request: web.Request) -> tuple[str, list[Dataset]]:
    state = request.app[STATE]
    caller = state.caller(request)
    registry = state.registry
    try:
        feed = await state.feed(caller)
        facts = await stream_facts(feed, registry)
    except CityBusError as exc:
        why = f"the bus cannot be read now: {exc}"
        facts = {
            c.__contract__.name: DatasetFacts(unreadable=why)
            for c in registry
            if c.__contract__.classification is not Classification.PERSONAL
        }
    base = _base(state, request)
    return base, catalogue_entries(registry, facts, base)


async def _catalogue(request: web.Request) -> web.StreamResponse:
    if wants_jsonld(request.headers.get("Accept", "")):
        response = await _jsonld(request)
    else:
        base, entries = await _entries(request)
        page = render_html(entries, jsonld_url=f"{base}/catalogue.jsonld", home_url=f"{base}/")
        response = web.Response(text=page, content_type="text/html", charset="utf-8")
        response.headers["Content-Security-Policy"] = CSP
    response.headers["Vary"] = "Accept"
    return response


async def _jsonld(request: web.Request) -> web.StreamResponse:
    base, entries = await _entries(request)
    document = catalogue_jsonld(entries, base)
    return web.Response(body=msgspec.json.encode(document), content_type=JSONLD)


async def _schema(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    name = request.match_info["contract"]
    try:
        cls = state.registry.get(name)
    except UnknownContractError as exc:
        return problem(404, "Not Found", str(exc))
    return web.Response(body=msgspec.json.encode(json_schema(cls)), content_type="application/schema+json")


async def _asyncapi(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    document = asyncapi_document(state.registry)
    return web.Response(body=msgspec.json.encode(document), content_type="application/json")
