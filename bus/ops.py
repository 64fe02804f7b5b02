"""The ops HTTP server (aiohttp): metrics, health, readiness, schemas and the AsyncAPI document.

====================================  ===============================================
``GET /``                             this list, and where the process serves more (the gateway)
``GET /metrics``                      Prometheus text format, from the bus's own registry
``GET /healthz``                      200 while the process answers (liveness); the body says
                                      ``ok``, ``degraded`` or ``unhealthy`` and why
``GET /readyz``                       200 when every component is ready, else 503 and why
``GET /contracts``                    the contracts: name, version, classification, subject,
                                      description and the package that brought it
``GET /contracts/{name}/schema``      one contract's JSON Schema
``GET /asyncapi.json``                the AsyncAPI 3.0 document of the bus
``GET /entities[/{contract}]``        each contract's entities from JetStream: location,
                                      rate, last value (``?account=city|sandbox``)
====================================  ===============================================

``/entities`` lists public and internal contracts' entities, with last values and locations for
public ones only, and never a personal one: the ops port has no login, and whoever reaches it
(Prometheus, an orchestrator, anyone on that network) must learn no more than ``/metrics`` tells
them plus what the city publishes anyway. ``citybus entities`` shows more, to the operator's login.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bus import subjects
from bus.asyncapi import asyncapi_document
from bus.entities import EntityReader
from bus.errors import CityBusError
from bus.health import Health
from bus.metrics import Metrics
from contracts import Classification, Registry, UnknownContractError, json_schema, package_of

__all__ = ["OpsServer"]


class OpsServer:
    """Serves the ops endpoints of one process until :meth:`stop`."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        health: Health,
        registry: Registry,
        host: str = "127.0.0.1",
        port: int = 9464,
        logger: Any = None,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._registry = registry
        self.host = host
        self.port = port
        self.log = (logger if logger is not None else structlog.get_logger()).bind(component="ops")
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self._get_index),
                web.get("/metrics", self._get_metrics),
                web.get("/healthz", self._get_healthz),
                web.get("/readyz", self._get_readyz),
                web.get("/contracts", self._get_contracts),
                web.get("/contracts/{name}/schema", self._get_schema),
                web.get("/asyncapi.json", self._get_asyncapi),
                web.get("/entities", self._get_entities),
                web.get("/entities/{contract}", self._get_entities),
            ]
        )
        self.app = app
        self.entities: EntityReader | None = None
        """Set by ``citybus up`` once it is connected; until then ``/entities`` answers 503."""
        self.links: dict[str, str] = {}
        """What the process's components serve elsewhere (the gateway's page), listed at ``/``."""

    @property
    def url(self) -> str:
        """Where the server listens, e.g. ``http://127.0.0.1:9464``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        """Listen; with port 0 a free port is chosen. Returns :attr:`url`."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise CityBusError(
                f"the ops server cannot listen on {self.host}:{self.port} ({exc.strerror}): choose another "
                "port with --ops-port, [ops] port in citybus.toml or CITYBUS_OPS_PORT (0 picks a free one)"
            ) from exc
        self._runner = runner
        # With port 0 the kernel chose one; read it back from the listening socket.
        for address in runner.addresses:
            self.port = int(address[1])
            break
        self.log.info("ops server listening", url=self.url)
        return self.url

    async def stop(self) -> None:
        """Stop listening. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _get_metrics(self, request: web.Request) -> web.Response:
        # In a worker thread: a collector may ask the NATS server (bus/monitor.py), and a server that
        # hangs must not stall the event loop.
        body = await asyncio.to_thread(generate_latest, self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _get_index(self, request: web.Request) -> web.Response:
        # What answers here, and where the rest is: the city's data for people is the gateway's.
        index = {
            "endpoints": [
                "/metrics",
                "/healthz",
                "/readyz",
                "/contracts",
                "/contracts/{name}/schema",
                "/asyncapi.json",
                "/entities",
            ],
            "links": dict(self.links),
        }
        return web.json_response(index)

    async def _get_healthz(self, request: web.Request) -> web.Response:
        # 200 whatever the checks say (see bus/health.py): restarting citybus heals no NATS cluster.
        report = self._health.report()
        body: dict[str, Any] = {"status": report.condition}
        if report.failing:
            body["failing"] = report.failing
        if report.reasons:
            body["reasons"] = report.reasons
        return web.json_response(body)

    async def _get_readyz(self, request: web.Request) -> web.Response:
        report = self._health.report()
        body: dict[str, Any] = {"status": "ready" if report.ready else "not ready", "checks": report.status}
        if report.reasons:
            body["reasons"] = report.reasons
        return web.json_response(body, status=200 if report.ready else 503)

    async def _get_contracts(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "name": c.__contract__.name,
                    "version": c.__contract__.version,
                    "classification": c.__contract__.classification.value,
                    "key": c.__contract__.key,
                    "type": c.__contract__.type,
                    "subject": subjects.contract_filter(c),
                    "description": c.summary(),
                    "package": package_of(c),
                }
                for c in self._registry
            ]
        )

    async def _get_schema(self, request: web.Request) -> web.Response:
        try:
            cls = self._registry.get(request.match_info["name"])
        except UnknownContractError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response(json_schema(cls))

    async def _get_entities(self, request: web.Request) -> web.Response:
        reader = self.entities
        if reader is None:
            return web.json_response({"error": "not connected to NATS yet"}, status=503)
        contract = request.match_info.get("contract")
        account = request.query.get("account")
        if account is not None and account.upper() not in ("CITY", "SANDBOX"):
            return web.json_response({"error": f"no account {account!r}: city or sandbox"}, status=400)
        try:
            if contract is not None:
                cls = self._registry.get(contract)
                if cls.__contract__.classification is Classification.PERSONAL:
                    return web.json_response(
                        {"error": f"{contract} is personal: its entities are not listed here"}, status=403
                    )
            chosen, listing = await reader(account, contract)
        except UnknownContractError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except CityBusError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"account": chosen, **listing.as_dict()})

    async def _get_asyncapi(self, request: web.Request) -> web.Response:
        return web.json_response(asyncapi_document(self._registry))
