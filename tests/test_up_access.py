"""``citybus up`` under access control, end to end: what the broker enforces on a running instance.

One real ``citybus up`` (a child process, as a user starts it) runs the sandbox's replay and a
Vicotee beach adapter in ``CITY`` fed by the embedded server's MQTT listener. Then, with the real
commands: each component is connected as its own user (the server's own connection list, read by
the system user), an MQTT network server logs in with its password and its uplinks become beach
observations while it cannot publish into ``city.``, client commands log in as ``internal``,
``public`` or a pilot, a pilot added while citybus runs publishes its contract in the sandbox and,
revoked, is disconnected and refused on reconnect — and no secret appears in any output or log.
TLS on the client port is checked with a self-signed pair made here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import nats
import nats.errors
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bus.access.keys import CredentialStore
from bus.access.login import client_login, reload_server
from bus.config import load_config
from bus.runtime import Runtime
from tests.conftest import wait_for
from tests.test_cli import (
    Background,
    Result,
    assert_one_line_error,
    citybus_env,
    run_citybus,
    server_connections,
)
from tests.test_vicotee_adapter import beach_frame, tts_v3

pytestmark = pytest.mark.slow

UPLINK_TOPIC = "v3/drammen-beach@drammen/devices/vicotee-bragernes-1/up"
CONFIG = """\
[server]
mqtt = true

[auth]
mqtt_users = ["network-server"]

[adapters.sandbox]
adapter = "sandbox-replay"

[adapters.beach]
adapter = "vicotee-beach"

