"""The ``citybus`` command as a user runs it: real processes, a real nats-server, real HTTP.

Every command runs as ``python -m bus.cli`` in a directory of its own (so no stray ``citybus.toml``
is read) with the ``CITYBUS_*`` variables of the test only. Commands that need nothing running are
started all at once by one fixture, since each one pays Python's start-up; ``citybus up`` is
started once for the tests that talk to it, and once more for each signal that should stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import contract_package
import msgspec
import nats
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from test_contracts_compat import recorded

from bus import Bus, Provenance
from bus.config import load_config
from bus.runtime import Runtime
from bus.server import EmbeddedServer
from bus.subjects import contract_subject
from contracts import BeachObservation, default_registry, dump_snapshot, load_snapshot, snapshot

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BEACH = "environment.beach-observation"
BEACH_TYPE = "environment.beach-observation.v1"
DEAD_URL = "nats://127.0.0.1:1"
READING = {"site": "bragernes-strand", "observed_at": "2018-08-29T10:00:00+02:00", "water_temperature": 15.7}
COMMAND_TIMEOUT = 60.0  # a bound against hangs, not a performance expectation


def reading(**changes: Any) -> str:
    data = {**READING, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None})


def beach(entity: str) -> BeachObservation:
    return msgspec.convert({**BeachObservation.__contract__.example, "site": entity}, BeachObservation)


# -- running the command --------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What a finished ``citybus`` process left behind."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"citybus {' '.join(self.args)} -> {self.returncode}\n{self.stdout}\n{self.stderr}"


def citybus_env(data_dir: Path, **variables: str) -> dict[str, str]:
    """The environment of a ``citybus`` child: no ``CITYBUS_*`` from outside, this checkout first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBUS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["XDG_DATA_HOME"] = str(data_dir.parent / "xdg")  # never the user's own data dir
    env["CITYBUS_SERVER_DATA_DIR"] = str(data_dir)
    env["CITYBUS_OPS_PORT"] = "0"
    env.update(variables)
    return env


