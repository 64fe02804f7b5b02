"""Readiness covers every NATS connection of the process, not only the runtime's own: an adapter
whose connection is refused makes ``/readyz`` 503, and ``citybus status`` never says ``ready``
above ``NATS: DISCONNECTED``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from conftest import wait_for
from tcp_proxy import FreezableProxy

from bus import Bus
from bus.config import load_config
from bus.runtime import Connector, Runtime, RuntimeContext
from bus.status import collect, fetch, parse_metrics, render


class SecondConnection:
    """A component with a connection of its own (as each adapter has under access control), made
    through a proxy the test can cut."""

    name = "second-connection"

    def __init__(self, context: RuntimeContext) -> None:
        self.context = context
        self.proxy = FreezableProxy(context.nats_url)
        self.bus: Bus | None = None

    async def start(self) -> None:
        await self.proxy.__aenter__()
        ctx, runtime_connector = self.context, self.context.connector
        assert runtime_connector is not None
        connector = Connector(  # the runtime's, logging in as a user of its own, through the proxy
            ctx.config,
            self.proxy.url,
            registry=ctx.registry,
            metrics=ctx.metrics,
            logger=ctx.logger,
            store=runtime_connector.store,
            options=runtime_connector.options,
        )
        self.bus = await connector.connect("CITY", "service", name="second")

    async def stop(self) -> None:
        if self.bus is not None:
            await self.bus.close()
        await self.proxy.cut()


async def readyz(ops_url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{ops_url}/readyz") as response:
        return response.status


async def test_readyz_and_status_are_not_ready_while_any_connection_of_the_process_is_refused(
    tmp_path: Path,
) -> None:
    config = load_config(
        None, environ={"CITYBUS_SERVER_DATA_DIR": str(tmp_path / "nats"), "CITYBUS_OPS_PORT": "0"}
    )
    made: list[SecondConnection] = []

    def second(context: RuntimeContext) -> SecondConnection:
        made.append(SecondConnection(context))
        return made[-1]

    runtime = Runtime(config, components=[("second-connection", second)])
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        try:
            await asyncio.wait_for(runtime.ready.wait(), 60)
            assert runtime.ops is not None
            ops = runtime.ops.url
            assert await readyz(ops) == 200
            await made[0].proxy.cut()  # its connection is gone, and every reconnect refused
            cut = made[0].bus
            assert cut is not None
            await wait_for(lambda: not cut.connected)
            assert await readyz(ops) == 503
            assert runtime.bus is not None and runtime.bus.connected  # the runtime's own is fine
            shown = render(await fetch(ops, interval=None))
            assert shown.splitlines()[0].endswith("NOT READY")
            assert "NATS: DISCONNECTED" in shown
        finally:
            stop.set()


def test_status_never_says_ready_above_nats_disconnected() -> None:
    """/readyz and /metrics are read one after the other: should they disagree, the view says the worse."""
    status = collect(
        ops_url="http://127.0.0.1:9464",
        readiness={"status": "ready", "checks": {"nats": True}},
        metrics=parse_metrics("citybus_nats_connected 0\n"),
        before=None,
        interval=None,
        now=0.0,
    )
    first, *rest = render(status).splitlines()
    assert first.endswith("NOT READY")
    assert any("NATS: DISCONNECTED" in line for line in rest)
