"""Run a document's walk-through as a newcomer would copy it: its fenced blocks, for real.

The README's LoRaWAN section and ``docs/tutorial.md`` are tested this way: :func:`blocks` reads a
document's fenced blocks (under one heading, or all of them), :func:`bash` runs a ``sh`` block in
bash as a reader's terminal would, :func:`start` starts a command the text says to keep running
(``citybus up``, ``citybus tail``), and :class:`Running` follows what it prints and stops it with
Ctrl-C. ``citybus`` on the walk's ``PATH`` is this checkout's, whatever is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 90.0  # a bound against hangs, not a performance expectation
READY = {"citybus up": r"^citybus is up: NATS at ", "citybus tail": r"^tailing "}
"""What a background command prints on standard error once it is ready, by how it starts."""


@dataclass(frozen=True)
class Block:
    """One fenced block of a document: its language, its info string after it, and its text."""

    lang: str
    text: str
    info: str = ""


def blocks(path: Path, heading: str | None = None) -> list[Block]:
    """The fenced blocks of ``path`` in order, only those under ``heading`` (up to the next heading
    of any level) when one is given."""
    text = path.read_text(encoding="utf-8")
    if heading is not None:
        start = text.index(heading)
        end = text.find("\n#", start + len(heading))
        text = text[start : end if end != -1 else len(text)]
    found = re.findall(r"^```(\w+)([^\n]*)\n(.*?)^```", text, flags=re.S | re.M)
    return [Block(lang, code, info.strip()) for lang, info, code in found]


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Walk:
    """Where a walk-through runs, and the values it replaces in the document's text."""

    cwd: Path
    env: dict[str, str]
    replace: dict[str, str] = field(default_factory=dict)

    def adapt(self, text: str) -> str:
        """``text`` with the replaced values."""
        for old, new in self.replace.items():
            text = text.replace(old, new)
        return text


def walk_in(tmp_path: Path, python: str = sys.executable) -> Walk:
    """A walk in ``tmp_path/cwd`` with ``HOME`` in ``tmp_path/home`` and a ``citybus`` that runs
    this checkout with ``python``; no ``CITYBUS_*``, ``XDG_*`` or ``PG*`` of the caller leaks in."""
    home, cwd, bin_dir = tmp_path / "home", tmp_path / "cwd", tmp_path / "bin"
    for directory in (home, cwd, bin_dir):
        directory.mkdir(exist_ok=True)
    shim = bin_dir / "citybus"
    shim.write_text(f'#!/bin/sh\nexec "{python}" -m bus.cli "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITYBUS_", "XDG_", "PG"))}
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "/usr/bin:/bin")]),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        CITYBUS_OPS_PORT="0",  # documents leave the ops port at 9464, which may be taken here
    )
    return Walk(cwd, env)


class Running:
    """A command that keeps running, what it prints read as it comes."""

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

    async def wait_for(self, lines: list[str], pattern: str, timeout: float = TIMEOUT) -> str:
        """Wait until one of ``lines`` (its stdout or stderr) matches; the line. Fail if it exits first."""
        async with asyncio.timeout(timeout):
            while True:
                hit = next((line for line in lines if re.search(pattern, line)), None)
                if hit is not None:
                    return hit
                if self.process.returncode is not None:
                    await asyncio.gather(*self._readers)
                    pytest.fail(
                        f"{self.command} exited with {self.process.returncode}:\n" + "\n".join(self.stderr)
                    )
                await asyncio.sleep(0.05)

    async def stop(self) -> int:
        """Ctrl-C, as the reader would; its exit status."""
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
        return self.process.returncode


async def run_bash(script: str, walk: Walk, *, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    """Run ``script`` in bash as the reader's terminal would; its exit status, standard output and
    standard error, apart."""
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
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def bash(script: str, walk: Walk, *, check: bool = True, timeout: float = TIMEOUT) -> str:
    """Run ``script`` in bash as the reader's terminal would; its standard output (it must succeed
    unless ``check`` is false; then standard error follows standard output)."""
    code, out, err = await run_bash(script, walk, timeout=timeout)
    if check:
        assert code == 0, f"{script}\n-> {code}\n{out}\n{err}"
        return out
    return out + err


async def start(command: str, walk: Walk, ready: str | None = None) -> Running:
    """Start ``command`` in the background and wait until it says it is ready (``ready``, or what
    :data:`READY` knows for it)."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"exec {command}",  # exec: Ctrl-C (SIGINT) reaches the command itself
        cwd=walk.cwd,
        env=walk.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    running = Running(process, command)
    pattern = ready or next((p for prefix, p in READY.items() if command.startswith(prefix)), None)
    if pattern is not None:
        await running.wait_for(running.stderr, pattern)
    return running
