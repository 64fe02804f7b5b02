"""``citybus adapter new NAME --kind source|service|sink``: each kind's package, made by the real
CLI, installed for real (``pip install --target`` a directory then on ``PYTHONPATH``), passes its
own tests (on the in-memory harness with a sandbox clock), ruff and ``mypy --strict``; ``adapters
list`` and ``contracts list`` know it, and ``adapters run`` runs it against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import wait_for

from bus import Bus, RawMessage
from bus.server import EmbeddedServer
from contracts import BeachObservation
from tests.test_cli import Background, citybus_env

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("source", "service", "sink")


def citybus(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


class Made(msgspec.Struct):
    root: Path
    site: Path
    said: dict[str, str]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.site), str(ROOT)])}

    def package(self, kind: str) -> Path:
        return self.root / f"citybus-demo-{kind}"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """One package of each kind, made by `citybus adapter new` and pip-installed into a directory."""
    root = tmp_path_factory.mktemp("scaffold")
    said = {}
    for kind in KINDS:
        created = citybus("adapter", "new", f"demo-{kind}", "--kind", kind, cwd=root)
        assert created.returncode == 0, created.stderr
        said[kind] = created.stdout
    site = root / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site)]
        + [str(root / f"citybus-demo-{kind}") for kind in KINDS],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    return Made(root, site, said)


def run(made: Made, kind: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command],
        capture_output=True,
        text=True,
        cwd=made.package(kind),
        env=made.env(),
        timeout=300,
        check=False,
    )


def test_the_layout_of_each_kind(made: Made) -> None:
    def files(kind: str) -> set[str]:
        top = made.package(kind)
        return {str(p.relative_to(top)) for p in top.rglob("*") if p.is_file() and "build" not in p.parts}

    common = {"pyproject.toml", "README.md", "src/{p}/__init__.py", "src/{p}/py.typed", "src/{p}/adapter.py"}
    for kind in KINDS:
        package = f"citybus_demo_{kind}"
        expected = {f.format(p=package) for f in common} | {f"tests/test_{package}.py"}
        if kind == "service":
            expected.add(f"src/{package}/contracts.py")
        assert {f for f in files(kind) if "egg-info" not in f} == expected
    pyproject = tomllib.loads((made.package("service") / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]
    assert entry_points["citybus.adapters"] == {
        "demo-service": "citybus_demo_service.adapter:DemoServiceAdapter"
    }
    assert entry_points["citybus.contracts"] == {"demo-service": "citybus_demo_service.contracts"}
    source = tomllib.loads((made.package("source") / "pyproject.toml").read_text())
    assert "citybus.contracts" not in source["project"]["entry-points"]


def test_the_command_says_what_it_made_and_what_to_do_next(made: Made) -> None:
    for kind in KINDS:
        said = made.said[kind]
        assert f"a {kind} adapter named demo-{kind}" in said
        for step in (
            "pip install -e",
            "citybus adapters list",
            "pytest",
            "mypy",
            f"citybus sandbox join demo-{kind}",
            "[adapters.demo-",
            "tutorial.md",
            "context.md",
        ):
            assert step in said, (kind, step)
        # certify scores what an adapter does with the city's data: a source consumes none
        assert (f"citybus certify demo-{kind} --suite quick" in said) == (kind != "source"), kind
    assert "demo-service.advice" in made.said["service"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_passes_its_own_tests_ruff_and_mypy_strict(made: Made, kind: str) -> None:
    tests = run(made, kind, "pytest", "-q", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout
    lint = run(made, kind, "ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatted = run(made, kind, "ruff", "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    # The package's own [tool.mypy], with citybus found in this checkout (installed editable here,
    # which mypy cannot follow) and, like an installed library, not reported on.
    own = tomllib.loads((made.package(kind) / "pyproject.toml").read_text())["tool"]["mypy"]
    assert own["strict"] is True
    ini = made.package(kind).parent / f"mypy-{kind}.ini"
    ini.write_text(
        f"[mypy]\nstrict = True\npython_version = {own['python_version']}\n"
        f"mypy_path = {own['mypy_path']}:{ROOT}\n"
        "[mypy-adapters.*,bus.*,contracts.*,sandbox.*]\nfollow_imports = silent\n"
    )
    typed = run(made, kind, "mypy", "--config-file", str(ini), *own["files"])
    assert typed.returncode == 0, typed.stdout + typed.stderr


def test_adapters_list_and_contracts_list_know_the_installed_packages(made: Made) -> None:
    listed = citybus("adapters", "list", "--json", cwd=made.root, env=made.env())
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["warnings"] == []  # the service's contract comes through its entry point
    adapters = {a["name"]: a for a in document["adapters"]}
    assert adapters["demo-source"]["kind"] == "source"
    assert adapters["demo-source"]["produces"] == ["environment.beach-observation"]
    assert adapters["demo-service"]["kind"] == "service"
    assert adapters["demo-service"]["consumes"] == ["environment.beach-observation"]
    assert adapters["demo-service"]["produces"] == ["demo-service.advice"]
    assert adapters["demo-sink"]["kind"] == "sink"
    assert adapters["demo-sink"]["distribution"] == "citybus-demo-sink 0.1.0"
    contracts = citybus("contracts", "list", cwd=made.root, env=made.env())
    assert contracts.returncode == 0, contracts.stderr
    assert "demo-service.advice" in contracts.stdout


async def test_adapters_run_runs_the_scaffolded_service_on_a_real_server(
    made: Made, nats_server: EmbeddedServer, bus: Bus
) -> None:
    advice: list[RawMessage] = []

    async def collect(raw: RawMessage) -> None:
        advice.append(raw)

    await bus.subscribe_raw("city.public.demo-service.advice.>", collect)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bus.cli",
        "adapters",
        "run",
        "demo-service",
        "--nats",
        nats_server.url,
        cwd=made.root,
        env=made.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        reading = msgspec.structs.replace(
            BeachObservation.example(),
            site="demo-strand",
            observed_at=datetime.now(UTC),
            water_temperature=19.0,
        )

        async def publish_until_advised() -> None:
            while not advice:  # the adapter subscribes in its own time: say it again until it answers
                await bus.publish(reading, provenance="manual")
                await asyncio.sleep(0.2)

        await asyncio.wait_for(publish_until_advised(), 60)
        await wait_for(lambda: bool(advice))
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    body: dict[str, Any] = json.loads(advice[0].data)
    assert (body["site"], body["verdict"]) == ("demo-strand", "swim")
    assert advice[0].headers is not None and advice[0].headers["ce-source"] == "/adapters/demo-service"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("Bad Name",), "kebab case"),
        (("fine", "--kind", "service", "--company", "environment"), "one of the city's domains"),
        (("fine", "--kind", "service", "--company", "ACME"), "must be kebab case"),
    ],
)
def test_wrong_input_is_one_line_that_says_what_to_fix(
    tmp_path: Path, args: tuple[str, ...], problem: str
) -> None:
    result = citybus("adapter", "new", *args, cwd=tmp_path)
    assert result.returncode == 1 and problem in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_kind_and_a_directory_in_use_are_refused(tmp_path: Path) -> None:
    wrong = citybus("adapter", "new", "fine", "--kind", "gateway", cwd=tmp_path)
    assert wrong.returncode == 2 and "--kind" in wrong.stderr and "service" in wrong.stderr
    assert citybus("adapter", "new", "twice", cwd=tmp_path).returncode == 0
    again = citybus("adapter", "new", "twice", "--kind", "sink", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr


SANDBOX_CONFIG = """\
[adapters.sandbox]
adapter = "sandbox-replay"
shift_to_now = false                  # 2018's times: only a clock that follows the replay finds them fresh
start = 43200
include = ["city.public.environment.beach-observation.>"]

