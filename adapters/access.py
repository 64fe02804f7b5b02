"""What the configured adapter instances may do: the ``citybus.access`` entry point of ``adapters``.

:mod:`bus.access.policy` turns plain declarations into nats-server accounts and users, and knows
no adapters (``bus`` never imports ``adapters``). This module makes those declarations from the
adapter instances ``citybus up`` runs with a configuration; :data:`ACCESS` is the entry point
through which ``citybus up`` and ``citybus auth`` find them.

Decisions, and why:

* **The instances are the ones ``citybus up`` runs**: the ``[adapters.*]`` sections (enabled
  ones), or the installed adapters' default instances when there are none. A disabled instance
  gets no user, so it cannot connect; enabling it means running ``citybus auth generate`` again.
* **Which account.** An instance runs in ``SANDBOX`` when it is a replay (its adapter answers
  ``control = "replay"`` requests), runs on a replay's clock (``clock = "sandbox"``) or says
  ``account = "sandbox"``: it handles replayed data, which must never reach ``CITY``. Every other
  instance runs in ``CITY``. An instance in ``SANDBOX`` may read the replays' clocks (``clocks``),
  and runs on one unless it says ``clock = "wall"`` (:mod:`adapters.instances`).
* **What an instance declares** is what its object says, after its configuration: ``consumed()``
  and ``produced()`` (a bridge or archive configured with its contracts), ``raw_subjects()``,
  and the class's ``declassifier``, ``durable`` and ``control``. The model refuses what it
  cannot grant safely (:class:`bus.access.AccessError`), naming the instance.
* **Entry points that did not load** are reported as the declaration's ``problems``, which
  ``citybus auth`` prints as warnings (``citybus up`` reports them itself).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapters.discovery import DiscoveryProblem, discover
from adapters.instances import Instance, instances_from_config
from adapters.runtime import default_sections
from bus import subjects
from bus.access import Account, Declaration
from bus.access.declared import AccessProvider, Declared
from bus.config import Config

__all__ = [
    "ACCESS",
    "ByAccount",
    "configured_instances",
    "declaration",
    "declarations",
    "declared",
    "in_sandbox",
]

# -- adapter instances ----------------------------------------------------------------------------


def configured_instances(config: Config) -> tuple[list[Instance], list[DiscoveryProblem]]:
    """The instances ``citybus up`` runs with ``config``, and the entry points that did not load."""
    found = discover()
    sections = config.adapters or default_sections(found.adapters)
    return instances_from_config(sections, found.adapters), found.problems


def in_sandbox(instance: Instance) -> bool:
    """Whether an instance belongs to ``SANDBOX``: a replay, or an instance on a replay's clock."""
    return instance.account == Account.SANDBOX.value


def declaration(instance: Instance) -> Declaration:
    """What one configured instance may do, from its adapter object and class."""
    adapter = instance.create()
    subscribe, publish = adapter.raw_subjects()
    owns, sources = adapter.owned()
    cls = instance.adapter
    return Declaration(
        instance.name,
        consumes=adapter.consumed(),
        produces=adapter.produced(),
        declassifier=cls.declassifier,
        raw_subscribe=subscribe,
        raw_publish=publish,
        durable=cls.durable,
        control=cls.control,
        clocks=in_sandbox(instance),
        owns=owns,
        sources=sources,
        answers=cls.answers,
        privacy=cls.privacy,
        stores=tuple(subjects.store_bucket(instance.name, name) for name in cls.stores),
        recalls=cls.recalls,
    )


@dataclass(frozen=True, slots=True)
class ByAccount:
    """The declarations of the instances, by account."""

    city: tuple[Declaration, ...]
    sandbox: tuple[Declaration, ...]


def declarations(instances: Iterable[Instance]) -> ByAccount:
    """The declarations of ``instances``, split between ``CITY`` and ``SANDBOX``."""
    city: list[Declaration] = []
    sandbox: list[Declaration] = []
    for instance in instances:
        (sandbox if in_sandbox(instance) else city).append(declaration(instance))
    return ByAccount(tuple(city), tuple(sandbox))


def declared(config: Config) -> Declared:
    """What ``citybus up`` runs with ``config`` declares: its adapter instances by account."""
    instances, problems = configured_instances(config)
    split = declarations(instances)
    return Declared(split.city, split.sandbox, problems=tuple(str(p) for p in problems))


ACCESS = AccessProvider(declared=declared)
"""The ``citybus.access`` entry point of ``adapters``."""
