"""``citybus adapter new NAME --kind source|service|sink``: a separate, pip-installable adapter
package that passes its own tests, ruff and ``mypy --strict`` as it is.

Each kind is a small, real adapter a company replaces the inside of:

* **source** (:mod:`.source`): a device's own JSON in, ``environment.beach-observation`` out, bad
  input to the dead letters;
* **service** (:mod:`.service`): beach observations in, advice per bathing site out, in a
  contract of the company's own (``<company>.advice``, in ``src/<package>/contracts.py``,
  installed through the entry-point group ``citybus.contracts``);
* **sink** (:mod:`.sink`): the configured contracts consumed durably into JSON Lines files, one
  per day.

Every package's tests run on :class:`adapters.testing.AdapterHarness` with a sandbox clock
(``clock="sandbox"``, set with ``harness.tick``), so what an adapter does with time is tested on
replayed time, as it will run in the sandbox.

Decisions, and why:

* **The templates are Python strings** (:class:`string.Template`), not files shipped as package
  data: ruff and mypy read the module that holds them, and nothing can go missing from a wheel.
* **A service's contract domain is the company's prefix** (``--company``, default the adapter's
  name): the city's domains (``environment``, ``mobility``…) stay the city's, and two companies'
  contracts never share a stream or a subject.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template
from typing import Final, Literal, get_args

from adapters.scaffold import common, service, sink, source
from bus.errors import CityBusError
from contracts import default_registry

__all__ = ["KINDS", "Kind", "scaffold"]

Kind = Literal["source", "service", "sink"]
"""What a scaffolded adapter does: brings data onto the bus, turns data into data, or takes it off."""

KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
"""The kinds, in the order ``--kind`` lists them."""

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def _city_domains() -> set[str]:
    """The domains of the contracts citybus ships (a company's installed ones are not the city's)."""
    shipped = (c for c in default_registry() if c.__module__.partition(".")[0] == "contracts")
    return {c.__contract__.name.partition(".")[0] for c in shipped}


def scaffold(name: str, directory: Path | None = None, *, kind: Kind = "source", company: str = "") -> Path:
    """Create the package of adapter ``name`` in ``directory`` (default ``./citybus-<name>``).

    ``company`` is the domain of a service's own contract (default: ``name``). Raises
    :class:`~bus.errors.CityBusError` for a wrong name, kind or company, or a directory in use.
    """
    if not _NAME.match(name):
        raise CityBusError(f"adapter name {name!r} must be kebab case, e.g. 'harbour-sensors'")
    if kind not in KINDS:
        raise CityBusError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    company = company or name
    if not _NAME.match(company):
        raise CityBusError(f"company {company!r} must be kebab case, e.g. 'acme' (the contracts' domain)")
    if company in _city_domains():
        raise CityBusError(f"company {company!r} is one of the city's domains: choose your company's prefix")
    target = directory if directory is not None else Path.cwd() / f"citybus-{name}"
    if target.exists() and any(target.iterdir()):
        raise CityBusError(f"{target} already exists and is not empty: choose another --directory")
    package = "citybus_" + name.replace("-", "_")
    words = name.split("-")
    values = {
        "name": name,
        "kind": kind,
        "package": package,
        "cls": "".join(w.capitalize() for w in words) + "Adapter",
        "title": " ".join(words).capitalize(),
        "subject_prefix": f"devices.{name}",
        "company": company,
        "contracts_entry_point": "",
    }
    templates = {"source": source, "service": service, "sink": sink}[kind]
    if kind == "service":
        values["contracts_entry_point"] = (
            "\n# citybus knows the package's own contracts (`contracts list`, `tail`, streams, access)\n"
            f'[project.entry-points."citybus.contracts"]\n{company} = "{package}.contracts"\n'
        )
    values["config_example"] = Template(templates.CONFIG_EXAMPLE).substitute(values)
    files = {
        "pyproject.toml": common.PYPROJECT,
        "README.md": Template(templates.README.template + common.README_RUN.template),
        f"src/{package}/__init__.py": Template('"""$title: a citybus $kind adapter."""\n'),
        f"src/{package}/py.typed": Template(""),
        f"src/{package}/adapter.py": templates.ADAPTER,
        f"tests/test_{package}.py": templates.TEST,
    }
    if kind == "service":
        files[f"src/{package}/contracts.py"] = service.CONTRACTS
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values))
    return target
