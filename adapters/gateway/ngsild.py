"""A read-only NGSI-LD view (ETSI GS CIM 009) of the entities the gateway serves.

FIWARE tools (context-broker clients, dashboards, the Smart Data Models ecosystem) read citybus as
they read an NGSI-LD context broker:

=====================================================  ==============================================
``GET /ngsi-ld/v1/entities``                           entities by ``type``, ``id``, ``idPattern``,
                                                       ``georel=near;maxDistance==M`` with
                                                       ``geometry=Point&coordinates=[lon,lat]``;
                                                       ``attrs``, ``limit``/``offset``, ``count=true``,
                                                       ``options=keyValues|concise|normalized``
``GET /ngsi-ld/v1/entities/{id}``                      one entity (``urn:ngsi-ld:<Type>:<entity>``)
``POST /ngsi-ld/v1/entityOperations/query``            the same query as a JSON ``Query`` (read-only)
``GET /ngsi-ld/v1/types``                              the types the caller may read (``details=true``:
                                                       with their attributes)
``GET /ngsi-ld/v1/context.jsonld``                     the ``@context`` of every type and attribute
=====================================================  ==============================================

Types are the Smart Data Models types the contracts follow (:mod:`.sdm`); an entity is the last
message of a contract's entity, shaped by :mod:`.ngsild_entity`.

Decisions, and why:

* **Content negotiation as the specification has it.** ``Accept: application/ld+json`` gets the
  ``@context`` in the body; ``application/json`` (or none) gets it as a ``Link`` header; anything
  else is a 406. The context is this gateway's own (``/ngsi-ld/v1/context.jsonld``) and names the
  core context, which clients know without fetching it.
* **Terms are the gateway's.** A request's ``Link`` header (a client's own ``@context``) is not
  fetched — the gateway fetches nothing at run time — so ``type`` and ``attrs`` are read as this
  gateway's short names or as full IRIs, which every context expands to alike.
* **What it cannot do, it refuses.** ``q``, ``scopeQ``, ``csf`` and geo-queries other than ``near``
  a Point are answered with ``BadRequestData`` saying so, never ignored: ignoring a filter would
  hand back entities the caller asked to leave out. Writes are not routed (405): the bus is the
  only way data gets in.
* **Who sees what, as in the entity API.** The view reads the caller's feed; a type of internal
  data asked for without a token is a 401, personal data has no type here at all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiohttp import web

from adapters.gateway.app import STATE, GatewayState
from adapters.gateway.feeds import Feed
from adapters.gateway.ngsild_entity import FORMATS, Format, Reading, entity_id, split_entity_id, to_entity
from adapters.gateway.query import (
    BadQuery,
    GeoQuery,
    Near,
    parse_georel,
    parse_id_pattern,
    parse_list,
    parse_page,
    sort_by_distance,
)
from adapters.gateway.sdm import SDM_TYPES, Vocabulary, context_document
from adapters.gateway.stored import Item
from adapters.gateway.who import Caller, Refusal, check_readable
from bus.codec import decode_bytes
from bus.errors import UndecodableError
from contracts import Classification, Contract

__all__ = ["CONTEXT_PATH", "ERRORS", "LD_JSON", "ngsi_problem", "routes"]

LD_JSON: Final = "application/ld+json"
CONTEXT_PATH: Final = "/ngsi-ld/v1/context.jsonld"
ERRORS: Final = "https://uri.etsi.org/ngsi-ld/errors/"
"""The prefix of NGSI-LD's ProblemDetails types (``BadRequestData``, ``ResourceNotFound``, …)."""
_LINK_REL: Final = "http://www.w3.org/ns/json-ld#context"
_DEFAULT_LIMIT: Final = 20
_MOST: Final = 1000
_MAX_BODY: Final = 64 * 1024
_UNSUPPORTED: Final = ("q", "scopeQ", "csf")


def ngsi_problem(status: int, kind: str, detail: str) -> Refusal:
    """An NGSI-LD error to raise: ProblemDetails (RFC 9457) whose ``type`` is the specification's
    ``https://uri.etsi.org/ngsi-ld/errors/<kind>`` (``BadRequestData``, ``ResourceNotFound``…)."""
    body = {"type": ERRORS + kind, "title": kind, "status": status, "detail": detail}
    return Refusal(
        web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json")
    )


