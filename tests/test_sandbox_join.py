"""``citybus sandbox join``: a company's adapter joins the running sandbox and leaves it (issue 14).

One real ``citybus up`` (a child process) replays the Drammen day; a company package installed
for the test (tests/join_package.py: its own contract through ``citybus.contracts``, its adapter
through ``citybus.adapters``) joins with the real command while it runs. The tests check what a
company and an operator would notice: the adapter's messages on the bus, its clock on the
replay's time, every other component connected throughout (the server's own connection list,
the replay's count still growing, no disconnect counted), its user gone once it leaves (a login
with its seed is refused), a join killed outright pruned at the next ``auth generate``, one-line
refusals, and the pilot guard rails: a forged city-site reading refused by the broker, a forged
city source on a pilot's own entity dead-lettered by the joined consumer.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.errors
import pytest

from bus.envelope import build_headers, new_event_id
from contracts import BeachObservation
from tests import join_package
from tests.test_cli import (
    COMMAND_TIMEOUT,
    Background,
    Result,
    Up,
    assert_one_line_error,
    http_get,
    metric_samples,
    run_citybus,
    server_connections,
    start_up,
)

pytestmark = pytest.mark.slow

ADVISOR = "testco-advisor"


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    base = tmp_path_factory.mktemp("join")
    site = join_package.install(base / "site")
    running = await start_up(base, sandbox=True, site=site)
    try:
        yield running
    finally:
        await running.stop()


def credentials(up: Up) -> Path:
    return up.data_dir / "credentials"


async def citybus(up: Up, *args: str) -> Result:
    return await run_citybus(*args, cwd=up.cwd, env=up.env)


async def join(up: Up, *args: str) -> Background:
    joined = await Background.start("sandbox", "join", *args, cwd=up.cwd, env=up.env)
    await joined.wait_said(r"^running adapter testco-advisor as instance ")
    return joined


async def connections(up: Up) -> set[tuple[str, str]]:
    """``(account, user)`` of every client connection, as the server lists them (by public key)."""
    shown = json.loads((await citybus(up, "auth", "show", "--json")).stdout)
    names = {u["public_key"]: (u["account"], u["user"]) for u in shown["users"] if u.get("public_key")}
    return await server_connections(up.nats_url, credentials(up) / "SYS" / "system.nk", names)


async def metrics(up: Up) -> dict[str, float]:
    """The replay's message count and the NATS disconnects citybus up counted."""
    async with aiohttp.ClientSession() as session:
        _, text = await http_get(session, f"{up.ops_url}/metrics")
    samples = metric_samples(text)
    return {
        "replayed": sum(v for (n, _), v in samples.items() if n == "citybus_replay_messages_total"),
        "disconnects": sum(v for (n, _), v in samples.items() if n == "citybus_nats_disconnects_total"),
    }


async def refused_login(up: Up, seed: Path, user: str) -> bool:
    try:
        nc = await nats.connect(
            up.nats_url,
            nkeys_seed=str(seed),
            inbox_prefix=f"_INBOX.{user}",
            allow_reconnect=False,
            connect_timeout=2,
        )
    except nats.errors.Error as exc:
        return "authorization" in str(exc).lower()
    await nc.close()
    return False


