"""Certification suites: the shipped ones load and, aimed at a consuming adapter of the Drammen day,
become fault plans that the real plan loader takes, the real check finds clean and the real injector
fires several times; a company's suites, plan files and mistakes are read as docs/certify.md says."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import re
import tempfile
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.base import Adapter
from adapters.neighbours import BeachNeighboursService
from adapters.weather import MetForecast
from bus.subjects import contract_filter, matches
from contracts import BikeStation, WeatherForecast
from sandbox.adapter import DRAMMEN_DAY
from sandbox.certify.aim import (
    BUSY,
    ConcretePlan,
    NotApplicable,
    Replayed,
    concrete_plan,
    plan_suite,
    preset_seed,
)
from sandbox.certify.model import Adapted, Thresholds
from sandbox.certify.suite import SUITES, Suite, SuiteError, load_suite, shipped_suites
from sandbox.faults import FaultInjector, FaultPlan, ReplayScope, check_plan
from sandbox.replay import Replayer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PRESETS = [
    "outage",
    "stuck",
    "drop-bursts",
    "duplicate",
    "reorder",
    "corrupt",
    "skew",
    "broker-restart",
    "slow-downstream",
]


def adapted(cls: type[Adapter[Any]], instance: str) -> Adapted:
    """The adapter as certify sees it, from its class: the subjects of the contracts it consumes."""
    return Adapted(
        adapter=cls.name,
        instance=instance,
        source=f"/adapters/{instance}",
        consumes=[c.__contract__.name for c in cls.consumes],
        produces=[c.__contract__.name for c in cls.produces],
        consumed_subjects=[contract_filter(c) for c in cls.consumes],
        produced_subjects=[contract_filter(c) for c in cls.produces],
    )


NEIGHBOURS = adapted(BeachNeighboursService, "neighbours")
SOURCE = adapted(MetForecast, "forecast")


@pytest.fixture(scope="module")
def day() -> Replayed:
    return Replayed.of([DRAMMEN_DAY])


def _truth(plan: FaultPlan, suite: Suite) -> list[dict[str, Any]]:
    """The ground truth of ``plan`` replayed as the suite replays the day, by the real injector."""
    truth = io.StringIO()

    async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
        pass

    replayer = Replayer(
        [DRAMMEN_DAY],
        publish,
        speed=0,
        start=suite.start,
        duration=suite.duration,
        shift_to_now=False,
        faults=lambda origin: FaultInjector(plan, origin=origin, truth=truth),
    )
    asyncio.run(replayer.run())
    return [json.loads(line) for line in truth.getvalue().splitlines()]


# -- the shipped suites ------------------------------------------------------------------------------


def test_the_shipped_suites_load() -> None:
    assert shipped_suites() == ["default", "quick"]
    default, quick = load_suite("default"), load_suite("quick")
    assert [p.name for p in default.presets] == DEFAULT_PRESETS
    assert (default.name, default.version, default.start, default.duration) == ("default", 1, 0.0, None)
    assert default.preset("broker-restart").restart is not None
    assert default.preset("slow-downstream").slow is not None
    assert [p.name for p in quick.presets] == ["outage", "stuck", "duplicate", "corrupt"]
    assert quick.duration == 6 * 3600 and quick.speed > default.speed
    assert {p.description != "" for p in (*default.presets, *quick.presets)} == {True}


def test_the_shipped_suites_spell_out_every_threshold() -> None:
    """A suite's thresholds are its own: a changed default in the model changes no shipped suite."""
    for path in SUITES.glob("*.toml"):
        written = tomllib.loads(path.read_text(encoding="utf-8"))
        assert sorted(written["thresholds"]) == sorted(f.name for f in msgspec.structs.fields(Thresholds))


