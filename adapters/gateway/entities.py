"""Last values and history over HTTP: ``/api/v1/contracts`` and the entities of each contract.

============================================================  =====================================
``GET /api/v1/contracts``                                     the contracts the caller may read,
                                                              with how many entities each has
``GET /api/v1/contracts/{contract}/entities``                 the last value of every entity;
``[?entity=a,b][&near=LAT,LON[&radius=M]]``                   some entities; nearest first
``GET /api/v1/contracts/{contract}/entities/{entity}``        one entity's last value
``GET …/entities/{entity}/history[?since=ISO-8601|seconds]``  its recent values, oldest first
============================================================  =====================================

``{contract}`` is a name (``environment.beach-observation``, the newest version) or
``name@version``. A value is the message as CloudEvents JSON in structured mode (``specversion``,
``id``, ``source``, ``type``, ``time``, ``subject``, citybus's extension attributes and ``data``),
exactly as :attr:`~adapters.gateway.stored.Item.event` holds it; a list is a JSON array of them,
which is also the CloudEvents JSON batch format.

Decisions, and why:

* **Bytes in, bytes out.** Each message was encoded once when the feed read it; a list is those
  bytes joined with commas inside brackets, never decoded and encoded again, so a request costs a
  lookup and a write (the ≥ 5,000 requests/s of the issue's benchmark).
* **A distance is an attribute.** With ``near``, each event gets a ``distance`` attribute (metres,
  haversine, to a tenth): spliced into the event's bytes, so ``near`` costs no re-encoding either,
  and it stays a valid CloudEvent (an extension attribute of lowercase letters). An entity whose
  message has no point is left out of a ``near`` query: nothing can say how far it is.
* **Mistakes get a line that fixes them.** An unknown contract is a 404 naming the nearest names;
  a bad ``near``, ``radius`` or ``since`` a 400 saying what to send; internal data without a token a
  401; personal data a 403, always — all RFC 9457 problems (:func:`~adapters.gateway.who.problem`).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable
from typing import Final

import msgspec
from aiohttp import web

from adapters.gateway.app import STATE, GatewayState
from adapters.gateway.feeds import Feed
from adapters.gateway.query import BadQuery, parse_list, parse_near, parse_since, sort_by_distance
from adapters.gateway.who import Refusal, check_readable, problem
from contracts import Classification, Contract, UnknownContractError

__all__ = ["BATCH", "EVENT", "contract_named", "events", "routes"]

EVENT: Final = "application/cloudevents+json"
"""The media type of one CloudEvent in structured mode, served when the caller asks for it."""
BATCH: Final = "application/cloudevents-batch+json"
"""The media type of a JSON array of CloudEvents, served when the caller asks for it."""
_JSON: Final = "application/json"


_NAMED: Final = web.AppKey("entities-named", dict[str, type[Contract]])
_NAMED_MOST: Final = 1024  # spellings remembered (name, name@1, name@v1…): bounded, whoever asks


def contract_named(state: GatewayState, name: str) -> type[Contract]:
    """The contract ``name`` (or ``name@version``) names; raises :class:`Refusal` (404) naming the
    nearest known names when there is none."""
    try:
        return state.registry.get(name)
    except UnknownContractError as exc:  # its message names the nearest names, or all of them
        raise Refusal(problem(404, "Not Found", str(exc))) from None


def _contract(request: web.Request, state: GatewayState) -> type[Contract]:
    """:func:`contract_named` for the request's ``{contract}``, remembered: the registry is fixed,
    and a last value is served in a few microseconds, so a scan of the registry would show."""
    name = request.match_info["contract"]
    named = request.app[_NAMED]
    contract = named.get(name)
    if contract is None:
        contract = contract_named(state, name)
        if len(named) < _NAMED_MOST:
            named[name] = contract
    return contract


def events(parts: Iterable[bytes]) -> bytes:
    """CloudEvents JSON values as one JSON array, joined without decoding them."""
    return b"[" + b",".join(parts) + b"]"


def _with_distance(event: bytes, metres: float) -> bytes:
    return b'{"distance":' + msgspec.json.encode(round(metres, 1)) + b"," + event[1:]


def _answer(request: web.Request, body: bytes, *, many: bool) -> web.Response:
    wanted = BATCH if many else EVENT
    accept = request.headers.get("Accept", "")
    content_type = wanted if wanted in accept else _JSON
    return web.Response(body=body, content_type=content_type)


async def _readable(request: web.Request) -> tuple[GatewayState, Feed, type[Contract]]:
    state = request.app[STATE]
    caller = state.caller(request)
    contract = _contract(request, state)
    feed = await state.feed(caller)
    check_readable(caller, contract, feed.classifications)
    return state, feed, contract


def _bad(exc: BadQuery) -> Refusal:
    return Refusal(problem(400, "Bad Request", str(exc)))


def _missing(feed: Feed, contract: type[Contract], entity: str) -> Refusal:
    known = [item.entity for item in feed.entities(contract)]
    close = difflib.get_close_matches(entity, known, n=3)
    name = contract.__contract__.name
    if close:
        hint = f"did you mean {' or '.join(close)}?"
    elif known:
        hint = f"its entities: {', '.join(known[:20])}{' …' if len(known) > 20 else ''}"
    else:
        hint = "no entity of it has been seen yet"
    return Refusal(problem(404, "Not Found", f"no entity {entity!r} of {name}; {hint}"))


async def _contracts(request: web.Request) -> web.Response:
    state = request.app[STATE]
    caller = state.caller(request)
    feed = await state.feed(caller)
    listed = []
    for contract in state.registry:
        info = contract.__contract__
        if info.classification is Classification.PERSONAL or info.classification not in feed.classifications:
            continue
        listed.append(
            {
                "name": info.name,
                "version": info.version,
                "type": info.type,
                "classification": info.classification.value,
                "summary": contract.summary(),
                "entities": len(feed.entities(contract)),
                "href": f"/api/v1/contracts/{info.name}@{info.version}/entities",
            }
        )
    return web.Response(body=msgspec.json.encode(listed), content_type=_JSON)


async def _entities(request: web.Request) -> web.Response:
    _, feed, contract = await _readable(request)
    query = request.query
    try:
        wanted = parse_list("entity", query["entity"]) if "entity" in query else None
        near = parse_near(query.get("near"), query.get("radius"))
    except BadQuery as exc:
        raise _bad(exc) from None
    items = feed.entities(contract)
    if wanted is not None:
        keep = set(wanted)
        items = [item for item in items if item.entity in keep]
    if near is None:
        return _answer(request, events(item.event for item in items), many=True)
    ranked = sort_by_distance(near, items, lambda item: item.location)
    return _answer(request, events(_with_distance(item.event, metres) for metres, item in ranked), many=True)


async def _entity(request: web.Request) -> web.Response:
    _, feed, contract = await _readable(request)
    entity = request.match_info["entity"]
    item = feed.last(contract, entity)
    if item is None:
        raise _missing(feed, contract, entity)
    return _answer(request, item.event, many=False)


async def _history(request: web.Request) -> web.Response:
    _, feed, contract = await _readable(request)
    entity = request.match_info["entity"]
    try:
        since = parse_since(request.query.get("since"), time.time())
    except BadQuery as exc:
        raise _bad(exc) from None
    if feed.last(contract, entity) is None:
        raise _missing(feed, contract, entity)
    items = feed.history(contract, entity, since)
    return _answer(request, events(item.event for item in items), many=True)


def routes(app: web.Application) -> None:
    """Add the entity API's routes to the gateway's application."""
    app[_NAMED] = {}
    app.router.add_get("/api/v1/contracts", _contracts)
    app.router.add_get("/api/v1/contracts/{contract}/entities", _entities)
    app.router.add_get("/api/v1/contracts/{contract}/entities/{entity}", _entity)
    app.router.add_get("/api/v1/contracts/{contract}/entities/{entity}/history", _history)
