"""Journey planning over HTTP: ``/api/v1/journey`` asks the journey planner on the bus, as the caller.

======================================================================  ============================
``GET /api/v1/journey?from=…&to=…[&depart=…|&arrive_by=…]``              the planner's
``[&max_walk=M][&bikes=true|false][&change=S][&max_changes=N]``          :class:`~contracts.JourneyPlan`
``POST /api/v1/journey`` with a JSON :class:`~contracts.JourneyRequest`  the same (without
                                                                          ``request_id``)
======================================================================  ============================

The gateway builds a :class:`~contracts.JourneyRequest` (with a random ``request_id``), sends it by
request/reply on ``city.public.rpc.mobility.journey-request.<id>`` over the connection of the caller's
NATS user (``public`` without a token, the token's user with one: :mod:`adapters.gateway.feeds`), and
answers with the plan as JSON.

=============================================  ======  =======================================
the planner says / what happened               status  body
=============================================  ======  =======================================
``ok``, ``no-route``                           200     the plan (``no-route``: ``message`` and
                                                       ``latest_departure`` say what would work)
``unknown-place``                              404     the plan (``suggestions``: nearest names)
``bad-request``                                400     the plan
``outside-validity``                           422     the plan (``valid_from``, ``valid_to``)
a malformed query or body                      400     a problem: the parameter and what to send
no planner answers (none runs, or too late)    503     a problem, with ``Retry-After``
the planner refused or sent what is no plan    502     a problem
=============================================  ======  =======================================

Decisions, and why:

* **The caller's connection, never the gateway's own.** The gateway's NATS user may do nothing;
  the request leaves as the caller's user, and the broker decides whether that user may ask
  (``public`` and ``internal`` may publish ``city.public.rpc.>``, :mod:`bus.access.policy`) and
  where the reply may go (the user's private inbox prefix).
* **A plan that says "no" is still an answer.** ``unknown-place`` is a 404, ``outside-validity`` a
  422 (the request is well formed, but the timetable does not cover its time) and ``bad-request``
  a 400, each with the plan itself as the body, so a program reads ``status`` and ``message`` the
  same way whatever the code. ``no-route`` is a 200: the planner searched and says what would work.
* **Times in the city's clock.** ``depart=2018-08-28T08:00`` without an offset is Drammen's local
  time (Europe/Oslo), as a traveller and the page's time field write it; with an offset
  (``…+02:00``, ``…Z``) it is that moment.
* **Unknown parameters are refused**, naming the known ones: ``arriveBy=…`` silently ignored would
  plan a journey leaving now, which the caller did not ask for.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from adapters.gateway.app import STATE
from adapters.gateway.query import MAX_VALUE, BadQuery
from adapters.gateway.who import problem
from bus.errors import (
    CityBusError,
    ContractViolation,
    NoRespondersError,
    NotConnectedError,
    PermissionDeniedError,
    RequestRefusedError,
    RequestTimeoutError,
)
from contracts import JourneyPlan, JourneyRequest

__all__ = ["CITY_TIME", "PATH", "STATUS", "parse_body", "parse_query", "routes"]

PATH: Final = "/api/v1/journey"
CITY_TIME: Final = ZoneInfo("Europe/Oslo")
"""The clock a time without an offset is read in: Drammen's."""
STATUS: Final[Mapping[str, int]] = {
    "ok": 200,
    "no-route": 200,
    "unknown-place": 404,
    "bad-request": 400,
    "outside-validity": 422,
}
"""The HTTP status of a plan, by its ``status``."""

_PARAMETERS: Final = {
    "from": "origin",
    "to": "destination",
    "depart": "depart",
    "arrive_by": "arrive_by",
    "max_walk": "max_walk",
    "bikes": "bikes",
    "change": "change",
    "max_changes": "max_changes",
}
"""Query parameter → the request's field."""
_NAMES: Final = {field: parameter for parameter, field in _PARAMETERS.items()}
_WHOLE: Final = {"max_walk": "metres", "change": "seconds", "max_changes": "changes"}
_BODY_MOST: Final = 4096
"""The largest POST body read (bytes): a request is a few hundred."""
_RETRY_AFTER: Final = "5"


