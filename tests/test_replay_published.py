"""Operators see the sandbox's traffic where they see every publisher's: ``citybus_messages_published``.

The replay publishes through the raw fast path and counts per contract in bulk (issue 12, item 13:
the dashboard's messages row stayed empty while only the sandbox ran). Replayed into a real server.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters.testing import AdapterHarness
from bus import Bus
from sandbox.adapter import SandboxReplay
from tests.conftest import wait_for
from tests.test_server_memory import _recording


def _published(bus: Bus) -> dict[tuple[str, ...], float]:
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(generate_latest(bus.metrics.registry).decode()):
        for sample in family.samples:
            if sample.name in (
                "citybus_messages_published_total",
                "citybus_adapter_messages_published_total",
            ):
                found[(sample.name, *sorted(sample.labels.values()))] = sample.value
    return found


async def test_a_replay_counts_in_citybus_messages_published(quiet_bus: Bus, tmp_path: Path) -> None:
    config = {"files": [str(_recording(tmp_path / "beach.mcap", 300))], "speed": 0, "loop": False}
    beach = "environment.beach-observation.v1"
    async with AdapterHarness(SandboxReplay, config, instance="sandbox", bus=quiet_bus):
        key = ("citybus_messages_published_total", beach)
        await wait_for(lambda: _published(quiet_bus).get(key) == 300)  # before the fix: never there
    found = _published(quiet_bus)
    assert (
        found[("citybus_adapter_messages_published_total", *sorted([beach, "sandbox", "sandbox-replay"]))]
        == 300
    )
