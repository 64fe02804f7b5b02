"""The ops HTTP server, as Prometheus, a load balancer and a developer reading schemas see it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from bus import CityBusError, Metrics
from bus.health import Health, Verdict
from bus.ops import OpsServer
from contracts import default_registry


class Ops:
    """A running ops server and an HTTP client for it."""

    def __init__(self, server: OpsServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.session.get(self.server.url + path) as response:
            return response.status, response.content_type, await response.text()

    async def get_json(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.server.url + path) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def health() -> Health:
    return Health()


def make_server(metrics: Metrics, health: Health, port: int = 0) -> OpsServer:
    return OpsServer(
        metrics=metrics,
        health=health,
        registry=default_registry(),
        port=port,
        logger=structlog.get_logger(),
    )


@pytest.fixture
async def ops(metrics: Metrics, health: Health) -> AsyncIterator[Ops]:
    server = make_server(metrics, health)
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield Ops(server, session)
    await server.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_port_zero_picks_a_free_port(ops: Ops) -> None:
    assert ops.server.port != 0
    assert ops.server.url == f"http://127.0.0.1:{ops.server.port}"


async def test_the_index_lists_the_endpoints_and_where_the_gateway_serves(ops: Ops) -> None:
    ops.server.links["web"] = "http://127.0.0.1:8080/"
    status, index = await ops.get_json("/")
    assert status == 200
    assert "/metrics" in index["endpoints"] and index["links"] == {"web": "http://127.0.0.1:8080/"}


async def test_healthz_answers_while_the_process_lives(ops: Ops) -> None:
    assert await ops.get_json("/healthz") == (200, {"status": "ok"})


async def test_readyz_is_503_naming_what_is_not_ready_until_everything_is(ops: Ops, health: Health) -> None:
    # Nothing registered yet: not ready either (nothing has said it is).
    status, body = await ops.get_json("/readyz")
    assert status == 503
    assert body == {"status": "not ready", "checks": {}}

    health.expect("nats")
    health.expect("streams")
    health.ready("nats")
    status, body = await ops.get_json("/readyz")
    assert status == 503
    assert body["checks"] == {"nats": True, "streams": False}

    health.ready("streams")
    assert await ops.get_json("/readyz") == (
        200,
        {"status": "ready", "checks": {"nats": True, "streams": True}},
    )


async def test_readyz_follows_live_checks(ops: Ops, health: Health) -> None:
    connected = [True]
    health.ready("nats")
    health.check("nats connected", lambda: connected[0])
    assert (await ops.get_json("/readyz"))[0] == 200
    connected[0] = False
    status, body = await ops.get_json("/readyz")
    assert status == 503
    assert body["checks"]["nats connected"] is False


async def test_a_check_that_raises_counts_as_not_ready(ops: Ops, health: Health) -> None:
    def broken() -> bool:
        raise RuntimeError("probe failed")

    health.ready("nats")
    health.check("database", broken)
    status, body = await ops.get_json("/readyz")
    assert status == 503
    assert body["checks"] == {"nats": True, "database": False}


async def test_healthz_tells_degraded_and_unhealthy_with_reasons_but_stays_200(
    ops: Ops, health: Health
) -> None:
    """Liveness is 200 while the process answers (a restart heals no cluster); the body tells the truth."""
    verdict = [Verdict(ok=True)]
    health.expect("adapters")  # starting: not ready, but nothing wrong
    health.check("nats cluster", lambda: verdict[0])
    assert await ops.get_json("/healthz") == (200, {"status": "ok"})

    verdict[0] = Verdict(ok=True, reasons=("node citybus-3 is down",))
    assert await ops.get_json("/healthz") == (
        200,
        {"status": "degraded", "reasons": {"nats cluster": ["node citybus-3 is down"]}},
    )
    health.ready("adapters")
    status, body = await ops.get_json("/readyz")  # degraded is still ready, and says why
    assert (status, body["status"], body["reasons"]) == (
        200,
        "ready",
        {"nats cluster": ["node citybus-3 is down"]},
    )

    verdict[0] = Verdict(ok=False, reasons=("stream CITY/CITY_PUBLIC_MOBILITY has no quorum (no leader)",))
    status, body = await ops.get_json("/healthz")
    assert (status, body["status"], body["failing"]) == (200, "unhealthy", ["nats cluster"])
    assert body["reasons"]["nats cluster"] == ["stream CITY/CITY_PUBLIC_MOBILITY has no quorum (no leader)"]
    status, body = await ops.get_json("/readyz")
    assert (status, body["checks"]["nats cluster"]) == (503, False)


async def test_metrics_are_prometheus_text_of_the_bus_registry(ops: Ops, metrics: Metrics) -> None:
    metrics.connected.set(1)
    beach = metrics.contract("environment.beach-observation.v1")
    beach.published.inc(3)
    beach.invalid("invalid-body")
    status, content_type, text = await ops.get("/metrics")
    assert status == 200
    assert content_type == "text/plain"
    got = samples(text)
    contract = (("contract", "environment.beach-observation.v1"),)
    assert got[("citybus_nats_connected", ())] == 1.0
    assert got[("citybus_messages_published_total", contract)] == 3.0
    assert got[("citybus_messages_received_total", contract)] == 0.0
    assert got[("citybus_messages_invalid_total", (*contract, ("reason", "invalid-body")))] == 1.0
    assert got[("citybus_nats_reconnects_total", ())] == 0.0
    # Only the bus's own registry: no process or platform collectors from the global one.
    assert not any(name.startswith(("process_", "python_")) for name, _ in got)

    beach.published.inc()
    _, _, text = await ops.get("/metrics")
    assert samples(text)[("citybus_messages_published_total", contract)] == 4.0


async def test_contracts_lists_every_contract(ops: Ops) -> None:
    status, body = await ops.get_json("/contracts")
    assert status == 200
    assert [c["name"] for c in body] == [c.__contract__.name for c in default_registry()]
    beach = next(c for c in body if c["name"] == "environment.beach-observation")
    assert beach == {
        "name": "environment.beach-observation",
        "version": 1,
        "classification": "public",
        "key": "site",
        "type": "environment.beach-observation.v1",
        "subject": "city.public.environment.beach-observation.*",
        "description": (
            "The water at one of Drammen's bathing sites, as a citizen deciding where to swim needs it."
        ),
        "package": "citybus",
    }


async def test_schema_of_one_contract(ops: Ops) -> None:
    status, schema = await ops.get_json("/contracts/environment.beach-observation/schema")
    assert status == 200
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "urn:citybus:contract:environment.beach-observation:v1"
    assert schema["title"] == "environment.beach-observation"
    assert schema["type"] == "object"
    assert {"site", "observed_at", "water_temperature"} <= set(schema["required"])
    assert schema["properties"]["water_temperature"]["x-unit"] == "CEL"


async def test_schema_of_an_unknown_contract_is_a_404_naming_the_known_ones(ops: Ops) -> None:
    status, body = await ops.get_json("/contracts/environment.nope/schema")
    assert status == 404
    assert "unknown contract environment.nope" in body["error"]
    assert "environment.beach-observation" in body["error"]


async def test_asyncapi_document(ops: Ops) -> None:
    status, document = await ops.get_json("/asyncapi.json")
    assert status == 200
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert "city.public.environment.beach-observation.{entity}" in addresses
    # One address per contract, but a reply's: it goes to the requester's inbox (address null).
    replies = [c for c in default_registry() if c.__contract__.exchange == "reply"]
    assert len(addresses - {None}) == len(default_registry()) - len(replies)
    assert len(document["channels"]) == len(default_registry())
    signup = document["components"]["messages"]["community_volunteer-signup_v1"]
    assert signup["x-citybus-sealed"] is True and signup["x-citybus-person"] == "volunteer_id"


async def test_unknown_path_is_404(ops: Ops) -> None:
    status, _, _ = await ops.get("/nope")
    assert status == 404


async def test_stop_is_idempotent_and_closes_the_port(metrics: Metrics, health: Health) -> None:
    server = make_server(metrics, health)
    await server.start()
    await server.stop()
    await server.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(server.url + "/healthz")


async def test_port_in_use_says_which_and_how_to_choose_another(ops: Ops, metrics: Metrics) -> None:
    taken = ops.server.port
    second = make_server(metrics, Health(), port=taken)
    with pytest.raises(CityBusError) as info:
        await second.start()
    message = str(info.value)
    assert f"127.0.0.1:{taken}" in message
    assert "--ops-port" in message
    assert "CITYBUS_OPS_PORT" in message
    assert "0 picks a free one" in message
    # The first server is unharmed.
    assert (await ops.get_json("/healthz"))[0] == 200