[adapters.beach.devices.vicotee-bragernes-1]
site = "bragernes-strand"
water_slot = 1
air_slot = 0
"""


@dataclass
class Running:
    """A running ``citybus up`` and everything the test saw it and the commands say."""

    process: Background
    data_dir: Path
    cwd: Path
    env: dict[str, str]
    instance: dict[str, Any]
    outputs: list[str] = field(default_factory=list)

    @property
    def credentials(self) -> Path:
        return self.data_dir / "credentials"

    async def citybus(self, *args: str) -> Result:
        result = await run_citybus(*args, cwd=self.cwd, env=self.env)
        self.outputs += [result.stdout, result.stderr]
        return result


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    base = tmp_path_factory.mktemp("up-access")
    data_dir, cwd = base / "data", base / "cwd"
    cwd.mkdir()
    (cwd / "citybus.toml").write_text(CONFIG)
    env = citybus_env(data_dir, CITYBUS_LOG_LEVEL="debug")
    process = await Background.start("up", cwd=cwd, env=env)
    try:
        await process.wait_said(r"^citybus is up: NATS at nats://\S+$")
        instance = json.loads((data_dir / "instance.json").read_text())
        yield Running(process, data_dir, cwd, env, instance)
    finally:
        try:
            await process.stop(signal.SIGINT)
        finally:
            await process.kill()


def seed_options(path: Path, user: str) -> dict[str, Any]:
    return {"nkeys_seed": str(path), "inbox_prefix": f"_INBOX.{user}"}


async def connections(up: Running) -> set[tuple[str, str]]:
    """``(account, user)`` of every client connection, as the server itself lists them."""
    store = CredentialStore(up.credentials)
    names = {i.public_key: (i.account, i.user) for i in store.list() if i.revoked_at is None}
    return await server_connections(up.instance["nats_url"], up.credentials / "SYS" / "system.nk", names)


# -- who is connected as whom --------------------------------------------------------------------


async def test_each_component_connects_as_its_own_user(up: Running) -> None:
    assert up.instance["auth"] == {"credentials": str(up.credentials), "account": "CITY"}
    seen = await connections(up)
    # The runtime's own user in each account, the replay in SANDBOX, the beach adapter in CITY
    # (and this test's system user, listing them).
    assert {("CITY", "service"), ("SANDBOX", "service"), ("SANDBOX", "sandbox"), ("CITY", "beach")} <= seen
    assert all(account != "?" for account, _ in seen), seen  # nobody anonymous


async def test_the_server_refuses_anonymous_clients(up: Running) -> None:
    with pytest.raises((nats.errors.Error, OSError, TimeoutError)):
        await nats.connect(up.instance["nats_url"], allow_reconnect=False, connect_timeout=2)


# -- MQTT: a network server's uplinks ------------------------------------------------------------


async def test_an_mqtt_user_sends_uplinks_and_nothing_else(up: Running) -> None:
    password = (up.credentials / "CITY" / "network-server.password").read_text().strip()  # the line itself
    port = int(up.instance["mqtt_url"].rsplit(":", 1)[1])
    tail = await Background.start("tail", "city.public.>", "-n", "1", "--json", cwd=up.cwd, env=up.env)
    try:
        await tail.wait_said(r"^tailing city\.public\.> on nats://\S+ as CITY/internal")
        async with aiomqtt.Client(
            "127.0.0.1", port, identifier="tts-drammen", username="network-server", password=password
        ) as client:
            # Not an uplink topic: the broker drops it (the MQTT user may publish uplinks only).
            await client.publish("city/public/environment/beach-observation/forged", b"{}", qos=0)
            await client.publish(UPLINK_TOPIC, tts_v3(beach_frame()), qos=1)
        tailed = await tail.finish()
    finally:
        await tail.kill()
    up.outputs += [tailed.stdout, tailed.stderr]
    record = json.loads(tailed.stdout)
    assert record["subject"] == "city.public.environment.beach-observation.bragernes-strand"
    assert record["data"]["water_temperature"] == pytest.approx(15.7, abs=0.1)

    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", port, username="network-server", password="wrong"):
            pass


# -- client commands log in ------------------------------------------------------------------------


async def test_the_public_user_cannot_read_personal_data(up: Running) -> None:
    result = await up.citybus("tail", "city.personal.>", "--user", "public", "-n", "1")
    assert result.returncode != 0, result
    assert "refused city.personal.> to CITY/public" in result.stderr, result
    assert "Traceback" not in result.stderr


async def test_publishing_needs_a_user_that_produces_the_contract(up: Running) -> None:
    reading = json.dumps(
        {"site": "blektjern", "observed_at": "2018-08-29T10:00:00+02:00", "water_temperature": 17.5}
    )
    result = await up.citybus("publish", "environment.beach-observation", reading)
    assert result.returncode != 0 and "--user" in result.stderr, result
    # The runtime's own user provisions streams; it publishes no data.
    refused = await up.citybus(
        "publish", "environment.beach-observation", reading, "--user", "service", "--timeout", "3"
    )
    assert refused.returncode != 0, refused
    assert "the broker refused city.public.environment.beach-observation.blektjern" in refused.stderr


# -- a pilot, added and revoked while citybus runs ------------------------------------------------


async def test_a_pilot_added_while_up_publishes_in_the_sandbox_until_revoked(
    up: Running, tmp_path: Path
) -> None:
    added = await up.citybus("auth", "add-pilot", "acme", "--produces", "environment.beach-observation")
    assert added.returncode == 0, added
    assert "reloaded the running citybus up's nats-server" in added.stdout
    seed = up.credentials / "SANDBOX" / "acme.nk"
    kept = tmp_path / "acme.nk"  # what a pilot that kept its file after the revocation still has
    shutil.copy(seed, kept)

    # The pilot publishes its contract in the sandbox; an internal reader of the sandbox sees it.
    subject = "city.public.environment.beach-observation.acme-test-site"
    tail = await Background.start(
        "tail", subject, "-n", "1", "--json", "--account", "sandbox", cwd=up.cwd, env=up.env
    )
    try:
        await tail.wait_said(r"^tailing \S+ on nats://\S+ as SANDBOX/internal")
        reading = json.dumps(
            {"site": "acme-test-site", "observed_at": "2018-08-29T10:00:00+02:00", "water_temperature": 17.5}
        )
        # --account city does not move a SANDBOX key to CITY: the output says where it went.
        published = await up.citybus(
            "publish", "environment.beach-observation", reading, "--nkey", str(seed), "--account", "city"
        )
        tailed = await tail.finish()
    finally:
        await tail.kill()
    up.outputs += [tailed.stdout, tailed.stderr]
    assert published.returncode == 0, published
    assert re.match(
        rf"^stored [0-9a-f]+ on {re.escape(subject)} \(in SANDBOX, CITY_PUBLIC_ENVIRONMENT #\d+\)",
        published.stdout,
    )
    assert json.loads(tailed.stdout)["data"]["site"] == "acme-test-site"

    # A pilot lives in the sandbox: production has no such user.
    production = await up.citybus(
        "publish", "environment.beach-observation", reading, "--user", "acme", "--account", "city"
    )
    assert production.returncode != 0 and "CITY/acme has no credentials" in production.stderr, production

    # Connected, then revoked: the reload disconnects it, and its kept seed no longer logs in.
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    pilot = await nats.connect(
        up.instance["nats_url"],
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        error_cb=on_error,
        **seed_options(kept, "acme"),
    )
    try:
        assert ("SANDBOX", "acme") in await connections(up)
        revoked = await up.citybus("auth", "revoke", "acme")
        assert revoked.returncode == 0, revoked
        assert "reloaded the running citybus up's nats-server" in revoked.stdout
        await wait_for(lambda: any("authorization" in str(e).lower() for e in errors), timeout=15)
        assert not pilot.is_connected
    finally:
        await pilot.close()
    with pytest.raises(nats.errors.Error, match="(?i)authorization"):
        await nats.connect(
            up.instance["nats_url"], allow_reconnect=False, connect_timeout=2, **seed_options(kept, "acme")
        )
    assert ("SANDBOX", "acme") not in await connections(up)


# -- citybus replay against the running instance ----------------------------------------------------


async def test_citybus_replay_runs_against_the_running_instance_as_the_replay_user(up: Running) -> None:
    """`citybus replay` logs in as SANDBOX/replay, which `citybus up` issues (sandbox/access.py);
    and --duration is a number of seconds (it was passed on as text and always refused)."""
    result = await up.citybus("replay", "--fast", "--duration", "600", "--log-level", "info")
    assert result.returncode == 0, result
    assert "running adapter sandbox-replay as instance replay" in result.stderr, result
    assert "no credentials" not in result.stderr and "Traceback" not in result.stderr, result
    assert re.search(r"SANDBOX/replay", result.stdout + result.stderr), result


# -- citybus auth from another directory ---------------------------------------------------------


async def server_config_loads(up: Running) -> str:
    """When the server last (re)loaded its configuration, as it says itself."""
    system = up.credentials / "SYS" / "system.nk"
    nc = await nats.connect(up.instance["nats_url"], **seed_options(system, "system"))
    try:
        reply = await nc.request("$SYS.REQ.SERVER.PING.VARZ", b"{}", timeout=5)
    finally:
        await nc.close()
    return str(json.loads(reply.data)["data"]["config_load_time"])


async def test_auth_run_elsewhere_acts_on_the_running_instance_and_drops_no_user(
    up: Running, tmp_path: Path
) -> None:
    """Run from a directory without citybus.toml, `citybus auth generate` used to rebuild
    accounts.conf from the defaults: the beach adapter and the MQTT network server were dropped."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = await server_config_loads(up)
    result = await run_citybus("auth", "generate", cwd=elsewhere, env=up.env)
    up.outputs += [result.stdout, result.stderr]
    assert result.returncode == 0, result
    assert "reloaded the running citybus up's nats-server" in result.stdout, result
    assert "no longer configured" not in result.stdout, result
    accounts = (up.credentials / "accounts.conf").read_text()
    for user in ("beach (adapter)", "sandbox (adapter)", "network-server (mqtt)"):
        assert f"# {user}\n" in accounts, user
    # Once the server has applied the reload, every component is still connected as its user.
    async with asyncio.timeout(15):
        while await server_config_loads(up) == before:  # noqa: ASYNC110 - the server's state, polled
            await asyncio.sleep(0.1)
    seen = await connections(up)
    assert {("CITY", "service"), ("SANDBOX", "service"), ("SANDBOX", "sandbox"), ("CITY", "beach")} <= seen
    assert not up.process.said("(?i)authorization violation")
    assert up.instance["config_file"] == str(up.cwd / "citybus.toml")


