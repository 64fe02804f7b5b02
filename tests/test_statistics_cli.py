"""``citybus stats list|show|release|compare`` on a real server: what a newcomer types, what they
read back, and one line (exit status 1, or 2 for a mistake on the command line) for the rest.

``list`` and ``show`` read what the stream holds, so releases published here stand for the
service's; ``release`` and ``compare`` ask the statistics service itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
import structlog

from adapters.statistics import StatisticsService
from adapters.statistics.cli import format_comparison
from adapters.testing import AdapterHarness
from bus import Bus
from bus.cli import main
from bus.subjects import contract_filter
from contracts import (
    Aggregate,
    BeachObservation,
    Comparison,
    Opportunity,
    OwnFigure,
    ReleasePrivacy,
    ReleaseReceipt,
    StatisticsRow,
    VolunteerActivity,
)

pytestmark = pytest.mark.slow

OSLO = ZoneInfo("Europe/Oslo")
KARI = "v-3f9c2a7e51d0"
DP = ReleasePrivacy(
    mechanism="differential-privacy",
    k=5,
    epsilon=0.5,
    delta=1e-6,
    spent=0.5,
    budget=1.0,
    count_scale=4.0,
    sum_scale=32.0,
    max_contributions=2,
    clamp=8.0,
)


def week(period: str, release: int, rows: tuple[StatisticsRow, ...], *, final: bool = False) -> Aggregate:
    """A release of volunteer hours for an ISO week (2026-W49)."""
    year, number = period.split("-W")
    start = datetime.fromisocalendar(int(year), int(number), 1).replace(tzinfo=OSLO)
    return Aggregate(
        dataset="volunteer-hours",
        title="Volunteer hours by district and activity",
        period=period,
        period_start=start,
        period_end=start + timedelta(days=7),
        release=release,
        final=final,
        dimensions=("district", "activity"),
        measure="hours",
        unit="h",
        counts="persons",
        rows=rows,
        privacy=msgspec.structs.replace(DP, spent=0.5 * release),
        sources=("community.volunteer-activity",),
    )


W48 = week(
    "2026-W48",
    1,
    (
        StatisticsRow(group=("bragernes", "beach-cleanup"), count=6.0, sum=15.0, mean=2.5),
        StatisticsRow(group=("all", "all"), count=6.0, sum=15.0, mean=2.5),
    ),
    final=True,
)
W49_FIRST = week("2026-W49", 1, (StatisticsRow(group=("all", "all"), count=9.0, sum=20.0, mean=2.22),))
W49 = week(
    "2026-W49",
    2,
    (
        StatisticsRow(group=("bragernes", "beach-cleanup"), count=7.0, sum=20.4, mean=2.91),
        StatisticsRow(group=("konnerud", "beach-cleanup"), status="suppressed", reason="threshold"),
        StatisticsRow(group=("all", "all"), count=12.0, sum=33.0, mean=2.75),
    ),
)
BEACH = Aggregate(
    dataset="beach-water-temperature",
    title="Water temperature at the beaches",
    period="2026-W49",
    period_start=W49.period_start,
    period_end=W49.period_end,
    dimensions=("site",),
    measure="water temperature",
    unit="Cel",
    counts="observations",
    rows=(
        StatisticsRow(
            group=("sota-fjordpark",),
            count=40,
            mean=6.1,
            median=6.0,
            min=5.2,
            max=7.4,
            label="Sota fjordpark",
        ),
        StatisticsRow(group=("all",), count=40, mean=6.1, median=6.0, min=5.2, max=7.4),
    ),
    privacy=ReleasePrivacy(mechanism="none"),
    sources=("environment.beach-observation",),
)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "citybus.toml"
    path.write_text('[auth]\nmode = "off"\n')
    saved = structlog.get_config()  # the CLI configures logging for the process
    # the service in this process logs its refusals as warnings: keep them out of the command's lines
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    yield path
    structlog.configure(**saved)


async def stats(
    capsys: pytest.CaptureFixture[str], config: Path, bus: Bus, *args: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["--config", str(config), "stats", *args, "--nats", bus.url])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def test_list_and_show_what_was_released(
    quiet_bus: Bus, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = (capsys, config, quiet_bus)
    assert await stats(*run, "list") == (
        0,
        "no statistics have been released yet (the statistics service releases when a period ends)\n",
        "",
    )
    for aggregate in (W48, W49_FIRST, BEACH, W49):
        await quiet_bus.publish(aggregate)

    status, out, _ = await stats(*run, "list")
    assert status == 0
    assert [re.split(r"\s{2,}", line) for line in out.splitlines()] == [
        ["DATASET", "PERIOD", "RELEASE", "CELLS", "PRIVACY", "TITLE"],
        [
            "beach-water-temperature",
            "2026-W49",
            "1 (provisional)",
            "2",
            "none (public data)",
            "Water temperature at the beaches",
        ],
        [
            "volunteer-hours",
            "2026-W49",
            "2 (provisional)",
            "3 (1 suppressed)",
            "differential privacy, k 5, ε 1 of 1 spent",
            "Volunteer hours by district and activity",
        ],
    ]

    status, out, _ = await stats(*run, "show", "volunteer-hours")
    assert status == 0
    assert out.splitlines() == [
        "Volunteer hours by district and activity",
        "volunteer-hours, 2026-W49 (2026-11-30 to 2026-12-06), release 2, provisional",
        "measure: hours (h)",
        "DISTRICT   ACTIVITY       PERSONS  SUM (h)  MEAN (h)",
        "bragernes  beach-cleanup  7        20.4     2.91",
        "konnerud   beach-cleanup  suppressed: below the noise threshold",
        "all        all            12       33       2.75",
        "privacy: differential privacy (OpenDP), ε 0.5 and δ 1e-06 this release; ε 1 of 1 spent on "
        "2026-W49; no released cell covers fewer than k = 5 persons; Laplace noise of scale 4 on counts "
        "and 32 h on sums; a person counts in at most 2 cells, with at most 8 h each",
        "from community.volunteer-activity",
    ]

    status, out, _ = await stats(*run, "show", "volunteer-hours", "--period", "2026-W48")
    assert status == 0 and out.splitlines()[1].endswith(
        "2026-W48 (2026-11-23 to 2026-11-29), release 1, final"
    )

    status, out, _ = await stats(*run, "show", "beach-water-temperature")
    assert status == 0
    table = out.splitlines()[3:6]
    assert table == [
        "SITE            NAME            OBSERVATIONS  MEAN (Cel)  MEDIAN (Cel)  MIN (Cel)  MAX (Cel)",
        "sota-fjordpark  Sota fjordpark  40            6.1         6             5.2        7.4",
        "all                             40            6.1         6             5.2        7.4",
    ]
    assert "privacy: none needed (public data: no person in it)" in out

    status, out, _ = await stats(*run, "show", "volunteer-hours", "--period", "2026-W49", "--json")
    assert status == 0 and msgspec.convert(json.loads(out), Aggregate) == W49


def activity(person: str, opportunity_id: str, starts: datetime, hours: float) -> VolunteerActivity:
    """A volunteer's hours, as the platform publishes them for one who consented to statistics."""
    given = {
        **VolunteerActivity.__contract__.example,
        "volunteer_id": person,
        "opportunity_id": opportunity_id,
        "skills": ["beach-cleanup"],
        "starts": starts.isoformat(),
        "hours": hours,
    }
    return msgspec.convert(given, VolunteerActivity)