def _moment(name: str, text: str) -> dt.datetime:
    """An ISO 8601 time; without an offset, Drammen's local time."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadQuery(
            f"{name}={text!r} is not an ISO 8601 time: send e.g. {name}=2018-08-28T08:00 "
            "(Drammen's time) or 2018-08-28T08:00:00+02:00"
        ) from None
    return moment.replace(tzinfo=CITY_TIME) if moment.tzinfo is None else moment


def _whole(name: str, text: str) -> int:
    stripped = text.strip()
    if not (stripped.isascii() and stripped.isdigit()) or len(stripped) > 9:
        raise BadQuery(f"{name}={text!r} must be a whole number of {_WHOLE[name]}, e.g. {name}=0")
    return int(stripped)


def _flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise BadQuery(f"{name}={text!r} must be true or false")
    return value == "true"


def _request(fields: dict[str, Any], names: Mapping[str, str]) -> JourneyRequest:
    """The request with a fresh id, its constraints checked by the contract; :class:`BadQuery`
    naming the parameter as the caller wrote it (``names``: field → its name there) when one does
    not fit."""
    if fields.get("depart") is not None and fields.get("arrive_by") is not None:
        raise BadQuery("give depart or arrive_by, not both")
    for missing in ("origin", "destination"):
        if not fields.get(missing):
            raise BadQuery(
                f"{names.get(missing, missing)} is missing: name a stop place (drammen, Oslo S, "
                "NSR:StopPlace:11) or a point LAT,LON"
            )
    try:
        return msgspec.convert({**fields, "request_id": secrets.token_hex(8)}, JourneyRequest)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        field = where.rstrip("`")
        raise BadQuery(f"{names.get(field, field)}: {message}") from None


def parse_query(pairs: Sequence[tuple[str, str]]) -> JourneyRequest:
    """The request a query string's ``(name, value)`` pairs ask for."""
    keys = [k for k, _ in pairs]
    unknown = sorted({k for k in keys if k not in _PARAMETERS})
    if unknown:
        raise BadQuery(
            f"unknown parameter {', '.join(unknown)}: the journey route reads {', '.join(_PARAMETERS)}"
        )
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise BadQuery(f"{', '.join(repeated)} given more than once: give each parameter once")
    fields: dict[str, Any] = {}
    for parameter, text in pairs:
        if len(text) > MAX_VALUE:
            raise BadQuery(f"{parameter} is {len(text)} characters long; at most {MAX_VALUE} are read")
        field = _PARAMETERS[parameter]
        if field in ("depart", "arrive_by"):
            fields[field] = _moment(parameter, text)
        elif field == "bikes":
            fields[field] = _flag(parameter, text)
        elif field in _WHOLE:
            fields[field] = _whole(parameter, text)
        else:
            fields[field] = text.strip()
    return _request(fields, _NAMES)


def parse_body(body: bytes) -> JourneyRequest:
    """The request a POST body asks for: a JSON :class:`~contracts.JourneyRequest` without
    ``request_id`` (times without an offset are Drammen's, as in the query)."""
    try:
        fields = msgspec.json.decode(body, type=dict[str, Any])
    except msgspec.DecodeError:
        raise BadQuery(
            'the body must be a JSON object, e.g. {"origin": "drammen", "destination": "Oslo S", '
            '"depart": "2018-08-28T08:00"}'
        ) from None
    if "request_id" in fields:
        raise BadQuery("leave request_id out: the gateway gives each request its own")
    known = set(JourneyRequest.__struct_fields__) - {"request_id"}
    unknown = sorted(set(fields) - known)
    if unknown:
        expected = ", ".join(sorted(known))
        raise BadQuery(f"unknown field {', '.join(unknown)}: a journey request has {expected}")
    for field in ("depart", "arrive_by"):
        if isinstance(fields.get(field), str):
            fields[field] = _moment(field, fields[field])
    return _request(fields, {})


def _bad(error: BadQuery) -> web.Response:
    return problem(400, "Bad Request", str(error))


def _unavailable(detail: str) -> web.Response:
    return problem(503, "Service Unavailable", detail, headers={"Retry-After": _RETRY_AFTER})


async def _ask(request: web.Request, journey: JourneyRequest) -> web.Response:
    """Send ``journey`` as the caller's user and answer with the plan, or a problem saying why not."""
    state = request.app[STATE]
    caller = state.caller(request)
    timeout = state.config.journey_timeout
    try:
        bus = (await state.feed(caller)).bus
        event = await bus.request(journey, JourneyPlan, timeout=timeout)
    except NoRespondersError:
        return _unavailable(
            "no journey planner is running on the bus: start one (citybus up runs journey-planner), "
            "then ask again"
        )
    except RequestTimeoutError:
        return _unavailable(f"the journey planner did not answer within {timeout:g} s: ask again shortly")
    except NotConnectedError as exc:
        return _unavailable(f"the gateway has no connection to the bus now ({exc}): ask again shortly")
    except RequestRefusedError as exc:  # the gateway's requests fit their contract: the planner failed
        state.log.error("journey planner refused a request", request_id=journey.request_id, error=str(exc))
        return problem(502, "Bad Gateway", "the journey planner failed on this request: its log says why")
    except ContractViolation as exc:
        state.log.error("journey planner answered no plan", request_id=journey.request_id, error=str(exc))
        return problem(
            502,
            "Bad Gateway",
            "the journey planner answered with no journey plan: the gateway's log says why",
        )
    except PermissionDeniedError as exc:
        state.log.error("journey request refused by the broker", user=caller.user, error=str(exc))
        return problem(
            500, "Internal Server Error", f"the broker refused the {caller.user} user's journey request"
        )
    except CityBusError as exc:  # a feed that cannot start: the user's connection failed
        state.log.error("journey request failed", user=caller.user, error=str(exc))
        return _unavailable(f"the gateway cannot reach the bus as {caller.user}: ask again shortly")
    plan = event.data
    return web.Response(
        status=STATUS.get(plan.status, 200),
        body=msgspec.json.encode(plan),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def _get(request: web.Request) -> web.Response:
    try:
        journey = parse_query(list(request.query.items()))
    except BadQuery as error:
        return _bad(error)
    return await _ask(request, journey)


async def _post(request: web.Request) -> web.Response:
    try:
        # Bounded before read: aiohttp would read up to its client_max_size (1 MiB).
        if request.content_length is None or request.content_length > _BODY_MOST:
            raise BadQuery(f"send a JSON body of at most {_BODY_MOST} bytes, with its Content-Length")
        journey = parse_body(await request.read())
    except BadQuery as error:
        return _bad(error)
    return await _ask(request, journey)


def routes(app: web.Application) -> None:
    """Add ``GET`` and ``POST`` ``/api/v1/journey``."""
    app.router.add_get(PATH, _get, allow_head=False)  # a HEAD would ask the planner for nothing
    app.router.add_post(PATH, _post)