async def test_auth_with_another_configuration_is_refused_in_one_line(up: Running, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "citybus.toml").write_text('[adapters.sandbox]\nadapter = "sandbox-replay"\n')
    accounts = (up.credentials / "accounts.conf").read_bytes()
    result = await run_citybus(
        "auth", "add-pilot", "elsewhere", "--produces", "environment.beach-observation", cwd=other, env=up.env
    )
    up.outputs += [result.stdout, result.stderr]
    line = assert_one_line_error(
        result, 1, "does not match the configuration of the running citybus up", "drop CITY/beach"
    )
    assert "CITY/network-server" in line and f"--config {up.cwd / 'citybus.toml'}" in line
    assert (up.credentials / "accounts.conf").read_bytes() == accounts
    assert not (up.credentials / "SANDBOX" / "elsewhere.nk").exists()


async def test_a_pilot_asking_for_the_sandbox_status_is_told_it_may_not(up: Running) -> None:
    added = await up.citybus("auth", "add-pilot", "curious", "--produces", "environment.beach-observation")
    assert added.returncode == 0, added
    seed = up.credentials / "SANDBOX" / "curious.nk"
    result = await up.citybus("sandbox", "status", "--nkey", str(seed))
    line = assert_one_line_error(result, 1, "the broker refused citybus.control.replay.sandbox.status")
    assert "SANDBOX/curious" in line and "no reply" not in line, line
    revoked = await up.citybus("auth", "revoke", "curious")
    assert revoked.returncode == 0, revoked


