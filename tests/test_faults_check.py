"""A fault plan checked against the recordings it is replayed from: faults that never fire are refused
in one line by ``citybus replay``, ``citybus up`` and the ``sandbox-replay`` adapter; faults that hide
each other's signal are warned about; ``citybus sandbox check-faults`` does both for a company's CI.

The recordings are real MCAP files: a small one made here (two beach sites, one of them with manual
readings from a second source, and a weather station, for two hours) and the shipped Drammen day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from adapters.testing import AdapterHarness
from bus.cli import main
from bus.envelope import build_headers
from bus.errors import ConfigError
from contracts import BeachObservation, WeatherObserved
from sandbox.adapter import DRAMMEN_DAY, SandboxReplay
from sandbox.contents import read_channels
from sandbox.faults import FaultPlan, Finding, ReplayScope, check_plan
from sandbox.recording import RecordingWriter

T0 = datetime(2018, 8, 28, 6, 0, tzinfo=UTC)
BEACH = "city.public.environment.beach-observation"
WEATHER = "city.public.environment.weather-observed.marienlyst"
ROOT = Path(__file__).resolve().parent.parent


def _write(writer: RecordingWriter, step: int) -> None:
    when = T0 + timedelta(minutes=10 * step)
    for site in ("blektjern", "sota-fjordpark"):
        observation = BeachObservation(site=site, observed_at=when, water_temperature=15 + step / 10)
        headers = build_headers(
            BeachObservation.__contract__,
            event_id=f"{site}-{step}",
            source="/adapters/beach",
            time=when,
            provenance="synthetic",
        )
        writer.add(f"{BEACH}.{site}", msgspec.json.encode(observation), headers)
    if step % 6 == 0:  # a lifeguard's manual reading at blektjern every hour: a second source
        manual = BeachObservation(site="blektjern", observed_at=when, water_temperature=16.0)
        headers = build_headers(
            BeachObservation.__contract__,
            event_id=f"manual-{step}",
            source="/lifeguards",
            time=when,
            provenance="manual",
        )
        writer.add(f"{BEACH}.blektjern", msgspec.json.encode(manual), headers)
    weather = WeatherObserved(station="marienlyst", observed_at=when, temperature=17.0)
    headers = build_headers(
        WeatherObserved.__contract__,
        event_id=f"w-{step}",
        source="/adapters/weather",
        time=when,
        provenance="recorded",
    )
    writer.add(WEATHER, msgspec.json.encode(weather), headers)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """Two hours, every 10 minutes: 12 steps, 2 beach sites + weather, manual readings hourly."""
    path = tmp_path / "beach.mcap"
    with RecordingWriter(path) as writer:
        for step in range(12):
            _write(writer, step)
    return path


def plan_file(tmp_path: Path, text: str, name: str = "faults.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check(recording: Path, text: str, **options: object) -> list[Finding]:
    scope = ReplayScope.of([recording], **options)  # type: ignore[arg-type]
    return check_plan(FaultPlan.loads(text), scope, origin="fault plan p.toml")


def errors(findings: list[Finding]) -> list[str]:
    return [f.text for f in findings if f.level == "error"]


def warnings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "warning"]


# -- the channels of a recording --------------------------------------------------------------------


def test_the_channels_of_a_recording_are_its_subjects_per_source(recording: Path, tmp_path: Path) -> None:
    channels = read_channels(recording)
    assert [(c.subject, c.source, c.provenance, c.messages) for c in channels] == [
        (f"{BEACH}.blektjern", "/adapters/beach", "synthetic", 12),
        (f"{BEACH}.blektjern", "/lifeguards", "manual", 2),
        (f"{BEACH}.sota-fjordpark", "/adapters/beach", "synthetic", 12),
        (WEATHER, "/adapters/weather", "recorded", 12),
    ]
    assert {c.type for c in channels} == {
        "environment.beach-observation.v1",
        "environment.weather-observed.v1",
    }
    # a file whose writer never finished has no summary: its channels are read from its messages
    unfinished = tmp_path / "unfinished.mcap"
    writer = RecordingWriter(unfinished, flush_interval=0)
    for step in range(12):
        _write(writer, step)
    writer.flush()
    assert read_channels(unfinished) == channels


def test_the_shipped_day_has_its_beach_sensors_under_one_source() -> None:
    beach = {c.source for c in read_channels(DRAMMEN_DAY) if c.subject.startswith(BEACH)}
    assert beach == {"/adapters/beach"}


# -- faults that never fire -------------------------------------------------------------------------


def test_a_subject_the_recording_lacks_is_refused_with_the_nearest_that_exist(recording: Path) -> None:
    found = check(
        recording,
        f'[[faults]]\nkind = "outage"\nsubjects = ["{BEACH}.blektjernn"]\nstart = 0\nduration = 600\n'
        f'[[faults]]\nkind = "drop"\nprobability = 0.5\nsubjects = ["city.public.environment.beach-obs.*"]\n'
        '[[faults]]\nkind = "drop"\nprobability = 0.5\nsubjects = ["city.public.environment"]\n',
    )
    assert errors(found) == [
        f"fault plan p.toml: faults[0] (kind 'outage'): subjects = '{BEACH}.blektjernn' matches no subject "
        f"of {recording}, so it never fires; nearest: '{BEACH}.blektjern', '{BEACH}.sota-fjordpark'",
        "fault plan p.toml: faults[1] (kind 'drop'): subjects = 'city.public.environment.beach-obs.*' "
        f"matches no subject of {recording}, so it never fires; nearest: '{BEACH}.*', "
        "'city.public.environment.weather-observed.*'",
        "fault plan p.toml: faults[2] (kind 'drop'): subjects = 'city.public.environment' matches no "
        f"subject of {recording}, so it never fires; nearest: 'city.public.environment.>'",
    ]


def test_every_pattern_must_match_even_beside_one_that_does(recording: Path) -> None:
    found = check(
        recording, f'[[faults]]\nkind = "drop"\nprobability = 0.5\nsubjects = ["{WEATHER}", "x.y"]\n'
    )
    assert [(f.faults, f.key) for f in found] == [((0,), "subjects")]
    assert "subjects = 'x.y' matches no subject" in found[0].text
    assert "so it adds nothing to the fault's other subjects" in found[0].text


def test_a_subject_the_replay_leaves_out_is_refused(recording: Path) -> None:
    text = f'[[faults]]\nkind = "stuck"\nsubjects = ["{WEATHER}"]\nstart = 0\nduration = 600\n'
    assert check(recording, text) == []
    assert errors(check(recording, text, include=[f"{BEACH}.*"])) == [
        f"fault plan p.toml: faults[0] (kind 'stuck'): subjects = '{WEATHER}' matches only subjects the "
        f"replay's include/exclude leaves out ({WEATHER}), so it never fires"
    ]
    assert len(errors(check(recording, text, exclude=["city.public.environment.weather-observed.>"]))) == 1


def test_a_skew_of_a_source_the_recording_lacks_is_refused(recording: Path) -> None:
    found = check(
        recording,
        f'[[faults]]\nkind = "skew"\nsubjects = ["{BEACH}.*"]\nsources = ["/adapters/beach-sensors"]\n'
        "skew = -600.0\n"
        f'[[faults]]\nkind = "skew"\nsubjects = ["{BEACH}.*"]\nsources = ["/adapters/weather"]\nskew = 60.0\n'
        f'[[faults]]\nkind = "skew"\nsubjects = ["{BEACH}.*"]\nsources = ["/lifeguards", "/x"]\n'
        "skew = 60.0\n",
    )
    tail = "(citybus recording info FILE says what a recording holds)"
    assert errors(found) == [
        "fault plan p.toml: faults[0] (kind 'skew'): sources = '/adapters/beach-sensors' is no ce-source of "
        f"{recording}, so it never fires; of the subjects it hits, nearest: '/adapters/beach', '/lifeguards' "
        + tail,
        "fault plan p.toml: faults[1] (kind 'skew'): sources = '/adapters/weather' publishes only on "
        "subjects it does not hit, so it never fires; of the subjects it hits, nearest: '/adapters/beach', "
        "'/lifeguards' " + tail,
        f"fault plan p.toml: faults[2] (kind 'skew'): sources = '/x' is no ce-source of {recording}, so it "
        "adds nothing to the fault's other sources; of the subjects it hits, nearest: '/lifeguards', "
        "'/adapters/beach' " + tail,
    ]


def test_the_skew_example_that_once_documented_faults_is_refused_on_the_shipped_day() -> None:
    """The plan the module docstring showed for years: its source is not the beach sensors' one."""
    text = (
        '[[faults]]\nkind = "skew"\nsources = ["/adapters/beach-sensors"]\nskew = -600.0\nduration = 86400\n'
    )
    [line] = errors(check(DRAMMEN_DAY, text))
    assert line.startswith(
        "fault plan p.toml: faults[0] (kind 'skew'): sources = '/adapters/beach-sensors' is no ce-source of "
    )
    assert "nearest: '/adapters/beach'" in line
    fixed = text.replace("/adapters/beach-sensors", "/adapters/beach")
    assert check(DRAMMEN_DAY, fixed) == []


