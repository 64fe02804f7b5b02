"""The shape of the packages: public API, docstrings, typing marker, and which layer imports which.

The check that ``contracts`` imports nothing from the other layers lives in ``test_contracts.py``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import bus

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bus", "contracts")


def module_names(package: str) -> list[str]:
    return [
        package if path.stem == "__init__" else f"{package}.{path.stem}"
        for path in sorted((ROOT / package).glob("*.py"))
    ]


def adapter_module_names(package: str = "adapters") -> list[str]:
    """Every module of a package, subpackages included (``bus.access.policy``)."""
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = [
    *adapter_module_names("bus"),
    *module_names("contracts"),
    *adapter_module_names(),
    *adapter_module_names("sandbox"),
]
ADAPTER_PACKAGES = [
    name
    for name in (*adapter_module_names(), *adapter_module_names("sandbox"))
    if (ROOT / name.replace(".", "/")).is_dir()
]


@pytest.mark.parametrize("package", ["bus", "contracts", *ADAPTER_PACKAGES])
def test_package_all_is_sorted_and_every_name_exists(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__)
    assert len(set(module.__all__)) == len(module.__all__)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing


def test_bus_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(bus).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    lazy = {"Tracing"}  # imported on first use (bus.__getattr__): the OpenTelemetry API
    assert set(bus.__all__) == public | lazy


def test_the_bus_exports_what_a_middleware_or_tracing_needs() -> None:
    from bus.pipeline import Middleware, Route, Step
    from bus.tracing import Tracing

    assert (bus.Middleware, bus.Route, bus.Step, bus.Tracing) == (Middleware, Route, Step, Tracing)


def test_importing_the_bus_does_not_load_opentelemetry() -> None:
    """Tracing off costs nothing, not even the import of the OpenTelemetry API."""
    code = "import sys, bus; assert not any(m.startswith('opentelemetry') for m in sys.modules); bus.Tracing"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", adapter_module_names("bus"))
def test_every_bus_module_declares_what_it_exports(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list), name
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__ and module.__doc__.strip(), f"{name} has no module docstring"


@pytest.mark.parametrize("name", MODULES)
def test_every_public_function_class_and_method_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)
    undocumented = []
    for public in module.__all__:
        value = getattr(module, public)
        if not (inspect.isclass(value) or inspect.isfunction(value)) or value.__module__ != name:
            continue  # re-exported, or a constant / type alias
        if not (value.__doc__ or "").strip():
            undocumented.append(public)
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                if attribute.startswith("_"):
                    continue
                function = member.fget if isinstance(member, property) else member
                if isinstance(function, classmethod | staticmethod):
                    function = function.__func__
                if inspect.isfunction(function) and not function.__doc__:
                    undocumented.append(f"{public}.{attribute}")
    assert undocumented == [], f"{name}: no docstring on {', '.join(undocumented)}"


@pytest.mark.parametrize("package", [*PACKAGES, "adapters", "sandbox"])
def test_packages_ship_py_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (absolute imports only; relative ones stay inside)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "bus").rglob("*.py")), ids=lambda p: p.name)
def test_bus_never_imports_adapters_or_sandbox(path: Path) -> None:
    assert imported_packages(path).isdisjoint({"adapters", "sandbox"})


@pytest.mark.parametrize("path", sorted((ROOT / "adapters").rglob("*.py")), ids=lambda p: p.name)
def test_adapters_never_import_the_sandbox_or_nats(path: Path) -> None:
    # adapters talk to the bus through their context, never to nats-py; no adapter knows the sandbox
    assert imported_packages(path).isdisjoint({"sandbox", "nats"})


def test_the_import_scan_sees_imports_anywhere_in_a_module(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os.path\n"
        "def f():\n"
        "    from adapters.sdk import Adapter\n"
        "    import sandbox.replay as replay\n"
        "from . import sibling\n"
    )
    assert imported_packages(module) == {"os", "adapters", "sandbox"}


def code_strings(path: Path) -> list[str]:
    """What a module's code knows by name: its string constants (not its docstrings, nor the
    attribute docstrings after an assignment) and its names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append(node.value)
        elif isinstance(node, ast.Name):
            found.append(node.id)
        elif isinstance(node, ast.Attribute):
            found.append(node.attr)
        elif isinstance(node, ast.arg):
            found.append(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append(node.name)
    return found


# Upper layers' metric names: bus/status.py renders what adapters/ and sandbox/ contribute through
# the citybus.status entry points, and never reads their families itself.
UPPER_METRICS = ("citybus_adapter_", "citybus_replay_", "citybus_source_")


@pytest.mark.parametrize("path", sorted((ROOT / "bus").rglob("*.py")), ids=lambda p: p.name)
def test_bus_knows_no_upper_layer_metric_by_name(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert [name for name in UPPER_METRICS if name in text] == []


# Users and components of upper layers: bus's access policy knows accounts and generic kinds of
# users, and what the sandbox's pilots and replays need comes from sandbox/'s declarations
# (citybus.access). Docstrings may name them as examples; code (names, strings) may not.
UPPER_NAMES = ("pilot", "replay")


@pytest.mark.parametrize("path", sorted((ROOT / "bus").rglob("*.py")), ids=lambda p: p.name)
def test_bus_code_knows_no_upper_layer_user_by_name(path: Path) -> None:
    assert [s for s in code_strings(path) if any(name in s.lower() for name in UPPER_NAMES)] == []


def test_the_code_scan_leaves_docstrings_and_comments_out(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""A replay of pilots."""\n'
        "def f(pilot):  # a replay\n"
        '    """replay"""\n'
        '    return pilot + "replay"\n'
    )
    assert {s for s in code_strings(module) if "pilot" in s or "replay" in s} == {"pilot", "replay"}
