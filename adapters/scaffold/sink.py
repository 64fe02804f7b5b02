"""The scaffold of a **sink**: messages of the configured contracts appended to JSON Lines files.

A real, small archive a company can point a notebook or ``jq`` at: one line per message (its
envelope and body), one file per day of the instance's clock (the replayed day in the sandbox),
consumed durably so that nothing is lost while it is down: a message is acknowledged only once its
line is written (and, with ``fsync = true``, on disk).
"""

from __future__ import annotations

from string import Template

__all__ = ["ADAPTER", "CONFIG_EXAMPLE", "README", "TEST"]

CONFIG_EXAMPLE = (
    'path = "archive/$name-{date}.jsonl"\ncontracts = ["environment.beach-observation", '
    '"environment.weather-observed"]'
)
"""Its ``[adapters.<name>]`` section in the README."""

README = Template("""\
# citybus-$name

A [citybus](https://pypi.org/project/citybus/) sink adapter. It consumes the contracts its
configuration names (durably: JetStream keeps what arrives while it is down) and appends each
message as one JSON line — `id`, `type`, `source`, `subject`, `time`, `provenance`,
`received_at` and `data` — to a file per day (`path`, where `{date}` is the day by the instance's
clock). Delivery is at least once: after a crash a line may appear twice, with the same `id`.

""")
"""The README's first part (the common part follows)."""

ADAPTER = Template('''\
"""$title: messages of the configured contracts appended to JSON Lines files, one per day."""

from __future__ import annotations

import asyncio
import os
from datetime import date, datetime
from pathlib import Path
from typing import IO

import msgspec
from adapters import Adapter, Context
from bus import Event
from contracts import BeachObservation, Contract, default_registry


class ${cls}Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[adapters.<instance>]` section of citybus.toml."""

    path: str = "$name-{date}.jsonl"
    """The file to append to; `{date}` becomes the day (YYYY-MM-DD) by the instance's clock."""
    contracts: list[str] = msgspec.field(default_factory=lambda: ["environment.beach-observation"])
    """The contracts to keep, by name."""
    fsync: bool = False
    """True: each line is on disk before its message is acknowledged (slower; survives a power cut)."""

    def __post_init__(self) -> None:
        if not self.contracts:
            raise ValueError("contracts is empty: name at least one contract to keep")
        try:
            self.path.format(date="2018-08-28")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"path {self.path!r} may hold {{date}} and no other {{...}}") from None
        for name in self.contracts:
            try:
                default_registry().get(name)
            except LookupError as exc:  # a misspelt name: the message suggests the nearest
                raise ValueError(str(exc)) from None


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the file: a message's envelope and its body."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime | None
    provenance: str
    received_at: datetime
    data: Contract


class DailyFiles:
    """Appends lines to the file of their day, one file open at a time (call from one thread)."""

    def __init__(self, pattern: str, *, fsync: bool) -> None:
        self.pattern = pattern
        self.fsync = fsync
        self._path: Path | None = None
        self._file: IO[bytes] | None = None

    def append(self, line: bytes, day: date) -> Path:
        """Append one line to the file of `day`; return its path."""
        path = Path(self.pattern.format(date=day.isoformat()))
        if path != self._path or self._file is None:
            self.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")
            self._path = path
        self._file.write(line)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        return path

    def close(self) -> None:
        """Close the open file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None


class $cls(Adapter[${cls}Config]):
    """$title: keeps every message of the configured contracts as a JSON line, a file per day."""

    name = "$name"
    Config = ${cls}Config
    consumes = (BeachObservation,)  # the default; the configuration names the ones it keeps
    durable = True  # every contract through ctx.consume: what arrives while it is down waits for it

    def consumed(self) -> tuple[type[Contract], ...]:
        """The contracts its configuration names."""
        return tuple(default_registry().get(name) for name in self.config.contracts)

    async def run(self, ctx: Context) -> None:
        """Consume and append until stopped."""
        files = DailyFiles(self.config.path, fsync=self.config.fsync)
        encoder = msgspec.json.Encoder()
        lock = asyncio.Lock()  # one line at a time: lines never interleave, files never race

        async def keep(event: Event[Contract]) -> None:
            now = ctx.clock.now()
            envelope = event.envelope
            line = Line(
                id=envelope.id,
                type=envelope.type,
                source=envelope.source,
                subject=envelope.subject,
                time=envelope.time,
                provenance=envelope.provenance,
                received_at=now,
                data=event.data,
            )
            async with lock:  # written before ctx.consume acknowledges the message
                await asyncio.to_thread(files.append, encoder.encode(line) + b"\\n", now.date())

        try:
            async with asyncio.TaskGroup() as tg:
                for contract in self.consumed():
                    tg.create_task(ctx.consume(contract, keep), name=contract.__contract__.name)
                ctx.log.info("keeping", contracts=self.config.contracts, path=self.config.path)
                ctx.ready()
        finally:
            files.close()
''')
"""``src/<package>/adapter.py``."""

