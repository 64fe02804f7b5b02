"""``citybus up`` as a newcomer runs it — no configuration, access control on, the sandbox replaying
Drammen — serves the gateway: the page, the catalogue, the entity API and live updates by SSE, at
the address it prints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.test_cli import start_up

pytestmark = pytest.mark.slow


async def _json(session: aiohttp.ClientSession, url: str) -> tuple[int, object]:
    async with session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def test_a_fresh_citybus_up_serves_the_page_the_catalogue_entities_and_sse(tmp_path: Path) -> None:
    running = await start_up(tmp_path, sandbox=True)
    try:
        web = (await running.process.wait_said(r"^\s+web\s+(http://\S+)/\s")).group(1)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{web}/") as page:
                assert page.status == 200 and page.content_type == "text/html"
                assert "/catalogue" in await page.text()
            status, catalogue = await _json(session, f"{web}/catalogue.jsonld")
            assert status == 200 and isinstance(catalogue, dict)
            assert "environment.beach-observation" in json.dumps(catalogue)

            url = f"{web}/api/v1/contracts/mobility.train-call/entities"
            seen: list[object] = []

            async def entities() -> None:
                status, body = await _json(session, url)
                assert status == 200
                seen[:] = body if isinstance(body, list) else []

            for _ in range(100):  # the replay publishes its first train calls within seconds
                await entities()
                if seen:
                    break
                await asyncio.sleep(0.2)
            assert seen, "no train call served while the sandbox replays"

            events: list[dict[str, object]] = []
            async with session.get(f"{web}/api/v1/stream?subject=city.public.>") as stream:
                assert stream.status == 200 and stream.content_type == "text/event-stream"

                async def read() -> None:
                    async for raw in stream.content:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("data: "):
                            events.append(json.loads(line[6:]))
                            return

                await asyncio.wait_for(read(), 60)
            assert events and str(events[0]["subject"]).startswith("city.public.")

            status, problem = await _json(
                session, f"{web}/api/v1/contracts/community.volunteer-signup/entities"
            )
            assert status == 403 and isinstance(problem, dict) and "personal" in str(problem["detail"])
    finally:
        await running.stop()