async def spawn(
    args: tuple[str, ...], *, cwd: Path, env: Mapping[str, str], stdin: bool = False
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bus.cli",
        *args,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_citybus(
    *args: str, cwd: Path, env: Mapping[str, str], stdin: str = "", timeout: float = COMMAND_TIMEOUT
) -> Result:
    """Run ``citybus ARGS`` to completion."""
    process = await spawn(args, cwd=cwd, env=env, stdin=bool(stdin))
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate(stdin.encode() if stdin else None)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(args, process.returncode, out.decode(), err.decode())


def assert_one_line_error(result: Result, code: int, *phrases: str) -> str:
    """The command failed with ``code``, saying so in one line that contains every phrase."""
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result
    for phrase in phrases:
        assert phrase in lines[0], result
    return lines[0]


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    """Poll until ``predicate()`` holds; a bound against hangs, not a timing assertion."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the condition is plain state, not an event
            await asyncio.sleep(0.02)


class Background:
    """A long-running ``citybus`` process whose standard error is read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, args: tuple[str, ...]) -> None:
        self.process = process
        self.args = args
        self.stderr: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str, cwd: Path, env: Mapping[str, str]) -> Background:
        return cls(await spawn(args, cwd=cwd, env=env), args)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.stderr.append(line.decode().rstrip("\n"))

    def said(self, pattern: str) -> re.Match[str] | None:
        for line in self.stderr:
            found = re.search(pattern, line)
            if found:
                return found
        return None

    async def wait_said(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until a line of standard error matches; fail if the process exits first."""
        async with asyncio.timeout(timeout):
            while (found := self.said(pattern)) is None:
                if self.process.returncode is not None:
                    await self._reader
                    pytest.fail(
                        f"citybus {' '.join(self.args)} exited with {self.process.returncode}:\n" + self.text
                    )
                await asyncio.sleep(0.02)
        return found

    async def finish(self, timeout: float = COMMAND_TIMEOUT) -> Result:
        """Wait for the process to exit by itself."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            out = await self.process.stdout.read()
            await self.process.wait()
            await self._reader
        assert self.process.returncode is not None
        return Result(self.args, self.process.returncode, out.decode(), self.text)

    async def stop(self, sig: int = signal.SIGINT, timeout: float = COMMAND_TIMEOUT) -> Result:
        """Send a signal, as Ctrl-C or a service manager would, and wait for the exit."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await self.finish(timeout)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    @property
    def text(self) -> str:
        return "\n".join(self.stderr)


@dataclass
class Up:
    """A running ``citybus up`` and where it said it is."""

    process: Background
    data_dir: Path
    cwd: Path
    env: dict[str, str]
    nats_url: str
    ops_url: str
    instance: dict[str, Any]

    async def stop(self) -> None:
        """Ctrl-C, and SIGKILL whatever is left (a test that failed must not leave it running)."""
        try:
            await self.process.stop(signal.SIGINT)
        finally:
            await self.process.kill()

    @property
    def server_pid(self) -> int:
        """The embedded nats-server's pid, from the holder line of the data dir's lock file."""
        holder = (self.data_dir / "nats-server.lock").read_text()
        found = re.match(r"pid (\d+), ", holder)
        assert found, holder
        return int(found.group(1))


async def start_up(
    base: Path, *, sandbox: bool = False, auth: bool = True, site: Path | None = None, extra: str = ""
) -> Up:
    """``citybus up`` in a directory of its own; without the sandbox's replay unless asked, so what
    a test publishes is all there is; without access control if asked (for tests that read streams
    directly: no user may, by design); with the packages installed in ``site`` if given (on the
    ``PYTHONPATH`` of it and of every command run with its environment); with ``extra`` at the end
    of its ``citybus.toml`` (adapter sections)."""
    data_dir, cwd = base / "data", base / "cwd"
    cwd.mkdir(parents=True)
    toml = "" if auth else '[auth]\nmode = "off"\n'
    if not sandbox:
        toml += '[adapters.sandbox]\nadapter = "sandbox-replay"\nenabled = false\n'
    toml += extra
    (cwd / "citybus.toml").write_text(toml)
    env = citybus_env(data_dir)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(site)])
    process = await Background.start("up", cwd=cwd, env=env)
    try:
        nats_url = (await process.wait_said(r"^citybus is up: NATS at (nats://\S+)$")).group(1)
        ops_url = (await process.wait_said(r"^\s+metrics\s+(http://\S+)/metrics$")).group(1)
    except BaseException:
        await process.kill()
        raise
    instance = json.loads((data_dir / "instance.json").read_text())
    return Up(process, data_dir, cwd, env, nats_url, ops_url, instance)


def nats_servers_using(data_dir: Path) -> list[int]:
    """Pids of live nats-server processes started on ``data_dir`` (read from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # exited while we looked
        if state != "Z" and Path(os.fsdecode(argv[0])).name == "nats-server":
            if any(str(data_dir) in os.fsdecode(arg) for arg in argv[1:]):
                pids.append(int(proc.name))
    return pids


def lock_is_free(data_dir: Path) -> bool:
    """Whether nobody holds the data dir's lock (a server holds it for as long as it lives)."""
    fd = os.open(data_dir / "nats-server.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


async def server_connections(
    nats_url: str, system_seed: Path, names: Mapping[str, tuple[str, str]]
) -> set[tuple[str, str]]:
    """``(account, user)`` of every client connection, as the server itself lists them: ``names``
    maps a user's public key to its account and name (``("?", connection name)`` if it has none)."""
    nc = await nats.connect(nats_url, nkeys_seed=str(system_seed), inbox_prefix="_INBOX.system")
    try:
        reply = await nc.request("$SYS.REQ.SERVER.PING.CONNZ", b'{"auth": true}', timeout=5)
    finally:
        await nc.close()
    listed = json.loads(reply.data)["data"]["connections"]
    return {names.get(c.get("authorized_user", ""), ("?", c.get("name", "?"))) for c in listed}


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def http_get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


# -- citybus up -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    """One ``citybus up`` for the tests that only talk to it, without access control (the tests of
    ``citybus up`` with it are in test_up_access.py)."""
    running = await start_up(tmp_path_factory.mktemp("up"), auth=False)
    yield running
    await running.stop()


async def test_up_answers_health_readiness_and_metrics(up: Up) -> None:
    assert up.instance["nats_url"] == up.nats_url
    assert up.instance["ops_url"] == up.ops_url
    assert up.instance["pid"] == up.process.process.pid
    async with aiohttp.ClientSession() as session:
        assert await http_get(session, f"{up.ops_url}/healthz") == (200, '{"status": "ok"}')
        status, body = await http_get(session, f"{up.ops_url}/readyz")
        assert status == 200
        ready = json.loads(body)
        assert ready["status"] == "ready"
        assert ready["checks"] == {"nats": True, "streams": True, "nats connected": True}
        status, body = await http_get(session, f"{up.ops_url}/metrics")
    assert status == 200
    assert "citybus_nats_connected 1.0" in body.splitlines()
    assert metric_samples(body)[("citybus_nats_disconnects_total", ())] == 0


async def test_up_with_no_adapters_configured_replays_the_drammen_day(tmp_path: Path) -> None:
    running = await start_up(tmp_path, sandbox=True)
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await http_get(session, f"{running.ops_url}/readyz")
            assert status == 200 and json.loads(body)["checks"]["adapter sandbox"] is True
            for _ in range(200):  # the day's first minutes go out at once: midnight has many messages
                samples = metric_samples((await http_get(session, f"{running.ops_url}/metrics"))[1])
                if samples.get(("citybus_replay_messages_total", (("adapter_instance", "sandbox"),)), 0) > 0:
                    break
                await asyncio.sleep(0.05)
            assert samples[("citybus_replay_speed", (("adapter_instance", "sandbox"),))] == 60
            assert samples[("citybus_replay_messages_total", (("adapter_instance", "sandbox"),))] > 0
        answer = await run_citybus("sandbox", "status", "--json", cwd=running.cwd, env=running.env)
        assert answer.returncode == 0, answer
        status_of = json.loads(answer.stdout)
        assert (status_of["state"], status_of["speed"], status_of["duration_seconds"]) == (
            "playing",
            60,
            86400,
        )
        paused = await run_citybus("sandbox", "pause", cwd=running.cwd, env=running.env)
        assert paused.returncode == 0 and "sandbox: paused at" in paused.stdout, paused
        refused = await run_citybus("sandbox", "seek", "1e9", cwd=running.cwd, env=running.env)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused
        assert "the replay refused: position must be between 0 and 86400 s" in refused.stderr
        wrong = await run_citybus(
            "sandbox", "status", "--instance", "nothing", cwd=running.cwd, env=running.env
        )
        assert wrong.returncode == 1 and "nobody serves citybus.control.replay.nothing.status" in wrong.stderr
    finally:
        await running.stop()


async def test_publish_and_tail_find_the_running_up(up: Up, entity: str) -> None:
    nc = await nats.connect(up.nats_url)
    js = nc.jetstream()
    try:
        stored_before = (await js.stream_info("CITY_PUBLIC_ENVIRONMENT")).state.messages
        tail = await Background.start("tail", BEACH, "-n", "1", "--json", cwd=up.cwd, env=up.env)
        try:
            await tail.wait_said(r"^tailing city\.public\.environment\.beach-observation\.\* on nats://")
            published = await run_citybus("publish", BEACH, reading(site=entity), cwd=up.cwd, env=up.env)
            tailed = await tail.finish()  # it stops after one message, as asked
        finally:
            await tail.kill()

        assert published.returncode == 0, published
        said = re.fullmatch(
            rf"stored ([0-9a-f]+) on city\.public\.environment\.beach-observation\.{entity} "
            r"\(CITY_PUBLIC_ENVIRONMENT #(\d+)\)\n",
            published.stdout,
        )
        assert said, published
        event_id, seq = said.group(1), int(said.group(2))

        # The stream stored it, once, with the CloudEvents headers.
        assert (await js.stream_info("CITY_PUBLIC_ENVIRONMENT")).state.messages == stored_before + 1
        stored = await js.get_msg("CITY_PUBLIC_ENVIRONMENT", seq)
        assert stored.headers is not None
        assert stored.headers["ce-id"] == event_id
        assert stored.headers["ce-provenance"] == "manual"
        assert stored.data is not None
        assert msgspec.json.decode(stored.data, type=BeachObservation).site == entity

        # The tail that was running saw it.
        assert tailed.returncode == 0, tailed
        record = json.loads(tailed.stdout)
        assert record["id"] == event_id
        assert record["type"] == BEACH_TYPE
        assert record["subject"] == f"city.public.environment.beach-observation.{entity}"
        assert record["data"]["site"] == entity
        assert record["data"]["water_temperature"] == 15.7
        assert "error" not in record
    finally:
        await nc.close()


async def test_contracts_of_an_installed_package_are_known_to_every_command(tmp_path: Path) -> None:
    """A company's package declares its contracts in the ``citybus.contracts`` entry-point group:
    ``up`` (its streams and ops endpoints), ``contracts list``, ``publish`` and ``tail`` know them."""
    site = contract_package.install(tmp_path / "site")
    running = await start_up(tmp_path / "up", auth=False, site=site)
    try:
        listed = await run_citybus("contracts", "list", cwd=running.cwd, env=running.env)
        assert listed.returncode == 0, listed
        assert f"{contract_package.NAME} 1 public widget city.public.testco.widget-reading.*".split() in [
            row.split()[:5] for row in listed.stdout.splitlines()
        ]
        async with aiohttp.ClientSession() as session:
            status, body = await http_get(session, f"{running.ops_url}/contracts")
        assert status == 200 and contract_package.NAME in body, body

        tail = await Background.start(
            "tail", contract_package.NAME, "-n", "1", "--json", cwd=running.cwd, env=running.env
        )
        try:
            await tail.wait_said(r"^tailing city\.public\.testco\.widget-reading\.\* on nats://")
            message = json.dumps(contract_package.EXAMPLE)
            published = await run_citybus(
                "publish", contract_package.NAME, message, cwd=running.cwd, env=running.env
            )
            tailed = await tail.finish()
        finally:
            await tail.kill()
        assert published.returncode == 0, published
        assert "stored" in published.stdout and "(CITY_PUBLIC_TESTCO #1)" in published.stdout, published
        record = json.loads(tailed.stdout)
        assert record["type"] == contract_package.TYPE
        assert record["data"] == contract_package.EXAMPLE
        assert "error" not in record
    finally:
        await running.stop()


async def test_a_second_up_on_the_same_data_dir_is_refused(up: Up) -> None:
    result = await run_citybus("up", cwd=up.cwd, env=up.env)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("citybus: error:")]
    assert len(error) == 1, result
    assert f"the data dir {up.data_dir} is in use by another nats-server (pid {up.server_pid}" in error[0]
    assert "--data-dir" in error[0]
    # The running instance is untouched and still findable.
    assert json.loads((up.data_dir / "instance.json").read_text()) == up.instance
    assert up.process.process.returncode is None


@pytest.mark.skipif(sys.platform != "linux", reason="looks for leftover processes in /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_a_signal_stops_up_and_the_server_it_started(tmp_path: Path, sig: signal.Signals) -> None:
    running = await start_up(tmp_path)
    try:
        server_pid = running.server_pid
        assert nats_servers_using(running.data_dir) == [server_pid]
        assert not lock_is_free(running.data_dir)
        result = await running.process.stop(sig)
    finally:
        await running.process.kill()
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr
    await wait_for(lambda: nats_servers_using(running.data_dir) == [])
    assert lock_is_free(running.data_dir)
    assert not (running.data_dir / "instance.json").exists()
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")]
    assert "nats-server stopped" in events[events.index("stopping") :]
    assert events[-1] == "stopped"


async def test_runtime_counts_what_is_published(tmp_path: Path, entity: str) -> None:
    """The in-process counterpart of ``citybus up``: its /metrics move when its bus publishes."""
    empty = tmp_path / "citybus.toml"
    empty.write_text("")
    config = load_config(
        empty,
        environ={
            "CITYBUS_SERVER_DATA_DIR": str(tmp_path / "data"),
            "CITYBUS_OPS_PORT": "0",
            # The runtime's own user publishes no data under access control: here it does.
            "CITYBUS_AUTH_MODE": "off",
        },
    )
    runtime = Runtime(config, logger=structlog.get_logger(), components=[])
    stop = asyncio.Event()
    published = (("contract", BEACH_TYPE),)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        try:
            async with asyncio.timeout(30):  # a bound against hangs; a failed start ends the group
                await runtime.ready.wait()
            assert runtime.bus is not None and runtime.ops is not None
            metrics_url = f"{runtime.ops.url}/metrics"
            async with aiohttp.ClientSession() as session:
                _, before = await http_get(session, metrics_url)
                await runtime.bus.publish_durable(beach(entity))
                await runtime.bus.publish(beach(entity))
                _, after = await http_get(session, metrics_url)
        finally:
            stop.set()
    assert metric_samples(before).get(("citybus_messages_published_total", published), 0.0) == 0.0
    assert metric_samples(after)[("citybus_messages_published_total", published)] == 2.0
    assert metric_samples(after)[("citybus_nats_connected", ())] == 1.0
    assert runtime.server is not None
    assert not runtime.server.running
    assert lock_is_free(tmp_path / "data")
    assert not (tmp_path / "data" / "instance.json").exists()


# -- tail against a server given with --nats ------------------------------------------------------


async def test_tail_prints_messages_and_marks_malformed_ones(
    bus: Bus, nats_server: EmbeddedServer, entity: str, tmp_path: Path
) -> None:
    subject = contract_subject(beach(entity))
    env = citybus_env(tmp_path / "data")
    common = (subject, "-n", "3", "--nats", nats_server.url)
    as_json = await Background.start("tail", *common, "--json", cwd=tmp_path, env=env)
    as_text = await Background.start("tail", *common, cwd=tmp_path, env=env)
    try:
        for tail in (as_json, as_text):
            await tail.wait_said(rf"^tailing {re.escape(subject)} on ")

        await bus.nc.publish(subject, b"no headers at all")  # a raw client, not a citybus one
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "bad-1",
            "ce-source": "/tests",
            "ce-type": BEACH_TYPE,
            "content-type": "application/json",
        }
        await bus.nc.publish(subject, b'{"site": "' + entity.encode() + b'"}', headers=headers)
        event_id = await bus.publish(beach(entity), provenance=Provenance.SENSOR)
        await bus.flush()

        json_result, text_result = await as_json.finish(), await as_text.finish()
    finally:
        await as_json.kill()
        await as_text.kill()

    assert json_result.returncode == 0, json_result
    malformed, invalid, good = (json.loads(line) for line in json_result.stdout.splitlines())
    assert malformed == {
        "subject": subject,
        "error": "the message has no headers: it is not a CloudEvents message",
        "raw": "no headers at all",
    }
    assert invalid["id"] == "bad-1"
    assert "missing required field `observed_at`" in invalid["error"]
    assert good["id"] == event_id
    assert good["type"] == BEACH_TYPE
    assert good["provenance"] == "sensor"
    assert good["source"] == "/tests"
    assert good["subject"] == subject
    assert good["data"] == json.loads(msgspec.json.encode(beach(entity)))
    assert "error" not in good

    assert text_result.returncode == 0, text_result
    lines = text_result.stdout.splitlines()
    assert len(lines) == 3, text_result
    assert (
        lines[0]
        == f"{subject}  !! the message has no headers: it is not a CloudEvents message  no headers at all"
    )
    assert "!! environment.beach-observation: Object missing required field `observed_at`" in lines[1]
    assert f" {subject} [sensor] " in lines[2]
    assert "!!" not in lines[2]
    assert msgspec.json.decode(lines[2].split("[sensor] ", 1)[1])["site"] == entity


# -- commands that need nothing running -----------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """One run of ``citybus`` in a directory of its own, holding ``files``."""

    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)


ONE_SHOT = {
    # contracts
    "contracts list": Invocation(("contracts", "list")),
    "contracts schema": Invocation(("contracts", "schema", BEACH)),
    "contracts schema nope": Invocation(("contracts", "schema", "nope")),
    "contracts asyncapi": Invocation(("contracts", "asyncapi")),
    "contracts check": Invocation(("contracts", "check")),
    "contracts snapshot": Invocation(("contracts", "snapshot")),
    "check missing snapshot": Invocation(("contracts", "check", "--snapshot", "missing.json")),
    "check not a snapshot": Invocation(
        ("contracts", "check", "--snapshot", "notes.json"), files={"notes.json": '{"todo": []}'}
    ),
    "snapshot to a missing dir": Invocation(("contracts", "snapshot", "-o", "no-such-dir/snapshot.json")),
    # invalid messages
    "publish a wrong type": Invocation(("publish", BEACH, reading(water_temperature="warm"))),
    "publish a missing field": Invocation(("publish", BEACH, reading(observed_at=None))),
    "publish not json": Invocation(("publish", BEACH, '{"site": ')),
    "publish nested too deeply": Invocation(
        ("publish", BEACH, "@deep.json"), files={"deep.json": "[" * 100_000}
    ),
    "publish an unknown field": Invocation(
        ("publish", BEACH, reading(water_temperature=None, water_temprature=15.7))
    ),
    "publish a misspelt contract": Invocation(("publish", "environment.beach-observatio", reading())),
    # a misspelt contract is no subject: it fails before anything connects
    "tail a misspelt contract": Invocation(("tail", "environment.beach-observatio")),
    "tail an event without its domain": Invocation(("tail", "beach-observation")),
    "tail a raw subject without up": Invocation(("tail", "v3.drammen.devices")),
    # nowhere to connect
    "publish without up": Invocation(("publish", BEACH, reading())),
    "tail without up": Invocation(("tail", BEACH)),
    "publish to a dead server": Invocation(("publish", BEACH, reading(), "--nats", DEAD_URL)),
    "tail a dead server": Invocation(("tail", BEACH, "--nats", DEAD_URL)),
    # configuration
    "unknown key in citybus.toml": Invocation(
        ("contracts", "list"), files={"citybus.toml": "[ops]\nprot = 1\n"}
    ),
    "bad environment variable": Invocation(("contracts", "list"), env={"CITYBUS_OPS_PORT": "http"}),
    "misspelt environment variable": Invocation(("contracts", "list"), env={"CITYBUS_OPS_PROT": "0"}),
    "missing --config": Invocation(("--config", "missing.toml", "contracts", "list")),
    "up with a wrong adapter section": Invocation(
        ("up",),
        files={"citybus.toml": '[adapters.trains]\nadapter = "entur-trains"\nstop_places = ["Drammen"]\n'},
    ),
    "replay a missing recording": Invocation(("replay", "missing.mcap")),
    "recording info of a missing file": Invocation(("recording", "info", "missing.mcap")),
}


@pytest.fixture(scope="module")
async def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Every :data:`ONE_SHOT` invocation, run concurrently (each pays Python's start-up once)."""
    base = tmp_path_factory.mktemp("one-shot")
    limit = asyncio.Semaphore((os.cpu_count() or 1) + 1)

    async def run(index: int, invocation: Invocation) -> Result:
        cwd = base / str(index)
        cwd.mkdir()
        for name, text in invocation.files.items():
            (cwd / name).write_text(text)
        async with limit:
            return await run_citybus(
                *invocation.args, cwd=cwd, env=citybus_env(base / "data", **invocation.env)
            )

    results = await asyncio.gather(*(run(i, inv) for i, inv in enumerate(ONE_SHOT.values())))
    return dict(zip(ONE_SHOT, results, strict=True))


def test_contracts_list_shows_every_contract(ran: dict[str, Result]) -> None:
    result = ran["contracts list"]
    assert result.returncode == 0, result
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["CONTRACT", "VERSION", "CLASS", "KEY", "SUBJECT", "DESCRIPTION"]
    assert [row.split()[0] for row in rows] == [c.__contract__.name for c in default_registry()]
    beach = "environment.beach-observation 1 public site city.public.environment.beach-observation.*"
    assert (beach + " " + BeachObservation.summary()).split() in [row.split() for row in rows]


def test_contracts_schema_prints_the_json_schema(ran: dict[str, Result]) -> None:
    result = ran["contracts schema"]
    assert result.returncode == 0, result
    schema = json.loads(result.stdout)
    assert schema["title"] == BEACH
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "water_temperature" in schema["properties"]


def test_contracts_schema_of_an_unknown_contract_lists_the_known_ones(ran: dict[str, Result]) -> None:
    line = assert_one_line_error(ran["contracts schema nope"], 1, "unknown contract nope", "known contracts:")
    for cls in default_registry():
        assert cls.__contract__.name in line


def test_contracts_asyncapi_describes_every_subject(ran: dict[str, Result]) -> None:
    result = ran["contracts asyncapi"]
    assert result.returncode == 0, result
    document = json.loads(result.stdout)
    assert document["asyncapi"] == "3.0.0"
    channels = document["channels"]
    addresses = sorted(str(channel["address"]) for channel in channels.values())
    expected = sorted(
        # a request on its rpc subject; a reply to the requester's inbox, known only at run time
        "None"
        if c.__contract__.answers
        else f"city.{c.__contract__.classification.value}.{'rpc.' if c.__contract__.reply else ''}"
        f"{c.__contract__.domain}.{c.__contract__.event}.{{entity}}"
        for c in default_registry()
    )
    assert addresses == expected
    ask = document["operations"]["send_mobility_journey-request_v1"]
    assert ask["reply"]["channel"] == {"$ref": "#/channels/mobility_journey-plan_v1"}
    headers = document["components"]["schemas"]["CloudEventsHeaders"]
    assert {"ce-specversion", "ce-id", "ce-source", "ce-type"} <= set(headers["required"])
    assert headers["properties"]["ce-specversion"]["const"] == "1.0"
    for message in document["components"]["messages"].values():
        assert message["headers"] == {"$ref": "#/components/schemas/CloudEventsHeaders"}


def test_contracts_check_passes_against_the_shipped_snapshot(ran: dict[str, Result]) -> None:
    result = ran["contracts check"]
    assert result.returncode == 0, result
    assert result.stdout == "contracts compatible with the stored snapshot\n"


def test_contracts_snapshot_prints_the_shipped_snapshot(ran: dict[str, Result]) -> None:
    result = ran["contracts snapshot"]
    assert result.returncode == 0, result
    assert result.stdout == dump_snapshot(snapshot(default_registry()))
    # the shipped file as a contract's author wrote it, not as this msgspec prints each schema
    assert recorded(json.loads(result.stdout)) == recorded(load_snapshot())


async def test_contracts_check_names_a_removed_field(ran: dict[str, Result], tmp_path: Path) -> None:
    # A stored snapshot in which the field had another name: now it looks removed (renamed).
    stored = json.loads(ran["contracts snapshot"].stdout)
    fields = stored["contracts"][f"{BEACH}@1"]["fields"]
    fields["water_temp"] = fields.pop("water_temperature")
    (tmp_path / "old.json").write_text(json.dumps(stored))
    result = await run_citybus(
        "contracts", "check", "--snapshot", "old.json", cwd=tmp_path, env=citybus_env(tmp_path / "data")
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert "2 breaking change(s) kept their contract version" in result.stderr
    assert f"{BEACH} v1: field 'water_temp' was removed" in result.stderr
    assert f"{BEACH} v1: new field 'water_temperature' is required" in result.stderr
    assert "new major version" in result.stderr


@pytest.mark.parametrize(
    ("case", "code", "phrases"),
    [
        ("publish a wrong type", 1, ["not a valid environment.beach-observation", "`$.water_temperature`"]),
        ("publish a missing field", 1, ["missing required field `observed_at`"]),
        ("publish not json", 1, ["not valid JSON"]),
        ("publish nested too deeply", 1, ["nested too deeply to decode as JSON"]),
        (
            "publish an unknown field",
            1,
            [
                "unknown field $.water_temprature in environment.beach-observation",
                "fields are site, observed_at, water_temperature, air_temperature",
            ],
        ),
        (
            "publish a misspelt contract",
            1,
            ["unknown contract environment.beach-observatio; did you mean environment.beach-observation?"],
        ),
        (
            "tail a misspelt contract",
            1,
            ["unknown contract environment.beach-observatio; did you mean environment.beach-observation?"],
        ),
        ("tail an event without its domain", 1, ["did you mean environment.beach-observation?"]),
        ("tail a raw subject without up", 1, ["no running `citybus up` found"]),
        ("publish without up", 1, ["no running `citybus up` found", "--nats URL"]),
        ("tail without up", 1, ["no running `citybus up` found", "--nats URL"]),
        ("publish to a dead server", 1, [f"no NATS server answered at {DEAD_URL}"]),
        ("tail a dead server", 1, [f"no NATS server answered at {DEAD_URL}"]),
        ("check missing snapshot", 1, ["cannot read missing.json"]),
        ("check not a snapshot", 1, ["notes.json is not a citybus contracts snapshot"]),
        ("snapshot to a missing dir", 1, ["cannot write no-such-dir/snapshot.json"]),
        (
            "unknown key in citybus.toml",
            2,
            ["configuration error", "unknown key ops.prot", "allowed keys in [ops]: enabled, host, port"],
        ),
        ("bad environment variable", 2, ["configuration error", "CITYBUS_OPS_PORT", "ops.port = 'http'"]),
        (
            "misspelt environment variable",
            2,
            [
                "configuration error",
                "environment variable CITYBUS_OPS_PROT: not a citybus setting",
                "did you mean CITYBUS_OPS_PORT?",
                "allowed in [ops]: CITYBUS_OPS_ENABLED, CITYBUS_OPS_HOST, CITYBUS_OPS_PORT",
            ],
        ),
        ("missing --config", 2, ["configuration error", "config file missing.toml not found"]),
        (
            "up with a wrong adapter section",
            2,
            ["configuration error", "[adapters.trains] (entur-trains)", "'Drammen' is not a stop place id"],
        ),
        ("replay a missing recording", 2, ["configuration error", "no recording at missing.mcap"]),
        ("recording info of a missing file", 1, ["no recording at missing.mcap: check the path"]),
    ],
)
def test_a_mistake_ends_in_one_line_and_no_traceback(
    ran: dict[str, Result], case: str, code: int, phrases: list[str]
) -> None:
    result = ran[case]
    line = assert_one_line_error(result, code, *phrases)
    assert line.startswith("citybus: ")
    assert result.stdout == ""