def test_a_window_after_the_end_is_refused(recording: Path) -> None:
    """Every loop starts the windows again (FaultInjector.restart), so looping or not, it never fires."""
    text = '[[faults]]\nkind = "drop"\nprobability = 0.5\nstart = 7200\n'
    assert errors(check(recording, text)) == [
        "fault plan p.toml: faults[0] (kind 'drop'): start = 7200 is at or after the end of the replay's "
        f"window (6600 s of {recording}), so it never fires; give a start below 6600"
    ]
    assert errors(check(recording, text, duration=3600.0))[0].endswith("give a start below 3600")
    assert errors(check(recording, text, start=1000.0))[0].endswith("give a start below 5600")
    assert check(recording, text.replace("7200", "6600")) == []  # the last message is at 6600 s
    with pytest.raises(ConfigError, match="start 9000 s is past the end of the recording"):
        ReplayScope.of([recording], start=9000.0)


def test_a_fault_an_earlier_outage_leaves_nothing_is_refused(recording: Path) -> None:
    outage = f'[[faults]]\nkind = "outage"\nsubjects = ["{BEACH}.*"]\nstart = 600\nduration = 3600\n'
    stuck = (
        f'[[faults]]\nkind = "stuck"\nsubjects = ["{BEACH}.sota-fjordpark"]\nstart = 1200\nduration = 600\n'
    )
    [error] = [f for f in check(recording, outage + stuck) if f.level == "error"]
    assert (error.faults, error.subjects, error.window) == (
        (0, 1),
        (f"{BEACH}.sota-fjordpark",),
        (1200, 1800),
    )
    assert error.text == (
        "fault plan p.toml: faults[1] (kind 'stuck') comes after faults[0] (kind 'outage'), which drops "
        f"every message it could hit first (on {BEACH}.sota-fjordpark, from 1200 s to 1800 s of replay "
        "time), so it never fires; list it before faults[0] or move its window"
    )
    # the stuck sensor first: it fires, and the outage then swallows its signal (a warning)
    assert [f.level for f in check(recording, stuck + outage)] == ["warning"]
    longer = stuck.replace("duration = 600", "duration = 6000")  # it outlasts the outage: it fires after
    assert errors(check(recording, outage + longer)) == []
    certain = f'[[faults]]\nkind = "drop"\nprobability = 1.0\nsubjects = ["{BEACH}.>"]\n'
    assert len(errors(check(recording, certain + stuck))) == 1
    assert errors(check(recording, certain.replace("1.0", "0.9") + stuck)) == []


