"""PostgreSQL for the tests: the shared server, and private throwaway servers to restart at will.

The shared server is ``postgresql://127.0.0.1:5432/test`` unless ``CITYBUS_TEST_POSTGRES`` names
another database; tests keep to a schema of their own and drop it afterwards. A test that restarts
PostgreSQL starts a :class:`PrivatePostgres` (``initdb`` into a temporary directory, ``pg_ctl`` on
a free port, as the ``postgres`` user when the tests run as root), so the shared one is undisturbed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.abc import Query

SHARED_DSN = os.environ.get("CITYBUS_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


async def unreachable(dsn: str, timeout: float = 5.0) -> str | None:
    """Why no PostgreSQL answers at ``dsn``, or ``None`` when one does."""
    try:
        async with asyncio.timeout(timeout):
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    except (OSError, TimeoutError, psycopg.Error) as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    await conn.close()
    return None


async def query(dsn: str, statement: Query, params: Any = None) -> list[tuple[Any, ...]]:
    """The rows of one statement on a connection of its own."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(statement, params)
        return await cur.fetchall() if cur.description else []


def server_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (the newest installed version), if any."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivatePostgres:
    """A PostgreSQL server of one test's own, with trust authentication, on a free loopback port.

    ::

        async with PrivatePostgres(server_binaries()) as pg:
            ... pg.dsn ...
            await pg.restart()
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        self.datadir = Path(tempfile.mkdtemp(prefix="citybus-pg-"))
        self.running = False

    def dsn(self, password: str | None = None) -> str:
        """A URL for the ``postgres`` database (any password passes trust authentication)."""
        user = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{user}@127.0.0.1:{self.port}/postgres"

    async def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=self.datadir
        )
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            log = self.datadir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{output.decode()}\n{tail}")

    def _options(self) -> list[str]:
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        return ["-D", str(self.datadir / "data"), "-l", str(self.datadir / "server.log"), "-o", options]

    async def __aenter__(self) -> Self:
        if self.as_postgres:
            shutil.chown(self.datadir, "postgres", "postgres")
        try:
            await self._run(
                "initdb", "-D", str(self.datadir / "data"), "--auth=trust", "-U", "postgres", "--no-sync"
            )
            await self.start()
        except BaseException:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.running:
                await self.stop()
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)

    async def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        await self._run("pg_ctl", "start", "-w", "-t", "60", *self._options())
        self.running = True

    async def stop(self) -> None:
        """Stop the server (fast: sessions are disconnected, transactions in progress rolled back)."""
        await self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.datadir / "data"))
        self.running = False

    async def restart(self) -> None:
        """Stop and start again, as an operator's ``pg_ctl restart -m fast`` does."""
        await self._run("pg_ctl", "restart", "-w", "-t", "60", "-m", "fast", *self._options())
        self.running = True