async def eventually(check: Any, timeout: float = 15.0) -> None:
    """Poll an async check until it holds (the server applies a reload a moment after the signal)."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the server's state, polled
            await asyncio.sleep(0.2)


def rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- join, run on the replay's clock, leave ---------------------------------------------------------


async def test_a_company_adapter_joins_the_running_sandbox_and_leaves(up: Up, tmp_path: Path) -> None:
    before = await connections(up)
    assert {("SANDBOX", "service"), ("SANDBOX", "sandbox"), ("CITY", "service")} <= before
    counted = await metrics(up)
    # 09:00 of the recorded day: the replay's clock is hours away from the wall clock now.
    seek = await citybus(up, "sandbox", "seek", "32400")
    assert seek.returncode == 0, seek

    joined = await join(up, ADVISOR)
    try:
        assert joined.said(r"^joined the sandbox as SANDBOX/testco-advisor \(reloaded nats-server pid \d+\)")
        assert joined.said(r"on the clock of replay sandbox")
        seed = credentials(up) / "SANDBOX" / f"{ADVISOR}.nk"
        kept = tmp_path / "advisor.nk"
        shutil.copy(seed, kept)
        entries = json.loads((credentials(up) / "joined.json").read_text())["joined"]
        assert [(e["name"], e["pid"]) for e in entries] == [(ADVISOR, joined.process.pid)]

        # Its company contract on the bus, decoded by tail, under its own source.
        tailed = await citybus(up, "tail", join_package.ADVICE, "-n", "2", "--json")
        assert tailed.returncode == 0, tailed
        records = [json.loads(line) for line in tailed.stdout.splitlines()]
        assert [r["subject"] for r in records] == [
            f"city.public.testco.beach-advice.{join_package.ENTITY}"
        ] * 2
        assert records[0]["source"] == f"/adapters/{ADVISOR}"
        # Its ctx.clock is the replay's: near the replay's clock, hours from the wall clock.
        status = json.loads((await citybus(up, "sandbox", "status", "--json")).stdout)
        advised = rfc3339(records[-1]["data"]["advised_at"])
        replayed = rfc3339(status["clock"])
        assert abs((advised - replayed).total_seconds()) < 1800, (advised, replayed)
        assert abs((advised - datetime.now(UTC)).total_seconds()) > 3600, advised
        # Every other component is still connected, and the joined user is too.
        during = await connections(up)
        assert before - {("SYS", "system")} <= during
        assert ("SANDBOX", ADVISOR) in during
    finally:
        left = await joined.stop(signal.SIGINT)
    assert left.returncode == 0, left
    assert "left the sandbox: SANDBOX/testco-advisor revoked (reloaded nats-server pid" in left.stderr
    assert "Traceback" not in left.stderr

    # Its user is gone: the file, the seed, and a login with a copy of the seed.
    assert json.loads((credentials(up) / "joined.json").read_text())["joined"] == []
    assert not seed.exists()
    await eventually(lambda: refused_login(up, kept, ADVISOR))
    after = await connections(up)
    assert before - {("SYS", "system")} <= after and ("SANDBOX", ADVISOR) not in after
    # The replay kept publishing and nobody was disconnected by either reload.
    now = await metrics(up)
    assert now["replayed"] > counted["replayed"]
    assert now["disconnects"] == counted["disconnects"]
    assert not up.process.said("(?i)authorization violation")


async def test_adapters_run_with_sandbox_is_the_same_command(up: Up) -> None:
    joined = await Background.start("adapters", "run", ADVISOR, "--sandbox", cwd=up.cwd, env=up.env)
    try:
        await joined.wait_said(r"^running adapter testco-advisor as instance testco-advisor")
        assert ("SANDBOX", ADVISOR) in await connections(up)
    finally:
        left = await joined.stop(signal.SIGTERM)
    assert left.returncode == 0 and "left the sandbox" in left.stderr, left


async def test_a_join_killed_outright_is_pruned_at_the_next_generate(up: Up, tmp_path: Path) -> None:
    joined = await join(up, ADVISOR)
    kept = tmp_path / "advisor.nk"
    shutil.copy(credentials(up) / "SANDBOX" / f"{ADVISOR}.nk", kept)
    await joined.kill()  # SIGKILL: it cannot leave
    assert [e["name"] for e in json.loads((credentials(up) / "joined.json").read_text())["joined"]] == [
        ADVISOR
    ]
    generated = await citybus(up, "auth", "generate")
    assert generated.returncode == 0, generated
    assert f"removed SANDBOX/{ADVISOR}: the `citybus sandbox join` that held it is gone" in generated.stdout
    assert json.loads((credentials(up) / "joined.json").read_text())["joined"] == []
    await eventually(lambda: refused_login(up, kept, ADVISOR))
    # And the name is free again.
    again = await join(up, ADVISOR)
    left = await again.stop(signal.SIGINT)
    assert left.returncode == 0, left


# -- refusals, in one line -------------------------------------------------------------------------


async def test_join_refuses_what_it_cannot_do_in_one_line(up: Up, tmp_path: Path) -> None:
    unknown = await citybus(up, "sandbox", "join", "no-such-adapter")
    assert_one_line_error(unknown, 1, "no adapter or configured instance named 'no-such-adapter'", ADVISOR)
    personal = await citybus(up, "sandbox", "join", "testco-snoop")
    assert_one_line_error(personal, 1, "never handle personal data", "community.volunteer-signup")
    clock = await citybus(up, "sandbox", "join", ADVISOR, "--clock", "harbour")
    assert_one_line_error(clock, 1, "no replay named 'harbour'", "its replays: sandbox")
    sections = tmp_path / "instances.toml"
    sections.write_text(
        '[adapters.internal]\nadapter = "testco-advisor"\n\n[adapters.beach]\nadapter = "testco-advisor"\n'
    )
    clash = await citybus(up, "sandbox", "join", "internal", "--config", str(sections))
    assert_one_line_error(clash, 1, "the sandbox already has a user named 'internal'")
    city_source = await citybus(up, "sandbox", "join", "beach", "--config", str(sections))
    assert_one_line_error(city_source, 1, "would publish as /adapters/beach, one of the city's sources")
    assert json.loads((credentials(up) / "joined.json").read_text())["joined"] == []

    elsewhere = {**up.env, "CITYBUS_SERVER_DATA_DIR": str(tmp_path / "nothing-runs-here")}
    nothing = await run_citybus("sandbox", "join", ADVISOR, cwd=up.cwd, env=elsewhere)
    assert_one_line_error(nothing, 1, "no running citybus up found", "start `citybus up` first")


# -- the pilot guard rails --------------------------------------------------------------------------


def reading(site: str, source: str) -> tuple[bytes, dict[str, str]]:
    """A valid beach observation and its CloudEvents headers, as a bare client would send them."""
    body = json.dumps(
        {"site": site, "observed_at": datetime.now(UTC).isoformat(), "water_temperature": 30.5}
    ).encode()
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source=source,
        time=datetime.now(UTC),
        provenance="sensor",
    )
    return body, headers


async def dead_letters_until(letters: Background, consumer: str) -> list[dict[str, Any]]:
    """The dead letters ``citybus tail`` prints until one of ``consumer``'s, and any other that
    follows within a few seconds (up to the two it was asked for)."""
    assert letters.process.stdout is not None
    found: list[dict[str, Any]] = []

    async def one() -> bool:
        line = await letters.process.stdout.readline()  # type: ignore[union-attr]
        if line.strip():
            found.append(json.loads(line))
        return bool(line)

    async with asyncio.timeout(COMMAND_TIMEOUT):
        while not any(letter["data"]["consumer"] == consumer for letter in found) and await one():
            pass
    try:
        async with asyncio.timeout(5):
            while len(found) < 2 and await one():
                pass
    except TimeoutError:
        pass
    return found


async def test_a_pilots_forged_readings_are_refused(up: Up) -> None:
    joined = await join(up, ADVISOR)  # a consumer of beach observations, guarding the city's sources
    # A pilot added while the join runs: `citybus auth` keeps the joined user (else the reload would
    # cut it off, and nothing below would be dead-lettered).
    added = await citybus(up, "auth", "add-pilot", "forger", "--produces", "environment.beach-observation")
    assert added.returncode == 0, added
    assert "# testco-advisor (pilot)" in (credentials(up) / "accounts.conf").read_text()
    seed = credentials(up) / "SANDBOX" / "forger.nk"
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    pilot = await nats.connect(
        up.nats_url, nkeys_seed=str(seed), inbox_prefix="_INBOX.forger", error_cb=on_error
    )
    # two consumers in the sandbox read beach observations: the joined one and the statistics service
    letters = await Background.start(
        "tail", "citybus.dead-letter", "-n", "2", "--json", cwd=up.cwd, env=up.env
    )
    try:
        await letters.wait_said(r"^tailing ")
        # A city site, the city adapter's source, provenance sensor: the broker refuses the subject.
        city_site = "city.public.environment.beach-observation.bragernes-strand"
        body, headers = reading("bragernes-strand", "/adapters/beach")
        await pilot.publish(city_site, body, headers=headers)
        await pilot.flush()
        async with asyncio.timeout(10):
            while not any(f'publish to "{city_site}"' in e.lower() for e in errors):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # Its own buoy under the city's source: the broker cannot see headers; the joined consumer
        # dead-letters it as forged.
        own = "city.public.environment.beach-observation.forger-buoy"
        body, headers = reading("forger-buoy", "/adapters/beach")
        await pilot.publish(own, body, headers=headers)
        await pilot.flush()
        found = await dead_letters_until(letters, ADVISOR)
    finally:
        await letters.kill()
        await pilot.close()
        await joined.stop(signal.SIGINT)
    # the joined consumer refused it; so does the statistics service when it heard it (every process
    # of which hears every observation, in no queue group: its dead letters name none) — it reads
    # public observations at most once (core NATS), so on a loaded machine it may not have
    consumers = [letter["data"]["consumer"] for letter in found]
    assert ADVISOR in consumers and set(consumers) <= {"", ADVISOR}, consumers
    for letter in found:
        assert letter["data"]["reason"] == "forged-source", letter
        assert letter["data"]["original_subject"] == own
    assert not any("forger-buoy" in e for e in errors)  # its own entity was not refused by the broker
    revoked = await citybus(up, "auth", "revoke", "forger")
    assert revoked.returncode == 0, revoked
