"""The README's LoRaWAN walk-through, run as a newcomer would copy it.

The section "A LoRaWAN beach sensor, end to end" is read from README.md: its TOML block becomes the
``citybus.toml``, and its ``sh`` blocks run for real in bash — ``createdb``, ``citybus up`` (a child
process with the embedded nats-server's MQTT listener), ``citybus tail``, ``citybus vicpack
decode``, ``mosquitto_pub`` and ``psql`` against the PostgreSQL at 127.0.0.1:5432. What ``tail`` and
``psql`` print is compared with the section's ``console`` blocks.

Two values are changed, and only these, so that a run neither collides with another nor touches a
database of the reader's: the MQTT port (a free one instead of 1884) and the database name (one of
this run's instead of ``citybus_beaches``, dropped afterwards). ``HOME`` is a temporary directory,
so the README's ``~/.local/share/citybus/…`` paths are this run's.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from conftest import require_service
from pg import query, unreachable
from walkthrough import ROOT, Block, Running, Walk, bash, blocks, free_port, start, walk_in

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
HEADING = "### A LoRaWAN beach sensor, end to end"
README_PORT = "1884"
README_DATABASE = "citybus_beaches"
MAINTENANCE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKGROUND = ("citybus up", "citybus tail")
"""Commands the section says to keep running: started, waited for, stopped at the end."""
TIMEOUT = 60.0  # a bound against hangs, not a performance expectation


def section() -> list[Block]:
    """The fenced blocks of the walk-through, in order."""
    return blocks(README, HEADING)


def test_the_section_is_there_and_complete() -> None:
    blocks = section()
    langs = [b.lang for b in blocks]
    assert langs.count("toml") == 1 and langs.count("console") == 2
    commands = "\n".join(b.text for b in blocks if b.lang == "sh")
    for needed in ("createdb", "citybus up", "citybus tail", "mosquitto_pub", "psql"):
        assert needed in commands
    # The values the test replaces are the README's own: if they change, this test must follow.
    assert README_PORT in commands and README_PORT in blocks[langs.index("toml")].text
    assert README_DATABASE in commands and README_DATABASE in blocks[langs.index("toml")].text


@pytest.fixture
async def walk(tmp_path: Path) -> AsyncIterator[Walk]:
    for tool in ("mosquitto_pub", "createdb", "psql"):
        if shutil.which(tool) is None:
            require_service(tool, "it is not on PATH (Debian: mosquitto-clients, postgresql-client)")
    why = await unreachable(MAINTENANCE_DSN)
    if why is not None:
        require_service("PostgreSQL", f"none answers at {MAINTENANCE_DSN}: {why}")
    walk = walk_in(tmp_path)
    database = f"citybus_readme_{uuid.uuid4().hex[:10]}"
    walk.replace = {README_PORT: str(free_port()), README_DATABASE: database}
    try:
        yield walk
    finally:
        await query(MAINTENANCE_DSN, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def archived_rows(database: str) -> int:
    dsn = MAINTENANCE_DSN.rsplit("/", 1)[0] + f"/{database}"
    try:
        rows = await query(dsn, "SELECT count(*) FROM citybus.environment_beach_observation_v1")
    except psycopg.Error:  # the archive has not created its table yet
        return 0
    return int(rows[0][0])


def table_rows(text: str) -> list[list[str]]:
    """The cells of psql's aligned output, header first (the ruler and the row count left out)."""
    return [
        [cell.strip() for cell in line.split("|")]
        for line in text.strip().splitlines()
        if "|" in line and not line.startswith("-")
    ]


async def test_the_lorawan_walk_through_works_as_written(walk: Walk) -> None:
    blocks = section()
    config = next(b for b in blocks if b.lang == "toml")
    tail_expected, psql_expected = (b.text for b in blocks if b.lang == "console")
    (walk.cwd / "citybus.toml").write_text(walk.adapt(config.text), encoding="utf-8")

    running: list[Running] = []
    outputs: list[str] = []
    try:
        for block in (b for b in blocks if b.lang == "sh"):
            if "psql" in block.text:
                # The reader looks a few seconds later; the test waits until the message went by on
                # the bus and the archive's batch was committed (bounded: not a timing assertion).
                await running[-1].wait_for(running[-1].stdout, "beach-observation")
                async with asyncio.timeout(TIMEOUT):
                    while await archived_rows(walk.replace[README_DATABASE]) == 0:  # noqa: ASYNC110 - a database, no event
                        await asyncio.sleep(0.1)
            script: list[str] = []
            for line in [*walk.adapt(block.text).splitlines(), ""]:
                if line.startswith(BACKGROUND):
                    if script:
                        outputs.append(await bash("\n".join(script), walk))
                        script = []
                    running.append(await start(line, walk))
                else:
                    script.append(line)
            if any(line.strip() for line in script):
                outputs.append(await bash("\n".join(script), walk))
    finally:
        for process in reversed(running):  # tail first, then up
            await process.stop()

    # citybus tail printed the observation exactly as the README shows it.
    assert running[-1].command.startswith("citybus tail")
    assert running[-1].stdout == tail_expected.strip().splitlines()
    # psql found the row the README shows.
    assert table_rows(outputs[-1]) == table_rows(psql_expected)
    assert outputs[-1].rstrip().endswith("(1 row)")
    # citybus up stopped cleanly when asked.
    assert running[0].process.returncode == 0, "\n".join(running[0].stderr)