def test_the_shipped_suites_are_package_data() -> None:
    """The wheel's package-data globs (pyproject) cover every shipped suite file."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"]["package-data"]
    globs = [g for package, found in package_data.items() if package == "sandbox.certify" for g in found]
    files = sorted(p.relative_to(SUITES.parent).as_posix() for p in SUITES.glob("*.toml"))
    assert files == ["suites/default.toml", "suites/quick.toml"]
    assert all(any(Path(f).match(g) for g in globs) for f in files)


def test_every_default_preset_becomes_a_plan_the_loader_takes_and_the_check_finds_clean(
    day: Replayed,
) -> None:
    suite = load_suite("default")
    plans = plan_suite(suite, NEIGHBOURS)
    assert list(plans) == DEFAULT_PRESETS
    consumed = NEIGHBOURS.consumed_subjects
    scope = ReplayScope.of([DRAMMEN_DAY])
    for preset in suite.presets:
        plan = plans[preset.name]
        assert isinstance(plan, ConcretePlan), plan
        assert FaultPlan.loads(plan.text) == plan.plan
        assert plan.plan.seed == plan.seed == preset_seed(suite.seed, preset.name)
        assert check_plan(plan.plan, scope) == [] and plan.warnings == []
        assert (plan.restart, plan.slow) == (preset.restart, preset.slow)
        assert len(plan.plan.faults) == len(preset.faults)
        for template, fault in zip(preset.faults, plan.plan.faults, strict=True):
            assert type(fault).__struct_config__.tag == template["kind"]
            for key, value in template.items():
                if key not in ("kind", "subjects", "hits"):
                    assert getattr(fault, key) == value, (preset.name, key)
            if template["subjects"] == ["@consumed"]:
                assert fault.subjects == consumed
            else:  # "@one": one recorded subject the adapter consumes, busy in the window
                (one,) = fault.subjects
                assert plan.targets == [one] and any(matches(p, one) for p in consumed)
                assert day.count([one], fault.start, fault.duration) >= BUSY
            if "hits" in template:  # about that many of the messages it can touch
                reach = day.count(fault.subjects, fault.start, fault.duration)
                assert math.isclose(fault.probability * reach, template["hits"], rel_tol=1e-3)
        assert all(any(matches(p, t) for p in consumed) for t in plan.targets)


def test_every_default_preset_fires_several_times_on_what_the_adapter_consumes() -> None:
    suite = load_suite("default")
    for name, plan in plan_suite(suite, NEIGHBOURS).items():
        assert isinstance(plan, ConcretePlan)
        truth = _truth(plan.plan, suite)
        per_fault = Counter(line["fault"] for line in truth)
        assert all(per_fault[i] >= 2 for i in range(len(plan.plan.faults))), (name, per_fault)
        assert {line["subject"] for line in truth} <= set(plan.targets), name


def test_the_quick_suite_fires_in_its_six_hours() -> None:
    suite = load_suite("quick")
    for name, plan in plan_suite(suite, NEIGHBOURS).items():
        assert isinstance(plan, ConcretePlan)
        assert (
            check_plan(plan.plan, ReplayScope.of([DRAMMEN_DAY], start=suite.start, duration=suite.duration))
            == []
        )
        per_fault = Counter(line["fault"] for line in _truth(plan.plan, suite))
        assert all(per_fault[i] >= 2 for i in range(len(plan.plan.faults))), (name, per_fault)


# -- seeds ---------------------------------------------------------------------------------------------


def test_a_preset_seed_is_sha256_of_the_run_seed_and_its_name() -> None:
    expected = int.from_bytes(hashlib.sha256(b"2018:outage").digest()[:4], "big")
    assert preset_seed(2018, "outage") == expected
    assert len({preset_seed(s, n) for s in (1, 2) for n in ("outage", "stuck")}) == 4


def test_the_same_seed_gives_the_same_text_and_other_seeds_other_subjects(day: Replayed) -> None:
    suite = load_suite("default")
    outage = suite.preset("outage")
    first = concrete_plan(outage, NEIGHBOURS, day, 7, suite=suite)
    again = concrete_plan(outage, NEIGHBOURS, Replayed.of([DRAMMEN_DAY]), 7, suite=suite)
    assert isinstance(first, ConcretePlan) and isinstance(again, ConcretePlan)
    assert first.text == again.text
    chosen = set()
    for seed in range(20):
        plan = concrete_plan(outage, NEIGHBOURS, day, seed, suite=suite)
        assert isinstance(plan, ConcretePlan)
        chosen.add(plan.targets[0])
    assert len(chosen) > 3
    assert plan_suite(suite, NEIGHBOURS, seed=5)["outage"] == concrete_plan(
        outage, NEIGHBOURS, day, 5, suite=suite
    )


def test_only_runs_the_named_presets_with_the_same_plans() -> None:
    suite = load_suite("default")
    alone = plan_suite(suite, NEIGHBOURS, only=["stuck"])
    assert list(alone) == ["stuck"] and alone["stuck"] == plan_suite(suite, NEIGHBOURS)["stuck"]
    with pytest.raises(SuiteError, match=r"no preset 'stuk'; its presets: outage, stuck"):
        plan_suite(suite, NEIGHBOURS, only=["stuk"])


# -- what an adapter cannot be hit by -----------------------------------------------------------------


def test_a_source_adapter_is_hit_by_no_fault_but_by_the_restart_and_the_slow_link() -> None:
    plans = plan_suite(load_suite("default"), SOURCE)
    for name, plan in plans.items():
        if name in ("broker-restart", "slow-downstream"):
            assert isinstance(plan, ConcretePlan) and plan.plan.faults == []
        else:
            assert isinstance(plan, NotApplicable)
            assert plan.reason == "forecast (met-forecast) consumes nothing"


def test_an_input_with_no_message_in_the_window_makes_the_preset_not_applicable(day: Replayed) -> None:
    racks = msgspec.structs.replace(NEIGHBOURS, consumed_subjects=[contract_filter(BikeStation)])
    plan = concrete_plan(load_suite("default").preset("outage"), racks, day, 1)
    assert isinstance(plan, NotApplicable)  # the racks are recorded once, at midnight
    assert "has a message in its window (21600 s to 36000 s of replay time)" in plan.reason
    forecasts = msgspec.structs.replace(NEIGHBOURS, consumed_subjects=[contract_filter(WeatherForecast)])
    stuck = concrete_plan(load_suite("default").preset("stuck"), forecasts, day, 1)
    assert isinstance(stuck, NotApplicable)  # one forecast in the window: nothing to repeat
    assert "has 2 messages in its window" in stuck.reason


@pytest.mark.parametrize("suite", ["default", "quick"])
def test_a_shipped_suite_aims_at_any_consumer_of_the_day_without_an_error(day: Replayed, suite: str) -> None:
    events = sorted({s.rsplit(".", 1)[0] for s in day.times})
    assert len(events) == 10  # the sensors, trains and bikes, and the volunteer opportunities
    for event in events:
        consumer = msgspec.structs.replace(NEIGHBOURS, consumed_subjects=[f"{event}.*"])
        plans = plan_suite(load_suite(suite), consumer)
        assert all(p.warnings == [] for p in plans.values() if isinstance(p, ConcretePlan)), event


# -- a company's suites ----------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


PLAN = """
seed = 7
[[faults]]
kind = "drop"
subjects = ["city.public.environment.weather-observed.*"]
probability = 0.25
[[faults]]
kind = "stuck"
subjects = ["@one"]
start = 3600
duration = 7200
"""


def test_a_preset_may_be_a_companys_plan_file_whose_seed_is_the_runs(tmp_path: Path, day: Replayed) -> None:
    (tmp_path / "plans").mkdir()
    write(tmp_path / "plans" / "my-faults.toml", PLAN)
    suite = load_suite(
        str(
            write(
                tmp_path / "mine.toml",
                'name = "mine"\nversion = 3\nseed = 11\n'
                '[[presets]]\nname = "company"\nplan = "plans/my-faults.toml"\n',
            )
        )
    )
    assert suite.preset("company").plan == "plans/my-faults.toml"
    plan = plan_suite(suite, NEIGHBOURS)["company"]
    assert isinstance(plan, ConcretePlan)
    assert plan.plan.seed == preset_seed(11, "company") != 7
    drop, stuck = plan.plan.faults
    assert (drop.subjects, drop.probability) == (["city.public.environment.weather-observed.*"], 0.25)
    (one,) = stuck.subjects
    assert one in plan.targets and set(_weather(day)) <= set(plan.targets)
    assert plan.text.startswith("# citybus certify: suite mine v3, preset company\n")


def _weather(day: Replayed) -> list[str]:
    return [s for s in day.times if matches("city.public.environment.weather-observed.*", s)]


def test_a_suite_may_extend_a_shipped_one(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ours.toml",
        """