# -- faults that hide each other's signal ---------------------------------------------------------


def test_a_drop_after_a_stuck_sensor_is_warned_with_the_subjects_and_window(recording: Path) -> None:
    stuck = f'[[faults]]\nkind = "stuck"\nsubjects = ["{BEACH}.*"]\nstart = 1800\nduration = 3600\n'
    drop = '[[faults]]\nkind = "drop"\nprobability = 0.2\nstart = 3000\n'
    drop += f'subjects = ["{BEACH}.sota-fjordpark", "{WEATHER}"]\n'
    [warning] = check(recording, stuck + drop)
    assert (warning.level, warning.faults, warning.key) == ("warning", (0, 1), "order")
    assert warning.subjects == (f"{BEACH}.sota-fjordpark",)
    assert warning.window == (3000, 5400)
    assert warning.text == (
        "fault plan p.toml: faults[1] (kind 'drop') comes after faults[0] (kind 'stuck') and may drop "
        f"messages faults[0] has already logged as stuck (on {BEACH}.sota-fjordpark, from 3000 s to 5400 s "
        "of replay time), so the ground truth can name messages that never went out; faults apply in plan "
        "order: list faults[1] before faults[0], or keep them apart"
    )
    # A dropped message meets no later fault: the drop first leaves the stuck fault's truth right.
    assert check(recording, drop + stuck) == []


