"""A company's contract on a running ``citybus up`` under access control, with the real commands.

One ``citybus up`` (access control on, as shipped) runs with a company package installed on its
``PYTHONPATH``, and a broken one that costs only a warning. The company's streams are provisioned
in both accounts, its ops endpoints serve the contract, a pilot that produces it publishes it in the
sandbox, where it is stored and ``tail`` decodes it (by contract name, as text and as JSON). A
second package installed while ``up`` runs is unknown to it: ``auth generate`` and ``contracts
provision`` make its stream, so its messages are stored.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import contract_package
import pytest
from test_company_contracts import ACME

from tests.test_cli import Background, Up, http_get, run_citybus, start_up

pytestmark = pytest.mark.slow

SUBJECT = "city.public.testco.widget-reading.w-1"


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    base = tmp_path_factory.mktemp("company-up")
    site = contract_package.install(base / "site")
    # A broken package beside it costs its own contracts and a warning, not the start.
    contract_package.install_module(
        site, "import testco_gone\n", module="testco_broken", package="testco-broken"
    )
    running = await start_up(base / "up", auth=True, site=site)
    assert running.process.said(
        r"^citybus: warning: package testco-broken: its contracts .* failed to load: "
    )
    yield running
    await running.stop()


async def test_the_ops_endpoints_serve_the_companys_contract(up: Up) -> None:
    async with aiohttp.ClientSession() as session:
        status, body = await http_get(session, f"{up.ops_url}/contracts")
        assert status == 200, body
        [listed] = [c for c in json.loads(body) if c["name"] == contract_package.NAME]
        assert listed["description"] == contract_package.SUMMARY
        assert listed["package"] == contract_package.PACKAGE
        assert listed["subject"] == "city.public.testco.widget-reading.*"
        status, body = await http_get(session, f"{up.ops_url}/contracts/{contract_package.NAME}/schema")
        assert status == 200 and json.loads(body)["x-citybus"]["key"] == "widget", body
        status, body = await http_get(session, f"{up.ops_url}/asyncapi.json")
    assert status == 200
    channel = json.loads(body)["channels"]["testco_widget-reading_v1"]
    assert channel["address"] == "city.public.testco.widget-reading.{entity}"


async def test_a_pilot_publishes_the_companys_contract_stored_and_decoded_by_tail(up: Up) -> None:
    added = await run_citybus(
        "auth", "add-pilot", "testco-pilot", "--produces", contract_package.NAME, cwd=up.cwd, env=up.env
    )
    assert added.returncode == 0, added
    tails = [
        await Background.start(
            "tail", contract_package.NAME, "-n", "1", *extra, "--account", "sandbox", cwd=up.cwd, env=up.env
        )
        for extra in ((), ("--json",))
    ]
    # A reader without the package installed: it cannot decode the message, and says why.
    without = {**up.env, "PYTHONPATH": up.env["PYTHONPATH"].rsplit(os.pathsep, 1)[0]}
    tails.append(
        await Background.start(
            "tail",
            "city.public.testco.>",
            "-n",
            "1",
            "--json",
            "--account",
            "sandbox",
            cwd=up.cwd,
            env=without,
        )
    )
    try:
        for tail in tails:
            await tail.wait_said(r"^tailing city\.public\.testco\.\S+ on nats://\S+ as SANDBOX/")
        published = await run_citybus(
            "publish",
            contract_package.NAME,
            json.dumps(contract_package.EXAMPLE),
            "--user",
            "testco-pilot",
            "--account",
            "sandbox",
            cwd=up.cwd,
            env=up.env,
        )
        text, as_json, undecoded = [await tail.finish() for tail in tails]
    finally:
        for tail in tails:
            await tail.kill()
    assert published.returncode == 0, published
    # Stored in the sandbox's own stream of the company's domain.
    assert re.fullmatch(
        rf"stored [0-9a-f]+ on {re.escape(SUBJECT)} \(in SANDBOX, CITY_PUBLIC_TESTCO #1\)\n", published.stdout
    ), published
    assert text.returncode == 0, text
    line = text.stdout.strip()
    assert "!!" not in line and line.endswith(f'{SUBJECT} [manual] {{"widget":"w-1","level":3.5}}'), line
    record = json.loads(as_json.stdout)
    assert (record["type"], record["data"]) == (contract_package.TYPE, contract_package.EXAMPLE)
    assert "error" not in record
    unknown = json.loads(undecoded.stdout)
    assert unknown["data"] == json.dumps(contract_package.EXAMPLE, separators=(",", ":")), unknown
    assert unknown["error"].startswith(f"unknown contract {contract_package.TYPE}: no package installed here")


async def test_a_package_installed_while_up_runs_gets_its_stream_provisioned(up: Up, tmp_path: Path) -> None:
    site = Path(up.env["PYTHONPATH"].rsplit(os.pathsep, 1)[1])
    contract_package.install_module(site, ACME, module="acme_beaches", package="acme-beaches")
    added = await run_citybus(
        "auth", "add-pilot", "acme", "--produces", "acme.beach-observation", cwd=up.cwd, env=up.env
    )
    assert added.returncode == 0, added
    message = json.dumps({"buoy": "acme-1", "turbidity": 2.0})
    publish = ("publish", "acme.beach-observation", message, "--user", "acme", "--account", "sandbox")
    # `up` started before the package was there: no stream stores the company's subjects yet.
    unstored = await run_citybus(*publish, "--timeout", "2", cwd=up.cwd, env=up.env)
    assert unstored.returncode == 1 and "Traceback" not in unstored.stderr, unstored
    assert "no JetStream stream acknowledged" in unstored.stderr
    assert "`citybus contracts provision`" in unstored.stderr

    # As docs/contracts.md says: the access configuration with the package's streams, then the streams.
    generated = await run_citybus("auth", "generate", cwd=up.cwd, env=up.env)
    assert generated.returncode == 0, generated
    provisioned = await run_citybus("contracts", "provision", "--account", "sandbox", cwd=up.cwd, env=up.env)
    assert provisioned.returncode == 0, provisioned
    assert provisioned.stdout.startswith("provisioned ") and " in SANDBOX: " in provisioned.stdout
    assert "CITY_INTERNAL_ACME" in provisioned.stdout.split(": ", 1)[1].strip().split(", ")
    stored = await run_citybus(*publish, cwd=up.cwd, env=up.env)
    assert stored.returncode == 0, stored
    assert "(in SANDBOX, CITY_INTERNAL_ACME #1)" in stored.stdout, stored