@dataclass
class _Selection:
    types: list[str] | None = None
    ids: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None
    geo: GeoQuery | None = None
    attrs: frozenset[str] | None = None


@dataclass
class _View:
    """The vocabulary of the gateway's registry, built on first use (the registry is fixed)."""

    vocabulary: Vocabulary | None = None

    def of(self, state: GatewayState) -> Vocabulary:
        if self.vocabulary is None:
            served = (c for c in state.registry if c.__contract__.classification != Classification.PERSONAL)
            self.vocabulary = Vocabulary(served)
        return self.vocabulary


_VIEW = web.AppKey("ngsild-view", _View)


def _negotiate(request: web.Request) -> bool:
    """True for JSON-LD (``application/ld+json``), False for JSON; a 406 for anything else."""
    best: tuple[float, int, bool] | None = None
    for index, part in enumerate(request.headers.get("Accept", "application/json").split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if media == LD_JSON:
            ld = True
        elif media in ("application/json", "application/*", "*/*"):
            ld = False
        else:
            continue
        candidate = (quality, -index, ld)
        if best is None or candidate > best:
            best = candidate
    if best is None:
        raise ngsi_problem(406, "NotAcceptable", f"send Accept: application/json or {LD_JSON}")
    return best[2]


def _context_url(request: web.Request, state: GatewayState) -> str:
    return state.link_base(request) + CONTEXT_PATH


def _reply(request: web.Request, state: GatewayState, ld: bool, body: Any, **headers: str) -> web.Response:
    context = _context_url(request, state)
    if ld:
        if isinstance(body, list):
            body = [{**entity, "@context": [context]} for entity in body]
        else:
            body = {**body, "@context": [context]}
        return web.Response(body=msgspec.json.encode(body), content_type=LD_JSON, headers=headers)
    link = f'<{context}>; rel="{_LINK_REL}"; type="{LD_JSON}"'
    return web.Response(
        body=msgspec.json.encode(body), content_type="application/json", headers={"Link": link, **headers}
    )


def _format(options: str | None, fmt: str | None) -> Format:
    chosen: Format = "normalized"
    for value in [*(options or "").split(","), fmt or ""]:
        value = value.strip()
        if not value or value == "sysAttrs":
            continue
        if value in ("keyValues", "simplified"):
            chosen = "keyValues"
        elif value in FORMATS:
            chosen = value
        else:
            raise BadQuery(f"options={value!r} is not supported: use keyValues, concise or normalized")
    return chosen


def _selection(query: Mapping[str, str]) -> _Selection:
    for name in _UNSUPPORTED:
        if name in query:
            raise BadQuery(
                f"{name} is not supported by this read-only view: filter by type, id, idPattern or near"
            )
    geoproperty = query.get("geoproperty", "location")
    if geoproperty != "location":
        raise BadQuery(f"geoproperty={geoproperty!r}: the only GeoProperty here is location")
    selection = _Selection(
        types=parse_list("type", query["type"]) if "type" in query else None,
        ids=frozenset(parse_list("id", query["id"])) if "id" in query else None,
        pattern=parse_id_pattern(query["idPattern"]) if "idPattern" in query else None,
        geo=parse_georel(query.get("georel"), query.get("geometry"), query.get("coordinates")),
        attrs=frozenset(parse_list("attrs", query["attrs"])) if "attrs" in query else None,
    )
    return selection


def _contracts(
    state: GatewayState, vocabulary: Vocabulary, feed: Feed, caller: Caller, selection: _Selection
) -> list[tuple[type[Contract], str]]:
    """The contracts (newest versions) and their types a selection reads."""
    if selection.types is not None:
        names = [vocabulary.contract_of(t) for t in selection.types]
    elif selection.ids is not None:
        parts = [split_entity_id(i) for i in selection.ids]
        names = [vocabulary.contract_of(p[0]) for p in parts if p is not None]
    else:
        names = [vocabulary.contract_of(t) for t in vocabulary.types()]
    chosen: list[tuple[type[Contract], str]] = []
    for name in sorted({n for n in names if n is not None}):
        contract = state.registry.get(name)
        if selection.types is None and contract.__contract__.classification not in feed.classifications:
            continue  # not asked for by type: what the caller may not read is simply not there
        check_readable(caller, contract, feed.classifications)
        type_ = vocabulary.type_of(name)
        if type_ is not None:
            chosen.append((contract, type_))
    return chosen


_BARE = frozenset({"id", "type", "@context"})
"""The members of an entity that has none of the attributes asked for."""


def _readings(feed: Feed, item: Item) -> list[Reading]:
    """The readings an entity is made of: its last message, or its history for a spreading model."""
    model = SDM_TYPES.get(item.name)
    items: Sequence[Item] = [item]
    if model is not None and model.spread is not None:
        items = feed.history(item.contract, item.entity) or [item]
    return [Reading(data=i.data, time=i.time) for i in items]


async def _query(request: web.Request, selection: _Selection) -> web.Response:
    state = request.app[STATE]
    ld = _negotiate(request)
    query = request.query
    try:
        fmt = _format(query.get("options"), query.get("format"))
        limit, offset = parse_page(
            query.get("limit"), query.get("offset"), default=_DEFAULT_LIMIT, most=_MOST
        )
    except BadQuery as exc:
        raise ngsi_problem(400, "BadRequestData", str(exc)) from None
    caller = state.caller(request)
    feed = await state.feed(caller)
    vocabulary = request.app[_VIEW].of(state)
    found: list[tuple[str, Item]] = []
    for contract, type_ in _contracts(state, vocabulary, feed, caller, selection):
        for item in feed.entities(contract):
            identifier = entity_id(type_, item.entity)
            if selection.ids is not None and identifier not in selection.ids:
                continue
            if selection.pattern is not None and not selection.pattern.fullmatch(identifier):
                continue
            found.append((identifier, item))
    if selection.attrs is not None:
        # attrs selects as well as projects: an entity with none of them is not a match
        # (ETSI GS CIM 009, Query Entities; Orion-LD answers alike).
        found = [
            pair
            for pair in found
            if set(to_entity(vocabulary, _readings(feed, pair[1]), fmt=fmt, attrs=selection.attrs)) - _BARE
        ]
    if selection.geo is not None:
        near: Near = selection.geo.near
        ordered = [pair for _, pair in sort_by_distance(near, found, lambda pair: pair[1].location)]
    else:
        ordered = sorted(found, key=lambda pair: pair[0])
    page = ordered[offset : offset + limit]
    body = [to_entity(vocabulary, _readings(feed, item), fmt=fmt, attrs=selection.attrs) for _, item in page]
    headers = {"NGSILD-Results-Count": str(len(ordered))} if query.get("count") == "true" else {}
    return _reply(request, state, ld, body, **headers)


async def _get_entities(request: web.Request) -> web.Response:
    try:
        selection = _selection(request.query)
    except BadQuery as exc:
        raise ngsi_problem(400, "BadRequestData", str(exc)) from None
    if not any(k in request.query for k in ("type", "id", "idPattern", "attrs", "georel")):
        raise ngsi_problem(
            400,
            "BadRequestData",
            "say what to read: type, id, idPattern, attrs or a geo-query (georel=near;…)",
        )
    return await _query(request, selection)


class _Selector(msgspec.Struct, frozen=True, kw_only=True):
    type: str | None = None
    id: str | None = None
    idPattern: str | None = None


class _GeoQ(msgspec.Struct, frozen=True, kw_only=True):
    geometry: str
    coordinates: tuple[float, float]
    georel: str
    geoproperty: str = "location"


class _Query(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    entities: list[_Selector] | None = None
    attrs: list[str] | None = None
    geoQ: _GeoQ | None = None
    q: str | None = None
    scopeQ: str | None = None
    csf: str | None = None


_QUERY_DECODER = msgspec.json.Decoder(_Query)


async def _post_query(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise ngsi_problem(400, "BadRequestData", f"a query is at most {_MAX_BODY} bytes")
    data = await request.content.read(_MAX_BODY + 1)
    if len(data) > _MAX_BODY:
        raise ngsi_problem(400, "BadRequestData", f"a query is at most {_MAX_BODY} bytes")
    try:
        body = decode_bytes(_QUERY_DECODER, data)
    except UndecodableError as exc:
        raise ngsi_problem(400, "InvalidRequest", f"not an NGSI-LD Query: {exc}") from None
    try:
        if body.type != "Query":
            raise BadQuery(f'type={body.type!r}: a query body has "type": "Query"')
        for name in _UNSUPPORTED:
            if getattr(body, name) is not None:
                raise BadQuery(f"{name} is not supported by this read-only view")
        selectors = body.entities or []
        types = [s.type for s in selectors if s.type]
        ids = [s.id for s in selectors if s.id]
        patterns = [s.idPattern for s in selectors if s.idPattern]
        if len(patterns) > 1:
            raise BadQuery("one idPattern per query")
        geo = None
        if body.geoQ is not None:
            if body.geoQ.geoproperty != "location":
                raise BadQuery(
                    f"geoproperty={body.geoQ.geoproperty!r}: the only GeoProperty here is location"
                )
            lon, lat = body.geoQ.coordinates
            geo = parse_georel(body.geoQ.georel, body.geoQ.geometry, f"[{lon},{lat}]")
        selection = _Selection(
            types=types or None,
            ids=frozenset(ids) if ids else None,
            pattern=parse_id_pattern(patterns[0]) if patterns else None,
            geo=geo,
            attrs=frozenset(body.attrs) if body.attrs else None,
        )
    except BadQuery as exc:
        raise ngsi_problem(400, "BadRequestData", str(exc)) from None
    if not (selection.types or selection.ids or selection.pattern or selection.attrs or selection.geo):
        raise ngsi_problem(
            400, "BadRequestData", "say what to read: entities (type, id, idPattern), attrs or geoQ"
        )
    return await _query(request, selection)


async def _get_entity(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ld = _negotiate(request)
    identifier = request.match_info["id"]
    query = request.query
    try:
        fmt = _format(query.get("options"), query.get("format"))
        attrs = frozenset(parse_list("attrs", query["attrs"])) if "attrs" in query else None
    except BadQuery as exc:
        raise ngsi_problem(400, "BadRequestData", str(exc)) from None
    vocabulary = request.app[_VIEW].of(state)
    parts = split_entity_id(identifier)
    name = vocabulary.contract_of(parts[0]) if parts is not None else None
    if parts is None or name is None:
        raise ngsi_problem(
            404, "ResourceNotFound", f"no entity {identifier}: ids here are urn:ngsi-ld:<Type>:<entity>"
        )
    caller = state.caller(request)
    feed = await state.feed(caller)
    contract = state.registry.get(name)
    check_readable(caller, contract, feed.classifications)
    item = feed.last(contract, parts[1])
    if item is None:
        raise ngsi_problem(404, "ResourceNotFound", f"no entity {identifier}")
    entity = to_entity(vocabulary, _readings(feed, item), fmt=fmt, attrs=attrs)
    return _reply(request, state, ld, entity)


async def _get_types(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ld = _negotiate(request)
    caller = state.caller(request)
    feed = await state.feed(caller)
    vocabulary = request.app[_VIEW].of(state)
    seen = {c.__contract__.name for c in feed.contracts()}
    names = [t for t in vocabulary.types() if vocabulary.contract_of(t) in seen]
    if request.query.get("details") == "true":
        details = [
            {
                "id": vocabulary.type_iri(t),
                "type": "EntityType",
                "typeName": t,
                "attributeNames": ["location", *vocabulary.attributes(t)],
            }
            for t in names
        ]
        return _reply(request, state, ld, details)
    digest = hashlib.sha256(",".join(names).encode()).hexdigest()[:16]
    listing = {"id": f"urn:ngsi-ld:EntityTypeList:{digest}", "type": "EntityTypeList", "typeList": names}
    return _reply(request, state, ld, listing)


async def _get_context(request: web.Request) -> web.Response:
    state = request.app[STATE]
    document = context_document(request.app[_VIEW].of(state))
    return web.Response(body=msgspec.json.encode(document), content_type=LD_JSON)


def routes(app: web.Application) -> None:
    """Add the NGSI-LD view's routes to the gateway's application."""
    app[_VIEW] = _View()
    app.router.add_get("/ngsi-ld/v1/entities", _get_entities)
    app.router.add_get("/ngsi-ld/v1/entities/{id}", _get_entity)
    app.router.add_post("/ngsi-ld/v1/entityOperations/query", _post_query)
    app.router.add_get("/ngsi-ld/v1/types", _get_types)
    app.router.add_get(CONTEXT_PATH, _get_context)
