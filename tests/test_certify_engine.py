"""One certification run, for real: a private city (its own nats-server, access control, the replay
of the Drammen day), the adapter in a process of its own, certify's observer on the replay's clock.

The runs replay three hours of the recorded day at 2880x (under four wall seconds each).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bus.config import load_config
from bus.errors import CityBusError
from sandbox.adapter import DRAMMEN_DAY
from sandbox.certify.engine import certify_run
from sandbox.certify.runs import RunSpec, Scope, private_config, target_of
from sandbox.certify.suite import Restart, Slow

SCOPE = Scope(recording=DRAMMEN_DAY, speed=2880.0, start=6 * 3600.0, duration=3 * 3600.0)
"""06:00 to 09:00 of the day (local 08:00 to 11:00): beaches, weather and air quality all report."""

OUTAGE = """seed = 5
[[faults]]
kind = "outage"
subjects = ["city.public.environment.beach-observation.blektjern"]
start = 1800
duration = 3600
"""


def _target(tmp_path: Path, name: str = "beach-neighbours"):  # type: ignore[no-untyped-def]
    return target_of(name, load_config(None, environ={}))


async def test_a_clean_run_records_inputs_outputs_and_their_causes(tmp_path: Path) -> None:
    target = _target(tmp_path)
    record = await certify_run(target, RunSpec(name="clean", seed=1), SCOPE, tmp_path / "clean")
    assert record.exit_code is None, record.log_tail
    assert record.crashes == [] and record.refusals == []
    # the replay's window, on its own clock: 2018 times, not now
    assert record.origin.year == 2018 and record.origin.hour == 4
    assert timedelta(hours=2, minutes=45) < record.end - record.origin < timedelta(hours=3, minutes=10)
    consumed = ("beach-observation", "weather-observed", "air-quality-observed")
    assert record.inputs and all(i.subject.split(".")[3] in consumed for i in record.inputs)
    assert all(record.origin <= i.at <= record.end for i in record.inputs)
    # the adapter handled what came in, and every output it published carries its input's trace
    handled = {h.ce_id for h in record.handled}
    assert {i.ce_id for i in record.inputs} <= handled
    assert record.outputs and all(o.ce_source == "/adapters/beach-neighbours" for o in record.outputs)
    causes = {i.trace: i for i in record.inputs}
    assert all(o.trace in causes for o in record.outputs)
    assert all(o.at >= causes[o.trace].at for o in record.outputs)
    assert record.resources.peak_rss_bytes > 20 * 2**20 and record.resources.cpu_seconds > 0
    # nothing of the recorded day's own beach-neighbours messages was replayed beside the adapter's
    assert not any(i.ce_source == "/adapters/beach-neighbours" for i in record.inputs)


async def test_a_fault_plan_is_applied_and_its_ground_truth_read_back(tmp_path: Path) -> None:
    record = await certify_run(
        _target(tmp_path), RunSpec(name="outage", seed=5, plan=OUTAGE), SCOPE, tmp_path / "o"
    )
    assert record.truth and {t["kind"] for t in record.truth} == {"outage"}
    lost = {t["ce_id"] for t in record.truth}
    assert not lost & {i.ce_id for i in record.inputs}  # the adapter never saw them
    assert (tmp_path / "o" / "plan.toml").read_text() == OUTAGE


async def test_the_broker_restarts_mid_run_and_the_adapter_comes_back(tmp_path: Path) -> None:
    spec = RunSpec(name="restart", seed=1, restart=Restart(at=3600, down=1.5))
    record = await certify_run(_target(tmp_path), spec, SCOPE, tmp_path / "r")
    assert [f.kind for f in record.broker_faults] == ["restart"]
    fault = record.broker_faults[0]
    assert fault.start >= record.origin + timedelta(seconds=3600)
    assert record.crashes == [] and record.exit_code is None
    assert fault.end > fault.start + timedelta(seconds=1.5 * 2880)  # back once it listened again
    # handling after the broker came back: the adapter reconnected and kept working (it publishes
    # only when a site's nearest stations change, so its outputs may all come before)
    assert any(h.done is not None and h.done > fault.end for h in record.handled)


async def test_a_slow_link_delays_the_adapter_and_is_recorded(tmp_path: Path) -> None:
    spec = RunSpec(name="slow", seed=1, slow=Slow(start=1800, duration=3600, latency=0.05))
    record = await certify_run(_target(tmp_path), spec, SCOPE, tmp_path / "s")
    assert [f.kind for f in record.broker_faults] == ["slow"]
    assert record.crashes == [] and record.inputs and record.handled


async def test_an_adapter_that_never_gets_ready_is_reported_with_its_log(tmp_path: Path) -> None:
    """The archive's PostgreSQL is unreachable: the run ends with one line, and the log's tail."""
    config = tmp_path / "citybus.toml"
    config.write_text(
        '[adapters.archive]\nadapter = "postgres-archive"\ncontracts = ["environment.beach-observation"]\n'
        'dsn = "postgresql://nobody@127.0.0.1:1/none"\ntimeout = 1\n'
    )
    target = target_of("archive", load_config(config, environ={}))
    with pytest.raises(CityBusError, match="ready|exit"):
        await certify_run(
            target,
            RunSpec(name="clean", seed=1),
            Scope(recording=DRAMMEN_DAY, speed=2880.0, duration=600),
            tmp_path / "n",
            ready_timeout=5.0,
        )


def test_the_private_config_leaves_a_running_city_alone(tmp_path: Path) -> None:
    """Its own data dir, no ops port, no shift to now, the adapter's outputs not replayed."""
    target = _target(tmp_path)
    data = private_config(target, RunSpec(name="clean", seed=1), SCOPE, tmp_path)
    assert data["server"]["data_dir"] == str(tmp_path / "data") and data["ops"]["enabled"] is False
    replay = data["adapters"]["replay"]
    assert replay["shift_to_now"] is False and replay["paused"] is True and replay["loop"] is False
    assert replay["exclude"] == ["city.public.environment.beach-neighbours.*"]
    assert data["adapters"]["beach-neighbours"]["enabled"] is False