TEST = Template('''\
"""The adapter on citybus's in-memory bus (the real Bus, its streams in memory), on a sandbox clock."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from adapters.testing import AdapterHarness
from bus.errors import ConfigError
from contracts import BeachObservation, WeatherObserved

from $package.adapter import $cls

NOON = datetime(2018, 8, 28, 12, 0, tzinfo=UTC)
"""The replayed time the tests' sandbox stands still at."""


def read_lines(path: Path) -> list[str]:
    """The lines of a file, none if it is not there yet."""
    return path.read_text().splitlines() if path.exists() else []


async def lines_of(path: Path, count: int) -> list[dict[str, Any]]:
    """The file's lines once it has `count` of them (the sink writes in its own time)."""
    for _ in range(500):
        if len(lines := await asyncio.to_thread(read_lines, path)) >= count:
            return [json.loads(line) for line in lines]
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{path} did not get {count} lines")


async def test_messages_become_lines_in_the_file_of_the_replayed_day(tmp_path: Path) -> None:
    config = {
        "path": str(tmp_path / "archive" / "{date}.jsonl"),
        "contracts": ["environment.beach-observation", "environment.weather-observed"],
    }
    async with AdapterHarness($cls, config, clock="sandbox") as harness:
        await harness.tick(NOON, state="paused")  # the sandbox's replay stands still at noon
        await harness.publish_durable(BeachObservation.example(), provenance="synthetic")
        await harness.publish_durable(WeatherObserved.example(), provenance="synthetic")
        lines = await lines_of(tmp_path / "archive" / "2018-08-28.jsonl", 2)
    assert sorted(line["type"] for line in lines) == [
        "environment.beach-observation.v1",
        "environment.weather-observed.v1",
    ]
    [beach] = [line for line in lines if line["type"] == "environment.beach-observation.v1"]
    assert beach["data"]["site"] == "bragernes-strand"
    assert beach["subject"] == "city.public.environment.beach-observation.bragernes-strand"
    assert beach["provenance"] == "synthetic"
    assert beach["received_at"] == "2018-08-28T12:00:00Z"


async def test_a_new_replayed_day_starts_a_new_file(tmp_path: Path) -> None:
    config = {"path": str(tmp_path / "{date}.jsonl")}
    async with AdapterHarness($cls, config, clock="sandbox") as harness:
        await harness.tick(NOON, state="paused")
        await harness.publish_durable(BeachObservation.example())
        await lines_of(tmp_path / "2018-08-28.jsonl", 1)
        await harness.tick(datetime(2018, 8, 29, 9, 0, tzinfo=UTC), state="paused")
        await harness.publish_durable(BeachObservation.example())
        [line] = await lines_of(tmp_path / "2018-08-29.jsonl", 1)
    assert line["received_at"] == "2018-08-29T09:00:00Z"
    assert len(read_lines(tmp_path / "2018-08-28.jsonl")) == 1


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"contracts": []}, "contracts is empty"),
        ({"contracts": ["environment.beach-observatio"]}, "environment.beach-observation"),
        ({"path": "{day}.jsonl"}, "may hold [{]date[}]"),
    ],
)
def test_a_wrong_configuration_is_refused_with_the_reason(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        AdapterHarness($cls, config)
''')
"""``tests/test_<package>.py``."""
