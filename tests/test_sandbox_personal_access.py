"""A recording for a pilot under access control: only a user that declares a sealed contract reads
its subjects and its keys, so only such a user can make a pseudonymised recording of it; anyone
else is refused by the broker, in one line."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bus import Bus, Metrics
from bus.console import check_subscriptions
from bus.errors import PermissionDeniedError
from bus.subjects import contract_filter
from contracts.community import VolunteerSignup
from sandbox.recorder import RecordReport, record
from sandbox.recording import read_messages
from tests.conftest import wait_for
from tests.test_access import City, city
from tests.test_sandbox_personal import EMAIL, NAME, PHONE, signup

__all__ = ["city"]  # the access-controlled city of tests/test_access.py, for this module's tests


async def test_only_a_user_that_declares_the_contract_records_it_pseudonymised(
    city: City, tmp_path: Path
) -> None:
    url, store = city.server.url, city.store
    buses = {
        user: Bus(metrics=Metrics(), source=f"/tests/{user}")
        for user in ("provisioner", "volunteer-platform", "volunteer-stats", "internal")
    }
    for user, bus in buses.items():
        await bus.connect(url, **store.load("CITY", user).connect_options())
    try:
        await buses["provisioner"].provision_streams()
        pattern = contract_filter(VolunteerSignup)
        path, report, stop, ready = tmp_path / "pilot.mcap", RecordReport(), asyncio.Event(), asyncio.Event()
        recorder = asyncio.create_task(
            record(
                buses["volunteer-stats"],
                [pattern],
                path,
                stop=stop,
                ready=ready,
                pseudonymise=True,
                report=report,
            )
        )
        await ready.wait()
        check_subscriptions(buses["volunteer-stats"], [pattern], "volunteer-stats")  # allowed
        volunteer = f"v-{os.urandom(6).hex()}"
        await buses["volunteer-platform"].publish(signup(volunteer), provenance="manual")
        await wait_for(lambda: report.pseudonymised == 1)
        stop.set()
        assert await recorder == 1
        raw = path.read_bytes()
        for identifier in (NAME, EMAIL, PHONE, volunteer):
            assert identifier.encode() not in raw
        (message,) = read_messages(path)
        assert message.headers["ce-provenance"] == "pseudonymised"

        # an internal client reads no personal data: its recording is refused by the broker
        other_stop, other_ready = asyncio.Event(), asyncio.Event()
        refused = asyncio.create_task(
            record(buses["internal"], [pattern], tmp_path / "x.mcap", stop=other_stop, ready=other_ready)
        )
        await other_ready.wait()
        await buses["internal"].flush()
        with pytest.raises(PermissionDeniedError, match="the broker refused"):
            check_subscriptions(buses["internal"], [pattern], "internal")
        other_stop.set()
        assert await refused == 0
    finally:
        for bus in buses.values():
            await bus.drain()
