"""An installed company package that brings its own contract, for the tests of ``citybus.contracts``.

:func:`install` writes a module and a ``*.dist-info`` directory (``METADATA`` and
``entry_points.txt``) into a directory; with that directory on ``sys.path`` (or ``PYTHONPATH``),
``importlib.metadata`` finds the distribution and its entry points exactly as it finds a
pip-installed one — the real discovery path, not a mock. :func:`install_module` installs a package
whose module is any source (a broken one, a changed contract).
"""

from __future__ import annotations

import re
from pathlib import Path

NAME = "testco.widget-reading"
TYPE = "testco.widget-reading.v1"
MODULE = "testco_contracts"
PACKAGE = "testco-widgets"
EXAMPLE = {"widget": "w-1", "level": 3.5}
SUMMARY = "How full one of TestCo's widgets is."

_SOURCE = '''"""The contracts of TestCo's widget adapter package."""

from contracts import Contract, Registry, contract

# In-process tests declare it in a registry of its own, so the session's default one stays as shipped.
OWN = Registry()


@contract("%s", version=1, classification="public", key="widget", example=%r%s)
class WidgetReading(Contract, frozen=True, kw_only=True):
    """%s

    It is measured by the widget's own float, once a minute.
    """

%s'''

FIELDS = "    widget: str\n    level: float\n"
"""The class body's fields as shipped."""


def source(
    *, own_registry: bool = False, fields: str = FIELDS, name: str = NAME, example: object = None
) -> str:
    """The module of the widget contract; ``fields`` are its class body's field lines."""
    registry = ", registry=OWN" if own_registry else ""
    return _SOURCE % (name, EXAMPLE if example is None else example, registry, SUMMARY, fields)


def install(where: Path, *, module: str = MODULE, entry_point: str = "", own_registry: bool = False) -> Path:
    """Install the package into ``where`` (a ``sys.path`` directory); returns ``where``.

    The entry point names the module unless told otherwise; ``own_registry`` declares the contract
    in the module's ``OWN`` registry instead of the default one.
    """
    return install_module(
        where, source(own_registry=own_registry), module=module, entry_point=entry_point or module
    )


def install_module(
    where: Path, text: str, *, module: str = MODULE, entry_point: str = "", package: str = PACKAGE
) -> Path:
    """Install ``package`` with one module ``module`` of source ``text``, its entry point (the
    module unless told otherwise) in the ``citybus.contracts`` group named after the package."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(text)
    info = where / f"{re.sub(r'[-.]+', '_', package)}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    group_name = package.split("-")[0]
    (info / "entry_points.txt").write_text(f"[citybus.contracts]\n{group_name} = {entry_point or module}\n")
    return where