[adapters.advisor]
adapter = "demo-service"
account = "sandbox"
"""


@pytest.mark.slow
async def test_the_service_advises_on_replayed_time_in_a_real_citybus_up(made: Made, tmp_path: Path) -> None:
    """The company's package in `citybus up` under access control, in SANDBOX beside the replay:
    it follows the replay's clock by default, so the recorded day's readings are fresh to it and
    its advice (its own contract, in SANDBOX) carries the replayed time."""
    import nats

    data_dir, cwd = tmp_path / "data", tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "citybus.toml").write_text(SANDBOX_CONFIG)
    env = citybus_env(data_dir, PYTHONPATH=made.env()["PYTHONPATH"])
    process = await Background.start("up", cwd=cwd, env=env)
    try:
        await process.wait_said(r"^citybus is up: NATS at nats://\S+$", timeout=60)
        url = json.loads((data_dir / "instance.json").read_text())["nats_url"]
        seed = data_dir / "credentials" / "SANDBOX" / "internal.nk"
        nc = await nats.connect(url, nkeys_seed=str(seed), inbox_prefix="_INBOX.internal")
        advice: list[Any] = []

        async def collect(msg: Any) -> None:
            advice.append(msg)

        await nc.subscribe("city.public.demo-service.advice.>", cb=collect)
        await wait_for(lambda: bool(advice), timeout=60)
        await nc.close()
    finally:
        stopped = await process.stop(signal.SIGINT)
    assert stopped.returncode == 0
    first = advice[0]
    body = json.loads(first.data)
    stamped = datetime.fromisoformat(first.headers["ce-time"])
    advised = datetime.fromisoformat(body["advised_at"])
    # ce-time is stamped by ctx.publish a moment after the advice was made: the same replayed minute
    assert stamped.year == 2018 and abs((stamped - advised).total_seconds()) < 60
    assert first.headers["ce-source"] == "/adapters/advisor"
    assert body["verdict"] in ("swim", "brisk", "stay-dry")