@pytest.mark.parametrize("earlier", ["duplicate", "reorder", "delay", "corrupt", "stuck", "skew"])
@pytest.mark.parametrize("later", ["drop", "outage"])
def test_every_fault_a_later_drop_or_outage_can_swallow_is_warned(
    recording: Path, earlier: str, later: str
) -> None:
    keys = {
        "duplicate": "probability = 0.1",
        "reorder": "probability = 0.1\nwindow = 2",
        "delay": "probability = 0.1\ndelay = 30.0",
        "corrupt": 'probability = 0.1\nmode = "truncate"',
        "stuck": "start = 0\nduration = 3600",
        "skew": "skew = 30.0",
        "drop": "probability = 0.1",
        "outage": "start = 600\nduration = 600",
    }
    text = "".join(
        f'[[faults]]\nkind = "{kind}"\nsubjects = ["{WEATHER}"]\n{keys[kind]}\n' for kind in (earlier, later)
    )
    [warning] = check(recording, text)
    assert warning.faults == (0, 1) and warning.subjects == (WEATHER,)
    logged = {
        "duplicate": "duplicated",
        "reorder": "reordered",
        "delay": "delayed",
        "corrupt": "corrupted",
        "stuck": "stuck",
        "skew": "skewed",
    }[earlier]
    action = "drops every one of the" if later == "outage" else "may drop"
    assert f"{action} messages faults[0] has already logged as {logged} (on {WEATHER}, " in warning.text
    assert "the ground truth can name messages that never went out" in warning.text


def test_corrupt_and_stuck_hide_each_other_either_way(recording: Path) -> None:
    stuck = f'[[faults]]\nkind = "stuck"\nsubjects = ["{WEATHER}"]\nstart = 0\nduration = 3600\n'
    corrupt = f'[[faults]]\nkind = "corrupt"\nprobability = 0.1\nmode = "garble"\nsubjects = ["{WEATHER}"]\n'
    [after_stuck] = check(recording, stuck + corrupt)
    assert "so a consumer only dead-letters them and never sees the repeated values" in after_stuck.text
    [after_corrupt] = check(recording, corrupt + stuck)
    assert (
        "writes its stuck reading over messages faults[0] has already logged as corrupted"
        in after_corrupt.text
    )
    assert after_corrupt.window == (0, 3600)


def test_faults_that_do_not_meet_are_not_warned(recording: Path) -> None:
    stuck = f'[[faults]]\nkind = "stuck"\nsubjects = ["{BEACH}.blektjern"]\nstart = 0\nduration = 1800\n'
    elsewhere = f'[[faults]]\nkind = "drop"\nprobability = 0.5\nsubjects = ["{BEACH}.sota-fjordpark"]\n'
    later = f'[[faults]]\nkind = "outage"\nsubjects = ["{BEACH}.>"]\nstart = 1800\nduration = 600\n'
    assert check(recording, stuck + elsewhere + later) == []
    # a skew of the lifeguards' clock hits only blektjern, where they read: a drop at sota-fjordpark
    # never meets it, though the skew's subjects cover both sites
    skew = '[[faults]]\nkind = "skew"\nsources = ["/lifeguards"]\nskew = 5.0\n'
    skew += f'subjects = ["{BEACH}.*"]\n'
    assert check(recording, skew + elsewhere) == []
    [warning] = check(recording, skew + elsewhere.replace("sota-fjordpark", "blektjern"))
    assert warning.subjects == (f"{BEACH}.blektjern",)


