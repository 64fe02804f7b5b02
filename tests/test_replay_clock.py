"""Replayed time: which clock an instance runs on (``account``, ``clock``), and ``ce-time`` stamped
from it, through the real path — ``citybus up``'s runtime on a real nats-server, the sandbox's
replay publishing its clock, adapter instances in ``SANDBOX`` and ``CITY`` under access control."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from sdk_adapters import Ticker

from adapters import Instance, default_replay, instances_from_config
from adapters.cli import find_instance as _instance
from adapters.testing import AdapterHarness
from bus import Event
from bus.config import load_config
from bus.errors import ConfigError
from bus.runtime import Runtime
from contracts import BeachObservation
from sandbox.adapter import SandboxReplay

ADAPTERS = {"ticker": Ticker, "sandbox-replay": SandboxReplay}
DAY = datetime(2018, 8, 27, 22, 0, tzinfo=UTC)  # the recorded day begins at midnight in Drammen


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The test adapters installed for real (a .dist-info with entry points) next to citybus's own."""
    site = tmp_path / "site"
    info = site / "citybus_clock_tests-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: citybus-clock-tests\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[citybus.adapters]\nticker = sdk_adapters:Ticker\n")
    monkeypatch.syspath_prepend(str(site))
    yield site


def instances(sections: dict[str, dict[str, Any]]) -> dict[str, Instance]:
    return {i.name: i for i in instances_from_config(sections, ADAPTERS)}


# -- which clock, which account ---------------------------------------------------------------


def test_an_instance_in_the_sandbox_runs_on_the_configured_replays_clock() -> None:
    found = instances(
        {
            "harbour": {"adapter": "sandbox-replay"},
            "pilot": {"adapter": "ticker", "account": "sandbox"},
            "pilot-on-wall": {"adapter": "ticker", "account": "sandbox", "clock": "wall"},
            "named": {"adapter": "ticker", "clock": "harbour"},
            "city": {"adapter": "ticker"},
        }
    )
    assert (found["pilot"].clock, found["pilot"].account) == ("harbour", "SANDBOX")
    assert (found["pilot-on-wall"].clock, found["pilot-on-wall"].account) == (None, "SANDBOX")
    assert (found["named"].clock, found["named"].account) == ("harbour", "SANDBOX")
    assert (found["city"].clock, found["city"].account) == (None, "CITY")
    assert (found["harbour"].clock, found["harbour"].account) == (None, "SANDBOX")  # it keeps its own time


def test_citybus_up_without_adapter_sections_runs_only_the_replay_on_its_own_time() -> None:
    from adapters.runtime import default_sections

    [replay] = instances_from_config(default_sections(ADAPTERS), ADAPTERS)
    assert (replay.name, replay.clock, replay.account) == ("sandbox", None, "SANDBOX")


def test_without_a_configured_replay_it_follows_the_one_citybus_up_runs_by_default() -> None:
    # A file with only the pilot's section: the replay is the one `citybus up` runs without one.
    assert default_replay({"pilot": {"adapter": "ticker"}}, ADAPTERS) == "sandbox"
    assert instances({"pilot": {"adapter": "ticker", "account": "sandbox"}})["pilot"].clock == "sandbox"
    # A disabled replay is not followed.
    sections = {"old": {"adapter": "sandbox-replay", "enabled": False}, "new": {"adapter": "sandbox-replay"}}
    assert default_replay(sections, ADAPTERS) == "new"


def test_with_several_replays_a_sandbox_instance_must_name_its_clock() -> None:
    sections: dict[str, dict[str, Any]] = {
        "morning": {"adapter": "sandbox-replay"},
        "evening": {"adapter": "sandbox-replay"},
        "pilot": {"adapter": "ticker", "account": "sandbox"},
    }
    with pytest.raises(ConfigError, match=r"\[adapters.pilot\] \(ticker\): .*no single replay.*clock = "):
        instances(sections)
    sections["pilot"]["clock"] = "evening"
    assert instances(sections)["pilot"].clock == "evening"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"account": "production"}, 'account must be "city" or "sandbox"'),
        ({"account": "city", "clock": "sandbox"}, "replayed data must never reach production"),
        ({"clock": "Wall Clock"}, 'or be "wall"'),
    ],
)
def test_a_wrong_account_or_clock_is_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        instances({"pilot": {"adapter": "ticker", **table}})


def test_a_replay_may_not_be_put_in_the_city_account_nor_named_wall() -> None:
    with pytest.raises(ConfigError, match="is a replay"):
        instances({"sandbox": {"adapter": "sandbox-replay", "account": "city"}})
    with pytest.raises(ConfigError, match='may not be named "wall"'):
        instances({"wall": {"adapter": "sandbox-replay"}})


