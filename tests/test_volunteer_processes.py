"""Two platform *processes* on one server: a ``citybus adapters run volunteer-platform`` child and a
platform in the test's process share the requests (one queue group) and the ledger of places, and
still confirm exactly as many sign-ups as there are places."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import pytest

from bus import Bus
from contracts import Opportunity, OpportunityReceipt, Roster, RosterRequest, SignupReceipt, VolunteerSignup
from tests.test_cli import Background, citybus_env
from tests.volunteering import ORG, OTHER, offer, platform, signup, stored

pytestmark = pytest.mark.slow

CONFIG = f"""\
[auth]
mode = "off"

[adapters.volunteer-platform]
adapter = "volunteer-platform"
organisations = ["{ORG}", "{OTHER}"]
"""


async def test_two_platform_processes_confirm_50_of_200_concurrent_sign_ups(
    quiet_bus: Bus, tmp_path: Path
) -> None:
    (tmp_path / "citybus.toml").write_text(CONFIG)
    env = citybus_env(tmp_path / "data")
    child = await Background.start(
        "--log-format", "json", "adapters", "run", "volunteer-platform", "--nats", quiet_bus.url,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        await child.wait_said('"event": "adapter ready"')
        async with platform(quiet_bus) as here:
            receipt = await quiet_bus.request(
                offer("river-cleanup", places=50), OpportunityReceipt, timeout=30
            )
            assert receipt.data.accepted
            receipts = await asyncio.gather(
                *(
                    quiet_bus.request(signup(n, "river-cleanup"), SignupReceipt, timeout=60)
                    for n in range(200)
                )
            )
            assert Counter(r.data.status for r in receipts) == {"confirmed": 50, "full": 150}
            # a roster (from whichever process answers) holds what both recorded
            roster = await quiet_bus.request(RosterRequest(organisation=ORG), Roster, timeout=30)
            assert len(roster.data.entries) == 50
            assert here.adapter.places is not None
            entry, _ = await here.adapter.places.read("river-cleanup")
            assert entry is not None and len(entry.taken) == 50
    finally:
        await child.stop()
        await child.kill()
    answered = [line for line in child.stderr if re.search(r'"event": "sign-up request answered"', line)]
    assert answered and len(answered) < 200, "both processes answered some of the requests"
    records = [s for s in await stored(quiet_bus, VolunteerSignup) if s.task_id == "river-cleanup"]
    assert Counter(s.status for s in records) == {"confirmed": 50}
    last = [o for o in await stored(quiet_bus, Opportunity) if o.opportunity_id == "river-cleanup"][-1]
    assert last.places_left == 0
