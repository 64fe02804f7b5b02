"""``citybus adapter new NAME``: a separate, pip-installable adapter package that passes its own test.

The generated adapter is a small, real translator — the job most companies have: it reads its
device's own JSON from a NATS subject, turns each reading into an ``environment.beach-observation``,
and sends what it cannot translate to the dead letters. Authors replace the translation with theirs.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from bus.errors import CityBusError

__all__ = ["scaffold"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

_PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "citybus-$name"
version = "0.1.0"
description = "$title: a citybus adapter"
requires-python = ">=3.11"
dependencies = ["citybus"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.24"]

# citybus finds the adapter through this entry point; the name must equal the adapter's `name`.
[project.entry-points."citybus.adapters"]
$name = "$package.adapter:$cls"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
testpaths = ["tests"]
""")

_README = Template("""\
# citybus-$name

A [citybus](https://pypi.org/project/citybus/) adapter. It reads readings in the device's own JSON
from the NATS subject `$subject_prefix.<device>` and publishes each as an
`environment.beach-observation`; input it cannot translate goes to citybus's dead letters.

```sh
pip install -e '.[test]'     # into the environment where citybus is installed
citybus adapters list        # shows "$name"
pytest                       # its own test, on citybus's in-memory bus
```

Run it in `citybus up` by adding an instance to `citybus.toml`:

```toml
[adapters.$name]
subject_prefix = "$subject_prefix"
```

or on its own against a running citybus: `citybus adapters run $name`.
""")

_ADAPTER = Template('''\
"""$title: device readings in their own JSON in, beach observations out."""

from __future__ import annotations

from datetime import datetime

import msgspec

from adapters import Adapter, Context
from bus import RawMessage
from bus.codec import decode_bytes
from bus.errors import UndecodableError
from contracts import BeachObservation


class ${cls}Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[adapters.<instance>]` section of citybus.toml."""

    subject_prefix: str = "$subject_prefix"
    """Devices publish on `<subject_prefix>.<device id>`."""


class Reading(msgspec.Struct, frozen=True):
    """The device's own message."""

    site: str
    time: datetime
    water_celsius: float
    air_celsius: float | None = None


class $cls(Adapter[${cls}Config]):
    """Translates $title readings into beach observations."""

    name = "$name"
    Config = ${cls}Config
    produces = (BeachObservation,)

    def raw_subjects(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The devices' subjects it reads (the broker grants it these and its contracts)."""
        return ((f"{self.config.subject_prefix}.*",), ())

    async def run(self, ctx: Context) -> None:
        decoder = msgspec.json.Decoder(Reading)

        async def on_reading(raw: RawMessage) -> None:
            device = raw.subject.rsplit(".", 1)[-1]
            try:
                reading = decode_bytes(decoder, raw.data)  # any bytes a device sends: never a crash
                observation = BeachObservation(
                    site=reading.site,
                    observed_at=reading.time,
                    water_temperature=reading.water_celsius,
                    air_temperature=reading.air_celsius,
                    device=device,
                )
            except UndecodableError as exc:
                await ctx.dead_letter(raw, reason="bad-reading", detail=str(exc))
                return
            await ctx.publish(observation, provenance="sensor", time=reading.time)

        await ctx.subscribe_raw(f"{self.config.subject_prefix}.*", on_reading)
        ctx.ready()
        await ctx.wait_stopped()
''')

_TEST = Template('''\
"""$cls against citybus's in-memory bus (the real Bus, no server needed)."""

from __future__ import annotations

from adapters.testing import AdapterHarness
from contracts import BeachObservation
from $package.adapter import $cls


async def test_a_reading_becomes_a_beach_observation() -> None:
    async with AdapterHarness($cls) as harness:
        await harness.publish_raw(
            "$subject_prefix.unit-7",
            b'{"site": "bragernes-strand", "time": "2018-08-29T10:00:00+02:00", "water_celsius": 15.7}',
        )
        [event] = await harness.wait_for(BeachObservation)
    assert event.data.site == "bragernes-strand"
    assert event.data.water_temperature == 15.7
    assert event.data.device == "unit-7"
    assert event.provenance == "sensor"


async def test_an_unreadable_message_goes_to_the_dead_letters() -> None:
    async with AdapterHarness($cls) as harness:
        await harness.publish_raw("$subject_prefix.unit-7", b'{"site": "bragernes-strand"}')
        await harness.settle()
    [letter] = harness.dead_letters
    assert letter.reason == "bad-reading"
    assert "time" in letter.detail
''')


def scaffold(name: str, directory: Path | None = None) -> Path:
    """Create the package for adapter ``name`` in ``directory`` (default ``./citybus-<name>``)."""
    if not _NAME.match(name):
        raise CityBusError(f"adapter name {name!r} must be kebab case, e.g. 'harbour-sensors'")
    target = directory if directory is not None else Path.cwd() / f"citybus-{name}"
    if target.exists() and any(target.iterdir()):
        raise CityBusError(f"{target} already exists and is not empty: choose another --directory")
    package = "citybus_" + name.replace("-", "_")
    words = name.split("-")
    values = {
        "name": name,
        "package": package,
        "cls": "".join(w.capitalize() for w in words) + "Adapter",
        "title": " ".join(words).capitalize(),
        "subject_prefix": f"devices.{name}",
    }
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"src/{package}/__init__.py": Template('"""$title: a citybus adapter."""\n'),
        f"src/{package}/adapter.py": _ADAPTER,
        f"tests/test_{package}.py": _TEST,
    }
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values))
    return target
