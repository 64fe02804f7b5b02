"""`citybus up` to ready (target <= 3 s): the real command, from a fresh data directory.

Each run starts ``citybus --log-format json up --data-dir DIR --ops-port 0`` as a user would (the
installed console script, the default configuration: the embedded nats-server and the sandbox
replaying the shipped Drammen day), in an empty working directory with no ``citybus.toml`` and no
``CITYBUS_*`` variables, and times it from the moment the process is spawned until its
``/readyz`` answers 200. The ops URL is read from ``instance.json`` in the data directory, as
``citybus status`` finds it. Then it is stopped with SIGTERM (the stop is timed too). The figure is
the median of the runs.

The JSON log lines say when each step of starting finished (the first line: imports and the
configuration are done; the embedded server; the NATS connection; the streams; the adapters), so
the report shows where the time goes in every run. Over the target (and always in a smoke run,
so CI checks that it works), one more run under ``python -X importtime`` names the slowest imports
and one under cProfile the slowest functions of starting.
"""

from __future__ import annotations

import contextlib
import json
import pstats
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from bench.common import CASE_LIMIT, BenchError, Options, Spec, child_env, log
from bench.report import Case, Figure, Row, Target
from bench.stats import median, top_functions

__all__ = ["CASES"]

TARGET_SECONDS: Final = 3.0
TITLE: Final = "`citybus up` to ready"
FULL_RUNS: Final = 5
SMOKE_RUNS: Final = 1
POLL: Final = 0.005
PHASES: Final = (
    ("imports and configuration (first log line)", None),
    ("embedded nats-server started", "embedded nats-server started"),
    ("NATS connected", "nats connected"),
    ("streams provisioned", "streams provisioned"),
    ("adapters ready", "citybus is up"),
)
"""(what the report calls a step, the log event that ends it; ``None``: the first line)."""


@dataclass
class Start:
    """One start of ``citybus up``: seconds from spawning to each step, to ready and to stopped."""

    ready: float
    stop: float
    steps: dict[str, float] = field(default_factory=dict)
    stderr: str = ""


def citybus_command() -> list[str]:
    """The ``citybus`` console script of this environment, run by this interpreter (so ``-X`` and
    ``-m cProfile`` can go in front of it)."""
    script = Path(sys.executable).parent / "citybus"
    if not script.exists():
        raise BenchError(
            f"no citybus command next to {sys.executable}: install citybus (`pip install -e .`) first"
        )
    return [sys.executable, str(script)]