name = "ours"
version = 2
include = "default"
[thresholds]
recall = 0.5
[[presets]]
name = "outage"
description = "a longer outage"
[[presets.faults]]
kind = "outage"
subjects = ["@consumed"]
start = 3600
duration = 36000
[[presets]]
name = "late"
[[presets.faults]]
kind = "delay"
subjects = ["@consumed"]
hits = 10
delay = 600.0
""",
    )
    suite, default = load_suite(str(path)), load_suite("default")
    assert [p.name for p in suite.presets] == [*DEFAULT_PRESETS, "late"]
    assert suite.preset("outage").description == "a longer outage"
    assert suite.thresholds == msgspec.structs.replace(default.thresholds, recall=0.5)
    ours = load_suite(
        str(
            write(
                tmp_path / "int.toml",
                'name = "i"\nversion = 1\ninclude = "ours.toml"\n[thresholds]\nrecovery_seconds = 60\n',
            )
        )
    )
    assert ours.thresholds.recovery_seconds == 60.0 and isinstance(ours.thresholds.recovery_seconds, float)
    assert [p.name for p in ours.presets] == [p.name for p in suite.presets]  # an include of an include
    assert (suite.name, suite.version, suite.speed, suite.seed) == ("ours", 2, default.speed, default.seed)
    plans = plan_suite(suite, NEIGHBOURS, only=["outage", "late"])
    assert all(isinstance(p, ConcretePlan) for p in plans.values())


def test_a_subject_is_written_as_a_toml_string_the_loader_reads_back() -> None:
    subject = 'city.public.x"y\\z.ø'
    replayed = Replayed(times={subject: [10.0, 20.0]}, length=100.0)
    consumer = msgspec.structs.replace(NEIGHBOURS, consumed_subjects=["city.public.*.>"])
    suite = _suite(
        '[[presets]]\nname = "p"\ndescription = "two\\nlines"\n[[presets.faults]]\nkind = "duplicate"\n'
        'subjects = ["@one"]\nhits = 1\n'
    )
    plan = concrete_plan(suite.presets[0], consumer, replayed, 1)
    assert isinstance(plan, ConcretePlan)
    assert FaultPlan.loads(plan.text).faults[0].subjects == [subject]
    assert plan.plan.faults[0].probability == 0.5
    assert "# two lines\n" in plan.text


def _suite(presets: str, tmp: Path | None = None) -> Suite:
    folder = Path(tempfile.mkdtemp()) if tmp is None else tmp
    return load_suite(str(write(folder / "s.toml", f'name = "s"\nversion = 1\n{presets}')))


OUTAGE = (
    '[[presets]]\nname = "o"\n'
    '[[presets.faults]]\nkind = "outage"\nsubjects = ["@one"]\nstart = 0\nduration = 60\n'
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            'name = "s"\nversion = 1\nsped = 2\n' + OUTAGE,
            r"s\.toml: unknown key 'sped'; allowed keys: description, ",
        ),
        ('name = "s"\n' + OUTAGE, r"s\.toml: missing required key 'version' \(an integer >= 1\)"),
        (
            'name = "s"\nversion = 1\nspeed = 0\n' + OUTAGE,
            r"s\.toml: speed = 0 is not allowed: expected a number > 0",
        ),
        ('name = "s"\nversion = 1\n', r"s\.toml: no presets"),
        (
            'name = "s"\nversion = 1\n[thresholds]\nrecall = 1.5\n' + OUTAGE,
            r"s\.toml: thresholds: recall = 1\.5 is not allowed: expected a number from 0 to 1",
        ),
        (
            'name = "s"\nversion = 1\n[thresholds]\nrecal = 0.5\n' + OUTAGE,
            r"s\.toml: thresholds: unknown key 'recal'; allowed keys: access_refusals, amplified, ",
        ),
        (
            'name = "s"\nversion = 1\n[thresholds]\ncrashes = 0.5\n' + OUTAGE,
            r"thresholds: crashes = 0\.5 is not allowed: expected an integer >= 0",
        ),
        (
            'name = "s"\nversion = 1\n' + OUTAGE.replace("@one", "@two"),
            r"s\.toml: presets\[0\] \(o\): faults\[0\] \(kind 'outage'\): subjects: unknown target '@two'; "
            r"targets: @consumed, @one",
        ),
        (
            'name = "s"\nversion = 1\n' + OUTAGE.replace("start = 0", "begin = 0"),
            r"presets\[0\] \(o\): faults\[0\] \(kind 'outage'\): unknown key 'begin'; "
            r"allowed keys for outage: ",
        ),
        (
            'name = "s"\nversion = 1\n' + OUTAGE.replace("start = 0", "hits = 3"),
            r"presets\[0\] \(o\): faults\[0\] \(kind 'outage'\): hits is only for kinds with a probability",
        ),
        (
            'name = "s"\nversion = 1\n' + OUTAGE.replace('"outage"', '"outrage"'),
            r"presets\[0\] \(o\): faults\[0\]: unknown kind 'outrage'; allowed kinds: ",
        ),
        (
            'name = "s"\nversion = 1\n[[presets]]\nname = "c"\nplan = "nowhere.toml"\n',
            r"s\.toml: presets\[0\] \(c\): plan .*nowhere\.toml not found: check the path",
        ),
        (
            'name = "s"\nversion = 1\n[[presets]]\nname = "r"\nrestart = { at = 10 }\n',
            r"presets\[0\] \(r\): restart: missing required key 'down' "
            r"\(a number > 0 and <= 60 \(wall seconds\)\)",
        ),
        (
            'name = "s"\nversion = 1\n[[presets]]\nname = "clean"\nrestart = { at = 10, down = 1 }\n',
            r"presets\[0\]: name = 'clean' is not allowed",
        ),
        ('name = "s"\nversion = 1\n' + OUTAGE + OUTAGE, r"presets\[1\]: a second preset named 'o'"),
        ('name = "s"\nversion = 1\n[[presets]]\nname = "n"\n', r"presets\[0\] \(n\): it does nothing"),
        ('name = "s"\nversion = 1\ninclude = "s.toml"\n', r"include goes round in a circle"),
        ('name = "s"\nversion = 1\n[[presets]\n', r"s\.toml is not valid TOML"),
    ],
)
def test_a_wrong_suite_is_refused_in_one_line(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(SuiteError) as refused:
        load_suite(str(write(tmp_path / "s.toml", text)))
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"suite {tmp_path / 's.toml'}")
    assert re.search(error, message), message


def test_an_unknown_suite_name_lists_the_shipped_ones() -> None:
    with pytest.raises(
        SuiteError, match=r"^unknown suite 'defualt': shipped suites are default, quick, or give"
    ):
        load_suite("defualt")


def test_a_fault_that_never_fires_is_refused_naming_the_preset(tmp_path: Path) -> None:
    nothing = _suite(OUTAGE.replace('["@one"]', '["city.public.environment.beach-observations.*"]'), tmp_path)
    with pytest.raises(
        SuiteError, match=r"preset o: faults\[0\] \(kind 'outage'\): subjects = .* matches no subject"
    ):
        plan_suite(nothing, NEIGHBOURS)
    quiet = _suite(
        OUTAGE.replace('["@one"]', '["city.public.mobility.bike-station.*"]').replace(
            "start = 0", "start = 3600"
        ),
        tmp_path,
    )
    with pytest.raises(
        SuiteError, match=r"preset o: faults\[0\] \(kind 'outage'\): subjects .* have no message in its"
    ):
        plan_suite(quiet, NEIGHBOURS)
    late = _suite('[[presets]]\nname = "r"\nrestart = { at = 90000, down = 1 }\n', tmp_path)
    with pytest.raises(
        SuiteError, match=r"preset r: restart at 90000 s is at or after the end of the replay's window"
    ):
        plan_suite(late, NEIGHBOURS)