def test_a_fault_that_can_never_hit_is_warned(recording: Path) -> None:
    [warning] = check(recording, '[[faults]]\nkind = "drop"\nprobability = 0\n')
    assert warning.text == "fault plan p.toml: faults[0] (kind 'drop'): probability = 0, so it never fires"


# -- the replay refuses, and warns --------------------------------------------------------------------


IDLE = '[[faults]]\nkind = "skew"\nsources = ["/adapters/beach-sensors"]\nskew = -600.0\n'


async def test_the_replay_adapter_refuses_a_fault_that_never_fires(recording: Path, tmp_path: Path) -> None:
    plan = plan_file(
        tmp_path, IDLE + f'[[faults]]\nkind = "drop"\nprobability = 0.1\nsubjects = ["{BEACH}.x"]\n'
    )
    with pytest.raises(ConfigError) as refused:
        AdapterHarness(SandboxReplay, {"files": [str(recording)], "faults": str(plan)})
    text = str(refused.value)
    assert "\n" not in text
    assert text.startswith(
        f"[adapters.test] (sandbox-replay): fault plan {plan}: faults[0] (kind 'skew'): "
        f"sources = '/adapters/beach-sensors' is no ce-source of {recording}, so it never fires"
    )
    assert text.endswith("(and 1 more: citybus sandbox check-faults lists them)")


async def test_the_replay_adapter_logs_the_warnings_when_it_starts(recording: Path, tmp_path: Path) -> None:
    plan = plan_file(
        tmp_path,
        f'[[faults]]\nkind = "stuck"\nsubjects = ["{WEATHER}"]\nstart = 0\nduration = 3600\n'
        f'[[faults]]\nkind = "drop"\nprobability = 1.0\nsubjects = ["{WEATHER}"]\nstart = 1800\n',
    )
    config = {
        "files": [str(recording)],
        "faults": str(plan),
        "speed": 0,
        "loop": False,
        "shift_to_now": False,
    }
    with capture_logs() as logs:
        async with AdapterHarness(SandboxReplay, config) as harness:
            await harness.wait_for(BeachObservation, count=26)  # the whole replay (the drop hits weather)
    [warning] = [line for line in logs if line["event"] == "fault plan warning"]
    assert warning["log_level"] == "warning"
    assert warning["plan"] == str(plan) and warning["faults"] == [0, 1]
    assert warning["detail"].startswith(f"fault plan {plan}: faults[1] (kind 'drop') comes after faults[0]")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBUS_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bus.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_citybus_replay_and_up_refuse_an_idle_fault_in_one_line(recording: Path, tmp_path: Path) -> None:
    plan_file(tmp_path, IDLE)
    replay = _run(["replay", "--faults", "faults.toml", str(recording)], tmp_path)
    assert replay.returncode == 2 and replay.stdout == ""
    [line] = replay.stderr.splitlines()
    assert line == (
        "citybus: configuration error: [adapters.replay] (sandbox-replay): fault plan faults.toml: "
        "faults[0] (kind 'skew'): sources = '/adapters/beach-sensors' is no ce-source of "
        f"{recording}, so it never fires; of the subjects it hits, nearest: '/adapters/beach', "
        "'/adapters/weather', '/lifeguards' (citybus recording info FILE says what a recording holds)"
    )
    (tmp_path / "citybus.toml").write_text(
        f'[adapters.sandbox]\nadapter = "sandbox-replay"\nfiles = ["{recording}"]\nfaults = "faults.toml"\n'
    )
    up = _run(["up"], tmp_path)  # refused before anything starts
    assert up.returncode == 2
    [line] = up.stderr.splitlines()
    assert line.startswith("citybus: configuration error: [adapters.sandbox] (sandbox-replay): fault plan ")


# -- citybus sandbox check-faults -------------------------------------------------------------------