def start_once(directory: Path, pycache: Path, *, python_options: tuple[str, ...] = ()) -> Start:
    """Start ``citybus up`` in ``directory`` (its working and data directory), wait until ready, stop it.

    Bytecode is cached in ``pycache`` (``PYTHONPYCACHEPREFIX``), written whatever the caller's
    ``PYTHONDONTWRITEBYTECODE`` says: an installed citybus starts from cached bytecode, so the
    first start of a run fills the cache and the timed ones use it.
    """
    directory.mkdir(parents=True)
    data = directory / "data"
    python, script = citybus_command()
    command = [
        python,
        *python_options,
        script,
        "--log-format",
        "json",
        "up",
        "--data-dir",
        str(data),
        "--ops-port",
        "0",
    ]
    env = child_env(
        XDG_DATA_HOME=str(directory / "xdg"),
        XDG_CONFIG_HOME=str(directory / "xdg"),
        PYTHONPYCACHEPREFIX=str(pycache),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    stderr_path = directory / "stderr"
    with stderr_path.open("wb") as stderr:
        wall = time.time()
        began = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        ready = wait_ready(process, data / "instance.json", began, stderr_path) - began
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise BenchError("citybus up did not stop within 30 s of SIGTERM") from None
        stop = time.monotonic() - stopping
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = stderr_path.read_text(errors="replace")
    return Start(ready, stop, _steps(text, wall), text)


def wait_ready(process: subprocess.Popen[bytes], instance: Path, began: float, stderr: Path) -> float:
    """Poll ``instance.json`` for the ops URL, then ``/readyz`` until it answers 200; the moment it did
    (:func:`time.monotonic`). Raises :class:`~bench.common.BenchError` when ``process`` exits first, or
    after :data:`~bench.common.CASE_LIMIT` seconds since ``began``; its ``stderr`` file says why."""
    url = ""
    while time.monotonic() - began < CASE_LIMIT:
        if process.poll() is not None:
            raise BenchError(
                f"citybus up exited ({process.returncode}) before it was ready:\n"
                f"{stderr.read_text(errors='replace')[-2000:]}"
            )
        if not url:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                url = str(json.loads(instance.read_text())["ops_url"] or "")
        if url:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return time.monotonic()
            except urllib.error.HTTPError as exc:  # 503: not ready yet
                exc.close()
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(POLL)
    raise BenchError(f"citybus up was not ready within {CASE_LIMIT:.0f} s")


def _steps(stderr: str, wall: float) -> dict[str, float]:
    """Seconds from spawning to each step, from the JSON log lines' timestamps."""
    events: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry = json.loads(line)
            moment = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
            events.append((str(entry["event"]), moment - wall))
    steps: dict[str, float] = {}
    for step, event in PHASES:
        found = [at for name, at in events if event is None or name == event]
        if found:
            steps[step] = found[0]
    return steps


_IMPORT = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def slowest_imports(stderr: str, count: int = 15) -> tuple[float, list[tuple[str, int, float, float]]]:
    """From ``-X importtime`` output: the seconds all imports took, and the ``count`` imports with the
    most cumulative time as (module, depth, cumulative s, own s); depth 0 is imported by the program
    itself (or by a function of it, as entry points are), deeper ones by the module above them."""
    imports: list[tuple[str, int, float, float]] = []
    for line in stderr.splitlines():
        match = _IMPORT.match(line)
        if match:
            depth = len(match.group(3)) // 2
            imports.append((match.group(4), depth, int(match.group(2)) / 1e6, int(match.group(1)) / 1e6))
    total = sum(cumulative for _, depth, cumulative, _ in imports if depth == 0)
    imports.sort(key=lambda item: item[2], reverse=True)
    return total, imports[:count]


def startup_case(options: Options) -> Case:
    """Median seconds from ``citybus up`` to a 200 from its ``/readyz``."""
    runs = SMOKE_RUNS if options.smoke else FULL_RUNS
    case = Case(
        TITLE,
        f"{runs} run(s) of `citybus --log-format json up --data-dir DIR --ops-port 0` (the installed console "
        "script; the default configuration: the embedded nats-server and the sandbox replaying the Drammen "
        "day), each in a fresh directory with no configuration file and no `CITYBUS_*` variables; ready = "
        "spawned → the first 200 from `/readyz` (its URL read from `<data dir>/instance.json`, polled every "
        f"{POLL * 1000:g} ms). A first start, not counted, compiles the bytecode the others start from "
        "(cached in the run's own directory, `PYTHONPYCACHEPREFIX`), as an installed citybus has it.",
    )
    pycache = options.work / "pycache"
    log("startup: a first start, compiling bytecode (not counted)")
    first = start_once(options.work / "up-first", pycache)
    starts = []
    for number in range(1, runs + 1):
        log(f"startup: run {number} of {runs}")
        starts.append(start_once(options.work / f"up-{number}", pycache))
    case.rows.append(_row("first start, compiling bytecode (not counted)", first))
    for number, start in enumerate(starts, 1):
        case.rows.append(_row(f"run {number}", start))
    ready = median([start.ready for start in starts])
    met = ready <= TARGET_SECONDS
    summary = _row("median", Start(ready, median([s.stop for s in starts]), _median_steps(starts)))
    summary.met = met
    case.rows.append(summary)
    case.targets.append(Target(TITLE, f"<= {TARGET_SECONDS:g} s", f"{ready:.2f} s (median)", met))
    case.figures.append(Figure("ready s", ready, "s", higher_is_better=False))
    case.notes.append(
        "The steps are read from the JSON log lines' timestamps (seconds since the process was spawned); "
        "`adapters ready` is the runtime's `citybus is up` line, after which `/readyz` answers 200."
    )
    if not met or options.smoke:
        log("startup: profiling (-X importtime and cProfile)")
        _profile(case, options.work, pycache)
    return case


def _row(label: str, start: Start) -> Row:
    cells = {"run": label, "ready s": f"{start.ready:.2f}"}
    for step, _ in PHASES:
        cells[step] = f"{start.steps[step]:.2f}" if step in start.steps else ""
    cells["stop after SIGTERM s"] = f"{start.stop:.2f}"
    return Row(cells)


def _median_steps(starts: list[Start]) -> dict[str, float]:
    steps = {}
    for step, _ in PHASES:
        found = [start.steps[step] for start in starts if step in start.steps]
        if found:
            steps[step] = median(found)
    return steps


def _profile(case: Case, work: Path, pycache: Path) -> None:
    """One start under ``-X importtime`` and one under cProfile, into the report."""
    timed = start_once(work / "up-importtime", pycache, python_options=("-X", "importtime"))
    total, slowest = slowest_imports(timed.stderr)
    case.tables.append(
        (
            f"`python -X importtime`: importing took {total:.2f} s of a start that was ready after "
            f"{timed.ready:.2f} s (importtime itself slows imports down). The imports with the most "
            "cumulative time (a module's own and that of what it imports; depth 0 is imported by the "
            "program or one of its functions):",
            [
                Row(
                    {
                        "module": f"`{module}`",
                        "depth": f"{depth}",
                        "cumulative s": f"{cumulative:.3f}",
                        "own s": f"{own:.3f}",
                    }
                )
                for module, depth, cumulative, own in slowest
            ],
        )
    )
    profile = work / "up-cprofile.prof"
    profiled = start_once(
        work / "up-cprofile", pycache, python_options=("-m", "cProfile", "-o", str(profile))
    )
    if not profile.exists():
        raise BenchError("cProfile wrote no profile: citybus up did not exit normally after SIGTERM")
    stats = pstats.Stats(str(profile))
    case.profiles.append(
        (
            f"`citybus up` under cProfile, from spawning to stopped (ready after {profiled.ready:.2f} s), "
            "citybus's own functions by cumulative time",
            top_functions(stats, 12, by="cumulative", where=_startup_code),
        )
    )
    case.profiles.append(
        ("`citybus up` under cProfile, top functions by own time", top_functions(stats, 12)),
    )


def _startup_code(place: str) -> bool:
    return place.startswith(("bus/", "adapters/", "sandbox/", "contracts/")) and " <module>" not in place


CASES: Final = [Spec("startup", TITLE, startup_case)]
