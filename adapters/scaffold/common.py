"""What every scaffolded package holds, whatever its kind: ``pyproject.toml`` and the README's
way of installing, testing and running it."""

from __future__ import annotations

from string import Template

__all__ = ["PYPROJECT", "README_RUN"]

PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "citybus-$name"
version = "0.1.0"
description = "$title: a citybus $kind adapter"
requires-python = ">=3.11"
dependencies = ["citybus"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.24", "ruff>=0.6", "mypy>=1.11"]

# citybus finds the adapter through this entry point; the name must equal the adapter's `name`.
[project.entry-points."citybus.adapters"]
$name = "$package.adapter:$cls"
$contracts_entry_point
[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
"*" = ["py.typed"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
testpaths = ["tests"]

[tool.ruff]
line-length = 110
target-version = "py311"
src = ["src"]
extend-exclude = ["build"]

[tool.ruff.lint]
select = ["E", "F", "I", "B", "UP", "ASYNC", "T20"]

[tool.mypy]
strict = true
python_version = "3.11"
mypy_path = "src"
files = ["src", "tests"]
""")
"""The package's ``pyproject.toml``: the adapter's entry point (and the contracts' for a service),
pytest on asyncio, and ruff and ``mypy --strict`` set up as citybus checks itself."""

README_RUN = Template("""\
```sh
pip install -e '.[test]'     # into the environment where citybus is installed
citybus adapters list        # shows "$name", a $kind
pytest                       # its own tests, on citybus's in-memory bus and a sandbox clock
ruff check . && mypy         # as strict as citybus itself
```

Run it in `citybus up` by adding an instance to `citybus.toml`:

```toml
[adapters.$name]
$config_example
```

or on its own against a running citybus: `citybus adapters run $name`. With
`account = "sandbox"` in its section it runs in the sandbox account, on the replay's clock: its
`ctx.clock.now()` is the replayed time, and so is the `ce-time` of what it publishes. A file with
`[adapters.*]` sections runs only what it names, so put the replay's next to it:

```toml
[adapters.sandbox]
adapter = "sandbox-replay"
```

`docs/context.md` in citybus describes everything its `ctx` offers.
""")
"""How to install, test and run the package, the end of every kind's README."""
