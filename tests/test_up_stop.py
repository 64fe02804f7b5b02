"""``citybus up`` stopped while it is still starting: everything stops in reverse order of starting.

Issue 12, item 12: a SIGTERM while the adapters were getting ready stopped nats-server first (the
adapter runtime's stop was put on the stack only once its start had returned), so every adapter
connection logged "nats error" and "nats disconnected" on its way out. Here a real ``citybus up``
(a child process) runs the replay and an MQTT bridge whose broker never answers, so the adapters
never all get ready; it is stopped in that state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import Background, citybus_env

pytestmark = pytest.mark.slow

CONFIG = """\
[adapters.sandbox]
adapter = "sandbox-replay"

[adapters.bridge]
adapter = "mqtt-bridge"
url = "mqtt://127.0.0.1:9"
inbound = [{ topic = "sensors/#", subject_prefix = "mqtt" }]
"""


def events(lines: list[str]) -> list[dict[str, Any]]:
    """The JSON log lines among ``lines``."""
    found = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "event" in record:
                found.append(record)
    return found


async def wait_logged(process: Background, event: str, **fields: str) -> None:
    """Wait until ``citybus up`` logs ``event`` with ``fields``; fail if it exits first."""
    async with asyncio.timeout(60):
        while not any(
            r["event"] == event and all(r.get(k) == v for k, v in fields.items())
            for r in events(process.stderr)
        ):
            assert process.process.returncode is None, process.text
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_during_start_up_stops_the_adapters_before_the_server(tmp_path: Path, sig: int) -> None:
    (tmp_path / "citybus.toml").write_text(CONFIG)
    env = citybus_env(tmp_path / "data", CITYBUS_LOG_FORMAT="json")
    process = await Background.start("up", cwd=tmp_path, env=env)
    try:
        # The replay is running and the bridge is still trying to reach its broker: start-up is
        # waiting for it to be ready.
        await wait_logged(process, "adapter ready", instance="sandbox")
        await wait_logged(process, "mqtt connect failed", instance="bridge")
        result = await process.stop(sig)
    finally:
        await process.kill()
    assert result.returncode == 0, result
    logged = events(result.stderr.splitlines())
    order = [r["event"] for r in logged]
    assert "citybus is up" not in order, result.stderr
    assert "stopping during start-up" in order, result.stderr

    def index(event: str, **fields: str) -> int:
        found = [
            i
            for i, r in enumerate(logged)
            if r["event"] == event and all(r.get(k) == v for k, v in fields.items())
        ]
        assert found, f"nothing logged {event} {fields}:\n{result.stderr}"
        return found[0]

    server_stopped = index("nats-server stopped")
    for instance in ("sandbox", "bridge"):
        assert index("adapter stopped", instance=instance) < server_stopped, result.stderr
    # Nothing lost its connection on the way out: the server went last.
    assert not [r for r in logged if r["event"] in ("nats disconnected", "nats error")], result.stderr
