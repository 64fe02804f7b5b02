"""``citybus up`` as a newcomer runs it keeps personal data's rights: the privacy service runs by
default, and ``citybus personal export|erase`` works against it as the README says, with access
control on; mistakes get one line."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator

import pytest

from tests.test_cli import Up, assert_one_line_error, citybus_env, run_citybus, start_up

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    running = await start_up(tmp_path_factory.mktemp("privacy-up"), sandbox=True)
    try:
        yield running
    finally:
        await running.stop()


async def test_the_privacy_service_runs_by_default_and_has_swept(up: Up) -> None:
    assert "SANDBOX/privacy" in up.instance["access"]["users"]
    with urllib.request.urlopen(f"{up.ops_url}/metrics", timeout=10) as response:  # noqa: ASYNC210 - one local read
        metrics = response.read().decode()
    assert 'citybus_personal_erasure_last_timestamp_seconds{reason="retention"}' in metrics


async def test_export_of_someone_citybus_knows_nothing_about_is_empty(up: Up) -> None:
    result = await run_citybus("personal", "export", "v-0a1b2c3d4e5f", cwd=up.cwd, env=up.env)
    assert result.returncode == 0, result
    export = json.loads(result.stdout)
    assert export["person"] == "v-0a1b2c3d4e5f" and export["messages"] == [] and export["complete"]
    assert set(export["places"]) >= {"stream", "dead-letters", "logs", "key"}
    assert result.stderr.strip().startswith("nothing found about v-0a1b2c3d4e5f in stream, dead-letters")


async def test_erasure_prints_the_receipt_place_by_place(up: Up) -> None:
    result = await run_citybus(
        "personal", "erase", "v-0a1b2c3d4e5f", "--case", "dpo-2026-1", cwd=up.cwd, env=up.env
    )
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith("erasure dpo-2026-1 of v-0a1b2c3d4e5f at ")
    assert "  stream CITY_PERSONAL_COMMUNITY: nothing found" in lines
    assert "  logs standard error: nothing found (citybus writes no personal values to its logs)" in lines
    assert "  recording 0 recordings: nothing found" in lines  # the shipped ones are never searched
    assert lines[-1] == "complete"


async def test_the_readme_walk_a_volunteer_signs_up_is_exported_and_erased(up: Up) -> None:
    async def citybus(*args: str) -> str:
        result = await run_citybus(*args, cwd=up.cwd, env=up.env)
        assert result.returncode == 0, result
        return result.stdout + result.stderr

    opportunity = "beach-cleanup-sota-2026-06-06"
    await citybus(
        "volunteer", "offer", "drammen-frivilligsentral", opportunity, "--title", "Beach clean-up",
        "--place", "Sota fjordpark", "--starts", "2026-06-06T10:00", "--ends", "2026-06-06T13:00",
        "--places", "2",
    )  # fmt: skip
    await citybus(
        "volunteer", "signup", opportunity, "--volunteer", "v-3f9c2a7e51d0", "--name", "Kari Nordmann",
        "--email", "kari.nordmann@example.no", "--consent", "volunteering,statistics",
    )  # fmt: skip
    exported = await citybus("personal", "export", "v-3f9c2a7e51d0", "-o", str(up.cwd / "kari.json"))
    assert "exported 2 messages about v-3f9c2a7e51d0" in exported
    export = json.loads((up.cwd / "kari.json").read_text())
    assert [m["data"].get("name") for m in export["messages"]] == ["Kari Nordmann", None]
    erased = await citybus("personal", "erase", "v-3f9c2a7e51d0", "--case", "dpo-2026-0043")
    assert "  stream CITY_PERSONAL_COMMUNITY: 2 found, 2 erased (deleted and overwritten)" in erased
    assert erased.splitlines()[-1] == "complete"
    assert "nothing found about v-3f9c2a7e51d0" in await citybus("personal", "export", "v-3f9c2a7e51d0")
    # the platform frees her place when it hears her key is gone (asynchronously: asked until it has)
    while "Kari Nordmann" in await citybus("volunteer", "roster", "drammen-frivilligsentral"):  # noqa: ASYNC110
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("export", "Kari Nordmann"), "does not look like a person id"),
        (("erase", "kari@example.no"), "a name or an e-mail goes after --identifier"),
        (("erase", "v-0a1b2c3d4e5f", "--case", "no spaces"), "a case number is 1 to 64 letters"),
    ],
)
async def test_mistakes_get_one_line(up: Up, args: tuple[str, ...], says: str) -> None:
    result = await run_citybus("personal", *args, cwd=up.cwd, env=up.env)
    assert_one_line_error(result, 1, says)


@pytest.mark.parametrize(
    ("where", "says"),
    [((), "no running `citybus up` found"), (("--nats", "nats://127.0.0.1:1"), "no NATS server answered")],
)
async def test_no_server_gets_one_line(
    tmp_path_factory: pytest.TempPathFactory, where: tuple[str, ...], says: str
) -> None:
    base = tmp_path_factory.mktemp("privacy-down")
    env = citybus_env(base / "data")
    (base / "cwd").mkdir()
    result = await run_citybus("personal", "export", "v-0a1b2c3d4e5f", *where, cwd=base / "cwd", env=env)
    assert_one_line_error(result, 1, says)
