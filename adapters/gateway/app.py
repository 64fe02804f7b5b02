"""The gateway's aiohttp application: its state, its middleware, and every module's routes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from adapters.gateway import page
from adapters.gateway.config import GatewayConfig
from adapters.gateway.feeds import Feed, Feeds
from adapters.gateway.metrics import GatewayMetrics
from adapters.gateway.who import Caller, Refusal, TokenResolver, caller_of, problem
from contracts import Registry

__all__ = ["STATE", "GatewayState", "build_app"]


@dataclass
class GatewayState:
    """What every handler of one gateway shares (``request.app[STATE]``)."""

    config: GatewayConfig
    registry: Registry
    feeds: Feeds
    metrics: GatewayMetrics
    log: Any
    account: str
    """The account it serves (``SANDBOX``, ``CITY``): a token of another is refused."""
    tokens: TokenResolver | None = None
    base_url: str = ""
    """Where it listens (``http://127.0.0.1:8080``), once it does."""
    max_clients: int = 5000
    """SSE clients at once: ``max_clients``, or fewer when the process may not open that many files
    (see :func:`adapters.gateway.adapter.open_files`)."""

    def caller(self, request: web.Request) -> Caller:
        """Who asks (raises :class:`~adapters.gateway.who.Refusal` for a bad token)."""
        return caller_of(request, self.tokens, self.account)

    def link_base(self, request: web.Request) -> str:
        """The base of the links handed to ``request``'s caller: ``public_url``, else the scheme
        and host the caller used."""
        return self.config.public_url.rstrip("/") or f"{request.scheme}://{request.host}"

    async def feed(self, caller: Caller) -> Feed:
        """The feed of the caller's user."""
        return await self.feeds.of(caller.user)


STATE = web.AppKey("state", GatewayState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals become their problem responses; an unexpected error a logged 500; every answer counted."""
    state = request.app[STATE]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Refusal as refusal:
        response = refusal.response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # a redirect
        response = problem(exc.status, exc.reason, exc.text or exc.reason)
    except Exception as exc:
        state.log.error("gateway request failed", path=request.path, error=repr(exc))
        response = problem(500, "Internal Server Error", "the gateway failed; its log says why")
    state.metrics.requests.labels(route, str(response.status)).inc()
    if isinstance(response, web.Response):  # a stream (SSE) lasts as long as its client stays
        state.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
    return response


def build_app(state: GatewayState) -> web.Application:
    """The application: the middleware and the routes of every part of the gateway."""
    # Imported here: each part's module imports STATE from this one.
    from adapters.gateway import catalogue_routes, entities, journey, ngsild, sse

    app = web.Application(middlewares=[_answer])
    app[STATE] = state
    catalogue_routes.routes(app)
    entities.routes(app)
    journey.routes(app)
    ngsild.routes(app)
    sse.routes(app)
    page.routes(app)
    return app
