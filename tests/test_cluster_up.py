"""``citybus up --cluster 3``, then nodes killed by hand: ``citybus tail`` keeps printing, and the
nodes come back by themselves — as the README's walk-through promises a newcomer.

Real processes only: ``citybus up`` (its three nats-servers, the sandbox replaying Drammen fast so
that there is always something to tail) and ``citybus tail 'city.public.>'``, run as a user runs
them. Which node the tail reads from is asked of the nodes themselves (``/connz``), and after a
failover the tail says where it went on (its "nats reconnected" warning). Nothing is timed: each
step waits, with a deadline against hangs, for what a person would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import Background, citybus_env, spawn

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STEP = 60.0  # a bound against hangs on a loaded machine, not an expectation
NODE = re.compile(r"^\s+node\s+(\S+) (nats://\S+) \(pid (\d+):")
CONFIG = """\
[server]
restart_delay = 2          # short, so the test sees the nodes come back soon

[adapters.sandbox]         # only the replay: what the tail prints, and little else to run
adapter = "sandbox-replay"
speed = 600
"""


class Following(Background):
    """A background ``citybus`` whose standard output is read too, line by line."""

    def __init__(self, process: asyncio.subprocess.Process, args: tuple[str, ...]) -> None:
        super().__init__(process, args)
        self.stdout: list[str] = []
        self._out = asyncio.create_task(self._read_out())

    @classmethod
    async def start(cls, *args: str, cwd: Path, env: Mapping[str, str]) -> Following:
        return cls(await spawn(args, cwd=cwd, env=env), args)

    async def _read_out(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.stdout.append(line.decode().rstrip("\n"))

    async def close(self) -> None:
        """Ctrl-C, as a person stops it, and SIGKILL whatever is left (a failed test leaves nothing)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STEP):
                    await self.process.wait()
        await self.kill()

    async def kill(self) -> None:
        await super().kill()
        self._out.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._out

    def events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of ``event`` on standard error, in order."""
        found = []
        for line in self.stderr:
            if line.startswith("{") and f'"{event}"' in line:
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found

    async def wait_events(self, event: str, count: int) -> list[dict[str, Any]]:
        """Wait until ``event`` was logged ``count`` times; fail if the process exits first."""
        async with asyncio.timeout(STEP):
            while len(found := self.events(event)) < count:
                if self.process.returncode is not None:
                    pytest.fail(f"citybus {' '.join(self.args)} exited:\n{self.text}")
                await asyncio.sleep(0.05)
        return found

    async def more_lines(self, than: int, at_least: int = 3) -> None:
        """Wait until ``at_least`` lines were printed after the first ``than``."""
        async with asyncio.timeout(STEP):
            while len(self.stdout) < than + at_least:
                if self.process.returncode is not None:
                    pytest.fail(f"citybus {' '.join(self.args)} exited:\n{self.text}")
                await asyncio.sleep(0.05)


def _tail_node(data_dir: Path) -> str:
    """The client URL of the node whose ``/connz`` lists the tail's subscription."""
    for ports in sorted((data_dir / "cluster").glob("node-*/nats-server_*.ports")):
        listening = json.loads(ports.read_text())
        try:
            with urllib.request.urlopen(f"{listening['monitoring'][0]}/connz?subs=1", timeout=5) as reply:
                connections = json.loads(reply.read())["connections"]
        except OSError:
            continue  # a node killed a moment ago leaves its ports file behind
        if any("city.public.>" in c.get("subscriptions_list", []) for c in connections):
            return str(listening["nats"][0])
    raise AssertionError("no node lists the tail's subscription")


async def test_killed_nodes_leave_the_tail_going_and_come_back(tmp_path: Path) -> None:
    data_dir, cwd = tmp_path / "data", tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "citybus.toml").write_text(CONFIG)
    env = citybus_env(data_dir)
    up = await Following.start("up", "--cluster", "3", cwd=cwd, env=env)
    tail: Following | None = None
    try:
        await up.wait_said(r"^\s+Ctrl-C to stop$", timeout=STEP)
        pids: dict[str, int] = {}
        names: dict[str, str] = {}
        for found in filter(None, map(NODE.match, up.stderr)):
            name, url, pid = found.groups()
            names[url], pids[url] = name, int(pid)
        assert len(pids) == 3, up.text
        assert "a node that exits is started again after 2 s" in up.text

        tail = await Following.start("tail", "city.public.>", cwd=cwd, env=env)
        await tail.wait_said(
            r"^tailing city\.public\.> on nats://\S+,nats://\S+,nats://\S+ as SANDBOX/internal"
        )
        await tail.more_lines(0)

        # 1. The node the tail reads from dies: the tail goes on on another, and the node comes back.
        victim = _tail_node(data_dir)
        os.kill(pids[victim], signal.SIGKILL)
        (moved,) = await tail.wait_events("nats reconnected", 1)
        assert moved["server"] != victim and moved["server"] in pids
        await tail.more_lines(len(tail.stdout))
        (exited,) = await up.wait_events("nats node exited: starting it again", 1)
        assert (
            exited["node"] == names[victim] and exited["signal"] == "SIGKILL" and exited["returncode"] == -9
        )
        (back,) = await up.wait_events("nats node started again", 1)
        assert back["node"] == names[victim] and back["url"] == victim and back["pid"] != pids[victim]
        pids[victim] = back["pid"]
        await tail.more_lines(len(tail.stdout))

        # 2. Two nodes die at once, the tail's among them: one node of three is left, without
        # JetStream quorum, and the tail still goes on there; then both come back.
        current = str(moved["server"])
        other = next(url for url in pids if url not in (current, victim))
        for url in (other, current):  # the tail's last, so it does not fail over to the other
            os.kill(pids[url], signal.SIGKILL)
        _first, again = await tail.wait_events("nats reconnected", 2)
        assert again["server"] != current
        await tail.more_lines(len(tail.stdout))
        restarted = await up.wait_events("nats node started again", 3)
        assert {r["node"] for r in restarted[1:]} == {names[current], names[other]}
        await tail.more_lines(len(tail.stdout))
        assert "Traceback" not in up.text + tail.text
    finally:
        if tail is not None:
            await tail.close()
        await up.close()
