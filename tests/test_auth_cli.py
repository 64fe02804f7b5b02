"""``citybus auth``: credentials and the server's configuration from the configured adapters.

The commands run in-process through ``bus.cli.main`` on a ``citybus.toml`` written here, with a
credentials directory of the test's own. Every command's standard output and standard error (logs
included) is searched for every seed the directory has held, before and after the command; a
pilot added by the CLI connects to a real nats-server started with the written configuration.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import pytest
import structlog
from conftest import wait_for

from adapters import Adapter, Context
from adapters.access import configured_instances, declarations
from adapters.mqtt.topics import filter_to_subjects
from adapters.vicotee import DEFAULT_SUBJECTS
from bus.access.guests import load_guests
from bus.cli import main
from bus.config import load_config
from bus.server import EmbeddedServer, find_nats_server
from bus.subjects import contract_filter
from contracts import (
    AirQualityObserved,
    BeachObservation,
    DeviceStatus,
    TrainCall,
    VolunteerSignup,
)
from sandbox.access import PILOTS

pytestmark = pytest.mark.slow

CITY_TOML = """\
[adapters.beach]
adapter = "vicotee-beach"

[adapters.sandbox]
adapter = "sandbox-replay"

[adapters.beach-replayed]
adapter = "vicotee-beach"
clock = "sandbox"
subjects = ["replayed.v3.*.devices.*.up"]

[adapters.archive]
adapter = "postgres-archive"
contracts = ["community.volunteer-signup", "environment.beach-observation"]

[adapters.mqtt-city]
adapter = "mqtt-bridge"
inbound = [
    { topic = "v3/+/devices/+/up", subject_prefix = "ttn" },
    { topic = "sensors/#", subject_prefix = "mqtt" },
]
outbound = [{ contract = "environment.beach-observation", topic = "drammen/beach/{entity}" }]