# -- secrets ----------------------------------------------------------------------------------------


async def test_no_secret_appears_in_any_output_or_log(up: Running) -> None:
    shown = await up.citybus("auth", "show")
    assert shown.returncode == 0, shown
    assert "CITY/network-server: issued, an MQTT password in " in shown.stdout
    assert re.search(r"^CITY\s+network-server\s+mqtt\s+publish\s+v3\.\*\.devices\.\*\.up", shown.stdout, re.M)
    secrets = [p.read_text().strip() for p in up.credentials.glob("*/*.nk")]
    secrets += [p.read_text().strip() for p in up.credentials.glob("*/*.password")]
    assert len(secrets) >= 10
    texts = [*up.outputs, up.process.text]
    texts += [p.read_text(errors="replace") for p in up.data_dir.glob("nats-server.log*")]
    texts.append((up.data_dir / "nats-server.conf").read_text())
    texts.append((up.credentials / "accounts.conf").read_text())
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert not re.search(r"\bSU[A-Z2-7]{56}\b", text)  # no user seed at all, not even a revoked one


# -- TLS on the client port ------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, made here for this test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "citybus test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


async def test_tls_on_the_client_port(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    toml = tmp_path / "citybus.toml"
    toml.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        '[ops]\nenabled = false\n[adapters.sandbox]\nadapter = "sandbox-replay"\nenabled = false\n'
    )
    config = load_config(toml, environ={})
    runtime = Runtime(config, logger=structlog.get_logger(), components=[])
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        try:
            async with asyncio.timeout(30):
                await runtime.ready.wait()
            url = runtime.nats_url
            assert url.startswith("tls://127.0.0.1:")
            # A client command finds the certificate to trust in instance.json, and logs in.
            login = client_login(config, user="internal")
            assert login.user == "CITY/internal" and isinstance(login.options["tls"], ssl.SSLContext)
            nc = await nats.connect(login.url, allow_reconnect=False, **login.options)
            assert nc.is_connected
            await nc.close()
            # Without TLS, or without trusting the certificate, nobody gets in.
            plain = url.replace("tls://", "nats://")
            with pytest.raises((nats.errors.Error, OSError, TimeoutError, ssl.SSLError)):
                await nats.connect(plain, allow_reconnect=False, connect_timeout=2)
            untrusted = {**login.options, "tls": ssl.create_default_context()}
            with pytest.raises((nats.errors.Error, OSError, TimeoutError, ssl.SSLError)):
                await nats.connect(url, allow_reconnect=False, connect_timeout=2, **untrusted)
        finally:
            stop.set()


def test_tls_needs_both_files(tmp_path: Path) -> None:
    toml = tmp_path / "citybus.toml"
    toml.write_text(f'[server]\ntls_cert = "{tmp_path / "cert.pem"}"\n')
    with pytest.raises(Exception, match="server.tls_cert and server.tls_key go together"):
        load_config(toml, environ={})


def test_a_reload_never_signals_a_process_that_is_not_this_data_dirs_server(tmp_path: Path) -> None:
    """The pid in instance.json may have been reused by the time `citybus auth` reloads: SIGHUP would
    end most programs (here: this test process itself)."""
    config = load_config(environ={"CITYBUS_SERVER_DATA_DIR": str(tmp_path)})
    (tmp_path / "instance.json").write_text(
        json.dumps({"pid": os.getpid(), "nats_url": "nats://127.0.0.1:1", "server_pid": os.getpid()})
    )
    assert reload_server(config) is None
