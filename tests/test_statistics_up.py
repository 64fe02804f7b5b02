"""The README's walk through everyday statistics, against ``citybus up`` as a newcomer runs it (the
sandbox replaying, access control on): the statistics service runs by default, ``citybus stats``
releases, shows and compares as the README says, the budget refuses the release that would exceed
it, and a citizen's own user may ask about that citizen and nobody else."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from tests.test_cli import Up, assert_one_line_error, run_citybus, start_up

pytestmark = pytest.mark.slow

KARI = "v-3f9c2a7e51d0"
WEEK = "2026-W23"  # the week of the README's clean-up, 2026-06-06


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    running = await start_up(tmp_path_factory.mktemp("statistics-up"), sandbox=True)
    try:
        yield running
    finally:
        await running.stop()


async def citybus(up: Up, *args: str) -> str:
    result = await run_citybus(*args, cwd=up.cwd, env=up.env)
    assert result.returncode == 0, result
    return result.stdout


async def test_the_readme_walk(up: Up) -> None:
    users = up.instance["access"]["users"]
    assert {"SANDBOX/statistics", "SANDBOX/statistics-desk", "SANDBOX/analyst"} <= set(users)

    # Kari signs up with consent to statistics (the volunteer platform's walk)
    opportunity = "beach-cleanup-sota-2026-06-06"
    await citybus(
        up, "volunteer", "offer", "drammen-frivilligsentral", opportunity,
        "--title", "Beach clean-up at Sota fjordpark", "--place", "Sota fjordpark",
        "--starts", "2026-06-06T10:00", "--ends", "2026-06-06T13:00", "--places", "2", "--skills", "lifting",
    )  # fmt: skip
    await citybus(
        up, "volunteer", "signup", opportunity, "--volunteer", KARI, "--name", "Kari Nordmann",
        "--email", "kari.nordmann@example.no", "--consent", "volunteering,statistics",
    )  # fmt: skip
    # the bathing water this week, released now (once a reading has replayed) and read back
    release = ("stats", "release", "beach-water-temperature")
    while (beach := await run_citybus(*release, cwd=up.cwd, env=up.env)).returncode:  # noqa: ASYNC110
        assert "nothing to release" in beach.stderr, beach  # no reading yet: refused, nothing published
        await asyncio.sleep(0.5)
    assert re.fullmatch(
        r"released beach-water-temperature \S+: release \d+ \(public data: no budget\)\n", beach.stdout
    )
    shown = (await citybus(up, "stats", "show", "beach-water-temperature")).splitlines()
    assert shown[0] == "Water temperature at Drammen's bathing sites"
    assert shown[-2:] == [
        "privacy: none needed (public data: no person in it)",
        "from environment.beach-observation",
    ]

    compare = ("stats", "compare", KARI, "--period", WEEK)
    while "you have no figures" in await citybus(up, *compare):  # noqa: ASYNC110 - until her hours are counted
        await asyncio.sleep(0.1)

    # two releases spend the week's budget; the third is refused, in one line
    for n, spent in ((1, "1"), (2, "2")):
        assert await citybus(up, "stats", "release", "volunteer-hours", "--period", WEEK) == (
            f"released volunteer-hours {WEEK}: release {n}, ε 1 (ε {spent} of 2 spent on the period)\n"
        )
    refused = await run_citybus(
        "stats", "release", "volunteer-hours", "--period", WEEK, cwd=up.cwd, env=up.env
    )
    assert_one_line_error(refused, 1, f"refused: volunteer-hours {WEEK}: ", "budget")
    table = await citybus(up, "stats", "show", "volunteer-hours", "--period", WEEK)
    assert f"volunteer-hours, {WEEK} (2026-06-01 to 2026-06-07), release 2, provisional" in table
    assert "privacy: differential privacy (OpenDP), ε 1 and δ" in table and "ε 2 of 2 spent" in table
    assert "suppressed" in table  # one volunteer: no cell of hers is released

    # how her week compares, as the desk, then as herself
    answer = (await citybus(up, *compare)).splitlines()
    assert answer[0] == f"volunteer-hours, {WEEK}, for {KARI} (compared with release 2 of the period):"
    assert re.split(r"\s{2,}", answer[2])[::2] == ["unknown / lifting", "3", "-"]
    assert answer[-1] == "computed for you alone; nothing of it was published"
    await citybus(up, "auth", "add-citizen", KARI)
    assert (await citybus(up, *compare, "--user", KARI)).splitlines()[:3] == answer[:3]
    other = await run_citybus("stats", "compare", "v-77aa01bc9e42", "--user", KARI, cwd=up.cwd, env=up.env)
    assert_one_line_error(other, 1, f"the broker refused SANDBOX/{KARI} to ask about v-77aa01bc9e42")

    listed = (await citybus(up, "stats", "list")).splitlines()
    assert listed[0].split() == ["DATASET", "PERIOD", "RELEASE", "CELLS", "PRIVACY", "TITLE"]
    assert {line.split()[0] for line in listed[1:]} >= {"beach-water-temperature", "volunteer-hours"}


async def test_contracts_provision_makes_the_buckets_the_running_instances_declare(up: Up) -> None:
    """Under access control no instance creates its key-value buckets: the account's provisioner
    does, at start and again with ``citybus contracts provision`` (bus/buckets.py)."""
    out = (await citybus(up, "contracts", "provision", "--account", "sandbox")).splitlines()
    assert out[0].startswith("provisioned ") and " streams in SANDBOX: " in out[0]
    assert out[1].startswith("provisioned ") and " key-value stores in SANDBOX: " in out[1]
    made = set(out[1].split(": ", 1)[1].split(", "))
    assert {"KV_statistics_budget", "KV_statistics_contributions"} <= made
