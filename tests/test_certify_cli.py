"""``citybus certify`` as a company runs it: the command, in a process of its own, against the
recorded Drammen day in private sandboxes, writing its report; the exit status is the verdict.

The project's own consuming adapters pass (the detector with the whole default suite; the
others with the quick one); three adapters made to fail (tests/certify_package.py) fail, each for
its stated reason, and the report names it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.certify.report import read_report
from tests import certify_package
from tests.pg import SHARED_DSN, query, unreachable

CITYBUS = str(Path(sys.executable).parent / "citybus")


def certify(
    *args: str, cwd: Path, pythonpath: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``citybus certify ARGS`` in ``cwd`` (where a citybus.toml may be)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBUS_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [CITYBUS, "certify", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def report_of(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return loaded


def failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["verdict"] == "fail"]


def test_the_default_suite_passes_on_the_built_in_detector(tmp_path: Path) -> None:
    """sensor-watch, all nine presets: it detects the injected outage and stuck sensor, raises no
    false alarm, survives the rest; the report says so and how to reproduce it."""
    result = certify("sensor-watch", "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("PASS: sensor-watch against suite default v1: ")
    assert last.endswith(
        "reproduce with: citybus certify sensor-watch --suite default --seed 2018 --speed 4320"
    )
    assert "[10/10] slow-downstream: done" in result.stderr  # progress while it ran
    report = read_report(tmp_path / "r" / "report.json")
    assert report.verdict == "pass" and not [c for c in report.checks if c.verdict == "fail"]
    names = [r.run for r in report.runs]
    assert names == [
        "clean", "outage", "stuck", "drop-bursts", "duplicate", "reorder", "corrupt", "skew",
        "broker-restart", "slow-downstream",
    ]  # fmt: skip
    for run in report.runs[1:]:
        assert run.injected, f"{run.run} injected nothing"
        assert run.plan.startswith("# citybus certify: suite default v1")
    scores = {d.kind: d for d in report.detection}
    assert set(scores) == {"outage", "stuck"}
    for score in scores.values():
        assert score.episodes >= 1 and score.detected == score.episodes and score.false_alarms == 0
        assert score.precision == 1.0 and score.recall == 1.0
    assert {c.check for c in report.checks} >= {
        "contract-fit", "access", "crashes", "handler-errors", "recovery", "amplification", "liveness",
        "peak-rss", "cpu", "latency-p50", "latency-p99", "precision:outage", "recall:stuck",
    }  # fmt: skip
    html = (tmp_path / "r" / "report.html").read_text()
    assert "PASS" in html and html.count("<svg") == len(report.runs)


def test_the_quick_suite_passes_on_the_beach_neighbours_service(tmp_path: Path) -> None:
    result = certify("beach-neighbours", "--suite", "quick", "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = report_of(tmp_path / "r")
    assert report["verdict"] == "pass"
    clean = report["runs"][0]
    assert clean["outputs"] > 0 and clean["latency_p99"] is not None  # outputs traced to their inputs


@pytest.fixture
def pg_schema() -> Iterator[str]:
    import asyncio

    why = asyncio.run(unreachable(SHARED_DSN))
    if why is not None:
        from tests.conftest import require_service

        require_service("PostgreSQL", why)
    name = f"certify_{uuid.uuid4().hex[:8]}"
    yield name
    asyncio.run(query(SHARED_DSN, f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))  # type: ignore[arg-type]


def test_the_quick_suite_passes_on_the_postgres_archive(tmp_path: Path, pg_schema: str) -> None:
    """A sink: no outputs on the bus; what it stored is its flow (input to stored, for latency)."""
    (tmp_path / "citybus.toml").write_text(
        f'[adapters.archive]\nadapter = "postgres-archive"\n'
        f'contracts = ["environment.beach-observation", "environment.air-quality-observed"]\n'
        f'dsn = "{SHARED_DSN}"\nschema = "{pg_schema}"\n'
        "batch_wait = 0.05\n"  # wall seconds: the default 0.2 is 24 minutes of the day at 7200x
    )
    result = certify("archive", "--suite", "quick", "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = report_of(tmp_path / "r")
    assert report["verdict"] == "pass"
    assert report["command"].startswith(
        "citybus certify archive --suite quick --seed 2018 --speed 7200 --config "
    )
    liveness = [c for c in report["checks"] if c["check"] == "liveness"]
    assert liveness and all("messages handled" in c["summary"] for c in liveness)


def test_the_quick_suite_passes_on_the_mqtt_bridge(tmp_path: Path, mosquitto: str) -> None:
    (tmp_path / "citybus.toml").write_text(
        f'[adapters.bridge]\nadapter = "mqtt-bridge"\nurl = "{mosquitto}"\n'
        f'[[adapters.bridge.outbound]]\ncontract = "environment.beach-observation"\n'
        f'topic = "certify-{uuid.uuid4().hex[:8]}/{{entity}}"\n'
    )
    result = certify("bridge", "--suite", "quick", "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report_of(tmp_path / "r")["verdict"] == "pass"


@pytest.mark.parametrize(
    ("adapter", "preset", "check", "said"),
    [
        # crashes on a corrupt input (it reads the raw bytes itself), and stops publishing meanwhile
        ("crashy-advisor", "corrupt", "crashes", "RuntimeError: cannot read a beach observation"),
        # republishes a duplicated input twice: the same subject and body under two ce-ids
        ("echo-duplicates", "duplicate", "amplification", "repeated outputs from duplicated inputs"),
        # calls a sensor stuck whenever two readings round to the same degree
        ("jumpy-watch", "stuck", "precision:stuck", "false alarms"),
    ],
)
def test_an_adapter_made_to_fail_fails_for_its_reason(
    tmp_path: Path, adapter: str, preset: str, check: str, said: str
) -> None:
    package = tmp_path / "package"
    certify_package.install(package)
    report_dir = tmp_path / "r"
    result = certify(
        adapter,
        "--suite",
        "quick",
        "--only",
        preset,
        "--report",
        str(report_dir),
        cwd=tmp_path,
        pythonpath=package,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith(f"FAIL: {adapter} against suite quick v1: ")
    report = report_of(report_dir)
    assert report["verdict"] == "fail"
    named = [c for c in failed(report) if c["check"] == check]
    assert named, failed(report)
    assert said in named[0]["summary"] + " ".join(named[0]["examples"])
    assert f"FAIL {check} " in result.stdout  # the command names it too
    assert check in (report_dir / "report.md").read_text()


def test_mistakes_take_one_line(tmp_path: Path) -> None:
    unknown = certify("no-such-adapter", "--suite", "quick", cwd=tmp_path, timeout=60)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1, unknown.stderr
    assert "no adapter or configured instance named 'no-such-adapter'" in unknown.stderr
    suite = certify("beach-neighbours", "--suite", "nightly", cwd=tmp_path, timeout=60)
    assert suite.returncode == 2 and suite.stderr.count("\n") == 1, suite.stderr
    assert "default" in suite.stderr and "quick" in suite.stderr
    preset = certify("beach-neighbours", "--suite", "quick", "--only", "meteor", cwd=tmp_path, timeout=60)
    assert preset.returncode == 2 and "meteor" in preset.stderr and "outage" in preset.stderr, preset.stderr
    assert not (tmp_path / "certify-beach-neighbours").exists()
    (tmp_path / "a-file").write_text("")
    unusable = certify(
        "beach-neighbours", "--suite", "quick", "--report", str(tmp_path / "a-file" / "r"), cwd=tmp_path
    )
    assert unusable.returncode == 2 and unusable.stderr.count("\n") == 1, unusable.stderr
    assert (
        f"cannot create the report directory {tmp_path / 'a-file' / 'r'}: Not a directory" in unusable.stderr
    )


def test_an_adapter_that_publishes_past_its_contract_fails_contract_fit_and_access(tmp_path: Path) -> None:
    package = tmp_path / "package"
    certify_package.install(package)
    report_dir = tmp_path / "r"
    result = certify(
        certify_package.SLOPPY, "--suite", "quick", "--only", "outage", "--report", str(report_dir),
        cwd=tmp_path, pythonpath=package,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    report = report_of(report_dir)
    by_check = {(c["check"], c["run"]): c for c in failed(report)}
    fit = by_check[("contract-fit", "clean")]
    assert fit["value"] > 0 and any("certtest.beach-advice" in e for e in fit["examples"]), fit
    access = by_check[("access", "clean")]
    assert access["value"] > 0
    assert any(
        "city.public.environment.beach-observation." in e and "-copy" in e for e in access["examples"]
    ), access
    clean = report["runs"][0]
    assert clean["refusals"] == access["value"] and clean["outputs"] > 0


def test_what_certify_cannot_score_is_refused_in_one_line(tmp_path: Path) -> None:
    source = certify("vicotee-beach", "--suite", "quick", cwd=tmp_path, timeout=60)
    assert source.returncode == 2 and source.stderr.count("\n") == 1, source.stderr
    assert "vicotee-beach consumes no contract" in source.stderr
    for speed in ("nan", "inf", "2000000"):
        fast = certify("beach-neighbours", "--suite", "quick", "--speed", speed, cwd=tmp_path, timeout=60)
        assert fast.returncode == 2 and fast.stderr.count("\n") == 1, fast.stderr
        assert "is not allowed: above 0" in fast.stderr
    assert not (tmp_path / "certify-beach-neighbours").exists()