[adapters.bikes]
adapter = "gbfs-bikes"
enabled = false
"""


class SignupStats(Adapter):  # type: ignore[type-arg]
    """Counts volunteer signups per site and publishes them only above a threshold (a declassifier)."""

    name = "signup-stats"
    consumes = (VolunteerSignup,)
    produces = (BeachObservation,)
    declassifier = True

    async def run(self, ctx: Context) -> None:
        ctx.ready()
        await ctx.wait_stopped()


@dataclass
class Cli:
    """Runs ``citybus`` commands and checks that no seed ever reaches their output."""

    capsys: pytest.CaptureFixture[str]
    config: Path
    directory: Path
    seeds: set[str] = field(default_factory=set)
    outputs: list[str] = field(default_factory=list)

    def collect_seeds(self) -> None:
        for path in self.directory.rglob("*.nk"):
            self.seeds.add(path.read_text().strip())

    def __call__(self, *args: str, directory: bool = True) -> tuple[int, str, str]:
        self.collect_seeds()
        self.capsys.readouterr()
        extra = ["--dir", str(self.directory)] if directory else []
        status = main(["--config", str(self.config), "auth", *args, *extra])
        captured = self.capsys.readouterr()
        self.collect_seeds()
        self.outputs += [captured.out, captured.err]
        leaked = [s for s in self.seeds if s in captured.out or s in captured.err]
        assert not leaked, f"`citybus auth {' '.join(args)}` printed a seed"
        return status, captured.out, captured.err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    config = tmp_path / "citybus.toml"
    config.write_text(CITY_TOML)
    saved = structlog.get_config()  # the CLI configures logging for the process
    yield Cli(capsys, config, tmp_path / "credentials")
    structlog.configure(**saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- declarations from the configuration ----------------------------------------------------------


def test_declarations_follow_the_configured_instances(cli: Cli) -> None:
    instances, problems = configured_instances(load_config(cli.config))
    assert not problems
    split = declarations(instances)
    city = {d.name: d for d in split.city}
    sandbox = {d.name: d for d in split.sandbox}
    # The disabled instance gets no user; the replay and what runs on its clock are in SANDBOX.
    assert list(city) == ["beach", "archive", "mqtt-city"]
    assert list(sandbox) == ["sandbox", "beach-replayed"]

    assert city["beach"].raw_subscribe == DEFAULT_SUBJECTS
    assert city["beach"].produces == (BeachObservation,)
    assert (city["beach"].durable, city["beach"].control, city["beach"].raw_publish) == (False, None, ())
    assert sandbox["beach-replayed"].raw_subscribe == ("replayed.v3.*.devices.*.up",)

    assert city["archive"].consumes == (VolunteerSignup, BeachObservation)
    assert city["archive"].durable and city["archive"].produces == ()

    bridge = city["mqtt-city"]
    assert bridge.raw_publish == ("ttn.v3.*.devices.*.up", "mqtt.sensors.>", "mqtt.sensors")
    assert bridge.consumes == (BeachObservation,) and bridge.durable and bridge.raw_subscribe == ()

    replay = sandbox["sandbox"]
    assert replay.control == "replay" and not replay.durable
    # The shipped Drammen day holds trains and beach readings, among others.
    assert BeachObservation in replay.produces and TrainCall in replay.produces


def test_without_adapter_sections_the_defaults_run_in_the_sandbox(tmp_path: Path) -> None:
    empty = tmp_path / "citybus.toml"
    empty.write_text("")
    instances, _ = configured_instances(load_config(empty))
    split = declarations(instances)
    assert split.city == ()
    # the replay, the gateway serving what it replays (reading nothing as itself), the journey planner,
    # the privacy service, the statistics service, the volunteer platform
    assert sorted((d.name, d.control) for d in split.sandbox) == [
        ("gateway", None),
        ("journey-planner", None),
        ("privacy", None),
        ("sandbox", "replay"),
        ("statistics", None),
        ("volunteer-platform", None),
    ]
    gateway = next(d for d in split.sandbox if d.name == "gateway")
    assert gateway.consumes == () and gateway.produces == ()


@pytest.mark.parametrize(
    ("topic_filter", "prefix", "patterns"),
    [
        ("v3/+/devices/+/up", "ttn", ("ttn.v3.*.devices.*.up",)),
        ("+/devices/+/up", "", ("*.devices.*.up",)),
        ("sensors/#", "mqtt", ("mqtt.sensors.>", "mqtt.sensors")),  # MQTT's a/# also matches a
        ("#", "mqtt", ("mqtt.>", "mqtt")),
        ("#", "", (">",)),
        ("spBv1.0/plant one/+", "sp", ("sp.spBv1//0.plant%20one.*",)),  # escaped as the bridge maps topics
        ("a//b", "x", ("x.a./.b",)),
    ],
)
def test_mqtt_filters_map_to_the_subjects_their_topics_arrive_on(
    topic_filter: str, prefix: str, patterns: tuple[str, ...]
) -> None:
    assert filter_to_subjects(topic_filter, prefix) == patterns


# -- generate ---------------------------------------------------------------------------------------


def test_generate_issues_private_credentials_once_and_a_config_nats_server_accepts(cli: Cli) -> None:
    status, out, _ = cli("generate")
    assert status == 0
    d = cli.directory
    conf = d / "accounts.conf"
    assert f"wrote {conf}" in out
    assert "credentials in" in out and "17 issued, 0 kept" in out
    users = [
        *(
            f"CITY/{u}"
            for u in (
                *("service", "provisioner", "operator", "internal", "public"),
                *("beach", "archive", "mqtt-city"),
            )
        ),
        *(
            f"SANDBOX/{u}"
            for u in (
                *("service", "provisioner", "operator", "internal", "public"),
                *("sandbox", "beach-replayed", "replay"),  # replay: `citybus replay`'s (sandbox/access.py)
            )
        ),
        "SYS/system",
    ]
    seeds = sorted(str(p.relative_to(d)) for p in d.rglob("*.nk"))
    assert seeds == sorted(f"{u}.nk" for u in users)
    assert mode(d) == 0o700
    assert {mode(d / a) for a in ("CITY", "SANDBOX", "SYS")} == {0o700}
    assert {mode(p) for p in d.rglob("*.nk")} == {0o600}
    assert mode(conf) == 0o600
    text = conf.read_text()
    assert text.count("nkey:") == len(users)
    assert "bikes" not in text  # the disabled instance has no user

    # No citybus up uses the directory: the command says it reloaded nothing.
    assert "did not reload any server (no citybus up with an embedded server uses" in out

    # How to use it: an include relative to the including file (nats-server ignores a leading /).
    server_conf = cli.directory.parent / "nats-server.conf"
    assert f"in {server_conf}:" in out and 'include "credentials/accounts.conf"' in out
    server_conf.write_text(f'jetstream {{ store_dir: "{cli.directory.parent / "js"}" }}\n')
    with server_conf.open("a") as f:
        f.write('include "credentials/accounts.conf"\n')
    checked = subprocess.run(
        [str(find_nats_server()), "-t", "-c", str(server_conf)], capture_output=True, text=True, timeout=10
    )
    assert checked.returncode == 0, checked.stderr
    assert "is valid" in checked.stdout + checked.stderr

    # Again: every key is kept, and the configuration is the same.
    keys = {p: p.read_text() for p in d.rglob("*.nk")}
    status, out, _ = cli("generate", "--server-config", str(cli.directory.parent / "etc" / "nats.conf"))
    assert status == 0 and "0 issued, 17 kept" in out
    assert 'include "../credentials/accounts.conf"' in out
    assert {p: p.read_text() for p in d.rglob("*.nk")} == keys
    assert conf.read_text() == text


def test_the_default_directory_is_beside_the_servers_data(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYBUS_SERVER_DATA_DIR", str(tmp_path / "nats"))
    status, out, _ = cli("generate", directory=False)
    assert status == 0
    default = tmp_path / "nats" / "credentials"
    assert f"wrote {default / 'accounts.conf'}" in out
    assert mode(default) == 0o700 and (default / "SANDBOX" / "sandbox.nk").is_file()
    # The embedded server's configuration lives in the data dir: its include is one directory down.
    assert 'include "credentials/accounts.conf"' in out


def test_generate_keeps_revoked_users_out(cli: Cli) -> None:
    cli("generate")
    status, out, err = cli("revoke", "beach")
    assert status == 0
    assert "CITY/beach revoked at" in out and "SIGHUP" in out
    assert f"delete {cli.directory / 'CITY' / 'beach.revoked'}" in out
    assert "credentials revoked" in err  # the audit log line, with the public key only
    status, out, _ = cli("generate")
    assert status == 0 and "0 issued, 16 kept" in out and "left out, revoked: CITY/beach" in out
    assert not (cli.directory / "CITY" / "beach.nk").exists()
    assert (
        "# beach (adapter): no credentials, cannot connect" in (cli.directory / "accounts.conf").read_text()
    )


# -- pilots against a real nats-server --------------------------------------------------------------


async def test_a_pilot_added_by_the_cli_publishes_its_contract_only_until_revoked(cli: Cli) -> None:
    assert cli("generate")[0] == 0
    status, out, _ = cli("add-pilot", "acme", "--produces", "environment.beach-observation")
    assert status == 0
    seed_file = cli.directory / "SANDBOX" / "acme.nk"
    assert f"seed file: {seed_file} (0600)" in out
    assert "inbox prefix _INBOX.acme" in out
    assert "publishes  city.public.environment.beach-observation.*" in out
    assert mode(seed_file) == 0o600
    [pilot] = load_guests(cli.directory, PILOTS)
    assert (pilot.name, pilot.produces) == ("acme", (BeachObservation,))
    assert 'produces = ["environment.beach-observation@1"]' in (cli.directory / "pilots.toml").read_text()
    seed = seed_file.read_text().strip()

    data_dir = cli.directory.parent / "nats"
    # The embedded server's nats-server.conf is in data_dir; nats-server reads includes relative to it.
    include = 'include "../credentials/accounts.conf"'
    async with EmbeddedServer(data_dir=data_dir, extra_config=include) as server:
        errors: list[str] = []
        copy_errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        async def on_copy_error(exc: Exception) -> None:
            copy_errors.append(str(exc))

        # Connected as add-pilot says: its seed file and its inbox prefix.
        acme = await nats.connect(
            server.url,
            nkeys_seed=str(seed_file),
            inbox_prefix="_INBOX.acme",
            error_cb=on_error,
            max_reconnect_attempts=3,
            reconnect_time_wait=0.05,
        )
        # The same pilot with a copy of its seed, which keeps trying to reconnect after the revocation.
        copy = await nats.connect(
            server.url,
            nkeys_seed_str=seed,
            inbox_prefix="_INBOX.acme",
            error_cb=on_copy_error,
            max_reconnect_attempts=3,
            reconnect_time_wait=0.05,
        )
        witness = await nats.connect(
            server.url,
            nkeys_seed=str(cli.directory / "SANDBOX" / "public.nk"),
            inbox_prefix="_INBOX.public",
        )
        try:
            seen = await witness.subscribe("city.public.>")
            await witness.flush()
            beach = contract_filter(BeachObservation, "acme-buoy")
            air = contract_filter(AirQualityObserved, "acme-buoy")
            device = contract_filter(DeviceStatus, "acme-buoy")
            for subject in (air, device, beach):
                await acme.publish(subject, b"{}")
            await acme.flush()
            await acme.flush()  # nats-py can send the PING ahead of buffered commands
            got = await seen.next_msg(timeout=5)
            assert got.subject == beach  # the undeclared ones, sent first, never arrived
            await wait_for(lambda: any(f'publish to "{air}"' in e for e in errors))
            await wait_for(lambda: any(f'publish to "{device}"' in e for e in errors))

            status, out, _ = cli("revoke", "acme")
            assert status == 0 and "SANDBOX/acme revoked at" in out
            assert "SIGHUP" in out and "citybus auth add-pilot acme" in out
            assert load_guests(cli.directory, PILOTS) == []
            assert not seed_file.exists()
            assert copy.is_connected  # until the server reloads its configuration
            assert server.pid is not None
            os.kill(server.pid, signal.SIGHUP)
            await wait_for(lambda: copy.is_closed and acme.is_closed)
            assert any("authorization violation" in e.lower() for e in copy_errors), copy_errors
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await nats.connect(server.url, nkeys_seed_str=seed, allow_reconnect=False)
            assert witness.is_connected  # the others stay
        finally:
            for nc in (acme, copy, witness):
                await nc.close()

    # Added again, it gets a new key.
    status, out, _ = cli("add-pilot", "acme", "--produces", "environment.air-quality-observed@1")
    assert status == 0
    assert seed_file.read_text().strip() != seed
    assert not (cli.directory / "SANDBOX" / "acme.revoked").exists()


# -- show -------------------------------------------------------------------------------------------


@pytest.fixture
def with_declassifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real installed distribution whose entry point is :class:`SignupStats`."""
    info = tmp_path / "site" / "citybus_auth_tests-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: citybus-auth-tests\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[citybus.adapters]\nsignup-stats = test_auth_cli:SignupStats\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_show_says_who_may_do_what_and_lists_the_declassifiers(cli: Cli, with_declassifier: None) -> None:
    with cli.config.open("a") as f:
        f.write('\n[adapters.stats]\nadapter = "signup-stats"\n')
    cli("generate")
    cli("add-pilot", "acme", "--produces", "environment.beach-observation")
    status, out, _ = cli("show")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ACCOUNT", "USER", "KIND", "RIGHT", "SUBJECT", "WHY"]
    rows = {tuple(line.split()[:5]) for line in lines[1:] if line.strip()}
    assert ("SANDBOX", "acme", "pilot", "publish", "city.public.environment.beach-observation.*") in rows
    assert ("CITY", "beach", "adapter", "subscribe", "v3.*.devices.*.up") in rows
    assert ("CITY", "mqtt-city", "adapter", "publish", "ttn.v3.*.devices.*.up") in rows
    assert ("SANDBOX", "sandbox", "adapter", "subscribe", "citybus.control.replay.sandbox.*") in rows
    assert ("CITY", "public", "public", "subscribe", "city.public.>") in rows
    assert "declassifiers (the only doors from internal or personal data to public data):" in out
    assert "\n  CITY/stats\n" in out
    assert "SANDBOX/acme: issued, public key U" in out

    status, out, _ = cli("show", "--json")
    assert status == 0
    doc = json.loads(out)
    assert doc["declassifiers"] == [{"account": "CITY", "user": "stats"}]
    acme = next(u for u in doc["users"] if u["user"] == "acme")
    assert acme["credentials"] == "issued" and acme["inbox_prefix"] == "_INBOX.acme"
    assert acme["seed_file"] == str(cli.directory / "SANDBOX" / "acme.nk")
    assert {
        "account": "SANDBOX",
        "user": "acme",
        "kind": "pilot",
        "declassifier": False,
        "right": "never publish",
        "subject": "city.internal.citybus.dead-letter.*",
        "why": "dead letters are the bus's record: a pilot could forge them",
    } in doc["rights"]
    assert {r["user"] for r in doc["rights"]} >= {"acme", "stats", "beach", "system"}

    status, out, _ = cli("show", "--user", "acme", "--json")
    assert {r["user"] for r in json.loads(out)["rights"]} == {"acme"}
    cli("revoke", "acme")
    # A revoked pilot leaves the model: its tombstone stays in the directory.
    status, out, _ = cli("show", "--json")
    assert all(u["user"] != "acme" for u in json.loads(out)["users"])


