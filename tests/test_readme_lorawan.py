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
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from conftest import require_service
from pg import query, unreachable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HEADING = "### A LoRaWAN beach sensor, end to end"
README_PORT = "1884"
README_DATABASE = "citybus_beaches"
MAINTENANCE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKGROUND = ("citybus up", "citybus tail")
"""Commands the section says to keep running: started, waited for, stopped at the end."""
TIMEOUT = 60.0  # a bound against hangs, not a performance expectation


@dataclass(frozen=True)
class Block:
    """One fenced block of the section: its language and text."""

    lang: str
    text: str


def section() -> list[Block]:
    """The fenced blocks of the walk-through, in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index(HEADING)
    end = text.find("\n#", start + len(HEADING))
    body = text[start : end if end != -1 else len(text)]
    return [Block(lang, code) for lang, code in re.findall(r"```(\w+)\n(.*?)```", body, flags=re.S)]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Walk:
    """Where the walk-through runs and with what it replaces the README's port and database."""

    cwd: Path
    env: dict[str, str]
    port: str
    database: str

    def adapt(self, text: str) -> str:
        return text.replace(README_PORT, self.port).replace(README_DATABASE, self.database)


@pytest.fixture
async def walk(tmp_path: Path) -> AsyncIterator[Walk]:
    for tool in ("mosquitto_pub", "createdb", "psql"):
        if shutil.which(tool) is None:
            require_service(tool, "it is not on PATH (Debian: mosquitto-clients, postgresql-client)")
    why = await unreachable(MAINTENANCE_DSN)
    if why is not None:
        require_service("PostgreSQL", f"none answers at {MAINTENANCE_DSN}: {why}")
    home, cwd, bin_dir = tmp_path / "home", tmp_path / "cwd", tmp_path / "bin"
    for directory in (home, cwd, bin_dir):
        directory.mkdir()
    # `citybus` is this checkout's, whatever is installed.
    shim = bin_dir / "citybus"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bus.cli "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITYBUS_", "XDG_", "PG"))}
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "/usr/bin:/bin")]),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        CITYBUS_OPS_PORT="0",  # the README leaves the ops port at 9464, which may be taken here
    )
    database = f"citybus_readme_{uuid.uuid4().hex[:10]}"
    try:
        yield Walk(cwd, env, str(free_port()), database)
    finally:
        await query(MAINTENANCE_DSN, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


class Running:
    """A command of the section that keeps running, its standard error read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, command: str) -> None:
        self.process = process
        self.command = command
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(process.stdout, self.stdout)),
            asyncio.create_task(self._read(process.stderr, self.stderr)),
        ]

    @staticmethod
    async def _read(stream: asyncio.StreamReader, lines: list[str]) -> None:
        async for line in stream:
            lines.append(line.decode().rstrip("\n"))

    async def wait_for(self, lines: list[str], pattern: str) -> None:
        """Wait until one of ``lines`` (its stdout or stderr) matches; fail if it exits first."""
        async with asyncio.timeout(TIMEOUT):
            while not any(re.search(pattern, line) for line in lines):
                if self.process.returncode is not None:
                    await asyncio.gather(*self._readers)
                    pytest.fail(
                        f"{self.command} exited with {self.process.returncode}:\n" + "\n".join(self.stderr)
                    )
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Ctrl-C, as the reader would."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(TIMEOUT):
                await self.process.wait()
                await asyncio.gather(*self._readers)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            for reader in self._readers:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


async def bash(script: str, walk: Walk) -> str:
    """Run ``script`` in bash as the reader's terminal would; its standard output (it must succeed)."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        cwd=walk.cwd,
        env=walk.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode == 0, f"{script}\n-> {process.returncode}\n{out.decode()}\n{err.decode()}"
    return out.decode()


async def start(command: str, walk: Walk) -> Running:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"exec {command}",  # exec: Ctrl-C (SIGINT) reaches citybus itself
        cwd=walk.cwd,
        env=walk.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    running = Running(process, command)
    ready = r"^citybus is up: NATS at " if command.startswith("citybus up") else r"^tailing "
    await running.wait_for(running.stderr, ready)
    return running


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
                    while await archived_rows(walk.database) == 0:  # noqa: ASYNC110 - a database, no event
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
