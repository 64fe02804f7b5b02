"""``docs/tutorial.md``, run as a company new to citybus would follow it.

Every ``sh`` block of the tutorial runs for real, in order, in bash: a line marked ``# keep it
running`` starts in the background (``citybus up``, ``citybus sandbox join``, ``citybus tail``), and
a ``citybus up`` started while others run stops them first, as the tutorial tells the reader to.
``toml`` blocks with ``file=NAME`` are written to that file, and each ``console`` block is compared
with what its command printed: exactly where the output is the same on every run, by its shape
(times, temperatures, ids, paths left out) where it is not.

The reader has installed citybus and activates its environment. Here that environment is a fresh
venv of the test's own that sees this checkout and its installed dependencies (a ``.pth`` file), so
that ``pip install -e`` of the scaffolded package installs it for real — into that venv, never into
the environment running the tests. ``HOME`` is a temporary directory, the tutorial's ``~/pilot`` in
it the working directory.

Beyond the commands' output, the test checks what the issue asked of this loop: the company's
package (made by the scaffold, outside the repository) defines a contract, joins the running
sandbox without a restart, its messages are decoded by ``citybus tail`` and listed by ``contracts
list``, the replay stays connected throughout (its NATS connection never drops, and it goes on
publishing), and a reading forged for a city site is refused. At the end, ``citybus certify`` runs
the product in a private sandbox beside the running city, which it leaves alone, and passes it:
with the adapter's defaults (``~/pilot/citybus.toml`` has no section for it) and the suite's faults,
not the tutorial's plan.
"""

from __future__ import annotations

import asyncio
import json
import re
import site
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from walkthrough import ROOT, Block, Running, Walk, bash, blocks, run_bash, start, walk_in

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "tutorial.md"
KEEP = "# keep it running"
WAIT = 120.0  # a bound against hangs, not a performance expectation
CERTIFY = 600.0  # the same, for the quick suite's five runs (about half a minute)
READY = {
    "citybus sandbox join": r"^running adapter beach-advisor as instance beach-advisor",
    "citybus tail": r"^tailing ",
    "citybus up": r"^citybus is up: NATS at ",
}
ADVICE = re.compile(r"^\d\d:\d\d:\d\d city\.public\.beach-advisor\.advice\.([a-z-]+) \[synthetic\] (\{.*\})$")


def doc_blocks() -> list[Block]:
    return blocks(DOC)


def of(lang: str) -> list[Block]:
    return [b for b in doc_blocks() if b.lang == lang]


def test_the_tutorial_has_the_blocks_this_test_follows() -> None:
    """The test addresses the tutorial's blocks by their order: a changed tutorial must change it too."""
    assert len(of("sh")) == 14
    assert len(of("console")) == 13
    assert len(of("python")) == 2
    assert [b.info for b in of("toml")] == ["file=faults.toml", "file=citybus.toml"]
    background = [line for b in of("sh") for line in b.text.splitlines() if KEEP in line]
    assert [line.split(KEEP)[0].strip() for line in background] == [
        "citybus up",
        "citybus sandbox join beach-advisor",
        "citybus tail beach-advisor.advice",
        "citybus up",
        "citybus sandbox join beach-advisor",
        "citybus tail citybus.dead-letter",
    ]


