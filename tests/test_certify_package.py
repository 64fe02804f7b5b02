"""The three adapters that must fail ``citybus certify`` (tests/certify_package.py): installed for
real, listed by ``citybus adapters list``, and each doing the one wrong thing it is there for when
run in the project's harness: ``crashy-advisor`` ends its run on a corrupt body,
``echo-duplicates`` turns a duplicate into two equal outputs, ``jumpy-watch`` calls sensors of
the clean recorded day stuck.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from adapters.testing import AdapterHarness
from bus.envelope import Provenance, build_headers
from bus.subjects import contract_subject
from contracts import BeachObservation, default_registry
from tests import certify_package
from tests.test_cli import citybus_env, run_citybus
from tests.test_sensor_watch import recorded_beach_day

MODULES = ("certtest_adapters", "certtest_contracts")


async def test_adapters_list_shows_all_three(tmp_path: Path) -> None:
    site = certify_package.install(tmp_path / "site")
    env = citybus_env(tmp_path / "data")
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(site)])
    (tmp_path / "cwd").mkdir()
    listed = await run_citybus("adapters", "list", cwd=tmp_path / "cwd", env=env)
    assert listed.returncode == 0 and listed.stderr == "", listed
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:] if line.strip()}
    for name in certify_package.ADAPTERS:
        row = rows[name]
        assert row[1] == "service" and row[2] == "environment.beach-observation", listed
        produced = certify_package.ALARM if name == certify_package.JUMPY else certify_package.ADVICE
        assert row[3] == produced and "certtest-adapters" in " ".join(row), listed
    assert "jumpy-watch: Stuck beach sensors, called far too eagerly" in listed.stdout


@pytest.fixture
def package(tmp_path: Path) -> Iterator[ModuleType]:
    """The package imported in this process; its contracts are forgotten again afterwards."""
    site = certify_package.install(tmp_path / "site")
    sys.path.insert(0, str(site))
    try:
        contracts = importlib.import_module("certtest_contracts")
        yield importlib.import_module("certtest_adapters")
    finally:
        sys.path.remove(str(site))
        for cls in (contracts.BeachAdvice, contracts.SensorAlarm):
            default_registry().remove(cls)
        for name in MODULES:
            sys.modules.pop(name, None)


def observation(site: str, hour: int, water: float) -> BeachObservation:
    return msgspec.structs.replace(
        BeachObservation.example(),
        site=site,
        observed_at=BeachObservation.example().observed_at.replace(hour=hour),
        water_temperature=water,
    )


def headers(reading: BeachObservation, event_id: str) -> dict[str, str]:
    return build_headers(
        BeachObservation.__contract__,
        event_id=event_id,
        source="/adapters/beach",
        time=reading.observed_at,
        provenance=Provenance.SENSOR,
    )


async def test_crashy_advisor_ends_its_run_on_a_corrupt_body(package: ModuleType) -> None:
    reading = observation("blektjern", 10, 17.5)
    subject, body = contract_subject(reading), msgspec.json.encode(reading)
    async with AdapterHarness(package.CrashyAdvisor) as harness:
        await harness.publish_raw(subject, body, headers(reading, "one"))
        await harness.publish_raw(subject, body, headers(reading, "one"))  # a duplicate: passed over
        [advice] = await harness.wait_for(package.BeachAdvice)
        assert advice.data.beach == "blektjern" and advice.data.swim
        await harness.publish_raw(subject, body[: len(body) // 2], headers(reading, "two"))
        with pytest.raises(RuntimeError, match="cannot read a beach observation"):
            await harness.settle()
            await harness.wait_for(package.BeachAdvice, 2, timeout=2)
        harness.error = None  # seen: the harness need not raise it again on leaving
    assert len(harness.published(package.BeachAdvice)) == 1


async def test_echo_duplicates_turns_a_duplicate_into_two_equal_outputs(package: ModuleType) -> None:
    reading = observation("stordammen", 11, 16.9)
    subject, body = contract_subject(reading), msgspec.json.encode(reading)
    async with AdapterHarness(package.EchoDuplicates) as harness:
        for _ in range(2):
            await harness.publish_raw(subject, body, headers(reading, "same-id"))
        first, second = await harness.wait_for(package.BeachAdvice, 2)
    assert first.subject == second.subject == "city.public.certtest.beach-advice.stordammen"
    assert msgspec.json.encode(first.data) == msgspec.json.encode(second.data)


async def test_jumpy_watch_calls_sensors_of_the_clean_day_stuck(package: ModuleType) -> None:
    [detection] = package.JumpyWatch.detects
    assert (detection.field, dict(detection.kinds)) == ("problem", {"stuck": "stuck"})
    day = recorded_beach_day()
    async with AdapterHarness(package.JumpyWatch) as harness:
        for message in day:
            await harness.publish_raw(message.subject, message.data, message.headers)
        await harness.settle()
        alarms = harness.published(package.SensorAlarm)
        assert harness.dead_letters == []
    # no fault at all, yet most readings after a site's first are "stuck" (143 of 161)
    assert len(alarms) > len(day) // 2, len(alarms)
    assert {a.data.sensor for a in alarms} == {m.subject.rpartition(".")[2] for m in day}