def test_check_faults_prints_errors_and_warnings_and_fails_on_errors(
    recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_file(
        tmp_path,
        IDLE + f'[[faults]]\nkind = "stuck"\nsubjects = ["{WEATHER}"]\nstart = 0\nduration = 3600\n'
        f'[[faults]]\nkind = "outage"\nsubjects = ["{WEATHER}"]\nstart = 600\nduration = 600\n',
    )
    assert main(["sandbox", "check-faults", str(plan), "--recording", str(recording)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == ["error", "warning"]
    assert lines[0].startswith(f"error: fault plan {plan}: faults[0] (kind 'skew'): sources = ")
    assert lines[1].startswith(f"warning: fault plan {plan}: faults[2] (kind 'outage') comes after faults[1]")
    assert lines[-1] == f"fault plan {plan}: 3 faults, 1 error, 1 warning against {recording}"

    plan.write_text(plan.read_text().replace("/adapters/beach-sensors", "/adapters/beach"))
    assert main(["sandbox", "check-faults", str(plan), "--recording", str(recording)]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .endswith("3 faults, no errors, 1 warning against " + str(recording))
    )
    assert main(["sandbox", "check-faults", str(plan), "--recording", str(recording), "--strict"]) == 1
    capsys.readouterr()
    assert main(["sandbox", "check-faults", str(plan), "--recording", str(recording), "--json"]) == 0
    [finding] = json.loads(capsys.readouterr().out)
    assert finding["level"] == "warning" and finding["faults"] == [1, 2] and finding["key"] == "order"
    assert finding["subjects"] == [WEATHER] and finding["window"] == [600, 1200]


def test_check_faults_on_the_drammen_day_by_default_and_with_the_replay_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_file(tmp_path, '[[faults]]\nkind = "drop"\nprobability = 0.1\nstart = 43200\n')
    assert main(["sandbox", "check-faults", str(plan)]) == 0
    assert (
        capsys.readouterr().out
        == f"fault plan {plan}: 1 fault, no errors, no warnings against {DRAMMEN_DAY}\n"
    )
    assert main(["sandbox", "check-faults", str(plan), "--start", "50000"]) == 1
    assert "start = 43200 is at or after the end of the replay's window (36400 s of " in (
        capsys.readouterr().out
    )
    assert main(["sandbox", "check-faults", str(plan), "--start", "50000", "--duration", "3600"]) == 1
    assert "give a start below 3600" in capsys.readouterr().out
    assert main(["sandbox", "check-faults", str(plan), "--include", "city.public.mobility.>"]) == 0
    capsys.readouterr()
    plan.write_text(
        '[[faults]]\nkind = "drop"\nprobability = 0.1\nsubjects = ["city.public.environment.>"]\n'
    )
    assert main(["sandbox", "check-faults", str(plan), "--exclude", "city.public.environment.>"]) == 1
    assert "matches only subjects the replay's include/exclude leaves out" in capsys.readouterr().out


def test_check_faults_says_in_one_line_what_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_file(tmp_path, '[[faults]]\nkind = "drop"\nprobability = 2\n')
    assert main(["sandbox", "check-faults", str(plan)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("citybus: error: fault plan ") and "probability = 2 is not allowed" in line
    plan.write_text('[[faults]]\nkind = "drop"\nprobability = 0.5\n')
    assert main(["sandbox", "check-faults", str(plan), "--recording", str(tmp_path / "none.mcap")]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"citybus: error: no recording at {tmp_path / 'none.mcap'}: check the path"
    assert main(["sandbox", "check-faults", str(tmp_path / "missing.toml")]) == 1
    assert "not found" in capsys.readouterr().err


def test_a_scope_keeps_what_include_and_exclude_leave_out(recording: Path) -> None:
    scope = ReplayScope.of([recording], exclude=[WEATHER], duration=600.0)
    assert {c.subject for c in scope.channels} == {f"{BEACH}.blektjern", f"{BEACH}.sota-fjordpark"}
    assert [c.subject for c in scope.left_out] == [WEATHER]
    assert scope.length == 600
    text = (
        f'[[faults]]\nkind = "skew"\nsubjects = ["{WEATHER}"]\nskew = 5.0\n'
        f'[[faults]]\nkind = "drop"\nprobability = 0.5\nsubjects = ["{WEATHER}"]\n'
    )
    [warning] = check(recording, text)
    assert warning.window == (0, 6600)  # to the end of the replay's window
    [warning] = check(recording, text, start=600.0)
    assert warning.window == (0, 6000)