@pytest.fixture
def pilot(tmp_path: Path) -> Walk:
    """The reader's terminal: citybus's environment activated, in ``~/pilot``."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # This checkout, and the dependencies installed beside the tests (citybus's dist-info among them).
    Path(own, "citybus-under-test.pth").write_text(f"{ROOT}\n{site.getsitepackages()[0]}\n")
    walk = walk_in(tmp_path, python=str(python))
    for tool in ("pytest",):  # console scripts of packages the venv sees but did not install
        shim = tmp_path / "bin" / tool
        shim.write_text(f'#!/bin/sh\nexec "{python}" -m {tool} "$@"\n')
        shim.chmod(0o755)
    walk.env["PATH"] = ":".join([str(tmp_path / "bin"), str(venv / "bin"), walk.env["PATH"]])
    walk.env["VIRTUAL_ENV"] = str(venv)
    walk.cwd = Path(walk.env["HOME"], "pilot")
    walk.cwd.mkdir()
    return walk


class Terminals:
    """The commands the reader keeps running, each in a terminal of its own."""

    def __init__(self, walk: Walk) -> None:
        self.walk = walk
        self.open: list[Running] = []
        self.closed: list[Running] = []

    async def run(self, block: Block, *, check: bool = True) -> str:
        """Run a ``sh`` block: background lines started, the rest in bash; what bash printed."""
        printed: list[str] = []
        script: list[str] = []
        for line in [*block.text.splitlines(), ""]:
            if KEEP not in line:
                script.append(line)
                continue
            if any(s.strip() for s in script):
                printed.append(await bash("\n".join(script), self.walk, check=check, timeout=WAIT))
            script = []
            command = line.split(KEEP)[0].strip()
            if command.startswith("citybus up"):
                await self.close_all()  # "stop the join and citybus up (Ctrl-C in their terminals)"
            ready = next(p for prefix, p in READY.items() if command.startswith(prefix))
            self.open.append(await start(command, self.walk, ready=ready))
        if any(s.strip() for s in script):
            printed.append(await bash("\n".join(script), self.walk, check=check, timeout=WAIT))
        return "".join(printed)

    def last(self, prefix: str) -> Running:
        return next(r for r in reversed(self.open + self.closed) if r.command.startswith(prefix))

    async def close_all(self) -> None:
        """Ctrl-C in every terminal, the last opened first."""
        while self.open:
            running = self.open.pop()
            await running.stop()
            self.closed.append(running)


@pytest.fixture
async def terminals(pilot: Walk) -> AsyncIterator[Terminals]:
    terminals = Terminals(pilot)
    try:
        yield terminals
    finally:
        await terminals.close_all()


def shape(text: str) -> str:
    """``text`` without what differs between runs: numbers (times, ports, pids, counts, values)."""
    return re.sub(r"\d+(?:\.\d+)?", "N", text)


def console(index: int) -> list[str]:
    return of("console")[index].text.strip("\n").splitlines()


def metrics(up: Running) -> list[tuple[str, dict[str, str], float]]:
    """The running citybus up's metrics: each sample's name, labels and value."""
    url = next(re.search(r"http://\S+/metrics", line) for line in up.stderr if "/metrics" in line)
    assert url is not None
    with urllib.request.urlopen(url.group(0), timeout=10) as answer:  # noqa: S310 - our own loopback
        text = answer.read().decode()
    return [
        (s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
    ]


def replay_state(up: Running) -> tuple[float, float]:
    """How often citybus up's connections were lost, and how many messages its replay published."""
    samples = metrics(up)
    lost = sum(v for name, _, v in samples if name == "citybus_nats_disconnects_total")
    published = sum(v for name, _, v in samples if name == "citybus_replay_messages_total")
    return lost, published