async def test_the_users_citybus_variables_reach_neither_the_city_nor_the_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CITYBUS_SERVER_DATA_DIR naming the user's running citybus up (here: none) would make the
    adapter's process look for that city instead of certify's; the run's own file is all it reads."""
    monkeypatch.setenv("CITYBUS_SERVER_DATA_DIR", str(tmp_path / "someone-elses-city"))
    monkeypatch.setenv("CITYBUS_NATS_URL", "nats://127.0.0.1:9")
    scope = Scope(recording=DRAMMEN_DAY, speed=2880.0, start=6 * 3600.0, duration=3600.0)
    record = await certify_run(_target(tmp_path), RunSpec(name="clean", seed=1), scope, tmp_path / "run")
    assert record.exit_code is None and record.crashes == [], record.log_tail
    assert record.inputs and record.handled
    assert not (tmp_path / "someone-elses-city").exists()


CORRUPT = """seed = 3
[[faults]]
kind = "corrupt"
subjects = ["city.public.environment.beach-observation.*"]
probability = 0.5
mode = "garble"
"""


async def test_the_adapters_dead_letters_are_recorded_with_their_originals(tmp_path: Path) -> None:
    record = await certify_run(
        _target(tmp_path), RunSpec(name="corrupt", seed=3, plan=CORRUPT), SCOPE, tmp_path / "c"
    )
    corrupted = {t["ce_id"] for t in record.truth if t["kind"] == "corrupt"}
    assert corrupted
    assert {d.original_id for d in record.dead_letters} == corrupted
    assert all(
        d.original_subject.startswith("city.public.environment.beach-observation.")
        for d in record.dead_letters
    )
    assert all(d.reason for d in record.dead_letters)
