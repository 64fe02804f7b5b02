"""An adapter that finished its work (a replay that does not loop) is done, not down.

Its ``run`` returned: the supervisor does not restart it, it stays ready, ``citybus_adapter_up`` is 0
(it does not run) and ``citybus_adapter_finished`` 1, the alert for a down adapter stays quiet, and
``citybus status`` shows ``done`` where a crashed one shows ``NO``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import ClassVar

import pytest

from adapters import Adapter, Context, NoConfig, Supervisor
from adapters.instances import parse_instance
from bus import MemoryBus, Metrics
from bus.health import Health
from tests.conftest import wait_for
from tests.test_cli import Background, citybus_env, run_citybus


class OneShot(Adapter[NoConfig]):
    """Says it is ready and returns: a one-shot import."""

    name = "one-shot"
    runs: ClassVar[int] = 0

    async def run(self, ctx: Context) -> None:
        OneShot.runs += 1
        ctx.ready()


class Crashing(Adapter[NoConfig]):
    """Fails at once, every time."""

    name = "crashing"

    async def run(self, ctx: Context) -> None:
        raise RuntimeError("broken on purpose")


async def test_the_supervisor_marks_a_finished_adapter_finished_not_down() -> None:
    bus = MemoryBus(metrics=Metrics(), source="/tests")
    await bus.connect("memory://")
    health = Health()
    instances = [parse_instance("import", OneShot, {}), parse_instance("broken", Crashing, {})]
    supervisor = Supervisor(instances, bus=bus, health=health)

    def value(name: str, adapter: str, instance: str) -> float:
        labels = {"adapter": adapter, "adapter_instance": instance}
        return bus.metrics.registry.get_sample_value(name, labels) or 0.0

    task = asyncio.create_task(supervisor.run())
    try:
        await wait_for(lambda: value("citybus_adapter_finished", "one-shot", "import") == 1)
        await wait_for(lambda: value("citybus_adapter_restarts_total", "crashing", "broken") >= 1)
        assert value("citybus_adapter_up", "one-shot", "import") == 0
        assert value("citybus_adapter_finished", "crashing", "broken") == 0
        assert health.status()["adapter import"] is True
        assert OneShot.runs == 1  # not restarted
    finally:
        supervisor.stop()
        await task
        await bus.drain()


@pytest.mark.slow
async def test_status_shows_a_finished_replay_as_done(tmp_path: Path) -> None:
    cwd, data_dir = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    # Ten recorded minutes as fast as possible, once: finished within moments.
    (cwd / "citybus.toml").write_text(
        '[adapters.sandbox]\nadapter = "sandbox-replay"\nspeed = 0\nloop = false\nduration = 600\n'
    )
    env = citybus_env(data_dir)
    up = await Background.start("up", cwd=cwd, env=env)
    try:
        await up.wait_said(r"^citybus is up: NATS at ")
        await up.wait_said(r'"event": "adapter finished"')
        shown = await run_citybus("status", "--once", cwd=cwd, env=env)
        as_json = await run_citybus("status", "--once", "--json", cwd=cwd, env=env)
    finally:
        try:
            await up.stop(signal.SIGINT)
        finally:
            await up.kill()
    assert shown.returncode == 0, shown
    (row,) = [line.split() for line in shown.stdout.splitlines() if line.strip().startswith("sandbox-replay")]
    assert row[:3] == ["sandbox-replay", "sandbox", "done"], shown.stdout
    assert shown.stdout.splitlines()[0].endswith(": ready"), shown.stdout
    status = json.loads(as_json.stdout)
    assert [(a["instance"], a["up"], a["finished"]) for a in status["adapters"]] == [("sandbox", False, True)]