def opportunity(opportunity_id: str, starts: datetime) -> Opportunity:
    """An opportunity at Bragernes."""
    given = {
        **Opportunity.__contract__.example,
        "opportunity_id": opportunity_id,
        "location": {"type": "Point", "coordinates": [10.2040, 59.7440]},
        "starts": starts.isoformat(),
        "ends": (starts + timedelta(hours=3)).isoformat(),
    }
    return msgspec.convert(given, Opportunity)


async def test_release_until_the_budget_refuses_and_compare_a_person(
    quiet_bus: Bus, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = (capsys, config, quiet_bus)
    now = datetime.now(OSLO)
    async with AdapterHarness(StatisticsService, instance="statistics", bus=quiet_bus) as service:
        assert service.adapter.statistics is not None
        period = service.adapter.statistics.period_of(now)
        policy = service.adapter.config.policy("volunteer-hours")
        spent, releases = 0.0, 0
        while spent + policy.epsilon <= policy.budget + 1e-9:  # every release the budget pays for
            status, out, err = await stats(*run, "release", "volunteer-hours")
            spent, releases = spent + policy.epsilon, releases + 1
            assert (status, err) == (0, "")
            assert out == (
                f"released volunteer-hours {period}: release {releases}, ε {policy.epsilon:g} "
                f"(ε {spent:g} of {policy.budget:g} spent on the period)\n"
            )
        status, out, err = await stats(*run, "release", "volunteer-hours")
        assert (status, out) == (1, "") and len(err.splitlines()) == 1
        assert err.startswith(f"refused: volunteer-hours {period}: ") and "budget" in err
        # public data: nothing to release until something was observed in the period
        status, out, err = await stats(*run, "release", "beach-water-temperature", "--json")
        assert status == 1 and msgspec.json.decode(out, type=ReleaseReceipt).status == "refused"
        reading = {**BeachObservation.__contract__.example, "observed_at": now.isoformat()}
        await quiet_bus.publish(msgspec.convert(reading, BeachObservation))
        for _ in range(200):  # until the service has heard it (10 s at most)
            status, out, err = await stats(*run, "release", "beach-water-temperature")
            if status == 0:
                break
            await asyncio.sleep(0.05)
        assert re.fullmatch(
            rf"released beach-water-temperature {period}: release 1 \(public data: no budget\)\n", out
        )
        status, out, err = await stats(*run, "release", "no-such-data")
        assert (status, out) == (1, "") and "no data set no-such-data here" in err

        status, out, _ = await stats(*run, "show", "volunteer-hours")
        assert status == 0 and f"release {releases}, provisional" in out.splitlines()[1]
        assert f"ε {spent:g} of {policy.budget:g} spent on {period}" in out

        # a person's own figures beside the release, asked as the desk
        await quiet_bus.publish(opportunity("cli-cleanup", now))
        await quiet_bus.publish(activity(KARI, "cli-cleanup", now, hours=2.5))
        for _ in range(200):  # until the service has counted the hours (10 s at most)
            status, out, _ = await stats(*run, "compare", KARI)
            if "2.5" in out:
                break
            await asyncio.sleep(0.05)
        lines = out.splitlines()
        assert (
            status == 0
            and lines[0]
            == f"volunteer-hours, {period}, for {KARI} (compared with release {releases} of the period):"
        )
        assert re.split(r"\s{2,}", lines[1]) == [
            "GROUP",
            "NAME",
            "YOURS (h)",
            "RELEASED MEAN",
            "RELEASED MEDIAN",
        ]
        assert re.split(r"\s{2,}", lines[2])[0::2] == ["bragernes / beach-cleanup", "2.5", "-"]
        assert lines[-1] == "computed for you alone; nothing of it was published"
        status, out, _ = await stats(*run, "compare", KARI, "--json")
        assert msgspec.json.decode(out, type=Comparison).yours[0].value == 2.5


async def test_a_stored_message_that_is_no_release_is_said_and_skipped(
    quiet_bus: Bus, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = (capsys, config, quiet_bus)
    for aggregate in (W48, BEACH):
        await quiet_bus.publish(aggregate)
    await quiet_bus.nc.publish(contract_filter(Aggregate, "volunteer-hours"), b"not a release")
    await quiet_bus.flush()
    status, out, err = await stats(*run, "show", "volunteer-hours")
    assert (status, out) == (1, "") and len(err.splitlines()) == 1
    assert "city.public.statistics.aggregate.volunteer-hours #3 is not a valid release" in err
    status, out, err = await stats(*run, "show", "volunteer-hours", "--period", "2026-W48")
    assert status == 0 and "release 1, final" in out and "#3 is not a valid release" in err
    status, out, err = await stats(*run, "list")
    assert status == 0 and [line.split()[0] for line in out.splitlines()] == [
        "DATASET",
        "beach-water-temperature",
    ]
    assert err.startswith("citybus stats: warning: city.public.statistics.aggregate.volunteer-hours #3")


def test_a_comparison_reads_as_lines_with_the_air_on_the_commute() -> None:
    air = StatisticsRow(group=("bangelokka", "NO2"), label="Bangeløkka, NO2", count=2, mean=20.85, max=22.9)
    comparison = Comparison(
        person_id=KARI,
        dataset="volunteer-hours",
        period="2026-W49",
        unit="h",
        yours=(OwnFigure(group=("bragernes", "lifting"), value=3.0, released_mean=2.91),),
        released=W49.rows,
        release=2,
        commute=(air,),
        note="yours are exact",
    )
    lines = format_comparison(comparison)
    cells = [re.split(r"\s{2,}", line) for line in lines]
    assert lines[0] == f"volunteer-hours, 2026-W49, for {KARI} (compared with release 2 of the period):"
    assert cells[1:3] == [
        ["GROUP", "YOURS (h)", "RELEASED MEAN", "RELEASED MEDIAN"],
        ["bragernes / lifting", "3", "2.91", "-"],
    ]
    assert lines[3] == "released (what everyone sees):"
    assert cells[5:8] == [
        ["bragernes / beach-cleanup", "7", "20.4", "2.91"],
        ["konnerud / beach-cleanup", "suppressed: below the noise threshold"],
        ["all / all", "12", "33", "2.75"],
    ]
    assert lines[8] == "the air on your commute (released, ug/m3):"
    assert cells[9:11] == [
        ["GROUP", "NAME", "OBSERVATIONS", "MEAN", "MAX"],
        ["bangelokka / NO2", "Bangeløkka, NO2", "2", "20.85", "22.9"],
    ]
    assert lines[-2:] == ["note: yours are exact", "computed for you alone; nothing of it was published"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("show", "volunteer-hours", "--period", "2026-W40"), 1, "periods held: 2026-W48, 2026-W49"),
        (("show", "no-such-data"), 1, "no release of 'no-such-data' has been published"),
        (("show", "Volunteer Hours"), 2, "is not a data set's name"),
        (("show", "volunteer-hours", "--period", "last week"), 2, "a period is an ISO week (2026-W49)"),
        (("release", "volunteer-hours", "--period", "2026-13"), 2, "a period is"),
        (("compare", "Kari Nordmann"), 2, "is not a person's id"),
        (("compare", "v-3f9c2a7e51d0", "--commute", "Bangeløkka"), 2, "a station's id"),
        (("release", "volunteer-hours"), 1, "no statistics service answers on this bus: start `citybus up`"),
    ],
)
async def test_what_cannot_be_done_is_one_line_and_a_non_zero_status(
    quiet_bus: Bus,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    says: str,
) -> None:
    for aggregate in (W48, W49):
        await quiet_bus.publish(aggregate)
    status, out, err = await stats(capsys, config, quiet_bus, *args)
    assert (status, out) == (code, "")
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