def test_adapters_run_finds_the_replay_among_all_sections(installed: Path, tmp_path: Path) -> None:
    toml = tmp_path / "citybus.toml"
    toml.write_text(
        '[adapters.harbour]\nadapter = "sandbox-replay"\n'
        '[adapters.pilot]\nadapter = "ticker"\naccount = "sandbox"\n'
    )
    config = load_config(toml, environ={})
    assert _instance("pilot", config).clock == "harbour"  # not "sandbox": the file configures harbour
    assert _instance("ticker", load_config(None, environ={})).clock is None  # a CITY adapter as it is


# -- ce-time from the instance's clock --------------------------------------------------------


async def test_publish_stamps_the_replayed_time_and_an_explicit_time_wins() -> None:
    noon = datetime(2018, 8, 28, 12, 0, tzinfo=UTC)
    async with AdapterHarness(Ticker, {"interval": 3600}, clock="sandbox") as harness:
        await harness.tick(noon, state="paused")
        assert harness.context is not None
        await harness.context.publish(BeachObservation.example(), provenance="synthetic")
        await harness.context.publish(BeachObservation.example(), provenance="synthetic", time=DAY)
        await harness.settle()
    stamps = [e.envelope.time for e in harness.published(BeachObservation) if e.envelope.source != "/tests"]
    assert noon in stamps and DAY in stamps


async def test_citybus_up_runs_sandbox_instances_on_replayed_time(installed: Path, tmp_path: Path) -> None:
    toml = tmp_path / "citybus.toml"
    toml.write_text(
        f'[server]\ndata_dir = "{tmp_path / "nats"}"\n[ops]\nport = 0\n'
        '[adapters.sandbox]\nadapter = "sandbox-replay"\nshift_to_now = false\nstart = 43200\n'
        'include = ["city.public.environment.beach-observation.>"]\n'
        '[adapters.pilot]\nadapter = "ticker"\naccount = "sandbox"\nsite = "pilot-replayed"\ninterval = 60\n'
        '[adapters.pilot-wall]\nadapter = "ticker"\naccount = "sandbox"\nclock = "wall"\n'
        'site = "pilot-wall"\ninterval = 0.5\n'
        '[adapters.city]\nadapter = "ticker"\nsite = "city-wall"\ninterval = 0.5\n'
    )
    runtime = Runtime(load_config(toml, environ={}))
    stop = asyncio.Event()
    seen: dict[str, list[Event[BeachObservation]]] = {"sandbox": [], "city": []}

    def collect(into: str) -> Any:
        async def handler(event: Event[BeachObservation]) -> None:
            seen[into].append(event)

        return handler

    started = datetime.now(UTC)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await asyncio.wait_for(runtime.ready.wait(), 60)
        assert runtime.connector is not None and runtime.connector.enabled
        sandbox = await runtime.connector.connect("SANDBOX", "internal")
        city = await runtime.connector.connect("CITY", "internal")
        await sandbox.subscribe(BeachObservation, collect("sandbox"), entity="*")
        await city.subscribe(BeachObservation, collect("city"), entity="*")

        def by(where: str, site: str) -> list[Event[BeachObservation]]:
            return [e for e in seen[where] if e.data.site == site]

        await wait_for(lambda: len(by("sandbox", "pilot-replayed")) >= 2, timeout=60)
        await wait_for(lambda: bool(by("sandbox", "pilot-wall") and by("city", "city-wall")), timeout=60)
        await sandbox.close()
        await city.close()
        stop.set()
    # On the replay's clock: the replayed afternoon of 2018-08-28, a minute apart (interval = 60
    # seconds of replayed time), stamped by ctx.publish although the ticker passes no time.
    replayed = by("sandbox", "pilot-replayed")
    for event in replayed:
        assert event.envelope.source == "/adapters/pilot"
        assert event.envelope.time is not None
        assert DAY + timedelta(hours=12) <= event.envelope.time < DAY + timedelta(hours=24)
    first, second = replayed[0].envelope.time, replayed[1].envelope.time
    assert first is not None and second is not None and second - first >= timedelta(seconds=59)
    # clock = "wall" in SANDBOX, and an instance in CITY: the wall clock's time.
    for event in (*by("sandbox", "pilot-wall"), *by("city", "city-wall")):
        assert event.envelope.time is not None and event.envelope.time >= started - timedelta(seconds=1)
    assert by("city", "pilot-replayed") == []  # replayed data never reaches CITY
