"""A second, independent MCAP reader opens citybus's recordings: the reference TypeScript library
(``@mcap/core``, with ``@mcap/support`` for zstd and lz4), run by Node.js.

The Go ``mcap`` CLI is not published on PyPI or npm; the TypeScript library is the implementation
Foxglove Studio reads files with. The packages are installed from npm once into a cache directory;
without Node.js and npm the test is skipped and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from bus.envelope import build_headers
from contracts import BeachObservation
from sandbox.adapter import DRAMMEN_DAY
from sandbox.contents import read_info
from sandbox.recording import RecordingWriter

SCRIPT = Path(__file__).resolve().parent / "js" / "read_mcap.mjs"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "citybus-tests" / "mcap-js"


@pytest.fixture(scope="module")
def mcap_js() -> Path:
    """A directory with @mcap/core and @mcap/support installed (from npm, once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: the TypeScript MCAP reader cannot run")
    if not (CACHE / "node_modules" / "@mcap" / "support").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text('{"name": "citybus-mcap-check", "private": true}')
        result = subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "@mcap/core@2", "@mcap/support@1"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"npm could not install @mcap/core: {result.stderr.strip()[-500:]}")
    shutil.copy(SCRIPT, CACHE / SCRIPT.name)
    return CACHE


def read_with_js(directory: Path, recording: Path) -> dict[str, object]:
    result = subprocess.run(
        ["node", SCRIPT.name, str(recording)], cwd=directory, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_the_typescript_reader_opens_the_drammen_day(mcap_js: Path) -> None:
    info = read_info(DRAMMEN_DAY)
    seen = read_with_js(mcap_js, DRAMMEN_DAY)
    assert seen == {
        "profile": "citybus",
        "messages": info.messages,
        "topics": info.subjects,
        "encodings": ["json"],
        "schemas": ["jsonschema"],
        "metadata": ["citybus"],
    }


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_the_typescript_reader_opens_what_the_recorder_writes(
    mcap_js: Path, tmp_path: Path, compression: str
) -> None:
    path = tmp_path / f"{compression}.mcap"
    start = datetime(2018, 8, 28, 10, tzinfo=UTC)
    with RecordingWriter(path, compression=compression) as writer:  # type: ignore[arg-type]
        for i in range(50):
            when = start + timedelta(minutes=i)
            body = msgspec.json.encode(
                BeachObservation(site="bragernes-strand", observed_at=when, water_temperature=15.7)
            )
            headers = build_headers(
                BeachObservation.__contract__, event_id=str(i), source="/t", time=when, provenance="synthetic"
            )
            writer.add("city.public.environment.beach-observation.bragernes-strand", body, headers)
    seen = read_with_js(mcap_js, path)
    assert (seen["messages"], seen["topics"], seen["encodings"]) == (50, 1, ["json"])
