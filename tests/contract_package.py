"""An installed company package that brings its own contract, for the tests of ``citybus.contracts``.

:func:`install` writes a module and a ``*.dist-info`` directory (``METADATA`` and
``entry_points.txt``) into a directory; with that directory on ``sys.path`` (or ``PYTHONPATH``),
``importlib.metadata`` finds the distribution and its entry points exactly as it finds a
pip-installed one — the real discovery path, not a mock.
"""

from __future__ import annotations

from pathlib import Path

NAME = "testco.widget-reading"
TYPE = "testco.widget-reading.v1"
MODULE = "testco_contracts"
EXAMPLE = {"widget": "w-1", "level": 3.5}

_SOURCE = '''"""The contracts of TestCo's widget adapter package."""

from contracts import Contract, Registry, contract

# In-process tests declare it in a registry of its own, so the session's default one stays as shipped.
OWN = Registry()


@contract("%s", version=1, classification="public", key="widget", example=%r%s)
class WidgetReading(Contract, frozen=True, kw_only=True):
    """How full one of TestCo's widgets is."""

    widget: str
    level: float
'''


def install(where: Path, *, module: str = MODULE, entry_point: str = "", own_registry: bool = False) -> Path:
    """Install the package into ``where`` (a ``sys.path`` directory); returns ``where``.

    The entry point names the module unless told otherwise; ``own_registry`` declares the contract
    in the module's ``OWN`` registry instead of the default one.
    """
    where.mkdir(parents=True, exist_ok=True)
    registry = ", registry=OWN" if own_registry else ""
    (where / f"{module}.py").write_text(_SOURCE % (NAME, EXAMPLE, registry))
    entry_point = entry_point or module
    info = where / "testco_widgets-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: testco-widgets\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[citybus.contracts]\ntestco = {entry_point}\n")
    return where