def test_show_before_generate_says_nobody_can_connect_yet(cli: Cli) -> None:
    status, out, _ = cli("show", "--user", "beach")
    assert status == 0
    assert "CITY/beach: none: cannot connect (run `citybus auth generate`)" in out
    assert not cli.directory.exists()  # showing creates nothing


# -- errors -----------------------------------------------------------------------------------------


def test_errors_end_in_one_line_that_says_what_to_fix(cli: Cli) -> None:
    cli("generate")
    cli("add-pilot", "acme", "--produces", "environment.beach-observation")

    def fails(*args: str, status: int = 1) -> str:
        got, out, err = cli(*args)
        assert got == status, (args, out, err)
        assert out == "" and err.count("\n") == 1, err
        return err

    assert "unknown contract environment.nope; known contracts: " in fails(
        "add-pilot", "zeta", "--produces", "environment.nope"
    )
    assert "pilot 'acme' already exists (it publishes environment.beach-observation@1)" in fails(
        "add-pilot", "acme"
    )
    assert "pilots never handle personal data" in fails(
        "add-pilot", "snoop", "--produces", "community.volunteer-signup"
    )
    assert "cannot name a pilot: use kebab case" in fails("add-pilot", "Acme")
    assert "cannot name a pilot" in fails("add-pilot", "operator")
    assert "no user named 'ghost' to revoke; `citybus auth show` lists the users" in fails("revoke", "ghost")
    assert "'public' is a built-in user" in fails("revoke", "public")
    # A pilot named like a CITY adapter is allowed, and then revoke needs the account.
    assert cli("add-pilot", "beach")[0] == 0
    assert "'beach' is a user of CITY or SANDBOX: say which with --account" in fails("revoke", "beach")
    assert cli("revoke", "beach", "--account", "SANDBOX")[0] == 0
    assert (cli.directory / "CITY" / "beach.nk").exists()

    cli.directory.chmod(0o750)
    for args in (("generate",), ("show",), ("add-pilot", "zeta"), ("revoke", "acme")):
        assert f"is open to other users (mode 0750): run `chmod 700 {cli.directory}`" in fails(*args)
    cli.directory.chmod(0o700)
    (cli.directory / "pilots.toml").write_text("[pilots.acme\n")
    assert "pilots.toml is not valid TOML" in fails("show", status=2)
    (cli.directory / "pilots.toml").write_text(
        '[pilots.acme]\nproduces = ["environment.nope"]\nadded = 2025-05-01T10:00:00Z\n'
    )
    assert "[pilots.acme]: unknown contract environment.nope" in fails("generate", status=2)
    assert not [s for s in cli.seeds if any(s in o for o in cli.outputs)]


def test_seeds_stay_in_their_files(cli: Cli) -> None:
    for args in (
        ("generate",),
        ("add-pilot", "acme", "--produces", "environment.beach-observation"),
        ("show",),
        ("show", "--json"),
        ("revoke", "acme"),
        ("revoke", "archive"),
        ("generate",),
    ):
        assert cli(*args)[0] == 0
    # 17 users of the configuration and the pilot; the pilot's and the archive's seeds were deleted.
    assert len(cli.seeds) == 18
    everything = "\n".join(cli.outputs) + (cli.directory / "accounts.conf").read_text()
    everything += (cli.directory / "pilots.toml").read_text()
    assert not [s for s in cli.seeds if s in everything]
    assert all(s.startswith("SU") for s in cli.seeds)