async def test_the_tutorial_works_as_written(pilot: Walk, terminals: Terminals) -> None:
    sh, python, toml = of("sh"), of("python"), of("toml")
    home = pilot.env["HOME"]

    # 1. Start the city.
    await terminals.run(sh[0])
    up = terminals.last("citybus up")
    assert all(any(shape(line) == shape(e) for line in up.stderr) for e in console(0)[1:]), up.stderr
    assert any(line.startswith("citybus is up: NATS at nats://127.0.0.1:") for line in up.stderr)

    # 2. Scaffold a service: what it says, and the code the tutorial shows is the code it made.
    printed = (await terminals.run(sh[1])).replace(home, "~").splitlines()
    assert printed[: len(console(1))] == console(1)
    package = pilot.cwd / "citybus-beach-advisor" / "src" / "citybus_beach_advisor"
    assert python[0].text in (package / "contracts.py").read_text()
    assert python[1].text in (package / "adapter.py").read_text()

    # 3. Install it, run its tests; citybus knows its contract.
    printed = await terminals.run(sh[2])
    assert re.sub(r" in [\d.]+s", "", printed.strip().splitlines()[-1]) == re.sub(
        r" in [\d.]+s", "", console(2)[-1]
    )
    assert (await terminals.run(sh[3])).strip().splitlines() == console(3)

    # 4. Join the running sandbox, without restarting it; the replay stays connected.
    lost_before, published_before = replay_state(up)
    await terminals.run(sh[4])
    join = terminals.last("citybus sandbox join")
    assert [shape(line) for line in join.stderr if not line.startswith("{")][:2] == [
        shape(e) for e in console(4)
    ]

    # 5. Its advice, decoded by citybus tail.
    await terminals.run(sh[5])
    tail = terminals.last("citybus tail beach-advisor.advice")
    async with asyncio.timeout(WAIT):
        while len(tail.stdout) < 2:  # noqa: ASYNC110 - lines of another process
            await asyncio.sleep(0.1)
    examples = [ADVICE.match(line) for line in console(5)]
    for line in tail.stdout[:2]:
        seen = ADVICE.match(line)
        assert seen is not None, line
        advice = json.loads(seen.group(2))
        assert advice["site"] == seen.group(1)
        assert advice["verdict"] in ("swim", "brisk", "stay-dry")
        assert all(e is not None and set(json.loads(e.group(2))) == set(advice) for e in examples)

    # ... listed with what is stored; the city's relations beside it, with their locations.
    listed = []
    for block, expected in ((sh[6], console(6)), (sh[7], console(7))):
        lines = (await terminals.run(block)).strip().splitlines()
        assert shape(lines[0]) == shape(expected[0])
        assert all(re.match(r"^  [a-z-]+ +\d+ msgs ", line) for line in lines[1:]), lines
        listed.append(lines)
    sites = {line.split()[0]: line for line in listed[1][1:]}
    assert set(sites) <= {
        "bragernes-strand",
        "drammenselva-bragernes",
        "sota-fjordpark",
        "landfalltjern",
        "blektjern",
        "vannverksdammen",
        "stordammen",
    }
    assert all(re.search(r"\d+\.\d{5} N \d+\.\d{5} E", line) for line in sites.values())
    if "blektjern" in sites:  # its shipped location is approximate, and says so
        assert re.search(r"59\.70900 N 10\.15500 E ~3000 m", sites["blektjern"])

    # ... and a reading forged for a city site is refused by the broker.
    printed = await terminals.run(sh[8], check=False)
    assert set(console(8)) <= set(printed.splitlines()), printed

    lost_after, published_after = replay_state(up)
    assert lost_after == lost_before == 0  # nobody was disconnected by the join
    assert published_after > published_before  # and the replay went on

    # 6. Under a fault plan: the files, the check, the city again, the dead letters, the truth.
    for block in toml:
        (pilot.cwd / block.info.removeprefix("file=")).write_text(block.text, encoding="utf-8")
    printed = (await terminals.run(sh[9])).replace(str(ROOT), "…")
    assert printed.strip().splitlines() == console(9)
    await terminals.run(sh[10])
    assert any("left the sandbox: SANDBOX/beach-advisor revoked" in line for line in join.stderr)
    assert up.process.returncode == 0, "\n".join(up.stderr)
    await terminals.run(sh[11])
    letters = terminals.last("citybus tail citybus.dead-letter")
    truth = pilot.cwd / "faults.jsonl"
    async with asyncio.timeout(WAIT):
        while not letters.stdout or not truth.is_file() or len(truth.read_text().splitlines()) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    letter = json.loads(letters.stdout[0].split(" ", 3)[3])
    assert (letter["reason"], letter["consumer"]) == ("invalid-body", "beach-advisor")
    assert letter["original_subject"].startswith("city.public.environment.beach-observation.")
    assert letters.stdout[0].split(" ", 3)[:3][1:] == console(10)[0].split(" ", 3)[1:3]

    printed = await terminals.run(sh[12])
    stable = ("kind", "fault", "subject", "mode", "field")
    got = [{k: v for k, v in json.loads(line).items() if k in stable} for line in printed.splitlines()]
    want = [{k: v for k, v in json.loads(line).items() if k in stable} for line in console(11)]
    assert got == want  # the same seed hits the same messages every time

    # 7. Certify it: a private sandbox of its own, beside the running city, which it leaves alone.
    city = next(r for r in terminals.open if r.command.startswith("citybus up"))  # section 6's, running
    assert city.process.returncode is None, "\n".join(city.stderr)
    lost_before, published_before = replay_state(city)
    status, printed, said = await run_bash(sh[13].text, pilot, timeout=CERTIFY)
    assert status == 0, printed + said  # the exit status CI goes by: the suite passed
    expected = console(12)
    progress = [line for line in expected if line.startswith(("certifying ", "  ["))]
    said_lines = said.strip("\n").splitlines()
    assert shape(said_lines[0]) == shape(progress[0]), said
    assert {shape(line) for line in progress} <= {shape(line) for line in said_lines}, said
    assert [shape(line) for line in printed.replace(home, "~").strip().splitlines()] == [
        shape(line) for line in expected[len(progress) :]
    ]
    folder = pilot.cwd / "certify-beach-advisor"
    assert (folder / "report.html").is_file() and (folder / "report.md").is_file()
    report = json.loads((folder / "report.json").read_text())
    assert (report["verdict"], report["suite"]) == ("pass", "quick")
    assert report["adapter"]["instance"] == "beach-advisor"
    runs = {run["run"]: run for run in report["runs"]}
    assert (runs["clean"]["plan"], runs["clean"]["injected"]) == ("", {})  # not faults.toml's plan
    duplicated = runs["duplicate"]
    assert duplicated["injected"]["duplicate"] > 0
    # A reading delivered twice is advised on once: as many pieces of advice as in the clean run.
    assert duplicated["inputs"] > duplicated["outputs"] == runs["clean"]["outputs"]
    lost_after, published_after = replay_state(city)
    assert lost_after == lost_before == 0  # the running city was not touched
    assert published_after > published_before
